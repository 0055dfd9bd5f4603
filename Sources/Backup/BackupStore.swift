import Encryption
import Foundation
import Support

/// One backup in a store: its file, and its manifest when it has a readable one.
public struct BackupEntry: Sendable, Equatable {
    /// The file name, e.g. `lending_app_prod_snapshot_20261124_101500.db.gz`.
    public let name: String
    /// The full path of the backup file.
    public let path: String
    /// The manifest, nil when it is missing or unreadable.
    public let manifest: Manifest?
    /// The label, from the manifest or else parsed from the name.
    public let label: String
    /// Creation time, from the manifest or else the file's mtime.
    public let createdAt: Date
    /// The stored file's size.
    public let bytes: Int64

    public init(name: String, path: String, manifest: Manifest?, label: String, createdAt: Date, bytes: Int64) {
        self.name = name
        self.path = path
        self.manifest = manifest
        self.label = label
        self.createdAt = createdAt
        self.bytes = bytes
    }

    /// The manifest's path.
    public var manifestPath: String { path + ".json" }
    /// Whether the stored file is compressed (`.gz` or `.zst`).
    public var compressed: Bool { compression != .none }
    /// How the stored file is compressed, by its name.
    public var compression: Compression { Compression.of(name: name) }
    /// Whether the stored file is age-encrypted (`….age`).
    public var encrypted: Bool { name.hasSuffix(BackupStore.encryptedSuffix) }
    /// The last check of these bytes.
    public var status: BackupStatus {
        guard let manifest else { return .noManifest }
        if let check = manifest.verification, check.sha256 == manifest.sha256 {
            guard check.result == .ok else { return .failed }
            return check.check == .sha256 ? .checksumOnly : .verified
        }
        return manifest.verifiedAt == nil ? .neverVerified : .verified
    }

    /// Whether deployctl made this copy itself (`pre_<migration>` before a deploy, `pre_restore`
    /// and `pre_putback` in a restore): kept for undoing that run, never a scheduled backup.
    public var isOwnCopy: Bool { label.hasPrefix(BackupEntry.ownCopyPrefix) }

    /// The label prefix of the copies deployctl makes itself.
    public static let ownCopyPrefix = "pre_"

    /// How far ahead of the clock a backup may be dated before it counts as dated in the future
    /// (clock skew between hosts sharing a folder stays under it).
    public static let futureTolerance: TimeInterval = 300

    /// Whether the backup is dated more than `futureTolerance` after `now`: written under a
    /// wrong clock. Its age is unknown, so it is never counted as the newest.
    public func isFutureDated(now: Date) -> Bool {
        createdAt > now.addingTimeInterval(Self.futureTolerance)
    }
}

/// The last check of a backup's bytes, as `backups list` and `--json` print it (the raw values).
public enum BackupStatus: String, Sendable, Codable, CustomStringConvertible {
    case verified
    case checksumOnly = "checksum only"
    case failed
    case neverVerified = "never verified"
    case noManifest = "no manifest"

    /// As `backups list` and the questions print it (`never verified`).
    public var description: String { rawValue }
}

/// The backups folder of one instance: names, listing, lookup, retention.
///
/// Reads only; writing backups is `Snapshotter`'s job and removing them `prune`'s.
public struct BackupStore: Sendable {
    /// The backups folder.
    public let folder: String
    /// The live database's file stem (`lending_app_prod` for `lending_app_prod.db`).
    public let stem: String
    /// The clock's time when the store was opened: what "dated in the future" is measured against.
    public let now: Date

    /// The instance the folder belongs to, for the commands hints name.
    public var instance: String?

    /// The hint for a backup that cannot be used: the command that lists the others.
    var anotherBackupHint: String {
        "use another backup (deployctl backups list \(instance ?? stem))"
    }

    /// Told the bytes done of the total as a check reads a backup (inflating, then the
    /// checksum of the stored file), for a progress line.
    public var checkProgress: @Sendable (_ done: Int64, _ total: Int64) -> Void = { _, _ in }

    /// Asked during long checks (`integrity_check`): true stops them (a signal arrived).
    public var stopped: @Sendable () -> Bool = { false }

    /// The age identities that open encrypted backups: nil when none is configured; throws
    /// when one is configured but cannot be used (a mode others can read, a missing file).
    public var identities: @Sendable () throws -> [AgeIdentity]? = { nil }
    /// Where the identity is configured, for messages (`[encryption] identity_file in …`).
    public var identitySetting = "[encryption] identity_file in the instance config"

    public init(folder: String, databasePath: String, now: Date = Date()) {
        self.folder = folder
        self.now = now
        let file = URL(fileURLWithPath: databasePath).lastPathComponent
        self.stem = file.hasSuffix(".db") ? String(file.dropLast(3)) : file
    }

    /// A store for another folder (a scratch one) that stops and decrypts as `other` does.
    public init(folder: String, databasePath: String, now: Date, like other: BackupStore) {
        self.init(folder: folder, databasePath: databasePath, now: now)
        stopped = other.stopped
        instance = other.instance
        checkProgress = other.checkProgress
        identities = other.identities
        identitySetting = other.identitySetting
    }

    /// Labels are what a name segment may hold: letters, digits, `_` and `-`.
    /// - Throws: `Failure` `.usage`.
    public static func validate(label: String) throws {
        let ok = !label.isEmpty && label.count <= 64 && label.unicodeScalars.allSatisfy {
            ($0 >= "a" && $0 <= "z") || ($0 >= "A" && $0 <= "Z") || ($0 >= "0" && $0 <= "9") || $0 == "_" || $0 == "-"
        }
        guard ok else {
            throw Failure(.backupInvalidLabel, "invalid label '\(label)': use letters, digits, '_' and '-' (at most 64)")
        }
    }

    /// Creates the folder if missing (with its parent's owner and mode: `DurableFile.createFolder`) and checks that files can be created in it.
    /// - Throws: `Failure` `.cannotCreate` naming the folder.
    public func prepareForWriting() throws {
        var isDirectory: ObjCBool = false
        if FileManager.default.fileExists(atPath: folder, isDirectory: &isDirectory) {
            guard isDirectory.boolValue else {
                throw Failure(.backupFolderUnusable, "backups folder \(folder) is not a folder",
                              hint: "move the file away or set another backups path in the instance config")
            }
        } else {
            do {
                try DurableFile.createFolder(folder, called: "backups folder")
            } catch let failure as Failure {
                throw Failure(failure.kind == .io ? failure.code : .backupFolderUnusable, failure.message,
                              hint: "check the parent folder's owner and permissions, or set another backups path")
            }
        }
        let probe = DurableFile.temporaryPath(for: folder + "/probe")
        let fd = open(probe, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
        guard fd >= 0 else {
            let code = errno
            if code == ENOSPC || code == EDQUOT {
                throw Failure(.backupFolderFull, "backups folder \(folder) has no room for a new file: \(String(cString: strerror(code)))",
                              hint: "free space (or inodes: df -i) there, or set another backups path")
            }
            throw Failure(.backupFolderUnusable, "backups folder \(folder) is not writable: \(String(cString: strerror(code)))",
                          hint: "check the folder's owner and permissions (chmod u+w), or set another backups path")
        }
        close(fd)
        unlink(probe)
    }

    /// The suffix of an age-encrypted backup, after its `.db[.gz|.zst]`.
    public static let encryptedSuffix = ".age"

    /// A backup name without its `.age` suffix (the name of the file inside).
    public static func unencryptedName(_ name: String) -> String {
        name.hasSuffix(encryptedSuffix) ? String(name.dropLast(encryptedSuffix.count)) : name
    }

    /// Whether a name ends as a backup's does: `.db`, `.db.gz` or `.db.zst`, then maybe `.age`.
    static func hasBackupSuffix(_ name: String) -> Bool {
        let inner = unencryptedName(name)
        return inner.hasSuffix(".db") || inner.hasSuffix(".db.gz") || inner.hasSuffix(".db.zst")
    }

    /// Every suffix a backup or its manifest may have after `<stem>_<label>_<time>[_<n>]`.
    static let suffixes: [String] = Compression.allCases.flatMap { compression in
        ["", encryptedSuffix].flatMap { age in ["", ".json"].map { ".db" + compression.suffix + age + $0 } }
    }

    /// Checks that `name` is a bare file name inside this folder.
    /// - Throws: `Failure` `.usage` for a path, `..`, or a name that is not a backup's.
    public static func validate(backupName name: String) throws {
        guard !name.isEmpty, !name.contains("/"), name != ".", name != "..", !name.contains(".."),
              !name.hasPrefix(".") else {
            throw Failure(.backupInvalidName, "invalid backup name '\(name)': give a bare name from 'deployctl backups list', not a path")
        }
        guard hasBackupSuffix(name) else {
            throw Failure(.backupInvalidName, "invalid backup name '\(name)': backup names end in .db, .db.gz or .db.zst, then maybe .age")
        }
    }

    /// A file in the backups folder that is not a deployctl backup, and why: it is listed apart,
    /// never restored, verified or deleted.
    public struct OtherFile: Sendable, Equatable {
        public let name: String
        public let reason: String
    }

    /// Every backup in the folder, newest first (by `created_at`, then name), those dated in
    /// the future last (a wrong clock wrote them; they are never taken as the newest): a regular file
    /// whose name is in the grammar for this database's stem and whose manifest (describing
    /// this very file) reads. Anything else is no backup (see `otherFiles`).
    public func entries() -> [BackupEntry] { scan().backups }

    /// The files in the folder that are not backups (temp files and manifests aside), with
    /// the reason: a symbolic link (it could point at another instance's live database), a
    /// name outside the grammar (the live database itself, if the folder were its folder), no
    /// or an unreadable manifest, a manifest of another file.
    public func otherFiles() -> [OtherFile] { scan().others }

    private func scan() -> (backups: [BackupEntry], others: [OtherFile]) {
        guard let names = try? FileManager.default.contentsOfDirectory(atPath: folder) else { return ([], []) }
        let decoder = JSON.decoder()
        var backups = [BackupEntry]()
        var others = [OtherFile]()
        for name in names.sorted() where !name.hasPrefix(".") {
            let path = folder + "/" + name
            if name.hasSuffix(".json") && names.contains(String(name.dropLast(5))) { continue }
            // attributesOfItem does not follow links: a link posing as a backup is no backup.
            guard let attributes = try? FileManager.default.attributesOfItem(atPath: path) else { continue }
            guard attributes[.type] as? FileAttributeType == .typeRegular else {
                let link = attributes[.type] as? FileAttributeType == .typeSymbolicLink
                others.append(OtherFile(name: name, reason: link ? "a symbolic link" : "not a regular file"))
                continue
            }
            if name.hasSuffix(".json"), orphanManifest(of: String(name.dropLast(5))) != nil {
                others.append(OtherFile(name: name, reason: "the manifest of \(name.dropLast(5)), whose file is gone: 'backups remove' with that name retires it"))
                continue
            }
            guard labelFromName(name) != nil else {
                others.append(OtherFile(name: name, reason: "not named \(stem)_<label>_<time>.db[.gz|.zst][.age]"))
                continue
            }
            guard let data = try? Data(contentsOf: URL(fileURLWithPath: path + ".json")) else {
                others.append(OtherFile(name: name, reason: "no manifest"))
                continue
            }
            guard let manifest = try? decoder.decode(Manifest.self, from: data) else {
                others.append(OtherFile(name: name, reason: "its manifest does not read"))
                continue
            }
            guard manifest.name == name else {
                others.append(OtherFile(name: name, reason: "its manifest describes another file (\(manifest.name))"))
                continue
            }
            backups.append(BackupEntry(name: name, path: path, manifest: manifest, label: manifest.label, createdAt: manifest.createdAt,
                                       bytes: (attributes[.size] as? NSNumber)?.int64Value ?? 0))
        }
        let now = now
        return (backups.sorted { a, b in
            let (aFuture, bFuture) = (a.isFutureDated(now: now), b.isFutureDated(now: now))
            if aFuture != bFuture { return !aFuture }
            if a.createdAt != b.createdAt { return a.createdAt > b.createdAt }
            // Same instant: `_10` was issued after `_9`.
            return (Self.sequence(a.name), a.name) > (Self.sequence(b.name), b.name)
        }, others)
    }

    /// The `_<n>` a name got for being the n+1th of its second (0 without one).
    static func sequence(_ name: String) -> Int {
        var stem = String(unencryptedName(name).dropLast(Compression.of(name: name).suffix.count))
        stem = stem.hasSuffix(".db") ? String(stem.dropLast(3)) : stem
        let parts = stem.split(separator: "_")
        guard parts.count >= 4, parts[parts.count - 2].count == 6, let n = Int(parts[parts.count - 1]), parts[parts.count - 1].count < 6 else { return 0 }
        return n
    }

    /// The backup named `name`.
    /// - Throws: `Failure` `.usage` for a bad name, `.badData` for a file that is not a
    ///   backup (a symbolic link, no manifest, …), `.missingInput` when there is no such file.
    public func entry(named name: String) throws -> BackupEntry {
        try Self.validate(backupName: name)
        let (backups, others) = scan()
        if let entry = backups.first(where: { $0.name == name }) { return entry }
        if let other = others.first(where: { $0.name == name }) {
            throw Failure(.backupForeignFile, "\(folder)/\(name) is not a backup deployctl wrote (\(other.reason)); it is never read",
                          hint: "pick a backup from 'deployctl backups list \(instance ?? stem)'")
        }
        throw Failure(.backupNotFound, "no backup named \(name) in \(folder)",
                      hint: "list the backups with 'deployctl backups list \(instance ?? stem)'")
    }

    /// Parses the label out of `<stem>_<label>_<YYYYMMDD>_<HHMMSS>[_<n>].db[.gz|.zst][.age]`;
    /// nil for a name outside that grammar.
    func labelFromName(_ name: String) -> String? {
        guard name.hasPrefix(stem + "_"), Self.hasBackupSuffix(name) else { return nil }
        var rest = Self.unencryptedName(name).dropFirst(stem.count + 1)
        rest = rest.dropLast(Compression.of(name: name).suffix.count + 3)
        var parts = rest.split(separator: "_", omittingEmptySubsequences: false).map(String.init)
        let digits = { (part: String, count: Int?) in !part.isEmpty && (count == nil || part.count == count) && part.allSatisfy { $0.isASCII && $0.isNumber } }
        if parts.count >= 4, digits(parts.last!, nil), digits(parts[parts.count - 2], 6), digits(parts[parts.count - 3], 8) {
            parts.removeLast()
        }
        guard parts.count >= 3, digits(parts[parts.count - 1], 6), digits(parts[parts.count - 2], 8) else { return nil }
        let label = parts.dropLast(2).joined(separator: "_")
        return (try? Self.validate(label: label)) != nil ? label : nil
    }

    /// A name for a new backup that no file (nor manifest) in the folder uses: the first of
    /// `<stem>_<label>_<time>`, then `…_1`, `…_2`, … A name is never reused.
    public func newName(label: String, at date: Date, compressed: Bool) -> String {
        newName(label: label, at: date, compression: compressed ? .gzip : .none)
    }

    /// `newName(label:at:compressed:)` for any compression, encrypted (`.age`) or not.
    public func newName(label: String, at date: Date, compression: Compression, encrypted: Bool = false) -> String {
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = TimeZone(identifier: "UTC")
        formatter.dateFormat = "yyyyMMdd_HHmmss"
        let base = "\(stem)_\(label)_\(formatter.string(from: date))"
        let existing = Set((try? FileManager.default.contentsOfDirectory(atPath: folder)) ?? [])
        // Names issued before, though a prune may have removed their files since.
        let issued = Set(issuedNames())
        var n = 0
        while true {
            let stemName = n == 0 ? base : "\(base)_\(n)"
            let taken = Self.suffixes.contains { existing.contains(stemName + $0) || issued.contains(stemName + $0) }
            if !taken { return stemName + ".db" + compression.suffix + (encrypted ? Self.encryptedSuffix : "") }
            n += 1
        }
    }

    /// The record of names issued in this folder (`.deployctl-names`, one per line), kept so
    /// that a name is never reused after a prune removed its file. Only names of the current
    /// second can collide, so only recent ones are kept.
    var namesRecord: String { folder + "/.deployctl-names" }

    func issuedNames() -> [String] {
        ((try? String(contentsOfFile: namesRecord, encoding: .utf8)) ?? "").split(separator: "\n").map(String.init)
    }

    /// Records `name` as issued (durably), keeping the last 100 names.
    /// - Throws: `Failure` `.io`.
    public func recordIssued(_ name: String) throws {
        let names = Array((issuedNames() + [name]).suffix(100))
        try DurableFile.write(Data((names.joined(separator: "\n") + "\n").utf8), to: namesRecord)
    }
}
