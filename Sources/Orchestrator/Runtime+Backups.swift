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
    /// A previous run that died holding the instance lock, if any.
    public let crashedHolder: LockHolder?
}

/// The result of `backups prune`.
public struct PruneOutcome: Sendable {
    /// Every backup considered, with the rules that keep it or none.
    public let decisions: [RetentionDecision]
    /// Whether anything was removed (false for `--dry-run`).
    public let removed: Bool
    public var doomed: [BackupEntry] { decisions.filter { !$0.kept }.map(\.entry) }
}

extension Runtime {
    /// `deployctl snapshot`: one online snapshot with its manifest, then retention for its label
    /// (`retention`, else the instance config's). Takes the instance lock.
    /// - Throws: `Failure`/`SQLiteError` (see `Snapshotter.snapshot`); `.temporary` when locked.
    public func snapshot(instance name: String, gzip: Bool?, label: String?, retention: RetentionPolicy, verify: Bool) throws -> SnapshotOutcome {
        let config = try workspace.instance(name)
        let label = label ?? "snapshot"
        try BackupStore.validate(label: label)
        try ensureDatabase(config)
        let lock = try lockInstance(config)
        defer { lock.release() }
        try checkSpaceForSnapshot(config, gzip: gzip ?? config.gzip, rehearsal: false)
        let store = store(config)
        let entry = try Snapshotter(store: store).snapshot(
            snapshotRequest(config, label: label, gzip: gzip ?? config.gzip, verify: verify), progress: progress)
        let policy = retention.isEmpty ? config.retention : retention
        let entries = store.entries().filter { $0.label == label }
        var pruned = [BackupEntry]()
        if !policy.isEmpty {
            // Never the backup just written, whatever other manifests' clocks say.
            var protected = protectedBackups(config)
            protected[entry.name] = "just written"
            pruned = Retention.decide(entries, policy: policy, protected: protected, now: store.now).filter { !$0.kept }.map(\.entry)
            try store.remove(pruned)
        }
        return SnapshotOutcome(backup: entry, pruned: pruned, futureDated: entries.filter { $0.isFutureDated(now: store.now) },
                               crashedHolder: lock.crashedHolder)
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

    /// `deployctl backups prune`: removes (or with `dryRun` only decides) what `policy` does
    /// not keep. When a label would lose every backup, `confirm` is asked with those labels (and
    /// their counts) and nothing is removed unless it says yes. Takes the instance lock unless
    /// `dryRun`.
    /// - Throws: `Failure`; `.usage` when `confirm` refuses.
    public func prune(instance name: String, policy: RetentionPolicy, label: String?, dryRun: Bool,
                      confirm: ([String: Int]) -> Bool) throws -> PruneOutcome {
        let config = try workspace.instance(name)
        let store = store(config)
        let lock = dryRun ? nil : try lockInstance(config)
        defer { lock?.release() }
        let decisions = Retention.decide(store.entries(), policy: policy, label: label, protected: protectedBackups(config), now: store.now)
        if dryRun { return PruneOutcome(decisions: decisions, removed: false) }
        var emptied = [String: Int]()
        for (label, list) in Dictionary(grouping: decisions, by: \.entry.label) where list.allSatisfy({ !$0.kept }) {
            emptied[label] = list.count
        }
        if !emptied.isEmpty, !confirm(emptied) {
            let labels = emptied.sorted { $0.key < $1.key }.map { "\($0.key) (\($0.value))" }.joined(separator: ", ")
            throw Failure(.usage, "pruning \(policy.description) would remove every backup with label \(labels); nothing was removed",
                          hint: "check with --dry-run, then add --yes if that is what you want")
        }
        let outcome = PruneOutcome(decisions: decisions, removed: true)
        try store.remove(outcome.doomed)
        return outcome
    }

    /// Backups an unfinished deploy journal refers to, with why: retention never removes them.
    func protectedBackups(_ config: InstanceConfig) -> [String: String] {
        guard let journal = try? DeployJournal.read(path: config.journalPath), let snapshot = journal.snapshot else { return [:] }
        return [snapshot: "an unfinished deploy refers to it"]
    }
}
