import Foundation
import Support

/// Whole age files on disk: read in 1 MiB blocks, memory flat.
public enum AgeFile {
    static let blockSize = 1 << 20

    /// Decrypts the age file at `path` with `identities`, handing each authenticated piece of
    /// plaintext to `emit` (nothing unauthenticated is ever handed on; a caller writing to disk
    /// removes what it wrote when this throws).
    /// - Throws: `Failure` `.badData` (not age, malformed, no identity matched, a chunk that does
    ///   not authenticate, truncated), `.io` on read errors; what `emit` throws.
    public static func decrypt(_ path: String, identities: [AgeIdentity], name: String,
                               emit: (UnsafeRawBufferPointer) throws -> Void) throws {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw DurableFile.posixFailure("cannot open \(path)", errno) }
        defer { close(fd) }
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: blockSize, alignment: 16)
        defer { buffer.deallocate() }
        var filled = try DurableFile.readFully(fd, into: buffer, path: path)
        let decryptor = try AgeDecryptor(header: UnsafeRawBufferPointer(rebasing: buffer[0..<filled]), identities: identities, file: name)
        var start = decryptor.headerLength
        while filled > 0 {
            try decryptor.write(UnsafeRawBufferPointer(rebasing: buffer[start..<filled]), emit: emit)
            filled = try DurableFile.readFully(fd, into: buffer, path: path)
            start = 0
        }
        try decryptor.finish(emit: emit)
    }
}
