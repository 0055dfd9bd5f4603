import Support

/// The Orchestrator's failure codes (docs/errors.md, Orchestrator): instances, config, and the
/// deploy, restore and backup use cases.
extension FailureCode {
    public static let notADeploymentRoot = FailureCode("config.not_a_root", .usage)
    public static let configInvalid = FailureCode("config.invalid", .usage)
    public static let instanceUnknown = FailureCode("instance.unknown", .missingInput)
    public static let instanceInvalidName = FailureCode("instance.invalid_name", .usage)
    public static let instanceExists = FailureCode("instance.exists", .usage)
    public static let sharedDatabase = FailureCode("config.shared_database", .usage)
    public static let databaseUnknown = FailureCode("config.database_unknown", .usage)
    public static let databaseNotNamed = FailureCode("config.database_not_named", .usage)
    public static let migrationsFolderMissing = FailureCode("config.migrations_missing", .missingInput)
    public static let sharedBackupsFolder = FailureCode("config.shared_backups_folder", .usage)
    public static let backupsFolderConflict = FailureCode("config.backups_folder_conflict", .usage)
    public static let remoteUnknown = FailureCode("config.remote_unknown", .usage)
    public static let seedUnreadable = FailureCode("config.seed_unreadable", .missingInput)
    public static let ownSnapshotUnreadable = FailureCode("encryption.own_snapshot_unreadable", .usage)

    public static let databaseMissing = FailureCode("database.missing", .missingInput)
    public static let databaseHeld = FailureCode("database.held", .temporary)
    public static let databaseReadOnly = FailureCode("database.read_only", .cannotCreate)
    public static let databaseDamaged = FailureCode("database.damaged", .badData)
    public static let databaseUnreadable = FailureCode("database.unreadable", .badData)
    public static let deployUnfinished = FailureCode("deploy.unfinished", .unproven)
    public static let restoreUnfinished = FailureCode("restore.unfinished", .unproven)
    public static let deployNotFound = FailureCode("deploy.not_found", .missingInput)
    public static let statusCheckFailed = FailureCode("status.check_failed", .failed)
    public static let backupFailedCheck = FailureCode("backup.failed_check", .badData)
    public static let backupFutureDated = FailureCode("backup.future_dated", .unproven)
    public static let backupStale = FailureCode("backup.stale", .failed)

    public static let hookStopFailed = FailureCode("hook.stop_failed", .failed)
    public static let hookStartFailed = FailureCode("hook.start_failed", .failed)
    public static let hookHealthFailed = FailureCode("hook.health_failed", .failed)

    public static let onlineRefused = FailureCode("deploy.online_refused", .usage)
    public static let promotionRefused = FailureCode("deploy.promotion_refused", .failed)
    public static let deployUndone = FailureCode("deploy.undone", .failed)
    public static let deployUndoFailed = FailureCode("deploy.undo_failed", .unproven)
    public static let journalUnreadable = FailureCode("journal.unreadable", .badData)
    public static let interrupted = FailureCode("command.interrupted", .failed)

    public static let noBackups = FailureCode("backup.none", .missingInput)
    public static let noUsableBackup = FailureCode("backup.none_usable", .missingInput)
    public static let backupForeign = FailureCode("backup.foreign", .badData)
    public static let backupVerificationFailed = FailureCode("backup.verification_failed", .badData)
    public static let backupsChangedWhileAsked = FailureCode("backup.changed_while_asked", .usage)
    public static let backupRemoveRefused = FailureCode("backup.remove_refused", .usage)

    public static let restoreTargetFolderMissing = FailureCode("restore.target_folder_missing", .cannotCreate)
    public static let restoreTargetIsDatabaseFile = FailureCode("restore.target_is_database_file", .usage)
    public static let restoreReplaceRefused = FailureCode("restore.replace_refused", .usage)
    public static let restorePageSizeMismatch = FailureCode("restore.page_size_mismatch", .failed)
    public static let restoreProofFailed = FailureCode("restore.proof_failed", .failed)
    public static let restorePutBack = FailureCode("restore.put_back", .failed)
    public static let restorePutBackFailed = FailureCode("restore.put_back_failed", .unproven)

    public static let confirmationNeeded = FailureCode("confirm.needs_yes", .usage)
    public static let declined = FailureCode("confirm.declined", .failed)
    public static let metricsWriteFailed = FailureCode("metrics.write_failed", .cannotCreate)
}
