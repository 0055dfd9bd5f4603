import Foundation
import Support

extension Snapshotter {
    /// Stores an uncompressed backup (a `pre_restore` copy, written plain under the write lock)
    /// again compressed as `compression` says, through the same durable path as a snapshot
    /// (temp file, fsync, link without replacing, folder fsync, manifest likewise), checks the
    /// new file (sha256, `integrity_check`) and only then removes the plain one.
    ///
    /// The new backup keeps the label, creation time, source and migrations of the old; its
    /// name is the old one's with the next free `_<n>` and the compression's suffix; its
    /// manifest's `compressed_from` names the file it was made from. A plain file whose bytes no longer
    /// match its manifest is left as it is (65): it is not made to look good by a new checksum.
    /// - Throws: `Failure` `.badData` for a damaged source or a new file that fails its check
    ///   (which is then removed; the source stays), `.io`; `SQLiteError`.
    public func recompress(_ entry: BackupEntry, as compression: Compression, now: Date) throws -> BackupEntry {
        guard let original = entry.manifest, compression != .none, !entry.compressed, !entry.encrypted else { return entry }
        var request = SnapshotRequest(databasePath: original.sourcePath, label: entry.label, compression: compression,
                                      now: original.createdAt, instance: original.instance, database: original.database,
                                      note: "compressed (\(compression.rawValue)) from \(entry.name), stored plain when it was written")
        request.checkpoint = {}
        let made = try publish(request, progress: { _ in }) { path, _ in
            try Self.copyChecked(entry.path, into: path, sha256: original.sha256)
            return nil
        }
        var manifest = made.manifest!
        (manifest.sqliteVersion, manifest.appliedMigrations) = (original.sqliteVersion, original.appliedMigrations)
        manifest.compressedFrom = entry.name
        try store.record(manifest, of: made)
        let compressed = BackupEntry(name: made.name, path: made.path, manifest: manifest, label: made.label, createdAt: made.createdAt, bytes: made.bytes)
        let check = try store.verify(compressed, now: now)
        guard check.problems.isEmpty, !check.vanished else {
            try store.remove([compressed])
            throw Failure(.backupRecompressFailed, "the \(compression.rawValue) copy of \(entry.name) failed its check (\(check.problems.first ?? "it vanished")); it was removed and \(entry.name) kept")
        }
        try store.remove([entry])
        return check.entry
    }

    /// Copies `source` into the existing empty file `path`, failing when its bytes' sha256 is
    /// not `sha256` (the manifest's).
    static func copyChecked(_ source: String, into path: String, sha256: String) throws {
        let input = open(source, O_RDONLY | O_CLOEXEC)
        guard input >= 0 else { throw DurableFile.posixFailure("cannot open \(source)", errno) }
        defer { close(input) }
        let output = open(path, O_WRONLY | O_CLOEXEC)
        guard output >= 0 else { throw DurableFile.posixFailure("cannot open \(path)", errno) }
        defer { close(output) }
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 1 << 20, alignment: 16)
        defer { buffer.deallocate() }
        var hasher = SHA256()
        while true {
            let n = try DurableFile.readFully(input, into: buffer, path: source)
            if n == 0 { break }
            hasher.update(UnsafeRawBufferPointer(rebasing: buffer[0..<n]))
            var written = 0
            while written < n {
                let w = write(output, buffer.baseAddress! + written, n - written)
                guard w > 0 else { throw DurableFile.posixFailure("cannot write \(path)", errno) }
                written += w
            }
        }
        guard try hasher.finalizeHex() == sha256 else {
            throw Failure(.backupChecksumMismatch, "\(source) does not match the sha256 its manifest records; it is left as it is")
        }
    }
}
