import CSQLite
import Foundation
import Support

extension Connection {
    /// Copies this whole database into `destination` with SQLite's online backup API
    /// (https://sqlite.org/backup.html).
    ///
    /// The copy is taken in one `sqlite3_backup_step(-1)`: one read transaction on the source,
    /// so it is a consistent snapshot and completes even while another process commits every few
    /// milliseconds in WAL mode (stepping in small batches restarts on every foreign commit).
    /// Writing into a live destination is one write transaction there: all or nothing.
    /// BUSY/LOCKED are retried until `timeout`.
    /// - Throws: `SQLiteError` (`.temporary` kind when the lock was never had).
    public func backup(into destination: Connection, timeout: Duration = .seconds(5)) throws {
        guard let backup = sqlite3_backup_init(destination.handle, "main", handle, "main") else {
            let rc = sqlite3_errcode(destination.handle)
            throw destination.error(rc, sql: "backup into \(destination.path)")
        }
        let deadline = ContinuousClock.now + timeout
        var rc: Int32
        repeat {
            rc = sqlite3_backup_step(backup, -1)
            if rc == SQLITE_BUSY || rc == SQLITE_LOCKED {
                if ContinuousClock.now > deadline { break }
                usleep(20_000)
            }
        } while rc == SQLITE_OK || rc == SQLITE_BUSY || rc == SQLITE_LOCKED
        let finish = sqlite3_backup_finish(backup)
        if rc != SQLITE_DONE {
            throw SQLiteError(code: rc, message: String(cString: sqlite3_errstr(rc)),
                              sql: "backup \(path) into \(destination.path)", context: destination.path)
        }
        if finish != SQLITE_OK { throw destination.error(finish, sql: "backup into \(destination.path)") }
    }
}

extension Connection {
    /// Lets SQLite read this database through `mmap` (https://sqlite.org/mmap.html) instead of
    /// one `pread` per page. SQLite maps only pages of the snapshot its read transaction sees,
    /// which its locking keeps from being truncated away; an I/O error becomes SIGBUS instead of
    /// `SQLITE_IOERR`, so use it for reading only.
    /// - Throws: `SQLiteError`.
    public func useMemoryMappedReads() throws {
        try execute("PRAGMA mmap_size = \(Int64(1) << 40)")
    }

    /// Copies this whole database, as one read transaction sees it, into the empty file at
    /// `path` (which the caller created), stored in rollback-journal mode so that opening the
    /// copy never needs `-wal`/`-shm` files. Not fsynced: the caller does that when it keeps it.
    ///
    /// Where the time goes: the backup API reads and writes one page per syscall. This database
    /// is read through `mmap` (SQLite maps only pages of the snapshot it reads, which no
    /// checkpoint or truncation can remove while its read transaction is open) and the copy is
    /// written through `CopyTargetVFS`, which gathers the pages into 8 MiB writes.
    /// - Throws: `Failure` `.io` with the `errno` of a failed write (ENOSPC for a full disk);
    ///   `SQLiteError`.
    public func copy(into path: String, timeout: Duration) throws {
        try backup(into: path, through: try CopyTargetVFS(), pragmas: "PRAGMA journal_mode = OFF; PRAGMA synchronous = NORMAL",
                   timeout: timeout, failing: "cannot write")
    }

    /// Runs the backup API, reading this database through `mmap`, into `path` opened through
    /// `vfs`. A failed read or write inside the VFS is reported with its `errno` (a full disk is
    /// ENOSPC), not as SQLite's result code.
    func backup(into path: String, through vfs: CopyTargetVFS, pragmas: String, timeout: Duration, failing verb: String) throws {
        try useMemoryMappedReads()
        do {
            let destination = try Connection(path: path, mode: .create, vfs: vfs.name)
            try destination.execute(pragmas)
            try backup(into: destination, timeout: timeout)
        } catch {
            if let failure = vfs.writeError { throw DurableFile.posixFailure("\(verb) \(failure.path)", failure.errno) }
            throw error
        }
        if let failure = vfs.writeError { throw DurableFile.posixFailure("\(verb) \(failure.path)", failure.errno) }
    }
}
