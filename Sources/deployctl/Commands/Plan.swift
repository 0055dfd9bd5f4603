import ArgumentParser
import Foundation
import Migration
import Orchestrator
import Support

struct Plan: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Show state, pending migrations, each statement's class and the safety claims; change nothing.",
        discussion: """
            Each pending migration is classified twice, by what its statements may do (SQLite's authorizer) \
            and by what they did on a copy of the database (rows matched by primary key or rowid, \
            column by column); the stricter class wins:
              additive     only new objects (CREATE TABLE cashback_transaction)
              preserving   existing tables gain columns, indexes or rows, or are rebuilt, and no \
            existing row or value is lost or changed (ALTER TABLE loan ADD COLUMN cashback_rate REAL)
              destructive  an existing row removed, value changed, or column or table dropped \
            (ALTER TABLE loan DROP COLUMN note: "loan.note: column dropped, 5000 non-NULL values lost")
            Additive and preserving migrations deploy without flags; a destructive one needs \
            '-- allow-destructive' in its file and --allow-destructive on the command.
            Example: deployctl plan prod --json
            """)

    @OptionGroup var global: GlobalOptions

    @Argument(help: "The instance to plan for.", completion: InstanceCompletion.instances)
    var instance: String

    @Flag(help: "Accept destructive statements in files that say allow-destructive.")
    var allowDestructive = false

    func run() throws {
        let console = Console(global)
        try console.run { runtime in
            let plan = try Planning(runtime).plan(instance: instance)
            let mode = try Planning(runtime).deployMode(instance: instance, plan: plan)
            var refusal: Failure?
            do {
                try Planning(runtime).refuseUnlessAllowed(plan: plan, allowDestructive: allowDestructive)
            } catch let failure as Failure {
                refusal = failure
            }
            refusal = refusal ?? Planning.verifyQueryRefusal(plan, instance: instance)
            if global.json {
                // One document: the plan, with an error member when it is refused.
                try console.json(PlanDocument(plan: plan, mode: mode, refusal: refusal))
                if let refusal { throw ExitCode(Console.exitCode(refusal.kind)) }
                return
            }
            for line in Console.planLines(plan) { console.line(console.fit(line)) }
            if let line = PlanDocument.modeLine(mode, plan: plan) { console.line(line) }
            console.line("Nothing was changed.")
            if let refusal { throw refusal }
        }
    }
}

/// `plan --json`: the plan's members, and `error` (message, kind, hint, exit code) when refused.
struct PlanDocument: Encodable {
    let plan: MigrationPlan
    let mode: DeployMode
    let refusal: Failure?

    enum CodingKeys: String, CodingKey { case error, deploy }

    /// `deploy` in `--json`: how the deploy would run (`transaction`, `online`, `refused`).
    struct ModeDocument: Encodable { let mode: String; let table: String?; let reason: String? }

    /// The plan's line saying how `deploy` would run it, or nil with nothing pending.
    static func modeLine(_ mode: DeployMode, plan: MigrationPlan) -> String? {
        switch mode {
        case .nothingPending: return nil
        case .oneTransaction(let budget):
            return "Deploy: in one transaction" + (budget.map { " (about \(String(format: "%.0f", plan.writeLockEstimateMilliseconds)) ms of blocked writes, within max_write_lock \(String(format: "%.0f", $0)) ms)" }
                                                    ?? " (the stop hook stops the application first)")
        case .online(let table, let asked):
            return "Deploy: online — \(table) is rebuilt while the application writes, then a brief cut-over (" + (asked ? "asked by '-- online'" : "the one-transaction deploy would block writes past max_write_lock") + ")"
        case .refused(let why): return "Deploy: refused — \(why)"
        case .command(let command): return "Deploy: by migrate_command '\(command)' on the live database, proven equal to its rehearsal on a copy of the snapshot, else undone from the snapshot"
        }
    }

    struct ErrorDocument: Encodable { let message: String; let code: String; let kind: String; let hint: String?; let exit_code: Int32 }

    func encode(to encoder: Encoder) throws {
        try plan.encode(to: encoder)
        var container = encoder.container(keyedBy: CodingKeys.self)
        switch mode {
        case .nothingPending: break
        case .oneTransaction: try container.encode(ModeDocument(mode: "transaction", table: nil, reason: nil), forKey: .deploy)
        case .online(let table, _): try container.encode(ModeDocument(mode: "online", table: table, reason: nil), forKey: .deploy)
        case .refused(let why): try container.encode(ModeDocument(mode: "refused", table: nil, reason: why), forKey: .deploy)
        case .command: try container.encode(ModeDocument(mode: "command", table: nil, reason: nil), forKey: .deploy)
        }
        if let refusal {
            try container.encode(ErrorDocument(message: refusal.message, code: refusal.code.rawValue, kind: refusal.kind.rawValue, hint: refusal.hint,
                                               exit_code: Console.exitCode(refusal.kind)), forKey: .error)
        }
    }
}
