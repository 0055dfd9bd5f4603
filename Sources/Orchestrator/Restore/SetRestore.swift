import Backup
import Foundation
import Locking
import Support

extension RestorePlanner {
    /// `deployctl restore <instance> --latest` into the live databases of an instance of several
    /// (no `--database`): the newest complete set — a backup of every database from one deploy
    /// or one `snapshot` run (`Manifest.set`) — each checked and previewed like a single
    /// restore. A set with any member missing, failed or damaged is passed over, and named.
    /// Returns nil when the request is not for a set (one database, `--database`, a named
    /// backup, `--to`, `--replace`, `--remote`): `begin` handles those.
    /// - Throws: `restore.no_usable_backup` (66) when no complete set is good.
    public func beginSet(_ request: RestoreRequest) throws -> PreparedSetRestore? {
        guard case .latest(let label) = request.selection, case .live = request.target, case .local = request.source else { return nil }
        let instance = try runtime.instanceSet(request.instance, for: request.dryRun ? .inspect : .changeLive)
        guard instance.hasDatabaseSet, runtime.database == nil else { return nil }
        let databases = try instance.selectedDatabases
        var lock: InstanceLock?
        if !request.dryRun {
            lock = try instance.lock(operation: "restore", stage: "check and preview")
            _ = try DeployRecovery.recoverUnfinishedSet(databases)
        }
        for database in databases { try checkLiveIsDatabase(database, request: request) }
        let names = databases.compactMap(\.config.databaseName)
        let stores = databases.map(\.store)
        let entries = stores.map { $0.entries() }
        var member = request
        member.runHooks = false
        var passedOver = [String]()
        var seen = Set<String>()
        for entry in entries[0] where label == nil ? entry.label != "pre_restore" : entry.label == label {
            guard let id = entry.manifest?.set?.id, seen.insert(id).inserted else { continue }
            let members = entries.map { backups in backups.first { $0.manifest?.set?.id == id } }
            if let missing = zip(names, members).first(where: { $1 == nil }) {
                passedOver.append("set \(id): no backup of \(missing.0) in it")
                continue
            }
            if let bad = members.compactMap({ $0 }).first(where: { $0.status == .failed || $0.isFutureDated(now: stores[0].now) }) {
                passedOver.append("set \(id): \(bad.name) \(bad.status == .failed ? "failed its last check" : "is dated in the future")")
                continue
            }
            var prepared = [PreparedRestore]()
            do {
                for (index, database) in databases.enumerated() {
                    prepared.append(try prepare(members[index]!, request: member, instance: database, store: stores[index], lock: nil, passedOver: []))
                }
                return PreparedSetRestore(members: prepared, setId: id, passedOver: passedOver, instance: instance, request: request, lock: lock)
            } catch let failure as Failure where failure.kind == .badData {
                for restore in prepared { restore.release() }
                passedOver.append("set \(id): \(failure.message)")
            }
        }
        lock?.release()
        throw Failure(.noUsableBackup, "no complete good set of backups of \(request.instance)'s databases (\(names.joined(separator: ", ")))\(label.map { " with label \($0)" } ?? "")"
                      + passedOver.map { "\n  passed over \($0)" }.joined(),
                      hint: "take one with 'deployctl snapshot \(request.instance)', or restore one database with 'deployctl restore \(request.instance) --latest --database NAME'")
    }
}

/// A restore of every database of an instance from one set, checked and previewed, holding
/// the instance lock until `perform()` or `release()`.
public final class PreparedSetRestore {
    /// Each database's restore, in the config's order.
    public let members: [PreparedRestore]
    /// The deploy or snapshot run the set is from.
    public let setId: String
    /// Newer sets `--latest` passed over, each with why.
    public let passedOver: [String]
    let instance: InstanceContext
    let request: RestoreRequest
    private var lock: InstanceLock?
    /// Whether the stop hook runs before the set is restored (start and health after it).
    public var stopsApplication: Bool { request.runHooks && instance.config.hooks.stop != nil }

    init(members: [PreparedRestore], setId: String, passedOver: [String], instance: InstanceContext, request: RestoreRequest, lock: InstanceLock?) {
        self.members = members
        self.setId = setId
        self.passedOver = passedOver
        self.instance = instance
        self.request = request
        self.lock = lock
    }

    deinit { release() }

    public func release() {
        for member in members { member.release() }
        lock?.release()
        lock = nil
    }

    /// Restores each database in order, with the stop hook once before and start and health
    /// once after. When one fails (that database is put back by its own restore), the ones
    /// already restored are put back from the `pre_restore` copies they saved, last first, so
    /// that every database is as it was.
    /// - Throws: `restore.put_back` (1) when every database is as it was; `restore.put_back_failed`
    ///   (2) when one could not be put back, naming it and its saved copy.
    public func perform() throws -> [RestoreOutcome] {
        defer { release() }
        let runtime = instance.runtime
        guard !request.dryRun else { return try members.map { try $0.perform() } }
        try lock?.record(operation: "restore", stage: "restore")
        let hooks = AppHooks(instance, outputFolder: instance.config.deploysFolder + "/restore-" + Runtime.deployId(runtime.clock()), enabled: request.runHooks,
                             after: " after the restore", notDone: "nothing was restored; ")
        try hooks.stop(tag: "restore", hint: "check the hook's command in \(instance.config.file), or run with --no-hooks after stopping the application yourself")
        var outcomes = [RestoreOutcome]()
        // Killed between two databases, the journal lets the next deploy or restore put back
        // the ones already restored (and status report it).
        var journal = SetRestoreJournal(set: setId, startedAt: runtime.clock(), restored: [:])
        do {
            try journal.write(instance.config)
            for (index, member) in members.enumerated() {
                if index > 0 { try runtime.failpoints.hit(.betweenDatabases) }
                runtime.events(.databaseStarted(member.config.databaseName ?? "", path: member.config.databasePath))
                // Before its live file can change: which database, and the copies it had.
                journal.restoring = member.config.databaseName
                journal.copiesBefore = member.store.entries().filter { $0.label == "pre_restore" }.map(\.name)
                try journal.write(instance.config)
                let outcome = try member.perform()
                outcomes.append(outcome)
                if let saved = outcome.preRestoreBackup, let name = member.config.databaseName {
                    journal.restored[name] = saved.name
                }
                journal.restoring = nil
                journal.copiesBefore = nil
                try journal.write(instance.config)
            }
            try hooks.start(tag: "restore")
        } catch let error as DeployctlError {
            throw hooks.sayingIfDown(putBack(outcomes, after: error, hooks: hooks))
        }
        try SetRestoreJournal.remove(instance.config)
        return outcomes
    }

    /// Puts the databases already restored back from their `pre_restore` copies (last first),
    /// whatever signal stopped the restore; removes the journal when all are back.
    private func putBack(_ done: [RestoreOutcome], after error: DeployctlError, hooks: AppHooks) -> DeployctlError {
        let restored = zip(members, done).compactMap { member, outcome in outcome.preRestoreBackup.map { (database: member.instance, copy: $0.name) } }
        let (putBack, failed) = SetRestoreJournal.putBack(restored)
        if failed.isEmpty { try? SetRestoreJournal.remove(instance.config) }
        hooks.startIfStopped(tag: "after-failure")
        let failing = members.count > done.count ? members[done.count].config.databaseName ?? "" : ""
        let untouched = members.dropFirst(done.count + 1).compactMap(\.config.databaseName)
        let rest = (failing.isEmpty ? "" : "; \(failing), where it stopped, is as it was") + (untouched.isEmpty ? "" : "; \(untouched.joined(separator: ", ")) had not been touched")
        let cause = failing.isEmpty ? error.message : "\(failing): \(error.message)"
        if failed.isEmpty {
            return Failure(.restorePutBack, "\(cause)\nThe set restore stopped; " + (putBack.isEmpty ? "no other database had been restored" : "put back as they were: \(putBack.joined(separator: ", "))") + rest + ".",
                           hint: error.hint, cause: error.code)
        }
        return Failure(.restorePutBackFailed, "\(cause)\nPutting back the databases already restored failed: \(failed.joined(separator: "; "))" + rest,
                       hint: "restore each named database's saved copy with 'deployctl restore \(instance.config.name) NAME --database DB --yes'", cause: error.code)
    }
}
