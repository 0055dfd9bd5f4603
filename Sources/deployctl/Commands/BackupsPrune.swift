import ArgumentParser
import Orchestrator

struct BackupsPrune: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "prune",
        abstract: "Remove old backups: per label keep the newest N (never the newest of a pre_* label).")

    @OptionGroup var global: GlobalOptions

    @Argument(help: "The instance whose backups to prune.")
    var instance: String

    @Option(help: "How many backups to keep per label.")
    var keepLast: Int

    @Option(help: "Only prune backups with this label.")
    var label: String?

    @Flag(help: "Show what would be removed and remove nothing.")
    var dryRun = false

    func validate() throws {
        if keepLast < 0 { throw ValidationError("--keep-last must be 0 or more.") }
    }

    func run() throws {
        let console = Console(global)
        try console.run { runtime in
            let removed = try runtime.prune(instance: instance, keepLast: keepLast, label: label, dryRun: dryRun)
            if global.json {
                struct Document: Encodable { let dry_run: Bool; let removed: [String] }
                try console.json(Document(dry_run: dryRun, removed: removed.map(\.name)))
                return
            }
            let verb = dryRun ? "would remove" : "removed"
            for entry in removed { console.line("\(verb) \(entry.name)") }
            console.line("\(removed.count) backup(s) \(verb).")
        }
    }
}
