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
    /// A previous run that died holding the instance lock, if any.
    public let crashedHolder: LockHolder?
}

extension Runtime {
    /// `deployctl snapshot`: one online snapshot with its manifest, then retention for its label.
    /// Takes the instance lock.
    /// - Throws: `Failure`/`SQLiteError` (see `Snapshotter.snapshot`); `.temporary` when locked.
    public func snapshot(instance name: String, gzip: Bool?, label: String?, keepLast: Int?, verify: Bool) throws -> SnapshotOutcome {
        let config = try workspace.instance(name)
        let label = label ?? "snapshot"
        try BackupStore.validate(label: label)
        try ensureDatabase(config)
        let lock = try lockInstance(config)
        defer { lock.release() }
        let store = store(config)
        let entry = try Snapshotter(store: store).snapshot(
            snapshotRequest(config, label: label, gzip: gzip ?? config.gzip, verify: verify), progress: progress)
        var pruned = [BackupEntry]()
        if let keep = keepLast ?? config.keepLast {
            // Never the backup just written, whatever other manifests' clocks say.
            pruned = store.pruneCandidates(keepLast: keep, label: label, protected: protectedBackups(config).union([entry.name]))
            try store.remove(pruned)
        }
        return SnapshotOutcome(backup: entry, pruned: pruned, crashedHolder: lock.crashedHolder)
    }

    /// `deployctl backups list`: newest first. Reads only.
    /// - Throws: `Failure` for the instance.
    public func listBackups(instance name: String, label: String?) throws -> [BackupEntry] {
        let config = try workspace.instance(name)
        return store(config).entries().filter { label == nil || $0.label == label }
    }

    /// The files in an instance's backups folder that are not deployctl backups, with why.
    /// Reads only.
    /// - Throws: `Failure` for the instance.
    public func otherBackupFiles(instance name: String) throws -> [BackupStore.OtherFile] {
        store(try workspace.instance(name)).otherFiles()
    }

    /// `deployctl backups verify`: checks one backup, the newest, or all. Records `verified_at`
    /// in good backups' manifests; takes no lock and never touches the live database.
    /// - Throws: `Failure` `.missingInput` when there is nothing to verify, `.usage` for a bad name.
    public func verifyBackups(instance name: String, backup: String?, all: Bool) throws -> [VerifyResult] {
        let config = try workspace.instance(name)
        let store = store(config)
        let targets: [BackupEntry]
        if let backup {
            targets = [try store.entry(named: backup)]
        } else {
            let entries = store.entries()
            guard let newest = entries.first else {
                throw Failure(.missingInput, "instance '\(name)' has no backups in \(store.folder)",
                              hint: "take one with 'deployctl snapshot \(name)'")
            }
            targets = all ? entries : [newest]
        }
        return try targets.map { try store.verify($0, now: clock()) }
    }

    /// `deployctl backups prune`: removes (or with `dryRun` lists) what retention would remove.
    /// Takes the instance lock unless `dryRun`.
    /// - Throws: `Failure`.
    public func prune(instance name: String, keepLast: Int, label: String?, dryRun: Bool) throws -> [BackupEntry] {
        let config = try workspace.instance(name)
        let store = store(config)
        if dryRun { return store.pruneCandidates(keepLast: keepLast, label: label, protected: protectedBackups(config)) }
        let lock = try lockInstance(config)
        defer { lock.release() }
        let doomed = store.pruneCandidates(keepLast: keepLast, label: label, protected: protectedBackups(config))
        try store.remove(doomed)
        return doomed
    }

    /// Backups an unfinished deploy journal refers to: retention never removes them.
    func protectedBackups(_ config: InstanceConfig) -> Set<String> {
        guard let journal = try? DeployJournal.read(path: config.journalPath), let snapshot = journal.snapshot else { return [] }
        return [snapshot]
    }
}
