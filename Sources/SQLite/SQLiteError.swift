import CSQLite
import Support

/// A failed SQLite call: the result code, SQLite's message and the SQL that failed.
///
/// Bound values are never part of the message.
public struct SQLiteError: DeployctlError, Sendable {
    /// The extended result code (https://sqlite.org/rescode.html).
    public let code: Int32
    /// SQLite's message, from `sqlite3_errmsg`.
    public let sqliteMessage: String
    /// The statement that failed, when there is one.
    public let sql: String?
    /// Where: the database file or operation.
    public let context: String

    public init(code: Int32, message: String, sql: String? = nil, context: String = "") {
        self.code = code
        self.sqliteMessage = message
        self.sql = sql
        self.context = context
    }

    /// The primary result code (low byte of the extended one).
    public var primaryCode: Int32 { code & 0xff }

    public var kind: FailureKind {
        switch primaryCode {
        case SQLITE_NOTADB, SQLITE_CORRUPT: return .badData
        case SQLITE_BUSY, SQLITE_LOCKED: return .temporary
        case SQLITE_CANTOPEN: return .missingInput
        case SQLITE_FULL, SQLITE_IOERR: return .io
        default: return .failed
        }
    }

    public var message: String {
        var text = context.isEmpty ? "" : "\(context): "
        text += "SQLite error \(code): \(sqliteMessage)"
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
