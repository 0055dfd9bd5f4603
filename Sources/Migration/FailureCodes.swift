import Support

/// The Migration module's failure codes (docs/errors.md, Migration).
extension FailureCode {
    public static let migrationChanged = FailureCode("migration.changed", .badData)
    /// An applied migration's file is gone from the migrations folder.
    public static let migrationFileMissing = FailureCode("migration.file_missing", .usage)
    /// A `.sql` file's name is in no format deployctl reads (R__, a dotted version, no number).
    public static let migrationBadName = FailureCode("migration.bad_name", .usage)
    /// A migration file is not UTF-8 text.
    public static let migrationUnreadable = FailureCode("migration.unreadable", .usage)
    /// A `-- verify:`, `-- online`, … line below the first statement, where it would be ignored.
    public static let migrationDirectiveMisplaced = FailureCode("migration.directive_misplaced", .usage)
    /// Two migration files share one number.
    public static let migrationDuplicateNumber = FailureCode("migration.duplicate_number", .usage)
    /// A statement does not prepare or fails on the plan's copy.
    public static let migrationSQLFailed = FailureCode("migration.sql_failed", .usage)
    /// A statement begins, commits or saves a transaction: deployctl runs each migration in its own.
    public static let migrationTransactionControl = FailureCode("migration.transaction_control", .usage)
    /// A CREATE TABLE names a table that exists with another definition.
    public static let migrationTableShapeDiffers = FailureCode("migration.table_shape_differs", .usage)
    /// On the plan's copy the migrations leave foreign keys pointing nowhere.
    public static let migrationForeignKeysDangling = FailureCode("migration.foreign_keys_dangling", .usage)
    /// The checks inside the migrating transaction failed; it was rolled back.
    public static let migrationVerificationFailed = FailureCode("migration.verification_failed", .failed)
    /// An online rebuild's copy is not equal to the table (proof or the rows changed since).
    public static let onlineProofFailed = FailureCode("online.proof_failed", .failed)
    /// A row of the table does not fit the rebuilt table's constraints.
    public static let onlineRowRefused = FailureCode("online.row_refused", .failed)
    /// `integrity_check` of the rebuilt table failed, before or after the cut-over.
    public static let onlineIntegrityFailed = FailureCode("online.integrity_failed", .failed)
    /// The rebuilt table's foreign keys point nowhere, before or after the cut-over.
    public static let onlineForeignKeysDangling = FailureCode("online.foreign_keys_dangling", .failed)
    /// The cut-over's schema edit did not find or give what the plan expects; rolled back.
    public static let onlineCutOverFailed = FailureCode("online.cut_over_failed", .failed)
    /// The application held the write lock without a gap for longer than the rebuild waits.
    public static let onlineLockTimeout = FailureCode("online.lock_timeout", .temporary)
    /// An undo by dropping what a deploy added, or by its down parts, could not be proven.
    public static let undoUnproven = FailureCode("undo.unproven", .unproven)
    /// An undo by down parts was asked for without proven down parts in the journal.
    public static let undoNoDownParts = FailureCode("undo.no_down_parts", .failed)
}
