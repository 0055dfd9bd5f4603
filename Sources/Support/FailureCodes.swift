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
}
