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
    /// `compression` (from `--compress` or `--gzip`/`--no-gzip`) overrides the config's.
    public func snapshot(instance name: String, compression: Compression?, label: String?, retention: RetentionPolicy, verify: Bool) throws -> SnapshotOutcome {
        let config = try workspace.instance(name)
        let label = label ?? "snapshot"
        try BackupStore.validate(label: label)
        // pre_* labels are the copies deploys and restores make for themselves: a snapshot under
        // one never counts as a backup for max_backup_age, and is retired with them. Said.
        if label.lowercased().hasPrefix("pre_") {
            events(.warning("the label '\(label)' is one deploys and restores give their own copies: this snapshot will never count as a backup for max_backup_age, and is retired like those copies"))
        }
        try checkAccess(config, .snapshot)
        try ensureDatabase(config)
        let lock = try lockInstance(config)
        defer { lock.release() }
        let compression = compression ?? config.compression
        try checkSpaceForSnapshot(config, compression: compression, rehearsal: false)
        let store = store(config)
        var request = snapshotRequest(config, label: label, compression: compression, verify: verify)
        request.checkpoint = { [self] in
            try failpoints.hit(.snapshot)
            try checkInterruption("no backup was written, and its temp files were removed")
        }
        request.interrupted = { [self] in interruption() != nil }
        let entry: BackupEntry
        do {
            entry = try Snapshotter(store: store).snapshot(request, progress: progress)
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
                var protected = try protectedBackups(config)
                protected[entry.name] = "just written"
                pruned = Retention.decide(entries, policy: policy, protected: protected, now: store.now).filter { !$0.kept }.map(\.entry)
                try store.remove(pruned)
            } catch let failure as Failure where failure.kind == .badData {
                skipped = failure.message
            }
        }
        pruned += tidyRestoreCopies(config, store: store, protected: [entry.name: "just written"], compress: true).removed
        return SnapshotOutcome(backup: entry, pruned: pruned, futureDated: entries.filter { $0.isFutureDated(now: store.now) },
                               retentionSkipped: skipped, crashedHolder: lock.crashedHolder)
    }

    /// `deployctl backups list`: newest first. Reads only.
    /// - Throws: `Failure` for the instance.
    public func listBackups(instance name: String, label: String?) throws -> [BackupEntry] {
        let config = try workspace.instance(name)
        try checkAccess(config, .listBackups)
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
        try checkAccess(config, .recordVerification)
        let store = store(config)
        let targets: [BackupEntry]
        if let backup {
            targets = [try store.entry(named: backup)]
        } else {
            let entries = store.entries()
            // The newest backup that counts as one (the daily drill checks what a restore
            // --latest would use): a deploy's or restore's own pre_* copy only when there is no other.
            guard let newest = entries.first(where: { !Self.isOwnCopy($0) }) ?? entries.first else {
                throw Failure(.noBackups, "instance '\(name)' has no backups in \(store.folder)",
                              hint: "take one with 'deployctl snapshot \(name)'")
            }
            targets = all ? entries : [newest]
        }
        return try targets.enumerated().map { index, target in
            try checkInterruption("\(index) of \(counted(targets.count, "backup")) \(index == 1 ? "was" : "were") checked (their results are recorded); the rest were not")
            // After the check between backups: a signal here reaches the integrity_check itself.
            try failpoints.hit(.backupVerify)
            let phase = Phase.checkingBackup(name: target.name, number: index + 1, of: targets.count)
            progress(.working(phase))
            defer { progress(.ended(announce: false)) }
            var reporting = store
            let progress = self.progress
            reporting.checkProgress = { done, total in progress(.working(phase, done: done, total: total)) }
            do {
                return try reporting.verify(target, now: clock())
            } catch where interruption() != nil {
                try checkInterruption("\(index) of \(counted(targets.count, "backup")) checked (results recorded); the check of \(target.name) was stopped and nothing was recorded for it")
                throw error
            }
        }
    }

    /// `deployctl backups prune`: removes (or with `dryRun` only decides) what `policy` does
    /// not keep. When a label would be left with no backup `restore --latest` could take,
    /// `confirm` is asked with those labels (and how many backups each loses) before the
    /// instance lock is taken, so an unanswered question blocks no snapshot; under the lock the
    /// decision is made again and refused if it now empties a label that was not confirmed.
    /// - Throws: `Failure`; `.usage` when `confirm` refuses off a terminal, `.failed` when the
    ///   operator declines, `.badData` when an unfinished deploy journal cannot be read.
    public func prune(instance name: String, policy: RetentionPolicy, label: String?, dryRun: Bool,
                      confirm: ([String: Int]) throws -> Void) throws -> PruneOutcome {
        let config = try workspace.instance(name)
        if let label { try BackupStore.validate(label: label) }
        try checkAccess(config, dryRun ? .listBackups : .manageBackups)
        let store = store(config)
        // Restore copies follow keep_restore_copies, unless --label names their label.
        let decide = { Retention.decide(store.entries(), policy: policy, label: label, protected: try self.protectedBackups(config), now: store.now,
                                        restoreCopies: label == nil ? config.restoreCopies : nil) }
        let first = try decide()
        if dryRun { return PruneOutcome(decisions: first, removed: false) }
        let confirmed = Self.emptied(first)
        if !confirmed.isEmpty { try confirm(confirmed) }
        let lock = try lockInstance(config)
        defer { lock.release() }
        let decisions = try decide()
        let emptied = Self.emptied(decisions)
        if let label = emptied.keys.sorted().first(where: { confirmed[$0] == nil }) {
            throw Failure(.backupsChangedWhileAsked, "the backups changed while deployctl asked: pruning now leaves label \(label) without a usable backup; nothing was removed",
                          hint: "run the prune again")
        }
        let outcome = PruneOutcome(decisions: decisions, removed: true)
        try store.remove(outcome.doomed)
        if label == nil { _ = tidyRestoreCopies(config, store: store, compress: true) }
        return outcome
    }

    /// Labels that would lose backups and keep none `restore --latest` could take, with how
    /// many they lose.
    static func emptied(_ decisions: [RetentionDecision]) -> [String: Int] {
        var emptied = [String: Int]()
        for (label, list) in Dictionary(grouping: decisions, by: \.entry.label) {
            let removed = list.filter { !$0.kept }.count
            if removed > 0 && !list.contains(where: { $0.kept && !$0.unusable }) { emptied[label] = removed }
        }
        return emptied
    }

    /// Backups an unfinished deploy journal refers to, with why: retention never removes them.
    /// - Throws: `Failure` `.badData` when a journal exists but cannot be read: which backup it
    ///   needs is then unknown, so nothing may be pruned.
    func protectedBackups(_ config: InstanceConfig) throws -> [String: String] {
        guard let journal = try DeployJournal.read(path: config.journalPath), let snapshot = journal.snapshot else { return [:] }
        return [snapshot: "an unfinished deploy refers to it"]
    }
}

extension Runtime {
    /// `deployctl backups remove`: retires one backup of any label, a damaged one included, and
    /// its manifest; or the manifest left behind by a backup file removed by hand. `confirm` is
    /// asked with the backup (nil for a lone manifest) before the instance lock is taken, so an
    /// unanswered question blocks no snapshot. A backup an unfinished deploy journal refers to
    /// is refused: that deploy may still need it.
    /// - Throws: `Failure` `.usage` for a bad name or a protected backup, `.missingInput` when
    ///   there is no such backup, `.badData` for a file that is not a deployctl backup (never
    ///   removed), and what `confirm` throws.
    public func removeBackup(instance name: String, backup: String, confirm: (BackupEntry?) throws -> Void) throws -> RemovedBackup {
        let config = try workspace.instance(name)
        try BackupStore.validate(backupName: backup)
        try checkAccess(config, .manageBackups)
        let store = store(config)
        let find = { () throws -> BackupEntry? in
            if store.orphanManifest(of: backup) != nil { return nil }
            return try store.entry(named: backup)
        }
        let first = try find()
        try confirm(first)
        let lock = try lockInstance(config)
        defer { lock.release() }
        let entry = try find()
        guard entry?.manifest?.sha256 == first?.manifest?.sha256 else {
            throw Failure(.backupsChangedWhileAsked, "\(backup) changed while deployctl asked; nothing was removed",
                          hint: "deployctl backups remove \(name) \(backup)")
        }
        if let why = try protectedBackups(config)[backup] {
            throw Failure(.backupRemoveRefused, "\(backup) is not removed: \(why)",
                          hint: "let the next deploy finish or undo that deploy first: deployctl deploy \(name)")
        }
        guard let entry else {
            try store.removeOrphanManifest(of: backup)
            return RemovedBackup(name: backup, label: nil, status: nil, manifestOnly: true)
        }
        try store.remove([entry])
        return RemovedBackup(name: backup, label: entry.label, status: entry.status, manifestOnly: false)
    }
}

/// What `backups remove` removed.
public struct RemovedBackup: Sendable {
    public let name: String
    /// The backup's label and last check (nil for a lone manifest).
    public let label: String?
    public let status: String?
    /// Only a manifest whose backup file was already gone.
    public let manifestOnly: Bool
}

/// What tidying the copies restores made did.
struct RestoreCopiesTidied {
    /// Copies beyond `keep_restore_copies`, removed.
    var removed = [BackupEntry]()
    /// Plain copies stored again compressed: (old name, new backup).
    var compressed = [(from: String, to: BackupEntry)]()
    /// What could not be done, for a warning (the command itself succeeded).
    var problems = [String]()
}

extension Runtime {
    /// Keeps the newest `keep_restore_copies` good `pre_restore` and `pre_putback` copies of
    /// each label and removes the older ones (never one in `protected`, one an unfinished
    /// deploy refers to, or one dated in the future); with `compress`, stores the kept plain
    /// ones again compressed as the config says (`Snapshotter.recompress`). Runs under the
    /// instance lock the caller holds, after the caller's own work succeeded: what fails here
    /// is reported as a problem and warned about, never turned into the command's failure.
    func tidyRestoreCopies(_ config: InstanceConfig, store: BackupStore, protected: [String: String] = [:], compress: Bool) -> RestoreCopiesTidied {
        var tidied = RestoreCopiesTidied()
        do {
            var copies = store.entries().filter { Retention.restoreCopyLabels.contains($0.label) }
            guard !copies.isEmpty else { return tidied }
            // One state kept once: a plain copy and the compressed copies made from it (a crash
            // between making one and removing the plain, then another run compressing it again)
            // would each count as a state, and push an older, different state out.
            var made = [String: [BackupEntry]]()
            for copy in copies where copy.compressed { if let from = copy.manifest?.compressedFrom { made[from, default: []].append(copy) } }
            var duplicates = [BackupEntry]()
            for (from, compressedCopies) in made {
                let plain = copies.filter { $0.name == from && !$0.compressed }
                if let good = compressedCopies.first(where: { $0.status == "verified" }) {
                    duplicates += compressedCopies.filter { $0.name != good.name } + plain
                } else if !plain.isEmpty {
                    duplicates += compressedCopies  // not checked good: the plain one stays, to be compressed again
                } else {
                    duplicates += compressedCopies.dropFirst()
                }
            }
            try store.remove(duplicates)
            tidied.removed += duplicates
            let gone = Set(duplicates.map(\.name))
            copies.removeAll { gone.contains($0.name) }
            let guarded = try protectedBackups(config).merging(protected) { a, _ in a }
            let decisions = Retention.decide(copies, policy: RetentionPolicy(), protected: guarded, now: store.now, restoreCopies: config.restoreCopies)
            let doomed = decisions.filter { !$0.kept }.map(\.entry)
            try store.remove(doomed)
            tidied.removed += doomed
            guard compress, config.compression != .none else { return tidied }
            for decision in decisions where decision.kept && !decision.entry.compressed && !decision.entry.encrypted && decision.entry.status != "failed" {
                try checkInterruption("the restore copies not yet compressed stay as they are")
                do {
                    let made = try Snapshotter(store: store).recompress(decision.entry, as: config.compression, now: clock())
                    tidied.compressed.append((decision.entry.name, made))
                } catch let error as DeployctlError {
                    tidied.problems.append("\(decision.entry.name) was not compressed: \(error.message)")
                }
            }
        } catch let error as DeployctlError {
            tidied.problems.append(error.message)
        } catch {
            tidied.problems.append("\(error)")
        }
        for problem in tidied.problems { events(.warning("restore copies: \(problem)")) }
        for (from, to) in tidied.compressed { events(.fact("stored \(from) \(config.compression.rawValue)-compressed as \(to.name) (\(SpaceNeeds.format(to.bytes)))")) }
        return tidied
    }
}
