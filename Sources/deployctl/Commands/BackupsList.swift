import ArgumentParser
import Orchestrator

struct BackupsList: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "list", abstract: "List an instance's backups, newest first.")

    @OptionGroup var global: GlobalOptions

    @Argument(help: "The instance whose backups to list.")
    var instance: String

    @Option(help: "Only backups with this label.")
    var label: String?

    func run() throws {
        let console = Console(global)
        try console.run { runtime in
            let entries = try runtime.listBackups(instance: instance, label: label)
            if global.json {
                try console.json(entries.map(BackupDocument.init))
                return
            }
            if entries.isEmpty {
                console.line("No backups for \(instance)\(label.map { " with label \($0)" } ?? "").")
            } else {
                console.line(Console.table(
                    ["NAME", "CREATED (UTC)", "SIZE", "GZIP", "LABEL", "STATUS"],
                    entries.map { [$0.name, Console.time($0.createdAt), Console.size($0.bytes), $0.compressed ? "yes" : "no", $0.label, $0.status] }))
            }
            let others = try runtime.otherBackupFiles(instance: instance)
            if !others.isEmpty {
                console.line("\nNot deployctl backups (left alone: never restored, verified or removed):")
                for other in others { console.line("  \(other.name): \(other.reason)") }
            }
        }
    }
}
