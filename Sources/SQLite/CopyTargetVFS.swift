import CSQLite
import Foundation
import Support

/// A VFS (https://sqlite.org/vfs.html) for the destination of an online backup, a brand-new file
/// that SQLite fills from start to end: page writes at consecutive offsets are gathered into
/// 8 MiB writes instead of one `pwrite` per page. In comparing mode nothing is written at all:
/// every page SQLite would write is compared with the same page of a reference file.
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
/// - Given a `WrittenFileDigest` (the page 1 the copy will end with), the writes are followed:
///   hashed on another thread as they are written, or only tracked for a `CopyFollower`;
///   `writtenDigest` has the result once the file is closed.
///
/// In comparing mode (`init(comparingWith:)`) the main database file is virtual: writes are
/// compared with the reference file and the differing page numbers collected in
/// `differingPages`; reading written data back fails (a backup into an empty file never does).
/// The rows of differing table leaves are kept as digests up to `rowDigestBudget` rows (16 bytes
/// each); past it none are kept (`leafRowsComplete` false), so memory stays flat however much
/// of a large database differs, and the caller compares those tables by reading their rows.
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
    fileprivate let reference: String?
    fileprivate var differences = Set<Int>()
    fileprivate var differingContent = [Int: BTreePage]()
    fileprivate var differingRows = [Int: [RowDigest]]()
    fileprivate var digestedRows = 0
    fileprivate var rowsOverBudget = false
    /// The bytes of differing pages that are not b-tree pages (and of page 1), up to
    /// `rawPageBudget` pages: enough to walk the compared database's freelist.
    fileprivate var differingRaw = [Int: [UInt8]]()
    fileprivate var rawOverBudget = false
    static let rawPageBudget = 4096
    fileprivate var comparedSize: Int64 = 0
    /// Writing mode: told the end offset of each gathered write (pages arrive in order, so it
    /// is how far the copy has got).
    fileprivate let written: ((Int64) -> Void)?
    /// Writing mode: start the disk's writeback of each gathered write at once
    /// (`sync_file_range`), for a copy that will be fsynced: the caller's final `fsync` then
    /// waits for little more than the last writes, instead of the whole file.
    fileprivate let startsWriteback: Bool
    /// Writing mode: follows (and maybe hashes) the copy as it is written, when its page 1 was predicted.
    fileprivate let digest: WrittenFileDigest?
    fileprivate var digestResult: WrittenDigest?

    /// The most row digests kept in comparing mode.
    fileprivate let rowDigestBudget: Int

    /// How many bytes are gathered before one write.
    static let bufferSize = 8 << 20

    /// The file and `errno` of the first failed write or open, or nil.
    package var writeError: (path: String, errno: Int32)? {
        lock.lock(); defer { lock.unlock() }
        return firstError
    }

    /// Writing mode with a hashing `following`: the copy's size and SHA-256, computed from its
    /// writes, once it is closed; nil when they could not be (see `WrittenFileDigest`).
    package var writtenDigest: WrittenDigest? {
        lock.lock(); defer { lock.unlock() }
        return digestResult
    }

    /// Comparing mode: the page numbers (1-based) whose bytes differ from the reference file's,
    /// ignoring the page-1 header fields a backup rewrites (see `PageComparer`).
    package var differingPages: Set<Int> {
        lock.lock(); defer { lock.unlock() }
        return differences
    }

    /// Comparing mode: the size the virtual file would have, known once it is closed.
    package var comparedBytes: Int64 {
        lock.lock(); defer { lock.unlock() }
        return comparedSize
    }

    /// Registers a new uniquely named VFS layered on the default one; with `reference`, in
    /// comparing mode against that file.
    /// - Throws: `SQLiteError` when SQLite has no default VFS or refuses the registration.
    package init(comparingWith reference: String? = nil, rowDigestBudget: Int = 0,
                 written: ((Int64) -> Void)? = nil, startsWriteback: Bool = false, following: WrittenFileDigest? = nil) throws {
        self.reference = reference
        self.rowDigestBudget = rowDigestBudget
        self.written = written
        self.startsWriteback = startsWriteback
        digest = reference == nil ? following : nil
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

    private static let contextOffset = MemoryLayout<sqlite3_vfs>.stride

    /// The `CopyTargetVFS` that registered `vfs`.
    fileprivate static func owner(of vfs: UnsafeMutablePointer<sqlite3_vfs>) -> CopyTargetVFS {
        let raw = UnsafeMutableRawPointer(vfs).load(fromByteOffset: contextOffset, as: UnsafeMutableRawPointer.self)
        return Unmanaged<CopyTargetVFS>.fromOpaque(raw).takeUnretainedValue()
    }

    fileprivate var ioMethodsPointer: UnsafePointer<sqlite3_io_methods> { UnsafePointer(methods) }

    fileprivate func recordDifference(page: Int, content: UnsafeRawPointer, count: Int, reservedBytes: Int) {
        let bytes = UnsafeRawBufferPointer(start: content, count: count)
        let parsed = BTreePage(bytes, number: page)
        lock.lock(); defer { lock.unlock() }
        differences.insert(page)
        differingContent[page] = parsed
        if (parsed == .other || page == 1) && !rawOverBudget {
            differingRaw[page] = [UInt8](bytes)
            if differingRaw.count > Self.rawPageBudget {
                rawOverBudget = true
                differingRaw = [:]
            }
        }
        guard case .tableLeaf = parsed, !rowsOverBudget else { return }
        if let rows = BTreePage.rowDigests(bytes, number: page, usableSize: count - reservedBytes) {
            digestedRows += rows.count
            differingRows[page] = rows
        }
        if digestedRows > rowDigestBudget {
            rowsOverBudget = true
            differingRows = [:]
        }
    }

    /// Comparing mode: whether `differingLeafRows` holds every differing table leaf's rows
    /// (false past `rowDigestBudget`).
    package var leafRowsComplete: Bool {
        lock.lock(); defer { lock.unlock() }
        return !rowsOverBudget
    }

    /// Comparing mode: the rows of each differing table leaf page of the compared database.
    package var differingLeafRows: [Int: [RowDigest]] {
        lock.lock(); defer { lock.unlock() }
        return differingRows
    }

    /// Comparing mode: the bytes of each differing page that is not a b-tree page, and of
    /// page 1; nil past `rawPageBudget` pages.
    package var differingRawPages: [Int: [UInt8]]? {
        lock.lock(); defer { lock.unlock() }
        return rawOverBudget ? nil : differingRaw
    }

    /// Comparing mode: what each differing page of the compared database holds (its own
    /// bytes, not the reference's), parsed as a b-tree page.
    package var differingPageContent: [Int: BTreePage] {
        lock.lock(); defer { lock.unlock() }
        return differingContent
    }

    fileprivate func recordSize(_ size: Int64) {
        lock.lock(); defer { lock.unlock() }
        comparedSize = size
    }

    fileprivate func recordDigest(_ result: WrittenDigest?) {
        lock.lock(); defer { lock.unlock() }
        digestResult = result
    }

    fileprivate func record(path: String, errno code: Int32) {
        lock.lock(); defer { lock.unlock() }
        if firstError == nil { firstError = (path, code) }
    }

    /// Version 1 methods: no shared memory (never WAL) and no memory-mapped I/O.
    private static func ioMethods() -> sqlite3_io_methods {
        sqlite3_io_methods(
        iVersion: 1,
        xClose: { file in
            guard let target = CopyTargetFile.target(file) else { return SQLITE_OK }
            let rc = target.sync()
            target.close()
            CopyTargetFile.release(file)
            return rc
        },
        xRead: { file, buffer, amount, offset in
            CopyTargetFile.target(file)!.read(into: buffer!, count: Int(amount), at: offset)
        },
        xWrite: { file, buffer, amount, offset in
            CopyTargetFile.target(file)!.write(buffer!, count: Int(amount), at: offset)
        },
        xTruncate: { file, size in CopyTargetFile.target(file)!.truncate(to: size) },
        xSync: { file, _ in CopyTargetFile.target(file)!.sync() },
        xFileSize: { file, size in CopyTargetFile.target(file)!.size(into: size!) },
        xLock: { _, _ in SQLITE_OK },
        xUnlock: { _, _ in SQLITE_OK },
        xCheckReservedLock: { _, result in result!.pointee = 0; return SQLITE_OK },
        xFileControl: { _, _, _ in SQLITE_NOTFOUND },
        xSectorSize: { _ in 4096 },
        xDeviceCharacteristics: { _ in 0 },
        xShmMap: nil, xShmLock: nil, xShmBarrier: nil, xShmUnmap: nil, xFetch: nil, xUnfetch: nil)
    }
}

/// What stands behind one open main-database file of the VFS. Results are SQLite result codes.
private protocol TargetFile: AnyObject {
    func write(_ source: UnsafeRawPointer, count: Int, at offset: Int64) -> Int32
    func read(into destination: UnsafeMutableRawPointer, count: Int, at offset: Int64) -> Int32
    func truncate(to size: Int64) -> Int32
    func sync() -> Int32
    func size(into result: UnsafeMutablePointer<sqlite3_int64>) -> Int32
    func close()
}

/// The `sqlite3_file` SQLite allocates for us (`szOsFile` bytes): the methods pointer, then a
/// retained pointer to our `TargetFile` (boxed, as the protocol is not a class).
private enum CopyTargetFile {
    final class Box { let target: TargetFile; init(_ target: TargetFile) { self.target = target } }
    static let targetOffset = MemoryLayout<sqlite3_file>.stride
    static let size = targetOffset + MemoryLayout<UnsafeRawPointer>.size

    static func target(_ file: UnsafeMutablePointer<sqlite3_file>?) -> TargetFile? {
        guard let file, let raw = UnsafeMutableRawPointer(file).load(fromByteOffset: targetOffset, as: UnsafeMutableRawPointer?.self) else {
            return nil
        }
        return Unmanaged<Box>.fromOpaque(raw).takeUnretainedValue().target
    }

    static func attach(_ target: TargetFile, methods: UnsafePointer<sqlite3_io_methods>, to file: UnsafeMutablePointer<sqlite3_file>) {
        file.pointee.pMethods = methods
        UnsafeMutableRawPointer(file).storeBytes(of: Unmanaged.passRetained(Box(target)).toOpaque(), toByteOffset: targetOffset,
                                                 as: UnsafeMutableRawPointer?.self)
    }

    static func release(_ file: UnsafeMutablePointer<sqlite3_file>?) {
        guard let file, let raw = UnsafeMutableRawPointer(file).load(fromByteOffset: targetOffset, as: UnsafeMutableRawPointer?.self) else {
            return
        }
        Unmanaged<Box>.fromOpaque(raw).release()
        UnsafeMutableRawPointer(file).storeBytes(of: nil, toByteOffset: targetOffset, as: UnsafeMutableRawPointer?.self)
    }
}

private func copyTargetOpen(_ vfs: UnsafeMutablePointer<sqlite3_vfs>?, _ path: sqlite3_filename?,
                            _ file: UnsafeMutablePointer<sqlite3_file>?, _ flags: Int32,
                            _ outFlags: UnsafeMutablePointer<Int32>?) -> Int32 {
    let owner = CopyTargetVFS.owner(of: vfs!)
    guard flags & SQLITE_OPEN_MAIN_DB != 0, let path else {
        return owner.base.pointee.xOpen(owner.base, path, file, flags, outFlags)
    }
    let name = owner.reference ?? String(cString: path)
    let fd = open(name, (owner.reference == nil ? O_RDWR : O_RDONLY) | O_CLOEXEC)
    guard fd >= 0 else {
        file?.pointee.pMethods = nil
        owner.record(path: name, errno: errno)
        return SQLITE_CANTOPEN
    }
    let target: TargetFile = owner.reference == nil
        ? BufferedPageWriter(fd: fd, path: name, owner: owner)
        : PageComparer(fd: fd, path: name, owner: owner)
    CopyTargetFile.attach(target, methods: owner.ioMethodsPointer, to: file!)
    outFlags?.pointee = flags
    return SQLITE_OK
}

/// Gathers writes at consecutive offsets into one buffer and writes it out when it is full, when
/// a write is not consecutive, or before any read, size query, truncate or sync.
///
/// With the owner's `digest`, each written buffer is also handed to the hashing thread and the
/// next one is filled meanwhile: a ring of `digestRing` buffers (24 MiB), one otherwise.
private final class BufferedPageWriter: TargetFile {
    let fd: Int32
    let path: String
    unowned let owner: CopyTargetVFS
    let buffers: [UnsafeMutableRawPointer]
    var current = 0
    var buffer: UnsafeMutableRawPointer { buffers[current] }
    var bufferOffset: Int64 = 0
    var buffered = 0
    static let digestRing = 3

    init(fd: Int32, path: String, owner: CopyTargetVFS) {
        self.fd = fd
        self.path = path
        self.owner = owner
        buffers = (0..<(owner.digest?.hashing == true ? Self.digestRing : 1)).map { _ in
            UnsafeMutableRawPointer.allocate(byteCount: CopyTargetVFS.bufferSize, alignment: 4096)
        }
    }

    deinit {
        owner.digest?.drain()
        for buffer in buffers { buffer.deallocate() }
    }

    func close() {
        if let digest = owner.digest {
            var info = stat()
            owner.recordDigest(fstat(fd, &info) == 0 ? digest.result(fileSize: Int64(info.st_size)) : nil)
        }
        _ = Glibc.close(fd)
    }

    func sync() -> Int32 { flush() }

    func size(into result: UnsafeMutablePointer<sqlite3_int64>) -> Int32 {
        let rc = flush()
        guard rc == SQLITE_OK else { return rc }
        var info = stat()
        guard fstat(fd, &info) == 0 else { return IOError.fstat }
        result.pointee = sqlite3_int64(info.st_size)
        return SQLITE_OK
    }

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
        if count > CopyTargetVFS.bufferSize {
            owner.digest?.abandon()
            return writeFully(source, count: count, at: offset)
        }
        if buffered == 0 { bufferOffset = offset }
        (buffer + buffered).copyMemory(from: source, byteCount: count)
        buffered += count
        return SQLITE_OK
    }

    func flush() -> Int32 {
        guard buffered > 0 else { return SQLITE_OK }
        let rc = writeFully(buffer, count: buffered, at: bufferOffset)
        if rc == SQLITE_OK {
            // Advisory: a failure to start writeback shows in the caller's fsync.
            if owner.startsWriteback { _ = sync_file_range(fd, Int(bufferOffset), buffered, UInt32(DEPLOYCTL_SYNC_FILE_RANGE_WRITE)) }
            owner.written?(bufferOffset + Int64(buffered))
            if let digest = owner.digest, digest.wrote(buffer, count: buffered, at: bufferOffset) {
                // Fill the next buffer of the ring: the oldest handed one, once it is hashed.
                current = (current + 1) % buffers.count
                digest.waitForBuffers(below: buffers.count)
            }
        } else {
            owner.digest?.abandon()
        }
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
        var info = stat()
        if fstat(fd, &info) != 0 || Int64(info.st_size) != Int64(size) { owner.digest?.abandon() }
        return ftruncate(fd, off_t(size)) == 0 ? SQLITE_OK : IOError.truncate
    }
}

/// Compares every page SQLite writes with the same bytes of the reference file and keeps nothing.
///
/// Page 1's header fields that a backup rewrites or that name the journal mode are not compared:
/// bytes 18–19 (WAL or rollback), 24–27 (change counter), 40–43 (schema cookie), 92–99
/// (version-valid-for and SQLite version). Everything else, including the schema table on
/// page 1, must be equal.
private final class PageComparer: TargetFile {
    let fd: Int32
    let path: String
    unowned let owner: CopyTargetVFS
    var size: Int64 = 0
    var scratch = UnsafeMutableRawPointer.allocate(byteCount: 65536, alignment: 16)
    var scratchSize = 65536
    static let ignoredHeaderBytes: [Range<Int>] = [18..<20, 24..<28, 40..<44, 92..<100]
    /// Bytes reserved at the end of each page (header byte 20 of the compared database).
    var reservedBytes = 0

    init(fd: Int32, path: String, owner: CopyTargetVFS) {
        self.fd = fd
        self.path = path
        self.owner = owner
    }

    deinit { scratch.deallocate() }

    func write(_ source: UnsafeRawPointer, count: Int, at offset: Int64) -> Int32 {
        if count > scratchSize {
            scratch.deallocate()
            scratch = .allocate(byteCount: count, alignment: 16)
            scratchSize = count
        }
        let page = Int(offset / Int64(count)) + 1
        if page == 1 && count > 20 { reservedBytes = Int(source.load(fromByteOffset: 20, as: UInt8.self)) }
        var done = 0
        while done < count {
            let n = pread(fd, scratch + done, count - done, off_t(offset) + off_t(done))
            if n < 0 && errno == EINTR { continue }
            if n < 0 { owner.record(path: path, errno: errno); return IOError.read }
            if n == 0 { break }
            done += n
        }
        if done < count {
            owner.recordDifference(page: page, content: source, count: count, reservedBytes: reservedBytes)
        } else if offset == 0 {
            var start = 0
            for range in Self.ignoredHeaderBytes + [count..<count] {
                if memcmp(source + start, scratch + start, range.lowerBound - start) != 0 { owner.recordDifference(page: page, content: source, count: count, reservedBytes: reservedBytes) }
                start = range.upperBound
            }
        } else if memcmp(source, scratch, count) != 0 {
            owner.recordDifference(page: page, content: source, count: count, reservedBytes: reservedBytes)
        }
        size = max(size, offset + Int64(count))
        return SQLITE_OK
    }

    func read(into destination: UnsafeMutableRawPointer, count: Int, at offset: Int64) -> Int32 {
        guard offset >= size else { return IOError.read }
        destination.initializeMemory(as: UInt8.self, repeating: 0, count: count)
        return IOError.shortRead
    }

    func truncate(to newSize: Int64) -> Int32 {
        size = newSize
        return SQLITE_OK
    }

    func sync() -> Int32 { SQLITE_OK }

    func size(into result: UnsafeMutablePointer<sqlite3_int64>) -> Int32 {
        result.pointee = sqlite3_int64(size)
        return SQLITE_OK
    }

    func close() {
        owner.recordSize(size)
        _ = Glibc.close(fd)
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
