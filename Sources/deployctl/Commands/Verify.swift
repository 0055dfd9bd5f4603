import ArgumentParser
import Orchestrator
import Support

struct Verify: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Check the live database: integrity, and applied migrations matching their files.",
        discussion: """
            Reads only. A migration file edited after it was applied is reported as a changed file \
            (the database is fine): 'deployctl accept' records a deliberate edit.
            Example: deployctl verify prod
            """)

    @OptionGroup var global: GlobalOptions

    @OptionGroup var selection: DatabaseOption

    @Argument(help: "The instance to check.", completion: InstanceCompletion.instances)
    var instance: String

    func run() throws {
        let console = Console(global, selection)
        try console.run { runtime in try console.eachDatabase(instance, runtime) { console, runtime in
            let result = try Inspection(runtime).verify(instance: instance)
            if global.json {
                try console.json(result)
            } else {
                console.line("Database: \(result.database)")
                console.line("Applied: \(result.applied.isEmpty ? "none" : result.applied.joined(separator: ", "))")
                console.line("Pending: \(result.pending.isEmpty ? "none" : result.pending.joined(separator: ", "))")
                for problem in result.problems { console.line("✗ \(problem)") }
                if result.ok { console.line("✓ quick_check, foreign_key_check and migration checksums good") }
            }
            if !result.ok {
                // A changed migration file is not a damaged database: say which it is.
                let damaged = result.damaged
                throw Failure(damaged ? .databaseDamaged : .migrationChanged, damaged ? "the live database of \(instance) failed verification: \(result.problems.first!)"
                                                : "the database of \(instance) is sound, but \(result.problems.first!)",
                              hint: damaged ? "see the lines above; restore from a backup if the database is damaged"
                                            : "the database needs nothing: put the applied version of the file back and make the change a new migration, or record a deliberate edit with the accept command named above")
            }
        } }
    }
}
