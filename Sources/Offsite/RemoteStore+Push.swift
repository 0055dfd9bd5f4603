import Backup
import Encryption
import Foundation
import Support

/// One backup copied (or found already there) by a push.
public struct PushResult: Sendable {
    public let name: String
    public let remote: String
    public let key: String
    public let bytes: Int64
    /// False when the store already had this exact copy.
    public let uploaded: Bool
    public let seconds: Double
}

/// What a push reports and where it may be stopped.
public struct PushHooks: Sendable {
    public var progress: ProgressHandler
    /// Runs between the parts of an upload; throws to stop it (the upload is then aborted).
    public var betweenParts: @Sendable () throws -> Void
    /// Runs after the copy is up, before its manifest goes up.
    public var beforeManifest: @Sendable () throws -> Void

    public init(progress: @escaping ProgressHandler, betweenParts: @escaping @Sendable () throws -> Void = {},
                beforeManifest: @escaping @Sendable () throws -> Void = {}) {
        self.progress = progress
        self.betweenParts = betweenParts
        self.beforeManifest = beforeManifest
    }
}

extension RemoteStore {
    /// Pushes one local backup into this host's folder: checked against its manifest's sha256
    /// first (a damaged backup is never copied), uploaded (`S3Client.upload`: no partial object
    /// ever under its name, size checked after), then its manifest, signed, last. With
    /// `recipients` a plain backup leaves the host encrypted, as `<name>.age`, made in a temp
    /// file beside it that is removed afterwards. A copy already there with the same checksum
    /// and this instance's valid authenticator is skipped. All of it within `timeout`.
    /// - Throws: `Failure` (`offsite.copy_foreign` when another backup has the name,
    ///   `offsite.push_source_damaged` for a local backup that fails its checksum, the store's failures).
    public func push(_ entry: BackupEntry, from store: BackupStore, recipients: [AgeRecipient], signingKey: SigningKey,
                     timeout: Duration, now: @escaping @Sendable () -> Date, hooks: PushHooks) throws -> PushResult {
        let started = ContinuousClock.now
        guard let local = entry.manifest else {
            throw Failure(.offsiteCopyUnusable, "backup \(entry.name) has no readable manifest; it is not pushed", hint: "push another backup")
        }
        let encrypt = !recipients.isEmpty && !entry.encrypted
        let name = encrypt ? entry.name + BackupStore.encryptedSuffix : entry.name
        let key = folder() + name
        let s3 = s3.within(timeout, "pushing \(name)", setting: "push_timeout = \(Int(timeout.seconds)) s")
        if let existing = try alreadyThere(key, local: local, s3: s3, signingKey: signingKey) {
            return PushResult(name: name, remote: self.name, key: key, bytes: existing, uploaded: false, seconds: (ContinuousClock.now - started).seconds)
        }
        var upload = entry.path
        var manifest = local
        var temp: String?
        defer { if let temp { unlink(temp) } }
        if encrypt {
            (upload, manifest) = try store.encryptedCopy(of: entry, to: recipients) { done in
                hooks.progress(.working(.encrypting, done: done, total: local.bytes))
            }
            temp = upload
        }
        // One pass over what goes up: the sha256 its manifest must match (the encrypted copy was
        // checked against the backup's as it was made), and each piece's MD5 and SHA-256 for the upload.
        let digests = try S3Client.fileDigests(path: upload)
        guard digests.bytes == manifest.bytes, digests.sha256 == manifest.sha256 else {
            throw Failure(.offsitePushSourceDamaged, "backup \(entry.name) does not match its manifest (\(digests.bytes) bytes, sha256 \(digests.sha256.prefix(12))…; the manifest says \(manifest.bytes) bytes, \(manifest.sha256.prefix(12))…): it is not pushed",
                          hint: "check it with 'deployctl backups verify \(store.instance ?? manifest.instance ?? store.stem) \(entry.name)', and push a good one")
        }
        let uploaded = try s3.upload(file: upload, key: key, digests: digests, progress: { done, total in
            hooks.progress(.working(.uploading(name: name, remote: self.name), done: done, total: total))
        }, checkpoint: hooks.betweenParts)
        hooks.progress(.ended(announce: true))
        manifest.remote = Manifest.RemoteCopy(remote: self.name, host: hostId, etag: uploaded.etag, parts: uploaded.parts, pushedAt: now())
        manifest.verification = nil
        try hooks.beforeManifest()
        let manifestBytes = Array(try JSON.encoder().encode(manifest))
        try s3.put(key + ".json", bytes: manifestBytes,
                   metadata: [(SigningKey.header, try signingKey.authenticator(key: key + ".json", manifest: manifestBytes))],
                   what: "uploading the manifest of \(key)")
        return PushResult(name: name, remote: self.name, key: key, bytes: uploaded.bytes, uploaded: true, seconds: (ContinuousClock.now - started).seconds)
    }

    /// The size of the copy already under `key` when it is this exact backup, intact, with this
    /// instance's signed manifest (nothing to upload); nil when it must go up (again).
    ///
    /// What a manifest says is trusted only when this instance's key signed it. One that is
    /// unsigned (pushed before manifests were signed), signed with another key, or altered is
    /// replaced when it describes this backup's bytes, whatever instance it claims (the same
    /// bytes go up again, signed); when it describes other bytes it is left alone (it may be
    /// the only copy of something), and the failure says so rather than blaming a shared host_id.
    /// - Throws: `Failure` `offsite.copy_foreign` when a different backup has the name.
    private func alreadyThere(_ key: String, local: Manifest, s3: S3Client, signingKey: SigningKey) throws -> Int64? {
        guard let existing = try s3.getWithHeaders(key + ".json", what: "reading the manifest of \(key)"),
              let theirs = try? JSON.decoder().decode(Manifest.self, from: Data(existing.bytes)) else { return nil }
        let verdict = try signingKey.check(existing.headers[SigningKey.header], key: key + ".json", manifest: existing.bytes)
        let sameBytes = theirs.contentSha256 == local.contentSha256
        if let problem = Authenticity.problem(verdict, keyPath: keyPath, allowUnsigned: false) {
            if sameBytes { return nil }
            let backup = String(key.split(separator: "/").last ?? Substring(key))
            throw Failure(.offsiteCopyForeign, "remote '\(name)' already holds a copy named \(key) that is not this backup (sha256 \(theirs.contentSha256.prefix(12))…, this backup's \(local.contentSha256.prefix(12))…) and whose manifest this instance's key did not sign (\(problem)): it is not overwritten",
                          hint: "see what it is with 'deployctl backups verify \(instance) --remote \(name) \(backup) --download --allow-unsigned'; if nobody needs it, remove it and \(backup).json from the store, then push again")
        }
        guard sameBytes, theirs.instance == nil || theirs.instance == local.instance else {
            throw Failure(.offsiteCopyForeign, "remote '\(name)' already holds a different backup named \(key) (instance \(theirs.instance ?? "?"), sha256 \(theirs.contentSha256.prefix(12))…): it is not overwritten",
                          hint: "another host or instance writes under the same prefix and host_id; give each its own host_id (or url) in [[offsite]]")
        }
        guard let object = try s3.head(key, what: "checking \(key)"), object.size == theirs.bytes,
              theirs.remote.map({ $0.etag == object.etag.lowercased() }) ?? false else {
            // The same backup, but the object is missing, damaged or replaced: upload it again.
            return nil
        }
        return object.size
    }
}
