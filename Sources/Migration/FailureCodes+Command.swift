import Support

/// The failure codes of a database migrated by its framework's own command
/// (docs/errors.md, Migration; docs/framework-commands.md).
extension FailureCode {
    /// The program of `migrate_command` or `pending_command` is not found or not executable.
    public static let commandNotFound = FailureCode("command.not_found", .missingInput)
    /// `pending_command`'s output is not in its format.
    public static let commandPendingUnreadable = FailureCode("command.pending_unreadable", .usage)
    /// `pending_command` exited non-zero or timed out.
    public static let commandPendingFailed = FailureCode("command.pending_failed", .failed)
    /// `migrate_command` exited non-zero, timed out or was interrupted.
    public static let commandFailed = FailureCode("command.failed", .failed)
    /// After `migrate_command` ran on the rehearsal copy, `pending_command` still lists
    /// migrations there: the command migrated another file, or nothing.
    public static let commandCopyNotMigrated = FailureCode("command.copy_not_migrated", .failed)
    /// The live database after the command differs from the rehearsal copy after it.
    public static let commandResultDiffers = FailureCode("command.result_differs", .failed)
}
