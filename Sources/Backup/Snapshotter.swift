import Encryption
import Foundation
import SQLite
import Support

/// What a snapshot should be.
public struct SnapshotRequest: Sendable {
    /// The live database.
    public var databasePath: String
    /// Label in the backup's name (`snapshot`, `pre_cashback_tables`, `pre_restore`, …).
    public var label: String
    /// Store as `.db.gz` (or `.db.zst`, `.db`: see `compression`).
    public var gzip: Bool { compression == .gzip }
    /// How to store the snapshot.
    public var compression: Compression
    /// Encrypt the stored file to these age recipients (`….age`); none: stored as it is.
    public var recipients: [AgeRecipient] = []
    /// Run `quick_check` on the copy before publishing it.
    public var verify: Bool
    /// How long to wait for locks.
    public var busyTimeout: Duration
    /// The creation time written to the name and manifest.
    public var now: Date
    /// The instance the backup belongs to, recorded in the manifest.
    public var instance: String?
    /// The live database's path relative to the deployment root, recorded in the manifest.
    public var database: String?
    /// Why the backup is stored as it is, recorded in the manifest (the `pre_restore` copy).
    public var note: String?
    /// The set this snapshot belongs to (an instance with several databases).
    public var set: Manifest.SetMembership?
    /// Called between phases (after the copy, after compressing, before publishing): throws to
    /// stop (an interrupt), and every partial file is removed.
    public var checkpoint: @Sendable () throws -> Void = {}
    /// Whether an interrupt has arrived: compression under way stops at once, and `checkpoint`
    /// then throws.
    public var interrupted: @Sendable () -> Bool = { false }

    public init(databasePath: String, label: String, gzip: Bool = false, compression: Compression? = nil, verify: Bool = false,
                busyTimeout: Duration = .seconds(5), now: Date = Date(), instance: String? = nil,
                database: String? = nil, note: String? = nil) {
        self.databasePath = databasePath
        self.label = label
        self.compression = compression ?? (gzip ? .gzip : .none)
        self.verify = verify
        self.busyTimeout = busyTimeout
        self.now = now
        self.instance = instance
        self.database = database
        self.note = note
    }
}

/// Takes online snapshots of a live database into a `BackupStore`.
public struct Snapshotter: Sendable {
    public let store: BackupStore

    public init(store: BackupStore) { self.store = store }

    /// Takes one snapshot with SQLite's online backup API and publishes it with its manifest.
    ///
    /// Guarantees: the live database is only read (one read transaction: a consistent copy even
    /// under a concurrent writer); the copy is stored in rollback-journal mode, 0600; it is
    /// written under a hidden temp name, fsynced, linked to a name no file has, and the folder is
    /// fsynced; the manifest follows the same way. On any failure every partial file is removed.
    /// - Throws: `Failure` `.missingInput`/`.badData` for the source, `.cannotCreate` for the
    ///   folder, `.io` for a short write or full disk; `SQLiteError`.
    public func snapshot(_ request: SnapshotRequest, progress: @escaping ProgressHandler = { _ in }) throws -> BackupEntry {
        try BackupStore.validate(label: request.label)
        let source = try Connection(path: request.databasePath, mode: .inspect, busyTimeout: request.busyTimeout)
        let interrupted = request.interrupted
        source.stopWhen { interrupted() }
        return try publish(request, progress: progress) { path, following in
            // A plain snapshot is the copy itself, fsynced: its writeback can start during the copy.
            let kept = request.compression == .none && request.recipients.isEmpty
            do {
                return try source.copy(into: path, timeout: request.busyTimeout, durable: kept, following: kept ? nil : following) { done, total in
                    progress(.working(.copying, done: done, total: total))
                }
            } catch let error as SQLiteError where error.interrupted {
                // Stopped between two steps of the copy: the checkpoint says why, in its words.
                try request.checkpoint()
                throw error
            }
        }
    }

    /// Publishes a snapshot whose database `fill` writes into the new empty file at the path it
    /// is given (not fsynced; stored in rollback-journal mode), with the same guarantees as
    /// `snapshot(_:progress:)`: a restore saves the live state this way while it holds the
    /// write lock. `fill` returns the file's digest when it computed it while writing
    /// (`Connection.copy`), else nil and the file is hashed here.
    /// - Throws: as `snapshot(_:progress:)`, and what `fill` throws.
    public func snapshot(_ request: SnapshotRequest, progress: @escaping ProgressHandler = { _ in },
                         fill: (String) throws -> WrittenDigest?) throws -> BackupEntry {
        try publish(request, progress: progress) { path, _ in try fill(path) }
    }

    /// `snapshot(_:progress:fill:)`, where `fill` may also hand a `CopyFollower` of the copy it
    /// writes to the function it is given: a compressed (or encrypted) snapshot is then
    /// compressed on another thread while the copy is still being written.
    func publish(_ request: SnapshotRequest, progress: @escaping ProgressHandler,
                 fill: (String, @escaping (CopyFollower) -> Void) throws -> WrittenDigest?) throws -> BackupEntry {
        try BackupStore.validate(label: request.label)
        try store.prepareForWriting()

        let encrypted = !request.recipients.isEmpty
        let name = store.newName(label: request.label, at: request.now, compression: request.compression, encrypted: encrypted)
        let finalPath = store.folder + "/" + name
        let plainName = BackupStore.unencryptedName(name)
        let tempDatabase = DurableFile.temporaryPath(for: store.folder + "/" + String(plainName.dropLast(request.compression.suffix.count)))
        var cleanup = [tempDatabase, tempDatabase + "-journal"]
        defer { for path in cleanup { unlink(path) } }

        progress(.working(.copying))
        let compressed = request.compression != .none || encrypted
        // The plain copy is scratch when compressed: only the compressed (or encrypted) file is
        // fsynced and kept. It is compressed as it is written when the copy can be followed.
        var early: (follower: CopyFollower, thread: Parallel.Background<(path: String, digests: StoredOutput.Digests)?>)?
        defer {
            // On every path out: stop it and wait for it before its files are removed.
            early?.follower.stop()
            _ = try? early?.thread.wait(report: { _ in })
        }
        let info = try copy(to: tempDatabase, verify: request.verify) { path in
            try fill(path) { follower in
                guard compressed else { return }
                let tempStored = DurableFile.temporaryPath(for: finalPath)
                cleanup.append(tempStored)
                early = (follower, Parallel.Background { report in
                    try compress(tempDatabase, into: tempStored, request, following: follower, progress: report).map { (tempStored, $0) }
                })
            }
        }
        try request.checkpoint()

        let (stored, digests) = compressed
            ? try finishCompressed(tempDatabase, as: finalPath, request, early: early, total: info.bytes, progress: progress, cleanup: &cleanup)
            : (tempDatabase, try Self.syncedPlainCopy(tempDatabase, written: info.written))
        progress(.ended(announce: true))
        try request.checkpoint()
        try DurableFile.publish(stored, as: finalPath)
        cleanup.append(finalPath)
        try store.recordIssued(name)
        // quick_check ran on the copy; an encrypted file is not known to open until a
        // `backups verify` with the identity decrypts it, so it is not recorded as verified.
        let manifest = Self.manifest(name: name, request, info, digests, verified: request.verify && !encrypted)
        try DurableFile.write(try JSON.encoder().encode(manifest), to: finalPath + ".json", replace: false)
        cleanup.removeAll()
        unlink(tempDatabase)
        return BackupEntry(name: name, path: finalPath, manifest: manifest, label: request.label,
                           createdAt: request.now, bytes: digests.bytes)
    }

    /// The compressed (or encrypted) file and its digests: the one compressed while the copy
    /// was written (`early`), or, when the copy could not be followed (a wrong page-1
    /// prediction, writes out of order), compressed now from the finished copy. Progress is
    /// reported on this thread meanwhile; an interrupt stops the compression.
    private func finishCompressed(_ tempDatabase: String, as finalPath: String, _ request: SnapshotRequest,
                                  early: (follower: CopyFollower, thread: Parallel.Background<(path: String, digests: StoredOutput.Digests)?>)?,
                                  total: Int64, progress: @escaping ProgressHandler, cleanup: inout [String]) throws -> (String, StoredOutput.Digests) {
        let phase: Phase = request.compression == .none ? .encrypting
            : .compressing(algorithm: request.compression.rawValue + (request.recipients.isEmpty ? "" : ", encrypting with age"))
        let report = { (done: Int64) in
            progress(.working(phase, done: done, total: total))
            if request.interrupted() { early?.follower.stop() }
        }
        if let followed = try early?.thread.wait(report: report) { return followed }
        if request.interrupted() { try request.checkpoint() }
        let tempStored = DurableFile.temporaryPath(for: finalPath)
        cleanup.append(tempStored)
        return (tempStored, try compress(tempDatabase, into: tempStored, request, following: nil, progress: report)!)
    }

    /// The plain copy kept as it is, fsynced, and its digests: hashed as it was written when
    /// `written` (the copy was then only read, by SQLite, immutable), else hashed by one core
    /// while the disk writes it.
    private static func syncedPlainCopy(_ path: String, written: WrittenDigest?) throws -> StoredOutput.Digests {
        if let written {
            try DurableFile.syncFile(path)
            return StoredOutput.Digests(bytes: written.bytes, sha256: written.sha256, content: nil)
        }
        let ((), (bytes, sha256)) = try Parallel.both({ try DurableFile.syncFile(path) }, elsewhere: { try FileDigest.sha256(of: path) })
        return StoredOutput.Digests(bytes: bytes, sha256: sha256, content: nil)
    }

    /// The manifest of the new backup `name`: what was copied (`info`), how it is stored
    /// (`digests`), and the `quick_check` when it ran on an unencrypted copy (`verified`).
    private static func manifest(name: String, _ request: SnapshotRequest, _ info: CopyInfo, _ digests: StoredOutput.Digests,
                                 verified: Bool) -> Manifest {
        var manifest = Manifest(
            name: name, sha256: digests.sha256, bytes: digests.bytes, compressed: request.compression != .none,
            compression: request.compression == .none ? nil : request.compression.rawValue, databaseBytes: info.bytes,
            pageSize: info.pageSize, pageCount: info.pageCount, sqliteVersion: Connection.libraryVersion,
            appliedMigrations: info.migrations, sourcePath: request.databasePath, createdAt: request.now,
            label: request.label, verifiedAt: verified ? request.now : nil,
            instance: request.instance, database: request.database, note: request.note,
            verification: verified ? Manifest.Verification(at: request.now, check: .quickCheck, result: .ok, reason: nil, sha256: digests.sha256) : nil)
        manifest.set = request.set
        manifest.encryption = digests.content.map {
            Manifest.Encryption(recipients: request.recipients.map(\.description), plaintextSha256: $0.sha256, plaintextBytes: $0.bytes)
        }
        return manifest
    }

    /// Compresses (or only encrypts) the copy `tempDatabase` into the new file `tempStored`,
    /// fsynced, as the request says. With `following`, while the copy is still being written;
    /// nil when it could not be followed (`tempStored` is then removed).
    /// - Throws: `Failure` `.io` (disk full shows as ENOSPC).
    private func compress(_ tempDatabase: String, into tempStored: String, _ request: SnapshotRequest,
                          following: CopyFollower?, progress: @escaping (Int64) -> Void) throws -> StoredOutput.Digests? {
        let fd = try DurableFile.createNew(tempStored)
        defer { close(fd) }
        let output = try StoredOutput(fd: fd, path: tempStored, recipients: request.recipients)
        let followed: Bool
        switch request.compression {
        case .zstd: followed = try Zstd.compress(source: tempDatabase, into: output, following: following, progress: progress)
        case .gzip: followed = try Gzip.compress(source: tempDatabase, into: output, following: following, progress: progress)
        case .none: followed = try output.write(contentsOf: tempDatabase, following: following, progress: progress)
        }
        guard followed else {
            unlink(tempStored)
            return nil
        }
        let digests = try output.finish()
        guard fsync(fd) == 0 else { throw DurableFile.posixFailure("cannot fsync \(tempStored)", errno) }
        return digests
    }

    struct CopyInfo {
        var bytes: Int64
        var pageSize: Int
        var pageCount: Int
        var migrations: [String]
        /// The file's digest, when `fill` computed it while writing.
        var written: WrittenDigest?
    }

    /// Creates the new file `path`, lets `fill` write the database into it (not yet fsynced),
    /// and reads its size and applied migrations back from the copy (opened immutable: read
    /// only, no journal or lock files, so the digest of what was written stays the file's).
    func copy(to path: String, verify: Bool, fill: (String) throws -> WrittenDigest?) throws -> CopyInfo {
        let fd = try DurableFile.createNew(path)
        close(fd)
        let written = try fill(path)

        let copy = try Connection(path: path, mode: .immutable)
        if verify {
            let problems = try copy.integrityProblems()
            guard problems.isEmpty else {
                throw Failure(.snapshotCopyDamaged, "the copy of the live database fails quick_check: \(problems.prefix(3).joined(separator: "; "))",
                              hint: "check the live database with 'deployctl verify \(store.instance ?? store.stem)'; it may be damaged")
            }
        }
        let pageSize = Int(try copy.scalar("PRAGMA page_size").int ?? 0)
        let pageCount = Int(try copy.scalar("PRAGMA page_count").int ?? 0)
        return CopyInfo(bytes: Int64(pageSize * pageCount), pageSize: pageSize, pageCount: pageCount,
                        migrations: try Self.appliedMigrations(copy), written: written)
    }

    /// The migration names recorded in `deployctl_migrations`, in order; empty when the table
    /// does not exist.
    static func appliedMigrations(_ db: Connection) throws -> [String] {
        guard try db.scalar("SELECT 1 FROM sqlite_schema WHERE type = 'table' AND name = 'deployctl_migrations'").int == 1 else {
            return []
        }
        return try db.rows("SELECT name FROM deployctl_migrations ORDER BY id").compactMap { $0[0].string }
    }
}

/// Whole-file digests.
public enum FileDigest {
    /// SHA-256 and size of the file at `path`, read in 1 MiB blocks. `stop` is asked before
    /// each: true ends the work with `Failure` `.failed` (a signal).
    public static func sha256(of path: String, stop: () -> Bool = { false },
                              progress: (Int64) -> Void = { _ in }) throws -> (bytes: Int64, sha256: String) {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw DurableFile.posixFailure("cannot open \(path)", errno) }
        defer { close(fd) }
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 1 << 20, alignment: 16)
        defer { buffer.deallocate() }
        var hasher = SHA256()
        var total: Int64 = 0
        while true {
            if stop() { throw Gzip.stopped(path) }
            let n = try DurableFile.readFully(fd, into: buffer, path: path)
            if n == 0 { break }
            hasher.update(UnsafeRawBufferPointer(rebasing: buffer[0..<n]))
            total += Int64(n)
            if total % (16 << 20) < Int64(n) { progress(total) }
        }
        return (total, try hasher.finalizeHex())
    }
}
