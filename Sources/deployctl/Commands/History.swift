import ArgumentParser
import Orchestrator
import Support

struct History: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "List past deploys of an instance, newest first.",
        discussion: """
            Each deploy with its outcome, migrations, class and snapshot; a failed one with its reason.
            Example: deployctl history prod --json
            """)

    @OptionGroup var global: GlobalOptions

    @OptionGroup var selection: DatabaseOption

    @Argument(help: "The instance.", completion: InstanceCompletion.instances)
    var instance: String

    @Argument(help: "One deploy's id (the DEPLOY column): that deploy alone; with --json its report object.")
    var deployId: String?

    /// A set deploy's snapshots, one per database: `primary: <name>, cache: <name>, …`.
    static func setSnapshots(_ report: DeployReport) -> String? {
        let taken = (report.databases ?? []).compactMap { database in database.snapshot.map { "\(database.database ?? ""): \($0)" } }
        return taken.isEmpty ? nil : taken.joined(separator: ", ")
    }

    func run() throws {
        let console = Console(global, selection)
        try console.run { runtime in
            var reports = try Inspection(runtime).history(instance: instance)
            if let deployId {
                guard let report = reports.first(where: { $0.deployId == deployId }) else {
                    throw Failure(.deployNotFound, "instance \(instance) has no deploy \(deployId)",
                                  hint: reports.isEmpty ? nil : "deployctl history \(instance) \(reports[0].deployId)")
                }
                if global.json { try console.json(report); return }
                reports = [report]
            }
            if global.json { try console.json(reports); return }
            guard !reports.isEmpty else { console.line("No deploys of \(instance) yet."); return }
            console.line(Console.table(["DEPLOY", "STARTED (UTC)", "OUTCOME", "MIGRATIONS", "CLASS", "SNAPSHOT"], reports.map {
                [$0.deployId, Console.time($0.startedAt), $0.outcome.rawValue, $0.pending.isEmpty ? "-" : $0.pending.joined(separator: ", "),
                 $0.classification ?? "-", $0.snapshot ?? Self.setSnapshots($0) ?? "-"]
            }))
            // Why each failure failed, in full, under the table.
            for report in reports where report.error != nil {
                let reason = report.error!.split(separator: "\n").map { $0.trimmingCharacters(in: .whitespaces) }.joined(separator: " ")
                console.line("  \(report.deployId) \(report.outcome.rawValue): \(reason)")
            }
        }
    }
}
