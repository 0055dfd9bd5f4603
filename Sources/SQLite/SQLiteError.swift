import CSQLite
import Support

/// A failed SQLite call: the result code, SQLite's message and the SQL that failed.
///
/// Bound values are never part of the message.
public struct SQLiteError: DeployctlError, Sendable {
    /// The extended result code (https://sqlite.org/rescode.html).
    public let resultCode: Int32
    /// SQLite's message, from `sqlite3_errmsg`.
    public let sqliteMessage: String
    /// The statement that failed, when there is one.
    public let sql: String?
    /// Where: the database file or operation.
    public let context: String

    public init(code: Int32, message: String, sql: String? = nil, context: String = "") {
        self.resultCode = code
        self.sqliteMessage = message
        self.sql = sql
        self.context = context
    }

    /// The primary result code (low byte of the extended one).
    public var primaryCode: Int32 { resultCode & 0xff }

    /// The stable code: one per primary result code deployctl tells apart.
    public var code: FailureCode {
        switch primaryCode {
        case SQLITE_NOTADB: return .sqliteNotADatabase
        case SQLITE_CORRUPT: return .sqliteCorrupt
        case SQLITE_BUSY, SQLITE_LOCKED: return .sqliteBusy
        case SQLITE_CANTOPEN: return .sqliteCannotOpen
        case SQLITE_FULL: return .sqliteDiskFull
        case SQLITE_IOERR: return .sqliteIOError
        case SQLITE_INTERRUPT: return .sqliteInterrupted
        case SQLITE_READONLY: return .sqliteReadOnly
        default: return .sqliteError
        }
    }

    public var message: String {
        var text = context.isEmpty ? "" : "\(context): "
        text += "SQLite error \(resultCode): \(sqliteMessage)"
        if let sql { text += "\n  in: \(sql.count > 300 ? String(sql.prefix(300)) + "…" : sql)" }
        return text
    }

    public var hint: String? {
        switch primaryCode {
        case SQLITE_BUSY, SQLITE_LOCKED: return "the database is locked by another process; stop the application and run again"
        case SQLITE_NOTADB, SQLITE_CORRUPT: return "the file is not a healthy SQLite database; restore it from a backup"
        case SQLITE_FULL: return "free disk space, then run the command again"
        default: return nil
        }
    }
}
