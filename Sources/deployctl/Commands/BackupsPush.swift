import ArgumentParser
import Foundation
import Orchestrator

/// `--remote NAME` and `--host ID`: which `[[offsite]]` remote, and whose folder in it.
struct RemoteOptions: ParsableArguments {
    @Option(help: ArgumentHelp("The [[offsite]] remote (by name; default: the only one).", valueName: "name"))
    var remote: String?

    @Option(help: ArgumentHelp("Another host's folder in the remote (default: this host's host_id): for a restore on a new host.", valueName: "id"))
    var host: String?
}

struct BackupsPush: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "push",
        abstract: "Copy local backups to the instance's [[offsite]] remotes (S3-compatible object storage).",
        discussion: """
            Each backup is checked against its manifest's sha256, uploaded under \
            <prefix>/<host_id>/<name> (in 16 MiB parts above 64 MiB, each with Content-MD5; no partial \
            object ever appears under the name; size and ETag compared after), then its manifest, last: \
            a copy without a manifest is never listed as good. A copy already there is skipped. \
            Credentials come from AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY (and AWS_SESSION_TOKEN) or the \
            AWS shared credentials file, never from instance.toml.
            Example: deployctl backups push prod --all --remote primary
            Exit codes: 69 the store cannot be reached (after retries), 77 credentials refused, 66 no \
            such bucket, 65 a local backup that does not match its manifest.
            """)

    @OptionGroup var global: GlobalOptions

    @OptionGroup var selection: DatabaseOption

    @Argument(help: "The instance whose backups to push.", completion: InstanceCompletion.instances)
    var instance: String

    @Argument(help: "The backup to push (default: the newest usable one).")
    var backup: String?

    @Flag(help: "Push every local backup the remote does not have.")
    var all = false

    @Option(help: ArgumentHelp("Only this [[offsite]] remote (default: every one).", valueName: "name"))
    var remote: String?

    func validate() throws {
        if all && backup != nil { throw ValidationError("Give a backup name or --all, not both.") }
    }

    func run() throws {
        let console = Console(global, selection)
        try console.run { runtime in try console.eachDatabase(instance, runtime, naming: backup) { console, runtime in
            let results = try RemoteBackups(runtime).push(instance: instance, backup: backup, all: all, remote: remote)
            if global.json {
                struct Item: Encodable { let name: String; let remote: String; let key: String; let bytes: Int64; let uploaded: Bool; let seconds: Double }
                return try console.json(results.map { Item(name: $0.name, remote: $0.remote, key: $0.key, bytes: $0.bytes, uploaded: $0.uploaded, seconds: $0.seconds) })
            }
            for result in results {
                console.line(result.uploaded
                    ? console.green("✓") + " \(result.name) → \(result.remote) (\(Console.size(result.bytes)) in \(String(format: "%.1f", result.seconds)) s): \(result.key)"
                    : "= \(result.name): already in \(result.remote) with the same checksum")
            }
        } }
    }
}
