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

    @OptionGroup var selection: DatabaseOption

    @Argument(help: "The instance to plan for.", completion: InstanceCompletion.instances)
    var instance: String

    @Flag(help: "Accept destructive statements in files that say allow-destructive.")
    var allowDestructive = false

    func run() throws {
        let console = Console(global, selection)
        try console.run { runtime in
            let plans = try Planning(runtime).plans(instance: instance, allowDestructive: allowDestructive)
            let refusal = plans.lazy.compactMap(\.refusal).first
            if global.json {
                // One document: the plan, with an error member when it is refused; for an
                // instance of several databases, one such document per database.
                if plans.count == 1, plans[0].database == nil {
                    try console.json(PlanDocument(plan: plans[0].plan, mode: plans[0].mode, refusal: plans[0].refusal))
                } else {
                    try console.json(PlanSetDocument(plans: plans))
                }
                if let refusal { throw ExitCode(Console.exitCode(refusal.kind)) }
                return
            }
            for (index, plan) in plans.enumerated() {
                if let name = plan.database {
                    console.line((index == 0 ? "" : "\n") + "Database \(name) (\(plan.path)):")
                }
                for line in Console.planLines(plan.plan) { console.line(console.fit(line)) }
                if let line = PlanDocument.modeLine(plan.mode, plan: plan.plan) { console.line(line) }
                if plan.database != nil, let refusal = plan.refusal { console.line(console.fit("Refused: " + refusal.message.replacingOccurrences(of: "\n", with: " "))) }
            }
            console.line("Nothing was changed.")
            if let refusal { throw refusal }
        }
    }
}

/// `plan --json` for an instance of several databases: `databases`, one plan document each
/// (with `database` and `path`), and the set's `class` (the strictest) and `pending`
/// (`database/migration`).
struct PlanSetDocument: Encodable {
    let plans: [DatabasePlan]

    struct Member: Encodable {
        let plan: DatabasePlan
        enum CodingKeys: String, CodingKey { case database, path }
        func encode(to encoder: Encoder) throws {
            try PlanDocument(plan: plan.plan, mode: plan.mode, refusal: plan.refusal).encode(to: encoder)
            var container = encoder.container(keyedBy: CodingKeys.self)
            try container.encode(plan.database, forKey: .database)
            try container.encode(plan.path, forKey: .path)
        }
    }

    enum CodingKeys: String, CodingKey { case databases, pending, classification = "class" }

    func encode(to encoder: Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(plans.map(Member.init), forKey: .databases)
        try container.encode(plans.flatMap { plan in plan.plan.pending.map { "\(plan.database ?? "")/\($0)" } }, forKey: .pending)
        let pending = plans.filter { !$0.plan.pending.isEmpty }
        if let strictest = pending.map(\.plan.classification).max() { try container.encode(strictest.rawValue, forKey: .classification) }
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
