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

    /// The manifest's path.
    public var manifestPath: String { path + ".json" }
    /// Whether the stored file is gzip.
    public var compressed: Bool { name.hasSuffix(".gz") }
    /// The last check of these bytes: "verified", "failed", "never verified", or "no manifest".
    public var status: String {
        guard let manifest else { return "no manifest" }
        if let check = manifest.verification, check.sha256 == manifest.sha256 { return check.result == "ok" ? "verified" : "failed" }
        return manifest.verifiedAt == nil ? "never verified" : "verified"
    }
}

/// The backups folder of one instance: names, listing, lookup, retention.
///
/// Reads only; writing backups is `Snapshotter`'s job and removing them `prune`'s.
public struct BackupStore: Sendable {
    /// The backups folder.
    public let folder: String
    /// The live database's file stem (`lending_app_prod` for `lending_app_prod.db`).
    public let stem: String

    public init(folder: String, databasePath: String) {
        self.folder = folder
        let file = URL(fileURLWithPath: databasePath).lastPathComponent
        self.stem = file.hasSuffix(".db") ? String(file.dropLast(3)) : file
    }

    /// Labels are what a name segment may hold: letters, digits, `_` and `-`.
    /// - Throws: `Failure` `.usage`.
    public static func validate(label: String) throws {
        let ok = !label.isEmpty && label.count <= 64 && label.unicodeScalars.allSatisfy {
            ($0 >= "a" && $0 <= "z") || ($0 >= "A" && $0 <= "Z") || ($0 >= "0" && $0 <= "9") || $0 == "_" || $0 == "-"
        }
        guard ok else {
            throw Failure(.usage, "invalid label '\(label)': use letters, digits, '_' and '-' (at most 64)")
        }
    }

    /// Creates the folder (0700) if missing and checks that files can be created in it.
    /// - Throws: `Failure` `.cannotCreate` naming the folder.
    public func prepareForWriting() throws {
        var isDirectory: ObjCBool = false
        if FileManager.default.fileExists(atPath: folder, isDirectory: &isDirectory) {
            guard isDirectory.boolValue else {
                throw Failure(.cannotCreate, "backups folder \(folder) is not a folder",
                              hint: "move the file away or set another backups path in the instance config")
            }
        } else {
            do {
                try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true,
                                                        attributes: [.posixPermissions: 0o700])
            } catch {
                throw Failure(.cannotCreate, "cannot create backups folder \(folder): \(Self.reason(error))",
                              hint: "check the parent folder's owner and permissions, or set another backups path")
            }
        }
        let probe = DurableFile.temporaryPath(for: folder + "/probe")
        let fd = open(probe, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
        guard fd >= 0 else {
            let code = errno
            throw Failure(.cannotCreate, "backups folder \(folder) is not writable: \(String(cString: strerror(code)))",
                          hint: "check the folder's owner and permissions (chmod u+w), or set another backups path")
        }
        close(fd)
        unlink(probe)
    }

    private static func reason(_ error: Error) -> String {
        if let underlying = (error as NSError).userInfo[NSUnderlyingErrorKey] as? NSError,
           underlying.domain == NSPOSIXErrorDomain {
            return String(cString: strerror(Int32(underlying.code)))
        }
        return (error as NSError).localizedDescription
    }

    /// Checks that `name` is a bare file name inside this folder.
    /// - Throws: `Failure` `.usage` for a path, `..`, or a name that is not a backup's.
    public static func validate(backupName name: String) throws {
        guard !name.isEmpty, !name.contains("/"), name != ".", name != "..", !name.contains(".."),
              !name.hasPrefix(".") else {
            throw Failure(.usage, "invalid backup name '\(name)': give a bare name from 'deployctl backups list', not a path")
        }
        guard name.hasSuffix(".db") || name.hasSuffix(".db.gz") else {
            throw Failure(.usage, "invalid backup name '\(name)': backup names end in .db or .db.gz")
        }
    }

    /// Every backup in the folder, newest first (by `created_at`, then name). Temp files,
    /// manifests and anything that is not a regular file (a symbolic link above all: it could
    /// point at another instance's live database) are not backups. A missing folder holds none.
    public func entries() -> [BackupEntry] {
        guard let names = try? FileManager.default.contentsOfDirectory(atPath: folder) else { return [] }
        let decoder = JSON.decoder()
        return names.filter { !$0.hasPrefix(".") && ($0.hasSuffix(".db") || $0.hasSuffix(".db.gz")) }
            .compactMap { name -> BackupEntry? in
                let path = folder + "/" + name
                // attributesOfItem does not follow links: a link posing as a backup is no backup.
                guard let attributes = try? FileManager.default.attributesOfItem(atPath: path),
                      attributes[.type] as? FileAttributeType == .typeRegular else { return nil }
                let manifest = (try? Data(contentsOf: URL(fileURLWithPath: path + ".json")))
                    .flatMap { try? decoder.decode(Manifest.self, from: $0) }
                return BackupEntry(
                    name: name, path: path, manifest: manifest,
                    label: manifest?.label ?? labelFromName(name) ?? "?",
                    createdAt: manifest?.createdAt ?? (attributes[.modificationDate] as? Date) ?? .distantPast,
                    bytes: (attributes[.size] as? NSNumber)?.int64Value ?? 0)
            }
            .sorted { ($0.createdAt, $0.name) > ($1.createdAt, $1.name) }
    }

    /// The backup named `name`.
    /// - Throws: `Failure` `.usage` for a bad name, `.badData` for a symbolic link or other
    ///   non-regular file, `.missingInput` when there is no such backup.
    public func entry(named name: String) throws -> BackupEntry {
        try Self.validate(backupName: name)
        let path = folder + "/" + name
        if let type = (try? FileManager.default.attributesOfItem(atPath: path))?[.type] as? FileAttributeType, type != .typeRegular {
            throw Failure(.badData, "\(path) is \(type == .typeSymbolicLink ? "a symbolic link" : "not a regular file"), not a backup deployctl wrote; it is never read",
                          hint: "pick a backup from 'deployctl backups list', or remove the link")
        }
        guard let entry = entries().first(where: { $0.name == name }) else {
            throw Failure(.missingInput, "no backup named \(name) in \(folder)",
                          hint: "list the backups with 'deployctl backups list'")
        }
        return entry
    }

    /// Parses the label out of `<stem>_<label>_<YYYYMMDD>_<HHMMSS>[_<n>].db[.gz]`.
    func labelFromName(_ name: String) -> String? {
        guard name.hasPrefix(stem + "_") else { return nil }
        var rest = name.dropFirst(stem.count + 1)
        rest = rest.hasSuffix(".db.gz") ? rest.dropLast(6) : rest.dropLast(3)
        var parts = rest.split(separator: "_", omittingEmptySubsequences: false).map(String.init)
        if parts.count >= 4, parts.last!.allSatisfy(\.isNumber), parts[parts.count - 2].count == 6,
           parts[parts.count - 3].count == 8 {
            parts.removeLast()
        }
        guard parts.count >= 3 else { return nil }
        return parts.dropLast(2).joined(separator: "_")
    }

    /// A name for a new backup that no file (nor manifest) in the folder uses: the first of
    /// `<stem>_<label>_<time>`, then `…_1`, `…_2`, … A name is never reused.
    public func newName(label: String, at date: Date, compressed: Bool) -> String {
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = TimeZone(identifier: "UTC")
        formatter.dateFormat = "yyyyMMdd_HHmmss"
        let base = "\(stem)_\(label)_\(formatter.string(from: date))"
        let existing = Set((try? FileManager.default.contentsOfDirectory(atPath: folder)) ?? [])
        var n = 0
        while true {
            let stemName = n == 0 ? base : "\(base)_\(n)"
            let taken = [".db", ".db.gz", ".db.json", ".db.gz.json"].contains { existing.contains(stemName + $0) }
            if !taken { return stemName + (compressed ? ".db.gz" : ".db") }
            n += 1
        }
    }
}
