import Foundation
import Support
import Synchronization

/// What an upload left in the store, as checked after it completed.
public struct UploadedObject: Sendable, Equatable {
    public let key: String
    public let bytes: Int64
    /// The store's ETag as it gave it (opaque: not necessarily an MD5).
    public let etag: String
    public let parts: Int
}

extension S3Client {
    /// Objects above this size go up in parts.
    public static let multipartThreshold: Int64 = 64 << 20
    /// The size of each part but the last.
    public static let partSize: Int64 = 16 << 20
    /// Parts uploaded at once, each streamed from the file (memory stays small). Four were
    /// measured no faster on this 2-core machine (push 1.13× `aws s3 cp` against 1.14× with two
    /// at 1 GiB; bench/RESULTS.md), so two.
    static let partsAtOnce = 2

    /// Uploads the file at `path` under `key`, streamed from the file (memory flat), each request
    /// with `Content-MD5` (checked by the store) and a signed SHA-256 of its body. Up to `multipartThreshold` it is one
    /// PUT; above it a multipart upload of `partSize` parts, two at once, completed only when
    /// every part is in, so no partial object ever appears under `key`. Unfinished multipart
    /// uploads of `key` left by a killed run are aborted first. After completion the object's
    /// size is compared with what was sent; its ETag is recorded as the store gives it (opaque:
    /// not the MD5 under SSE-KMS or SSE-C).
    /// - Throws: `Failure` (`.failed` when the stored object differs from what was sent);
    ///   what `checkpoint` throws (between parts; the upload is then aborted).
    /// `digests` (from `fileDigests` of the same file) spare a second read; the store checks
    /// each piece's `Content-MD5`, so a file changed in between is refused, never stored.
    public func upload(file path: String, key: String, digests: FileDigests? = nil, progress: @escaping @Sendable (Int64, Int64) -> Void = { _, _ in },
                       checkpoint: @escaping @Sendable () throws -> Void = {}) throws -> UploadedObject {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw DurableFile.posixFailure("cannot open \(path)", errno) }
        defer { close(fd) }
        var info = stat()
        guard fstat(fd, &info) == 0 else { throw DurableFile.posixFailure("cannot stat \(path)", errno) }
        let size = Int64(info.st_size)
        let known = digests.flatMap { $0.bytes == size ? $0.pieces : nil }
        let pieceDigests: @Sendable (Int, Int64, Int64) throws -> ([UInt8], String) = { index, offset, length in
            if let known, index < known.count { return known[index] }
            return try Self.digests(fd: fd, offset: offset, length: length, path: path)
        }
        for stale in try multipartUploads(of: key) {
            try abortMultipartUpload(key, uploadId: stale, what: "aborting an unfinished upload of \(key)")
        }
        let what = "uploading \(key)"
        var parts = 1
        if size <= Self.multipartThreshold {
            let (md5, sha256) = try pieceDigests(0, 0, size)
            try checkpoint()
            _ = try put(key, fd: fd, offset: 0, length: size, md5: md5, sha256: sha256, what: what)
            progress(size, size)
        } else {
            let count = Int((size + Self.partSize - 1) / Self.partSize)
            parts = count
            let uploadId = try createMultipartUpload(key, what: what)
            let sent = Atomic<Int64>(0)
            do {
                let etags = try Parallel.map(count, width: Self.partsAtOnce) { number in
                    try checkpoint()
                    let offset = Int64(number) * Self.partSize
                    let length = min(Self.partSize, size - offset)
                    let (md5, sha256) = try pieceDigests(number, offset, length)
                    let etag = try uploadPart(key, uploadId: uploadId, number: number + 1, fd: fd, offset: offset, length: length,
                                              md5: md5, sha256: sha256, what: "\(what) (part \(number + 1) of \(count))")
                    progress(sent.add(length, ordering: .relaxed).newValue, size)
                    return etag.isEmpty ? SHA256.hex(md5) : etag
                }
                _ = try completeMultipartUpload(key, uploadId: uploadId, parts: etags.enumerated().map { ($0.offset + 1, $0.element) },
                                                what: what)
            } catch {
                try? abortMultipartUpload(key, uploadId: uploadId, what: "aborting the failed upload of \(key)")
                throw error
            }
        }
        guard let stored = try head(key, what: "checking \(key) after uploading it") else {
            throw Failure(.offsiteUploadFailed, "remote '\(remote)': \(key) is not there right after uploading it")
        }
        guard stored.size == size else {
            throw Failure(.offsiteUploadFailed, "remote '\(remote)': \(key) holds \(stored.size) bytes after uploading \(size)")
        }
        // The ETag is opaque: under SSE-KMS or SSE-C (and on some stores) it is not the MD5, so
        // it is never compared with one. Each request carried Content-MD5, which the store checks
        // against the bytes it got; the manifest's sha256 is the check on download.
        return UploadedObject(key: key, bytes: size, etag: stored.etag.lowercased(), parts: parts)
    }

    /// Whether `etag` has the MD5 form S3 gives: 32 hex digits, with `-<parts>` after a multipart upload.
    public static func isMD5ETag(_ etag: String) -> Bool {
        let parts = etag.split(separator: "-")
        guard let hex = parts.first, hex.count == 32, hex.allSatisfy(\.isHexDigit) else { return false }
        return parts.count == 1 || (parts.count == 2 && parts[1].allSatisfy(\.isNumber))
    }

    /// Downloads `key` into the empty file `fd` (streamed), returning its size and SHA-256. A
    /// retried download starts the file over.
    /// - Throws: `Failure` (`.missingInput` when there is no such object; `.io` for a full disk).
    /// More than `limit` bytes (the manifest's size) is refused as soon as it arrives: an endless
    /// or over-long body never fills the disk.
    public func download(_ key: String, into fd: Int32, path: String, limit: Int64? = nil,
                         progress: @escaping (Int64) -> Void = { _ in }) throws -> (bytes: Int64, sha256: String) {
        // Optional so the escaping closures below can start it over and it can be taken at the end.
        var hash: SHA256? = SHA256()
        var written: Int64 = 0
        _ = try download(key, what: "downloading \(key)", restart: {
            guard ftruncate(fd, 0) == 0 else { throw DurableFile.posixFailure("cannot truncate \(path)", errno) }
            hash = SHA256()
            written = 0
        }, sink: { chunk in
            if let limit, written + Int64(chunk.count) > limit {
                throw Failure(.offsiteCopyDamaged, "remote '\(self.remote)': \(key) is longer than its manifest says (over \(limit) bytes): damaged or replaced in the store; nothing was kept")
            }
            var done = 0
            while done < chunk.count {
                let n = pwrite(fd, chunk.baseAddress! + done, chunk.count - done, off_t(written) + off_t(done))
                if n < 0 && errno == EINTR { continue }
                guard n > 0 else { throw DurableFile.posixFailure("cannot write \(path)", n < 0 ? errno : ENOSPC) }
                done += n
            }
            hash?.update(chunk)
            written += Int64(chunk.count)
            progress(written)
        })
        return (written, try hash.take()!.finalizeHex())
    }

    /// What one pass over a file gives: its size and SHA-256, and the MD5 and SHA-256 of each
    /// piece `upload` will send (the whole file up to `multipartThreshold`, else each
    /// `partSize` part), so the upload does not read and hash the file again.
    public struct FileDigests: Sendable {
        public let bytes: Int64
        public let sha256: String
        let pieces: [(md5: [UInt8], sha256: String)]
    }

    public static func fileDigests(path: String) throws -> FileDigests {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw DurableFile.posixFailure("cannot open \(path)", errno) }
        defer { close(fd) }
        var info = stat()
        guard fstat(fd, &info) == 0 else { throw DurableFile.posixFailure("cannot stat \(path)", errno) }
        let size = Int64(info.st_size)
        let piece = size <= multipartThreshold ? max(size, 1) : partSize
        var whole = SHA256()
        var pieces = [(md5: [UInt8], sha256: String)]()
        var md5 = MD5()
        var sha = SHA256()
        var inPiece: Int64 = 0
        try FileRange.read(fd: fd, offset: 0, length: size, path: path) { chunk in
            whole.update(chunk)
            var at = 0
            while at < chunk.count {
                // A short read may end a block anywhere: split it at the piece's end.
                let take = min(chunk.count - at, Int(piece - inPiece))
                let slice = UnsafeRawBufferPointer(rebasing: chunk[at..<(at + take)])
                md5.update(slice)
                sha.update(slice)
                inPiece += Int64(take)
                at += take
                if inPiece == piece {
                    var pieceMD5 = MD5(), pieceSHA = SHA256()
                    swap(&pieceMD5, &md5)
                    swap(&pieceSHA, &sha)
                    pieces.append((pieceMD5.finalize(), try pieceSHA.finalizeHex()))
                    inPiece = 0
                }
            }
        }
        if inPiece > 0 || pieces.isEmpty { pieces.append((md5.finalize(), try sha.finalizeHex())) }
        return FileDigests(bytes: size, sha256: try whole.finalizeHex(), pieces: pieces)
    }

    /// MD5 and SHA-256 of a range of a file, read in 1 MiB blocks.
    static func digests(fd: Int32, offset: Int64, length: Int64, path: String) throws -> ([UInt8], String) {
        var md5 = MD5()
        var sha = SHA256()
        try FileRange.read(fd: fd, offset: offset, length: length, path: path) { chunk in
            md5.update(chunk)
            sha.update(chunk)
        }
        return (md5.finalize(), try sha.finalizeHex())
    }
}

/// Reading a range of a file in 1 MiB blocks.
enum FileRange {
    /// Hands `body` each block of `length` bytes of `fd` from `offset`.
    /// - Throws: `Failure` `.io` when the file cannot be read or is shorter; what `body` throws.
    static func read(fd: Int32, offset: Int64, length: Int64, path: String, _ body: (UnsafeRawBufferPointer) throws -> Void) throws {
        let block = 1 << 20
        let buffer = UnsafeMutableRawPointer.allocate(byteCount: block, alignment: 16)
        defer { buffer.deallocate() }
        var done: Int64 = 0
        while done < length {
            let n = pread(fd, buffer, Int(min(Int64(block), length - done)), off_t(offset + done))
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else { throw DurableFile.posixFailure("cannot read \(path)", n < 0 ? errno : EIO) }
            try body(UnsafeRawBufferPointer(start: buffer, count: n))
            done += Int64(n)
        }
    }
}
