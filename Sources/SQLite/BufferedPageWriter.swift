import CSQLite
import Foundation
import Support

/// Gathers writes at consecutive offsets into one buffer and writes it out when it is full, when
/// a write is not consecutive, or before any read, size query, truncate or sync.
///
/// With the owner's `digest`, each written buffer is also handed to the hashing thread and the
/// next one is filled meanwhile: a ring of `digestRing` buffers (24 MiB), one otherwise.
final class BufferedPageWriter: TargetFile {
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
