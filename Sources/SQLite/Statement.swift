import CSQLite

/// A prepared statement (https://sqlite.org/c3ref/stmt.html), finalized on deinit.
public final class Statement {
    let handle: OpaquePointer
    let connection: Connection
    /// The statement's SQL text.
    public let sql: String

    init(handle: OpaquePointer, connection: Connection, sql: String) {
        self.handle = handle
        self.connection = connection
        self.sql = sql
    }

    deinit { sqlite3_finalize(handle) }

    private static let transient = unsafeBitCast(-1, to: sqlite3_destructor_type.self)

    /// Binds values to parameters 1…n.
    /// - Throws: `SQLiteError`.
    public func bind(_ values: [Value]) throws {
        for (offset, value) in values.enumerated() {
            let i = Int32(offset + 1)
            let rc: Int32
            switch value {
            case .null: rc = sqlite3_bind_null(handle, i)
            case .integer(let v): rc = sqlite3_bind_int64(handle, i, v)
            case .real(let v): rc = sqlite3_bind_double(handle, i, v)
            case .text(let v): rc = sqlite3_bind_text(handle, i, v, -1, Self.transient)
            case .blob(let v): rc = v.withUnsafeBytes { sqlite3_bind_blob(handle, i, $0.baseAddress, Int32($0.count), Self.transient) }
            }
            guard rc == SQLITE_OK else { throw connection.error(rc, sql: sql) }
        }
    }

    /// Resets the statement so that it can be bound and stepped again.
    /// - Throws: `SQLiteError` of the last step, when it failed.
    public func reset() throws {
        let rc = sqlite3_reset(handle)
        guard rc == SQLITE_OK else { throw connection.error(rc, sql: sql) }
    }

    /// Steps once: true when a row is ready, false when done.
    /// - Throws: `SQLiteError`.
    public func step() throws -> Bool {
        let rc = sqlite3_step(handle)
        switch rc {
        case SQLITE_ROW: return true
        case SQLITE_DONE: return false
        default: throw connection.error(rc, sql: sql)
        }
    }

    /// The number of result columns.
    public var columnCount: Int { Int(sqlite3_column_count(handle)) }

    /// The result column names.
    public var columnNames: [String] {
        (0..<Int32(columnCount)).map { String(cString: sqlite3_column_name(handle, $0)) }
    }

    /// Column `i` of the current row.
    public func column(_ i: Int) -> Value {
        let i = Int32(i)
        switch sqlite3_column_type(handle, i) {
        case SQLITE_INTEGER: return .integer(sqlite3_column_int64(handle, i))
        case SQLITE_FLOAT: return .real(sqlite3_column_double(handle, i))
        case SQLITE_TEXT: return .text(String(cString: sqlite3_column_text(handle, i)))
        case SQLITE_BLOB:
            let count = Int(sqlite3_column_bytes(handle, i))
            guard count > 0, let base = sqlite3_column_blob(handle, i) else { return .blob([]) }
            return .blob(Array(UnsafeRawBufferPointer(start: base, count: count)))
        default: return .null
        }
    }

    /// Column `i` of the current row as raw bytes with a type tag, without building a `Value`:
    /// the fast path for hashing content.
    public func withColumnBytes<R>(_ i: Int, _ body: (_ type: Int32, _ bytes: UnsafeRawBufferPointer) -> R) -> R {
        let i = Int32(i)
        let type = sqlite3_column_type(handle, i)
        switch type {
        case SQLITE_INTEGER:
            var v = sqlite3_column_int64(handle, i).bigEndian
            return withUnsafeBytes(of: &v) { body(type, $0) }
        case SQLITE_FLOAT:
            var v = sqlite3_column_double(handle, i).bitPattern.bigEndian
            return withUnsafeBytes(of: &v) { body(type, $0) }
        case SQLITE_TEXT:
            let base = sqlite3_column_text(handle, i)
            let count = Int(sqlite3_column_bytes(handle, i))
            return body(type, UnsafeRawBufferPointer(start: base, count: count))
        case SQLITE_BLOB:
            let base = sqlite3_column_blob(handle, i)
            let count = Int(sqlite3_column_bytes(handle, i))
            return body(type, UnsafeRawBufferPointer(start: base, count: count))
        default:
            return body(type, UnsafeRawBufferPointer(start: nil, count: 0))
        }
    }

    /// The current row.
    public func row() -> [Value] { (0..<columnCount).map(column) }
}
