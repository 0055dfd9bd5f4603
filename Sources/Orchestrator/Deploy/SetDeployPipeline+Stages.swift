import Backup
import Foundation
import Locking
import Migration
import SQLite
import Support

/// One database's migrations and plan, as the set's preflight found them.
struct PreparedDatabase {
    let files: [MigrationFile]
    let plan: MigrationPlan
    /// The pending migrations' files, in order.
    var pending: [MigrationFile] { files.filter { plan.pending.contains($0.key) } }
}

extension SetDeployPipeline {
    /// The set's preflight: the instance lock, recovery of an unfinished deploy of the set, each
    /// database's own preflight (plan, promotion, refusals, space), then the stop hook once and
    /// each database's write lock.
    mutating func preflight() throws -> [PreparedDatabase] {
        if !options.dryRun {
            lock = try DeployRecovery.lockForDeploy(instance)
            if let note = try DeployRecovery.recoverUnfinished(for: instance) { report.recovered = note }
        }
        let prepared = try databases.indices.map { index in
            let (files, plan) = try databases[index].preflight()
            return PreparedDatabase(files: files, plan: plan)
        }
        let pending = prepared.indices.filter { !prepared[$0].plan.pending.isEmpty }
        guard !options.dryRun, !pending.isEmpty else { return prepared }
        // The databases with nothing pending are snapshotted too (the set stays complete).
        for index in databases.indices where !pending.contains(index) {
            try databases[index].instance.checkSpaceForSnapshot(compression: databases[index].compression, rehearsal: false)
        }
        if instance.config.hooks.stop != nil {
            // Every database's journal says the application may be stopped before it is.
            for index in pending {
                try DeployJournal(deployId: report.deployId, instance: instance.config.name, startedAt: report.startedAt, stage: .preflight,
                                  snapshot: nil, migrations: prepared[index].plan.pending, appStopped: true, committed: false,
                                  additive: prepared[index].plan.additive, created: []).write(path: databases[index].config.journalPath)
                databases[index].wroteJournal = true
            }
            defer { report.hooks = hooks.results }
            try hooks.stop(tag: "preflight")
        } else {
            runtime.events(.fact("no stop hook: each database's snapshot is consistent on its own, not with the others' (the application may write between them)"))
        }
        for index in pending { try databases[index].probeWriteLock() }
        return prepared
    }

    mutating func finishWithNothingToDo(_ prepared: [PreparedDatabase]) throws {
        for (index, entry) in prepared.enumerated() {
            let config = databases[index].config
            databases[index].report.tablesAlreadyExisted = try Planner.tablesExisting(definedBy: entry.files, path: config.databasePath, busyTimeout: config.busyTimeout)
            databases[index].report.outcome = .nothingToDo
        }
        report.tablesAlreadyExisted = databases.flatMap(\.report.tablesAlreadyExisted)
        report.outcome = .nothingToDo
        runtime.events(.nothingToDo(alreadyExisting: report.tablesAlreadyExisted))
        try writeReport()
        runtime.events(.deployed(report))
    }

    /// Turns a failure into its final form: undo every database that committed (the last
    /// first), remove the snapshots when no database was touched, start the application if this
    /// run stopped it, write the report, release the lock.
    mutating func fail(_ error: DeployctlError) -> DeployFailure {
        var final: DeployctlError = error
        report.error = error.message
        report.errorCode = error.code.rawValue
        let committed = active.filter { databases[$0].journal?.committed == true }
        let restored = restoreTampered(except: committed)
        if !committed.isEmpty {
            final = undo(committed, after: error)
        } else if !report.stages.contains(where: { $0.name == .migrateAndVerify }) {
            // No database was touched: the snapshots are not needed (kept, every retry would add a set).
            for index in databases.indices {
                guard let name = databases[index].report.snapshot else { continue }
                let store = databases[index].instance.store
                if let entry = try? store.entry(named: name), (try? store.remove([entry])) != nil { databases[index].report.snapshot = nil }
            }
        }
        if !restored.isEmpty, let failure = final as? Failure {
            final = Failure(failure.code, failure.message + "\nRestored from their snapshots, as the command changed them: \(restored.joined(separator: "; ")).",
                            hint: failure.hint, cause: failure.cause)
        }
        hooks.startIfStopped(tag: "after-failure")
        report.hooks = hooks.results
        final = hooks.sayingIfDown(final)
        if !options.dryRun && lock != nil {
            try? writeReport()
            if report.outcome != .unproven {
                for index in databases.indices where databases[index].wroteJournal { try? DeployJournal.remove(path: databases[index].config.journalPath) }
            }
        }
        lock?.release()
        return DeployFailure(report: report, underlying: final)
    }

    /// The databases a framework command changed without being pointed at them (and that this
    /// deploy did not commit to), restored from their snapshots; says what was done for each.
    mutating func restoreTampered(except committed: [Int]) -> [String] {
        var restored = [String]()
        for index in tampered where !committed.contains(index) {
            guard let name = databases[index].report.snapshot else { continue }
            let database = databases[index].config.databaseName ?? ""
            do {
                restored.append("\(database): \(try DeployRecovery(databases[index].instance).restoreSnapshot(named: name))")
            } catch {
                restored.append("\(database): restoring \(name) failed (\(error)); restore it with 'deployctl restore \(instance.config.name) \(name) --database \(database) --yes'")
            }
        }
        if !restored.isEmpty { runtime.events(.fact("restored from their snapshots: \(restored.joined(separator: "; "))")) }
        return restored
    }

    /// Undoes every database that committed, the last first, by its class; the error the
    /// deploy ends with (`deploy.undone`, or `deploy.undo_failed` naming what could not be).
    mutating func undo(_ committed: [Int], after error: DeployctlError) -> DeployctlError {
        hooks.stopBeforeUndo(tag: "undo")
        var done = [String]()
        var failed = [String]()
        for index in committed.reversed() {
            let name = databases[index].config.databaseName ?? ""
            do {
                let how = try DeployRecovery(databases[index].instance).undo(journal: databases[index].journal!)
                databases[index].report.outcome = .undone
                done.append("\(name): \(how)")
            } catch let undoError {
                databases[index].report.outcome = .unproven
                failed.append("\(name): \(undoError)")
            }
        }
        let untouched = active.filter { !committed.contains($0) }.compactMap { databases[$0].config.databaseName }
        let others = untouched.isEmpty ? "" : "; \(untouched.joined(separator: ", ")) had not been changed"
        guard failed.isEmpty else {
            report.outcome = .unproven
            return Failure(.deployUndoFailed, "\(error.message)\nUndoing the deploy failed in \(failed.joined(separator: "; "))"
                           + (done.isEmpty ? "" : "; undone in \(done.joined(separator: "; "))") + others,
                           hint: "restore the set from before the deploy with 'deployctl restore \(instance.config.name) --latest --yes'", cause: error.code)
        }
        report.outcome = .undone
        runtime.events(.stepDone("undone: every database the deploy had changed was put back and proven"))
        return Failure(.deployUndone, "\(error.message)\nThe deploy was undone in every database it had changed (\(done.joined(separator: "; ")))\(others).",
                       hint: error.hint, cause: error.code)
    }

    mutating func writeReport() throws {
        report.finishedAt = runtime.clock()
        report.databases = databases.map(\.report)
        try DeployRecovery.write(report, config: instance.config)
    }
}
