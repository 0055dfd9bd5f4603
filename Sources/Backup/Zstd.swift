import CZstd
import Foundation
import Support

/// zstd through the system libzstd (`--compress zstd`): the one place deployctl calls it.
///
/// Compression cuts the input into independent 4 MiB frames compressed on every core at once,
/// each recording its content size and checksum; `zstd -d` and `zstd -t` read concatenated frames as one
/// file. Decompression finds every frame in the (memory-mapped) file and inflates them on every
/// core at once, each written at its place; a file whose frames are larger or of unknown size (the
/// `zstd` CLI's single frame) is decompressed as one stream, in bounded memory.
enum Zstd {
    /// The level: the fastest whose output stays within 1.05× of `gzip -6`'s on the benchmark's
    /// 256 MiB lending database (4 MiB frames: level 1 1.007×, level 3 0.988×; see README).
    static let level: Int32 = 1
    static let contentSizeUnknown = UInt64.max
    static let contentSizeError = UInt64.max - 1

    /// Compresses the file at `source` into the open file `output`, hashing what is written.
    /// Returns the bytes written and their SHA-256.
    /// - Throws: `Failure` `.io` on read or write errors.
    static func compress(source: String, into output: Int32, outputPath: String, level: Int32 = Zstd.level,
                         progress: (Int64) -> Void = { _ in }) throws -> (bytes: Int64, sha256: String) {
        try Gzip.compressMembers(source: source, into: output, outputPath: outputPath, progress: progress) { input throws(Failure) in
            try frame(input, level: level)
        }
    }

    /// One complete zstd frame holding `input`, with its content size.
    static func frame(_ input: UnsafeRawBufferPointer, level: Int32) throws(Failure) -> [UInt8] {
        guard let context = ZSTD_createCCtx() else { throw Failure(.io, "libzstd could not allocate a compressor (out of memory)") }
        defer { ZSTD_freeCCtx(context) }
        // Each frame carries its content checksum (XXH64), as the zstd CLI's do: damage inside the
        // data is caught on decompression, not only damage to the structure.
        guard ZSTD_isError(ZSTD_CCtx_setParameter(context, ZSTD_c_compressionLevel, level)) == 0,
              ZSTD_isError(ZSTD_CCtx_setParameter(context, ZSTD_c_checksumFlag, 1)) == 0 else {
            throw Failure(.io, "libzstd refused its parameters")
        }
        var output = [UInt8](repeating: 0, count: ZSTD_compressBound(input.count))
        let size = output.withUnsafeMutableBytes { out in
            ZSTD_compress2(context, out.baseAddress, out.count, input.baseAddress, input.count)
        }
        guard ZSTD_isError(size) == 0 else { throw Failure(.io, "libzstd could not compress: \(String(cString: ZSTD_getErrorName(size)))") }
        output.removeLast(output.count - size)
        return output
    }

    /// Decompresses every frame of `source` into the open file `output`.
    /// - Throws: `Failure` `.badData` for a truncated or damaged file (libzstd checks each frame's
    ///   structure and its content size); `.io` on read or write errors.
    static func decompress(source: String, into output: Int32, outputPath: String) throws {
        let input = open(source, O_RDONLY | O_CLOEXEC)
        guard input >= 0 else { throw DurableFile.posixFailure("cannot open \(source)", errno) }
        defer { close(input) }
        var info = stat()
        guard fstat(input, &info) == 0 else { throw DurableFile.posixFailure("cannot stat \(source)", errno) }
        let size = Int(info.st_size)
        let bad = { (why: String) in
            Failure(.badData, "\(source) is not a valid zstd file: \(why)", hint: "the backup is damaged; use another one (deployctl backups list)")
        }
        guard size > 0 else { throw bad("it is empty") }
        guard let mapped = mmap(nil, size, PROT_READ, MAP_SHARED, input, 0), mapped != MAP_FAILED else {
            throw DurableFile.posixFailure("cannot map \(source)", errno)
        }
        defer { munmap(mapped, size) }
        let bytes = UnsafeRawPointer(mapped)
        // Index the frames: where each starts, its compressed and content sizes.
        var frames = [(offset: Int, length: Int, inflatedOffset: Int64, inflatedLength: Int)]()
        var offset = 0
        var inflated: Int64 = 0
        var indexed = true
        while offset < size {
            let length = ZSTD_findFrameCompressedSize(bytes + offset, size - offset)
            guard ZSTD_isError(length) == 0 else { throw bad(String(cString: ZSTD_getErrorName(length))) }
            let content = ZSTD_getFrameContentSize(bytes + offset, length)
            if content == contentSizeError { throw bad("a frame header is damaged") }
            if content == contentSizeUnknown || content > UInt64(Gzip.memberSize) { indexed = false }
            frames.append((offset, length, inflated, Int(truncatingIfNeeded: content)))
            inflated += Int64(truncatingIfNeeded: content)
            offset += length
        }
        guard indexed else { return try stream(bytes, size: size, into: output, outputPath: outputPath, bad: bad) }
        let buffers = (0..<Gzip.workers).map { _ in UnsafeMutableRawBufferPointer.allocate(byteCount: Gzip.memberSize, alignment: 16) }
        defer { for buffer in buffers { buffer.deallocate() } }
        nonisolated(unsafe) let base = bytes
        for batch in stride(from: 0, to: frames.count, by: buffers.count) {
            _ = try Gzip.inParallel(min(buffers.count, frames.count - batch)) { i throws(Failure) in
                let frame = frames[batch + i]
                let produced = ZSTD_decompress(buffers[i].baseAddress, buffers[i].count, base + frame.offset, frame.length)
                guard ZSTD_isError(produced) == 0, produced == frame.inflatedLength else {
                    throw bad(ZSTD_isError(produced) != 0 ? "\(String(cString: ZSTD_getErrorName(produced))) in the frame at byte \(frame.offset)"
                                                         : "the frame at byte \(frame.offset) holds \(produced) bytes, not \(frame.inflatedLength)")
                }
                var done = 0
                while done < produced {
                    let n = pwrite(output, buffers[i].baseAddress! + done, produced - done, off_t(frame.inflatedOffset) + off_t(done))
                    if n < 0 && errno == EINTR { continue }
                    guard n > 0 else { throw DurableFile.posixFailure("cannot write \(outputPath)", n < 0 ? errno : ENOSPC) }
                    done += n
                }
            }
        }
    }

    /// Streams a file whose frames cannot be indexed (another tool's) through one decompressor.
    private static func stream(_ bytes: UnsafeRawPointer, size: Int, into output: Int32, outputPath: String,
                               bad: (String) -> Failure) throws {
        guard let context = ZSTD_createDStream() else { throw Failure(.io, "libzstd could not allocate a decompressor (out of memory)") }
        defer { ZSTD_freeDStream(context) }
        let chunk = ZSTD_DStreamOutSize()
        let out = UnsafeMutableRawBufferPointer.allocate(byteCount: chunk, alignment: 16)
        defer { out.deallocate() }
        var source = ZSTD_inBuffer(src: bytes, size: size, pos: 0)
        var last = 0
        while true {
            var target = ZSTD_outBuffer(dst: out.baseAddress, size: chunk, pos: 0)
            let rc = ZSTD_decompressStream(context, &target, &source)
            guard ZSTD_isError(rc) == 0 else { throw bad(String(cString: ZSTD_getErrorName(rc))) }
            if target.pos > 0 { try DurableFile.writeAll(fd: output, UnsafeRawBufferPointer(rebasing: out[0..<target.pos]), path: outputPath) }
            last = rc
            if source.pos == source.size && target.pos < chunk { break }
        }
        // rc 0 means the last frame ended exactly at the end of the input.
        guard last == 0 else { throw bad("it is truncated: the last frame ends early") }
    }
}
