import Backup
import Foundation
import Locking
import Migration
import SQLite
import Support

extension InstanceContext {
    /// The restorer for an instance; the failpoint `row-digests=skip` keeps no row digests, so
    /// tests reach the row-by-row comparison a large difference takes; `row-restore=skip`
    /// always restores through the backup API, `row-restore-size=skip` restores by rows
    /// whatever the database's size.
    var restorer: Restorer {
        let failpoints = runtime.failpoints
        return Restorer(busyTimeout: config.busyTimeout, rowDigestBudget: failpoints.skips(.rowDigests) ? 0 : Connection.rowDigestBudget,
                        rowRestoreMinimumBytes: failpoints.skips(.rowRestore) ? nil : failpoints.skips(.rowRestoreSize) ? 0 : Restorer.rowRestoreMinimumBytes)
    }
}

/// `deployctl restore`, first step: picks and checks the backup and computes the preview; the
/// `PreparedRestore` it returns does the rest once the operator has seen it.
public struct RestorePlanner: Sendable {
    let runtime: Runtime

    public init(_ runtime: Runtime) { self.runtime = runtime }

    /// `deployctl restore`, first step: takes the instance lock (unless a dry run), finishes an
    /// unfinished deploy, picks the backup and checks it once (checksum, `integrity_check`
    /// unless these bytes already passed it, that it is this instance's database), and computes
    /// the preview. The operator sees the preview; `perform()` does the rest.
    /// - Throws: `Failure` (kinds per SPEC.md; 65 for a bad or foreign backup), `SQLiteError`.
    public func begin(_ request: RestoreRequest) throws -> PreparedRestore {
        guard case .remote(let remote, let host, let allowUnsigned) = request.source else { return try beginLocal(request) }
        let name: String? = if case .named(let name) = request.selection { name } else { nil }
        let label: String? = if case .latest(let label) = request.selection { label } else { nil }
        let remotes = RemoteBackups(runtime)
        let fetched = try remotes.fetch(instance: request.instance, remote: remote, host: host, backup: name, label: label, allowUnsigned: allowUnsigned)
        var local = request
        local.selection = .named(fetched.name)
        do {
            let prepared = try beginLocal(local)
            prepared.fetched = fetched
            return prepared
        } catch {
            // A restore that refuses the copy leaves no download behind.
            if fetched.downloaded { try? remotes.discardFetched(instance: request.instance, backup: fetched.name) }
            throw error
        }
    }

    private func beginLocal(_ request: RestoreRequest) throws -> PreparedRestore {
        let instance = try runtime.instance(request.instance, for: request.dryRun ? .inspect : request.target.changesLiveDatabase ? .changeLive : .manageBackups)
        let config = instance.config
        let store = instance.store
        var lock: InstanceLock?
        if !request.dryRun {
            lock = try instance.lock(operation: "restore", stage: "check and preview")
            // One database of a set: an unfinished deploy or set restore is recovered for the whole set.
            _ = try DeployRecovery.recoverUnfinished(for: instance)
        }
        if request.target.changesLiveDatabase { try checkLiveIsDatabase(instance, request: request) }
        guard case .latest(let label) = request.selection else {
            guard case .named(let name) = request.selection else { preconditionFailure() }
            return try prepare(store.entry(named: name), request: request, instance: instance, store: store, lock: lock, passedOver: [])
        }
        // The newest good backup: one that fails any check is passed over, and named.
        var passedOver = [String]()
        for entry in store.entries() where label == nil ? entry.label != "pre_restore" : entry.label == label {
            guard !entry.isFutureDated(now: store.now) else {
                passedOver.append("\(entry.name): dated \(Runtime.day(entry.createdAt)), in the future (written under a wrong clock?); name it to restore it")
                continue
            }
            guard entry.status != .failed else {
                passedOver.append("\(entry.name): its last check failed (\(entry.manifest?.verification?.reason ?? "see backups list"))")
                continue
            }
            do {
                return try prepare(entry, request: request, instance: instance, store: store, lock: lock, passedOver: passedOver)
            } catch let failure as Failure where failure.kind == .badData {
                passedOver.append("\(entry.name): \(failure.message)")
            }
        }
        throw Failure(.noUsableBackup, "no good backup in \(store.folder)\(label.map { " with label \($0)" } ?? " (pre_restore copies are only used with --label pre_restore)")"
                      + passedOver.map { "\n  passed over \($0)" }.joined(),
                      hint: "take one with 'deployctl snapshot \(config.name)', or see 'deployctl backups list \(config.name)'")
    }

    /// Checks `entry` and computes the preview for `request` (see `begin`); a signal
    /// that stopped the check or preview is reported as the interrupt it is.
    func prepare(_ entry: BackupEntry, request: RestoreRequest, instance: InstanceContext, store: BackupStore,
                         lock: InstanceLock?, passedOver: [String]) throws -> PreparedRestore {
        do {
            return try prepareChecked(entry, request: request, instance: instance, store: store, lock: lock, passedOver: passedOver)
        } catch where runtime.interruption() != nil {
            try runtime.checkInterruption("the check and preview of \(entry.name) were stopped; nothing was changed")
            throw error
        }
    }

    private func prepareChecked(_ entry: BackupEntry, request: RestoreRequest, instance: InstanceContext, store: BackupStore,
                                lock: InstanceLock?, passedOver: [String]) throws -> PreparedRestore {
        let config = instance.config
        let intoLive = if case .live = request.target { true } else { false }
        let alreadyChecked = entry.manifest?.passedIntegrityCheck == true
        try checkSpaceForRestore(entry, request: request, instance: instance, store: store)
        // Into the live database, integrity_check runs beside the comparison below.
        // Into a new file, an inflated copy becomes that file: it is fsynced beside its check.
        // A line at once, with bytes and time left as the backup is read (inflated, checksummed).
        let phase = Phase.checkingBackup(name: entry.name, number: 1, of: 1)
        runtime.progress(.working(phase))
        var reporting = store
        let progress = runtime.progress
        reporting.checkProgress = { done, total in progress(.working(phase, done: done, total: total)) }
        let opened = try reporting.check(entry, keep: true, runCheck: !intoLive && !alreadyChecked, syncCopy: isNewFile(request.target) && !request.dryRun)!
        do {
            let check = alreadyChecked ? "these bytes passed integrity_check on \(Runtime.day(entry.manifest!.verification!.at))" : "integrity_check"
            if !request.allowForeign, !isNewFile(request.target) {
                try checkBelongs(entry, opened: opened, to: instance)
            }
            try runtime.checkInterruption("nothing was changed")
            switch request.target {
            case .newFile(let path):
                let absolute = try checkNewFile(path, beside: config)
                var prepared = request
                prepared.target = .newFile(absolute)
                return PreparedRestore(preview: preview(entry, request.target, absolute, check, passedOver), instance: instance,
                                       store: store, request: prepared, opened: opened, lock: lock, live: nil, previewVersion: nil)
            case .replace:
                try checkReplaceable(config, by: entry)
                return PreparedRestore(preview: preview(entry, request.target, config.databasePath, check, passedOver), instance: instance,
                                       store: store, request: request, opened: opened, lock: lock, live: nil, previewVersion: nil)
            case .live:
                return try previewLive(entry, opened: opened, request: request, instance: instance, store: store, lock: lock,
                                       check: check, passedOver: passedOver, alreadyChecked: alreadyChecked)
            }
        } catch {
            opened.discard()
            throw error
        }
    }

    /// A restore into the live database needs a live SQLite database to restore into: a file
    /// that is not one is the live database's problem, never the backups' (which `--latest`
    /// would otherwise pass over one by one), and `--replace` is what repairs it.
    func checkLiveIsDatabase(_ instance: InstanceContext, request: RestoreRequest) throws {
        do {
            try Connection.checkIsDatabase(instance.config.databasePath)
        } catch let error as DeployctlError where error.kind == .badData {
            let which = if case .named(let name) = request.selection { name } else { "--latest" }
            throw Failure(.databaseUnreadable, "the live database cannot be restored into: \(error.message); nothing was changed (--replace restores over a damaged database, moving it aside)",
                          hint: "deployctl restore \(instance.name) \(which) --replace")
        }
    }

    /// `--to PATH`: the absolute path, which must not exist, in a folder that does, and must not
    /// be one of the files SQLite keeps beside the live database.
    private func checkNewFile(_ path: String, beside config: InstanceConfig) throws -> String {
        let absolute = resolve(path, against: FileManager.default.currentDirectoryPath)
        // attributesOfItem does not follow links: a dangling link exists too.
        guard (try? FileManager.default.attributesOfItem(atPath: absolute)) == nil else {
            throw Failure(.restoreTargetExists, "\(absolute) exists; --to only writes a new file", hint: "choose a path that does not exist")
        }
        var isFolder: ObjCBool = false
        let folder = (absolute as NSString).deletingLastPathComponent
        guard FileManager.default.fileExists(atPath: folder, isDirectory: &isFolder), isFolder.boolValue else {
            throw Failure(.restoreTargetFolderMissing, "\(folder) is not a folder; --to writes a new file into an existing folder", hint: "create the folder first")
        }
        let live = fileIdentity(config.databasePath).path.lowercased()
        let target = (fileIdentity(folder).path + "/" + (absolute as NSString).lastPathComponent).lowercased()
        guard !["-wal", "-shm", "-journal"].contains(where: { target == live + $0 }) else {
            throw Failure(.restoreTargetIsDatabaseFile, "\(absolute) is a file SQLite keeps beside the live database; --to needs a path of its own")
        }
        return absolute
    }

    /// `--replace`: only a missing, empty or unreadable live database, which nobody holds.
    private func checkReplaceable(_ config: InstanceConfig, by entry: BackupEntry) throws {
        // An empty file (0 bytes) is no application's database: it is replaced too.
        let size = ((try? FileManager.default.attributesOfItem(atPath: config.databasePath))?[.size] as? NSNumber)?.int64Value ?? 0
        if FileManager.default.fileExists(atPath: config.databasePath), size > 0,
           Connection.isHealthy(path: config.databasePath, busyTimeout: config.busyTimeout) {
            throw Failure(.restoreReplaceRefused, "the live database \(config.databasePath) is readable and healthy; --replace is only for a missing or unreadable one",
                          hint: "run 'deployctl restore \(config.name) \(entry.name)' without --replace")
        }
        let holders = DatabaseHolders.find(path: config.databasePath)
        guard holders.isEmpty else {
            throw Failure(.databaseHeld, "the live database \(config.databasePath) is held by \(holders.map(\.description).joined(separator: ", "))",
                          hint: "stop the application, then run again")
        }
    }

    /// Into the live database: the comparison with the live database (its connection held for
    /// `perform()`), beside the backup's integrity_check on the other core.
    private func previewLive(_ entry: BackupEntry, opened: OpenedBackup, request: RestoreRequest, instance: InstanceContext, store: BackupStore,
                             lock: InstanceLock?, check: String, passedOver: [String], alreadyChecked: Bool) throws -> PreparedRestore {
        let config = instance.config
        if let mismatch = LiveRestore.pageSizeMismatch(opened, config.databasePath) { throw mismatch }
        // A dry run only reads (and leaves an application's -wal as it was).
        let restorer = instance.restorer
        let live = try restorer.openLive(config.databasePath, readOnly: request.dryRun)
        try live.setQueryOnly(true)
        runtime.progress(.working(.comparingWithLive))
        // The comparison stops at a signal (its page copy steps ask); nothing after it may.
        let interruption = runtime.interruption
        live.stopWhen { interruption() != nil }
        let (comparison, ()) = try Parallel.both({ defer { live.stopWhen(nil) }; return try restorer.compare(live, backup: opened) },
                                                 elsewhere: { if !alreadyChecked { try store.integrityCheck(opened, of: entry) } },
                                                 reportingFirst: .elsewhere)
        let version = live.dataVersion
        runtime.progress(.ended(announce: true))
        if !request.dryRun { try live.setQueryOnly(false) }
        let stops = request.runHooks && config.hooks.stop != nil
        var preview = RestorePreview(backup: entry, target: request.target, targetPath: config.databasePath, check: check,
                                     differences: comparison.differences, notCompared: comparison.notCompared,
                                     holders: stops ? [] : DatabaseHolders.find(path: config.databasePath), stopsApplication: stops,
                                     passedOver: passedOver)
        preview.holdsBackup = comparison.holdsBackup
        return PreparedRestore(preview: preview, instance: instance, store: store, request: request,
                               opened: opened, lock: lock, live: live, previewVersion: version, rowKeys: comparison.rowKeys)
    }

    /// Free-space preflight of a restore: an `.age` backup decrypted and a `.gz` inflated for its check; into the live
    /// database, the `pre_restore` copy of it and the WAL or rollback journal the restore writes
    /// beside it (the larger of the two databases); into a new file, that file.
    /// - Throws: `Failure` `.io` naming the folder and the bytes.
    private func checkSpaceForRestore(_ entry: BackupEntry, request: RestoreRequest, instance: InstanceContext, store: BackupStore) throws {
        let config = instance.config
        guard !runtime.failpoints.skips(.freeSpace) else { return }
        let restored = entry.manifest?.databaseBytes ?? entry.bytes
        let databaseFolder = (config.databasePath as NSString).deletingLastPathComponent
        var needs = SpaceNeeds(instance: config.name)
        if let encryption = entry.manifest?.encryption, entry.encrypted {
            needs.add(encryption.plaintextBytes, in: store.folder, for: "the backup decrypted for its check")
        }
        if entry.compressed { needs.add(restored, in: store.folder, for: "the backup inflated for its check") }
        if !request.dryRun {
            switch request.target {
            case .newFile(let path):
                let absolute = resolve(path, against: FileManager.default.currentDirectoryPath)
                needs.add(restored, in: (absolute as NSString).deletingLastPathComponent, for: "the restored copy")
            case .replace:
                needs.add(restored, in: databaseFolder, for: "the restored database")
            case .live:
                let live = instance.liveBytes
                needs.add(live, in: store.folder, for: "the pre_restore copy of the live database")
                needs.add(max(live, restored), in: databaseFolder, for: "the restore's journal")
            }
        }
        try needs.check()
    }

    private func isNewFile(_ target: RestoreTarget) -> Bool {
        if case .newFile = target { return true }
        return false
    }

    private func preview(_ entry: BackupEntry, _ target: RestoreTarget, _ path: String, _ check: String, _ passedOver: [String]) -> RestorePreview {
        RestorePreview(backup: entry, target: target, targetPath: path, check: check, differences: [], notCompared: [],
                       holders: [], stopsApplication: false, passedOver: passedOver)
    }

    /// Refuses (65) a backup of another instance or database: its manifest names another
    /// instance or database path, or its schema shares no table with this instance's live
    /// database or migrations (manifests written before the instance was recorded have only
    /// this check).
    func checkBelongs(_ entry: BackupEntry, opened: OpenedBackup, to instance: InstanceContext) throws {
        let config = instance.config
        let hint = "pick a backup of this instance from 'deployctl backups list \(config.name)', or pass --allow-foreign if this database really is meant to replace it"
        if let instance = entry.manifest?.instance, instance != config.name {
            throw Failure(.backupForeign, "backup \(entry.name) was taken of instance '\(instance)', not '\(config.name)'", hint: hint)
        }
        if let database = entry.manifest?.database, database != instance.relativeDatabasePath {
            throw Failure(.backupForeign, "backup \(entry.name) was taken of the database \(database), not \(instance.relativeDatabasePath)", hint: hint)
        }
        if let manifest = entry.manifest, manifest.instance == nil, manifest.database == nil {
            // An older manifest: its absolute source path is this database's, or, the root
            // having moved, still ends in instances/<this instance>/…/<this file>.
            let source = URL(fileURLWithPath: manifest.sourcePath).standardizedFileURL
            let parts = source.pathComponents
            let named = parts.lastIndex(of: "instances").flatMap { $0 + 1 < parts.count ? parts[$0 + 1] : nil }
            let same = source.path == config.databasePath
                || (named == config.name && parts.last == URL(fileURLWithPath: config.databasePath).lastPathComponent)
            guard same else {
                throw Failure(.backupForeign, "backup \(entry.name) was taken of \(manifest.sourcePath), not of instance '\(config.name)' (\(config.databasePath))", hint: hint)
            }
        }
        let ignored: Set<String> = [History.table]
        let backupTables = Set(try Connection.tableNames(path: opened.databasePath, live: false)).subtracting(ignored)
        guard !backupTables.isEmpty else { return }
        var ours = Set<String>()
        ours.formUnion((try? Connection.tableNames(path: config.databasePath, live: true, busyTimeout: config.busyTimeout)) ?? [])
        // With no live table to compare with (a missing, empty or unreadable database: what
        // --replace is for), the migrations alone may name none of the application's own tables;
        // a manifest naming this instance and database is then the evidence.
        if ours.isEmpty, entry.manifest?.instance == config.name, entry.manifest?.database == instance.relativeDatabasePath { return }
        if let files = try? MigrationFile.loadAll(folder: instance.migrationsFolder) {
            for file in files { ours.formUnion(MigrationFile.createdTables(in: file.sql)) }
        }
        ours.subtract(ignored)
        guard ours.isEmpty || !ours.isDisjoint(with: backupTables) else {
            throw Failure(.backupForeign, "backup \(entry.name) is not a database of instance '\(config.name)': none of its tables (\(backupTables.sorted().prefix(5).joined(separator: ", "))) is in the live database or the migrations",
                          hint: hint)
        }
    }
}
