import CZstd
import Foundation
import SQLite
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
    /// 256 MiB lending database (4 MiB frames: level 1 1.007×, level 3 0.988×; see bench/RESULTS.md).
    static let level: Int32 = 1
    static let contentSizeUnknown = UInt64.max
    static let contentSizeError = UInt64.max - 1

    /// Compresses the file at `source` into `output`.
    /// - Throws: `Failure` `.io` on read or write errors.
    @discardableResult
    static func compress(source: String, into output: StoredOutput, level: Int32 = Zstd.level, following: CopyFollower? = nil,
                         progress: (Int64) -> Void = { _ in }) throws -> Bool {
        try Gzip.compressMembers(source: source, into: output, following: following, progress: progress) { input throws(Failure) in
            try frame(input, level: level)
        }
    }

    /// One complete zstd frame holding `input`, with its content size.
    static func frame(_ input: UnsafeRawBufferPointer, level: Int32) throws(Failure) -> [UInt8] {
        guard let context = ZSTD_createCCtx() else { throw Failure(.compressionLibraryFailed, "libzstd could not allocate a compressor (out of memory)") }
        defer { ZSTD_freeCCtx(context) }
        // Each frame carries its content checksum (XXH64), as the zstd CLI's do: damage inside the
        // data is caught on decompression, not only damage to the structure.
        guard ZSTD_isError(ZSTD_CCtx_setParameter(context, ZSTD_c_compressionLevel, level)) == 0,
              ZSTD_isError(ZSTD_CCtx_setParameter(context, ZSTD_c_checksumFlag, 1)) == 0 else {
            throw Failure(.compressionLibraryFailed, "libzstd refused its parameters")
        }
        var output = [UInt8](repeating: 0, count: ZSTD_compressBound(input.count))
        let size = output.withUnsafeMutableBytes { out in
            ZSTD_compress2(context, out.baseAddress, out.count, input.baseAddress, input.count)
        }
        guard ZSTD_isError(size) == 0 else { throw Failure(.compressionLibraryFailed, "libzstd could not compress: \(String(cString: ZSTD_getErrorName(size)))") }
        output.removeLast(output.count - size)
        return output
    }

    /// Decompresses every frame of `source` into the open file `output`, which must come to
    /// exactly `expected` bytes (the manifest's database size; nil: any size): a stream that
    /// would inflate past it is stopped there, one that ends short is refused.
    /// - Throws: `Failure` `.badData` for a truncated or damaged file (libzstd checks each frame's
    ///   structure, content size and checksum) or the wrong size; `.io` on read or write errors.
    /// `stop` is asked every few MiB: true ends the work with `Failure` `.failed` (a signal).
    static func decompress(source: String, into output: Int32, outputPath: String, expected: Int64? = nil,
                           stop: () -> Bool = { false }) throws {
        let input = open(source, O_RDONLY | O_CLOEXEC)
        guard input >= 0 else { throw DurableFile.posixFailure("cannot open \(source)", errno) }
        defer { close(input) }
        var info = stat()
        guard fstat(input, &info) == 0 else { throw DurableFile.posixFailure("cannot stat \(source)", errno) }
        let size = Int64(info.st_size)
        let bad: @Sendable (String) -> Failure = { why in
            Failure(.backupCompressionDamaged, "\(source) is not a valid zstd file: \(why)", hint: "the backup is damaged; use another one")
        }
        guard size > 0 else { throw bad("it is empty") }
        // A window of whole frames at a time (ours are at most a little over 4 MiB each), read
        // with pread: a file that shrinks meanwhile is a short read, never a fault.
        // Shared read-only with the workers, written again only after they end (no copy on write).
        var window = [UInt8](repeating: 0, count: (ZSTD_compressBound(Gzip.memberSize) + 64) * Gzip.workers)
        let buffers = Parallel.Pool { [UInt8](repeating: 0, count: Gzip.memberSize) }
        var offset: Int64 = 0
        var inflated: Int64 = 0
        while offset < size {
            if stop() { throw Gzip.stopped(source) }
            let want = Int(min(Int64(window.count), size - offset))
            let got = window.withUnsafeMutableBytes { pread(input, $0.baseAddress, want, off_t(offset)) }
            guard got >= 0 else { throw DurableFile.posixFailure("cannot read \(source)", errno) }
            guard got == want else { throw bad("it is truncated (it changed while being read)") }
            // The whole frames in this window, each with its content size.
            var frames = [(start: Int, length: Int, inflatedOffset: Int64, inflatedLength: Int)]()
            var at = 0
            while at < got {
                let length = window.withUnsafeBytes { ZSTD_findFrameCompressedSize($0.baseAddress! + at, got - at) }
                if ZSTD_isError(length) != 0 {
                    // Cut by the window's end: the next window takes it (or, for one frame larger
                    // than a window, the stream below). At the end of the file it is damage.
                    if offset + Int64(got) < size { break }
                    throw bad(String(cString: ZSTD_getErrorName(length)))
                }
                let content = window.withUnsafeBytes { ZSTD_getFrameContentSize($0.baseAddress! + at, length) }
                if content == contentSizeError { throw bad("a frame header is damaged") }
                // Another tool's frame (larger, or of unknown size): the whole file as a stream.
                if content == contentSizeUnknown || content > UInt64(Gzip.memberSize) {
                    if frames.isEmpty {
                        return try stream(input, size: size, into: output, outputPath: outputPath, from: offset + Int64(at), inflatedSoFar: inflated, expected: expected, bad: bad, stop: stop, source: source)
                    }
                    break
                }
                frames.append((at, length, inflated, Int(content)))
                inflated += Int64(content)
                if let expected, inflated > expected { throw bad("it holds more than the \(expected) bytes its manifest records") }
                at += length
                if frames.count == Gzip.workers { break }
            }
            guard !frames.isEmpty else {
                // One frame bigger than the window: only another tool writes those.
                return try stream(input, size: size, into: output, outputPath: outputPath, from: offset, inflatedSoFar: inflated, expected: expected, bad: bad, stop: stop, source: source)
            }
            try decompressFrames(frames, in: window, at: offset, into: output, outputPath: outputPath, buffers: buffers, bad: bad)
            offset += Int64(frames.last!.start + frames.last!.length)
        }
        if let expected, inflated != expected { throw bad("it holds \(inflated) bytes, not the \(expected) its manifest records") }
    }

    /// Decompresses whole frames of `window` (read from the file at `offset`) on every core at
    /// once, each written at its place in `output`.
    private static func decompressFrames(_ frames: [(start: Int, length: Int, inflatedOffset: Int64, inflatedLength: Int)], in window: [UInt8],
                                         at offset: Int64, into output: Int32, outputPath: String, buffers: Parallel.Pool<[UInt8]>,
                                         bad: @escaping @Sendable (String) -> Failure) throws(Failure) {
        _ = try Parallel.map(frames.count, width: Gzip.workers) { i throws(Failure) in
            let frame = frames[i]
            try buffers.borrow { (buffer: inout [UInt8]) throws(Failure) in
                let produced = buffer.withUnsafeMutableBytes { buffer in
                    window.withUnsafeBytes { ZSTD_decompress(buffer.baseAddress, buffer.count, $0.baseAddress! + frame.start, frame.length) }
                }
                guard ZSTD_isError(produced) == 0, produced == frame.inflatedLength else {
                    throw bad(ZSTD_isError(produced) != 0 ? "\(String(cString: ZSTD_getErrorName(produced))) in the frame at byte \(offset + Int64(frame.start))"
                                                         : "the frame at byte \(offset + Int64(frame.start)) holds \(produced) bytes, not \(frame.inflatedLength)")
                }
                let result = buffer.withUnsafeBytes { written in
                    Result { () throws(Failure) in
                        try DurableFile.writeAll(fd: output, UnsafeRawBufferPointer(rebasing: written[0..<produced]), at: frame.inflatedOffset, path: outputPath)
                    }
                }
                try result.get()
            }
        }
    }

    /// Streams a file whose frames cannot be taken whole (another tool's) through one
    /// decompressor from `from`, reading it in chunks, appending after `inflatedSoFar` bytes.
    private static func stream(_ input: Int32, size: Int64, into output: Int32, outputPath: String, from: Int64, inflatedSoFar: Int64,
                               expected: Int64?, bad: (String) -> Failure, stop: () -> Bool, source: String) throws {
        guard let context = ZSTD_createDStream() else { throw Failure(.compressionLibraryFailed, "libzstd could not allocate a decompressor (out of memory)") }
        defer { ZSTD_freeDStream(context) }
        let inChunk = ZSTD_DStreamInSize(), outChunk = ZSTD_DStreamOutSize()
        let inBuffer = UnsafeMutableRawBufferPointer.allocate(byteCount: inChunk, alignment: 16)
        let outBuffer = UnsafeMutableRawBufferPointer.allocate(byteCount: outChunk, alignment: 16)
        defer { inBuffer.deallocate(); outBuffer.deallocate() }
        guard lseek(output, off_t(inflatedSoFar), SEEK_SET) >= 0 else { throw DurableFile.posixFailure("cannot seek \(outputPath)", errno) }
        var offset = from
        var total = inflatedSoFar
        // Whether the last frame begun has ended: a call that neither reads nor writes (the
        // stream waiting for a next frame) does not change it.
        var ended = true
        while offset < size {
            if stop() { throw Gzip.stopped(source) }
            let got = pread(input, inBuffer.baseAddress, Int(min(Int64(inChunk), size - offset)), off_t(offset))
            guard got > 0 else { throw got < 0 ? DurableFile.posixFailure("cannot read", errno) : bad("it is truncated (it changed while being read)") }
            offset += Int64(got)
            var source = ZSTD_inBuffer(src: inBuffer.baseAddress, size: got, pos: 0)
            repeat {
                var target = ZSTD_outBuffer(dst: outBuffer.baseAddress, size: outChunk, pos: 0)
                let before = source.pos
                let rc = ZSTD_decompressStream(context, &target, &source)
                guard ZSTD_isError(rc) == 0 else { throw bad(String(cString: ZSTD_getErrorName(rc))) }
                if rc == 0 { ended = true } else if source.pos != before || target.pos > 0 { ended = false }
                if target.pos > 0 {
                    total += Int64(target.pos)
                    if let expected, total > expected { throw bad("it holds more than the \(expected) bytes its manifest records") }
                    try DurableFile.writeAll(fd: output, UnsafeRawBufferPointer(rebasing: outBuffer[0..<target.pos]), path: outputPath)
                }
                if source.pos == source.size && target.pos < outChunk { break }
            } while true
        }
        guard ended else { throw bad("it is truncated: the last frame ends early") }
        if let expected, total != expected { throw bad("it holds \(total) bytes, not the \(expected) its manifest records") }
    }
}
