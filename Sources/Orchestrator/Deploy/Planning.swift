import Foundation
import Migration
import SQLite
import Support

/// `deployctl plan`: the plan on a copy, how `deploy` would run it, and the refusals a deploy
/// would meet — one set of decisions shared with the deploy's own preflight.
public struct Planning: Sendable {
    let runtime: Runtime

    public init(_ runtime: Runtime) { self.runtime = runtime }

    /// `deployctl plan`: per database (the instance's one, or each `[[database]]`, or the one
    /// `--database` names): state, pending migrations, classification and safety claims, how a
    /// deploy would run it, and the refusal it would meet (reported, not thrown). Changes
    /// nothing (the databases' bytes and mtimes stay the same).
    /// - Throws: `Failure` for config, missing database, bad migrations.
    public func plans(instance name: String, allowDestructive: Bool) throws -> [DatabasePlan] {
        try runtime.instanceSet(name, for: .readDatabase).selectedDatabases.map { instance in
            try instance.ensureDatabase()
            try SQLite.Connection.checkIsDatabase(instance.config.databasePath)
            let (files, plan) = try {
                runtime.progress(.working(.planning))
                defer { runtime.progress(.ended(announce: false)) }
                return try instance.makePlan()
            }()
            var refusal: Failure?
            do {
                try Self.checkAllowed(plan, files: files, allowDestructive: allowDestructive)
            } catch let failure as Failure {
                refusal = failure
            }
            return DatabasePlan(database: instance.config.databaseName, path: instance.config.databasePath, plan: plan,
                                mode: try Self.deployMode(instance, files: files, plan: plan),
                                refusal: refusal ?? Self.verifyQueryRefusal(plan, instance: name))
        }
    }

    /// How `deployctl deploy` would run `plan` (shown by `plan`): in one transaction, online,
    /// or refused, with the reason.
    static func deployMode(_ instance: InstanceContext, files: [MigrationFile], plan: MigrationPlan) throws -> DeployMode {
        let config = instance.config
        guard !plan.pending.isEmpty else { return .nothingPending }
        if let command = config.command { return .command(command.migrate) }
        guard let (verdict, asked) = try instance.onlineDecision(files: files, plan: plan, askedByFlag: false) else {
            return .oneTransaction(budgetMilliseconds: config.hooks.stop == nil ? config.maxWriteLock.milliseconds : nil)
        }
        switch verdict {
        case .online(let rebuild): return .online(table: rebuild.table, asked: asked)
        case .offline(let why):
            return .refused(asked ? "an online rebuild is asked for ('-- online'), but \(why)" : instance.writeLockRefusal(plan, offlineBecause: why).message)
        }
    }

    /// A migration's `-- verify:` query that was false on the plan's copy fails the deploy at
    /// rehearse (exit 1, nothing changed): `plan` and `deploy --dry-run` report it the same way,
    /// and a deploy stops at its plan stage, before its snapshot.
    public static func verifyQueryRefusal(_ plan: MigrationPlan, instance: String) -> Failure? {
        guard !plan.verifyFailures.isEmpty else { return nil }
        return Failure(.migrationVerifyQueryFalse, "on a copy of the database, after the pending migrations: \(plan.verifyFailures.joined(separator: "; ")); a deploy would fail the same way (exit 1) and change nothing",
                       hint: "fix the migration or its verify query, then check again with 'deployctl plan \(instance)'")
    }

    /// Throws the refusal for a destructive migration unless both its file and the command allow
    /// it. Additive and preserving migrations need no flag.
    /// - Throws: `Failure` `migration.destructive_refused` naming each destructive statement and what the rehearsal
    ///   copy shows, per table and column.
    static func checkAllowed(_ plan: MigrationPlan, files: [MigrationFile], allowDestructive: Bool) throws {
        let bad = plan.migrations.filter { $0.classification == .destructive }
        guard !bad.isEmpty else { return }
        // A framework command's migrations have no file of deployctl's to say so: the flag alone allows them.
        let filesAllow = bad.allSatisfy { summary in summary.format == MigrationSummary.commandFormat || files.contains { $0.key == summary.migration && $0.allowDestructive } }
        if filesAllow && allowDestructive { return }
        var lines = [String]()
        for summary in bad {
            lines.append("  \(summary.migration) is destructive:")
            for statement in plan.statements where statement.migration == summary.migration && statement.classification == .destructive {
                lines.append("    statement \(statement.index): \(statement.problems.joined(separator: ", ")) — \(statement.sql)")
            }
            for fact in summary.evidence { lines.append("    on the rehearsal copy: \(fact)") }
        }
        throw Failure(.migrationDestructiveRefused, "refused: the pending migrations are destructive:\n" + lines.joined(separator: "\n"),
                      hint: filesAllow ? "run again with --allow-destructive if this is intended"
                                       : "add '-- allow-destructive' to the migration file and pass --allow-destructive, if this is intended")
    }
}

extension InstanceContext {
    /// The migrations folder's files and the plan for the instance's database. Reads only.
    /// `forDeploy` leaves claim 5 to the deploy's own in-transaction proof.
    /// A database with a `migrate_command` gets its pending list from `pending_command` (its
    /// output in `outputFolder`, else a temp folder) and, unless `forDeploy`, its class from the
    /// command run on a copy (`commandPlan`).
    func makePlan(forDeploy: Bool = false, outputFolder: String? = nil) throws -> (files: [MigrationFile], plan: MigrationPlan) {
        if let command = config.command { return ([], try commandPlan(command, rehearse: !forDeploy, outputFolder: outputFolder)) }
        let files = try MigrationFile.loadAll(folder: try migrationsFolder)
        // The copy goes into the instance's backups folder (beside the database before the first
        // backup), where the free-space preflight looks and `status` finds a dead run's leftover.
        var isFolder: ObjCBool = false
        let scratch = FileManager.default.fileExists(atPath: config.backupsFolder, isDirectory: &isFolder) && isFolder.boolValue
            ? config.backupsFolder : (config.databasePath as NSString).deletingLastPathComponent
        if !runtime.failpoints.skips(.freeSpace) {
            var needs = SpaceNeeds(instance: config.name)
            needs.add(liveBytes, in: scratch, for: "the plan's copy of the database")
            try needs.check()
        }
        let interruption = runtime.interruption
        do {
            let plan = try Planner().plan(livePath: config.databasePath, files: files, scratchFolder: scratch, busyTimeout: config.busyTimeout,
                                          fingerprintCopy: !forDeploy, stop: { interruption() != nil })
            return (files, plan)
        } catch let error as SQLiteError where error.interrupted {
            try runtime.checkInterruption("the plan on a copy was stopped; nothing was changed")
            throw error
        } catch var changed as MigrationFileChanged {
            changed.instance = config.name
            throw changed
        }
    }

    /// Whether the plan's estimate of the writes a deploy blocks (statements and in-transaction
    /// checks as measured on its copy) exceeds `max_write_lock`.
    /// Whether a deploy of `plan` is to run online, and why: nil when it is not asked for
    /// (`--online`, `-- online`) and the write-lock estimate is within `max_write_lock` (or a
    /// stop hook stops the application); else the verdict and whether it was asked for.
    func onlineDecision(files: [MigrationFile], plan: MigrationPlan, askedByFlag: Bool) throws -> (verdict: OnlineVerdict, asked: Bool)? {
        let pending = files.filter { plan.pending.contains($0.key) }
        guard !pending.isEmpty else { return nil }
        let asked = askedByFlag || pending.contains { $0.online }
        let overBudget = config.hooks.stop == nil && exceedsWriteLockBudget(plan)
        guard asked || overBudget else { return nil }
        return (try OnlineRebuildPlan.verdict(pending, plan: plan, databasePath: config.databasePath, busyTimeout: config.busyTimeout), asked)
    }

    func exceedsWriteLockBudget(_ plan: MigrationPlan) -> Bool {
        !plan.pending.isEmpty && plan.writeLockEstimateMilliseconds > config.maxWriteLock.milliseconds
    }

    /// The refusal of a deploy over `max_write_lock` that cannot run online (`offlineBecause`
    /// says why): `.usage` with the estimate, the budget and what to do.
    func writeLockRefusal(_ plan: MigrationPlan, offlineBecause: String) -> Failure {
        let budget = config.maxWriteLock.milliseconds
        let estimate = plan.writeLockEstimateMilliseconds
        return Failure(.migrationWriteLockOverBudget, "refused: the deploy would block the application's writes for about \(String(format: "%.0f", estimate)) ms "
                      + "(statements \(String(format: "%.0f", plan.statementMilliseconds)) ms and checks \(String(format: "%.0f", plan.checkMilliseconds)) ms on the plan's copy), "
                      + "more than max_write_lock allows (\(String(format: "%.0f", budget)) ms; busy timeout \(String(format: "%.0f", config.busyTimeout.milliseconds)) ms)"
                      + ", and it cannot run online: \(offlineBecause); nothing was changed",
                      hint: "stop the application during the deploy (hooks.stop and hooks.start in \(config.file)), deploy at a quiet time with a larger "
                      + "database.max_write_lock_ms there (keep it under the application's own busy timeout), or split the migration")
    }
}

/// One database's plan, as `deployctl plan` shows it.
public struct DatabasePlan: Sendable {
    /// The database's name in an instance of several (`[[database]]`); nil for one.
    public let database: String?
    public let path: String
    public let plan: MigrationPlan
    public let mode: DeployMode
    /// The refusal a deploy would meet (destructive without the flags, a false verify query).
    public let refusal: Failure?
}

/// How a deploy would run a plan (`Planning.deployMode`).
public enum DeployMode: Sendable, Equatable {
    case nothingPending
    /// In one write transaction; nil budget: the stop hook stops the application first.
    case oneTransaction(budgetMilliseconds: Double?)
    /// As an online rebuild of `table`; `asked`: by `-- online`, else the estimate is over budget.
    case online(table: String, asked: Bool)
    /// Refused before the snapshot: why.
    case refused(String)
    /// By the framework's own `migrate_command` on the live database, proven equal to its
    /// rehearsal on a copy of the snapshot (docs/framework-commands.md).
    case command(String)
}
