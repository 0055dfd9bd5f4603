import Backup
import Foundation
import Locking
import SQLite
import Support

/// What `backups remove` removed.
public struct RemovedBackup: Sendable {
    public let name: String
    /// The backup's label and last check (nil for a lone manifest).
    public let label: String?
    public let status: String?
    /// Only a manifest whose backup file was already gone.
    public let manifestOnly: Bool
}

/// `deployctl backups remove`, first step: the backup (of any label, a damaged one included)
/// or the manifest a backup file removed by hand left behind, found without the instance lock so
/// that the operator's answer blocks no snapshot. `perform()` takes the lock, finds it again and
/// removes it, unless it changed meanwhile or an unfinished deploy journal refers to it.
public struct PreparedRemoval {
    let instance: InstanceContext
    let name: String
    /// The backup to remove; nil for a lone manifest (its backup file is gone).
    public let entry: BackupEntry?

    /// Finds the backup; reads only.
    /// - Throws: `Failure` for a bad name, no such backup, or a file that is not a deployctl
    ///   backup (never removed).
    public static func prepare(_ runtime: Runtime, instance name: String, backup: String) throws -> PreparedRemoval {
        let instance = try runtime.instance(name, for: nil)
        try BackupStore.validate(backupName: backup)
        try instance.checkAccess(.manageBackups)
        return PreparedRemoval(instance: instance, name: backup, entry: try find(backup, in: instance.store))
    }

    static func find(_ backup: String, in store: BackupStore) throws -> BackupEntry? {
        if store.orphanManifest(of: backup) != nil { return nil }
        return try store.entry(named: backup)
    }

    /// Removes the backup and its manifest (or the lone manifest) under the instance lock.
    /// - Throws: `Failure` `backup.changed_while_asked`, `backup.remove_refused` (an unfinished
    ///   deploy refers to it).
    public func perform() throws -> RemovedBackup {
        let lock = try instance.lock()
        defer { lock.release() }
        let store = instance.store
        // Gone while the question waited (another remove) is a change too, not "no such backup".
        let found = Result { try Self.find(name, in: store) }
        guard case .success(let current) = found, current?.manifest?.sha256 == entry?.manifest?.sha256 else {
            throw Failure(.backupsChangedWhileAsked, "\(name) changed while deployctl asked; nothing was removed",
                          hint: "deployctl backups remove \(instance.name) \(name)")
        }
        if let why = try instance.protectedBackups(retention: false)[name] {
            throw Failure(.backupRemoveRefused, "\(name) is not removed: \(why)",
                          hint: "let the next deploy or restore finish or undo the unfinished one first (e.g. deployctl deploy \(instance.name))")
        }
        guard let current else {
            try store.removeOrphanManifest(of: name)
            return RemovedBackup(name: name, label: nil, status: nil, manifestOnly: true)
        }
        try store.remove([current])
        return RemovedBackup(name: name, label: current.label, status: current.status.rawValue, manifestOnly: false)
    }
}
