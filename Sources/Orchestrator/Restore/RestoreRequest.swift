import Backup
import Foundation
import Locking
import Migration
import SQLite
import Support

/// Which backup to restore.
public enum BackupSelection: Sendable {
    /// The newest backup (optionally with a label) whose checksum is good; without a label,
    /// `pre_restore` copies are passed over.
    case latest(label: String?)
    /// A backup by its bare name.
    case named(String)
}

/// Where to restore.
public enum RestoreTarget: Sendable {
    /// Into the live database, through the backup API.
    case live
    /// Into a new file that must not exist.
    case newFile(String)
    /// Over a missing or unreadable live database.
    case replace

    /// Whether the restore writes into the live database through SQLite (its file and folder
    /// must then be writable).
    var changesLiveDatabase: Bool {
        if case .live = self { return true }
        return false
    }
}

/// Where the backup to restore is.
public enum RestoreSource: Sendable {
    /// In the instance's backups folder.
    case local
    /// In a remote (`nil`: the instance's only one), under `host`'s folder (`nil`: this host's):
    /// fetched into the local backups folder and checked against its manifest first
    /// (`RemoteBackups.fetch`). `allowUnsigned` accepts a copy this instance's key did not sign.
    case remote(name: String?, host: String?, allowUnsigned: Bool)
}

/// What `deployctl restore` was asked to do.
public struct RestoreRequest: Sendable {
    public var instance: String
    public var selection: BackupSelection
    public var source: RestoreSource
    public var target: RestoreTarget
    /// Check and preview only; take no lock, run no hook, change nothing.
    public var dryRun: Bool
    /// Run the instance's stop hook before and start + health after a restore into the live database.
    public var runHooks: Bool
    /// Restore a backup whose manifest names another instance or database, or whose schema
    /// shares no table with this instance's.
    public var allowForeign: Bool

    public init(instance: String, selection: BackupSelection, target: RestoreTarget, dryRun: Bool = false,
                runHooks: Bool = true, allowForeign: Bool = false, source: RestoreSource = .local) {
        self.instance = instance
        self.selection = selection
        self.source = source
        self.target = target
        self.dryRun = dryRun
        self.runHooks = runHooks
        self.allowForeign = allowForeign
    }
}

/// What a restore will do, shown before it happens.
public struct RestorePreview: Sendable {
    public let backup: BackupEntry
    public let target: RestoreTarget
    public let targetPath: String
    /// How the backup's content was checked: `integrity_check`, or that these exact bytes
    /// already passed it (recorded in the manifest).
    public let check: String
    /// Per-table differences (live restores only), as the live database stood when compared.
    public let differences: [TableDifference]
    /// Tables whose rows were not compared, with the reason.
    public let notCompared: [NotCompared]
    /// Processes holding the live database when no stop hook will run.
    public let holders: [DatabaseHolder]
    /// Whether the stop hook runs before the restore.
    public let stopsApplication: Bool
    /// Newer backups `--latest` passed over, each with why.
    public var passedOver: [String] = []
    /// The live database already holds the backup's content (rows, schema, header versions):
    /// restoring it would change nothing, so it is not done, and no copy is saved.
    public var holdsBackup = false
    /// Rows the restore discards, summed over tables.
    public var discardedRows: Int { differences.discardedRows }
}

/// What a restore by rows rewrote and proved.
public struct ProvenRows: Sendable, Equatable {
    public let rows: Int
    public let tables: Int
}

/// The result of a restore.
public struct RestoreOutcome: Sendable {
    public let preview: RestorePreview
    /// False for a dry run.
    public let performed: Bool
    /// The `pre_restore` snapshot: exactly the state the restore replaced (live restores).
    public let preRestoreBackup: BackupEntry?
    /// Per-table differences between the replaced state and the backup: the preview's when no
    /// commit fell between it and the write lock, else computed again from `pre_restore`.
    public let differences: [TableDifference]
    public let notCompared: [NotCompared]
    /// Where an unreadable live database was moved (`--replace`).
    public let movedAside: String?
    /// Pages of the restored database proven byte-identical to the backup's; nil when not proven.
    public let provenPages: Int?
    /// A restore by rows (`Restorer.restoreByRows`): the rows it rewrote, proven equal to the
    /// backup's, every other row having been proven equal page by page before it.
    public var provenRows: ProvenRows? = nil
    /// Not performed because the live database already held the backup's content.
    public var alreadyHeld = false
    /// Why the equality is not proven, when it is not.
    public let unproven: String?
    /// How long the application could not write (live restores).
    public let writeLockMilliseconds: Double?
    /// App hooks run, in order.
    public let hooks: [HookResult]
    /// A SIGINT/SIGTERM that came after the restore had committed: it finished anyway.
    public let interruptedTooLate: Bool

    /// Rows the restore discarded, summed over tables.
    public var discardedRows: Int { differences.discardedRows }

    static func notPerformed(_ preview: RestorePreview, alreadyHeld: Bool = false) -> RestoreOutcome {
        var outcome = RestoreOutcome(preview: preview, performed: false, preRestoreBackup: nil, differences: preview.differences,
                                     notCompared: preview.notCompared, movedAside: nil, provenPages: nil, unproven: nil,
                                     writeLockMilliseconds: nil, hooks: [], interruptedTooLate: false)
        outcome.alreadyHeld = alreadyHeld
        return outcome
    }
}
