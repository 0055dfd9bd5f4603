import ArgumentParser
import Orchestrator
import Support

struct Verify: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Check the live database: integrity, and applied migrations matching their files.")

    @OptionGroup var global: GlobalOptions

    @Argument(help: "The instance to check.")
    var instance: String

    func run() throws {
        let console = Console(global)
        try console.run { runtime in
            let result = try runtime.verifyLive(instance: instance)
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
                throw Failure(.badData, "the live database of \(instance) failed verification: \(result.problems.first!)",
                              hint: "see the lines above; restore from a backup if the database is damaged")
            }
        }
    }
}
