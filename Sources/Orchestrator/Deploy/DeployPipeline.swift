import Backup
import Foundation
import Locking
import Migration
import SQLite
import Support

/// A stage's start and end as events, and its record for the report.
struct StageTimer {
    let stage: Stage
    let runtime: Runtime
    let start = ContinuousClock.now

    /// Reports the stage's start.
    init(_ stage: Stage, _ runtime: Runtime) {
        self.stage = stage
        self.runtime = runtime
        runtime.events(.stageStarted(stage))
    }

    /// Reports the stage's end (failed when `error` is given) and returns its record.
    func finished(_ error: Error?) -> StageRecord {
        let seconds = DeployPipeline.seconds(since: start)
        runtime.events(.stageFinished(stage, seconds: seconds, succeeded: error == nil))
        return StageRecord(name: stage, status: error == nil ? .ok : .failed, seconds: seconds, detail: error.map { "\($0)" })
    }
}

/// A deploy that `Deployment` runs: one database's, or a set's.
protocol DeployRun {
    var runtime: Runtime { get }
    var report: DeployReport { get set }
    mutating func run() throws
    mutating func fail(_ error: DeployctlError) -> DeployFailure
    /// Throws when a signal arrived and the deploy can still stop (see each).
    mutating func checkInterruption() throws
}

extension DeployRun {
    /// Runs a stage's body between interruption checks, its start and end reported and its
    /// record in the report.
    mutating func timed<T>(_ stage: Stage, _ body: (inout Self) throws -> T) throws -> T {
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

    /// Runs the deploy; on failure, its final form (undone, reported) is thrown.
    mutating func runToEnd() throws -> DeployReport {
        do {
            try run()
            return report
        } catch let error as DeployctlError {
            throw fail(error)
        } catch {
            throw fail(Failure(.internalError, "\(error)"))
        }
    }
}

/// One deploy run: its stages, journal and report.
struct DeployPipeline: DeployRun {
    let instance: InstanceContext
    var runtime: Runtime { instance.runtime }
    var config: InstanceConfig { instance.config }
    let options: DeployOptions
    var report: DeployReport
    var journal: DeployJournal?
    /// Whether this run wrote the journal file (an earlier run's journal is never removed here).
    var wroteJournal = false
    /// How the pre-deploy snapshot is stored: `--gzip`/`--no-gzip`, else the config's.
    var compression: Compression { options.gzip.map { $0 ? .gzip : .none } ?? config.compression }
    /// Whether an interrupt after the commit was reported (once).
    var interruptNoted = false
    var lock: InstanceLock?
    /// The online rebuild this deploy runs instead of the one-transaction migration, if any.
    var online: OnlineRebuildPlan?
    /// The application's hooks; their results go into the report.
    let hooks: AppHooks
    /// One database of a set (`SetDeployPipeline`), which takes the lock, recovers, stops and
    /// starts the application and writes the report for all of them.
    var inSet = false
    /// The set the pre-deploy snapshot belongs to (recorded in its manifest).
    var set: Manifest.SetMembership?

    init(instance: InstanceContext, options: DeployOptions, report: DeployReport) {
        self.instance = instance
        self.options = options
        self.report = report
        hooks = AppHooks(instance, outputFolder: instance.config.deploysFolder + "/" + report.deployId)
    }

    /// Runs one stage: journal it, report its start, then its end with elapsed time, and record it.
    mutating func stage<T>(_ stage: Stage, _ body: (inout DeployPipeline) throws -> T) throws -> T {
        if var journal {
            journal.stage = stage
            try journal.write(path: config.journalPath)
            wroteJournal = true
            self.journal = journal
        }
        return try timed(stage, body)
    }

    /// Throws when SIGINT or SIGTERM arrived: the deploy then fails at the current stage and
    /// undoes what it must, like any other error. Once the migration has committed an
    /// interrupt comes too late to stop anything cheaply: the deploy is finished instead.
    mutating func checkInterruption() throws {
        if journal?.committed == true {
            if runtime.interruption() != nil && !interruptNoted {
                runtime.events(.warning("the interrupt came after the migration committed: finishing the deploy"))
                interruptNoted = true
            }
            return
        }
        try runtime.checkInterruption("the live database was not changed")
    }

    /// The part of the pre-deploy snapshot's label after `pre_`: the migration's name, or for
    /// several `<first>-<last>`; when that would make the label longer than 64 characters, the
    /// migrations' numbers (`0002-0005`), or the name cut short.
    static func snapshotName(_ files: [MigrationFile]) -> String {
        guard let first = files.first, let last = files.last else { return "migration" }
        let named = files.count > 1 ? "\(first.name)-\(last.name)" : first.name
        if named.count <= 60 { return named }
        if files.count > 1 { return "\(first.key.prefix { $0 != "_" })-\(last.key.prefix { $0 != "_" })" }
        return String(first.name.prefix(60))
    }

    /// The columns a preserving plan adds, when adding columns (and new objects) is all it does
    /// to existing tables: an undo can then drop exactly those and keep the application's writes.
    static func addedColumnsOnly(_ plan: MigrationPlan) -> [String: [String]]? {
        // Dropping an existing index, view or trigger (or table) is not undone by dropping what
        // was added: those need the snapshot.
        guard plan.classification == .preserving,
              !plan.statements.contains(where: \.dropsExisting) else { return nil }
        var columns = [String: [String]]()
        for e in plan.evidence {
            guard e.finalName == e.table, !e.rebuilt, e.rowsDeleted == 0, e.rowsAdded == 0, e.columnsDropped.isEmpty,
                  e.columnsRenamed.isEmpty, e.valuesChanged.isEmpty else { return nil }
            if !e.columnsAdded.isEmpty { columns[e.table] = e.columnsAdded }
        }
        return columns
    }

    static func seconds(since start: ContinuousClock.Instant) -> Double {
        let d = ContinuousClock.now - start
        return d.seconds
    }

    mutating func run() throws {
        let (files, plan) = try stage(.preflight) { p in try p.preflight() }
        report.pending = plan.pending
        if !plan.pending.isEmpty {
            report.classification = plan.classification.rawValue
            report.changes = plan.evidence.flatMap(\.facts)
        }
        try stage(.plan) { p in
            if p.config.command != nil && !p.options.dryRun && !plan.pending.isEmpty {
                // The class comes from the rehearsal, which shows the plan then.
                p.runtime.events(.fact("pending (pending_command): \(plan.pending.joined(separator: ", ")); the class comes from the rehearsal on a copy of the snapshot"))
                return
            }
            p.runtime.events(.plan(plan, database: p.config.databasePath))
            // A false verify query fails here, dry run or not: before any snapshot is taken.
            if let refusal = Planning.verifyQueryRefusal(plan, instance: p.config.name) { throw refusal }
        }
        if options.dryRun {
            report.outcome = .dryRun
            runtime.events(.dryRunFinished)
            return
        }
        if plan.pending.isEmpty {
            try finishWithNothingToDo(files: files)
            return
        }
        if let command = config.command {
            try runByCommand(command, pending: plan.pending)
            return
        }
        // One migration names the snapshot; several name their range (pre_<first>-<last>).
        let migrationName = Self.snapshotName(plan.pending.compactMap { key in files.first { $0.key == key } })
        let pending = files.filter { plan.pending.contains($0.key) }
        journal = DeployJournal(deployId: report.deployId, instance: config.name, startedAt: report.startedAt, stage: .snapshot,
                                snapshot: nil, migrations: plan.pending, appStopped: hooks.stoppedOnce,
                                committed: false, additive: plan.additive,
                                created: plan.created.map { DeployJournal.CreatedObject(type: $0.type.rawValue, name: $0.name) },
                                addedColumns: Self.addedColumnsOnly(plan))
        let store = instance.store
        let backup = try stage(.snapshot) { p in try p.takeSnapshot(label: "pre_\(migrationName)", store: store) }
        let rehearsal = try stage(.rehearse) { p in try p.rehearse(backup: backup, pending: pending, plan: plan, store: store) }
        let result = try stage(.migrateAndVerify) { p in
            if let online = p.online { return try p.migrateOnline(online, pending: pending, rehearsal: rehearsal) }
            return try p.migrate(pending, plan: plan, rehearsal: rehearsal)
        }
        report.tablesCreated = result.tablesCreated
        report.tablesAlreadyExisted = result.tablesAlreadyExisted
        report.writeLockMilliseconds = result.writeLockMilliseconds
        if online != nil {
            runtime.events(.fact("writes were blocked for \(String(format: "%.1f", result.writeLockMilliseconds)) ms at the cut-over; proven after it: \(result.unchangedProof ?? "")"))
        } else {
            runtime.events(.fact("writes were blocked for \(String(format: "%.1f", result.writeLockMilliseconds)) ms; \(result.tablesProvenUnchanged) \(plan.evidence.isEmpty ? "" : "untouched ")existing tables proven unchanged"
                        + (result.unchangedProof.map { " (\($0))" } ?? "")))
        }
        try stage(.restart) { p in try p.restart(committed: true) }
        report.outcome = .success
        try stage(.report) { p in try p.writeReport() }
        try DeployJournal.remove(path: config.journalPath)
        runtime.events(.deployed(report))
    }








    /// Start hook and health check; on failure undo the committed deploy.
    mutating func restart(committed: Bool) throws {
        try runtime.failpoints.hit(.afterCommit)
        defer { report.hooks = hooks.results }
        let failpoints = runtime.failpoints
        try hooks.start(tag: "restart", between: { try failpoints.hit(.restart) })
    }

    /// Turns a failure into its final form: undo a committed deploy, start the app if this run
    /// stopped it, write the report, release the lock.
    mutating func fail(_ error: DeployctlError) -> DeployFailure {
        var final: DeployctlError = error
        report.error = error.message
        report.errorCode = error.code.rawValue
        if let journal, journal.committed {
            hooks.stopBeforeUndo(tag: "undo")
            do {
                let how = try DeployRecovery(instance).undo(journal: journal)
                report.outcome = .undone
                runtime.events(.stepDone("undone: the deploy's changes were removed and the database proven back"))
                final = Failure(.deployUndone, "\(error.message)\nThe deploy was undone: \(how).", hint: error.hint, cause: error.code)
            } catch let undoError {
                report.outcome = .unproven
                final = Failure(.deployUndoFailed, "\(error.message)\nUndoing the deploy failed too: \(undoError)",
                                hint: "restore the snapshot \(journal.snapshot ?? "?") with 'deployctl restore \(config.name) \(journal.snapshot ?? "--latest") --yes'",
                                cause: error.code)
            }
        }
        if let journal, !journal.committed, let name = journal.snapshot, !report.stages.contains(where: { $0.name == .migrateAndVerify }) {
            // Failed before migrating: the live database was never touched and still holds what
            // the snapshot holds. Kept, each retry would leave one more pre_* copy.
            let store = instance.store
            if let entry = try? store.entry(named: name), (try? store.remove([entry])) != nil {
                report.snapshot = nil
                runtime.events(.fact("removed the snapshot \(name): the deploy failed before migrating, so the live database is unchanged and the copy is not needed"))
            }
        }
        // Start the app again when the last thing done to it was a stop.
        hooks.startIfStopped(tag: "after-failure")
        report.hooks = hooks.results
        final = hooks.sayingIfDown(final)
        if !options.dryRun && lock != nil {
            try? writeReport()
            if wroteJournal && report.outcome != .unproven { try? DeployJournal.remove(path: config.journalPath) }
        }
        lock?.release()
        return DeployFailure(report: report, underlying: final)
    }

    mutating func writeReport() throws {
        report.finishedAt = runtime.clock()
        try DurableFile.createFolder(config.deploysFolder)
        try DurableFile.write(try JSON.encoder().encode(report), to: config.deploysFolder + "/\(report.deployId).json")
    }
}
