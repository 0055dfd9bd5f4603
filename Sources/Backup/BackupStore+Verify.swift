import Encryption
import Foundation
import SQLite
import Support

/// The outcome of checking one backup.
public struct VerifyResult: Sendable {
    public let entry: BackupEntry
    /// Empty when the backup is good.
    public let problems: [String]
    /// The backup was removed (by a prune) while it was being checked: no result.
    public var vanished = false
    /// Encrypted, and only its checksum was checked (no identity configured).
    public var checksumOnly = false
    /// Encrypted, and the configured key is not one of its recipients: a key problem, not
    /// damage, so nothing was recorded in its manifest.
    public var wrongKey = false
    public var ok: Bool { problems.isEmpty }
}

/// A readable database file for a backup: the backup itself, or a temp inflated copy that is
/// removed by `discard()`.
public struct OpenedBackup: Sendable {
    /// A plain SQLite file holding the backup's database; open it `.immutable`.
    public let databasePath: String
    let temporary: Bool

    /// Removes the inflated temp copy, if one was made.
    public func discard() {
        if temporary { unlink(databasePath) }
    }
}

extension BackupStore {
    /// Checks a backup: its SHA-256 against the manifest, and SQLite's `integrity_check`
    /// (indexes against tables too) on the database opened read-only and immutable (an `.age`
    /// is decrypted, and a `.gz` or `.zst` inflated — every member — to temp files in the
    /// backups folder first). The checksum of a backup that is not encrypted is computed on a
    /// second core while the first runs the check; a mismatch is still what is reported.
    /// Leaves no file behind. When `keep` is true the readable copy is returned for the caller
    /// to use and discard (`syncCopy`: a temp copy fsynced too, for a restore into a new file); a
    /// caller that runs `integrityCheck` itself (beside other work, or not at all because these
    /// bytes already passed it) passes `runCheck: false`.
    /// - Throws: `Failure` `.badData` naming what is wrong (the first problem found);
    ///   `NoIdentityMatched` (65) when the configured key is not one of an encrypted backup's
    ///   recipients; `.usage` when no identity is configured; `.io` on read errors.
    public func check(_ entry: BackupEntry, keep: Bool = false, runCheck: Bool = true, syncCopy: Bool = false) throws -> OpenedBackup? {
        var opened: OpenedBackup?
        do {
            let stored: @Sendable () throws -> Void
            if entry.encrypted {
                // The stored checksum first: once it matches, a key that opens nothing is the
                // wrong key, not damage (`NoIdentityMatched`).
                let manifest = try checkStored(entry)
                let temp = DurableFile.temporaryPath(for: folder + "/" + BackupStore.unencryptedName(entry.name))
                try decrypt(entry, manifest, into: temp)
                defer { if entry.compressed { unlink(temp) } }
                opened = try inflated(entry, manifest, source: OpenedBackup(databasePath: temp, temporary: true))
                stored = {}
            } else {
                let manifest = try checkStored(entry, digest: false)
                do {
                    opened = try inflated(entry, manifest, source: OpenedBackup(databasePath: entry.path, temporary: false))
                } catch {
                    // Damage the checksum shows is what is reported.
                    _ = try checkStored(entry)
                    throw error
                }
                stored = { _ = try checkStored(entry) }
            }
            // integrity_check takes one core; the checksum of the stored file and the fsync of
            // a copy about to be restored from take the other core and the disk. A checksum
            // mismatch is still what is reported (reported first when both fail).
            let copy = opened!
            _ = try Parallel.both({
                if runCheck { try integrityCheck(copy, of: entry) }
            }, elsewhere: {
                try stored()
                if syncCopy && copy.temporary { try DurableFile.syncFile(copy.databasePath) }
            }, reportingFirst: .elsewhere)
        } catch {
            opened?.discard()
            throw error
        }
        if keep { return opened }
        opened?.discard()
        return nil
    }

    /// The backup's database as a file SQLite can open: `source` itself, or inflated from it
    /// into a temp file, never more and never less than the database the manifest records (a
    /// bomb stops there). On failure the temp file is removed.
    private func inflated(_ entry: BackupEntry, _ manifest: Manifest, source: OpenedBackup) throws -> OpenedBackup {
        guard entry.compressed else { return source }
        let inner = BackupStore.unencryptedName(entry.name)
        let temp = DurableFile.temporaryPath(for: folder + "/" + String(inner.dropLast(entry.compression.suffix.count)))
        let opened = OpenedBackup(databasePath: temp, temporary: true)
        let fd = try DurableFile.createNew(temp)
        do {
            defer { close(fd) }
            if entry.compression == .zstd {
                try Zstd.decompress(source: source.databasePath, into: fd, outputPath: temp, expected: manifest.databaseBytes, stop: stopped)
            } else {
                let total = manifest.databaseBytes + (entry.encrypted ? 0 : manifest.bytes)
                try Gzip.inflate(source: source.databasePath, into: fd, outputPath: temp, expected: manifest.databaseBytes, stop: stopped) { [checkProgress] done in
                    checkProgress(done, total)
                }
            }
        } catch let failure as Failure where failure.kind == .badData {
            opened.discard()
            // The formats do not know the instance: the hint names the command that does.
            throw Failure(failure.code, failure.message, hint: anotherBackupHint)
        } catch {
            opened.discard()
            throw error
        }
        return opened
    }

    /// Checks the stored file against its manifest, without opening it: SHA-256 and size (of
    /// the encrypted file for an encrypted backup: no key is needed), and for a plain backup
    /// that its size is the database's. Returns the manifest.
    /// - Throws: `Failure` `.badData` naming what differs; `.io` on read errors.
    public func checkStored(_ entry: BackupEntry) throws -> Manifest {
        try checkStored(entry, digest: true)
    }

    /// `checkStored`, without reading the file when `digest` is false (the manifest only).
    private func checkStored(_ entry: BackupEntry, digest: Bool) throws -> Manifest {
        guard let manifest = entry.manifest else {
            throw Failure(.backupManifestMissing, "backup \(entry.name) has no readable manifest (\(entry.name).json), so its checksum cannot be checked",
                          hint: "use another backup; a backup without a manifest was never finished")
        }
        if entry.encrypted, manifest.encryption == nil {
            throw Failure(.backupManifestMissing, "backup \(entry.name) is named as encrypted but its manifest has no encryption section",
                          hint: anotherBackupHint)
        }
        // An encrypted plain database decrypts to the database itself: the sizes must agree.
        if entry.encrypted, !entry.compressed, let encryption = manifest.encryption, encryption.plaintextBytes != manifest.databaseBytes {
            throw Failure(.backupSizeMismatch, "backup \(entry.name) decrypts to \(encryption.plaintextBytes) bytes, not the \(manifest.databaseBytes) of the database its manifest records",
                          hint: anotherBackupHint)
        }
        guard digest else { return manifest }
        // After an inflation, which counted the database's bytes first.
        let before = entry.compressed && !entry.encrypted ? manifest.databaseBytes : 0
        let (bytes, sha256) = try FileDigest.sha256(of: entry.path, stop: stopped) { [checkProgress] done in
            checkProgress(before + done, before + manifest.bytes)
        }
        guard sha256 == manifest.sha256, bytes == manifest.bytes else {
            throw Failure(.backupChecksumMismatch, "backup \(entry.name) is damaged: its SHA-256 is \(sha256) but the manifest says \(manifest.sha256) (\(bytes) of \(manifest.bytes) bytes)",
                          hint: anotherBackupHint)
        }
        if !entry.compressed, !entry.encrypted, bytes != manifest.databaseBytes {
            throw Failure(.backupSizeMismatch, "backup \(entry.name) holds \(bytes) bytes, not the \(manifest.databaseBytes) of the database its manifest records",
                          hint: anotherBackupHint)
        }
        return manifest
    }

    /// Decrypts an encrypted backup into the new file `temp` (streamed, memory flat), checking
    /// the size and SHA-256 of what comes out against the manifest's `encryption` section.
    /// Only authenticated chunks are written; on any failure `temp` is removed, so no
    /// plaintext is left on disk.
    /// - Throws: `Failure` `.usage` when no identity is configured (naming the setting),
    ///   `NoIdentityMatched`, `.badData` (damaged, truncated, not what the manifest says),
    ///   `.failed` when stopped by a signal, `.io`.
    func decrypt(_ entry: BackupEntry, _ manifest: Manifest, into temp: String) throws {
        let encryption = manifest.encryption!
        guard let identities = try identities() else {
            throw Failure(.backupNoIdentity, "backup \(entry.name) is encrypted (age), and no identity to decrypt it is configured: \(identitySetting) is not set",
                          hint: "set identity_file under [encryption] to the private key of one of its recipients: \(encryption.recipients.joined(separator: ", "))")
        }
        let fd = try DurableFile.createNew(temp)
        var complete = false
        defer {
            close(fd)
            if !complete { unlink(temp) }
        }
        var hasher = SHA256()
        var written: Int64 = 0
        let stopped = stopped
        try AgeFile.decrypt(entry.path, identities: identities, name: entry.name) { piece in
            if stopped() { throw Failure(.backupInterrupted, "the check of \(entry.name) was stopped before it finished") }
            written += Int64(piece.count)
            guard written <= encryption.plaintextBytes else {
                throw Failure(.backupSizeMismatch, "backup \(entry.name) decrypts to more than the \(encryption.plaintextBytes) bytes its manifest records",
                              hint: anotherBackupHint)
            }
            try DurableFile.writeAll(fd: fd, piece, path: temp)
            hasher.update(piece)
        }
        let sha256 = try hasher.finalizeHex()
        guard written == encryption.plaintextBytes, sha256 == encryption.plaintextSha256 else {
            throw Failure(.backupChecksumMismatch, "backup \(entry.name) decrypts to \(written) bytes with SHA-256 \(sha256), not the \(encryption.plaintextBytes) bytes and \(encryption.plaintextSha256) its manifest records",
                          hint: anotherBackupHint)
        }
        complete = true
    }

    /// SQLite's `integrity_check` of an opened backup, read-only and immutable.
    /// - Throws: `Failure` `.badData` naming the backup when it fails or is not a database.
    public func integrityCheck(_ opened: OpenedBackup, of entry: BackupEntry) throws {
        do {
            let db = try Connection(path: opened.databasePath, mode: .immutable)
            db.stopWhen(stopped)
            let problems = try db.integrityProblems(full: true)
            guard problems.isEmpty else {
                throw Failure(.backupIntegrityFailed, "backup \(entry.name) fails integrity_check: \(problems.prefix(3).joined(separator: "; "))",
                              hint: anotherBackupHint)
            }
        } catch let error as SQLiteError where error.interrupted {
            // Stopped (a signal), not damaged: nothing is recorded about the backup.
            throw Failure(.backupInterrupted, "the check of \(entry.name) was stopped before it finished")
        } catch let error as SQLiteError {
            throw Failure(.backupUnreadable, "backup \(entry.name) is not a readable SQLite database: \(error.sqliteMessage)",
                          hint: anotherBackupHint)
        } catch let failure as Failure where failure.kind == .badData {
            throw Failure(.backupUnreadable, "backup \(entry.name) is not a readable SQLite database: \(failure.message)",
                          hint: anotherBackupHint)
        }
    }

    /// Checks a backup and records the result, good or failed, in its manifest (when it has
    /// one): `verification`, and `verified_at` when it is good.
    /// - Throws: only for failures to record the result; a bad backup is a result.
    /// A backup a prune removes meanwhile is reported as vanished, and no manifest is left
    /// behind for it.
    public func verify(_ entry: BackupEntry, now: Date) throws -> VerifyResult {
        var problems = [String]()
        let gone = { !FileManager.default.fileExists(atPath: entry.path) }
        // Without an identity an encrypted backup's checksum is all that can be checked.
        let checksumOnly = entry.encrypted && entry.manifest != nil ? try identities() == nil : false
        do {
            if checksumOnly { _ = try checkStored(entry) } else { _ = try check(entry) }
        } catch let failure as Failure where failure.kind == .badData {
            problems = [failure.message]
        } catch let mismatch as NoIdentityMatched {
            var result = VerifyResult(entry: entry, problems: [mismatch.message])
            result.wrongKey = true
            return result
        } catch where gone() {
            return VerifyResult(entry: entry, problems: [], vanished: true)
        }
        guard var manifest = entry.manifest else { return VerifyResult(entry: entry, problems: problems) }
        if gone() { return VerifyResult(entry: entry, problems: [], vanished: true) }
        // A good checksum says less than the integrity_check these bytes already passed: keep that.
        if checksumOnly, problems.isEmpty, manifest.passedIntegrityCheck {
            var result = VerifyResult(entry: entry, problems: [])
            result.checksumOnly = true
            return result
        }
        manifest.verification = Manifest.Verification(at: now, check: checksumOnly ? .sha256 : .integrityCheck, result: problems.isEmpty ? .ok : .failed,
                                                      reason: problems.first, sha256: manifest.sha256)
        if problems.isEmpty && !checksumOnly { manifest.verifiedAt = now }
        try record(manifest, of: entry)
        // Removed between the check and the record: the manifest must not outlive its file.
        if gone() {
            unlink(entry.manifestPath)
            return VerifyResult(entry: entry, problems: [], vanished: true)
        }
        var result = VerifyResult(entry: BackupEntry(name: entry.name, path: entry.path, manifest: manifest, label: entry.label,
                                                     createdAt: entry.createdAt, bytes: entry.bytes), problems: problems)
        result.checksumOnly = checksumOnly
        return result
    }

    /// Rewrites a backup's manifest durably (temp file, fsync, rename, folder fsync).
    /// - Throws: `Failure` `.io`.
    public func record(_ manifest: Manifest, of entry: BackupEntry) throws {
        try DurableFile.write(try JSON.encoder().encode(manifest), to: entry.manifestPath, replace: true)
    }

    /// Removes backups and their manifests (the manifest first: an interrupted removal leaves at
    /// worst a file without a manifest, listed apart and never restored, never a manifest without
    /// its file), then fsyncs the folder.
    /// - Throws: `Failure` `.io`.
    public func remove(_ entries: [BackupEntry]) throws {
        for entry in entries {
            unlink(entry.manifestPath)
            guard unlink(entry.path) == 0 || errno == ENOENT else {
                throw DurableFile.posixFailure("cannot remove \(entry.path)", errno)
            }
        }
        if !entries.isEmpty { try DurableFile.syncDirectory(folder) }
    }
}

extension BackupStore {
    /// The manifest `<name>.json` of a backup whose file is gone (removed by hand), when it
    /// reads and describes `name`: `backups remove` retires it.
    public func orphanManifest(of name: String) -> Manifest? {
        let path = folder + "/" + name
        guard !FileManager.default.fileExists(atPath: path), labelFromName(name) != nil,
              let data = try? Data(contentsOf: URL(fileURLWithPath: path + ".json")),
              let manifest = try? JSON.decoder().decode(Manifest.self, from: data), manifest.name == name else { return nil }
        return manifest
    }

    /// Removes the manifest of a backup whose file is gone, and fsyncs the folder.
    /// - Throws: `Failure` `.io`.
    public func removeOrphanManifest(of name: String) throws {
        guard orphanManifest(of: name) != nil else { return }
        guard unlink(folder + "/" + name + ".json") == 0 || errno == ENOENT else {
            throw DurableFile.posixFailure("cannot remove \(folder)/\(name).json", errno)
        }
        try DurableFile.syncDirectory(folder)
    }
}
