import Backup
import Foundation
import Locking
import SQLite
import Support

/// Which backup to restore.
public enum BackupSelection: Sendable {
    /// The newest backup (optionally with a label) whose checksum is good.
    case latest(label: String?)
    /// A backup by its bare name.
    case named(String)
}

/// Where to restore.
public enum RestoreTarget: Sendable {
    /// Into the live database, through the backup API.
    case live
    /// Into a new file that must not exist.
    case newFile(String)
    /// Over a missing or unreadable live database.
    case replace
}

/// What a restore will do, shown before it happens.
public struct RestorePreview: Sendable {
    public let backup: BackupEntry
    public let target: RestoreTarget
    public let targetPath: String
    /// Per-table differences (live restores only).
    public let differences: [TableDifference]
    /// Rows the restore discards, summed over tables.
    public var discardedRows: Int { differences.reduce(0) { $0 + $1.discarded } }
}

/// The result of a restore.
public struct RestoreOutcome: Sendable {
    public let preview: RestorePreview
    /// False for a dry run.
    public let performed: Bool
    /// The `pre_restore` snapshot taken first (live restores).
    public let preRestoreBackup: BackupEntry?
    /// Where an unreadable live database was moved (`--replace`).
    public let movedAside: String?
    /// Pages of the restored database proven byte-identical to the backup's.
    public let provenPages: Int?
}

extension Runtime {
    /// `deployctl restore`: verify the backup (65 on a bad one, touching nothing), show what it
    /// discards, ask `confirm`, take a `pre_restore` snapshot, restore through the backup API,
    /// prove the result equals the backup. Takes the instance lock unless `dryRun`.
    /// - Throws: `Failure` (kinds per SPEC.md), `SQLiteError`.
    public func restore(instance name: String, selection: BackupSelection, target: RestoreTarget, dryRun: Bool,
                        confirm: (RestorePreview) throws -> Bool) throws -> RestoreOutcome {
        let config = try workspace.instance(name)
        let store = store(config)
        var lock: InstanceLock?
        if !dryRun {
            lock = try InstanceLock(path: config.lockPath, command: commandLine, now: clock())
            _ = try recoverUnfinishedDeploy(config)
        }
        defer { lock?.release() }

        let entry: BackupEntry
        switch selection {
        case .latest(let label): entry = try store.latestGood(label: label)
        case .named(let backupName): entry = try store.entry(named: backupName)
        }
        // Into the live database, quick_check runs beside the comparison below.
        let intoLive = if case .live = target { true } else { false }
        let opened = try store.check(entry, keep: true, quickCheck: !intoLive)!
        defer { opened.discard() }
        let restorer = Restorer(busyTimeout: config.busyTimeout)

        switch target {
        case .newFile(let path):
            let absolute = resolve(path, against: FileManager.default.currentDirectoryPath)
            let preview = RestorePreview(backup: entry, target: target, targetPath: absolute, differences: [])
            guard !FileManager.default.fileExists(atPath: absolute) else {
                throw Failure(.cannotCreate, "\(absolute) exists; --to only writes a new file", hint: "choose a path that does not exist")
            }
            if dryRun { return RestoreOutcome(preview: preview, performed: false, preRestoreBackup: nil, movedAside: nil, provenPages: nil) }
            let pages = try restorer.restore(opened, toNewFile: absolute)
            return RestoreOutcome(preview: preview, performed: true, preRestoreBackup: nil, movedAside: nil, provenPages: pages)

        case .replace:
            let preview = RestorePreview(backup: entry, target: target, targetPath: config.databasePath, differences: [])
            if FileManager.default.fileExists(atPath: config.databasePath),
               (try? Connection(path: config.databasePath, mode: .inspect, busyTimeout: config.busyTimeout).integrityProblems().isEmpty) == true {
                throw Failure(.usage, "the live database \(config.databasePath) is readable and healthy; --replace is only for a missing or unreadable one",
                              hint: "run 'deployctl restore \(name) \(entry.name)' without --replace")
            }
            let holders = DatabaseHolders.find(path: config.databasePath)
            guard holders.isEmpty else {
                throw Failure(.temporary, "the live database \(config.databasePath) is held by \(holders.map(\.description).joined(separator: ", "))",
                              hint: "stop the application, then run again")
            }
            if dryRun { return RestoreOutcome(preview: preview, performed: false, preRestoreBackup: nil, movedAside: nil, provenPages: nil) }
            guard try confirm(preview) else { throw Failure(.failed, "restore cancelled; nothing was changed") }
            try store.prepareForWriting()
            let aside = store.folder + "/" + store.newName(label: "replaced", at: clock(), compressed: false)
            let pages = try restorer.replace(livePath: config.databasePath, with: opened, aside: aside)
            let moved = FileManager.default.fileExists(atPath: aside) ? aside : nil
            return RestoreOutcome(preview: preview, performed: true, preRestoreBackup: nil, movedAside: moved, provenPages: pages)

        case .live:
            _ = try Connection(path: config.databasePath, mode: .inspect, busyTimeout: config.busyTimeout)
            let ((), comparison) = try bothAtOnce({ try store.quickCheck(opened, of: entry) },
                                                  { try restorer.compare(livePath: config.databasePath, backup: opened) })
            let preview = RestorePreview(backup: entry, target: target, targetPath: config.databasePath,
                                         differences: comparison.differences)
            if dryRun { return RestoreOutcome(preview: preview, performed: false, preRestoreBackup: nil, movedAside: nil, provenPages: nil) }
            guard try confirm(preview) else { throw Failure(.failed, "restore cancelled; nothing was changed") }
            let safety = try Snapshotter(store: store).snapshot(
                SnapshotRequest(databasePath: config.databasePath, label: "pre_restore", gzip: config.gzip,
                                busyTimeout: config.busyTimeout, now: clock()), progress: progress)
            log("✓ Saved the current database as \(safety.name)")
            try failpoints.hit("restore")
            do {
                let pages = try restorer.restore(opened, intoLive: config.databasePath)
                try failpoints.hit("after-restore")
                return RestoreOutcome(preview: preview, performed: true, preRestoreBackup: safety, movedAside: nil, provenPages: pages)
            } catch let error as DeployctlError {
                // The live database may have been replaced: put back what was there, so a
                // failed restore leaves the database as it was before the command.
                try rollBack(to: safety, store: store, config: config, after: error)
                throw Failure(error.kind == .unproven ? .unproven : .failed,
                              "\(error.message)\nThe live database was put back as it was (from \(safety.name)).", hint: error.hint)
            }
        }
    }

    /// Restores the `pre_restore` snapshot after a failed restore, proving the result.
    /// - Throws: `Failure` `.unproven` naming the snapshot when that fails too.
    private func rollBack(to safety: BackupEntry, store: BackupStore, config: InstanceConfig, after error: DeployctlError) throws {
        do {
            let opened = try store.check(store.entry(named: safety.name), keep: true)!
            defer { opened.discard() }
            _ = try Restorer(busyTimeout: config.busyTimeout).restore(opened, intoLive: config.databasePath)
        } catch let rollBackError {
            throw Failure(.unproven, "\(error.message)\nPutting the database back failed too: \(rollBackError)",
                          hint: "restore \(safety.name) by hand: deployctl restore \(config.name) \(safety.name) --yes")
        }
    }
}
