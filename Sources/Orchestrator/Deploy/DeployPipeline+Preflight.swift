import Backup
import Foundation
import Locking
import Migration
import SQLite
import Support

extension DeployPipeline {
    /// Preflight: database, folders, lock, recovery, promotion, stop hook, write lock.
    mutating func preflight() throws -> ([MigrationFile], MigrationPlan) {
        try Connection.checkIsDatabase(config.databasePath)
        if !options.dryRun {
            try instance.store.prepareForWriting()
            if !inSet {
                lock = try DeployRecovery.lockForDeploy(instance)
                // One database of a set (--database): an unfinished deploy is recovered for the whole set.
                if let note = try DeployRecovery.recoverUnfinished(for: instance) { report.recovered = note }
            }
            if let note = try OnlineRebuild.cleanUp(path: config.databasePath, busyTimeout: config.busyTimeout, debug: runtime.trace) {
                runtime.events(.warning(note))
                report.recovered = [report.recovered, note].compactMap { $0 }.joined(separator: "; ")
            }
        }
        try runtime.failpoints.hit(.preflight)
        let (files, plan) = try instance.makePlan(forDeploy: !options.dryRun, outputFolder: options.dryRun ? nil : config.deploysFolder + "/" + report.deployId)
        // A framework's migrations are not in deployctl_migrations: promotion is not checked for them.
        if !options.skipPromotionCheck && !plan.pending.isEmpty && config.command == nil { try checkPromotion(plan.pending) }
        do {
            try Planning.checkAllowed(plan, files: files, allowDestructive: options.allowDestructive)
        } catch {
            // The refusal quotes the plan: show it first (a dry run included).
            runtime.events(.plan(plan, database: config.databasePath))
            throw error
        }
        do {
            try chooseOnline(files: files, plan: plan)
        } catch {
            runtime.events(.plan(plan, database: config.databasePath))
            throw error
        }
        // A dry run says so too: the deploy it previews would be refused.
        if !plan.pending.isEmpty { try instance.checkOwnSnapshotsDecrypt() }
        guard !options.dryRun, !plan.pending.isEmpty else { return (files, plan) }
        try instance.checkSpaceForSnapshot(compression: compression, rehearsal: true, onlineTable: online?.table)
        // A set stops the application once, after every database's preflight.
        if !inSet { try stopApplication(plan) }
        return (files, plan)
    }

    /// The stop hook (the journal first says the application may be stopped), then the check
    /// that the write lock is free.
    mutating func stopApplication(_ plan: MigrationPlan) throws {
        if config.hooks.stop != nil {
            try DeployJournal(deployId: report.deployId, instance: config.name, startedAt: report.startedAt, stage: .preflight,
                              snapshot: nil, migrations: plan.pending, appStopped: true, committed: false, additive: plan.additive,
                              created: []).write(path: config.journalPath)
            wroteJournal = true
            defer { report.hooks = hooks.results }
            try hooks.stop(tag: "preflight")
        }
        try probeWriteLock()
    }

    /// Waits (up to the busy timeout) for the write lock, and says who has the database open.
    func probeWriteLock() throws {
        try DatabaseHolders.probeWriteLock(path: config.databasePath, timeout: config.busyTimeout)
        let holders = DatabaseHolders.find(path: config.databasePath)
        if !holders.isEmpty {
            runtime.events(.fact("the write lock is free; the database is open in \(holders.map(\.description).joined(separator: ", "))"))
        }
    }
    /// Decides whether the migration runs online: when asked (`--online`, `-- online`), or when
    /// the plan's write-lock estimate exceeds `max_write_lock` and no stop hook stops the
    /// application. Refuses when it is asked or needed and the migration cannot run online.
    mutating func chooseOnline(files: [MigrationFile], plan: MigrationPlan) throws {
        guard let (verdict, asked) = try instance.onlineDecision(files: files, plan: plan, askedByFlag: options.online) else { return }
        switch verdict {
        case .online(let rebuild):
            online = rebuild
            runtime.events(.fact("online: \(rebuild.table) is rebuilt while the application writes (rows copied in short batches, "
                                 + "then a cut-over that holds the write lock briefly)" + (asked ? "" : "; the one-transaction deploy would block writes past max_write_lock")))
        case .offline(let why):
            if asked {
                throw Failure(.onlineRefused, "refused: an online rebuild was asked for, but \(why); nothing was changed",
                              hint: "deploy without --online (and without '-- online' in the file), with the application stopped by hooks.stop if the write lock would be long")
            }
            throw instance.writeLockRefusal(plan, offlineBecause: why)
        }
    }
    /// Promotion: each instance before this one in deploy.toml that has a database here must
    /// already have the pending migrations applied.
    func checkPromotion(_ pending: [String]) throws {
        let order = try runtime.workspace.deployConfig().order
        guard let position = order.firstIndex(of: config.name) else { return }
        for earlier in order[..<position] {
            var other = try runtime.workspace.instance(earlier)
            if let database = config.databaseName {
                // The same database of the earlier instance.
                guard let view = other.databases.first(where: { $0.databaseName == database }) else {
                    runtime.events(.warning("\(earlier) has no database '\(database)'; promotion not checked there"))
                    continue
                }
                other = view
            }
            guard FileManager.default.fileExists(atPath: other.databasePath) else {
                runtime.events(.warning("\(earlier) has no database on this host (\(other.databasePath)); promotion not checked there"))
                continue
            }
            let applied = Set(try History.applied(path: other.databasePath, busyTimeout: other.busyTimeout).map(\.key))
            let missing = pending.filter { !applied.contains($0) }
            guard missing.isEmpty else {
                throw Failure(.promotionRefused, "promotion refused: \(earlier) comes before \(config.name) in deploy.toml but lacks \(missing.joined(separator: ", "))",
                              hint: "deploy \(earlier) first ('deployctl deploy \(earlier)'), or pass --skip-promotion-check")
            }
        }
    }
    mutating func finishWithNothingToDo(files: [MigrationFile]) throws {
        report.tablesAlreadyExisted = try Planner.tablesExisting(definedBy: files, path: config.databasePath, busyTimeout: config.busyTimeout)
        report.outcome = .nothingToDo
        runtime.events(.nothingToDo(alreadyExisting: report.tablesAlreadyExisted))
        try writeReport()
        runtime.events(.deployed(report))
    }
}
