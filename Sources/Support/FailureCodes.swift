/// The Support module's failure codes (docs/errors.md, Support).
extension FailureCode {
    /// A libcrypto call (SHA-256, HMAC) failed: a broken or missing library, or no memory.
    public static let cryptoLibraryFailed = FailureCode("crypto.library_failed", .io)
    public static let failpointInvalid = FailureCode("failpoint.invalid", .usage)
    public static let failpointTriggered = FailureCode("failpoint.triggered", .failed)
    /// An error of no deployctl type (a library's own): a defect to report, with its text.
    public static let internalError = FailureCode("internal.error", .failed)
    /// The first word of the command line names no command.
    public static let usageUnknownCommand = FailureCode("usage.unknown_command", .usage)
    /// The command line does not parse: an unknown option, a missing or bad value.
    public static let usageInvalidArguments = FailureCode("usage.invalid_arguments", .usage)
    /// Not enough free space for what a command is about to write (checked before writing).
    public static let spaceInsufficient = FailureCode("space.insufficient", .io)
    /// A write ran out of space (ENOSPC, EDQUOT).
    public static let fileNoSpace = FailureCode("file.no_space", .io)
    /// A file or folder cannot be created: permissions, a read-only filesystem, a file in the way.
    public static let fileCannotCreate = FailureCode("file.cannot_create", .cannotCreate)
    /// Permission denied on a file being read or written (not created).
    public static let filePermissionDenied = FailureCode("file.permission_denied", .io)
    /// A file that must be new exists already.
    public static let fileExists = FailureCode("file.exists", .io)
    /// Any other failed read, write, fsync or rename.
    public static let fileIOError = FailureCode("file.io_error", .io)
    /// The checked permissions refuse reading something a command needs (`FileAccess`).
    public static let accessReadDenied = FailureCode("access.read_denied", .missingInput)
    /// The checked permissions refuse writing something a command changes (`FileAccess`).
    public static let accessWriteDenied = FailureCode("access.write_denied", .cannotCreate)
}
