import Encryption
import Foundation
import Support

extension BackupStore {
    /// An encrypted copy of a plain backup, for a push: a hidden temp file in this folder (the
    /// caller removes it) holding the backup age-encrypted to `recipients`, and the manifest of
    /// that copy (`<name>.age`: its own sha256 and size, the plain file's in `encryption`). The
    /// backup is read once: what is encrypted is checked against the backup's manifest, so a
    /// damaged backup never leaves the host.
    /// - Throws: `Failure` `.badData` when the backup does not match its manifest (the temp file
    ///   is removed), `.io`.
    public func encryptedCopy(of entry: BackupEntry, to recipients: [AgeRecipient],
                              progress: (Int64) -> Void) throws -> (path: String, manifest: Manifest) {
        guard var manifest = entry.manifest, !entry.encrypted else {
            throw Failure(.backupNotEncryptable, "backup \(entry.name) has no readable manifest or is encrypted already; it is not encrypted again")
        }
        let name = entry.name + BackupStore.encryptedSuffix
        let temp = DurableFile.temporaryPath(for: folder + "/" + name)
        let fd = try DurableFile.createNew(temp)
        var complete = false
        defer {
            close(fd)
            if !complete { unlink(temp) }
        }
        let output = try StoredOutput(fd: fd, path: temp, recipients: recipients)
        try output.write(contentsOf: entry.path, progress: progress)
        let digests = try output.finish()
        let content = digests.content!
        guard content.bytes == manifest.bytes, content.sha256 == manifest.sha256 else {
            throw Failure(.backupChecksumMismatch, "backup \(entry.name) does not match its manifest (\(content.bytes) bytes, sha256 \(content.sha256.prefix(12))…; the manifest says \(manifest.bytes) bytes, \(manifest.sha256.prefix(12))…): it is not pushed",
                          hint: "check it with 'deployctl backups verify \(instance ?? manifest.instance ?? stem) \(entry.name)', and push a good one")
        }
        manifest.name = name
        manifest.sha256 = digests.sha256
        manifest.bytes = digests.bytes
        manifest.verification = nil
        manifest.encryption = Manifest.Encryption(recipients: recipients.map(\.description), plaintextSha256: content.sha256,
                                                  plaintextBytes: content.bytes)
        complete = true
        return (temp, manifest)
    }
}
