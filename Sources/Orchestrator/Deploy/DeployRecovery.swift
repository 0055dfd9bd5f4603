import Backup
import Foundation
import Locking
import Migration
import Support

/// A deploy that was killed, finished or undone from its journal by the next deploy or restore;
/// and the undo of a committed deploy (a failed deploy's, or recovery's).
struct DeployRecovery {
    let instance: InstanceContext
    var config: InstanceConfig { instance.config }

    init(_ instance: InstanceContext) { self.instance = instance }

    /// Finishes or undoes a deploy that was killed, from its journal (SPEC.md): an uncommitted
    /// migration was rolled back by SQLite; a committed one is verified again and kept (or
    /// undone when the check fails); an app the journal shows stopped is started. Writes that
    /// deploy's report and removes the journal. Returns what it did, or nil when there was
    /// nothing to recover. The caller holds the instance lock.
    /// - Throws: `undo.unproven` or `undo.no_snapshot` (2) when a committed deploy fails its check and
    ///   cannot be undone.
    func recoverUnfinished() throws -> String? {
        guard let journal = try DeployJournal.read(path: config.journalPath) else { return nil }
        let report = try recover(journal, undoCommitted: false, startsApplication: true)
        try Self.write(report, config: config)
        try DeployJournal.remove(path: config.journalPath)
        instance.runtime.events(.fact("recovered: \(report.recovered ?? "")"))
        return report.recovered
    }

    /// Recovers what an earlier run left unfinished for `instance`: its journal, or, for a set
    /// or one database of a set, every journal of the set (`recoverUnfinishedSet`). The caller
    /// holds the instance lock.
    static func recoverUnfinished(for instance: InstanceContext) throws -> String? {
        let members = try instance.setMembers
        return members.isEmpty ? try DeployRecovery(instance).recoverUnfinished() : try recoverUnfinishedSet(members)
    }

    /// Takes the instance lock for a deploy, saying when an earlier run died holding it.
    static func lockForDeploy(_ instance: InstanceContext) throws -> InstanceLock {
        let lock = try instance.lock(operation: "deploy", stage: Stage.preflight.rawValue)
        if let crashed = lock.crashedHolder {
            instance.runtime.events(.warning("an earlier run (PID \(crashed.pid), \(crashed.command)) ended without releasing the instance lock: it crashed or was killed"))
        }
        return lock
    }

    /// The same for each database of a set (the caller holds the instance lock): when a deploy
    /// was killed between two databases' commits, the databases that committed are undone too,
    /// so that the set is as it was before that deploy; when all committed, all are kept.
    /// Writes one report for the set.
    static func recoverUnfinishedSet(_ databases: [InstanceContext]) throws -> String? {
        // A set restore killed between two databases: put back the ones it had restored.
        let restore = try databases.first.flatMap { try SetRestoreJournal.recover($0, databases: databases) }
        let deploy = try recoverUnfinishedDeploys(databases)
        return [restore, deploy].compactMap { $0 }.joined(separator: "; ").nilIfEmpty
    }

    /// The set's deploy journals (see `recoverUnfinishedSet`).
    private static func recoverUnfinishedDeploys(_ databases: [InstanceContext]) throws -> String? {
        let journals = try databases.compactMap { database in try DeployJournal.read(path: database.config.journalPath).map { (database, $0) } }
        guard let first = journals.first else { return nil }
        let states = try journals.map { database, journal in
            journal.command == true ? commandState(journal)
                : try History.state(ofDeploy: journal.deployId, databasePath: database.config.databasePath, busyTimeout: database.config.busyTimeout)
        }
        // One database that is not kept (not committed, or committed but not proven healthy)
        // means none is: the ones that committed are undone with it.
        let partial = states.contains { $0.committed } && states.contains { !($0.committed && $0.healthy) }
        var reports = [DeployReport]()
        for (index, (database, journal)) in journals.enumerated() {
            var report = try DeployRecovery(database).recover(journal, undoCommitted: partial, startsApplication: index == journals.count - 1)
            report.database = database.config.databaseName
            reports.append(report)
        }
        let note = (partial ? "deploy \(first.1.deployId) was interrupted before every database of its set was migrated and proven, so the databases that committed were undone: " : "")
            + zip(journals, reports).map { "\($0.0.config.databaseName ?? ""): \($1.recovered ?? "")" }.joined(separator: "; ")
        var report = DeployReport(deployId: first.1.deployId, instance: first.0.config.name, startedAt: first.1.startedAt,
                                  outcome: reports.map(\.outcome).contains(.recoveredUndone) ? .recoveredUndone
                                      : reports.map(\.outcome).contains(.recoveredKept) ? .recoveredKept : .recoveredRolledBack)
        report.finishedAt = first.0.runtime.clock()
        report.recovered = note
        report.hooks = reports.flatMap(\.hooks)
        report.databases = reports
        report.pending = reports.flatMap { database in database.pending.map { "\(database.database ?? "")/\($0)" } }
        try write(report, config: first.0.config)
        for (database, _) in journals { try DeployJournal.remove(path: database.config.journalPath) }
        first.0.runtime.events(.fact("recovered: \(note)"))
        return note
    }

    /// Recovers one database's deploy from its journal; `undoCommitted` undoes a committed
    /// migration even when it checks good (another database of its set did not commit). Returns
    /// the report of that deploy; the journal is left for the caller to remove.
    private func recover(_ journal: DeployJournal, undoCommitted: Bool, startsApplication: Bool) throws -> DeployReport {
        // A framework command's deploy: its journal alone says whether the live run began and was proven.
        let (committed, healthy) = journal.command == true ? Self.commandState(journal)
            : try History.state(ofDeploy: journal.deployId, databasePath: config.databasePath, busyTimeout: config.busyTimeout)
        var note: String
        let kept = committed && healthy && !undoCommitted
        if kept {
            note = "deploy \(journal.deployId) was interrupted after its commit at stage \(journal.stage); its migration passed quick_check again and is kept"
        } else if committed {
            let how = try undo(journal: journal)
            note = "deploy \(journal.deployId) was interrupted after its commit and " + (healthy ? "another database of its set had not committed" : "failed quick_check") + "; it was undone: \(how)"
        } else {
            note = "deploy \(journal.deployId) was interrupted at stage \(journal.stage) before its commit; SQLite rolled it back, the database is as it was"
        }
        // A command database's own words, unless it is undone because another database was.
        if journal.command == true && !(kept == false && committed && healthy) { note = Self.commandNote(journal) }
        let hooks = AppHooks(instance, outputFolder: config.deploysFolder + "/" + journal.deployId)
        if startsApplication, journal.appStopped, let result = try hooks.startAfterRecovery() {
            note += result.succeeded ? "; the application, left stopped, was started" : "; starting the application failed (see \(result.outputPath))"
            if let down = hooks.applicationDown {
                // Seen under --quiet and --json too: the command itself may well succeed.
                instance.runtime.events(.notice("recovering deploy \(journal.deployId): \(down)"))
            }
        }
        var report = DeployReport(deployId: journal.deployId, instance: config.name, startedAt: journal.startedAt,
                                  outcome: kept ? .recoveredKept : (committed ? .recoveredUndone : .recoveredRolledBack))
        report.finishedAt = instance.runtime.clock()
        report.snapshot = journal.snapshot
        report.pending = journal.migrations
        report.hooks = hooks.results
        report.recovered = note
        return report
    }

    /// Writes a deploy's report durably into the deploys folder.
    static func write(_ report: DeployReport, config: InstanceConfig) throws {
        try DurableFile.createFolder(config.deploysFolder)
        try DurableFile.write(try JSON.encoder().encode(report), to: config.deploysFolder + "/\(report.deployId).json")
    }

    /// Undoes a committed deploy (SPEC.md stage 6). Additive: drops exactly the objects it
    /// created and its history rows in one transaction, so application writes to older tables
    /// survive, then proves none of them is left. Otherwise, in place when the journal says how
    /// (the columns it only added, or down parts the rehearsal proved), else or when that fails:
    /// restores the snapshot. Returns what was done, for the operator.
    /// - Throws: when the undo fails or cannot be proven.
    @discardableResult
    func undo(journal: DeployJournal) throws -> String {
        if journal.additive {
            return try Undo(deployId: journal.deployId, strategy: .dropAdded(created: try Self.createdObjects(journal, config: config), columns: [:]))
                .run(databasePath: config.databasePath, busyTimeout: config.busyTimeout)
        }
        var fallback = ""
        for strategy in Self.inPlaceUndos(journal, created: try? Self.createdObjects(journal, config: config)) {
            do {
                return try Undo(deployId: journal.deployId, strategy: strategy).run(databasePath: config.databasePath, busyTimeout: config.busyTimeout)
            } catch {
                // A column SQLite cannot drop (a view or key uses it), a down part that fails: the snapshot then.
                fallback += "\(strategy.attempt) failed (\(error)), so "
            }
        }
        guard let name = journal.snapshot else { throw Failure(.undoNoSnapshot, "no snapshot recorded to restore from") }
        var store = instance.store
        // An undo finishes whatever arrives meanwhile: a framework command's deploy is undone
        // because an interrupt stopped its command.
        store.stopped = { false }
        let opened = try store.check(try store.entry(named: name), keep: true)!
        defer { opened.discard() }
        if let strategy = Self.commandUndo(journal, snapshot: opened.databasePath, config: config) {
            do {
                return try Undo(deployId: journal.deployId, strategy: strategy).run(databasePath: config.databasePath, busyTimeout: config.busyTimeout)
            } catch {
                fallback += "\(strategy.attempt) failed (\(error)), so "
            }
        }
        return fallback + (try restore(opened, named: name, store: store))
    }

    /// Restores the snapshot `name` into the live database, not stopped by signals (an undo);
    /// says what it did.
    func restoreSnapshot(named name: String) throws -> String {
        var store = instance.store
        store.stopped = { false }
        let opened = try store.check(try store.entry(named: name), keep: true)!
        defer { opened.discard() }
        return try restore(opened, named: name, store: store)
    }

    private func restore(_ opened: OpenedBackup, named name: String, store: BackupStore) throws -> String {
        let live = try instance.restorer.openLive(config.databasePath, readOnly: false)
        let result = try LiveRestore(instance).restore(opened, into: live, previewVersion: nil, store: store, failpoint: nil, interruptible: false)
        if case .differs = result.proof { throw Failure(.undoUnproven, "after restoring \(name), the live database does not hold its pages") }
        return "the snapshot \(name) was restored; the state it replaced, with any application writes since the deploy, is saved as \(result.saved.name)"
    }

    /// The ways a non-additive deploy's journal says it can be undone in place, in the order
    /// they are tried: dropping the columns it only added, then its proven down parts.
    /// `created`: nil when the journal's objects cannot be read, which leaves the snapshot.
    static func inPlaceUndos(_ journal: DeployJournal, created: [CreatedObject]?) -> [Undo.Strategy] {
        var strategies = [Undo.Strategy]()
        if let columns = journal.addedColumns, let created { strategies.append(.dropAdded(created: created, columns: columns)) }
        // Down parts only with the text and the schema the rehearsal proved them with.
        if journal.downProven == true, let downs = journal.downSQL, let schema = journal.schemaBefore {
            strategies.append(.runDown(migrations: journal.migrations, downSQL: downs, schemaBefore: schema))
        }
        return strategies
    }

    /// The objects the journal says the deploy created.
    /// - Throws: `undo.unproven` for a type no plan writes (a damaged journal): what to drop
    ///   cannot be said.
    static func createdObjects(_ journal: DeployJournal, config: InstanceConfig) throws -> [CreatedObject] {
        try journal.created.map { object in
            guard let type = CreatedObject.Kind(rawValue: object.type) else {
                throw Failure(.undoUnproven, "the deploy journal \(config.journalPath) names \(object.name) with an unknown type '\(object.type)'")
            }
            return CreatedObject(type: type, name: object.name)
        }
    }
}

extension String {
    /// nil for the empty string.
    var nilIfEmpty: String? { isEmpty ? nil : self }
}
