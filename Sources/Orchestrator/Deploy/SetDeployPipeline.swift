import Backup
import Foundation
import Locking
import Migration
import SQLite
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
    /// Databases a framework command changed though it was not pointed at them: the failure
    /// path restores them from their snapshots.
    var tampered = [Int]()

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
        return try timed(stage, body)
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

    /// When database `index`'s migrations are a framework command, the set's other databases'
    /// fingerprints before its rehearsal or migration (see `checkOthers`).
    func fingerprintOthers(of index: Int) throws -> OtherDatabases {
        try OtherDatabases(databases.indices.filter { $0 != index }, of: databases.map(\.config), before: databases[index].config.command != nil)
    }

    /// The other databases must be as they were before database `index`'s command ran, else
    /// the deploy fails and the failure path restores the changed ones from their snapshots.
    /// - Throws: `command.result_differs` naming the database changed and how.
    mutating func checkOthers(_ others: OtherDatabases, after index: Int) throws {
        let changed = others.changed()
        guard let (other, changes) = changed.first else { return }
        tampered += changed.map(\.0)
        let config = databases[other].config
        throw Failure(.commandResultDiffers, "migrate_command of database \(databases[index].config.databaseName ?? "") changed database \(config.databaseName ?? "") (\(config.databasePath)), which it was not pointed at: \(changes.prefix(5).joined(separator: "; "))"
                      + (instance.config.hooks.stop == nil ? " (with no stop hook, the application's own writes to it count too)" : ""),
                      hint: "point the command at its database only (DATABASE_URL, DEPLOYCTL_DATABASE or {database}; docs/framework-commands.md), and stop the application during the deploy (hooks.stop)")
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
                if s.databases[index].config.command != nil && !s.options.dryRun && s.active.contains(index) {
                    // The class comes from the rehearsal, which shows the plan then.
                    s.runtime.events(.fact("\(s.databases[index].config.databaseName ?? ""): pending (pending_command): \(prepared[index].plan.pending.joined(separator: ", ")); the class comes from the rehearsal on a copy of the snapshot"))
                    continue
                }
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
        // Named by the .sql migrations, else by the framework commands' pending ones.
        let files = active.flatMap { prepared[$0].pending }
        let commands = active.contains { databases[$0].config.command != nil }
        let label = "pre_" + (commands ? DeployPipeline.commandSnapshotName(active.flatMap { prepared[$0].plan.pending }) : DeployPipeline.snapshotName(files))
        // Every database, changed or not, so that each deploy leaves a complete set to restore.
        let backups = try stage(.snapshot) { s in
            try s.each(Array(s.databases.indices)) { p in try p.takeSnapshot(label: label, store: p.instance.store) }
        }
        var rehearsals = [Rehearsed]()
        // A command database's snapshot stays open as a plain file until its live run is proven.
        defer { for case .command(_, let opened) in rehearsals { opened.discard() } }
        try stage(.rehearse) { s in
            for index in s.active {
                let others = try s.fingerprintOthers(of: index)
                rehearsals.append(try s.each([index]) { p in try p.rehearseInSet(backup: backups[index], prepared: prepared[index]) }[0])
                try s.checkOthers(others, after: index)
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
            if databases[index].config.command != nil {
                // A framework command: its journal says so, and its undo is the snapshot's (or, proven additive, what it created).
                databases[index].journal = DeployJournal(deployId: report.deployId, instance: instance.config.name, startedAt: report.startedAt, stage: .snapshot,
                                                         snapshot: nil, migrations: plan.pending, appStopped: hooks.stoppedOnce, committed: false,
                                                         additive: false, created: [], addedColumns: nil)
                databases[index].journal?.command = true
                databases[index].report.commands = []
                try databases[index].journal?.write(path: databases[index].config.journalPath)
                databases[index].wroteJournal = true
                continue
            }
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
    mutating func migrateEach(_ prepared: [PreparedDatabase], rehearsals: [Rehearsed]) throws {
        for (step, index) in active.enumerated() {
            if step > 0 { try runtime.failpoints.hit(.betweenDatabases) }
            let entry = prepared[index]
            let rehearsal = rehearsals[step]
            let others = try fingerprintOthers(of: index)
            try each([index]) { p in
                switch rehearsal {
                case .command(let effect, let opened):
                    let proven = try p.migrateByCommand(p.config.command!, effect: effect, snapshot: opened.databasePath)
                    p.report.tablesCreated = effect.createdTables
                    p.runtime.events(.fact("proven after the command: \(proven)"))
                case .sql(let rehearsal):
                    let result = try p.online.map { try p.migrateOnline($0, pending: entry.pending, rehearsal: rehearsal) }
                        ?? p.migrate(entry.pending, plan: entry.plan, rehearsal: rehearsal)
                    p.report.tablesCreated = result.tablesCreated
                    p.report.tablesAlreadyExisted = result.tablesAlreadyExisted
                    p.report.writeLockMilliseconds = result.writeLockMilliseconds
                    p.runtime.events(.fact("writes were blocked for \(String(format: "%.1f", result.writeLockMilliseconds)) ms"
                                           + (result.unchangedProof.map { "; \($0)" } ?? "")))
                }
            }
            try checkOthers(others, after: index)
        }
    }
}

/// What a database's rehearsal gave the migrate stage.
enum Rehearsed {
    /// `.sql` migrations: the rehearsal the live run is checked against.
    case sql(Rehearsal)
    /// A framework command: its effect on the copy, and the snapshot as a plain file (the state
    /// before, which the live run's proof compares against).
    case command(CommandEffect, OpenedBackup)
}

extension DeployPipeline {
    /// The rehearse stage of one database of a set: its `.sql` migrations, or its framework
    /// command, on a copy of its snapshot.
    mutating func rehearseInSet(backup: BackupEntry, prepared: PreparedDatabase) throws -> Rehearsed {
        let store = instance.store
        guard let command = config.command else {
            return .sql(try rehearse(backup: backup, pending: prepared.pending, plan: prepared.plan, store: store))
        }
        let opened = try store.check(backup, keep: true)!
        do {
            return .command(try rehearseByCommand(command, snapshot: opened.databasePath, pending: prepared.plan.pending), opened)
        } catch {
            opened.discard()
            throw error
        }
    }
}

/// The other databases of a set, fingerprinted before a framework command runs on one of them
/// (docs/databases.md): a command that changes a database it was not pointed at fails the
/// deploy, and that database is restored from its snapshot (1).
struct OtherDatabases {
    let before: [(index: Int, config: InstanceConfig, fingerprint: DatabaseFingerprint)]

    /// Fingerprints the databases at `indexes` of `configs` when `needed` (a command is about to run).
    init(_ indexes: [Int], of configs: [InstanceConfig], before needed: Bool) throws {
        before = needed ? try indexes.map { ($0, configs[$0], try Connection.contentFingerprint(path: configs[$0].databasePath, busyTimeout: configs[$0].busyTimeout)) } : []
    }

    /// The databases that changed since, each with what changed.
    func changed() -> [(Int, [String])] {
        before.compactMap { index, config, fingerprint in
            guard let now = try? Connection.contentFingerprint(path: config.databasePath, busyTimeout: config.busyTimeout) else { return (index, ["it could not be read"]) }
            let changes = now.differences(from: fingerprint)
            return changes.isEmpty ? nil : (index, changes)
        }
    }
}
