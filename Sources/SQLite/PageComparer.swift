import CSQLite
import Foundation
import Support

/// Compares every page SQLite writes with the same bytes of the reference file and keeps nothing.
///
/// Page 1's header fields that a backup rewrites or that name the journal mode are not compared:
/// bytes 18–19 (WAL or rollback), 24–27 (change counter), 40–43 (schema cookie), 92–99
/// (version-valid-for and SQLite version). Everything else, including the schema table on
/// page 1, must be equal.
final class PageComparer: TargetFile {
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
enum IOError {
    static let read = SQLITE_IOERR | (1 << 8)
    static let shortRead = SQLITE_IOERR | (2 << 8)
    static let write = SQLITE_IOERR | (3 << 8)
    static let truncate = SQLITE_IOERR | (6 << 8)
    static let fstat = SQLITE_IOERR | (7 << 8)
}
