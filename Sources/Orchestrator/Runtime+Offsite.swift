import Backup
import Encryption
import Foundation
import Offsite
import Support

/// A backup in an object store: `<prefix>/<host>/<name>` and its manifest `<name>.json`
/// beside it, uploaded last.
public struct RemoteBackup: Sendable {
    public let name: String
    public let key: String
    public let host: String
    /// The object's size in the store.
    public let bytes: Int64
    public let etag: String
    public let manifest: Manifest?
    /// Why it is not a good copy (no manifest: an unfinished push; a size that differs from the
    /// manifest's); nil when it is good.
    public let problem: String?
    /// Whether the local backups folder has it too.
    public let local: Bool

    public var createdAt: Date? { manifest?.createdAt }
    public var label: String { manifest?.label ?? "?" }
}

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

/// The check of one remote copy.
public struct RemoteCheck: Sendable {
    public let name: String
    /// Empty when good.
    public let problems: [String]
    /// What was checked: size and ETag, or the full download, checksum and SQLite check.
    public let how: String
}

extension Runtime {
    /// The S3 client for one remote: credentials from the AWS SDKs' chain (`CredentialChain`,
    /// refreshed before temporary ones expire), region and endpoint from the table or else the
    /// environment and AWS config, the remote's deadlines and retries, trust roots from
    /// `ca_bundle`, `AWS_CA_BUNDLE` or the profile, a proxy from `HTTPS_PROXY`/`HTTP_PROXY`
    /// unless `NO_PROXY`, and a checkpoint that stops any network wait within a second of
    /// SIGINT or SIGTERM (docs/offsite.md).
    /// - Throws: `Failure` `.permission` when there are no credentials, `.usage` for a bad
    ///   `AWS_ENDPOINT_URL_S3` or proxy URL.
    func client(_ remote: OffsiteConfig) throws -> S3Client {
        let interruption = interruption
        let checkpoint: @Sendable () throws -> Void = {
            if let signal = interruption() {
                throw Failure(.failed, "interrupted by signal \(Self.signalName(signal)) while waiting for remote '\(remote.name)'; nothing partial is listed as good in the store")
            }
        }
        var chain = CredentialChain(environment: environment, remote: remote.name)
        chain.checkpoint = checkpoint
        let provider = try CredentialProvider(chain)
        // What the table leaves out comes from the environment and the AWS config, as in the SDKs.
        let region = remote.regionSet ? remote.region : chain.region
        var endpoint = remote.endpoint
        if !remote.endpointSet {
            let text = chain.env("AWS_ENDPOINT_URL_S3") ?? chain.env("AWS_ENDPOINT_URL") ?? "https://s3.\(region).amazonaws.com"
            do {
                endpoint = try Endpoint(parsing: text)
            } catch let failure as Failure {
                throw Failure(.usage, "remote '\(remote.name)': AWS_ENDPOINT_URL_S3: \(failure.message)", hint: "set endpoint in its [[offsite]] table, or fix the variable")
            }
        }
        let caBundle = remote.caBundle ?? chain.env("AWS_CA_BUNDLE") ?? chain.profileValue("ca_bundle")
        let host = remote.pathStyle ? endpoint : Endpoint(secure: endpoint.secure, host: "\(remote.bucket).\(endpoint.host)", port: endpoint.port)
        let proxy = try Proxy.forEndpoint(host, environment: environment)
        return S3Client(remote: remote.name, endpoint: endpoint, bucket: remote.bucket, pathStyle: remote.pathStyle,
                        signer: SigV4(credentials: provider.initial, region: region), clock: clock,
                        retry: RetryPolicy(attempts: remote.attempts), deadlines: remote.deadlines, caBundle: caBundle,
                        credentialProvider: provider, proxy: proxy, checkpoint: checkpoint)
    }

    /// Where an instance's offsite signing key lives: `offsite-signing.key` in its folder.
    static func signingKeyPath(_ config: InstanceConfig) -> String { config.folder + "/offsite-signing.key" }

    /// The instance's offsite signing key, or nil when it has none. With `create`, a missing
    /// key is made (0600, durably, never over a file) and its path announced once with a
    /// warning to back it up.
    /// - Throws: `Failure` `.usage` for a file that is not a key, `.io`, `.cannotCreate`.
    func signingKey(_ config: InstanceConfig, create: Bool) throws -> SigningKey? {
        let path = Self.signingKeyPath(config)
        if let text = try? String(contentsOfFile: path, encoding: .utf8) {
            return try SigningKey(fileText: text, path: path)
        }
        guard FileManager.default.fileExists(atPath: path) == false else {
            throw Failure(.io, "cannot read the offsite signing key \(path)", hint: "check its owner and mode (0600, readable by the user running deployctl)")
        }
        guard create else { return nil }
        let key = try SigningKey.generate()
        try DurableFile.write(Data(key.fileText.utf8), to: path, mode: 0o600, replace: false)
        events(.notice("made this instance's offsite signing key \(path) (key id \(key.id)): every copy pushed offsite is signed with it, and restore --remote accepts only copies it signed. Back the file up now, away from the bucket (docs/offsite.md, 'Signing key'); copy it to every host that restores this instance's copies"))
        return key
    }

    /// Why a manifest's authenticator is not good enough, or nil when it is (or unsigned
    /// copies are allowed).
    static func authenticatorProblem(_ verdict: SigningKey.Verdict?, keyPath: String, allowUnsigned: Bool) -> String? {
        guard !allowUnsigned else { return nil }
        let reason: String
        switch verdict {
        case .valid?: return nil
        case nil: reason = "this host has no offsite signing key (\(keyPath)) to check it with"
        case .missing?: reason = "its manifest carries no authenticator"
        case .otherKey(let id)?: reason = "its manifest was signed with another key (id \(id))"
        case .wrong?: reason = "its manifest's authenticator does not match (the manifest or its name was changed)"
        }
        return "not made by a holder of this instance's key: \(reason); never restored without --allow-unsigned"
    }

    /// `<prefix>/<host>/` (the prefix may be empty).
    static func remoteFolder(_ remote: OffsiteConfig, host: String) -> String {
        (remote.prefix.isEmpty ? "" : remote.prefix + "/") + host + "/"
    }

    /// The remotes a command acts on: the one named, or all of the instance's.
    func remotes(_ config: InstanceConfig, _ name: String?) throws -> [OffsiteConfig] {
        if let name { return [try config.remote(name)] }
        guard !config.offsite.isEmpty else { _ = try config.remote(nil); return [] }
        return config.offsite
    }

    /// `deployctl backups push`: copies local backups missing from the remote(s): the newest
    /// usable one, one named, or every one with a manifest whose last check did not fail. Each
    /// is checked against its manifest's sha256 first (a damaged backup is never copied), then
    /// uploaded (`S3Client.upload`: no partial object ever under its name, size and ETag checked
    /// after), then its manifest, last. A copy already there with the same checksum is skipped.
    /// - Throws: `Failure` (`.badData` for a local backup that fails its checksum, `.unavailable`,
    ///   `.permission`, `.missingInput` for a missing bucket).
    public func push(instance name: String, backup: String?, all: Bool, remote: String?) throws -> [PushResult] {
        let config = try workspace.instance(name)
        let targets = try remotes(config, remote)
        // One push per instance at a time: a second would abort the first's multipart upload.
        let lock = try lockInstance(config)
        defer { lock.release() }
        let store = store(config)
        let entries: [BackupEntry]
        if let backup {
            entries = [try store.entry(named: backup)]
        } else {
            let usable = store.entries().filter { $0.manifest != nil && $0.status != .failed && !$0.isFutureDated(now: clock()) }
            guard let newest = usable.first else {
                throw Failure(.missingInput, "instance '\(name)' has no usable local backup to push in \(store.folder)",
                              hint: "take one with 'deployctl snapshot \(name)'")
            }
            entries = all ? usable : [newest]
        }
        let signingKey = try self.signingKey(config, create: true)!
        var results = [PushResult]()
        for remote in targets {
            let s3 = try client(remote)
            for entry in entries {
                try checkInterruption("\(results.count) of \(counted(entries.count * targets.count, "copy")) were pushed; nothing partial is listed as good in the store")
                results.append(try push(entry, to: remote, with: s3, recipients: config.encryption.recipients, store: store, signingKey: signingKey))
            }
        }
        return results
    }

    /// Pushes one backup to one remote (see `push(instance:backup:all:remote:)`). With
    /// `recipients` (`[encryption] recipients`) a plain backup leaves the host encrypted, as
    /// `<name>.age`, made in a temp file beside it that is removed afterwards.
    func push(_ entry: BackupEntry, to remote: OffsiteConfig, with s3: S3Client, recipients: [AgeRecipient], store: BackupStore,
              signingKey: SigningKey) throws -> PushResult {
        let started = ContinuousClock.now
        guard let local = entry.manifest else {
            throw Failure(.badData, "backup \(entry.name) has no readable manifest; it is not pushed", hint: "push another backup")
        }
        let encrypt = !recipients.isEmpty && !entry.encrypted
        let name = encrypt ? entry.name + BackupStore.encryptedSuffix : entry.name
        let key = Self.remoteFolder(remote, host: remote.hostId) + name
        let s3 = s3.within(remote.pushTimeout, "pushing \(name)", setting: "push_timeout = \(Int(remote.pushTimeout.seconds)) s")
        if let existing = try s3.getWithHeaders(key + ".json", what: "reading the manifest of \(key)"),
           let theirs = try? JSON.decoder().decode(Manifest.self, from: Data(existing.bytes)) {
            guard theirs.contentSha256 == local.contentSha256, theirs.instance == nil || theirs.instance == local.instance else {
                throw Failure(.failed, "remote '\(remote.name)' already holds a different backup named \(key) (instance \(theirs.instance ?? "?"), sha256 \(theirs.contentSha256.prefix(12))…): it is not overwritten",
                              hint: "another host or instance writes under the same prefix and host_id; give each its own host_id (or url) in [[offsite]]")
            }
            // Skipped only when its manifest is this instance's own, signed: else both go up again.
            if try signingKey.check(existing.headers[SigningKey.header], key: key + ".json", manifest: existing.bytes) == .valid,
               let object = try s3.head(key, what: "checking \(key)"), object.size == theirs.bytes,
               theirs.remote.map({ $0.etag == object.etag.lowercased() }) ?? false {
                return PushResult(name: name, remote: remote.name, key: key, bytes: object.size, uploaded: false,
                                  seconds: Pipeline.seconds(since: started))
            }
            // The same backup, but the object is missing, damaged or replaced: upload it again.
        }
        let events = events
        var upload = entry.path
        var manifest = local
        var temp: String?
        defer { if let temp { unlink(temp) } }
        if encrypt {
            (upload, manifest) = try store.encryptedCopy(of: entry, to: recipients) { done in
                events(.progress(.working(.encrypting, done: done, total: local.bytes)))
            }
            temp = upload
        }
        // One pass over what goes up: the sha256 its manifest must match (the encrypted copy was
        // checked against the backup's as it was made), and each piece's MD5 and SHA-256 for the upload.
        let digests = try S3Client.fileDigests(path: upload)
        let (bytes, sha256) = (digests.bytes, digests.sha256)
        guard bytes == manifest.bytes, sha256 == manifest.sha256 else {
            throw Failure(.badData, "backup \(entry.name) does not match its manifest (\(bytes) bytes, sha256 \(sha256.prefix(12))…; the manifest says \(manifest.bytes) bytes, \(manifest.sha256.prefix(12))…): it is not pushed",
                          hint: "check it with 'deployctl backups verify \(store.instance ?? manifest.instance ?? store.stem) \(entry.name)', and push a good one")
        }
        let uploaded = try s3.upload(file: upload, key: key, digests: digests, progress: { done, total in
            events(.progress(.working(.uploading(name: name, remote: remote.name), done: done, total: total)))
        }, checkpoint: { [self] in
            try failpoints.hit(.pushPart)
            try checkInterruption("the push of \(entry.name) stopped; its unfinished upload was aborted and nothing of it is listed as good")
        })
        events(.progress(.ended(announce: true)))
        manifest.remote = Manifest.RemoteCopy(remote: remote.name, host: remote.hostId, etag: uploaded.etag, parts: uploaded.parts, pushedAt: clock())
        manifest.verification = nil
        try failpoints.hit(.beforeRemoteManifest)
        let manifestBytes = Array(try JSON.encoder().encode(manifest))
        try s3.put(key + ".json", bytes: manifestBytes,
                   metadata: [(SigningKey.header, try signingKey.authenticator(key: key + ".json", manifest: manifestBytes))],
                   what: "uploading the manifest of \(key)")
        return PushResult(name: name, remote: remote.name, key: key, bytes: uploaded.bytes, uploaded: true,
                          seconds: Pipeline.seconds(since: started))
    }

    /// `deployctl backups list --remote`: the copies under one host's folder of a remote (this
    /// host's by default), newest first, and the keys there that are not backups, with why.
    /// - Throws: `Failure` (`.usage` for a bad host, store failures).
    public func remoteBackups(instance name: String, remote: String?, host: String? = nil) throws
        -> (remote: OffsiteConfig, backups: [RemoteBackup], notBackups: [(name: String, reason: String)]) {
        let config = try workspace.instance(name)
        let target = try config.remote(remote)
        let s3 = try client(target)
        let (backups, others) = try remoteBackups(config, target, s3, host: host, allowUnsigned: false)
        return (target, backups, others)
    }

    /// Each copy's manifest must carry this instance's authenticator (`SigningKey`), else the
    /// copy has a problem ("not made by a holder of this instance's key"), unless `allowUnsigned`.
    func remoteBackups(_ config: InstanceConfig, _ remote: OffsiteConfig, _ s3: S3Client, host: String?, allowUnsigned: Bool) throws
        -> ([RemoteBackup], [(name: String, reason: String)]) {
        let signingKey = try self.signingKey(config, create: false)
        let keyPath = Self.signingKeyPath(config)
        let host = host ?? remote.hostId
        guard OffsiteConfig.isSafeSegment(host) else {
            throw Failure(.usage, "'\(host)' is not a host folder name (no '/', no '..')")
        }
        let folder = Self.remoteFolder(remote, host: host)
        let objects = try s3.list(prefix: folder)
        let byName = Dictionary(objects.map { (String($0.key.dropFirst(folder.count)), $0) }, uniquingKeysWith: { a, _ in a })
        // A local backup counts for its encrypted copy too.
        let localNames = Set(store(config).entries().flatMap { [$0.name, $0.name + BackupStore.encryptedSuffix] })
        var backups = [RemoteBackup]()
        var others = [(name: String, reason: String)]()
        for (name, object) in byName.sorted(by: { $0.key < $1.key }) {
            if name.hasPrefix(".") { continue }  // the prune lease
            if name.hasSuffix(".json") {
                if byName[String(name.dropLast(5))] == nil { others.append((Sanitized.text(name, limit: 200, secrets: []), "a manifest without its backup (an interrupted push or prune)")) }
                continue
            }
            guard !name.contains("/"), (try? BackupStore.validate(backupName: name)) != nil else {
                others.append((Sanitized.text(name, limit: 200, secrets: []), "not a backup name deployctl writes"))
                continue
            }
            var manifest: Manifest?
            var problem: String?
            var verdict: SigningKey.Verdict?
            if byName[name + ".json"] == nil {
                problem = "no manifest: an unfinished push (never restored; the next push replaces it)"
            } else if let (bytes, headers) = try s3.getWithHeaders(object.key + ".json", what: "reading the manifest of \(object.key)") {
                manifest = try? JSON.decoder().decode(Manifest.self, from: Data(bytes))
                if manifest == nil { problem = "its manifest cannot be read" }
                else {
                    verdict = try signingKey?.check(headers[SigningKey.header], key: object.key + ".json", manifest: bytes)
                    problem = Self.authenticatorProblem(verdict, keyPath: keyPath, allowUnsigned: allowUnsigned)
                }
            } else {
                problem = "its manifest vanished while listing"
            }
            if let m = manifest {
                // A manifest with no authenticator at all may not say it is another instance's
                // (anyone with write access could hide the newest copy from --latest that way);
                // one signed with another key is that instance's copy, as before.
                if let instance = m.instance, instance != config.name, verdict != .missing {
                    // Another instance's copy under the same prefix and host: never listed, pruned or restored here.
                    others.append((Sanitized.text(name, limit: 200, secrets: []), "a copy of instance '\(Sanitized.text(instance, limit: 80, secrets: []))', not '\(config.name)'"))
                    continue
                }
                if problem != nil {}
                else if m.name != name { problem = "its manifest names \(m.name)" }
                else if m.bytes != object.size { problem = "\(object.size) bytes in the store, \(m.bytes) in its manifest" }
                else if let recorded = m.remote?.etag, S3Client.isMD5ETag(object.etag), recorded != object.etag.lowercased() {
                    problem = "the store's ETag \(object.etag) is not the one recorded at push (\(recorded)): replaced or damaged in the store"
                }
            }
            backups.append(RemoteBackup(name: name, key: object.key, host: host, bytes: object.size, etag: object.etag,
                                        manifest: manifest, problem: problem, local: localNames.contains(name)))
        }
        // A copy whose manifest cannot be used sorts by the time in its name: a damaged newest copy
        // stays first, so --latest stops at it (65) instead of quietly taking an older one.
        backups.sort { ($0.createdAt ?? Self.nameDate($0.name) ?? .distantPast, $0.name) > ($1.createdAt ?? Self.nameDate($1.name) ?? .distantPast, $1.name) }
        return (backups, others)
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

    /// `deployctl backups verify --remote`: each chosen copy's size and ETag against its
    /// manifest (the store answers without a download), or with `download` the whole copy
    /// fetched into a temp folder, its sha256 checked and the SQLite check run, then removed.
    public func verifyRemote(instance name: String, remote: String?, host: String?, backup: String?, all: Bool,
                             download: Bool, allowUnsigned: Bool = false) throws -> [RemoteCheck] {
        let config = try workspace.instance(name)
        let target = try config.remote(remote)
        let s3 = try client(target)
        let (backups, _) = try remoteBackups(config, target, s3, host: host, allowUnsigned: allowUnsigned)
        let chosen: [RemoteBackup]
        if let backup {
            try BackupStore.validate(backupName: backup)
            guard let found = backups.first(where: { $0.name == backup }) else {
                throw Failure(.missingInput, "remote '\(target.name)' has no backup \(backup) under \(Self.remoteFolder(target, host: host ?? target.hostId))",
                              hint: "list them with 'deployctl backups list \(name) --remote \(target.name)'")
            }
            chosen = [found]
        } else {
            guard let newest = backups.first else {
                throw Failure(.missingInput, "remote '\(target.name)' has no backups under \(Self.remoteFolder(target, host: host ?? target.hostId))",
                              hint: "push one with 'deployctl backups push \(name) --remote \(target.name)'")
            }
            chosen = all ? backups : [newest]
        }
        return try chosen.enumerated().map { index, copy in
            try checkInterruption("\(index) of \(counted(chosen.count, "copy")) were checked; the rest were not")
            // The listing already compared size and ETag with the manifest.
            if let problem = copy.problem { return RemoteCheck(name: copy.name, problems: [problem], how: "size and ETag") }
            guard download else { return RemoteCheck(name: copy.name, problems: [], how: "size and ETag") }
            let folder = store(config).folder + "/.remote-check-" + UUID().uuidString.prefix(8)
            try DurableFile.createFolder(folder)
            defer { try? FileManager.default.removeItem(atPath: folder) }
            do {
                let scratch = BackupStore(folder: folder, databasePath: config.databasePath, now: clock(), like: store(config))
                let entry = try fetch(copy, from: target, with: s3, into: scratch, instance: name).entry
                let result = try scratch.verify(entry, now: clock())
                let how = result.checksumOnly ? "download, sha256 (not decrypted: no [encryption] identity_file, so no integrity_check)"
                    : result.wrongKey ? "download, sha256 (not opened: no identity matched)" : "download, sha256, integrity_check"
                return RemoteCheck(name: copy.name, problems: result.problems, how: how)
            } catch let failure as Failure where failure.kind == .badData {
                return RemoteCheck(name: copy.name, problems: [failure.message], how: "download, sha256")
            }
        }
    }

    /// Downloads a remote copy into `store`'s folder as a backup with its manifest (the
    /// remote section removed): streamed into a temp file, its size and sha256 compared with
    /// the manifest before it is fsynced and published under its name (never replacing a file).
    /// - Throws: `Failure` `.badData` when the copy is not what its manifest says (nothing is
    ///   left behind), `.badData` when a different local file has the name.
    func fetch(_ copy: RemoteBackup, from remote: OffsiteConfig, with s3: S3Client, into store: BackupStore, instance: String) throws -> (entry: BackupEntry, downloaded: Bool) {
        guard var manifest = copy.manifest, copy.problem == nil else {
            throw Failure(.badData, "remote '\(remote.name)': \(copy.name) is not a good copy: \(copy.problem ?? "no manifest"); nothing was restored",
                          hint: "choose another backup ('deployctl backups list \(instance) --remote \(remote.name)\(copy.host == remote.hostId ? "" : " --host " + copy.host)')")
        }
        let path = store.folder + "/" + copy.name
        // The same backup here already, as it is or not encrypted: nothing to download.
        // A local file counts only when it still matches its manifest.
        let intact = { (local: BackupEntry) in (try? store.checkStored(local)) != nil }
        let plainName = BackupStore.unencryptedName(copy.name)
        if plainName != copy.name, let local = try? store.entry(named: plainName), local.manifest?.contentSha256 == manifest.contentSha256, intact(local) {
            return (local, false)
        }
        if let local = try? store.entry(named: copy.name) {
            guard local.manifest?.contentSha256 == manifest.contentSha256 else {
                throw Failure(.badData, "a different local backup is already named \(copy.name) in \(store.folder) (its checksum differs from the remote copy's)",
                              hint: "restore the local one by name, or move it away first")
            }
            guard intact(local) else {
                throw Failure(.badData, "the local backup \(copy.name) is damaged (it no longer matches its manifest's checksum), and the remote copy is never downloaded over it; nothing was restored",
                              hint: "move \(local.path) and its .json out of the backups folder (keep them to inspect), then run the restore again to download the remote copy")
            }
            return (local, false)
        }
        try store.prepareForWriting()
        let temp = DurableFile.temporaryPath(for: path)
        let fd = try DurableFile.createNew(temp)
        var published = false
        defer {
            close(fd)
            if !published { unlink(temp) }
        }
        let events = events
        let progress = { (done: Int64) in
            events(.progress(.working(.downloading(name: copy.name, remote: remote.name), done: done, total: max(copy.bytes, done))))
        }
        let (bytes, sha256) = try s3.download(copy.key, into: fd, path: temp, limit: manifest.bytes, progress: progress)
        events(.progress(.ended(announce: true)))
        guard bytes == manifest.bytes, sha256 == manifest.sha256 else {
            throw Failure(.badData, "remote '\(remote.name)': \(copy.key) is not what its manifest says (\(bytes) bytes, sha256 \(sha256.prefix(12))…; the manifest says \(manifest.bytes) bytes, \(manifest.sha256.prefix(12))…): it is damaged or truncated in the store; nothing was restored",
                          hint: "use another copy ('deployctl backups list \(instance) --remote \(remote.name)\(copy.host == remote.hostId ? "" : " --host " + copy.host)'), and push a good one again")
        }
        guard fsync(fd) == 0 else { throw DurableFile.posixFailure("cannot fsync \(temp)", errno) }
        try DurableFile.publish(temp, as: path)
        published = true
        manifest.remote = nil
        let entry = BackupEntry(name: copy.name, path: path, manifest: manifest, label: manifest.label, createdAt: manifest.createdAt, bytes: bytes)
        do {
            try DurableFile.write(try JSON.encoder().encode(manifest), to: entry.manifestPath, replace: false)
        } catch {
            unlink(path)
            throw error
        }
        return (entry, true)
    }

    /// `deployctl restore --remote`, first half: the copy chosen (named, or the newest good one
    /// of `label`, never one dated in the future) is fetched into the local backups folder,
    /// checked against its manifest, and its local name returned for the local restore.
    /// - Throws: `Failure` (`.missingInput` when the remote has no such copy, `.badData`).
    public func fetchForRestore(instance name: String, remote: String?, host: String?, backup: String?, label: String?,
                                allowUnsigned: Bool = false) throws -> (name: String, downloaded: Bool) {
        let config = try workspace.instance(name)
        let target = try config.remote(remote)
        let s3 = try client(target)
        let (backups, _) = try remoteBackups(config, target, s3, host: host, allowUnsigned: allowUnsigned)
        let copy: RemoteBackup
        if let backup {
            try BackupStore.validate(backupName: backup)
            guard let found = backups.first(where: { $0.name == backup }) else {
                throw Failure(.missingInput, "remote '\(target.name)' has no backup \(backup) under \(Self.remoteFolder(target, host: host ?? target.hostId))",
                              hint: "list them with 'deployctl backups list \(name) --remote \(target.name)'")
            }
            copy = found
        } else {
            let limit = clock().addingTimeInterval(BackupEntry.futureTolerance)
            // Unfinished pushes (no manifest) are not backups yet; a damaged newest copy is refused, never skipped.
            guard let newest = backups.first(where: { $0.manifest != nil && ($0.createdAt ?? .distantFuture) <= limit
                                                      && (label == nil || $0.label == label) && $0.label != "pre_restore" }) else {
                throw Failure(.missingInput, "remote '\(target.name)' has no good backup\(label.map { " labelled \($0)" } ?? "") under \(Self.remoteFolder(target, host: host ?? target.hostId))",
                              hint: "list them with 'deployctl backups list \(name) --remote \(target.name)'; another host's copies need --host")
            }
            copy = newest
        }
        let lock = try lockInstance(config)
        defer { lock.release() }
        let (entry, downloaded) = try fetch(copy, from: target, with: s3, into: store(config), instance: name)
        return (entry.name, downloaded)
    }

    /// Removes a backup `fetchForRestore` downloaded (after a dry run, or a refused restore).
    public func discardFetched(instance name: String, backup: String) throws {
        let config = try workspace.instance(name)
        try store(config).remove([try store(config).entry(named: backup)])
    }

    /// `deployctl backups prune --remote`: applies `policy` to this host's copies in the remote,
    /// under a lease object (`.prune-lease`, written only if absent where the store honours
    /// `If-None-Match: *`), removing each doomed copy's manifest first, then the copy. Copies
    /// without a manifest are left alone (the next push replaces them). Other hosts' folders
    /// are never touched.
    /// A prune that would leave a label with no copy asks `confirm` first (labels and how many
    /// copies each loses), as a local prune does.
    public func pruneRemote(instance name: String, remote: String?, policy: RetentionPolicy, label: String?, dryRun: Bool,
                            confirm: ([String: Int]) throws -> Void) throws -> [RetentionDecision] {
        let config = try workspace.instance(name)
        let target = try config.remote(remote)
        let rules = policy.isEmpty ? target.retention : policy
        guard !rules.isEmpty else {
            throw Failure(.usage, "no retention rule for remote '\(target.name)'",
                          hint: "pass --keep-last N (or another rule), or set keep_last in its [[offsite]] table")
        }
        let s3 = try client(target)
        let lease = dryRun ? nil : try RemoteLease.take(s3, key: Self.remoteFolder(target, host: target.hostId) + ".prune-lease",
                                                       holder: "\(target.hostId) pid \(getpid())", now: clock())
        defer { lease?.release() }
        // Copies this instance's key did not sign are neither counted nor removed.
        let (backups, _) = try remoteBackups(config, target, s3, host: nil, allowUnsigned: false)
        let entries = backups.compactMap { copy -> BackupEntry? in
            guard let manifest = copy.manifest, copy.problem == nil else { return nil }
            return BackupEntry(name: copy.name, path: copy.key, manifest: manifest, label: manifest.label, createdAt: manifest.createdAt, bytes: copy.bytes)
        }
        let decisions = Retention.decide(entries, policy: rules, label: label, now: clock())
        guard !dryRun else { return decisions }
        var emptied = [String: Int]()
        for (label, group) in Dictionary(grouping: decisions, by: \.entry.label) where group.allSatisfy({ !$0.kept }) {
            emptied[label] = group.count
        }
        if !emptied.isEmpty { try confirm(emptied) }
        for decision in decisions where !decision.kept {
            try checkInterruption("the prune stopped; every copy removed so far lost its manifest first")
            try s3.delete(decision.entry.path + ".json", what: "removing the manifest of \(decision.entry.path)")
            try s3.delete(decision.entry.path, what: "removing \(decision.entry.path)")
        }
        return decisions
    }
}

/// A lease on a remote's prune: one object written only if absent.
///
/// Where the store honours `If-None-Match: *` (a conditional write; SeaweedFS and AWS S3 do) a
/// second writer gets 412 and waits its turn. Where it does not (`rclone serve s3` overwrites),
/// the lease is written, read back after a pause, and kept only if it still holds this run's
/// token: two prunes starting within that pause can still both run, which is safe for this
/// host's own folder (each removes manifest first, then the copy) but not exclusive. A lease
/// older than an hour was left by a killed run and is taken over.
struct RemoteLease {
    let s3: S3Client
    let key: String

    static func take(_ s3: S3Client, key: String, holder: String, now: Date) throws -> RemoteLease {
        let token = UUID().uuidString
        let body = Array("{\"holder\": \"\(holder)\", \"token\": \"\(token)\", \"at\": \"\(ISO8601DateFormatter().string(from: now))\"}\n".utf8)
        for attempt in 0..<2 {
            if try s3.put(key, bytes: body, ifNoneMatch: true, what: "taking the prune lease \(key)") {
                // A store that ignores If-None-Match just overwrote any other lease: read it back.
                Thread.sleep(forTimeInterval: 0.5)
                let now = try s3.get(key, what: "reading the prune lease \(key)").map { String(decoding: $0, as: UTF8.self) } ?? ""
                guard now.contains(token) else {
                    throw Failure(.temporary, "remote '\(s3.remote)': another prune took the lease \(key) at the same time", hint: "run again later")
                }
                return RemoteLease(s3: s3, key: key)
            }
            let existing = try s3.get(key, what: "reading the prune lease \(key)").map { String(decoding: $0, as: UTF8.self) } ?? ""
            let at = existing.range(of: #""at": "[^"]+""#, options: .regularExpression)
                .flatMap { ISO8601DateFormatter().date(from: String(existing[$0].dropFirst(7).dropLast())) }
            if attempt == 0, let at, now.timeIntervalSince(at) > 3600 {
                try s3.delete(key, what: "removing a stale prune lease \(key)")
                continue
            }
            throw Failure(.temporary, "remote '\(s3.remote)': another prune holds the lease \(key): \(existing.trimmingCharacters(in: .whitespacesAndNewlines))",
                          hint: "wait for it to finish; a lease older than an hour is taken over")
        }
        throw Failure(.temporary, "remote '\(s3.remote)': the prune lease \(key) could not be taken", hint: "run again later")
    }

    func release() {
        try? s3.delete(key, what: "releasing the prune lease \(key)")
    }
}
