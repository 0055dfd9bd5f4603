import Backup
import Foundation
import Locking
import Migration
import SQLite
import Support

/// A restore that is checked and previewed, holding the instance lock, ready to `perform()`
/// once the operator has seen the preview (ARCHITECTURE.md, direction 3).
///
/// Holds the instance lock, the checked (and, for `.gz`, inflated) backup and the connection
/// that read the preview until `perform()` or `release()`.
public final class PreparedRestore {
    public let preview: RestorePreview
    let instance: InstanceContext
    var runtime: Runtime { instance.runtime }
    var config: InstanceConfig { instance.config }
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

    init(preview: RestorePreview, instance: InstanceContext, store: BackupStore, request: RestoreRequest,
         opened: OpenedBackup, lock: InstanceLock?, live: Connection?, previewVersion: UInt32?, rowKeys: [String: [Int64]]? = nil) {
        self.preview = preview
        self.instance = instance
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
            try? RemoteBackups(runtime).discardFetched(instance: request.instance, backup: fetched.name)
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
        try lock?.record(operation: "restore", stage: "restore")
        let restorer = instance.restorer
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
        let hooks = AppHooks(instance, outputFolder: config.deploysFolder + "/restore-" + Runtime.deployId(runtime.clock()), enabled: request.runHooks,
                             after: " after the restore", notDone: "nothing was restored; ")
        try runtime.failpoints.hit(.restorePreview)
        try runtime.checkInterruption("nothing was changed")
        // Nothing to restore when the live database holds the backup's content and nobody has
        // committed since the preview showed it: a copy saved now would only push an older,
        // different state out of the kept restore copies.
        if preview.holdsBackup, let live, let previewVersion, try live.unchanged(since: previewVersion) {
            return .notPerformed(preview, alreadyHeld: true)
        }
        do {
            try hooks.stop(tag: "restore", hint: "check the hook's command in \(config.file), or run with --no-hooks after stopping the application yourself")
            let connection = try live ?? restorer.openLive(config.databasePath, readOnly: false)
            live = nil
            let result = try LiveRestore(instance).restore(opened, into: connection, previewVersion: previewVersion, rowKeys: rowKeys,
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
                try hooks.start(tag: "restore")
            } catch let error as DeployctlError {
                try LiveRestore(instance).putBack(result.saved, after: error, restored: opened, store: store, hooks: hooks)
            }
            var differences = preview.differences
            var notCompared = preview.notCompared
            if !result.previewExact {
                // Another connection committed after the preview: count what was discarded
                // from the saved copy, exactly the state replaced.
                let exact = try restorer.compare(savedAt: result.saved.path, backup: opened)
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
            _ = RestoreCopies(instance).tidy(store: store, protected: [result.saved.name: "just written"], compress: false)
            return RestoreOutcome(preview: preview, performed: true, preRestoreBackup: result.saved, differences: differences,
                                  notCompared: notCompared, movedAside: nil, provenPages: provenPages, provenRows: provenRows, unproven: unproven,
                                  writeLockMilliseconds: result.writeLockMilliseconds, hooks: hooks.results,
                                  interruptedTooLate: interruptedTooLate)
        } catch {
            hooks.startIfStopped(tag: "after-failure")
            if let failure = error as? DeployctlError { throw hooks.sayingIfDown(failure) }
            throw error
        }
    }
}
