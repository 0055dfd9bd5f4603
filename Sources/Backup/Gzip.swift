import CZlib
import Dispatch
import Foundation
import Support

/// gzip through the system zlib: the one place deployctl calls it.
///
/// Compression splits the input into independent 4 MiB gzip members deflated on every core at
/// once (as pigz does); `gunzip` and `gzip -t` read multi-member files as one stream, and so does
/// `inflate` here, which reads every member.
enum Gzip {
    /// Input bytes per gzip member.
    static let memberSize = 4 << 20

    /// Compresses the file at `source` into the open file `output` at `level`, hashing what is
    /// written. Returns the bytes written and their SHA-256.
    /// - Throws: `Failure` `.io` on read or write errors.
    static func compress(source: String, into output: Int32, outputPath: String, level: Int32 = 6,
                         progress: (Int64) -> Void = { _ in }) throws -> (bytes: Int64, sha256: String) {
        let input = open(source, O_RDONLY | O_CLOEXEC)
        guard input >= 0 else { throw DurableFile.posixFailure("cannot open \(source)", errno) }
        defer { close(input) }
        let workers = max(1, min(ProcessInfo.processInfo.activeProcessorCount, 8))
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: memberSize * workers, alignment: 16)
        defer { buffer.deallocate() }
        var hasher = SHA256()
        var written: Int64 = 0
        var consumed: Int64 = 0
        while true {
            let filled = try readFully(input, into: buffer, path: source)
            if filled == 0 { break }
            consumed += Int64(filled)
            let members = (filled + memberSize - 1) / memberSize
            let results = UnsafeMutableBufferPointer<Result<[UInt8], Failure>>.allocate(capacity: members)
            results.initialize(repeating: .success([]))
            defer { results.deinitialize(); results.deallocate() }
            nonisolated(unsafe) let shared = (results, UnsafeRawBufferPointer(buffer))
            DispatchQueue.concurrentPerform(iterations: members) { i in
                let start = i * memberSize
                let slice = UnsafeRawBufferPointer(rebasing: shared.1[start..<min(start + memberSize, filled)])
                shared.0[i] = Result { () throws(Failure) in try deflateMember(slice, level: level) }
            }
            for result in results {
                let bytes = try result.get()
                try bytes.withUnsafeBytes { try DurableFile.writeAll(fd: output, $0, path: outputPath) }
                hasher.update(bytes)
                written += Int64(bytes.count)
            }
            progress(consumed)
            if filled < buffer.count { break }
        }
        if consumed == 0 {
            let empty = try deflateMember(UnsafeRawBufferPointer(start: nil, count: 0), level: level)
            try empty.withUnsafeBytes { try DurableFile.writeAll(fd: output, $0, path: outputPath) }
            hasher.update(empty)
            written += Int64(empty.count)
        }
        return (written, hasher.finalizeHex())
    }

    /// Deflates `input` into one complete gzip member.
    /// - Throws: `Failure` `.io` if zlib fails (out of memory).
    static func deflateMember(_ input: UnsafeRawBufferPointer, level: Int32) throws(Failure) -> [UInt8] {
        var stream = z_stream()
        let rc = deflateInit2_(&stream, level, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY,
                               ZLIB_VERSION, Int32(MemoryLayout<z_stream>.size))
        guard rc == Z_OK else { throw Failure(.io, "zlib deflateInit2 failed (\(rc))") }
        defer { deflateEnd(&stream) }
        let bound = Int(deflateBound(&stream, uLong(input.count)))
        var output = [UInt8](repeating: 0, count: bound)
        let result: Int32 = output.withUnsafeMutableBytes { out in
            stream.next_in = UnsafeMutablePointer(mutating: input.baseAddress?.assumingMemoryBound(to: Bytef.self))
            stream.avail_in = uInt(input.count)
            stream.next_out = out.baseAddress!.assumingMemoryBound(to: Bytef.self)
            stream.avail_out = uInt(out.count)
            return deflate(&stream, Z_FINISH)
        }
        guard result == Z_STREAM_END else { throw Failure(.io, "zlib deflate failed (\(result))") }
        output.removeLast(Int(stream.avail_out))
        return output
    }

    /// Inflates every gzip member of `source` into the open file `output`.
    /// - Throws: `Failure` `.badData` for a truncated stream, a bad CRC or length, trailing
    ///   garbage or anything else zlib rejects; `.io` on read or write errors.
    static func inflate(source: String, into output: Int32, outputPath: String) throws {
        let input = open(source, O_RDONLY | O_CLOEXEC)
        guard input >= 0 else { throw DurableFile.posixFailure("cannot open \(source)", errno) }
        defer { close(input) }
        var stream = z_stream()
        guard inflateInit2_(&stream, 15 + 16, ZLIB_VERSION, Int32(MemoryLayout<z_stream>.size)) == Z_OK else {
            throw Failure(.io, "zlib inflateInit2 failed")
        }
        defer { inflateEnd(&stream) }
        let chunk = 1 << 20
        let inBuffer = UnsafeMutableRawBufferPointer.allocate(byteCount: chunk, alignment: 16)
        let outBuffer = UnsafeMutableRawBufferPointer.allocate(byteCount: chunk * 4, alignment: 16)
        defer { inBuffer.deallocate(); outBuffer.deallocate() }
        var atMemberEnd = false
        var sawInput = false
        var needInput = true
        while true {
            if stream.avail_in == 0 && needInput {
                let n = try readFully(input, into: inBuffer, path: source)
                if n == 0 { break }
                sawInput = true
                stream.next_in = inBuffer.baseAddress!.assumingMemoryBound(to: Bytef.self)
                stream.avail_in = uInt(n)
            }
            if atMemberEnd {
                guard inflateReset(&stream) == Z_OK else { throw Failure(.io, "zlib inflateReset failed") }
                atMemberEnd = false
            }
            stream.next_out = outBuffer.baseAddress!.assumingMemoryBound(to: Bytef.self)
            stream.avail_out = uInt(outBuffer.count)
            let rc = CZlib.inflate(&stream, Z_NO_FLUSH)
            let produced = outBuffer.count - Int(stream.avail_out)
            needInput = stream.avail_out != 0 || rc == Z_STREAM_END
            if produced > 0 {
                try DurableFile.writeAll(fd: output, UnsafeRawBufferPointer(rebasing: outBuffer[0..<produced]), path: outputPath)
            }
            switch rc {
            case Z_STREAM_END: atMemberEnd = true
            case Z_OK: continue
            case Z_BUF_ERROR where stream.avail_in == 0: continue
            default:
                let reason = stream.msg.map { String(cString: $0) } ?? "zlib error \(rc)"
                throw Failure(.badData, "\(source) is not a valid gzip file: \(reason)",
                              hint: "the backup is damaged; use another one (deployctl backups list)")
            }
        }
        guard sawInput, atMemberEnd else {
            throw Failure(.badData, "\(source) is truncated: the gzip stream ends early",
                          hint: "the backup is damaged; use another one (deployctl backups list)")
        }
    }

    /// Reads until `buffer` is full or the file ends; returns the bytes read.
    static func readFully(_ fd: Int32, into buffer: UnsafeMutableRawBufferPointer, path: String) throws -> Int {
        var filled = 0
        while filled < buffer.count {
            let n = read(fd, buffer.baseAddress! + filled, buffer.count - filled)
            if n < 0 {
                if errno == EINTR { continue }
                throw DurableFile.posixFailure("cannot read \(path)", errno)
            }
            if n == 0 { break }
            filled += n
        }
        return filled
    }
}
