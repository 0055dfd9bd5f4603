import Foundation
import Migration
import SQLite
import Support

extension Runtime {
    /// The migrations folder's files and the plan for `config`'s database. Reads only.
    /// `forDeploy` leaves claim 5 to the deploy's own in-transaction proof.
    func makePlan(_ config: InstanceConfig, forDeploy: Bool = false) throws -> (files: [MigrationFile], plan: MigrationPlan) {
        let files = try MigrationFile.loadAll(folder: try workspace.deployConfig().migrationsFolder)
        let scratch = NSTemporaryDirectory()
        let plan = try Planner().plan(livePath: config.databasePath, files: files, scratchFolder: scratch, busyTimeout: config.busyTimeout,
                                      fingerprintCopy: !forDeploy)
        return (files, plan)
    }

    /// `deployctl plan`: state, pending migrations, classification and safety claims; changes
    /// nothing (the database's bytes and mtime stay the same). Refusal of a destructive plan is
    /// reported in the result, not thrown.
    /// - Throws: `Failure` for config, missing database, bad migrations.
    public func plan(instance name: String) throws -> MigrationPlan {
        let config = try workspace.instance(name)
        try ensureDatabase(config)
        try SQLite.Connection.checkIsDatabase(config.databasePath)
        return try makePlan(config).plan
    }

    /// `plan`'s refusal: throws (64) when the plan is not additive and not allowed.
    public func refuseUnlessAdditive(instance name: String, plan: MigrationPlan, allowDestructive: Bool) throws {
        let files = try MigrationFile.loadAll(folder: try workspace.deployConfig().migrationsFolder)
        try checkAdditive(plan, files: files, allowDestructive: allowDestructive)
    }

    /// Throws the refusal for a non-additive plan unless both the files and the command allow it.
    /// - Throws: `Failure` `.usage` naming each non-additive statement.
    func checkAdditive(_ plan: MigrationPlan, files: [MigrationFile], allowDestructive: Bool) throws {
        let bad = plan.statements.filter { !$0.additive }
        guard !bad.isEmpty else { return }
        let filesAllow = bad.allSatisfy { statement in files.contains { $0.key == statement.migration && $0.allowDestructive } }
        if filesAllow && allowDestructive { return }
        let lines = bad.map { "  \($0.migration) statement \($0.index): \($0.problems.joined(separator: ", ")) — \($0.sql)" }
        throw Failure(.usage, "refused: the pending migrations are not additive:\n" + lines.joined(separator: "\n"),
                      hint: filesAllow ? "run again with --allow-destructive if this is intended"
                                       : "add '-- allow-destructive' to the migration file and pass --allow-destructive, if this is intended")
    }
}
