import ArgumentParser
import Foundation
import Orchestrator
import Support

struct Baseline: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Adopt a database another tool migrated: record migrations up to N as applied, without running them.",
        discussion: """
            First checks that the database holds every table, column and index those migrations \
            create; records nothing otherwise (65, naming what is missing).
            Example: deployctl baseline prod --through 12
            """)

    @OptionGroup var global: GlobalOptions

    @OptionGroup var selection: DatabaseOption

    @Argument(help: "The instance whose database to adopt.", completion: InstanceCompletion.instances)
    var instance: String

    @Option(help: "The number of the last migration the other tool applied.")
    var through: Int

    func run() throws {
        let console = Console(global, selection)
        try console.run { runtime in
            let change = try HistoryChanges(runtime).baseline(instance: instance, through: through)
            if global.json { return try console.json(change) }
            for line in change.checked { console.line("✓ \(line)") }
            console.line(change.migrations.isEmpty ? "Nothing recorded." : "Recorded as applied, without running them: \(change.migrations.joined(separator: ", "))")
        }
    }
}

struct Accept: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Record a deliberate edit of an applied migration file (its new checksum), after showing it.",
        discussion: """
            For a file edited on purpose after it was applied (a comment, a fix that changes no \
            result). The database is not changed but for the checksum in deployctl_migrations. \
            Asks on a terminal; needs --yes otherwise.
            Example: deployctl accept prod 0001_cashback_tables
            """)

    @OptionGroup var global: GlobalOptions

    @OptionGroup var selection: DatabaseOption

    @Argument(help: "The instance.", completion: InstanceCompletion.instances)
    var instance: String

    @Argument(help: "The migration, e.g. 0001_cashback_tables (its file name, 0001_cashback_tables.sql, too).")
    var migration: String

    @Flag(help: "Do not ask for confirmation (required when stdin is not a terminal).")
    var yes = false

    func run() throws {
        let console = Console(global, selection)
        try console.run { runtime in
            let prepared = try HistoryChanges(runtime).prepareAccept(instance: instance, migration: migration)
            let (applied, file) = (prepared.applied, prepared.file)
            do {
                console.line("\(file.fileName) was applied with sha256 \(applied.prefix(12)); the file now has \(file.sha256.prefix(12)). It now reads:")
                for line in file.sql.split(separator: "\n", omittingEmptySubsequences: false) { console.line("  | \(line)") }
                if let down = file.downSQL {
                    console.line("and its down part:")
                    for line in down.split(separator: "\n", omittingEmptySubsequences: false) { console.line("  | \(line)") }
                }
                try console.confirm("Record this file as the applied \(file.key)?", yes: yes,
                                    notTerminal: Failure(.confirmationNeeded, "accept needs --yes when stdin is not a terminal; nothing was recorded",
                                                         hint: "review the file, then run again with --yes"),
                                    declined: Failure(.declined, "nothing was recorded"))
            }
            try runtime.failpoints.hit(.confirm)
            let change = try prepared.perform()
            if global.json { return try console.json(change) }
            console.line("✓ Recorded the edited \(change.migrations[0]) (\(change.checked[0]))")
        }
    }
}
