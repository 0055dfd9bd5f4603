import Backup
import Foundation
import Locking
import SQLite
import Support

/// The result of `snapshot`.
public struct SnapshotOutcome: Sendable {
    public let backup: BackupEntry
    /// Backups removed by retention after the snapshot succeeded.
    public let pruned: [BackupEntry]
    /// Backups of the snapshot's label dated in the future: kept, never counted as newest.
    public let futureDated: [BackupEntry]
    /// Why retention did not run, when it could not (an unreadable deploy journal).
    public let retentionSkipped: String?
    /// A previous run that died holding the instance lock, if any.
    public let crashedHolder: LockHolder?
    /// The database, in an instance of several.
    public var database: String? = nil
}

/// `deployctl snapshot`: one online snapshot and the retention that follows it.
public struct Snapshots: Sendable {
    let runtime: Runtime

    public init(_ runtime: Runtime) { self.runtime = runtime }

    /// `deployctl snapshot`: one online snapshot with its manifest, then retention for its label
    /// (`retention`, else the instance config's). Takes the instance lock. For an instance of
    /// several databases, one snapshot of each (or of the one `--database` names), under one
    /// lock, as one set (the run's id in each manifest), in the config's order.
    /// - Throws: `Failure`/`SQLiteError` (see `Snapshotter.snapshot`); `.temporary` when locked.
    /// `compression` (from `--compress` or `--gzip`/`--no-gzip`) overrides the config's.
    public func take(instance name: String, compression: Compression?, label: String?, retention: RetentionPolicy, verify: Bool) throws -> [SnapshotOutcome] {
        let label = label ?? "snapshot"
        try BackupStore.validate(label: label)
        // pre_* labels are the copies deploys and restores make for themselves: a snapshot under
        // one never counts as a backup for max_backup_age, and is retired with them. Said.
        if label.lowercased().hasPrefix("pre_") {
            runtime.events(.warning("the label '\(label)' is one deploys and restores give their own copies: this snapshot will never count as a backup for max_backup_age, and is retired like those copies"))
        }
        let instance = try runtime.instanceSet(name, for: .snapshot)
        let databases = try instance.selectedDatabases
        for database in databases { try database.ensureDatabase() }
        let lock = try instance.lock()
        defer { lock.release() }
        // The databases are not from one set until an interrupted set restore is put back:
        // a snapshot now would store that mix as a set.
        if instance.hasDatabaseSet, let restore = try SetRestoreJournal.read(instance.config) {
            throw Failure(.restoreUnfinished, "the restore of set \(restore.set) was interrupted, so \(instance.config.name)'s databases are not from one set; no snapshot was taken",
                          hint: "restore the set again with 'deployctl restore \(instance.config.name) --latest --yes' (it puts the interrupted restore back first), or put it back with 'deployctl deploy \(instance.config.name)'")
        }
        let id = Runtime.deployId(runtime.clock())
        let members = databases.compactMap(\.config.databaseName)
        return try databases.map { database in
            let set = database.config.databaseName.map { Manifest.SetMembership(id: id, database: $0, databases: members) }
            if set != nil { runtime.events(.databaseStarted(database.config.databaseName ?? "", path: database.config.databasePath)) }
            return try take(database, compression: compression, label: label, retention: retention, verify: verify, set: set, lock: lock)
        }
    }

    /// One database's snapshot and retention; the caller holds the instance lock.
    private func take(_ instance: InstanceContext, compression: Compression?, label: String, retention: RetentionPolicy, verify: Bool,
                      set: Manifest.SetMembership?, lock: InstanceLock) throws -> SnapshotOutcome {
        let config = instance.config
        let compression = compression ?? config.compression
        try instance.checkSpaceForSnapshot(compression: compression, rehearsal: false)
        let store = instance.store
        var request = instance.snapshotRequest(label: label, compression: compression, verify: verify)
        request.set = set
        request.checkpoint = { [runtime] in
            try runtime.failpoints.hit(.snapshot)
            try runtime.checkInterruption("no backup was written, and its temp files were removed")
        }
        request.interrupted = { [runtime] in runtime.interruption() != nil }
        let entry: BackupEntry
        do {
            entry = try Snapshotter(store: store).snapshot(request, progress: runtime.progress)
        } catch let error as SQLiteError where error.kind == .temporary {
            throw DatabaseHolders.busy(path: config.databasePath, timeout: config.busyTimeout)
        }
        let policy = retention.isEmpty ? config.retention : retention
        let entries = store.entries().filter { $0.label == label }
        var pruned = [BackupEntry]()
        var skipped: String?
        if !policy.isEmpty {
            do {
                // Never the backup just written, whatever other manifests' clocks say.
                var protected = try instance.protectedBackups()
                protected[entry.name] = "just written"
                pruned = Retention.decide(entries, policy: policy, protected: protected, now: store.now).filter { !$0.kept }.map(\.entry)
                try store.remove(pruned)
            } catch let failure as Failure where failure.kind == .badData {
                skipped = failure.message
            }
        }
        pruned += RestoreCopies(instance).tidy(store: store, protected: [entry.name: "just written"], compress: true).removed
        return SnapshotOutcome(backup: entry, pruned: pruned, futureDated: entries.filter { $0.isFutureDated(now: store.now) },
                               retentionSkipped: skipped, crashedHolder: lock.crashedHolder, database: config.databaseName)
    }
}
