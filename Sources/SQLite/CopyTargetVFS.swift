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
    let base: UnsafeMutablePointer<sqlite3_vfs>
    let lock = NSLock()
    var firstError: (path: String, errno: Int32)?
    let reference: String?
    var differences = Set<Int>()
    var differingContent = [Int: BTreePage]()
    var differingRows = [Int: [RowDigest]]()
    var digestedRows = 0
    var rowsOverBudget = false
    /// The bytes of differing pages that are not b-tree pages (and of page 1), up to
    /// `rawPageBudget` pages: enough to walk the compared database's freelist.
    var differingRaw = [Int: [UInt8]]()
    var rawOverBudget = false
    static let rawPageBudget = 4096
    var comparedSize: Int64 = 0
    /// Writing mode: told the end offset of each gathered write (pages arrive in order, so it
    /// is how far the copy has got).
    let written: ((Int64) -> Void)?
    /// Writing mode: start the disk's writeback of each gathered write at once
    /// (`sync_file_range`), for a copy that will be fsynced: the caller's final `fsync` then
    /// waits for little more than the last writes, instead of the whole file.
    let startsWriteback: Bool
    /// Writing mode: follows (and maybe hashes) the copy as it is written, when its page 1 was predicted.
    let digest: WrittenFileDigest?
    var digestResult: WrittenDigest?

    /// The most row digests kept in comparing mode.
    let rowDigestBudget: Int

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
    static func owner(of vfs: UnsafeMutablePointer<sqlite3_vfs>) -> CopyTargetVFS {
        let raw = UnsafeMutableRawPointer(vfs).load(fromByteOffset: contextOffset, as: UnsafeMutableRawPointer.self)
        return Unmanaged<CopyTargetVFS>.fromOpaque(raw).takeUnretainedValue()
    }

    var ioMethodsPointer: UnsafePointer<sqlite3_io_methods> { UnsafePointer(methods) }

    func recordDifference(page: Int, content: UnsafeRawPointer, count: Int, reservedBytes: Int) {
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

    func recordSize(_ size: Int64) {
        lock.lock(); defer { lock.unlock() }
        comparedSize = size
    }

    func recordDigest(_ result: WrittenDigest?) {
        lock.lock(); defer { lock.unlock() }
        digestResult = result
    }

    func record(path: String, errno code: Int32) {
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
protocol TargetFile: AnyObject {
    func write(_ source: UnsafeRawPointer, count: Int, at offset: Int64) -> Int32
    func read(into destination: UnsafeMutableRawPointer, count: Int, at offset: Int64) -> Int32
    func truncate(to size: Int64) -> Int32
    func sync() -> Int32
    func size(into result: UnsafeMutablePointer<sqlite3_int64>) -> Int32
    func close()
}

/// The `sqlite3_file` SQLite allocates for us (`szOsFile` bytes): the methods pointer, then a
/// retained pointer to our `TargetFile` (boxed, as the protocol is not a class).
enum CopyTargetFile {
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
