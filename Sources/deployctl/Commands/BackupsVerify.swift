import ArgumentParser
import Orchestrator
import Support

struct BackupsVerify: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "verify",
        abstract: "Check backups: SHA-256 against the manifest, then SQLite's integrity_check; records the result, good or failed, in the manifest.",
        discussion: """
            Examples:
              deployctl backups verify prod --all --quiet               # nightly, from cron
              deployctl backups verify prod --remote primary --download # a full check of the newest offsite copy
            """)

    @OptionGroup var global: GlobalOptions

    @OptionGroup var selection: DatabaseOption

    @OptionGroup var metrics: MetricsOption

    @Argument(help: "The instance whose backups to check.", completion: InstanceCompletion.instances)
    var instance: String

    @Argument(help: "The backup to check (a bare name from 'backups list'; default: the newest).")
    var backup: String?

    @Flag(help: "Check every backup.")
    var all = false

    @OptionGroup var remote: RemoteOptions

    @Flag(help: "With --remote: download each copy and check its sha256 and integrity_check (else: size and ETag, no download).")
    var download = false

    @Flag(help: "With --remote: check copies whose manifest this instance's offsite signing key did not sign too.")
    var allowUnsigned = false

    func validate() throws {
        if all && backup != nil { throw ValidationError("Give a backup name or --all, not both.") }
        if download && remote.remote == nil && remote.host == nil { throw ValidationError("--download checks remote copies: give --remote NAME.") }
    }

    /// `--remote`: the copies in the store, by size and ETag, or downloaded and checked whole.
    func verifyRemote(_ console: Console) throws {
        try console.run { runtime in
            let checks = try RemoteBackups(runtime).verify(instance: instance, remote: remote.remote, host: remote.host, backup: backup, all: all, download: download,
                                                 allowUnsigned: allowUnsigned)
            if global.json {
                struct Item: Encodable { let name: String; let ok: Bool; let problems: [String]; let checked: String }
                try console.json(checks.map { Item(name: $0.name, ok: $0.problems.isEmpty, problems: $0.problems, checked: $0.how) })
            } else {
                for check in checks {
                    console.line(check.problems.isEmpty ? console.green("✓") + " \(check.name): \(check.how) good"
                                                        : console.red("✗") + " \(check.name): \(check.problems.joined(separator: "; "))")
                }
            }
            let bad = checks.filter { !$0.problems.isEmpty }
            if !bad.isEmpty {
                throw Failure(.backupVerificationFailed, "\(bad.count) of \(counted(checks.count, "remote copy", "remote copies")) failed verification: \(bad.map(\.name).joined(separator: ", "))",
                              hint: "do not restore from \(bad.count == 1 ? "it" : "them"); push a good backup again ('deployctl backups push \(instance)')")
            }
        }
    }

    func run() throws {
        let console = Console(global, selection)
        if remote.remote != nil || remote.host != nil { return try verifyRemote(console) }
        try Metrics.around(metrics, console: console, instance: instance, every: { _ in [] }, command: "backups verify") {
            try console.run { runtime in try console.eachDatabase(instance, runtime, naming: backup) { console, runtime in
                let results = try BackupInventory(runtime).verify(instance: instance, backup: backup, all: all)
                if global.json {
                    struct Item: Encodable { let name: String; let ok: Bool; let problems: [String]; let vanished: Bool; let check: String? }
                    try console.json(results.map { Item(name: $0.entry.name, ok: $0.ok, problems: $0.problems, vanished: $0.vanished,
                                                        check: $0.vanished || $0.wrongKey ? nil : $0.checksumOnly ? "sha256" : "integrity_check") })
                } else {
                    for result in results {
                        if result.vanished {
                            console.line("- \(result.entry.name): removed while it was being checked (a prune); skipped")
                        } else if result.ok, result.checksumOnly {
                            console.line(console.green("✓") + " \(result.entry.name): checksum of the encrypted file good; not decrypted (no [encryption] identity_file), so integrity_check did not run")
                        } else if result.ok {
                            console.line(console.green("✓") + " \(result.entry.name): checksum\(result.entry.encrypted ? ", decryption" : "") and integrity_check good")
                        } else {
                            console.line(console.red("✗") + " \(result.entry.name): \(result.problems.joined(separator: "; "))")
                        }
                    }
                }
                let bad = results.filter { !$0.ok && !$0.wrongKey }
                let unopened = results.filter(\.wrongKey)
                if !bad.isEmpty {
                    throw Failure(.backupVerificationFailed, "\(bad.count) of \(counted(results.count, "backup")) failed verification: \(bad.map(\.entry.name).joined(separator: ", "))"
                                  + (unopened.isEmpty ? "" : "; \(unopened.count) could not be opened with the configured key"),
                                  hint: "do not restore from \(bad.count == 1 ? "it" : "them"); take a new snapshot")
                }
                if !unopened.isEmpty {
                    throw Failure(.encryptionNoIdentityMatched, "\(unopened.count) of \(counted(results.count, "backup")) could not be opened with the configured key (no identity matched): \(unopened.map(\.entry.name).joined(separator: ", ")); nothing was recorded about \(unopened.count == 1 ? "it" : "them")",
                                  hint: "point identity_file at a key of their recipients (their manifests list them)")
                }
            } }
        }
    }
}
