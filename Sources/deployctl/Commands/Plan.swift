import ArgumentParser
import Orchestrator

struct Plan: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Show state, pending migrations, each statement's classification and the safety claims; change nothing.")

    @OptionGroup var global: GlobalOptions

    @Argument(help: "The instance to plan for.")
    var instance: String

    @Flag(help: "Accept non-additive statements in files that say allow-destructive.")
    var allowDestructive = false

    func run() throws {
        let console = Console(global)
        try console.run { runtime in
            let plan = try runtime.plan(instance: instance)
            if global.json {
                try console.json(plan)
            } else {
                console.line("Existing tables: " + plan.existingTables.keys.sorted().map { "\($0) (\(plan.existingTables[$0]!) rows)" }.joined(separator: ", "))
                console.line("Journal mode: \(plan.journalMode)")
                console.line("Applied migrations: \(plan.applied.isEmpty ? "none" : plan.applied.map(\.key).joined(separator: ", "))")
                console.line("Pending migrations: \(plan.pending.isEmpty ? "none" : plan.pending.joined(separator: ", "))")
                for statement in plan.statements {
                    let mark = statement.additive ? "✓" : "✗"
                    console.line("  \(mark) \(statement.migration) #\(statement.index): \(statement.actions.joined(separator: ", "))\(statement.problems.isEmpty ? "" : " — " + statement.problems.joined(separator: "; "))")
                }
                if !plan.pending.isEmpty {
                    console.line("Tables to create: \(plan.tablesToCreate.isEmpty ? "none" : plan.tablesToCreate.joined(separator: ", "))")
                    console.line("Tables already existing: \(plan.tablesAlreadyExisting.isEmpty ? "none" : plan.tablesAlreadyExisting.joined(separator: ", "))")
                    console.line("Safety claims:")
                    for claim in plan.claims {
                        console.line("  \(claim.proven ? "✓" : "✗") \(claim.claim): \(claim.proven ? "proven" : "NOT proven") — \(claim.how)")
                    }
                }
                console.line("Nothing was changed.")
            }
            try runtime.refuseUnlessAdditive(instance: instance, plan: plan, allowDestructive: allowDestructive)
        }
    }
}
