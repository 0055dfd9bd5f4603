import Backup
import Foundation
import Support

extension RemoteStore {
    /// Downloads a remote copy into `store`'s folder as a backup with its manifest (the remote
    /// section removed): streamed into a temp file, its size and sha256 compared with the
    /// manifest before it is fsynced and published under its name (never replacing a file).
    /// The same backup already there (as it is, or not encrypted) and intact is used instead.
    /// `listHint`: the command that lists the remote's copies, for messages.
    /// - Throws: `Failure` with the copy's problem's code when it is not a good copy,
    ///   `offsite.copy_damaged` when it is not what its manifest says (nothing is left behind),
    ///   `offsite.local_name_taken` when a different local file has the name, or the local one
    ///   is damaged.
    public func fetch(_ copy: RemoteBackup, into store: BackupStore, listHint: String,
                      progress: @escaping ProgressHandler) throws -> (entry: BackupEntry, downloaded: Bool) {
        guard var manifest = copy.manifest, copy.issue == nil else {
            throw Failure(copy.issue?.code ?? .offsiteCopyUnusable, "remote '\(name)': \(copy.name) is not a good copy: \(copy.problem ?? "no manifest"); nothing was restored",
                          hint: "choose another backup ('\(listHint)')")
        }
        if let local = try localCopy(of: copy, manifest: manifest, in: store) { return (local, false) }
        let path = store.folder + "/" + copy.name
        try store.prepareForWriting()
        let temp = DurableFile.temporaryPath(for: path)
        let fd = try DurableFile.createNew(temp)
        var published = false
        defer {
            close(fd)
            if !published { unlink(temp) }
        }
        let (bytes, sha256) = try s3.download(copy.key, into: fd, path: temp, limit: manifest.bytes) { done in
            progress(.working(.downloading(name: copy.name, remote: self.name), done: done, total: max(copy.bytes, done)))
        }
        progress(.ended(announce: true))
        guard bytes == manifest.bytes, sha256 == manifest.sha256 else {
            throw Failure(.offsiteCopyDamaged, "remote '\(name)': \(copy.key) is not what its manifest says (\(bytes) bytes, sha256 \(sha256.prefix(12))…; the manifest says \(manifest.bytes) bytes, \(manifest.sha256.prefix(12))…): it is damaged or truncated in the store; nothing was restored",
                          hint: "use another copy ('\(listHint)'), and push a good one again")
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

    /// The same backup in `store` already, as it is or not encrypted, still matching its
    /// manifest: nothing to download.
    /// - Throws: `Failure` `offsite.local_name_taken` when a different or damaged local
    ///   backup has the copy's name (a remote copy is never downloaded over it).
    private func localCopy(of copy: RemoteBackup, manifest: Manifest, in store: BackupStore) throws -> BackupEntry? {
        let intact = { (local: BackupEntry) in (try? store.checkStored(local)) != nil }
        let plainName = BackupStore.unencryptedName(copy.name)
        if plainName != copy.name, let local = try? store.entry(named: plainName), local.manifest?.contentSha256 == manifest.contentSha256, intact(local) {
            return local
        }
        guard let local = try? store.entry(named: copy.name) else { return nil }
        guard local.manifest?.contentSha256 == manifest.contentSha256 else {
            throw Failure(.offsiteLocalNameTaken, "a different local backup is already named \(copy.name) in \(store.folder) (its checksum differs from the remote copy's)",
                          hint: "restore the local one by name, or move it away first")
        }
        guard intact(local) else {
            throw Failure(.offsiteLocalNameTaken, "the local backup \(copy.name) is damaged (it no longer matches its manifest's checksum), and the remote copy is never downloaded over it; nothing was restored",
                          hint: "move \(local.path) and its .json out of the backups folder (keep them to inspect), then run the restore again to download the remote copy")
        }
        return local
    }

    /// Removes a copy from this host's folder: its manifest first (it is no longer a good copy
    /// from that moment), then the copy.
    public func remove(key: String) throws {
        try s3.delete(key + ".json", what: "removing the manifest of \(key)")
        try s3.delete(key, what: "removing \(key)")
    }

    /// Takes the prune lease of this host's folder (see `RemoteLease`).
    /// - Throws: `Failure` `offsite.lease_held`.
    public func takeLease(now: Date) throws -> RemoteLease {
        try RemoteLease.take(s3, key: leaseKey, holder: "\(hostId) pid \(getpid())", now: now)
    }
}
