import Support

/// The Backup module's failure codes (docs/errors.md, Backup).
extension FailureCode {
    public static let backupChecksumMismatch = FailureCode("backup.checksum_mismatch", .badData)
    public static let backupSizeMismatch = FailureCode("backup.size_mismatch", .badData)
    public static let backupCompressionDamaged = FailureCode("backup.compression_damaged", .badData)
    public static let backupIntegrityFailed = FailureCode("backup.integrity_failed", .badData)
    public static let backupUnreadable = FailureCode("backup.unreadable", .badData)
    public static let backupManifestMissing = FailureCode("backup.manifest_missing", .badData)
    public static let backupForeignFile = FailureCode("backup.foreign_file", .badData)
    public static let backupNotEncryptable = FailureCode("backup.not_encryptable", .badData)
    public static let backupRecompressFailed = FailureCode("backup.recompress_failed", .badData)
    public static let backupNotFound = FailureCode("backup.not_found", .missingInput)
    public static let backupInvalidName = FailureCode("backup.invalid_name", .usage)
    public static let backupInvalidLabel = FailureCode("backup.invalid_label", .usage)
    public static let backupNoIdentity = FailureCode("backup.no_identity", .usage)
    public static let backupFolderUnusable = FailureCode("backup.folder_unusable", .cannotCreate)
    public static let backupFolderFull = FailureCode("backup.folder_full", .io)
    public static let backupInterrupted = FailureCode("backup.interrupted", .failed)
    public static let snapshotCopyDamaged = FailureCode("snapshot.copy_damaged", .badData)
    public static let compressionLibraryFailed = FailureCode("compression.library_failed", .io)
    public static let retentionInvalidDuration = FailureCode("retention.invalid_duration", .usage)
    public static let restoreLiveReadOnly = FailureCode("restore.live_read_only", .cannotCreate)
    public static let restoreTargetExists = FailureCode("restore.target_exists", .cannotCreate)
    public static let restoreRolledBack = FailureCode("restore.rolled_back", .failed)
    public static let restoreUnproven = FailureCode("restore.unproven", .unproven)
}
