import Support

/// The SQLite module's failure codes (docs/errors.md, SQLite).
extension FailureCode {
    public static let sqliteNotADatabase = FailureCode("sqlite.not_a_database", .badData)
    public static let sqliteCorrupt = FailureCode("sqlite.corrupt", .badData)
    public static let sqliteBusy = FailureCode("sqlite.busy", .temporary)
    public static let sqliteCannotOpen = FailureCode("sqlite.cannot_open", .missingInput)
    public static let sqliteDiskFull = FailureCode("sqlite.disk_full", .io)
    public static let sqliteIOError = FailureCode("sqlite.io_error", .io)
    public static let sqliteInterrupted = FailureCode("sqlite.interrupted", .failed)
    public static let sqliteReadOnly = FailureCode("sqlite.read_only", .failed)
    public static let sqliteError = FailureCode("sqlite.error", .failed)
    /// The database file does not exist.
    public static let databaseNotFound = FailureCode("database.not_found", .missingInput)
    /// The database file exists but cannot be read.
    public static let databaseCannotRead = FailureCode("database.cannot_read", .io)
}
