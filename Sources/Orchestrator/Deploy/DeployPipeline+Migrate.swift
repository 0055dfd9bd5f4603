import Backup
import Foundation
import Locking
import Migration
import SQLite
import Support

extension DeployPipeline {
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
    func proveUnchanged(rehearsed scratch: Connection, snapshot: String, except touched: Set<String>) throws -> (Int, Int) {
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
}
