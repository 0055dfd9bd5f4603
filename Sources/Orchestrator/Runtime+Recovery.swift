import Backup
import Foundation
import Locking
import Migration
import SQLite
import Support

extension Runtime {
    /// Finishes or undoes a deploy that was killed, from its journal (SPEC.md): an uncommitted
    /// migration was rolled back by SQLite; a committed one is verified again and kept (or
    /// undone when the check fails); an app the journal shows stopped is started. Writes that
    /// deploy's report and removes the journal. Returns what it did, or nil when there was
    /// nothing to recover. The caller holds the instance lock.
    /// - Throws: `Failure` `.unproven` when a committed deploy fails its check and cannot be undone.
    func recoverUnfinishedDeploy(_ config: InstanceConfig) throws -> String? {
        guard let journal = try DeployJournal.read(path: config.journalPath) else { return nil }
        let committed: Bool
        let healthy: Bool
        do {
            let live = try Connection(path: config.databasePath, mode: .inspect, busyTimeout: config.busyTimeout)
            committed = try History.applied(live).contains { $0.deployId == journal.deployId }
            healthy = try live.integrityProblems().isEmpty
        }
        var note: String
        if committed && healthy {
            note = "deploy \(journal.deployId) was interrupted after its commit at stage \(journal.stage); its migration passed quick_check again and is kept"
        } else if committed {
            try undo(journal: journal, config: config)
            note = "deploy \(journal.deployId) was interrupted after its commit and failed quick_check; it was undone"
        } else {
            note = "deploy \(journal.deployId) was interrupted at stage \(journal.stage) before its commit; SQLite rolled it back, the database is as it was"
        }
        var hooks = [HookResult]()
        if journal.appStopped, let start = config.hooks.start {
            let runner = HookRunner(outputFolder: config.deploysFolder + "/" + journal.deployId, workingDirectory: config.folder, trace: trace)
            let result = try runner.run(name: "start", command: start, timeout: config.hooks.timeout, tag: "recovery")
            hooks.append(result)
            note += result.succeeded ? "; the application, left stopped, was started" : "; starting the application failed (see \(result.outputPath))"
        }
        var report = DeployReport(deployId: journal.deployId, instance: config.name, startedAt: journal.startedAt,
                                  outcome: committed && healthy ? .recoveredKept : (committed ? .recoveredUndone : .recoveredRolledBack))
        report.finishedAt = clock()
        report.snapshot = journal.snapshot
        report.pending = journal.migrations
        report.hooks = hooks
        report.recovered = note
        try DurableFile.createFolder(config.deploysFolder)
        try DurableFile.write(try JSON.encoder().encode(report), to: config.deploysFolder + "/\(journal.deployId).json")
        try DeployJournal.remove(path: config.journalPath)
        events(.fact("recovered: \(note)"))
        return note
    }

    /// Undoes a committed deploy (SPEC.md stage 6). Additive: drops exactly the objects it
    /// created and its history rows in one transaction, so application writes to older tables
    /// survive, then proves none of them is left. Otherwise: restores the snapshot.
    /// Returns what was done, for the operator.
    /// - Throws: when the undo fails or cannot be proven.
    @discardableResult
    func undo(journal: DeployJournal, config: InstanceConfig) throws -> String {
        var fallback = ""
        if let columns = journal.addedColumns, !journal.additive {
            do {
                return try dropAdded(journal, columns: columns, config: config)
            } catch {
                // A column SQLite cannot drop (a view or key uses it): the snapshot then.
                fallback = "dropping the added columns failed (\(error)), so "
            }
        }
        if journal.downProven == true, !journal.additive {
            do {
                return try runDown(journal, config: config)
            } catch {
                fallback += "running the down parts failed (\(error)), so "
            }
        }
        if journal.additive { return try dropAdded(journal, columns: [:], config: config) }
        guard let name = journal.snapshot else { throw Failure(.undoNoSnapshot, "no snapshot recorded to restore from") }
        let store = store(config)
        let opened = try store.check(try store.entry(named: name), keep: true)!
        defer { opened.discard() }
        let live = try Connection(path: config.databasePath, mode: .readWrite, busyTimeout: config.busyTimeout)
        let result = try restoreLive(opened, into: live, previewVersion: nil, config: config, store: store, failpoint: nil, interruptible: false)
        if case .differs = result.proof { throw Failure(.undoUnproven, "after restoring \(name), the live database does not hold its pages") }
        return fallback + "the snapshot \(name) was restored; the state it replaced, with any application writes since the deploy, is saved as \(result.saved.name)"
    }

    /// Undoes a deploy by its migrations' down parts, newest first, in one transaction with its
    /// history rows; proves the schema is the one before the deploy. The application's writes
    /// are kept, as far as the down parts keep them.
    /// - Throws: the SQL error, or `.unproven` when the schema differs (rolled back either way).
    private func runDown(_ journal: DeployJournal, config: InstanceConfig) throws -> String {
        guard let downs = journal.downSQL, downs.count == journal.migrations.count else {
            throw Failure(.undoNoDownParts, "the journal holds no proven down parts")
        }
        let live = try Connection(path: config.databasePath, mode: .readWrite, busyTimeout: config.busyTimeout)
        try live.execute("BEGIN IMMEDIATE")
        do {
            let violationsBefore = Planner.foreignKeyViolations(live)
            // The text the rehearsal proved, newest migration first; never what is on disk now.
            for down in downs.reversed() {
                for sql in try Connection.split(down) where !Planner.isForeignKeysPragma(sql) { try live.execute(sql) }
            }
            let added = Planner.foreignKeyViolations(live).filter { $0.value > violationsBefore[$0.key, default: 0] }
            guard added.isEmpty else {
                throw Failure(.undoUnproven, "the down parts would leave foreign keys pointing nowhere: \(added.keys.sorted().joined(separator: ", "))")
            }
            try live.rows("DELETE FROM deployctl_migrations WHERE deploy_id = ?", [.text(journal.deployId)]).forEach { _ in }
            if try live.scalar("SELECT count(*) FROM deployctl_migrations").int == 0 { try live.execute("DROP TABLE deployctl_migrations") }
            guard try Pipeline.schemaLines(live) == journal.schemaBefore, try live.integrityProblems().isEmpty else {
                throw Failure(.undoUnproven, "after the down parts the schema is not the one before the deploy")
            }
            try live.execute("COMMIT")
        } catch {
            try? live.execute("ROLLBACK")
            throw error
        }
        return "its down parts were run (\(journal.migrations.reversed().joined(separator: ", "))), proven on the rehearsal to give the snapshot's content back; the schema is the one before the deploy"
    }

    /// Undoes an additive deploy (no `columns`), or a preserving one that only added columns and
    /// new objects, in one transaction:
    /// drops the objects it created, then the columns it added, and its history rows; proves
    /// none is left. The application's writes to existing columns are kept.
    /// - Throws: the SQL error when a column cannot be dropped (the transaction is rolled back).
    private func dropAdded(_ journal: DeployJournal, columns: [String: [String]], config: InstanceConfig) throws -> String {
        let live = try Connection(path: config.databasePath, mode: .readWrite, busyTimeout: config.busyTimeout)
        try live.execute("BEGIN IMMEDIATE")
        do {
            for object in journal.created where object.type == "index" || object.type == "trigger" || object.type == "view" {
                try live.execute("DROP \(object.type.uppercased()) IF EXISTS \(quoteIdentifier(object.name))")
            }
            for object in journal.created.reversed() where object.type == "table" {
                try live.execute("DROP TABLE IF EXISTS \(quoteIdentifier(object.name))")
            }
            for (table, added) in columns.sorted(by: { $0.key < $1.key }) {
                for column in added.reversed() {
                    try live.execute("ALTER TABLE \(quoteIdentifier(table)) DROP COLUMN \(quoteIdentifier(column))")
                }
            }
            if try live.scalar("SELECT 1 FROM sqlite_schema WHERE name = 'deployctl_migrations'").int == 1 {
                try live.rows("DELETE FROM deployctl_migrations WHERE deploy_id = ?", [.text(journal.deployId)]).forEach { _ in }
                // Empty now: this deploy created it (the first one), so the schema goes back too.
                if try live.scalar("SELECT count(*) FROM deployctl_migrations").int == 0 { try live.execute("DROP TABLE deployctl_migrations") }
            }
            let names = Set(try live.schema().map(\.name))
            var left = journal.created.filter { names.contains($0.name) }.map(\.name)
            for (table, added) in columns {
                let now = Set(try live.rows("SELECT lower(name) FROM pragma_table_info(?)", [.text(table)]).compactMap { $0[0].string })
                left += added.filter { now.contains($0.lowercased()) }.map { "\(table).\($0)" }
            }
            guard left.isEmpty, try live.integrityProblems().isEmpty else {
                throw Failure(.undoUnproven, "undo left \(left.joined(separator: ", ")) behind")
            }
            try live.execute("COMMIT")
        } catch {
            try? live.execute("ROLLBACK")
            throw error
        }
        if columns.isEmpty { return "the objects it created were dropped; application writes to existing tables were kept" }
        let list = columns.sorted { $0.key < $1.key }.flatMap { table, added in added.map { "\(table).\($0)" } }
        return "the columns it added (\(list.joined(separator: ", "))) and the objects it created were dropped; application writes to existing columns were kept"
    }
}
