import Backup
import Encryption
import Foundation
import Offsite
import Support

/// The check of one remote copy.
public struct RemoteCheck: Sendable {
    public let name: String
    /// Empty when good.
    public let problems: [String]
    /// What was checked: size and ETag, or the full download, checksum and SQLite check.
    public let how: String
}

/// A remote copy fetched into the local backups folder for a restore.
public struct FetchedCopy: Sendable {
    /// Its name in the local backups folder.
    public let name: String
    /// False when the local folder already had it (nothing was downloaded).
    public let downloaded: Bool
}

/// The offsite use cases (`backups push`, `backups list/verify/prune --remote`, the fetch of
/// `restore --remote`): which instance, which remotes, the lock, events and the local store.
/// The remote store itself (listing, push, fetch, lease) is `Offsite.RemoteStore`.
public struct RemoteBackups: Sendable {
    let runtime: Runtime

    public init(_ runtime: Runtime) { self.runtime = runtime }

    /// `deployctl backups push`: copies local backups missing from the remote(s): the newest
    /// usable one, one named, or every one with a manifest whose last check did not fail (see
    /// `RemoteStore.push`).
    /// - Throws: `Failure` (`offsite.no_local_backup`, the push's and the store's failures).
    public func push(instance name: String, backup: String?, all: Bool, remote: String?) throws -> [PushResult] {
        let instance = try runtime.instance(name, for: nil)
        let targets = try instance.remotes(remote)
        // One push per instance at a time: a second would abort the first's multipart upload.
        let lock = try instance.lock()
        defer { lock.release() }
        let store = instance.store
        let entries: [BackupEntry]
        if let backup {
            entries = [try store.entry(named: backup)]
        } else {
            let usable = store.entries().filter { $0.manifest != nil && $0.status != .failed && !$0.isFutureDated(now: runtime.clock()) }
            guard let newest = usable.first else {
                throw Failure(.offsiteNoLocalBackup, "instance '\(name)' has no usable local backup to push in \(store.folder)",
                              hint: "take one with 'deployctl snapshot \(name)'")
            }
            entries = all ? usable : [newest]
        }
        guard let signingKey = try instance.signingKey(create: true) else { preconditionFailure("signingKey(create: true) makes one") }
        var results = [PushResult]()
        for target in targets {
            let remote = try instance.remoteStore(target, signingKey: signingKey)
            for entry in entries {
                try runtime.checkInterruption("\(results.count) of \(counted(entries.count * targets.count, "copy")) were pushed; nothing partial is listed as good in the store")
                results.append(try remote.push(entry, from: store, recipients: instance.config.encryption.recipients, signingKey: signingKey,
                                               timeout: target.pushTimeout, now: runtime.clock, hooks: pushHooks(entry)))
            }
        }
        return results
    }

    /// Progress, the failpoints and interruption checks of one push.
    private func pushHooks(_ entry: BackupEntry) -> PushHooks {
        let runtime = runtime
        return PushHooks(progress: runtime.progress, betweenParts: {
            try runtime.failpoints.hit(.pushPart)
            try runtime.checkInterruption("the push of \(entry.name) stopped; its unfinished upload was aborted and nothing of it is listed as good")
        }, beforeManifest: { try runtime.failpoints.hit(.beforeRemoteManifest) })
    }

    /// `deployctl backups list --remote`: the copies under one host's folder of a remote (this
    /// host's by default), newest first, and the keys there that are not backups, with why.
    /// - Throws: `Failure` (`offsite.host_invalid`, store failures).
    public func list(instance name: String, remote: String?, host: String? = nil) throws
        -> (remote: OffsiteConfig, backups: [RemoteBackup], notBackups: [(name: String, reason: String)]) {
        let instance = try runtime.instance(name, for: nil)
        let target = try instance.config.remote(remote)
        let listing = try self.listing(instance, try instance.remoteStore(target, signingKey: try instance.signingKey(create: false)),
                                       host: host, allowUnsigned: false)
        return (target, listing.backups, listing.others.map { ($0.name, $0.reason) })
    }

    /// This host's newest good copy in `remote` (`status`).
    func newestGood(_ instance: InstanceContext, _ remote: OffsiteConfig) throws -> RemoteBackup? {
        let store = try instance.remoteStore(remote, signingKey: try instance.signingKey(create: false))
        return try listing(instance, store, host: nil, allowUnsigned: false).backups.first { $0.issue == nil }
    }

    /// The copies in one host's folder (`RemoteStore.copies`), the local backups named.
    func listing(_ instance: InstanceContext, _ remote: RemoteStore, host: String?, allowUnsigned: Bool) throws -> RemoteListing {
        // A local backup counts for its encrypted copy too.
        let localNames = Set(instance.store.entries().flatMap { [$0.name, $0.name + BackupStore.encryptedSuffix] })
        return try remote.copies(host: host, allowUnsigned: allowUnsigned, localNames: localNames)
    }

    /// `deployctl backups verify --remote`: each chosen copy's size and ETag against its
    /// manifest (the store answers without a download), or with `download` the whole copy
    /// fetched into a temp folder, its sha256 checked and the SQLite check run, then removed.
    public func verify(instance name: String, remote: String?, host: String?, backup: String?, all: Bool,
                       download: Bool, allowUnsigned: Bool = false) throws -> [RemoteCheck] {
        let instance = try runtime.instance(name, for: nil)
        let target = try instance.config.remote(remote)
        let store = try instance.remoteStore(target, signingKey: try instance.signingKey(create: false))
        let backups = try listing(instance, store, host: host, allowUnsigned: allowUnsigned).backups
        let chosen: [RemoteBackup]
        if let backup {
            try BackupStore.validate(backupName: backup)
            guard let found = backups.first(where: { $0.name == backup }) else {
                throw Failure(.offsiteCopyNotFound, "remote '\(target.name)' has no backup \(backup) under \(store.folder(host: host))",
                              hint: "list them with 'deployctl backups list \(name) --remote \(target.name)'")
            }
            chosen = [found]
        } else {
            guard let newest = backups.first else {
                throw Failure(.offsiteCopyNotFound, "remote '\(target.name)' has no backups under \(store.folder(host: host))",
                              hint: "push one with 'deployctl backups push \(name) --remote \(target.name)'")
            }
            chosen = all ? backups : [newest]
        }
        return try chosen.enumerated().map { index, copy in
            try runtime.checkInterruption("\(index) of \(counted(chosen.count, "copy")) were checked; the rest were not")
            return try check(copy, in: store, instance: instance, download: download)
        }
    }

    /// One copy's check (see `verifyRemote`): the listing already compared size and ETag with
    /// the manifest; a download checks the whole copy in a temp folder, removed after.
    private func check(_ copy: RemoteBackup, in remote: RemoteStore, instance: InstanceContext, download: Bool) throws -> RemoteCheck {
        if let problem = copy.problem { return RemoteCheck(name: copy.name, problems: [problem], how: "size and ETag") }
        guard download else { return RemoteCheck(name: copy.name, problems: [], how: "size and ETag") }
        let local = instance.store
        let folder = local.folder + "/.remote-check-" + UUID().uuidString.prefix(8)
        try DurableFile.createFolder(folder)
        defer { try? FileManager.default.removeItem(atPath: folder) }
        do {
            let scratch = BackupStore(folder: folder, databasePath: instance.config.databasePath, now: runtime.clock(), like: local)
            let entry = try remote.fetch(copy, into: scratch, listHint: listHint(instance, remote, copy), progress: runtime.progress).entry
            let result = try scratch.verify(entry, now: runtime.clock())
            let how = result.checksumOnly ? "download, sha256 (not decrypted: no [encryption] identity_file, so no integrity_check)"
                : result.wrongKey ? "download, sha256 (not opened: no identity matched)" : "download, sha256, integrity_check"
            return RemoteCheck(name: copy.name, problems: result.problems, how: how)
        } catch let failure as Failure where failure.kind == .badData {
            return RemoteCheck(name: copy.name, problems: [failure.message], how: "download, sha256")
        }
    }

    /// The command that lists the copies `copy` is among.
    private func listHint(_ instance: InstanceContext, _ remote: RemoteStore, _ copy: RemoteBackup) -> String {
        "deployctl backups list \(instance.name) --remote \(remote.name)\(copy.host == remote.hostId ? "" : " --host " + copy.host)"
    }

    /// `deployctl restore --remote`, first half: the copy chosen (named, or the newest good one
    /// of `label`, never one dated in the future) is fetched into the local backups folder,
    /// checked against its manifest, and its local name returned for the local restore.
    /// - Throws: `Failure` (`offsite.copy_not_found`, the copy's problem's code, `offsite.copy_damaged`).
    public func fetch(instance name: String, remote: String?, host: String?, backup: String?, label: String?,
                      allowUnsigned: Bool = false) throws -> FetchedCopy {
        let instance = try runtime.instance(name, for: nil)
        let target = try instance.config.remote(remote)
        let store = try instance.remoteStore(target, signingKey: try instance.signingKey(create: false))
        let listing = try listing(instance, store, host: host, allowUnsigned: allowUnsigned)
        let copy = try store.choose(listing, named: backup, label: label, latestBy: runtime.clock().addingTimeInterval(BackupEntry.futureTolerance),
                                    host: host, hint: "list them with 'deployctl backups list \(name) --remote \(target.name)'")
        let lock = try instance.lock()
        defer { lock.release() }
        let (entry, downloaded) = try store.fetch(copy, into: instance.store, listHint: listHint(instance, store, copy), progress: runtime.progress)
        return FetchedCopy(name: entry.name, downloaded: downloaded)
    }

    /// Removes a backup `fetch` downloaded (after a dry run, or a refused restore).
    public func discardFetched(instance name: String, backup: String) throws {
        let store = try runtime.instance(name, for: nil).store
        try store.remove([try store.entry(named: backup)])
    }
}
