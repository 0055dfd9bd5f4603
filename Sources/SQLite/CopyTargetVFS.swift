import CSQLite
import Foundation

/// A VFS (https://sqlite.org/vfs.html) for one brand-new file that SQLite fills from start to end,
/// such as the destination of an online backup: page writes at consecutive offsets are gathered
/// into 8 MiB writes instead of one `pwrite` per page.
///
/// Why: the backup API writes one page per syscall; on a 1 GiB database that is 262,144 writes and
/// most of the copy's time. Every other file SQLite opens through this VFS (a journal, a temp file)
/// goes to the default VFS unchanged.
///
/// Guarantees and limits:
/// - Reads and size queries see buffered data (the buffer is written out first).
/// - `xSync` writes the buffer out but does not `fsync`: durability is the caller's, who fsyncs
///   the finished file before publishing it (`DurableFile.syncFile`).
/// - The file is private (created by the caller under a hidden temp name), so locks are no-ops.
/// - The file is stored in rollback-journal mode: when page 1 is written, its file-format bytes
///   (offsets 18 and 19) are set to 1, exactly as `PRAGMA journal_mode = DELETE` would afterwards,
///   so a WAL source's copy never needs `-wal`/`-shm` files and page 1 is written once.
/// - The first write error (with its `errno`) is kept in `writeError`; SQLite sees `SQLITE_FULL`
///   or `IOError.write`.
///
/// Keep the instance alive until every connection opened with `name` is closed.
package final class CopyTargetVFS {
    /// The name to pass to `sqlite3_open_v2` (see `Connection.init(path:mode:busyTimeout:vfs:)`).
    package let name: String
    /// Our `sqlite3_vfs`, followed by a pointer back to this object: the copied default VFS keeps
    /// its own `pAppData`, which the unix VFS needs.
    private let vfs: UnsafeMutableRawPointer
    private let methods: UnsafeMutablePointer<sqlite3_io_methods>
    private let nameStorage: UnsafeMutablePointer<CChar>
    fileprivate let base: UnsafeMutablePointer<sqlite3_vfs>
    fileprivate let lock = NSLock()
    fileprivate var firstError: (path: String, errno: Int32)?

    /// How many bytes are gathered before one write.
    static let bufferSize = 8 << 20

    /// The file and `errno` of the first failed write or open, or nil.
    package var writeError: (path: String, errno: Int32)? {
        lock.lock(); defer { lock.unlock() }
        return firstError
    }

    /// Registers a new uniquely named VFS layered on the default one.
    /// - Throws: `SQLiteError` when SQLite has no default VFS or refuses the registration.
    package init() throws {
        guard let base = sqlite3_vfs_find(nil) else {
            throw SQLiteError(code: SQLITE_ERROR, message: "SQLite has no default VFS", context: "vfs")
        }
        self.base = base
        name = "deployctl-copy-\(UUID().uuidString)"
        nameStorage = strdup(name)!
        methods = .allocate(capacity: 1)
        methods.initialize(to: CopyTargetVFS.ioMethods())
        vfs = .allocate(byteCount: Self.contextOffset + MemoryLayout<UnsafeRawPointer>.size,
                        alignment: MemoryLayout<sqlite3_vfs>.alignment)
        var copy = base.pointee
        copy.zName = UnsafePointer(nameStorage)
        copy.pNext = nil
        copy.szOsFile = max(base.pointee.szOsFile, Int32(CopyTargetFile.size))
        copy.xOpen = copyTargetOpen
        vfs.initializeMemory(as: sqlite3_vfs.self, repeating: copy, count: 1)
        vfs.storeBytes(of: Unmanaged.passUnretained(self).toOpaque(), toByteOffset: Self.contextOffset,
                       as: UnsafeMutableRawPointer.self)
        let rc = sqlite3_vfs_register(vfs.assumingMemoryBound(to: sqlite3_vfs.self), 0)
        guard rc == SQLITE_OK else {
            free(nameStorage); methods.deallocate(); vfs.deallocate()
            throw SQLiteError(code: rc, message: "cannot register the copy VFS", context: name)
        }
    }

    deinit {
        sqlite3_vfs_unregister(vfs.assumingMemoryBound(to: sqlite3_vfs.self))
        vfs.deallocate()
        methods.deallocate()
        free(nameStorage)
    }

    static let contextOffset = MemoryLayout<sqlite3_vfs>.stride

    /// The `CopyTargetVFS` that registered `vfs`.
    fileprivate static func owner(of vfs: UnsafeMutablePointer<sqlite3_vfs>) -> CopyTargetVFS {
        let raw = UnsafeMutableRawPointer(vfs).load(fromByteOffset: contextOffset, as: UnsafeMutableRawPointer.self)
        return Unmanaged<CopyTargetVFS>.fromOpaque(raw).takeUnretainedValue()
    }

    fileprivate var ioMethodsPointer: UnsafePointer<sqlite3_io_methods> { UnsafePointer(methods) }

    fileprivate func record(path: String, errno code: Int32) {
        lock.lock(); defer { lock.unlock() }
        if firstError == nil { firstError = (path, code) }
    }

    /// Version 1 methods: no shared memory (never WAL) and no memory-mapped I/O.
    private static func ioMethods() -> sqlite3_io_methods {
        sqlite3_io_methods(
        iVersion: 1,
        xClose: { file in
            guard let writer = CopyTargetFile.writer(file) else { return SQLITE_OK }
            let rc = writer.flush()
            writer.closeFile()
            CopyTargetFile.release(file)
            return rc
        },
        xRead: { file, buffer, amount, offset in
            CopyTargetFile.writer(file)!.read(into: buffer!, count: Int(amount), at: offset)
        },
        xWrite: { file, buffer, amount, offset in
            CopyTargetFile.writer(file)!.write(buffer!, count: Int(amount), at: offset)
        },
        xTruncate: { file, size in CopyTargetFile.writer(file)!.truncate(to: size) },
        xSync: { file, _ in CopyTargetFile.writer(file)!.flush() },
        xFileSize: { file, size in
            let writer = CopyTargetFile.writer(file)!
            let rc = writer.flush()
            guard rc == SQLITE_OK else { return rc }
            var info = stat()
            guard fstat(writer.fd, &info) == 0 else { return IOError.fstat }
            size!.pointee = sqlite3_int64(info.st_size)
            return SQLITE_OK
        },
        xLock: { _, _ in SQLITE_OK },
        xUnlock: { _, _ in SQLITE_OK },
        xCheckReservedLock: { _, result in result!.pointee = 0; return SQLITE_OK },
        xFileControl: { _, _, _ in SQLITE_NOTFOUND },
        xSectorSize: { _ in 4096 },
        xDeviceCharacteristics: { _ in 0 },
        xShmMap: nil, xShmLock: nil, xShmBarrier: nil, xShmUnmap: nil, xFetch: nil, xUnfetch: nil)
    }
}

/// The `sqlite3_file` SQLite allocates for us (`szOsFile` bytes): the methods pointer, then a
/// retained pointer to our writer.
private enum CopyTargetFile {
    static let writerOffset = MemoryLayout<sqlite3_file>.stride
    static let size = writerOffset + MemoryLayout<UnsafeRawPointer>.size

    static func writer(_ file: UnsafeMutablePointer<sqlite3_file>?) -> BufferedPageWriter? {
        guard let file, let raw = UnsafeMutableRawPointer(file).load(fromByteOffset: writerOffset, as: UnsafeMutableRawPointer?.self) else {
            return nil
        }
        return Unmanaged<BufferedPageWriter>.fromOpaque(raw).takeUnretainedValue()
    }

    static func attach(_ writer: BufferedPageWriter, methods: UnsafePointer<sqlite3_io_methods>, to file: UnsafeMutablePointer<sqlite3_file>) {
        file.pointee.pMethods = methods
        UnsafeMutableRawPointer(file).storeBytes(of: Unmanaged.passRetained(writer).toOpaque(), toByteOffset: writerOffset,
                                                 as: UnsafeMutableRawPointer?.self)
    }

    static func release(_ file: UnsafeMutablePointer<sqlite3_file>?) {
        guard let file, let raw = UnsafeMutableRawPointer(file).load(fromByteOffset: writerOffset, as: UnsafeMutableRawPointer?.self) else {
            return
        }
        Unmanaged<BufferedPageWriter>.fromOpaque(raw).release()
        UnsafeMutableRawPointer(file).storeBytes(of: nil, toByteOffset: writerOffset, as: UnsafeMutableRawPointer?.self)
    }
}

private func copyTargetOpen(_ vfs: UnsafeMutablePointer<sqlite3_vfs>?, _ path: sqlite3_filename?,
                            _ file: UnsafeMutablePointer<sqlite3_file>?, _ flags: Int32,
                            _ outFlags: UnsafeMutablePointer<Int32>?) -> Int32 {
    let owner = CopyTargetVFS.owner(of: vfs!)
    guard flags & SQLITE_OPEN_MAIN_DB != 0, let path else {
        return owner.base.pointee.xOpen(owner.base, path, file, flags, outFlags)
    }
    let name = String(cString: path)
    let fd = open(name, O_RDWR | O_CLOEXEC)
    guard fd >= 0 else {
        file?.pointee.pMethods = nil
        owner.record(path: name, errno: errno)
        return SQLITE_CANTOPEN
    }
    let writer = BufferedPageWriter(fd: fd, path: name, owner: owner)
    CopyTargetFile.attach(writer, methods: owner.ioMethodsPointer, to: file!)
    outFlags?.pointee = flags
    return SQLITE_OK
}

/// Gathers writes at consecutive offsets into one buffer and writes it out when it is full, when
/// a write is not consecutive, or before any read, size query, truncate or sync.
private final class BufferedPageWriter {
    let fd: Int32
    let path: String
    unowned let owner: CopyTargetVFS
    let buffer = UnsafeMutableRawPointer.allocate(byteCount: CopyTargetVFS.bufferSize, alignment: 4096)
    var bufferOffset: Int64 = 0
    var buffered = 0

    init(fd: Int32, path: String, owner: CopyTargetVFS) {
        self.fd = fd
        self.path = path
        self.owner = owner
    }

    deinit { buffer.deallocate() }

    func closeFile() { close(fd) }

    func write(_ source: UnsafeRawPointer, count: Int, at offset: Int64) -> Int32 {
        if offset == 0 && count >= 20 {
            // Stored in rollback-journal mode: see the type's documentation.
            let page = UnsafeMutableRawPointer.allocate(byteCount: count, alignment: 16)
            defer { page.deallocate() }
            page.copyMemory(from: source, byteCount: count)
            page.storeBytes(of: 1, toByteOffset: 18, as: UInt8.self)
            page.storeBytes(of: 1, toByteOffset: 19, as: UInt8.self)
            return append(page, count: count, at: offset)
        }
        return append(source, count: count, at: offset)
    }

    private func append(_ source: UnsafeRawPointer, count: Int, at offset: Int64) -> Int32 {
        if buffered > 0 && (offset != bufferOffset + Int64(buffered) || buffered + count > CopyTargetVFS.bufferSize) {
            let rc = flush()
            guard rc == SQLITE_OK else { return rc }
        }
        if count > CopyTargetVFS.bufferSize { return writeFully(source, count: count, at: offset) }
        if buffered == 0 { bufferOffset = offset }
        (buffer + buffered).copyMemory(from: source, byteCount: count)
        buffered += count
        return SQLITE_OK
    }

    func flush() -> Int32 {
        guard buffered > 0 else { return SQLITE_OK }
        let rc = writeFully(buffer, count: buffered, at: bufferOffset)
        buffered = 0
        return rc
    }

    private func writeFully(_ source: UnsafeRawPointer, count: Int, at offset: Int64) -> Int32 {
        var done = 0
        while done < count {
            let n = pwrite(fd, source + done, count - done, off_t(offset) + off_t(done))
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else {
                let code = n < 0 ? errno : ENOSPC
                owner.record(path: path, errno: code)
                return code == ENOSPC || code == EDQUOT ? SQLITE_FULL : IOError.write
            }
            done += n
        }
        return SQLITE_OK
    }

    func read(into destination: UnsafeMutableRawPointer, count: Int, at offset: Int64) -> Int32 {
        let rc = flush()
        guard rc == SQLITE_OK else { return rc }
        var done = 0
        while done < count {
            let n = pread(fd, destination + done, count - done, off_t(offset) + off_t(done))
            if n < 0 && errno == EINTR { continue }
            if n < 0 { return IOError.read }
            if n == 0 {
                (destination + done).initializeMemory(as: UInt8.self, repeating: 0, count: count - done)
                return IOError.shortRead
            }
            done += n
        }
        return SQLITE_OK
    }

    func truncate(to size: Int64) -> Int32 {
        let rc = flush()
        guard rc == SQLITE_OK else { return rc }
        return ftruncate(fd, off_t(size)) == 0 ? SQLITE_OK : IOError.truncate
    }
}

/// SQLite's extended I/O result codes (C macros Swift cannot see; https://sqlite.org/rescode.html).
private enum IOError {
    static let read = SQLITE_IOERR | (1 << 8)
    static let shortRead = SQLITE_IOERR | (2 << 8)
    static let write = SQLITE_IOERR | (3 << 8)
    static let truncate = SQLITE_IOERR | (6 << 8)
    static let fstat = SQLITE_IOERR | (7 << 8)
}
