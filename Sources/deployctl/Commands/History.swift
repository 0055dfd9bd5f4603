import ArgumentParser
import Orchestrator

struct History: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "List past deploys of an instance, newest first.",
        discussion: """
            Each deploy with its outcome, migrations, class and snapshot; a failed one with its reason.
            Example: deployctl history prod --json
            """)

    @OptionGroup var global: GlobalOptions

    @Argument(help: "The instance.", completion: InstanceCompletion.instances)
    var instance: String

    func run() throws {
        let console = Console(global)
        try console.run { runtime in
            let reports = try Inspection(runtime).history(instance: instance)
            if global.json { try console.json(reports); return }
            guard !reports.isEmpty else { console.line("No deploys of \(instance) yet."); return }
            console.line(Console.table(["DEPLOY", "STARTED (UTC)", "OUTCOME", "MIGRATIONS", "CLASS", "SNAPSHOT"], reports.map {
                [$0.deployId, Console.time($0.startedAt), $0.outcome.rawValue, $0.pending.isEmpty ? "-" : $0.pending.joined(separator: ", "),
                 $0.classification ?? "-", $0.snapshot ?? "-"]
            }))
            // Why each failure failed, in full, under the table.
            for report in reports where report.error != nil {
                let reason = report.error!.split(separator: "\n").map { $0.trimmingCharacters(in: .whitespaces) }.joined(separator: " ")
                console.line("  \(report.deployId) \(report.outcome.rawValue): \(reason)")
            }
        }
    }
}
