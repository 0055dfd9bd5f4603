import CDeflate
import CZlib
import Foundation
import SQLite
import Support

/// gzip through the system libdeflate (our members, whole buffers) and zlib (another tool's
/// gzip, streamed): the one place deployctl calls either.
///
/// Compression splits the input into independent 4 MiB gzip members deflated on every core at
/// once (as pigz does); `gunzip` and `gzip -t` read multi-member files as one stream, and so does
/// `inflate` here, which reads every member.
///
/// Each member's header carries its own length in an extra field (subfield `DC`, 4 bytes, little
/// endian; RFC 1952 §2.3.1.1, the way BGZF marks its blocks), which `gunzip` skips. With it
/// `inflate` finds every member without decompressing and inflates them on every core at once;
/// a file without it (any other gzip) is inflated in one pass.
enum Gzip {
    /// Input bytes per gzip member.
    static let memberSize = 4 << 20
    /// The libdeflate level: the fastest whose output is no larger than `gzip -6`'s on the
    /// benchmark's 256 MiB lending database (whole file, libdeflate-gzip: level 5 1.004×,
    /// level 6 0.999×, level 4 1.035×), at 0.30× gzip -6's time.
    static let level: Int32 = 6
    /// Bytes before the deflate data in our member headers: 10 fixed, XLEN, subfield `DC`.
    static let headerSize = 20
    /// Members worked on at once: one per core, at most 8 (each holds two 4 MiB buffers).
    static var workers: Int { max(1, min(ProcessInfo.processInfo.activeProcessorCount, 8)) }

    /// Compresses the file at `source` into `output` at `level` (see `compressMembers` for
    /// `following` and the result).
    /// - Throws: `Failure` `.io` on read or write errors.
    @discardableResult
    static func compress(source: String, into output: StoredOutput, level: Int32 = Gzip.level, following: CopyFollower? = nil,
                         progress: (Int64) -> Void = { _ in }) throws -> Bool {
        try compressMembers(source: source, into: output, following: following, progress: progress) { input throws(Failure) in
            try deflateMember(input, level: level)
        }
    }

    /// Cuts the file at `source` into `memberSize` pieces, turns each into an independent
    /// member with `member` on every core at once, and writes them in order into `output`
    /// (an empty file gives one empty member). The gzip members here and zstd's frames are
    /// made this way.
    ///
    /// With `following`, `source` is a copy still being written (`Connection.copy(following:)`):
    /// each read waits until its bytes are final, and the first page is the predicted page 1.
    /// Returns false when the copy could not be followed after all: the output is then not the
    /// copy's and must be discarded. True otherwise.
    /// - Throws: `Failure` `.io` on read or write errors, what `member` throws.
    @discardableResult
    static func compressMembers(source: String, into output: StoredOutput, following: CopyFollower? = nil, progress: (Int64) -> Void,
                                _ member: @Sendable (UnsafeRawBufferPointer) throws(Failure) -> [UInt8]) throws -> Bool {
        let input = open(source, O_RDONLY | O_CLOEXEC)
        guard input >= 0 else { throw DurableFile.posixFailure("cannot open \(source)", errno) }
        defer { close(input) }
        // One array read into and shared read-only with the workers: it is written again only
        // after `Parallel.map` returned and dropped their references (no copy on write).
        var buffer = [UInt8](repeating: 0, count: memberSize * workers)
        var consumed: Int64 = 0
        while true {
            if let following, !following.waitUntilWritten(below: consumed + Int64(buffer.count)) { return false }
            let filled = try buffer.withUnsafeMutableBytes { buffer in
                let filled = try DurableFile.readFully(input, into: buffer, path: source)
                if consumed == 0, let following { following.patchFirstPage(of: buffer, count: filled) }
                return filled
            }
            if filled == 0 && consumed > 0 { break }
            consumed += Int64(filled)
            let read = buffer
            let members = try Parallel.map(max(1, (filled + memberSize - 1) / memberSize), width: workers) { i throws(Failure) in
                let start = i * memberSize
                return try read.withUnsafeBytes { read in
                    Result { () throws(Failure) in try member(UnsafeRawBufferPointer(rebasing: read[start..<min(start + memberSize, filled)])) }
                }.get()
            }
            for bytes in members {
                try bytes.withUnsafeBytes { try output.write($0) }
            }
            progress(consumed)
            if filled < buffer.count { break }
        }
        // Whatever was read, it is the copy's only if the copy ended as followed.
        return following?.waitUntilWritten(below: .max) ?? true
    }

    /// Deflates `input` into one complete gzip member whose header records the member's length:
    /// libdeflate's whole-buffer raw DEFLATE between a header and trailer written here (RFC 1952:
    /// magic, CM 8, FLG FEXTRA, MTIME 0, XFL 0, OS 3 (Unix), XLEN 8 with subfield `DC`; CRC-32
    /// and ISIZE after the data).
    /// - Throws: `Failure` `.io` if libdeflate cannot allocate its compressor.
    static func deflateMember(_ input: UnsafeRawBufferPointer, level: Int32) throws(Failure) -> [UInt8] {
        guard let compressor = libdeflate_alloc_compressor(level) else { throw Failure(.compressionLibraryFailed, "libdeflate could not allocate a compressor (out of memory)") }
        defer { libdeflate_free_compressor(compressor) }
        let bound = libdeflate_deflate_compress_bound(compressor, input.count)
        var output = [UInt8](repeating: 0, count: headerSize + bound + 8)
        let header: [UInt8] = [0x1f, 0x8b, 8, 4, 0, 0, 0, 0, 0, 3, 8, 0, 0x44, 0x43, 4, 0]
        let written = output.withUnsafeMutableBytes { out -> Int in
            out.copyBytes(from: header)
            return libdeflate_deflate_compress(compressor, input.baseAddress, input.count, out.baseAddress! + headerSize, bound)
        }
        guard written > 0 || input.isEmpty else { throw Failure(.compressionLibraryFailed, "libdeflate could not compress a member") }
        let crc = libdeflate_crc32(0, input.baseAddress, input.count)
        let length = headerSize + written + 8
        output.removeLast(output.count - length)
        withUnsafeBytes(of: crc.littleEndian) { output.replaceSubrange(length - 8..<length - 4, with: $0) }
        withUnsafeBytes(of: UInt32(truncatingIfNeeded: input.count).littleEndian) { output.replaceSubrange(length - 4..<length, with: $0) }
        withUnsafeBytes(of: UInt32(length).littleEndian) { output.replaceSubrange(16..<20, with: $0) }
        return output
    }

    /// One member found through its header's length field.
    struct Member: Sendable {
        var offset: Int64
        var length: Int
        var inflatedOffset: Int64
        var inflatedLength: Int
    }

    /// Every member's place in the file and in the output, read from the `DC` length fields and
    /// the members' size trailers; nil when any member lacks the field or the lengths do not
    /// tile the file exactly (another tool's gzip, or damage: the one-pass inflate judges it).
    static func memberIndex(_ fd: Int32, size: Int64) -> [Member]? {
        var members = [Member]()
        var offset: Int64 = 0
        var inflated: Int64 = 0
        var header = [UInt8](repeating: 0, count: headerSize)
        var trailer: UInt32 = 0
        while offset < size {
            guard pread(fd, &header, headerSize, off_t(offset)) == headerSize,
                  header[0] == 0x1f, header[1] == 0x8b, header[2] == 8, header[3] == 4,
                  header[10] == 8, header[11] == 0, header[12] == 0x44, header[13] == 0x43, header[14] == 4, header[15] == 0
            else { return nil }
            let length = Int(header[16]) | Int(header[17]) << 8 | Int(header[18]) << 16 | Int(header[19]) << 24
            // deflate never grows a 4 MiB member by more than a few hundred bytes.
            guard length >= headerSize + 8, length <= memberSize + memberSize / 256 + 1024, offset + Int64(length) <= size,
                  pread(fd, &trailer, 4, off_t(offset) + off_t(length) - 4) == 4 else { return nil }
            let inflatedLength = Int(UInt32(littleEndian: trailer))
            guard inflatedLength <= memberSize else { return nil }
            members.append(Member(offset: offset, length: length, inflatedOffset: inflated, inflatedLength: inflatedLength))
            offset += Int64(length)
            inflated += Int64(inflatedLength)
        }
        return members.isEmpty ? nil : members
    }

    /// Inflates the members of an indexed file on every core at once, writing each at its place.
    /// - Throws: `Failure` `.badData` when zlib rejects a member (bad data, CRC or length) or a
    ///   member does not end where its header says; `.io` on read or write errors.
    static func inflate(members: [Member], source: String, input: Int32, into output: Int32, outputPath: String,
                        stop: () -> Bool = { false }, progress: (Int64) -> Void = { _ in }) throws {
        // Each worker's two buffers, kept from batch to batch: the compressed member, the inflated.
        let buffers = Parallel.Pool { ([UInt8](repeating: 0, count: members.map(\.length).max() ?? 0), [UInt8](repeating: 0, count: memberSize)) }
        var inflated: Int64 = 0
        for batch in stride(from: 0, to: members.count, by: workers) {
            if stop() { throw stopped(source) }
            progress(inflated)
            let members = Array(members[batch..<min(members.count, batch + workers)])
            inflated += members.reduce(0) { $0 + Int64($1.inflatedLength) }
            _ = try Parallel.map(members.count, width: workers) { i throws(Failure) in
                try buffers.borrow { (pair: inout ([UInt8], [UInt8])) throws(Failure) in
                    try inflateMember(members[i], source: source, input: input, compressed: &pair.0, inflated: &pair.1, output: output, outputPath: outputPath)
                }
            }
        }
    }

    /// Inflates one indexed member: read it, inflate it whole (zlib checks its CRC and length),
    /// write the result at its place in `output`.
    private static func inflateMember(_ member: Member, source: String, input: Int32, compressed: inout [UInt8], inflated: inout [UInt8],
                                      output: Int32, outputPath: String) throws(Failure) {
        let result = compressed.withUnsafeMutableBytes { compressed in
            inflated.withUnsafeMutableBytes { inflated in
                Result { () throws(Failure) in
                    try inflateMember(member, source: source, input: input, compressed: compressed, inflated: inflated, output: output, outputPath: outputPath)
                }
            }
        }
        try result.get()
    }

    /// `inflateMember` into the worker's buffers.
    private static func inflateMember(_ member: Member, source: String, input: Int32, compressed: UnsafeMutableRawBufferPointer,
                                      inflated: UnsafeMutableRawBufferPointer, output: Int32, outputPath: String) throws(Failure) {
        var done = 0
        while done < member.length {
            let n = pread(input, compressed.baseAddress! + done, member.length - done, off_t(member.offset) + off_t(done))
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else { throw DurableFile.posixFailure("cannot read \(source)", n < 0 ? errno : EIO) }
            done += n
        }
        // libdeflate checks the member whole: header, data, CRC-32 and length.
        guard let decompressor = libdeflate_alloc_decompressor() else { throw Failure(.compressionLibraryFailed, "libdeflate could not allocate a decompressor (out of memory)") }
        defer { libdeflate_free_decompressor(decompressor) }
        var consumed = 0
        var produced = 0
        let rc = libdeflate_gzip_decompress_ex(decompressor, compressed.baseAddress, member.length, inflated.baseAddress, inflated.count,
                                               &consumed, &produced)
        guard rc == LIBDEFLATE_SUCCESS, consumed == member.length, produced == member.inflatedLength else {
            let reason = rc == LIBDEFLATE_BAD_DATA ? "bad data or checksum" : rc == LIBDEFLATE_SUCCESS ? "member length mismatch" : "libdeflate error \(rc.rawValue)"
            throw Failure(.backupCompressionDamaged, "\(source) is not a valid gzip file: \(reason) in the member at byte \(member.offset)",
                          hint: "the backup is damaged; use another one")
        }
        try DurableFile.writeAll(fd: output, UnsafeRawBufferPointer(rebasing: inflated[0..<produced]), at: member.inflatedOffset, path: outputPath)
    }

    /// Inflates every gzip member of `source` into the open file `output`: indexed members
    /// (ours) on every core at once, any other gzip in one pass.
    /// - Throws: `Failure` `.badData` for a truncated stream, a bad CRC or length, trailing
    ///   garbage or anything else zlib rejects; `.io` on read or write errors.
    /// The result must come to exactly `expected` bytes (the manifest's database size; nil:
    /// any): a stream that would inflate past it is stopped there, one that ends short refused.
    /// `stop` is asked every few MiB: true ends the work with `Failure` `.failed` (a signal).
    static func inflate(source: String, into output: Int32, outputPath: String, expected: Int64? = nil,
                        stop: () -> Bool = { false }, progress: (Int64) -> Void = { _ in }) throws {
        let input = open(source, O_RDONLY | O_CLOEXEC)
        guard input >= 0 else { throw DurableFile.posixFailure("cannot open \(source)", errno) }
        defer { close(input) }
        let wrongSize = { (total: Int64) in
            Failure(.backupSizeMismatch, "\(source) inflates to \(total) bytes, not the \(expected ?? 0) its manifest records",
                    hint: "the backup is damaged; use another one")
        }
        var info = stat()
        if fstat(input, &info) == 0, let members = memberIndex(input, size: Int64(info.st_size)) {
            let total = members.reduce(Int64(0)) { $0 + Int64($1.inflatedLength) }
            if let expected, total != expected { throw wrongSize(total) }
            return try inflate(members: members, source: source, input: input, into: output, outputPath: outputPath, stop: stop, progress: progress)
        }
        try inflateStream(input, source: source, into: output, outputPath: outputPath, expected: expected, wrongSize: wrongSize,
                          stop: stop, progress: progress)
    }

    /// Inflates another tool's gzip (members without our length field) in one pass through
    /// zlib, member after member, in 1 MiB reads (see `inflate(source:…)` for the checks).
    private static func inflateStream(_ input: Int32, source: String, into output: Int32, outputPath: String, expected: Int64?,
                                      wrongSize: (Int64) -> Failure, stop: () -> Bool, progress: (Int64) -> Void) throws {
        var total: Int64 = 0
        var stream = z_stream()
        guard inflateInit2_(&stream, 15 + 16, ZLIB_VERSION, Int32(MemoryLayout<z_stream>.size)) == Z_OK else {
            throw Failure(.compressionLibraryFailed, "zlib inflateInit2 failed")
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
                if stop() { throw stopped(source) }
                progress(total)
                let n = try DurableFile.readFully(input, into: inBuffer, path: source)
                if n == 0 { break }
                sawInput = true
                stream.next_in = inBuffer.baseAddress!.assumingMemoryBound(to: Bytef.self)
                stream.avail_in = uInt(n)
            }
            if atMemberEnd {
                guard inflateReset(&stream) == Z_OK else { throw Failure(.compressionLibraryFailed, "zlib inflateReset failed") }
                atMemberEnd = false
            }
            stream.next_out = outBuffer.baseAddress!.assumingMemoryBound(to: Bytef.self)
            stream.avail_out = uInt(outBuffer.count)
            let rc = CZlib.inflate(&stream, Z_NO_FLUSH)
            let produced = outBuffer.count - Int(stream.avail_out)
            needInput = stream.avail_out != 0 || rc == Z_STREAM_END
            if produced > 0 {
                total += Int64(produced)
                if let expected, total > expected { throw wrongSize(total) }
                try DurableFile.writeAll(fd: output, UnsafeRawBufferPointer(rebasing: outBuffer[0..<produced]), path: outputPath)
            }
            switch rc {
            case Z_STREAM_END: atMemberEnd = true
            case Z_OK: continue
            case Z_BUF_ERROR where stream.avail_in == 0: continue
            default:
                let reason = stream.msg.map { String(cString: $0) } ?? "zlib error \(rc)"
                throw Failure(.backupCompressionDamaged, "\(source) is not a valid gzip file: \(reason)",
                              hint: "the backup is damaged; use another one")
            }
        }
        guard sawInput, atMemberEnd else {
            throw Failure(.backupCompressionDamaged, "\(source) is truncated: the gzip stream ends early",
                          hint: "the backup is damaged; use another one")
        }
        if let expected, total != expected { throw wrongSize(total) }
    }

    /// The failure of work stopped by a signal (not damage: nothing is recorded about the file).
    static func stopped(_ source: String) -> Failure {
        Failure(.backupInterrupted, "the work on \(source) was stopped before it finished")
    }
}
