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
        // With `stopWhen` set and a read transaction open here (its snapshot cannot change
        // between steps, so the backup never restarts), copy 2048 pages a step and ask between
        // steps: a Ctrl-C during a 1 GiB copy stops it within a fraction of a second. Else one
        // step, as one read transaction of the backup's own.
        let stop = sqlite3_txn_state(handle, "main") >= SQLITE_TXN_READ ? stopBox?.stop : nil
        let pages: Int32 = stop == nil ? -1 : 2048
        var rc: Int32
        repeat {
            if let stop, stop() {
                rc = SQLITE_INTERRUPT
                break
            }
            rc = sqlite3_backup_step(backup, pages)
            if rc == SQLITE_BUSY || rc == SQLITE_LOCKED {
                if ContinuousClock.now > deadline { break }
                usleep(20_000)
            }
        } while rc == SQLITE_OK || rc == SQLITE_BUSY || rc == SQLITE_LOCKED
        let finish = sqlite3_backup_finish(backup)
        if rc != SQLITE_DONE {
            // Locked: the source (every destination here is a file of deployctl's own).
            let locked = rc & 0xff == SQLITE_BUSY || rc & 0xff == SQLITE_LOCKED
            throw SQLiteError(code: rc, message: String(cString: sqlite3_errstr(rc)),
                              sql: "backup \(path) into \(destination.path)", context: locked ? path : destination.path)
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
    /// `progress` is told the bytes written and the database's size as the copy goes. With
    /// `durable` (a copy the caller will fsync, hash and keep) the disk starts writing each
    /// 8 MiB as it is written, so the caller's fsync finds little left to do, and the copy's
    /// size and SHA-256 are computed on the other core as it is written and returned (nil
    /// when they could not be: the caller hashes the file; see `WrittenFileDigest`).
    /// `following` is given a `CopyFollower` before the copy starts, when the copy's page 1 could
    /// be predicted, so that another thread can read the copy as it is written.
    @discardableResult
    public func copy(into path: String, timeout: Duration, durable: Bool = false, following: ((CopyFollower) -> Void)? = nil,
                     progress: ((_ done: Int64, _ total: Int64) -> Void)? = nil) throws -> WrittenDigest? {
        // Optional reads, which never wait for a lock: the backup alone spends the busy timeout.
        var firstPage: [UInt8]?
        var began = false
        let total = try withoutWaitingForLocks {
            // For progress only: the copy itself is of what its read transaction sees.
            let total = progress == nil ? 0
                : ((try? scalar("PRAGMA page_count").int) ?? 0) * ((try? scalar("PRAGMA page_size").int) ?? 0)
            if durable || following != nil {
                // The read transaction the backup copies (it uses an open one), held from before
                // page 1 is predicted from it. Without it, the copy goes on without a digest.
                try useMemoryMappedReads()
                began = !inTransaction && (try? execute("BEGIN")) != nil
                firstPage = predictedBackupFirstPage()
            }
            return total
        }
        defer { if began { try? execute("COMMIT") } }
        let tracker = firstPage.map { WrittenFileDigest(expectedFirstPage: $0, hashing: durable) }
        defer { tracker?.endUnlessFinished() }
        if let tracker, let following { following(CopyFollower(tracker)) }
        // Page 1 is written last: report the furthest offset so far, never going back.
        var furthest: Int64 = 0
        let vfs = try CopyTargetVFS(written: progress.map { report in
            { done in
                furthest = max(furthest, done)
                report(furthest, max(total, furthest))
            }
        }, startsWriteback: durable, following: tracker)
        try backup(into: path, through: vfs, pragmas: "PRAGMA journal_mode = OFF; PRAGMA synchronous = NORMAL",
                   timeout: timeout, failing: "cannot write")
        return vfs.writtenDigest
    }

    /// The page 1 a backup of this database into a new empty file ends with, read from the
    /// snapshot of this connection's read transaction (started here when a transaction is
    /// open without one), or nil when it cannot be read.
    ///
    /// It is the snapshot's page 1 (the WAL's newest committed frame of page 1, else the
    /// database file's) with the header fields the backup sets: the file-format bytes 18-19
    /// to 1 (`CopyTargetVFS` stores copies in rollback-journal mode), the change counter and
    /// version-valid-for to 1 and the schema cookie to 1 (a new file's 0, plus one), the
    /// in-header size to the page count and the SQLite version number to this library's.
    /// A guess: SQLite's backup could set other values, or a writer could commit a new page 1
    /// after this snapshot; `WrittenFileDigest` compares it with the page 1 actually written.
    func predictedBackupFirstPage() -> [UInt8]? {
        guard let size = try? scalar("PRAGMA page_size").int, let pages = try? scalar("PRAGMA page_count").int,
              size >= 512, size <= 65536, pages > 0,
              var page = newestCommittedWALFirstPage(pageSize: Int(size)) ?? (try? readFileBytes(at: 0, count: Int(size))),
              page.count == Int(size) else {
            return nil
        }
        func put(_ value: UInt32, at offset: Int) {
            for i in 0..<4 { page[offset + i] = UInt8(truncatingIfNeeded: value >> (24 - 8 * i)) }
        }
        page[18] = 1
        page[19] = 1
        put(1, at: 24)
        put(UInt32(truncatingIfNeeded: pages), at: 28)
        put(1, at: 40)
        put(1, at: 92)
        put(UInt32(bitPattern: sqlite3_libversion_number()), at: 96)
        return page
    }

    /// The newest frame of page 1 in this database's WAL that a commit frame of the same WAL
    /// generation follows (or is), read through SQLite's own open WAL file (the WAL format:
    /// https://sqlite.org/fileformat.html#the_write_ahead_log); nil when there is no WAL or
    /// no such frame.
    private func newestCommittedWALFirstPage(pageSize: Int) -> [UInt8]? {
        guard let (file, methods) = openFile(SQLITE_FCNTL_JOURNAL_POINTER) else { return nil }
        func read(_ count: Int, at offset: Int64) -> [UInt8]? {
            let (bytes, rc) = Self.read(file, methods, count: count, at: offset)
            return rc == SQLITE_OK ? bytes : nil
        }
        func word(_ bytes: [UInt8], _ offset: Int) -> UInt32 {
            bytes[offset..<offset + 4].reduce(0) { $0 << 8 | UInt32($1) }
        }
        var walSize: sqlite3_int64 = 0
        guard methods.xFileSize(file, &walSize) == SQLITE_OK, let header = read(32, at: 0),
              word(header, 0) & ~1 == 0x377f_0682, Int(word(header, 8)) == (pageSize == 65536 ? 1 : pageSize) else {
            return nil
        }
        // Frame headers are read about 1 MiB of frames at a time (one read per frame was 0.25 s
        // for a 160 MB WAL of 512-byte pages).
        let frameSize = 24 + pageSize
        let framesPerRead = max(1, (1 << 20) / frameSize)
        var pending: Int64?
        var committed: Int64?
        var offset: Int64 = 32
        scan: while offset + Int64(frameSize) <= walSize {
            let frames = Int(min(Int64(framesPerRead), (Int64(walSize) - offset) / Int64(frameSize)))
            guard let chunk = read(frames * frameSize, at: offset) else { break }
            for frame in stride(from: 0, to: frames * frameSize, by: frameSize) {
                guard word(chunk, frame + 8) == word(header, 16), word(chunk, frame + 12) == word(header, 20) else { break scan }
                if word(chunk, frame) == 1 { pending = offset }
                if word(chunk, frame + 4) != 0 { committed = pending ?? committed }
                offset += Int64(frameSize)
            }
        }
        return committed.flatMap { read(pageSize, at: $0 + 24) }
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

/// An online backup into this process's live database that is held open between its steps, so
/// that work can be done while the destination's write lock is held (https://sqlite.org/c3ref/backup_finish.html).
///
/// Why: a restore must save the live state and replace it with no application commit in
/// between. A connection inside `BEGIN IMMEDIATE` cannot be a backup destination, but
/// `sqlite3_backup_step(b, 0)` takes the destination's write lock (rollback journal: EXCLUSIVE;
/// WAL: the WAL write lock, readers go on) and keeps it until the backup is finished.
///
/// Guarantees: between `lock` and `commit` no other connection commits to the destination;
/// `commit` replaces its content in one transaction; `abort` (or deinit) before `commit` rolls
/// back, leaving it as it was. The destination connection must not be used for anything else
/// until the backup is finished.
public final class HeldBackup {
    private let backup: OpaquePointer
    /// The live database written to.
    public let destination: Connection
    private let source: Connection
    private var finished = false

    /// Starts a backup of `source` (read through `mmap`) into `destination`; takes no lock yet.
    /// - Throws: `SQLiteError` (e.g. the destination has an open transaction).
    public init(from source: Connection, into destination: Connection) throws {
        try source.useMemoryMappedReads()
        guard let backup = sqlite3_backup_init(destination.handle, "main", source.handle, "main") else {
            throw destination.error(sqlite3_errcode(destination.handle), sql: "backup into \(destination.path)")
        }
        self.backup = backup
        self.source = source
        self.destination = destination
    }

    /// Takes the destination's write lock and keeps it, retrying while another connection has
    /// it, up to `timeout`.
    /// - Throws: `SQLiteError` (`.temporary` kind when the lock was not had in time;
    ///   `SQLITE_READONLY` for a file that cannot be written).
    public func lock(timeout: Duration) throws {
        try step(0, timeout: timeout)
    }

    /// Copies every page but the last into the destination without committing: in WAL mode
    /// other connections go on reading the old content meanwhile (uncommitted frames are not
    /// visible to them). Needs `lock` first.
    /// - Throws: `SQLiteError`; the destination then stays as it was once aborted.
    /// With `stop`, 2048 pages at a time, asking between steps (the source is a file no one
    /// writes, so stepping never restarts): true throws `SQLITE_INTERRUPT`.
    public func copyAllButLastPage(timeout: Duration, stop: (() -> Bool)? = nil) throws {
        let pages = sqlite3_backup_pagecount(backup)
        guard pages > 1 else { return }
        guard let stop else { return try step(pages - 1, timeout: timeout) }
        var copied: Int32 = 0
        while copied < pages - 1 {
            if stop() { throw SQLiteError(code: SQLITE_INTERRUPT, message: "interrupted", context: destination.path) }
            let batch = min(2048, pages - 1 - copied)
            try step(batch, timeout: timeout)
            copied += batch
        }
    }

    /// Copies every (remaining) page and commits: the destination now holds the source's content.
    /// - Throws: `SQLiteError`; the destination then stays as it was (SQLite rolls back).
    public func commit(timeout: Duration) throws {
        try step(-1, timeout: timeout)
    }

    /// Ends the backup; before `commit`, this rolls the destination's transaction back.
    public func abort() {
        guard !finished else { return }
        finished = true
        sqlite3_backup_finish(backup)
    }

    deinit { abort() }

    private func step(_ pages: Int32, timeout: Duration) throws {
        precondition(!finished, "the backup is finished")
        let deadline = ContinuousClock.now + timeout
        var rc: Int32
        repeat {
            rc = sqlite3_backup_step(backup, pages)
            if rc == SQLITE_BUSY || rc == SQLITE_LOCKED {
                if ContinuousClock.now > deadline { break }
                usleep(10_000)
                continue
            }
            break
        } while true
        if pages < 0 {
            guard rc == SQLITE_DONE else {
                abort()
                throw SQLiteError(code: rc, message: String(cString: sqlite3_errstr(rc)),
                                  sql: "restore into \(destination.path)", context: destination.path)
            }
            finished = true
            let finish = sqlite3_backup_finish(backup)
            if finish != SQLITE_OK { throw destination.error(finish, sql: "restore into \(destination.path)") }
            return
        }
        guard rc == SQLITE_OK || rc == SQLITE_DONE else {
            throw SQLiteError(code: rc, message: String(cString: sqlite3_errstr(rc)),
                              sql: "write lock on \(destination.path)", context: destination.path)
        }
    }
}

extension Connection {
    /// SQLite's data version of `main` (`SQLITE_FCNTL_DATA_VERSION`,
    /// https://sqlite.org/c3ref/c_fcntl_begin_atomic_write.html): it changes whenever this
    /// connection notices a commit by any connection, its own or another process's. Read it
    /// after a transaction and again inside a later one: equal values mean nobody committed in
    /// between.
    public var dataVersion: UInt32 {
        var version: UInt32 = 0
        sqlite3_file_control(handle, "main", SQLITE_FCNTL_DATA_VERSION, &version)
        return version
    }

    /// Whether `main` was opened read-only (a write-protected file opened read-write is).
    public var isReadOnly: Bool { sqlite3_db_readonly(handle, "main") == 1 }

    /// Copies the main database file's bytes as they are on disk into `fd` (see
    /// `readFileBytes`). Call it while this connection holds the EXCLUSIVE lock of a
    /// rollback-journal database, when the file is the committed database. Returns the bytes
    /// copied.
    /// - Throws: `Failure` `.io` naming `outputPath` or this database.
    public func copyFileBytes(into fd: Int32, outputPath: String) throws -> Int64 {
        let size = try fileSize()
        let chunk = 8 << 20
        var offset: Int64 = 0
        while offset < size {
            let bytes = try readFileBytes(at: offset, count: Int(min(Int64(chunk), size - offset)))
            try bytes.withUnsafeBytes { try DurableFile.writeAll(fd: fd, $0, path: outputPath) }
            offset += Int64(bytes.count)
        }
        return Int64(size)
    }

    /// The main database file's size, through this connection's own open file.
    /// - Throws: `Failure` `.io`.
    func fileSize() throws -> Int64 {
        let (file, methods) = try mainFile()
        var size: sqlite3_int64 = 0
        guard methods.xFileSize(file, &size) == SQLITE_OK else { throw Failure(.sqliteIOError, "cannot read the size of \(path)") }
        return Int64(size)
    }

    /// `count` bytes of the main database file at `offset`, read through this connection's own
    /// open file (the VFS's `xRead`, https://sqlite.org/c3ref/io_methods.html). No new
    /// descriptor of the file is opened: closing one would silently drop every POSIX lock this
    /// process holds on it, SQLite's included.
    /// - Throws: `Failure` `.io`.
    public func readFileBytes(at offset: Int64, count: Int) throws -> [UInt8] {
        let (file, methods) = try mainFile()
        let (bytes, rc) = Self.read(file, methods, count: count, at: offset)
        guard rc == SQLITE_OK else { throw Failure(.sqliteIOError, "cannot read \(path) at offset \(offset) (SQLite error \(rc))") }
        return bytes
    }

    private func mainFile() throws -> (UnsafeMutablePointer<sqlite3_file>, sqlite3_io_methods) {
        guard let opened = openFile(SQLITE_FCNTL_FILE_POINTER) else { throw Failure(.sqliteIOError, "cannot reach the open file of \(path)") }
        return opened
    }

    /// SQLite's own open file of `main` (`SQLITE_FCNTL_FILE_POINTER`) or of its journal or WAL
    /// (`SQLITE_FCNTL_JOURNAL_POINTER`); nil when it is not open.
    private func openFile(_ which: Int32) -> (UnsafeMutablePointer<sqlite3_file>, sqlite3_io_methods)? {
        var pointer: UnsafeMutableRawPointer?
        guard sqlite3_file_control(handle, "main", which, &pointer) == SQLITE_OK,
              let file = pointer?.assumingMemoryBound(to: sqlite3_file.self),
              let methods = file.pointee.pMethods else { return nil }
        return (file, methods.pointee)
    }

    /// `count` bytes of `file` at `offset` through its `xRead`, and its result code (a short
    /// read is `SQLITE_IOERR_SHORT_READ`).
    private static func read(_ file: UnsafeMutablePointer<sqlite3_file>, _ methods: sqlite3_io_methods,
                     count: Int, at offset: Int64) -> (bytes: [UInt8], rc: Int32) {
        var bytes = [UInt8](repeating: 0, count: count)
        let rc = bytes.withUnsafeMutableBytes { methods.xRead(file, $0.baseAddress, Int32(count), offset) }
        return (bytes, rc)
    }
}
