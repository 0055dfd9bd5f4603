import Backup
import Foundation
import Locking
import SQLite
import Support

/// `deployctl backups list` and `backups verify`: what an instance's backups folder holds, and
/// whether each backup is what it claims.
public struct BackupInventory: Sendable {
    let runtime: Runtime

    public init(_ runtime: Runtime) { self.runtime = runtime }

    /// `deployctl backups list`: newest first. Reads only.
    /// - Throws: `Failure` for the instance.
    public func list(instance name: String, label: String?) throws -> [BackupEntry] {
        try runtime.instance(name, for: .listBackups).store.entries().filter { label == nil || $0.label == label }
    }

    /// The files in an instance's backups folder that are not deployctl backups, with why.
    /// Reads only.
    /// - Throws: `Failure` for the instance.
    public func otherFiles(instance name: String) throws -> [BackupStore.OtherFile] {
        try runtime.instance(name, for: nil).store.otherFiles()
    }

    /// `deployctl backups verify`: checks one backup, the newest, or all. Records `verified_at`
    /// in good backups' manifests; takes no lock and never touches the live database.
    /// - Throws: `Failure` `.missingInput` when there is nothing to verify, `.usage` for a bad name.
    public func verify(instance name: String, backup: String?, all: Bool) throws -> [VerifyResult] {
        let store = try runtime.instance(name, for: .recordVerification).store
        let targets: [BackupEntry]
        if let backup {
            targets = [try store.entry(named: backup)]
        } else {
            let entries = store.entries()
            // The newest backup that counts as one (the daily drill checks what a restore
            // --latest would use): a deploy's or restore's own pre_* copy only when there is no other.
            guard let newest = entries.first(where: { !$0.isOwnCopy }) ?? entries.first else {
                throw Failure(.noBackups, "instance '\(name)' has no backups in \(store.folder)",
                              hint: "take one with 'deployctl snapshot \(name)'")
            }
            targets = all ? entries : [newest]
        }
        return try targets.enumerated().map { index, target in
            try runtime.checkInterruption("\(index) of \(counted(targets.count, "backup")) \(index == 1 ? "was" : "were") checked (their results are recorded); the rest were not")
            // After the check between backups: a signal here reaches the integrity_check itself.
            try runtime.failpoints.hit(.backupVerify)
            let phase = Phase.checkingBackup(name: target.name, number: index + 1, of: targets.count)
            runtime.progress(.working(phase))
            defer { runtime.progress(.ended(announce: false)) }
            var reporting = store
            let progress = runtime.progress
            reporting.checkProgress = { done, total in progress(.working(phase, done: done, total: total)) }
            do {
                return try reporting.verify(target, now: runtime.clock())
            } catch where runtime.interruption() != nil {
                try runtime.checkInterruption("\(index) of \(counted(targets.count, "backup")) checked (results recorded); the check of \(target.name) was stopped and nothing was recorded for it")
                throw error
            }
        }
    }
}
