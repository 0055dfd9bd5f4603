import CSQLite

/// One action SQLite's authorizer reported while preparing a statement
/// (https://sqlite.org/c3ref/set_authorizer.html).
public struct AuthorizerAction: Sendable, Hashable {
    /// The action code, e.g. `SQLITE_CREATE_TABLE`.
    public let code: Int32
    /// The first argument (usually a table or index name).
    public let first: String?
    /// The second argument (a table name for indexes/triggers, a column for reads/updates).
    public let second: String?
    /// The database name ("main", "temp", an attached name).
    public let database: String?
    /// The innermost trigger or view responsible, if any.
    public let source: String?

    /// A readable name for the action code.
    public var name: String {
        switch code {
        case SQLITE_CREATE_INDEX: return "CREATE INDEX"
        case SQLITE_CREATE_TABLE: return "CREATE TABLE"
        case SQLITE_CREATE_TEMP_INDEX: return "CREATE TEMP INDEX"
        case SQLITE_CREATE_TEMP_TABLE: return "CREATE TEMP TABLE"
        case SQLITE_CREATE_TEMP_TRIGGER: return "CREATE TEMP TRIGGER"
        case SQLITE_CREATE_TEMP_VIEW: return "CREATE TEMP VIEW"
        case SQLITE_CREATE_TRIGGER: return "CREATE TRIGGER"
        case SQLITE_CREATE_VIEW: return "CREATE VIEW"
        case SQLITE_DELETE: return "DELETE"
        case SQLITE_DROP_INDEX: return "DROP INDEX"
        case SQLITE_DROP_TABLE: return "DROP TABLE"
        case SQLITE_DROP_TEMP_INDEX: return "DROP TEMP INDEX"
        case SQLITE_DROP_TEMP_TABLE: return "DROP TEMP TABLE"
        case SQLITE_DROP_TEMP_TRIGGER: return "DROP TEMP TRIGGER"
        case SQLITE_DROP_TEMP_VIEW: return "DROP TEMP VIEW"
        case SQLITE_DROP_TRIGGER: return "DROP TRIGGER"
        case SQLITE_DROP_VIEW: return "DROP VIEW"
        case SQLITE_INSERT: return "INSERT"
        case SQLITE_PRAGMA: return "PRAGMA"
        case SQLITE_READ: return "READ"
        case SQLITE_SELECT: return "SELECT"
        case SQLITE_TRANSACTION: return "TRANSACTION"
        case SQLITE_UPDATE: return "UPDATE"
        case SQLITE_ATTACH: return "ATTACH"
        case SQLITE_DETACH: return "DETACH"
        case SQLITE_ALTER_TABLE: return "ALTER TABLE"
        case SQLITE_REINDEX: return "REINDEX"
        case SQLITE_ANALYZE: return "ANALYZE"
        case SQLITE_CREATE_VTABLE: return "CREATE VIRTUAL TABLE"
        case SQLITE_DROP_VTABLE: return "DROP VIRTUAL TABLE"
        case SQLITE_FUNCTION: return "FUNCTION"
        case SQLITE_SAVEPOINT: return "SAVEPOINT"
        case SQLITE_RECURSIVE: return "RECURSIVE"
        default: return "ACTION \(code)"
        }
    }
}

final class AuthorizerBox {
    var actions: [AuthorizerAction] = []
}

extension Connection {
    /// Prepares `sql` (without running it) and returns every action SQLite's authorizer reports
    /// for it, in order. SQLite itself decides what the statement touches; nothing is parsed here.
    /// - Throws: `SQLiteError` when the statement does not prepare.
    public func authorizerActions(for sql: String) throws -> [AuthorizerAction] {
        let box = AuthorizerBox()
        authorizerBox = box
        sqlite3_set_authorizer(handle, { context, code, a, b, c, d in
            let box = Unmanaged<AuthorizerBox>.fromOpaque(context!).takeUnretainedValue()
            box.actions.append(AuthorizerAction(
                code: code, first: a.map { String(cString: $0) }, second: b.map { String(cString: $0) },
                database: c.map { String(cString: $0) }, source: d.map { String(cString: $0) }))
            return SQLITE_OK
        }, Unmanaged.passUnretained(box).toOpaque())
        defer {
            sqlite3_set_authorizer(handle, nil, nil)
            authorizerBox = nil
        }
        _ = try prepare(sql)
        return box.actions
    }
}
