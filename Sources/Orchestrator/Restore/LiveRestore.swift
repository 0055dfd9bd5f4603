import Backup
import Foundation
import Locking
import Migration
import SQLite
import Support

/// The critical section of a restore into the live database, and putting the replaced state
/// back after a failure: shared by `PreparedRestore` and deploy recovery.
struct LiveRestore {
    let instance: InstanceContext

    init(_ instance: InstanceContext) { self.instance = instance }

    /// The critical section of a live restore (`Restorer.restore(_:intoLive:…)`): the copy of
    /// the replaced state (labelled `label`) is stored uncompressed whatever `gzip` says and
    /// unencrypted whatever `[encryption] local` says, being a short-lived safety copy that a
    /// failed restore needs back at once; `failpoint` and, when `interruptible`, an interrupt abort it
    /// before the commit (putting a state back is never interrupted).
    /// - Throws: as the restorer; a lock held past the busy timeout is 75 naming the holders.
    func restore(_ opened: OpenedBackup, into live: Connection, previewVersion: UInt32?, rowKeys: [String: [Int64]]? = nil,
                 store: BackupStore, failpoint: Failpoints.Point?, label: String = "pre_restore", interruptible: Bool = true) throws -> Restorer.LiveResult {
        let config = instance.config
        let runtime = instance.runtime
        let failpoints = runtime.failpoints
        let request = instance.snapshotRequest(label: label, compression: .none,
                                      note: "the live database as a restore replaced it, saved inside the restore's critical section; stored uncompressed and unencrypted: a short-lived safety copy",
                                      encrypt: false)
        do {
            let result = try instance.restorer.restore(
                opened, intoLive: live, previewVersion: previewVersion, rowKeys: rowKeys, saving: request, in: store, progress: runtime.progress,
                stop: interruptible ? { @Sendable [interruption = runtime.interruption] in interruption() != nil } : nil) {
                    if let failpoint { try failpoints.hit(failpoint) }
                    if interruptible { try runtime.checkInterruption("the restore was not committed; the live database is as it was") }
                }
            return result
        } catch let error as SQLiteError where error.interrupted {
            try runtime.checkInterruption("the restore was not committed; the live database is as it was")
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
        guard let sizes = Restorer.pageSizeMismatch(backup: backup, livePath: livePath) else { return nil }
        return Failure(.restorePageSizeMismatch, "the backup's page size (\(sizes.backup)) differs from the live database's (\(sizes.live)), which SQLite cannot restore into a WAL database; nothing was changed",
                       hint: "stop the application, switch the live database out of WAL (sqlite3 DB 'PRAGMA journal_mode=DELETE'), restore, then switch back")
    }

    /// After a failure that followed a committed restore of `restored`: stops the app if it
    /// was started, restores the saved state through the same critical section, and throws the
    /// failure, as 1 when the state was proven back, else 2. What it replaces is saved too, as
    /// `pre_putback` (so `--latest --label pre_restore` still finds the state before the
    /// restore), and kept only when it holds rows the backup does not (the application wrote
    /// after the restore): the message names it and counts them.
    func putBack(_ saved: BackupEntry, after error: DeployctlError, restored: OpenedBackup,
                 store: BackupStore, hooks: AppHooks) throws -> Never {
        let config = instance.config
        hooks.stopBeforeUndo(tag: "put-back")
        var displaced = ""
        do {
            let opened = try store.check(store.entry(named: saved.name), keep: true, runCheck: false)!
            defer { opened.discard() }
            let live = try instance.restorer.openLive(config.databasePath, readOnly: false)
            let result = try restore(opened, into: live, previewVersion: nil, store: store, failpoint: nil,
                                         label: "pre_putback", interruptible: false)
            guard case .identical = result.proof else { throw Failure(.restorePutBackFailed, "the put-back could not be proven page by page") }
            // What the application did to the restored database before it was put back.
            let written = try instance.restorer.compare(savedAt: result.saved.path, backup: restored)
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
}
