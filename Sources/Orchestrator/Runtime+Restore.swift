import Backup
import Foundation
import Locking
import Migration
import SQLite
import Support

/// Which backup to restore.
public enum BackupSelection: Sendable {
    /// The newest backup (optionally with a label) whose checksum is good; without a label,
    /// `pre_restore` copies are passed over.
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

    /// Whether the restore writes into the live database through SQLite (its file and folder
    /// must then be writable).
    var changesLiveDatabase: Bool {
        if case .live = self { return true }
        return false
    }
}

/// Where the backup to restore is.
public enum RestoreSource: Sendable {
    /// In the instance's backups folder.
    case local
    /// In a remote (`nil`: the instance's only one), under `host`'s folder (`nil`: this host's):
    /// fetched into the local backups folder and checked against its manifest first
    /// (`Runtime.fetchForRestore`). `allowUnsigned` accepts a copy this instance's key did not sign.
    case remote(name: String?, host: String?, allowUnsigned: Bool)
}

/// What `deployctl restore` was asked to do.
public struct RestoreRequest: Sendable {
    public var instance: String
    public var selection: BackupSelection
    public var source: RestoreSource
    public var target: RestoreTarget
    /// Check and preview only; take no lock, run no hook, change nothing.
    public var dryRun: Bool
    /// Run the instance's stop hook before and start + health after a restore into the live database.
    public var runHooks: Bool
    /// Restore a backup whose manifest names another instance or database, or whose schema
    /// shares no table with this instance's.
    public var allowForeign: Bool

    public init(instance: String, selection: BackupSelection, target: RestoreTarget, dryRun: Bool = false,
                runHooks: Bool = true, allowForeign: Bool = false, source: RestoreSource = .local) {
        self.instance = instance
        self.selection = selection
        self.source = source
        self.target = target
        self.dryRun = dryRun
        self.runHooks = runHooks
        self.allowForeign = allowForeign
    }
}

/// What a restore will do, shown before it happens.
public struct RestorePreview: Sendable {
    public let backup: BackupEntry
    public let target: RestoreTarget
    public let targetPath: String
    /// How the backup's content was checked: `integrity_check`, or that these exact bytes
    /// already passed it (recorded in the manifest).
    public let check: String
    /// Per-table differences (live restores only), as the live database stood when compared.
    public let differences: [TableDifference]
    /// Tables whose rows were not compared, with the reason.
    public let notCompared: [NotCompared]
    /// Processes holding the live database when no stop hook will run.
    public let holders: [DatabaseHolder]
    /// Whether the stop hook runs before the restore.
    public let stopsApplication: Bool
    /// Newer backups `--latest` passed over, each with why.
    public var passedOver: [String] = []
    /// The live database already holds the backup's content (rows, schema, header versions):
    /// restoring it would change nothing, so it is not done, and no copy is saved.
    public var holdsBackup = false
    /// Rows the restore discards, summed over tables.
    public var discardedRows: Int { differences.discardedRows }
}

/// What a restore by rows rewrote and proved.
public struct ProvenRows: Sendable, Equatable {
    public let rows: Int
    public let tables: Int
}

/// The result of a restore.
public struct RestoreOutcome: Sendable {
    public let preview: RestorePreview
    /// False for a dry run.
    public let performed: Bool
    /// The `pre_restore` snapshot: exactly the state the restore replaced (live restores).
    public let preRestoreBackup: BackupEntry?
    /// Per-table differences between the replaced state and the backup: the preview's when no
    /// commit fell between it and the write lock, else computed again from `pre_restore`.
    public let differences: [TableDifference]
    public let notCompared: [NotCompared]
    /// Where an unreadable live database was moved (`--replace`).
    public let movedAside: String?
    /// Pages of the restored database proven byte-identical to the backup's; nil when not proven.
    public let provenPages: Int?
    /// A restore by rows (`Restorer.restoreByRows`): the rows it rewrote, proven equal to the
    /// backup's, every other row having been proven equal page by page before it.
    public var provenRows: ProvenRows? = nil
    /// Not performed because the live database already held the backup's content.
    public var alreadyHeld = false
    /// Why the equality is not proven, when it is not.
    public let unproven: String?
    /// How long the application could not write (live restores).
    public let writeLockMilliseconds: Double?
    /// App hooks run, in order.
    public let hooks: [HookResult]
    /// A SIGINT/SIGTERM that came after the restore had committed: it finished anyway.
    public let interruptedTooLate: Bool

    /// Rows the restore discarded, summed over tables.
    public var discardedRows: Int { differences.discardedRows }

    static func notPerformed(_ preview: RestorePreview, alreadyHeld: Bool = false) -> RestoreOutcome {
        var outcome = RestoreOutcome(preview: preview, performed: false, preRestoreBackup: nil, differences: preview.differences,
                                     notCompared: preview.notCompared, movedAside: nil, provenPages: nil, unproven: nil,
                                     writeLockMilliseconds: nil, hooks: [], interruptedTooLate: false)
        outcome.alreadyHeld = alreadyHeld
        return outcome
    }
}

/// A restore that is checked and previewed, holding the instance lock, ready to `perform()`
/// once the operator has seen the preview (ARCHITECTURE.md, direction 3).
///
/// Holds the instance lock, the checked (and, for `.gz`, inflated) backup and the connection
/// that read the preview until `perform()` or `release()`.
public final class PreparedRestore {
    public let preview: RestorePreview
    let runtime: Runtime
    let config: InstanceConfig
    let store: BackupStore
    let request: RestoreRequest
    private var opened: OpenedBackup?
    private var lock: InstanceLock?
    /// The connection that read the preview, and its data version after that read.
    private var live: Connection?
    private let previewVersion: UInt32?
    /// The preview's differing rows, for a restore by rows (`Restorer.restoreByRows`).
    private let rowKeys: [String: [Int64]]?
    /// The remote copy fetched for this restore (`RestoreSource.remote`). A download is removed
    /// again on release unless a restore (not a dry run) was performed.
    public internal(set) var fetched: FetchedCopy?
    private var keepsFetched = false

    init(preview: RestorePreview, runtime: Runtime, config: InstanceConfig, store: BackupStore, request: RestoreRequest,
         opened: OpenedBackup, lock: InstanceLock?, live: Connection?, previewVersion: UInt32?, rowKeys: [String: [Int64]]? = nil) {
        self.preview = preview
        self.runtime = runtime
        self.config = config
        self.store = store
        self.request = request
        self.opened = opened
        self.lock = lock
        self.live = live
        self.previewVersion = previewVersion
        self.rowKeys = rowKeys
    }

    deinit { release() }

    /// Removes the inflated temp copy, closes the preview connection and releases the lock.
    public func release() {
        opened?.discard()
        opened = nil
        live = nil
        lock?.release()
        lock = nil
        if let fetched, fetched.downloaded, !keepsFetched {
            try? runtime.discardFetched(instance: request.instance, backup: fetched.name)
            self.fetched = nil
        }
    }

    /// Performs the restore that was previewed, then releases everything.
    /// - Throws: `Failure` with the cause's kind; `.unproven` only when the live database was
    ///   changed and could not be proven back.
    public func perform() throws -> RestoreOutcome {
        defer { release() }
        let outcome = try performHeld()
        keepsFetched = !request.dryRun
        return outcome
    }

    private func performHeld() throws -> RestoreOutcome {
        guard let opened, !request.dryRun else { return .notPerformed(preview) }
        lock?.record(operation: "restore", stage: "restore")
        let restorer = runtime.restorer(config)
        switch request.target {
        case .newFile(let path):
            try runtime.checkInterruption("nothing was written")
            let pages = try restorer.restore(opened, toNewFile: path)
            return RestoreOutcome(preview: preview, performed: true, preRestoreBackup: nil, differences: [], notCompared: [],
                                  movedAside: nil, provenPages: pages, unproven: nil, writeLockMilliseconds: nil, hooks: [],
                                  interruptedTooLate: false)
        case .replace:
            try runtime.checkInterruption("nothing was changed")
            try store.prepareForWriting()
            let aside = store.folder + "/" + store.newName(label: "replaced", at: runtime.clock(), compressed: false)
            let (pages, moved) = try restorer.replace(livePath: config.databasePath, with: opened, aside: aside)
            return RestoreOutcome(preview: preview, performed: true, preRestoreBackup: nil, differences: [], notCompared: [],
                                  movedAside: moved, provenPages: pages, unproven: nil, writeLockMilliseconds: nil, hooks: [],
                                  interruptedTooLate: false)
        case .live:
            return try performLive(opened, restorer: restorer)
        }
    }

    private func performLive(_ opened: OpenedBackup, restorer: Restorer) throws -> RestoreOutcome {
        let hooks = AppHooks(runtime: runtime, config: config, enabled: request.runHooks)
        try runtime.failpoints.hit(.restorePreview)
        try runtime.checkInterruption("nothing was changed")
        // Nothing to restore when the live database holds the backup's content and nobody has
        // committed since the preview showed it: a copy saved now would only push an older,
        // different state out of the kept restore copies.
        if preview.holdsBackup, let live, let previewVersion {
            try live.execute("BEGIN")
            _ = try live.scalar("SELECT count(*) FROM sqlite_schema")
            let unchanged = live.dataVersion == previewVersion
            try live.execute("COMMIT")
            if unchanged { return .notPerformed(preview, alreadyHeld: true) }
        }
        do {
            try hooks.stop()
            let connection = try live ?? Connection(path: config.databasePath, mode: .readWrite, busyTimeout: config.busyTimeout)
            live = nil
            let result = try runtime.restoreLive(opened, into: connection, previewVersion: previewVersion, rowKeys: rowKeys, config: config,
                                                 store: store, failpoint: .restore)
            runtime.events(.stepDone("Saved the replaced database as \(result.saved.name)"))
            // From here the live database holds the backup: any failure puts the saved state back.
            do {
                if case .differs(let pages, let total) = result.proof {
                    throw Failure(.restoreProofFailed, "after the restore, the live database does not hold the backup's pages (\(pages) of \(total) differ)")
                }
                if case .rowsDiffer(let rows) = result.proof {
                    throw Failure(.restoreProofFailed, "after the restore, the live database does not hold the backup's rows (\(counted(rows, "row")) differ)")
                }
                try runtime.failpoints.hit(.afterRestore)
                try hooks.start()
            } catch let error as DeployctlError {
                try runtime.putBack(result.saved, after: error, restored: opened, config: config, store: store, hooks: hooks)
            }
            var differences = preview.differences
            var notCompared = preview.notCompared
            if !result.previewExact {
                // Another connection committed after the preview: count what was discarded
                // from the saved copy, exactly the state replaced.
                let saved = try Connection(path: result.saved.path, mode: .immutable)
                let exact = try restorer.compare(saved, backup: opened)
                (differences, notCompared) = (exact.differences, exact.notCompared)
            }
            // A signal from the commit on is too late to stop the restore: it is finished.
            let interruptedTooLate = runtime.interruption() != nil
            var provenPages: Int?
            var provenRows: ProvenRows?
            var unproven: String?
            switch result.proof {
            case .identical(let pages): provenPages = pages
            case .rows(let rows, let tables): provenRows = ProvenRows(rows: rows, tables: tables)
            case .overtaken: unproven = "another connection committed to the restored database before the proof could read it"
            case .differs, .rowsDiffer: break
            }
            _ = runtime.tidyRestoreCopies(config, store: store, protected: [result.saved.name: "just written"], compress: false)
            return RestoreOutcome(preview: preview, performed: true, preRestoreBackup: result.saved, differences: differences,
                                  notCompared: notCompared, movedAside: nil, provenPages: provenPages, provenRows: provenRows, unproven: unproven,
                                  writeLockMilliseconds: result.writeLockMilliseconds, hooks: hooks.results,
                                  interruptedTooLate: interruptedTooLate)
        } catch {
            hooks.startIfStopped()
            throw error
        }
    }
}

/// The app hooks around a restore into the live database: stop before, start and health
/// after, start again after a failure that left the app stopped.
final class AppHooks {
    let runtime: Runtime
    let config: InstanceConfig
    let enabled: Bool
    let runner: HookRunner
    private(set) var results = [HookResult]()
    private var stopped = false

    init(runtime: Runtime, config: InstanceConfig, enabled: Bool) {
        self.runtime = runtime
        self.config = config
        self.enabled = enabled
        runner = HookRunner(outputFolder: config.deploysFolder + "/restore-" + Runtime.deployId(runtime.clock()), workingDirectory: config.folder,
                            environment: ["DEPLOYCTL_INSTANCE": config.name, "DEPLOYCTL_DATABASE": config.databasePath], trace: runtime.trace)
    }

    /// Runs the stop hook, if any.
    /// - Throws: `Failure` `.failed` when it fails (the app is then started again by the caller).
    func stop() throws {
        guard enabled, let command = config.hooks.stop else { return }
        runtime.events(.stepStarted("stopping the application (stop hook)"))
        let result = try runner.run(name: "stop", command: command, timeout: config.hooks.timeout, tag: "restore")
        results.append(result)
        stopped = true
        guard result.succeeded else {
            throw Failure(.hookStopFailed, "the stop hook failed (\(result.timedOut ? "timed out" : "exit \(result.exitCode.map(String.init) ?? "signal")")); nothing was restored; output in \(result.outputPath)",
                          hint: "check the hook's command in \(config.file), or run with --no-hooks after stopping the application yourself")
        }
    }

    /// Runs the start hook and the health check, if configured.
    /// - Throws: `Failure` `.failed` when either fails.
    func start() throws {
        guard enabled else { return }
        if let command = config.hooks.start {
            runtime.events(.stepStarted("starting the application (start hook)"))
            let result = try runner.run(name: "start", command: command, timeout: config.hooks.timeout, tag: "restore")
            results.append(result)
            stopped = false
            guard result.succeeded else { throw Failure(.hookStartFailed, "the start hook failed after the restore; output in \(result.outputPath)") }
        }
        if let command = config.hooks.health {
            let result = try runner.runHealthCheck(command: command, attempts: config.hooks.healthAttempts, timeout: config.hooks.timeout)
            results.append(result)
            guard result.succeeded else {
                throw Failure(.hookHealthFailed, "the health check failed \(counted(config.hooks.healthAttempts, "time")) after the restore; output in \(result.outputPath)")
            }
        }
    }

    /// Stops the app (when a start hook ran) before the saved state is put back.
    func stopForPutBack() {
        guard enabled, !stopped, results.contains(where: { $0.name == "start" }), let command = config.hooks.stop,
              let result = try? runner.run(name: "stop", command: command, timeout: config.hooks.timeout, tag: "put-back") else { return }
        results.append(result)
        stopped = true
    }

    /// Starts the app again when this restore left it stopped.
    func startIfStopped() {
        guard enabled, stopped, let command = config.hooks.start,
              let result = try? runner.run(name: "start", command: command, timeout: config.hooks.timeout, tag: "after-failure") else { return }
        results.append(result)
        stopped = false
    }
}

extension Runtime {
    /// The restorer for an instance; the failpoint `row-digests=skip` keeps no row digests, so
    /// tests reach the row-by-row comparison a large difference takes; `row-restore=skip`
    /// always restores through the backup API, `row-restore-size=skip` restores by rows
    /// whatever the database's size.
    func restorer(_ config: InstanceConfig) -> Restorer {
        Restorer(busyTimeout: config.busyTimeout, rowDigestBudget: failpoints.skips(.rowDigests) ? 0 : Connection.rowDigestBudget,
                 rowRestoreMinimumBytes: failpoints.skips(.rowRestore) ? nil : failpoints.skips(.rowRestoreSize) ? 0 : Restorer.rowRestoreMinimumBytes)
    }

    /// `deployctl restore`, first step: takes the instance lock (unless a dry run), finishes an
    /// unfinished deploy, picks the backup and checks it once (checksum, `integrity_check`
    /// unless these bytes already passed it, that it is this instance's database), and computes
    /// the preview. The operator sees the preview; `perform()` does the rest.
    /// - Throws: `Failure` (kinds per SPEC.md; 65 for a bad or foreign backup), `SQLiteError`.
    public func beginRestore(_ request: RestoreRequest) throws -> PreparedRestore {
        guard case .remote(let remote, let host, let allowUnsigned) = request.source else { return try beginLocalRestore(request) }
        let name: String? = if case .named(let name) = request.selection { name } else { nil }
        let label: String? = if case .latest(let label) = request.selection { label } else { nil }
        let fetched = try fetchForRestore(instance: request.instance, remote: remote, host: host, backup: name, label: label, allowUnsigned: allowUnsigned)
        var local = request
        local.selection = .named(fetched.name)
        do {
            let prepared = try beginLocalRestore(local)
            prepared.fetched = fetched
            return prepared
        } catch {
            // A restore that refuses the copy leaves no download behind.
            if fetched.downloaded { try? discardFetched(instance: request.instance, backup: fetched.name) }
            throw error
        }
    }

    private func beginLocalRestore(_ request: RestoreRequest) throws -> PreparedRestore {
        let config = try workspace.instance(request.instance)
        try checkAccess(config, request.dryRun ? .inspect : request.target.changesLiveDatabase ? .changeLive : .manageBackups)
        let store = store(config)
        var lock: InstanceLock?
        if !request.dryRun {
            lock = try lockInstance(config, operation: "restore", stage: "check and preview")
            _ = try recoverUnfinishedDeploy(config)
        }
        guard case .latest(let label) = request.selection else {
            guard case .named(let name) = request.selection else { preconditionFailure() }
            return try prepare(store.entry(named: name), request: request, config: config, store: store, lock: lock, passedOver: [])
        }
        // The newest good backup: one that fails any check is passed over, and named.
        var passedOver = [String]()
        for entry in store.entries() where label == nil ? entry.label != "pre_restore" : entry.label == label {
            guard !entry.isFutureDated(now: store.now) else {
                passedOver.append("\(entry.name): dated \(Self.day(entry.createdAt)), in the future (written under a wrong clock?); name it to restore it")
                continue
            }
            guard entry.status != "failed" else {
                passedOver.append("\(entry.name): its last check failed (\(entry.manifest?.verification?.reason ?? "see backups list"))")
                continue
            }
            do {
                return try prepare(entry, request: request, config: config, store: store, lock: lock, passedOver: passedOver)
            } catch let failure as Failure where failure.kind == .badData {
                passedOver.append("\(entry.name): \(failure.message)")
            }
        }
        throw Failure(.noUsableBackup, "no good backup in \(store.folder)\(label.map { " with label \($0)" } ?? " (pre_restore copies are only used with --label pre_restore)")"
                      + passedOver.map { "\n  passed over \($0)" }.joined(),
                      hint: "take one with 'deployctl snapshot \(config.name)', or see 'deployctl backups list \(config.name)'")
    }

    /// Checks `entry` and computes the preview for `request` (see `beginRestore`); a signal
    /// that stopped the check or preview is reported as the interrupt it is.
    private func prepare(_ entry: BackupEntry, request: RestoreRequest, config: InstanceConfig, store: BackupStore,
                         lock: InstanceLock?, passedOver: [String]) throws -> PreparedRestore {
        do {
            return try prepareChecked(entry, request: request, config: config, store: store, lock: lock, passedOver: passedOver)
        } catch where interruption() != nil {
            try checkInterruption("the check and preview of \(entry.name) were stopped; nothing was changed")
            throw error
        }
    }

    private func prepareChecked(_ entry: BackupEntry, request: RestoreRequest, config: InstanceConfig, store: BackupStore,
                                lock: InstanceLock?, passedOver: [String]) throws -> PreparedRestore {
        let intoLive = if case .live = request.target { true } else { false }
        let alreadyChecked = entry.manifest?.passedIntegrityCheck == true
        try checkSpaceForRestore(entry, request: request, config: config, store: store)
        // Into the live database, integrity_check runs beside the comparison below.
        // Into a new file, an inflated copy becomes that file: it is fsynced beside its check.
        // A line at once, with bytes and time left as the backup is read (inflated, checksummed).
        let phase = Phase.checkingBackup(name: entry.name, number: 1, of: 1)
        progress(.working(phase))
        var reporting = store
        let progress = self.progress
        reporting.checkProgress = { done, total in progress(.working(phase, done: done, total: total)) }
        let opened = try reporting.check(entry, keep: true, runCheck: !intoLive && !alreadyChecked, syncCopy: isNewFile(request.target) && !request.dryRun)!
        do {
            let check = alreadyChecked ? "these bytes passed integrity_check on \(Self.day(entry.manifest!.verification!.at))" : "integrity_check"
            if !request.allowForeign, !isNewFile(request.target) {
                try checkBelongs(entry, opened: opened, to: config)
            }
            try checkInterruption("nothing was changed")
            switch request.target {
            case .newFile(let path):
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
                var prepared = request
                prepared.target = .newFile(absolute)
                return PreparedRestore(preview: preview(entry, request.target, absolute, check, passedOver), runtime: self, config: config,
                                       store: store, request: prepared, opened: opened, lock: lock, live: nil, previewVersion: nil)
            case .replace:
                // An empty file (0 bytes) is no application's database: it is replaced too.
                let size = ((try? FileManager.default.attributesOfItem(atPath: config.databasePath))?[.size] as? NSNumber)?.int64Value ?? 0
                if FileManager.default.fileExists(atPath: config.databasePath), size > 0,
                   (try? Connection(path: config.databasePath, mode: .inspect, busyTimeout: config.busyTimeout).integrityProblems().isEmpty) == true {
                    throw Failure(.restoreReplaceRefused, "the live database \(config.databasePath) is readable and healthy; --replace is only for a missing or unreadable one",
                                  hint: "run 'deployctl restore \(config.name) \(entry.name)' without --replace")
                }
                let holders = DatabaseHolders.find(path: config.databasePath)
                guard holders.isEmpty else {
                    throw Failure(.databaseHeld, "the live database \(config.databasePath) is held by \(holders.map(\.description).joined(separator: ", "))",
                                  hint: "stop the application, then run again")
                }
                return PreparedRestore(preview: preview(entry, request.target, config.databasePath, check, passedOver), runtime: self,
                                       config: config, store: store, request: request, opened: opened, lock: lock, live: nil, previewVersion: nil)
            case .live:
                if let mismatch = Self.pageSizeMismatch(opened, config.databasePath) { throw mismatch }
                // A dry run only reads (and leaves an application's -wal as it was).
                let live = try Connection(path: config.databasePath, mode: request.dryRun ? .inspect : .readWrite, busyTimeout: config.busyTimeout)
                try live.execute("PRAGMA query_only = ON")
                let restorer = self.restorer(config)
                progress(.working(.comparingWithLive))
                // The comparison stops at a signal (its page copy steps ask); nothing after it may.
                let interruption = self.interruption
                live.stopWhen { interruption() != nil }
                let ((), comparison) = try bothAtOnce({ if !alreadyChecked { try store.integrityCheck(opened, of: entry) } },
                                                      { defer { live.stopWhen(nil) }; return try restorer.compare(live, backup: opened) })
                let version = live.dataVersion
                progress(.ended(announce: true))
                if !request.dryRun { try live.execute("PRAGMA query_only = OFF") }
                let stops = request.runHooks && config.hooks.stop != nil
                var preview = RestorePreview(backup: entry, target: request.target, targetPath: config.databasePath, check: check,
                                             differences: comparison.differences, notCompared: comparison.notCompared,
                                             holders: stops ? [] : DatabaseHolders.find(path: config.databasePath), stopsApplication: stops,
                                             passedOver: passedOver)
                preview.holdsBackup = comparison.holdsBackup
                return PreparedRestore(preview: preview, runtime: self, config: config, store: store, request: request,
                                       opened: opened, lock: lock, live: live, previewVersion: version, rowKeys: comparison.rowKeys)
            }
        } catch {
            opened.discard()
            throw error
        }
    }

    /// Free-space preflight of a restore: an `.age` backup decrypted and a `.gz` inflated for its check; into the live
    /// database, the `pre_restore` copy of it and the WAL or rollback journal the restore writes
    /// beside it (the larger of the two databases); into a new file, that file.
    /// - Throws: `Failure` `.io` naming the folder and the bytes.
    private func checkSpaceForRestore(_ entry: BackupEntry, request: RestoreRequest, config: InstanceConfig, store: BackupStore) throws {
        guard !failpoints.skips(.freeSpace) else { return }
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
                let live = liveBytes(config)
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
    func checkBelongs(_ entry: BackupEntry, opened: OpenedBackup, to config: InstanceConfig) throws {
        let hint = "pick a backup of this instance from 'deployctl backups list \(config.name)', or pass --allow-foreign if this database really is meant to replace it"
        if let instance = entry.manifest?.instance, instance != config.name {
            throw Failure(.backupForeign, "backup \(entry.name) was taken of instance '\(instance)', not '\(config.name)'", hint: hint)
        }
        if let database = entry.manifest?.database, database != relativeDatabasePath(config) {
            throw Failure(.backupForeign, "backup \(entry.name) was taken of the database \(database), not \(relativeDatabasePath(config))", hint: hint)
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
        let ignored: Set<String> = ["deployctl_migrations"]
        let backupTables = Set(try Connection(path: opened.databasePath, mode: .immutable).tableNames()).subtracting(ignored)
        guard !backupTables.isEmpty else { return }
        var ours = Set<String>()
        if let live = try? Connection(path: config.databasePath, mode: .inspect, busyTimeout: config.busyTimeout) {
            ours.formUnion((try? live.tableNames()) ?? [])
        }
        // With no live table to compare with (a missing, empty or unreadable database: what
        // --replace is for), the migrations alone may name none of the application's own tables;
        // a manifest naming this instance and database is then the evidence.
        if ours.isEmpty, entry.manifest?.instance == config.name, entry.manifest?.database == relativeDatabasePath(config) { return }
        if let files = try? MigrationFile.loadAll(folder: workspace.deployConfig().migrationsFolder) {
            for file in files { ours.formUnion(MigrationFile.createdTables(in: file.sql)) }
        }
        ours.subtract(ignored)
        guard ours.isEmpty || !ours.isDisjoint(with: backupTables) else {
            throw Failure(.backupForeign, "backup \(entry.name) is not a database of instance '\(config.name)': none of its tables (\(backupTables.sorted().prefix(5).joined(separator: ", "))) is in the live database or the migrations",
                          hint: hint)
        }
    }

    /// The critical section of a live restore (`Restorer.restore(_:intoLive:…)`): the copy of
    /// the replaced state (labelled `label`) is stored uncompressed whatever `gzip` says and
    /// unencrypted whatever `[encryption] local` says, being a short-lived safety copy that a
    /// failed restore needs back at once; `failpoint` and, when `interruptible`, an interrupt abort it
    /// before the commit (putting a state back is never interrupted).
    /// - Throws: as the restorer; a lock held past the busy timeout is 75 naming the holders.
    func restoreLive(_ opened: OpenedBackup, into live: Connection, previewVersion: UInt32?, rowKeys: [String: [Int64]]? = nil, config: InstanceConfig,
                     store: BackupStore, failpoint: Failpoints.Point?, label: String = "pre_restore", interruptible: Bool = true) throws -> Restorer.LiveResult {
        let request = snapshotRequest(config, label: label, compression: .none,
                                      note: "the live database as a restore replaced it, saved inside the restore's critical section; stored uncompressed and unencrypted: a short-lived safety copy",
                                      encrypt: false)
        do {
            let result = try restorer(config).restore(
                opened, intoLive: live, previewVersion: previewVersion, rowKeys: rowKeys, saving: request, in: store, progress: progress,
                stop: interruptible ? { [interruption] in interruption() != nil } : nil) {
                    if let failpoint { try failpoints.hit(failpoint) }
                    if interruptible { try checkInterruption("the restore was not committed; the live database is as it was") }
                }
            return result
        } catch let error as SQLiteError where error.interrupted {
            try checkInterruption("the restore was not committed; the live database is as it was")
            throw error
        } catch let error as SQLiteError where error.kind == .temporary {
            throw DatabaseHolders.busy(path: config.databasePath, timeout: config.busyTimeout)
        } catch let error as SQLiteError where error.code == .sqliteReadOnly {
            if let mismatch = Self.pageSizeMismatch(opened, config.databasePath) { throw mismatch }
            throw Failure(.databaseReadOnly, "the live database \(config.databasePath) cannot be written: \(error.sqliteMessage); nothing was changed",
                          hint: "check the file's and its folder's owner and permissions")
        }
    }

    /// The failure for a backup whose page size differs from a live database in WAL mode
    /// (SQLite's backup API refuses that), or nil.
    static func pageSizeMismatch(_ backup: OpenedBackup, _ livePath: String) -> Failure? {
        guard let live = try? Connection(path: livePath, mode: .inspect), (try? live.journalMode()) == "wal" else { return nil }
        let sizes = [try? Connection(path: backup.databasePath, mode: .immutable).scalar("PRAGMA page_size").int,
                     try? live.scalar("PRAGMA page_size").int].map { $0 ?? 0 }
        guard sizes[0] != sizes[1] else { return nil }
        return Failure(.restorePageSizeMismatch, "the backup's page size (\(sizes[0])) differs from the live database's (\(sizes[1])), which SQLite cannot restore into a WAL database; nothing was changed",
                       hint: "stop the application, switch the live database out of WAL (sqlite3 DB 'PRAGMA journal_mode=DELETE'), restore, then switch back")
    }

    /// After a failure that followed a committed restore of `restored`: stops the app if it
    /// was started, restores the saved state through the same critical section, and throws the
    /// failure, as 1 when the state was proven back, else 2. What it replaces is saved too, as
    /// `pre_putback` (so `--latest --label pre_restore` still finds the state before the
    /// restore), and kept only when it holds rows the backup does not (the application wrote
    /// after the restore): the message names it and counts them.
    func putBack(_ saved: BackupEntry, after error: DeployctlError, restored: OpenedBackup, config: InstanceConfig,
                 store: BackupStore, hooks: AppHooks) throws -> Never {
        hooks.stopForPutBack()
        var displaced = ""
        do {
            let opened = try store.check(store.entry(named: saved.name), keep: true, runCheck: false)!
            defer { opened.discard() }
            let live = try Connection(path: config.databasePath, mode: .readWrite, busyTimeout: config.busyTimeout)
            let result = try restoreLive(opened, into: live, previewVersion: nil, config: config, store: store, failpoint: nil,
                                         label: "pre_putback", interruptible: false)
            guard case .identical = result.proof else { throw Failure(.restorePutBackFailed, "the put-back could not be proven page by page") }
            // What the application did to the restored database before it was put back.
            let written = try restorer(config).compare(Connection(path: result.saved.path, mode: .immutable), backup: restored)
            let deleted = written.differences.reduce(0) { $0 + $1.restored }
            if written.discardedRows == 0 && deleted == 0 {
                try store.remove([result.saved])
            } else {
                displaced = "\nAfter the restore the application added or changed \(counted(written.discardedRows, "row")) and removed \(deleted); "
                    + "the database as it stood then is saved as \(result.saved.name)."
            }
        } catch let putBackError {
            throw Failure(.restorePutBackFailed, "\(error.message)\nPutting the database back failed too: \(putBackError)",
                          hint: "restore \(saved.name) by hand: deployctl restore \(config.name) \(saved.name) --yes")
        }
        throw Failure(.restorePutBack, "\(error.message)\nThe live database was put back as it was (from \(saved.name), proven page by page).\(displaced)",
                      hint: error.hint, cause: error.code)
    }

    /// Throws `.failed` when SIGINT, SIGTERM or SIGHUP arrived, saying what state things are in.
    public func checkInterruption(_ state: String?) throws {
        if let signal = interruption() {
            throw Failure(.interrupted, "interrupted by signal \(Self.signalName(signal))" + (state.map { "; \($0)" } ?? ""))
        }
    }

    static func signalName(_ signal: Int32) -> String {
        signal == SIGINT ? "SIGINT" : signal == SIGTERM ? "SIGTERM" : signal == SIGHUP ? "SIGHUP" : String(signal)
    }

    static func day(_ date: Date) -> String {
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = TimeZone(identifier: "UTC")
        formatter.dateFormat = "yyyy-MM-dd HH:mm"
        return formatter.string(from: date) + " UTC"
    }
}
