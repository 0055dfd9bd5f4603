import Backup
import Foundation
import Locking
import Migration
import SQLite
import Support

/// Flags of `deployctl deploy`.
public struct DeployOptions: Sendable {
    public var dryRun = false
    public var gzip: Bool?
    public var allowDestructive = false
    public var skipPromotionCheck = false
    /// Run the rebuild online (`--online`); refused when it cannot run so.
    public var online = false

    public init(dryRun: Bool = false, gzip: Bool? = nil, allowDestructive: Bool = false, skipPromotionCheck: Bool = false, online: Bool = false) {
        self.dryRun = dryRun
        self.gzip = gzip
        self.allowDestructive = allowDestructive
        self.skipPromotionCheck = skipPromotionCheck
        self.online = online
    }
}

/// A deploy that failed: the report (already written) and the error that ended it.
public struct DeployFailure: DeployctlError {
    public let report: DeployReport
    public let underlying: DeployctlError
    public var code: FailureCode { underlying.code }
    /// The cause's code when the deploy was undone after it.
    public var cause: FailureCode? { (underlying as? Failure)?.cause }
    public var kind: FailureKind { underlying.kind }
    public var message: String { underlying.message }
    public var hint: String? { underlying.hint }
}

extension Runtime {
    /// `deployctl deploy <instance>`: SPEC.md's pipeline. Returns the report on success (and for
    /// a dry run or nothing to do); on failure throws `DeployFailure` after undoing what must
    /// be undone, starting the app again and writing the report.
    public func deploy(instance name: String, options: DeployOptions) throws -> DeployReport {
        let config = try workspace.instance(name)
        try checkAccess(config, options.dryRun ? .readDatabase : .changeLive)
        try ensureDatabase(config)
        let id = Self.deployId(clock())
        var pipeline = Pipeline(runtime: self, config: config, options: options,
                                report: DeployReport(deployId: id, instance: name, startedAt: clock(), outcome: .failed))
        do {
            try pipeline.run()
            return pipeline.report
        } catch let error as DeployctlError {
            throw pipeline.fail(error)
        } catch {
            throw pipeline.fail(Failure(.internalError, "\(error)"))
        }
    }

    /// `deployctl deploy all`: every instance in deploy.toml's order; stops at the first failure.
    public func deployAll(options: DeployOptions) throws -> [DeployReport] {
        var reports = [DeployReport]()
        for name in try workspace.allInstances() {
            events(.instanceStarted(name))
            reports.append(try deploy(instance: name, options: options))
        }
        return reports
    }

    static func deployId(_ date: Date) -> String {
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = TimeZone(identifier: "UTC")
        formatter.dateFormat = "yyyyMMdd'T'HHmmss.SSS'Z'"
        return formatter.string(from: date) + "-" + String(UInt32.random(in: 0...0xffff), radix: 16)
    }
}

/// One deploy run: its stages, journal and report.
struct Pipeline {
    let runtime: Runtime
    let config: InstanceConfig
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
    var hooks: HookRunner {
        HookRunner(outputFolder: config.deploysFolder + "/" + report.deployId, workingDirectory: config.folder,
                   environment: ["DEPLOYCTL_INSTANCE": config.name, "DEPLOYCTL_DATABASE": config.databasePath], trace: runtime.trace)
    }

    init(runtime: Runtime, config: InstanceConfig, options: DeployOptions, report: DeployReport) {
        self.runtime = runtime
        self.config = config
        self.options = options
        self.report = report
    }

    /// Runs one stage: journal it, report its start, then its end with elapsed time, and record it.
    mutating func stage<T>(_ stage: Stage, _ body: (inout Pipeline) throws -> T) throws -> T {
        if var journal {
            journal.stage = stage
            try journal.write(path: config.journalPath)
            wroteJournal = true
            self.journal = journal
        }
        let start = ContinuousClock.now
        runtime.events(.stageStarted(stage))
        do {
            try checkInterruption()
            let value = try body(&self)
            try checkInterruption()
            let seconds = Self.seconds(since: start)
            report.stages.append(StageRecord(name: stage, status: .ok, seconds: seconds, detail: nil))
            runtime.events(.stageFinished(stage, seconds: seconds, succeeded: true))
            return value
        } catch {
            let seconds = Self.seconds(since: start)
            report.stages.append(StageRecord(name: stage, status: .failed, seconds: seconds, detail: "\(error)"))
            runtime.events(.stageFinished(stage, seconds: seconds, succeeded: false))
            throw error
        }
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

    /// A database's schema as lines, the history table aside: each object's SQL byte for byte as
    /// sqlite_schema stores it, so that "the schema is the one before" is said only when it is.
    static func schemaLines(_ db: Connection) throws -> [String] {
        try db.schema(exact: true).filter { $0.name != History.table && $0.table != History.table }
            .map { "\($0.type) \($0.name) \($0.sql ?? "")" }.sorted()
    }

    /// The columns a preserving plan adds, when adding columns (and new objects) is all it does
    /// to existing tables: an undo can then drop exactly those and keep the application's writes.
    static func addedColumnsOnly(_ plan: MigrationPlan) -> [String: [String]]? {
        // Dropping an existing index, view or trigger (or table) is not undone by dropping what
        // was added: those need the snapshot.
        guard plan.classification == .preserving,
              !plan.statements.flatMap(\.problems).contains(where: { $0.hasPrefix("drop") }) else { return nil }
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
            p.runtime.events(.plan(plan, database: p.config.databasePath))
            // A false verify query fails here, dry run or not: before any snapshot is taken.
            if let refusal = p.runtime.verifyQueryRefusal(plan, instance: p.config.name) { throw refusal }
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
        // One migration names the snapshot; several name their range (pre_<first>-<last>).
        let migrationName = Self.snapshotName(plan.pending.compactMap { key in files.first { $0.key == key } })
        let pending = files.filter { plan.pending.contains($0.key) }
        journal = DeployJournal(deployId: report.deployId, instance: config.name, startedAt: report.startedAt, stage: .snapshot,
                                snapshot: nil, migrations: plan.pending, appStopped: report.hooks.contains { $0.name == "stop" },
                                committed: false, additive: plan.additive,
                                created: plan.created.map { DeployJournal.CreatedObject(type: $0.type, name: $0.name) },
                                addedColumns: Self.addedColumnsOnly(plan))
        let store = runtime.store(config)
        let backup = try stage(.snapshot) { p in
            var request = p.runtime.snapshotRequest(p.config, label: "pre_\(migrationName)", compression: p.compression)
            let runtime = p.runtime
            // Between the copy and compressing it, and before publishing: an interrupt leaves no snapshot.
            request.checkpoint = { try runtime.checkInterruption("no snapshot was kept (its temp files were removed); the live database was not changed") }
            request.interrupted = { runtime.interruption() != nil }
            let entry = try Snapshotter(store: store).snapshot(request, progress: p.runtime.progress)
            p.report.snapshot = entry.name
            p.journal?.snapshot = entry.name
            try p.journal?.write(path: p.config.journalPath)
            p.runtime.events(.fact("backup: \(entry.path)"))
            try p.runtime.failpoints.hit(.afterSnapshot)
            return entry
        }
        let rehearsal = try stage(.rehearse) { p in try p.rehearse(backup: backup, pending: pending, plan: plan, store: store) }
        let result = try stage(.migrateAndVerify) { p in
            if let online = p.online { return try p.migrateOnline(online, pending: pending, rehearsal: rehearsal) }
            let live = try Connection(path: p.config.databasePath, mode: .readWrite, busyTimeout: p.config.busyTimeout)
            let runtime = p.runtime
            let applier = Applier(failpoints: p.runtime.failpoints, tables: { runtime.events(.table($0)) }, debug: p.runtime.trace,
                                  interrupted: { try runtime.checkInterruption("the migration was rolled back; the database is as it was") },
                                  stop: { runtime.interruption() != nil })
            do {
                let result = try applier.apply(pending, plan: plan, to: live, deployId: p.report.deployId,
                                               appliedAt: ISO8601DateFormatter().string(from: p.runtime.clock()), rehearsal: rehearsal)
                p.journal?.committed = true
                try p.journal?.write(path: p.config.journalPath)
                return result
            } catch let error as SQLiteError where error.kind == .temporary {
                throw DatabaseHolders.busy(path: p.config.databasePath, timeout: p.config.busyTimeout)
            } catch let error as SQLiteError where error.interrupted {
                try runtime.checkInterruption("the running statement was stopped and the migration rolled back; the database is as it was")
                throw error
            }
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

    /// Preflight: database, folders, lock, recovery, promotion, stop hook, write lock.
    mutating func preflight() throws -> ([MigrationFile], MigrationPlan) {
        try Connection.checkIsDatabase(config.databasePath)
        if !options.dryRun {
            try runtime.store(config).prepareForWriting()
            lock = try runtime.lockInstance(config, operation: "deploy", stage: Stage.preflight.rawValue)
            if let crashed = lock?.crashedHolder {
                runtime.events(.warning("an earlier run (PID \(crashed.pid), \(crashed.command)) ended without releasing the instance lock: it crashed or was killed"))
            }
            if let note = try runtime.recoverUnfinishedDeploy(config) { report.recovered = note }
            if let note = try OnlineRebuild.cleanUp(path: config.databasePath, busyTimeout: config.busyTimeout, debug: runtime.trace) {
                runtime.events(.warning(note))
                report.recovered = [report.recovered, note].compactMap { $0 }.joined(separator: "; ")
            }
        }
        try runtime.failpoints.hit(.preflight)
        let (files, plan) = try runtime.makePlan(config, forDeploy: !options.dryRun)
        if !options.skipPromotionCheck && !plan.pending.isEmpty { try checkPromotion(plan.pending) }
        do {
            try runtime.checkAllowed(plan, files: files, allowDestructive: options.allowDestructive)
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
        if !plan.pending.isEmpty { try runtime.checkOwnSnapshotsDecrypt(config) }
        guard !options.dryRun, !plan.pending.isEmpty else { return (files, plan) }
        try runtime.checkSpaceForSnapshot(config, compression: compression, rehearsal: true, onlineTable: online?.table)
        if let stop = config.hooks.stop {
            try DeployJournal(deployId: report.deployId, instance: config.name, startedAt: report.startedAt, stage: .preflight,
                              snapshot: nil, migrations: plan.pending, appStopped: true, committed: false, additive: plan.additive,
                              created: []).write(path: config.journalPath)
            wroteJournal = true
            let result = try hooks.run(name: "stop", command: stop, timeout: config.hooks.timeout, tag: "preflight")
            report.hooks.append(result)
            guard result.succeeded else {
                throw Failure(.hookStopFailed, "the stop hook failed (\(result.timedOut ? "timed out" : "exit \(result.exitCode.map(String.init) ?? "signal")")); output in \(result.outputPath)",
                              hint: "check the hook's command in \(config.file)")
            }
        }
        try DatabaseHolders.probeWriteLock(path: config.databasePath, timeout: config.busyTimeout)
        let holders = DatabaseHolders.find(path: config.databasePath)
        if !holders.isEmpty {
            runtime.events(.fact("the write lock is free; the database is open in \(holders.map(\.description).joined(separator: ", "))"))
        }
        return (files, plan)
    }

    /// Decides whether the migration runs online: when asked (`--online`, `-- online`), or when
    /// the plan's write-lock estimate exceeds `max_write_lock` and no stop hook stops the
    /// application. Refuses when it is asked or needed and the migration cannot run online.
    mutating func chooseOnline(files: [MigrationFile], plan: MigrationPlan) throws {
        guard let (verdict, asked) = try runtime.onlineDecision(files: files, plan: plan, config: config, askedByFlag: options.online) else { return }
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
            throw runtime.writeLockRefusal(plan, config: config, offlineBecause: why)
        }
    }

    /// The migrate stage of an online rebuild (`OnlineRebuild`): copy while the application
    /// writes, cut over, journal the commit, prove, free the old table.
    mutating func migrateOnline(_ rebuild: OnlineRebuildPlan, pending: [MigrationFile], rehearsal: Rehearsal) throws -> ApplyResult {
        let runtime = self.runtime
        let deployId = report.deployId
        let appliedAt = ISO8601DateFormatter().string(from: runtime.clock())
        let runner = OnlineRebuild(
            plan: rebuild, failpoints: runtime.failpoints,
            checkpoint: { try runtime.checkInterruption("the online rebuild stopped before its cut-over; its shadow table and triggers were removed and \(rebuild.table) is as it was") },
            stop: { runtime.interruption() != nil },
            progress: { copied, total in runtime.progress(.working(.copyingRows(table: rebuild.table), done: Int64(copied), total: Int64(total))) },
            debug: runtime.trace, giveUpAfter: config.onlineLockWait)
        let outcome: OnlineRebuild.Outcome
        do {
            defer { runtime.progress(.ended(announce: true)) }
            // The journal says committed the moment the cut-over commits: a failed proof after it
            // must find it so, to undo the deploy.
            var journal = self.journal
            defer { self.journal = journal }
            let path = config.journalPath
            outcome = try runner.run(path: config.databasePath, busyTimeout: config.busyTimeout,
                                     record: { db in try History.record(pending, on: db, deployId: deployId, appliedAt: appliedAt) },
                                     committed: {
                                         journal?.committed = true
                                         try journal?.write(path: path)
                                     })
        } catch let error as SQLiteError where error.interrupted {
            try runtime.checkInterruption("the online rebuild stopped before its cut-over; its shadow table and triggers were removed and \(rebuild.table) is as it was")
            throw error
        }
        runtime.events(.fact("online: \(counted(outcome.rowsCopied, "row")) copied in batches of at most \(String(format: "%.1f", outcome.longestBatchMilliseconds)) ms; "
                             + "the cut-over held the write lock \(String(format: "%.1f", outcome.cutOverMilliseconds)) ms"))
        return ApplyResult(tablesCreated: [], tablesAlreadyExisted: [], tablesProvenUnchanged: 0, unchangedProof: outcome.proof,
                           writeLockMilliseconds: outcome.cutOverMilliseconds, result: rehearsal)
    }

    /// Promotion: each instance before this one in deploy.toml that has a database here must
    /// already have the pending migrations applied.
    func checkPromotion(_ pending: [String]) throws {
        let order = try runtime.workspace.deployConfig().order
        guard let position = order.firstIndex(of: config.name) else { return }
        for earlier in order[..<position] {
            let other = try runtime.workspace.instance(earlier)
            guard FileManager.default.fileExists(atPath: other.databasePath) else {
                runtime.events(.warning("\(earlier) has no database on this host (\(other.databasePath)); promotion not checked there"))
                continue
            }
            let db = try Connection(path: other.databasePath, mode: .inspect, busyTimeout: other.busyTimeout)
            let applied = Set(try History.applied(db).map(\.key))
            let missing = pending.filter { !applied.contains($0) }
            guard missing.isEmpty else {
                throw Failure(.promotionRefused, "promotion refused: \(earlier) comes before \(config.name) in deploy.toml but lacks \(missing.joined(separator: ", "))",
                              hint: "deploy \(earlier) first ('deployctl deploy \(earlier)'), or pass --skip-promotion-check")
            }
        }
    }

    mutating func finishWithNothingToDo(files: [MigrationFile]) throws {
        let defined = try Planner.tablesDefined(by: files)
        let live = try Connection(path: config.databasePath, mode: .inspect, busyTimeout: config.busyTimeout)
        let existing = Set(try live.tableNames())
        report.tablesAlreadyExisted = defined.filter { existing.contains($0) }
        report.outcome = .nothingToDo
        runtime.events(.nothingToDo(alreadyExisting: report.tablesAlreadyExisted))
        try writeReport()
        runtime.events(.deployed(report))
    }

    /// Applies the pending migrations to a scratch copy of the snapshot, with the same code and
    /// checks as the live run, and returns the resulting schema and row counts. For an additive
    /// plan it also proves that the existing tables of the copy are unchanged
    /// (`proveUnchanged`), while no lock on the live database is held.
    /// - Throws: `Failure` `.failed` when an existing table changed on the copy.
    mutating func rehearse(backup: BackupEntry, pending: [MigrationFile], plan: MigrationPlan, store: BackupStore) throws -> Rehearsal {
        let opened = try store.check(backup, keep: true)!
        defer { opened.discard() }
        let scratchPath = DurableFile.temporaryPath(for: store.folder + "/rehearsal.db")
        defer { unlink(scratchPath); unlink(scratchPath + "-journal") }
        close(try DurableFile.createNew(scratchPath))
        try Connection(path: opened.databasePath, mode: .immutable).copy(into: scratchPath, timeout: config.busyTimeout)
        let scratch = try Connection(path: scratchPath, mode: .readWrite)
        try runtime.failpoints.hit(.rehearse)
        let runtime = self.runtime
        let result: ApplyResult
        do {
            result = try Applier(failpoints: .none, proveUnchanged: false, stop: { runtime.interruption() != nil })
                .apply(pending, plan: plan, to: scratch, deployId: report.deployId, appliedAt: "rehearsal", rehearsal: nil)
        } catch let error as SQLiteError where error.interrupted {
            try runtime.checkInterruption("the rehearsal on a copy was stopped; the live database was not changed")
            throw error
        }
        if !plan.additive && journal?.addedColumns == nil && pending.contains(where: { $0.downSQL != nil }) {
            // An undo after commit could run the down parts instead of restoring the snapshot,
            // keeping the application's writes: only if they give the snapshot's content back.
            let reference = try Connection(path: opened.databasePath, mode: .immutable)
            if let reason = try Applier.proveDown(pending, on: scratch, reference: reference) {
                runtime.events(.fact("rehearsal: the down parts are not used for an undo: \(reason)"))
            } else {
                journal?.downProven = true
                journal?.schemaBefore = try Self.schemaLines(reference)
                journal?.downSQL = pending.map { $0.downSQL ?? "" }
                try journal?.write(path: config.journalPath)
                runtime.events(.fact("rehearsal: up then down gives the snapshot's schema and rows back: an undo after commit runs the down parts"))
            }
        }
        runtime.events(.fact("rehearsal: \(counted(result.tablesCreated.count, "table")) created on a copy of the snapshot"))
        if plan.classification != .destructive {
            // Tables a preserving migration touches were compared row by row by the plan.
            let (proven, byPages) = try proveUnchanged(rehearsed: scratch, snapshot: opened.databasePath, except: Set(plan.evidence.map(\.table)))
            runtime.events(.fact("rehearsal: \(proven) existing tables unchanged on the copy (\(byPages) with every page identical to the snapshot's, "
                        + "\(proven - byPages) by equal content fingerprints)"))
        }
        return result.result
    }

    /// Proves every existing table of the rehearsed copy holds what the snapshot holds. Tables
    /// none of whose pages differ from the snapshot's, at the same root page with the same
    /// definition, are byte-identical; the rest (pages an auto-vacuum database moved, say) get
    /// content fingerprints on both sides, two cores at once. Returns the tables proven and how
    /// many by their pages.
    /// - Throws: `Failure` `.failed` naming the tables that changed.
    private func proveUnchanged(rehearsed scratch: Connection, snapshot: String, except touched: Set<String>) throws -> (Int, Int) {
        let original = try Connection(path: snapshot, mode: .immutable)
        let before = try original.tableRoots().filter { $0.key != History.table && !touched.contains($0.key) }
        let identical = try scratch.tablesWithIdenticalPages(as: snapshot, referenceRoots: before, timeout: config.busyTimeout)
        let suspects = before.keys.filter { !identical.contains($0) }.sorted()
        let (old, new) = try bothAtOnce({ try suspects.map { try original.fingerprint(table: $0) } },
                                        { try suspects.map { try scratch.fingerprint(table: $0) } })
        let changed = zip(old, new).filter { $0 != $1 }.map(\.0.table)
        guard changed.isEmpty else {
            throw Failure(.rehearsalChangedTables, "the rehearsal changed existing tables on the copy: \(changed.joined(separator: ", "))",
                          hint: "the migration changes tables the plan did not see it change; fix it, the live database was not touched")
        }
        return (before.count, before.count - suspects.count)
    }

    /// Start hook and health check; on failure undo the committed deploy.
    mutating func restart(committed: Bool) throws {
        try runtime.failpoints.hit(.afterCommit)
        if let start = config.hooks.start {
            let result = try hooks.run(name: "start", command: start, timeout: config.hooks.timeout, tag: "restart")
            report.hooks.append(result)
            guard result.succeeded else {
                throw Failure(.hookStartFailed, "the start hook failed; output in \(result.outputPath)")
            }
        }
        try runtime.failpoints.hit(.restart)
        if let health = config.hooks.health {
            let last = try hooks.runHealthCheck(command: health, attempts: config.hooks.healthAttempts, timeout: config.hooks.timeout)
            report.hooks.append(last)
            guard last.succeeded else {
                throw Failure(.hookHealthFailed, "the health check failed \(counted(config.hooks.healthAttempts, "time")); output in \(last.outputPath)")
            }
        }
    }

    /// Turns a failure into its final form: undo a committed deploy, start the app if this run
    /// stopped it, write the report, release the lock.
    mutating func fail(_ error: DeployctlError) -> DeployFailure {
        var final: DeployctlError = error
        report.error = error.message
        report.errorCode = error.code.rawValue
        if let journal, journal.committed {
            if let stop = config.hooks.stop, report.hooks.contains(where: { $0.name == "start" && $0.succeeded }),
               let result = try? hooks.run(name: "stop", command: stop, timeout: config.hooks.timeout, tag: "undo") {
                report.hooks.append(result)
            }
            do {
                let how = try runtime.undo(journal: journal, config: config)
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
            let store = runtime.store(config)
            if let entry = try? store.entry(named: name), (try? store.remove([entry])) != nil {
                report.snapshot = nil
                runtime.events(.fact("removed the snapshot \(name): the deploy failed before migrating, so the live database is unchanged and the copy is not needed"))
            }
        }
        // Start the app again when the last thing done to it was a stop.
        let lastAppHook = report.hooks.last { $0.name == "stop" || $0.name == "start" }
        if lastAppHook?.name == "stop", let start = config.hooks.start,
           let result = try? hooks.run(name: "start", command: start, timeout: config.hooks.timeout, tag: "after-failure") {
            report.hooks.append(result)
        }
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
