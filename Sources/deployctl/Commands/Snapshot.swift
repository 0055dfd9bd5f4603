import ArgumentParser
import Backup
import Orchestrator

struct Snapshot: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Take one online snapshot of an instance's database, with its manifest.")

    @OptionGroup var global: GlobalOptions

    @Argument(help: "The instance to snapshot.")
    var instance: String

    @Flag(inversion: .prefixedNo, help: "Store the snapshot gzip-compressed (default: the instance config's backups.gzip).")
    var gzip: Bool?

    @Option(help: "The label in the backup's name (default: snapshot).")
    var label: String?

    @Option(help: "After success, keep only the newest N backups with this label.")
    var keepLast: Int?

    @Flag(help: "Run SQLite's quick_check on the copy before keeping it.")
    var verify = false

    func validate() throws {
        if let keepLast, keepLast < 1 { throw ValidationError("--keep-last must be at least 1.") }
    }

    func run() throws {
        let console = Console(global)
        try console.run { runtime in
            let outcome = try runtime.snapshot(instance: instance, gzip: gzip, label: label, keepLast: keepLast, verify: verify)
            if let crashed = outcome.crashedHolder {
                console.note("warning: a previous run (PID \(crashed.pid), \(crashed.command)) ended without releasing the instance lock; it crashed or was killed")
            }
            if global.json {
                try console.json(SnapshotDocument(backup: BackupDocument(outcome.backup), pruned: outcome.pruned.map(\.name)))
                return
            }
            console.line("✓ Snapshot \(outcome.backup.name) (\(Console.size(outcome.backup.bytes)))")
            console.line("  \(outcome.backup.path)")
            for entry in outcome.pruned { console.line("  pruned \(entry.name)") }
        }
    }
}

struct SnapshotDocument: Encodable {
    let backup: BackupDocument
    let pruned: [String]
}
