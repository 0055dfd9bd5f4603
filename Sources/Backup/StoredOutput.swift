import Encryption
import Foundation
import SQLite
import Support

/// The file a backup is stored as, written once from start to end: as given, or
/// age-encrypted on the way to the disk (`….age`) when there are recipients. Hashes what it is
/// given (the content) and what it writes (the stored file): the two checksums a manifest
/// records.
final class StoredOutput {
    let fd: Int32
    let path: String
    private let encryptor: AgeEncryptor?
    // Optional so that `finish` can take them (a hasher is finalized once).
    private var content: SHA256? = SHA256()
    private var stored: SHA256? = SHA256()
    private var contentBytes: Int64 = 0
    private var storedBytes: Int64 = 0

    /// What was written: the stored file's size and SHA-256, and, when encrypted, the
    /// content's (what decryption must give back).
    struct Digests: Sendable {
        var bytes: Int64
        var sha256: String
        var content: (bytes: Int64, sha256: String)?
    }

    /// Writes into the open file `fd` (at `path`, for messages), encrypting to `recipients` when
    /// there are any (the age header is written at once).
    /// - Throws: `Failure` `.io`.
    init(fd: Int32, path: String, recipients: [AgeRecipient]) throws {
        self.fd = fd
        self.path = path
        encryptor = recipients.isEmpty ? nil : try AgeEncryptor(recipients: recipients)
        if let encryptor { try encryptor.prologue.withUnsafeBytes { try emit($0) } }
    }

    /// Adds content.
    /// - Throws: `Failure` `.io` (disk full shows as ENOSPC).
    func write(_ bytes: UnsafeRawBufferPointer) throws {
        guard let encryptor else { return try emit(bytes) }
        content?.update(bytes)
        contentBytes += Int64(bytes.count)
        try encryptor.write(bytes) { try emit($0) }
    }

    /// Adds the whole file at `source`, read in 1 MiB blocks; with `following`, a copy still
    /// being written, read as `Gzip.compressMembers` does. Returns false when that copy could
    /// not be followed after all (what was written is then not the copy's).
    /// - Throws: `Failure` `.io`.
    @discardableResult
    func write(contentsOf source: String, following: CopyFollower? = nil, progress: (Int64) -> Void) throws -> Bool {
        let input = open(source, O_RDONLY | O_CLOEXEC)
        guard input >= 0 else { throw DurableFile.posixFailure("cannot open \(source)", errno) }
        defer { close(input) }
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 1 << 20, alignment: 16)
        defer { buffer.deallocate() }
        var done: Int64 = 0
        while true {
            if let following, !following.waitUntilWritten(below: done + Int64(buffer.count)) { return false }
            let n = try DurableFile.readFully(input, into: buffer, path: source)
            if n == 0 { break }
            if done == 0, let following { following.patchFirstPage(of: buffer, count: n) }
            try write(UnsafeRawBufferPointer(rebasing: buffer[0..<n]))
            done += Int64(n)
            progress(done)
        }
        return following?.waitUntilWritten(below: .max) ?? true
    }

    /// Writes what is left (the last encrypted chunk) and returns the checksums. Not fsynced.
    /// - Throws: `Failure` `.io`.
    func finish() throws -> Digests {
        guard let encryptor else { return Digests(bytes: storedBytes, sha256: try stored.take()!.finalizeHex(), content: nil) }
        try encryptor.finish { try emit($0) }
        return Digests(bytes: storedBytes, sha256: try stored.take()!.finalizeHex(), content: (contentBytes, try content.take()!.finalizeHex()))
    }

    private func emit(_ bytes: UnsafeRawBufferPointer) throws {
        try DurableFile.writeAll(fd: fd, bytes, path: path)
        stored?.update(bytes)
        storedBytes += Int64(bytes.count)
    }
}
