import ArgumentParser
import Backup
import Foundation
import Orchestrator
import Support

struct BackupsRemove: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "remove",
        abstract: "Retire one backup of any label (a damaged one included) and its manifest.",
        discussion: """
            Only deployctl backups are removed (a name from 'backups list'); the manifest a backup \
            removed by hand left behind is retired the same way. A backup an unfinished deploy \
            refers to is refused. Asks on a terminal; --yes is needed otherwise.

            Examples:
              deployctl backups remove prod lending_app_prod_pre_cashback_tables_20261124_101500.db
              deployctl backups remove prod lending_app_prod_snapshot_20261124_101500.db.gz --yes
            """)

    @OptionGroup var global: GlobalOptions

    @OptionGroup var selection: DatabaseOption

    @Argument(help: "The instance the backup belongs to.")
    var instance: String

    @Argument(help: "The backup to remove: a bare name from 'backups list'.")
    var backup: String

    @Flag(help: "Do not ask for confirmation (required when stdin is not a terminal).")
    var yes = false

    func run() throws {
        let console = Console(global, selection)
        try console.run { runtime in
            // Named without --database: the database whose backups hold it.
            let runtime = try runtime.holding(backup, of: instance)
            let prepared = try PreparedRemoval.prepare(runtime, instance: instance, backup: backup)
            do {
                let what = prepared.entry.map { "backup \($0.name) (label \($0.label), created \(Console.time($0.createdAt)) UTC, \(Console.size($0.bytes)), \($0.status))" }
                    ?? "the manifest \(backup).json, whose backup file is gone"
                try console.confirm("Remove \(what)? It cannot be restored afterwards.", yes: yes,
                                    notTerminal: Failure(.confirmationNeeded, "removing \(what) needs --yes when stdin is not a terminal; nothing was removed",
                                                         hint: "deployctl backups remove \(instance) \(backup) --yes"),
                                    declined: Failure(.declined, "nothing was removed"))
            }
            try runtime.failpoints.hit(.confirm)
            let removed = try prepared.perform()
            if global.json {
                struct Document: Encodable { let removed: String; let label: String?; let last_check: String?; let manifest_only: Bool }
                return try console.json(Document(removed: removed.name, label: removed.label, last_check: removed.status, manifest_only: removed.manifestOnly))
            }
            console.line(removed.manifestOnly ? "removed the manifest \(removed.name).json (its backup file was already gone)"
                                              : "removed \(removed.name) and its manifest")
        }
    }
}
