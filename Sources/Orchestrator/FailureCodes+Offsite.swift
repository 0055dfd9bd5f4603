import Support

/// The Orchestrator's offsite failure codes (docs/errors.md, Offsite): the use cases around
/// the remote store (the store's own codes are in Offsite's FailureCodes.swift).
extension FailureCode {
    public static let offsiteNoLocalBackup = FailureCode("offsite.no_local_backup", .missingInput)
    public static let offsiteNoRetentionRule = FailureCode("offsite.no_retention_rule", .usage)
    public static let offsiteSigningKeyUnreadable = FailureCode("offsite.signing_key_unreadable", .io)
    public static let offsiteSigningKeyExposed = FailureCode("offsite.signing_key_exposed", .usage)
    public static let keygenNoFileName = FailureCode("keygen.no_file_name", .usage)
    public static let keygenFolderMissing = FailureCode("keygen.folder_missing", .cannotCreate)
    public static let keygenFileExists = FailureCode("keygen.file_exists", .cannotCreate)
}
