import Backup
import Foundation
import Support

/// A key in a host's folder that is not a backup, with why (left alone: never restored,
/// verified or removed).
public struct NotABackup: Sendable {
    public let name: String
    public let reason: String
}

/// What one host's folder of a remote holds.
public struct RemoteListing: Sendable {
    /// Newest first; a copy whose manifest cannot be used sorts by the time in its name.
    public let backups: [RemoteBackup]
    public let others: [NotABackup]
}

extension RemoteStore {
    /// The copies under one host's folder (this host's by default), newest first, and the keys
    /// there that are not backups. Each copy's manifest must carry this instance's
    /// authenticator, else the copy has a problem (`CopyProblem.unauthenticated`), unless
    /// `allowUnsigned`. `localNames`: the local backups (a local backup counts for its
    /// encrypted copy too).
    /// - Throws: `Failure` `offsite.host_invalid` for a host that is not a folder name; the
    ///   store's failures.
    public func copies(host: String? = nil, allowUnsigned: Bool, localNames: Set<String>) throws -> RemoteListing {
        let host = host ?? hostId
        guard Self.isFolderName(host) else {
            throw Failure(.offsiteHostInvalid, "'\(host)' is not a host folder name (no '/', no '..')")
        }
        let folder = folder(host: host)
        let objects = try s3.list(prefix: folder)
        let byName = Dictionary(objects.map { (String($0.key.dropFirst(folder.count)), $0) }, uniquingKeysWith: { a, _ in a })
        var backups = [RemoteBackup]()
        var others = [NotABackup]()
        for (name, object) in byName.sorted(by: { $0.key < $1.key }) {
            if name.hasPrefix(".") { continue }  // the prune lease
            if name.hasSuffix(".json") {
                if byName[String(name.dropLast(5))] == nil { others.append(Self.other(name, "a manifest without its backup (an interrupted push or prune)")) }
                continue
            }
            guard !name.contains("/"), (try? BackupStore.validate(backupName: name)) != nil else {
                others.append(Self.other(name, "not a backup name deployctl writes"))
                continue
            }
            let read = try manifest(of: object, listed: byName[name + ".json"] != nil, allowUnsigned: allowUnsigned)
            if let instance = read.manifest?.instance, instance != self.instance, read.verdict != .missing {
                // A manifest with no authenticator at all may not say it is another instance's
                // (anyone with write access could hide the newest copy from --latest that way);
                // one signed with another key is that instance's copy: never listed, pruned or restored here.
                others.append(Self.other(name, "a copy of instance '\(Sanitized.text(instance, limit: 80, secrets: []))', not '\(self.instance)'"))
                continue
            }
            let issue = read.issue ?? read.manifest.flatMap { Self.mismatch($0, name: name, object: object) }
            backups.append(RemoteBackup(name: name, key: object.key, host: host, bytes: object.size, etag: object.etag,
                                        manifest: read.manifest, issue: issue, local: localNames.contains(name)))
        }
        // A copy whose manifest cannot be used sorts by the time in its name: a damaged newest copy
        // stays first, so --latest stops at it (65) instead of quietly taking an older one.
        backups.sort { ($0.createdAt ?? Self.nameDate($0.name) ?? .distantPast, $0.name) > ($1.createdAt ?? Self.nameDate($1.name) ?? .distantPast, $1.name) }
        return RemoteListing(backups: backups, others: others)
    }

    /// A copy's manifest, read and its authenticator checked: the manifest (nil when there is
    /// none or it cannot be read), the verdict on its authenticator, and the problem so far.
    private func manifest(of object: S3Client.Object, listed: Bool, allowUnsigned: Bool) throws
        -> (manifest: Manifest?, verdict: SigningKey.Verdict?, issue: CopyProblem?) {
        guard listed else { return (nil, nil, .noManifest) }
        guard let (bytes, headers) = try s3.getWithHeaders(object.key + ".json", what: "reading the manifest of \(object.key)") else {
            return (nil, nil, .manifestVanished)
        }
        guard let manifest = try? JSON.decoder().decode(Manifest.self, from: Data(bytes)) else { return (nil, nil, .manifestUnreadable) }
        let verdict = try signingKey?.check(headers[SigningKey.header], key: object.key + ".json", manifest: bytes)
        let problem = Authenticity.problem(verdict, keyPath: keyPath, allowUnsigned: allowUnsigned)
        return (manifest, verdict, problem.map { .unauthenticated($0) })
    }

    /// How an authentic manifest disagrees with the object it describes, if it does.
    private static func mismatch(_ manifest: Manifest, name: String, object: S3Client.Object) -> CopyProblem? {
        if manifest.name != name { return .namesOther(manifest.name) }
        if manifest.bytes != object.size { return .sizeDiffers(store: object.size, manifest: manifest.bytes) }
        if let recorded = manifest.remote?.etag, S3Client.isMD5ETag(object.etag), recorded != object.etag.lowercased() {
            return .replaced(etag: object.etag, recorded: recorded)
        }
        return nil
    }

    private static func other(_ name: String, _ reason: String) -> NotABackup {
        NotABackup(name: Sanitized.text(name, limit: 200, secrets: []), reason: reason)
    }

    /// A host folder name: one path segment of printable ASCII, not `.` or `..` (the rule of
    /// `host_id` in the config).
    public static func isFolderName(_ text: String) -> Bool {
        !text.isEmpty && text != "." && text != ".." && !text.contains("/") && !text.contains("\\")
            && text.unicodeScalars.allSatisfy { $0.value > 0x20 && $0.value < 0x7f }
    }

    /// The UTC time a backup's name carries (`…_YYYYMMDD_HHMMSS…`), or nil.
    static func nameDate(_ name: String) -> Date? {
        guard let range = name.range(of: #"_[0-9]{8}_[0-9]{6}"#, options: [.regularExpression, .backwards]) else { return nil }
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = TimeZone(identifier: "UTC")
        formatter.dateFormat = "yyyyMMdd_HHmmss"
        return formatter.date(from: String(name[range].dropFirst()))
    }

    /// The copy named `name`, or the newest one (optionally of `label`) that is finished, not
    /// dated after `latestBy` and not a `pre_restore` copy; a damaged newest copy is returned,
    /// never skipped.
    /// - Throws: `Failure` `offsite.copy_not_found`.
    public func choose(_ listing: RemoteListing, named name: String?, label: String?, latestBy: Date, host: String?, hint: String) throws -> RemoteBackup {
        if let name {
            try BackupStore.validate(backupName: name)
            guard let found = listing.backups.first(where: { $0.name == name }) else {
                throw Failure(.offsiteCopyNotFound, "remote '\(self.name)' has no backup \(name) under \(folder(host: host))", hint: hint)
            }
            return found
        }
        // Unfinished pushes (no manifest) are not backups yet; a damaged newest copy is refused, never skipped.
        guard let newest = listing.backups.first(where: { $0.manifest != nil && ($0.createdAt ?? .distantFuture) <= latestBy
                                                          && (label == nil || $0.label == label) && $0.label != "pre_restore" }) else {
            throw Failure(.offsiteCopyNotFound, "remote '\(self.name)' has no good backup\(label.map { " labelled \($0)" } ?? "") under \(folder(host: host))",
                          hint: hint + "; another host's copies need --host")
        }
        return newest
    }
}
