import Dispatch
import Foundation
import SQLite
import Support

/// How one table differs between the live database and a backup.
public struct TableDifference: Codable, Sendable, Equatable {
    public let table: String
    /// Rows in the live table (nil when the table exists only in the backup).
    public let liveRows: Int?
    /// Rows in the backup's table (nil when the table exists only in the live database).
    public let backupRows: Int?
    /// Distinct live rows the backup does not hold: what a restore discards.
    public let discarded: Int
    /// Distinct backup rows the live table does not hold: what a restore brings back.
    public let restored: Int

    enum CodingKeys: String, CodingKey {
        case table, discarded, restored
        case liveRows = "live_rows"
        case backupRows = "backup_rows"
    }
}

extension [TableDifference] {
    /// Rows a restore discards, summed over tables.
    public var discardedRows: Int { reduce(0) { $0 + $1.discarded } }
}

/// A table of either side the preview could not compare row by row, and why.
public struct NotCompared: Codable, Sendable, Equatable {
    public let table: String
    public let reason: String
}

/// Restores backups through SQLite's backup API: into the live database (one write
/// transaction, inside a critical section that first saves the live state), into a new file,
/// or over a missing or unreadable live database.
public struct Restorer: Sendable {
    public let busyTimeout: Duration
    /// How many differing rows a comparison keeps digests of (`Connection.rowDigestBudget`);
    /// past it the tables are merged row by row from SQL, in flat memory.
    public let rowDigestBudget: Int

    /// The smallest live database a restore into it rewrites by rows when it can
    /// (`restoreByRows`); nil: always through the backup API.
    public let rowRestoreMinimumBytes: Int64?

    public init(busyTimeout: Duration, rowDigestBudget: Int = Connection.rowDigestBudget,
                rowRestoreMinimumBytes: Int64? = Restorer.rowRestoreMinimumBytes) {
        self.busyTimeout = busyTimeout
        self.rowDigestBudget = rowDigestBudget
        self.rowRestoreMinimumBytes = rowRestoreMinimumBytes
    }

    /// The comparison of a database with a backup: what a restore discards and brings back.
    public struct Comparison: Sendable {
        public let differences: [TableDifference]
        /// Rows the restore discards, summed over tables.
        public var discardedRows: Int { differences.discardedRows }
        /// Tables whose rows could not be compared (virtual tables of unknown modules,
        /// contentless full-text tables) and shadow tables, compared through their virtual table.
        public let notCompared: [NotCompared]
        /// The rowids of every row that differs, per table, when each differing table was
        /// compared leaf by leaf (`changedRows`) and every other table's pages were identical:
        /// rewriting just these rows gives the backup's content (`restoreByRows`). Nil otherwise.
        public let rowKeys: [String: [Int64]]?
        /// Whether the live database already holds the backup's content: every table's rows
        /// compared and equal, the schema and the header's versions the same.
        public var holdsBackup = false
    }

    /// What a restore into the live database did.
    public struct LiveResult: Sendable {
        /// The `pre_restore` snapshot: exactly the state the restore replaced.
        public let saved: BackupEntry
        /// True when no other connection committed between the preview's read transaction
        /// and the write lock, so the preview's counts are exactly what was discarded.
        public let previewExact: Bool
        /// How long other connections could not write: from the write lock to the commit.
        public let writeLockMilliseconds: Double
        public let proof: Proof
    }

    /// The proof that the live database holds the backup after a restore.
    public enum Proof: Sendable {
        /// Every page is identical to the backup's.
        case identical(pages: Int)
        /// A row restore (`restoreByRows`): the `rows` rewritten in `tables` tables, the internal
        /// tables, the header's versions and the schema equal the backup's; every other row was
        /// proven equal by the page comparison before the restore.
        case rows(rows: Int, tables: Int)
        /// Another connection committed to the restored database before the proof could read
        /// it: equality can no longer be shown (nor is it expected).
        case overtaken
        /// Pages differ, and nobody else committed: the restore is wrong.
        case differs(pages: Int, of: Int)
        /// After a row restore, rows differ (counted on both sides) and nobody else committed.
        case rowsDiffer(rows: Int)
    }

    /// Restores `backup` into the live database `live` as one critical section: takes the
    /// write lock (`HeldBackup.lock`), saves the live state as a snapshot through `saving`
    /// (WAL: read by a second connection, which readers may still be; rollback journal: the
    /// locked file's bytes), runs `beforeCommit` (a throw there aborts: the live database is
    /// untouched and the saved copy removed), commits the restore in one transaction, then
    /// proves every page equals the backup's in the first read transaction after the commit.
    /// No commit of another connection can fall between the saved state and the restore.
    ///
    /// `live` must have no open transaction; when it read the preview, `previewVersion` is its
    /// `dataVersion` after that read.
    /// - Throws: `SQLiteError` (`.temporary` when the write lock is not had within the busy
    ///   timeout); `Failure` `.cannotCreate` for a read-only database, `.io` for a full disk.
    ///   Whatever is thrown, the live database is as it was; when the commit itself failed
    ///   this was checked page by page, and `.unproven` is thrown if it is not.
    public func restore(_ backup: OpenedBackup, intoLive live: Connection, previewVersion: UInt32?, rowKeys: [String: [Int64]]? = nil,
                        saving request: SnapshotRequest, in store: BackupStore, progress: @escaping ProgressHandler = { _ in },
                        stop: (@Sendable () -> Bool)? = nil, beforeCommit: () throws -> Void) throws -> LiveResult {
        guard !live.isReadOnly else {
            throw Failure(.restoreLiveReadOnly, "the live database \(live.path) is read-only for this user; nothing was changed",
                          hint: "run as the database's owner, or make the file and its folder writable")
        }
        let bytes = (try live.scalar("PRAGMA page_count").int ?? 0) * (try live.scalar("PRAGMA page_size").int ?? 0)
        if let minimum = rowRestoreMinimumBytes, let rowKeys, let previewVersion, bytes >= minimum,
           rowKeys.values.reduce(0, { $0 + $1.count }) <= (minimum == 0 ? Self.rowRestoreMaximumRows : Self.rowRestoreLimit(bytes: bytes)),
           let result = try restoreByRows(backup, intoLive: live, keys: rowKeys, previewVersion: previewVersion, saving: request,
                                          in: store, progress: progress, stop: stop, beforeCommit: beforeCommit) {
            return result
        }
        let source = try Connection(path: backup.databasePath, mode: .immutable)
        let held = try HeldBackup(from: source, into: live)
        try held.lock(timeout: busyTimeout)
        let locked = ContinuousClock.now
        let previewExact = previewVersion == live.dataVersion
        var published: BackupEntry?
        let wal: Bool
        do {
            wal = try live.readFileBytes(at: 18, count: 2).first == 2
            progress(.working(.savingPreRestore))
            let snapshotter = Snapshotter(store: store)
            if wal {
                // A second connection reads the committed state while the restore's pages go
                // into the WAL uncommitted, one core each; the commit waits for the saved copy.
                // A signal stops either copy between steps (the commit is not reached).
                // The reader is opened on the thread that uses it.
                let (livePath, timeout) = (live.path, busyTimeout)
                let (copied, saved) = try Parallel.both({ Result { try held.copyAllButLastPage(timeout: timeout, stop: stop) } }, elsewhere: {
                    Result {
                        let reader = try Connection(path: livePath, mode: .inspect, busyTimeout: timeout)
                        reader.stopWhen(stop)
                        return try snapshotter.snapshot(request) { path in try reader.copy(into: path, timeout: timeout, durable: true) }
                    }
                })
                // A copy saved is removed below when the other side failed; its failure first.
                published = try? saved.get()
                _ = try saved.get()
                try copied.get()
            } else {
                // EXCLUSIVE lock: the file is the committed database. Copied before any page
                // of the restore is written, since the pager may spill pages into the file.
                published = try snapshotter.snapshot(request, progress: progress) { path in
                    let fd = open(path, O_WRONLY | O_CLOEXEC)
                    guard fd >= 0 else { throw DurableFile.posixFailure("cannot open \(path)", errno) }
                    defer { close(fd) }
                    _ = try live.copyFileBytes(into: fd, outputPath: path)
                    return nil
                }
            }
        } catch {
            held.abort()
            if let published { try? store.remove([published]) }
            throw error
        }
        let saved = published!
        do {
            try beforeCommit()
        } catch {
            held.abort()
            try? store.remove([saved])
            throw error
        }
        progress(.working(.restoringPages))
        do {
            try held.commit(timeout: busyTimeout)
        } catch let error as DeployctlError {
            throw rolledBack(error, live: live, saved: saved, store: store)
        }
        let blocked = ContinuousClock.now - locked
        progress(.working(.provingRestore))
        let proof = try proveRestored(live, equals: backup, checkpointing: wal)
        progress(.ended(announce: true))
        return LiveResult(saved: saved, previewExact: previewExact,
                          writeLockMilliseconds: blocked.milliseconds,
                          proof: proof)
    }

    /// The failure for a restore whose commit failed: the live database is checked page by
    /// page against `saved`, the copy taken just before; when equal the copy is removed and the
    /// cause's kind kept, else `.unproven` naming the copy to put back.
    func rolledBack(_ error: DeployctlError, live: Connection, saved: BackupEntry, store: BackupStore) -> Failure {
        let unchanged = try? Connection(path: live.path, mode: .inspect, busyTimeout: busyTimeout)
            .comparePages(with: saved.path, timeout: busyTimeout).identical
        guard unchanged == true else {
            return Failure(.restoreUnproven, "\(error.message)\nThe live database may be partly restored: it no longer equals \(saved.name), the copy saved just before.",
                           hint: "do not start the application; put the saved copy back: deployctl restore \(store.instance ?? store.stem) \(saved.name) --yes")
        }
        try? store.remove([saved])
        return Failure(error.kind == .unproven ? .restoreRolledBack : error.code,
                       "\(error.message)\nThe restore was rolled back: the live database is as it was (every page equals \(saved.name)).",
                       hint: error.hint)
    }

    /// The proof after a live restore, in `live`'s first read transaction after its commit:
    /// every page is compared with the backup's. Pages that differ prove the restore wrong only
    /// when the data version shows no other connection committed since. With `checkpointing` (WAL), a second connection copies the
    /// restore's frames into the database file meanwhile, on the other core (a reader does not
    /// stop that; it only keeps the WAL from being reset), which the last connection to close
    /// would otherwise do afterwards.
    private func proveRestored(_ live: Connection, equals backup: OpenedBackup, checkpointing: Bool) throws -> Proof {
        let committed = live.dataVersion
        try live.execute("BEGIN")
        defer { try? live.execute("COMMIT") }
        _ = try live.scalar("SELECT count(*) FROM sqlite_schema")
        // A changed data version may be another connection's commit, or only this pager
        // starting afresh (a restore that changed the page size): the pages decide.
        let overtaken = live.dataVersion != committed
        let path = live.path
        let (differences, _) = try Parallel.both({ try live.comparePages(with: backup.databasePath, timeout: busyTimeout) }, elsewhere: {
            // Best effort: a checkpoint that cannot run now is done by the next one.
            if checkpointing { try? Connection(path: path, mode: .readWrite, busyTimeout: .zero).execute("PRAGMA wal_checkpoint(PASSIVE)") }
        })
        if differences.identical { return .identical(pages: differences.pageCount) }
        return overtaken ? .overtaken : .differs(pages: differences.pages.count, of: differences.referencePageCount)
    }
}
