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
    /// The rehearse stage (`Rehearser`): the pending migrations on a scratch copy of the
    /// snapshot, with the same code and checks as the live run; records in the journal when the
    /// down parts proved they give the snapshot back (an undo then runs them).
    /// - Throws: `Failure` `rehearsal.changed_existing_tables`; what applying throws.
    mutating func rehearse(backup: BackupEntry, pending: [MigrationFile], plan: MigrationPlan, store: BackupStore) throws -> Rehearsal {
        let opened = try store.check(backup, keep: true)!
        defer { opened.discard() }
        let runtime = self.runtime
        let outcome: Rehearser.Outcome
        do {
            outcome = try Rehearser(busyTimeout: config.busyTimeout, stop: { runtime.interruption() != nil })
                .rehearse(snapshot: opened.databasePath, in: store.folder, pending: pending, plan: plan, deployId: report.deployId,
                          tryDown: !plan.additive && journal?.addedColumns == nil,
                          afterCopy: { try runtime.failpoints.hit(.rehearse) })
        } catch let error as SQLiteError where error.interrupted {
            try runtime.checkInterruption("the rehearsal on a copy was stopped; the live database was not changed")
            throw error
        }
        switch outcome.down {
        case .refused(let reason):
            runtime.events(.fact("rehearsal: the down parts are not used for an undo: \(reason)"))
        case .proven(let schemaBefore, let downSQL):
            // An undo after commit runs the down parts instead of restoring the snapshot,
            // keeping the application's writes.
            journal?.downProven = true
            journal?.schemaBefore = schemaBefore
            journal?.downSQL = downSQL
            try journal?.write(path: config.journalPath)
            runtime.events(.fact("rehearsal: up then down gives the snapshot's schema and rows back: an undo after commit runs the down parts"))
        case nil: break
        }
        runtime.events(.fact("rehearsal: \(counted(outcome.tablesCreated, "table")) created on a copy of the snapshot"))
        if let (proven, byPages) = outcome.unchanged {
            runtime.events(.fact("rehearsal: \(proven) existing tables unchanged on the copy (\(byPages) with every page identical to the snapshot's, "
                        + "\(proven - byPages) by equal content fingerprints)"))
        }
        return outcome.rehearsal
    }

    /// The snapshot stage: the pre-deploy snapshot, named in the report and the journal before
    /// anything else happens.
    mutating func takeSnapshot(label: String, store: BackupStore) throws -> BackupEntry {
        var request = instance.snapshotRequest(label: label, compression: compression)
        request.set = set
        let runtime = self.runtime
        // Between the copy and compressing it, and before publishing: an interrupt leaves no snapshot.
        request.checkpoint = { try runtime.checkInterruption("no snapshot was kept (its temp files were removed); the live database was not changed") }
        request.interrupted = { runtime.interruption() != nil }
        let entry = try Snapshotter(store: store).snapshot(request, progress: runtime.progress)
        report.snapshot = entry.name
        journal?.snapshot = entry.name
        try journal?.write(path: config.journalPath)
        runtime.events(.fact("backup: \(entry.path)"))
        try runtime.failpoints.hit(.afterSnapshot)
        return entry
    }

    /// The migrate stage in one transaction (`Applier`): the journal says committed the moment
    /// the transaction commits.
    mutating func migrate(_ pending: [MigrationFile], plan: MigrationPlan, rehearsal: Rehearsal) throws -> ApplyResult {
        let runtime = self.runtime
        let applier = Applier(failpoints: runtime.failpoints, tables: { runtime.events(.table($0)) }, debug: runtime.trace,
                              interrupted: { try runtime.checkInterruption("the migration was rolled back; the database is as it was") },
                              stop: { runtime.interruption() != nil })
        do {
            let result = try applier.apply(pending, plan: plan, toDatabaseAt: config.databasePath, busyTimeout: config.busyTimeout, deployId: report.deployId,
                                           appliedAt: ISO8601DateFormatter().string(from: runtime.clock()), rehearsal: rehearsal)
            journal?.committed = true
            try journal?.write(path: config.journalPath)
            return result
        } catch let error as SQLiteError where error.kind == .temporary {
            throw DatabaseHolders.busy(path: config.databasePath, timeout: config.busyTimeout)
        } catch let error as SQLiteError where error.interrupted {
            try runtime.checkInterruption("the running statement was stopped and the migration rolled back; the database is as it was")
            throw error
        }
    }
}
