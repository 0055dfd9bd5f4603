import Backup
import Foundation
import Locking
import Migration
import Support

/// A deploy of an instance of several databases (`[[database]]`, docs/databases.md): one
/// outcome for all of them. One lock and one recovery for the set; each database's preflight
/// and plan; the stop hook once; a snapshot of each (one set: the deploy id and label shared);
/// a rehearsal of each; then each database migrated and verified in its own transaction, in
/// the config's order, each journal saying when its database committed. When any stage fails
/// for any database, every database that committed is undone by its class (last first) and the
/// others were never touched.
struct SetDeployPipeline: DeployRun {
    let instance: InstanceContext
    var runtime: Runtime { instance.runtime }
    let options: DeployOptions
    var report: DeployReport
    var databases: [DeployPipeline]
    let hooks: AppHooks
    var lock: InstanceLock?
    /// Indexes of the databases with pending migrations, once planned.
    var active = [Int]()
    /// Whether an interrupt after the last commit was reported (once).
    var interruptNoted = false

    init(instance: InstanceContext, databases: [InstanceContext], options: DeployOptions, report: DeployReport) {
        self.instance = instance
        self.options = options
        self.report = report
        hooks = AppHooks(instance, outputFolder: instance.config.deploysFolder + "/" + report.deployId)
        self.databases = databases.map { database in
            var pipeline = DeployPipeline(instance: database, options: options, report: DeployReport(deployId: report.deployId, instance: report.instance,
                                                                                                     startedAt: report.startedAt, outcome: .failed))
            pipeline.inSet = true
            pipeline.report.database = database.config.databaseName
            return pipeline
        }
    }

    /// Runs one stage of the set: the journals of the databases in the deploy say so first.
    mutating func stage<T>(_ stage: Stage, _ body: (inout SetDeployPipeline) throws -> T) throws -> T {
        for index in active where databases[index].journal != nil {
            databases[index].journal?.stage = stage
            try databases[index].journal?.write(path: databases[index].config.journalPath)
        }
        let timer = StageTimer(stage, runtime)
        do {
            try checkInterruption()
            let value = try body(&self)
            try checkInterruption()
            report.stages.append(timer.finished(nil))
            return value
        } catch {
            report.stages.append(timer.finished(error))
            throw error
        }
    }

    /// Before every database of the deploy committed, an interrupt fails the deploy (the ones
    /// that committed are undone); after, it is finished.
    mutating func checkInterruption() throws {
        let committed = active.filter { databases[$0].journal?.committed == true }
        if !active.isEmpty && committed.count == active.count {
            if runtime.interruption() != nil && !interruptNoted {
                runtime.events(.warning("the interrupt came after every database's migration committed: finishing the deploy"))
                interruptNoted = true
            }
            return
        }
        try runtime.checkInterruption(committed.isEmpty ? "no database was changed" : "the databases already migrated are undone")
    }

    /// Each database in turn, announced.
    mutating func each<T>(_ indexes: [Int], _ body: (inout DeployPipeline) throws -> T) throws -> [T] {
        try indexes.map { index in
            runtime.events(.databaseStarted(databases[index].config.databaseName ?? "", path: databases[index].config.databasePath))
            return try body(&databases[index])
        }
    }

    mutating func run() throws {
        let prepared = try stage(.preflight) { s in try s.preflight() }
        active = prepared.indices.filter { !prepared[$0].plan.pending.isEmpty }
        record(prepared)
        try stage(.plan) { s in
            for index in s.databases.indices {
                s.runtime.events(.plan(prepared[index].plan, database: s.databases[index].config.databasePath))
                if let refusal = Planning.verifyQueryRefusal(prepared[index].plan, instance: s.instance.config.name) { throw refusal }
            }
        }
        if options.dryRun {
            report.outcome = .dryRun
            runtime.events(.dryRunFinished)
            return
        }
        guard !active.isEmpty else {
            try finishWithNothingToDo(prepared)
            return
        }
        try beginJournals(prepared)
        let label = "pre_" + DeployPipeline.snapshotName(active.flatMap { prepared[$0].pending })
        // Every database, changed or not, so that each deploy leaves a complete set to restore.
        let backups = try stage(.snapshot) { s in
            try s.each(Array(s.databases.indices)) { p in try p.takeSnapshot(label: label, store: p.instance.store) }
        }
        let rehearsals = try stage(.rehearse) { s in
            try s.active.map { index in
                try s.each([index]) { p in
                    try p.rehearse(backup: backups[index], pending: prepared[index].pending, plan: prepared[index].plan, store: p.instance.store)
                }[0]
            }
        }
        try stage(.migrateAndVerify) { s in try s.migrateEach(prepared, rehearsals: rehearsals) }
        report.tablesCreated = active.flatMap { databases[$0].report.tablesCreated }
        report.tablesAlreadyExisted = active.flatMap { databases[$0].report.tablesAlreadyExisted }
        report.writeLockMilliseconds = active.map { databases[$0].report.writeLockMilliseconds ?? 0 }.max()
        try stage(.restart) { s in
            try s.runtime.failpoints.hit(.afterCommit)
            defer { s.report.hooks = s.hooks.results }
            let failpoints = s.runtime.failpoints
            try s.hooks.start(tag: "restart", between: { try failpoints.hit(.restart) })
        }
        report.outcome = .success
        for index in active { databases[index].report.outcome = .success }
        try stage(.report) { s in try s.writeReport() }
        for index in active { try DeployJournal.remove(path: databases[index].config.journalPath) }
        runtime.events(.deployed(report))
    }

    /// The plans in the reports: the set's (`database/migration`, the strictest class, each
    /// change named by its database) and each database's own.
    mutating func record(_ prepared: [PreparedDatabase]) {
        let names = databases.map { $0.config.databaseName ?? "" }
        let name = { (index: Int) in names[index] }
        report.pending = active.flatMap { index in prepared[index].plan.pending.map { "\(name(index))/\($0)" } }
        if let strictest = active.map({ prepared[$0].plan.classification }).max() { report.classification = strictest.rawValue }
        report.changes = active.flatMap { index in prepared[index].plan.evidence.flatMap(\.facts).map { "\(name(index)): \($0)" } }
        for index in active {
            databases[index].report.pending = prepared[index].plan.pending
            databases[index].report.classification = prepared[index].plan.classification.rawValue
            databases[index].report.changes = prepared[index].plan.evidence.flatMap(\.facts)
        }
    }

    /// Each database of the deploy gets its journal (before its snapshot), and every database
    /// the set its snapshot belongs to.
    mutating func beginJournals(_ prepared: [PreparedDatabase]) throws {
        let members = databases.compactMap(\.config.databaseName)
        for index in databases.indices {
            databases[index].set = Manifest.SetMembership(id: report.deployId, database: databases[index].config.databaseName ?? "", databases: members)
        }
        for index in active {
            let plan = prepared[index].plan
            databases[index].journal = DeployJournal(
                deployId: report.deployId, instance: instance.config.name, startedAt: report.startedAt, stage: .snapshot,
                snapshot: nil, migrations: plan.pending, appStopped: hooks.stoppedOnce, committed: false, additive: plan.additive,
                created: plan.created.map { DeployJournal.CreatedObject(type: $0.type.rawValue, name: $0.name) },
                addedColumns: DeployPipeline.addedColumnsOnly(plan))
            try databases[index].journal?.write(path: databases[index].config.journalPath)
            databases[index].wroteJournal = true
        }
    }

    /// The migrate stage: each database in its own transaction, in order, its journal saying
    /// committed the moment it commits (the failpoint `between-databases` between two).
    mutating func migrateEach(_ prepared: [PreparedDatabase], rehearsals: [Rehearsal]) throws {
        for (step, index) in active.enumerated() {
            if step > 0 { try runtime.failpoints.hit(.betweenDatabases) }
            let entry = prepared[index]
            let rehearsal = rehearsals[step]
            let result = try each([index]) { p in
                if let online = p.online { return try p.migrateOnline(online, pending: entry.pending, rehearsal: rehearsal) }
                return try p.migrate(entry.pending, plan: entry.plan, rehearsal: rehearsal)
            }[0]
            databases[index].report.tablesCreated = result.tablesCreated
            databases[index].report.tablesAlreadyExisted = result.tablesAlreadyExisted
            databases[index].report.writeLockMilliseconds = result.writeLockMilliseconds
            runtime.events(.fact("writes were blocked for \(String(format: "%.1f", result.writeLockMilliseconds)) ms"
                                 + (result.unchangedProof.map { "; \($0)" } ?? "")))
        }
    }
}
