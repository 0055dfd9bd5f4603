import Support

/// The Locking module's failure codes (docs/errors.md, Locking).
extension FailureCode {
    /// Another deployctl holds the instance lock.
    public static let lockHeld = FailureCode("lock.held", .temporary)
    /// The holder record cannot be written into the lock file (disk full, I/O error).
    public static let lockRecordFailed = FailureCode("lock.record_failed", .io)
    /// The application (or another process) holds the database's write lock past the wait.
    public static let lockDatabaseBusy = FailureCode("lock.database_busy", .temporary)
    /// A hook's command cannot be started at all.
    public static let hookCannotStart = FailureCode("hook.cannot_start", .failed)
}
