import ArgumentParser
import Foundation
import Orchestrator

struct Init: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Adopt an existing database: write its instance.toml and add it to deploy.toml.",
        discussion: """
            Reads the database's journal mode and size (it is never opened for writing), writes \
            instances/<instance>/instance.toml with backups beside it (never in the database's folder), \
            the hourly timer's retention, max_backup_age and gzip, adds the instance to deploy.toml's \
            order, and prints the next commands: the first snapshot and the timers to enable (with a \
            drop-in when the units' defaults do not fit). An existing instance is never overwritten.
            Without --root or DEPLOYCTL_ROOT, the root is the current directory when it holds instances/, \
            else /var/lib/deployctl (the package's root).
            Example: sudo -u deployctl deployctl init app --database /srv/app/data/app.db
            """)

    @OptionGroup var global: GlobalOptions

    @Argument(help: "The new instance's name ([a-z0-9][a-z0-9_-]*).")
    var instance: String

    @Option(help: ArgumentHelp("The application's existing SQLite database.", valueName: "path"))
    var database: String

    @Option(help: ArgumentHelp("The backups folder (default: backups/ in the instance folder); never the database's folder or inside it.", valueName: "dir"))
    var backups: String?

    func run() throws {
        let console = Console(global)
        try console.run { runtime in
            let result = try InstanceSetup(runtime).create(InitRequest(name: instance, database: database, backups: backups,
                                                              currentDirectory: FileManager.default.currentDirectoryPath))
            if global.json { try console.json(result); return }
            console.line("✓ Wrote \(result.config)")
            console.line("  database \(result.database) (\(result.journalMode), \(Console.size(result.bytes)), owned by \(result.owner))")
            console.line("  backups  \(result.backups)")
            console.line(result.addedToOrder ? "✓ '\(instance)' is in the order of \(result.deployConfig)"
                                             : "  \(result.deployConfig) has no order: 'deploy all' takes every instance folder")
            if let dropIn = result.dropIn {
                console.line("")
                console.line("The units run as user deployctl from \(Workspace.installedRoot); for this instance they need this drop-in")
                console.line("(a WAL database is read through its -shm, which must be writable), written by the third command below:")
                for line in dropIn.split(separator: "\n") { console.line("  \(line)") }
            }
            console.line("")
            console.line("Next:")
            for command in result.next { console.line("  \(command)") }
        }
    }
}
