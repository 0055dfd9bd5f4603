import ArgumentParser
import Orchestrator
import Support

struct BackupsVerify: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "verify",
        abstract: "Check backups: SHA-256 against the manifest, then SQLite's integrity_check; records the result, good or failed, in the manifest.")

    @OptionGroup var global: GlobalOptions

    @OptionGroup var metrics: MetricsOption

    @Argument(help: "The instance whose backups to check.")
    var instance: String

    @Argument(help: "The backup to check (a bare name from 'backups list'; default: the newest).")
    var backup: String?

    @Flag(help: "Check every backup.")
    var all = false

    func validate() throws {
        if all && backup != nil { throw ValidationError("Give a backup name or --all, not both.") }
    }

    func run() throws {
        let console = Console(global)
        try Metrics.around(metrics, console: console, instances: { [instance] }, command: "backups verify") {
            try console.run { runtime in
                let results = try runtime.verifyBackups(instance: instance, backup: backup, all: all)
                if global.json {
                    struct Item: Encodable { let name: String; let ok: Bool; let problems: [String]; let vanished: Bool }
                    try console.json(results.map { Item(name: $0.entry.name, ok: $0.ok, problems: $0.problems, vanished: $0.vanished) })
                } else {
                    for result in results {
                        if result.vanished {
                            console.line("- \(result.entry.name): removed while it was being checked (a prune); skipped")
                        } else if result.ok {
                            console.line(console.green("✓") + " \(result.entry.name): checksum and integrity_check good")
                        } else {
                            console.line(console.red("✗") + " \(result.entry.name): \(result.problems.joined(separator: "; "))")
                        }
                    }
                }
                let bad = results.filter { !$0.ok }
                if !bad.isEmpty {
                    throw Failure(.badData, "\(bad.count) of \(counted(results.count, "backup")) failed verification: \(bad.map(\.entry.name).joined(separator: ", "))",
                                  hint: "do not restore from \(bad.count == 1 ? "it" : "them"); take a new snapshot")
                }
            }
        }
    }
}
