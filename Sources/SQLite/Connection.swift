import CSQLite
import Foundation
import Support

/// One SQLite connection over the system `libsqlite3`.
///
/// Not `Sendable`: a connection belongs to the code that opened it. It is closed on deinit.
/// Every result code is checked on the spot and turned into `SQLiteError`.
public final class Connection {
    /// How a database file is opened.
    public enum Mode: Sendable {
        /// Read-only; the file must exist.
        case readOnly
        /// Read-only and immutable: SQLite takes no locks and never creates `-wal`/`-shm`/journal
        /// files beside it. Only for files nothing else writes (backups, scratch copies).
        case immutable
        /// Reads the latest committed state of a live database and cannot write
        /// (`PRAGMA query_only`). Opened read-write without create because a read-only WAL
        /// connection leaves `-wal`/`-shm` files behind that were not there; this one removes them
        /// when it is the last connection, and the database's bytes and mtime stay unchanged. A
        /// `-wal` that was there before is never checkpointed or removed by it.
        case inspect
        /// Read-write; the file must exist (never created: a live database is never conjured up).
        case readWrite
        /// Read-write, created if missing: only for new files deployctl owns (temp backups).
        case create
    }

    let handle: OpaquePointer
    /// The file this connection opened.
    public let path: String
    /// How long a statement waits for another connection's lock before `SQLITE_BUSY`.
    public let busyTimeout: Duration
    var authorizerBox: AuthorizerBox?
    var stopBox: StopBox?

    /// Opens `path` in `mode` with a busy timeout, through the VFS named `vfs` (the default one
    /// when nil).
    ///
    /// Checks the header of an existing file first, so that a non-database fails fast and
    /// clearly, reading through SQLite's own open file: never through a descriptor of our own,
    /// whose close would silently drop every POSIX lock this process holds on the file (a live
    /// database's SHARED lock among them, after which another process could think itself the
    /// last connection and delete the WAL under us).
    /// - Throws: `SQLiteError`; `.missingInput` `Failure` when the file does not exist and `mode`
    ///   does not create; `.badData` when the file is not a SQLite database; `.io` when it
    ///   cannot be read.
    public init(path: String, mode: Mode, busyTimeout: Duration = .seconds(5), vfs: String? = nil) throws {
        self.path = path
        self.busyTimeout = busyTimeout
        let checked = mode != .create && path != ":memory:"
        if checked {
            guard FileManager.default.fileExists(atPath: path) else {
                throw Failure(.databaseNotFound, "database file \(path) does not exist",
                              hint: "check the instance config's database path; a live database is never created by deployctl")
            }
        }
        var flags = SQLITE_OPEN_URI | SQLITE_OPEN_NOMUTEX | SQLITE_OPEN_EXRESCODE
        var filename = path
        switch mode {
        case .readOnly: flags |= SQLITE_OPEN_READONLY
        case .immutable:
            flags |= SQLITE_OPEN_READONLY
            filename = Self.uri(path, query: "immutable=1")
        case .readWrite, .inspect: flags |= SQLITE_OPEN_READWRITE
        case .create: flags |= SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE
        }
        if mode != .immutable { filename = path == ":memory:" ? "file::memory:" : Self.uri(path, query: nil) }
        var db: OpaquePointer?
        let rc = sqlite3_open_v2(filename, &db, flags, vfs)
        guard rc == SQLITE_OK, let db else {
            let message = db.map { String(cString: sqlite3_errmsg($0)) } ?? "out of memory"
            sqlite3_close_v2(db)
            if checked && rc & 0xff == SQLITE_CANTOPEN {
                throw Failure(.databaseCannotRead, "cannot read \(path)", hint: "check the file's permissions")
            }
            throw SQLiteError(code: rc, message: message, context: path)
        }
        handle = db
        if checked { try checkHeader() }
        Self.setBusyTimeout(db, busyTimeout)
        sqlite3_extended_result_codes(db, 1)
        if mode == .inspect {
            try execute("PRAGMA query_only = ON")
            // A -wal that was there before (an application's, maybe hot after a crash) is left
            // exactly as it was: closing must not checkpoint it into the database or delete it.
            if FileManager.default.fileExists(atPath: path + "-wal") { deployctl_no_checkpoint_on_close(db) }
        }
    }

    private static func setBusyTimeout(_ db: OpaquePointer, _ timeout: Duration) {
        let ms = timeout.components.seconds * 1000 + timeout.components.attoseconds / 1_000_000_000_000_000
        sqlite3_busy_timeout(db, Int32(clamping: ms))
    }

    /// Runs `body` with statements that fail with `SQLITE_BUSY` at once instead of waiting for
    /// a lock: for optional reads that must not spend the caller's busy timeout.
    public func withoutWaitingForLocks<T>(_ body: () throws -> T) rethrows -> T {
        Self.setBusyTimeout(handle, .zero)
        defer { Self.setBusyTimeout(handle, busyTimeout) }
        return try body()
    }

    deinit {
        if authorizerBox != nil { sqlite3_set_authorizer(handle, nil, nil) }
        sqlite3_close_v2(handle)
    }

    /// Throws unless `path` exists and starts with the SQLite header (an empty file counts as a
    /// database, as SQLite itself treats it). Reads through a connection (see `init`).
    /// - Throws: `Failure` `.missingInput`, `.badData` or `.io`.
    /// An empty (0-byte) file is refused too: SQLite would take it for an empty database and a
    /// deploy would build its tables there, but an application's database is never empty.
    public static func checkIsDatabase(_ path: String) throws {
        var info = stat()
        if stat(path, &info) == 0 {
            if (info.st_mode & S_IFMT) == S_IFDIR {
                throw Failure(.sqliteNotADatabase, "\(path) is a folder, not a SQLite database", hint: "point [database] path at the database file")
            }
            if info.st_size == 0 {
                throw Failure(.sqliteNotADatabase, "\(path) is empty (0 bytes): not an application's database",
                              hint: "point [database] path at the application's database, or put one back with restore --latest --replace")
            }
        }
        _ = try Connection(path: path, mode: .immutable)
    }

    /// Throws unless the main file is empty or starts with the SQLite header (an initializer
    /// that throws it still runs `deinit`, which closes the handle).
    private func checkHeader() throws {
        let header: [UInt8]
        do {
            header = try fileSize() == 0 ? [] : readFileBytes(at: 0, count: 16)
        } catch {
            throw Failure(.sqliteNotADatabase, "\(path) is not a SQLite database (it is shorter than a header)",
                          hint: "check the path, or restore the file from a backup")
        }
        guard header.isEmpty || header == Array("SQLite format 3\0".utf8) else {
            throw Failure(.sqliteNotADatabase, "\(path) is not a SQLite database (its header is wrong)",
                          hint: "check the path, or restore the file from a backup")
        }
    }

    /// A `file:` URI for `path`, escaping the characters URIs reserve.
    package static func uri(_ path: String, query: String?) -> String {
        var escaped = ""
        for ch in path.unicodeScalars {
            switch ch {
            case "%": escaped += "%25"
            case "?": escaped += "%3f"
            case "#": escaped += "%23"
            default: escaped.unicodeScalars.append(ch)
            }
        }
        let absolute = escaped.hasPrefix("/") ? escaped : FileManager.default.currentDirectoryPath + "/" + escaped
        return "file:" + absolute + (query.map { "?" + $0 } ?? "")
    }

    /// The last error on this connection as a `SQLiteError`.
    func error(_ rc: Int32, sql: String? = nil) -> SQLiteError {
        SQLiteError(code: rc, message: String(cString: sqlite3_errmsg(handle)), sql: sql, context: path)
    }

    /// Prepares one statement.
    /// - Throws: `SQLiteError` naming the SQL.
    public func prepare(_ sql: String) throws -> Statement {
        var stmt: OpaquePointer?
        let rc = sqlite3_prepare_v2(handle, sql, -1, &stmt, nil)
        guard rc == SQLITE_OK, let stmt else { throw error(rc, sql: sql) }
        return Statement(handle: stmt, connection: self, sql: sql)
    }

    /// Runs one or more statements, discarding rows.
    /// - Throws: `SQLiteError` naming the failing statement.
    public func execute(_ sql: String) throws {
        for statement in try Self.split(sql) {
            let stmt = try prepare(statement)
            while try stmt.step() {}
        }
    }

    /// Runs a query with bound values and returns every row.
    /// - Throws: `SQLiteError`.
    public func rows(_ sql: String, _ values: [Value] = []) throws -> [[Value]] {
        let stmt = try prepare(sql)
        try stmt.bind(values)
        var result = [[Value]]()
        while try stmt.step() { result.append(stmt.row()) }
        return result
    }

    /// The first column of the first row, or `.null`.
    /// - Throws: `SQLiteError`.
    public func scalar(_ sql: String, _ values: [Value] = []) throws -> Value {
        let stmt = try prepare(sql)
        try stmt.bind(values)
        return try stmt.step() ? stmt.column(0) : .null
    }

    /// Splits SQL text into complete statements, using SQLite's own tokenizer
    /// (`sqlite3_complete`), so semicolons inside strings, comments and triggers are handled.
    /// Empty statements and pure comments are dropped.
    public static func split(_ sql: String) throws -> [String] {
        var statements = [String]()
        var current = ""
        for line in sql.split(separator: "\n", omittingEmptySubsequences: false) {
            current += line + "\n"
            for piece in splitLine(&current) { statements.append(piece) }
        }
        let rest = current.trimmingCharacters(in: .whitespacesAndNewlines)
        if !rest.isEmpty && !isOnlyComments(rest) { statements.append(stripLeadingComments(rest)) }
        return statements
    }

    private static func splitLine(_ buffer: inout String) -> [String] {
        var out = [String]()
        var start = buffer.startIndex
        var index = buffer.startIndex
        while index < buffer.endIndex {
            if buffer[index] == ";" {
                let candidate = String(buffer[start...index])
                if sqlite3_complete(candidate) != 0 {
                    let trimmed = candidate.trimmingCharacters(in: .whitespacesAndNewlines)
                    if !isOnlyComments(trimmed) && trimmed != ";" { out.append(stripLeadingComments(trimmed)) }
                    start = buffer.index(after: index)
                }
            }
            index = buffer.index(after: index)
        }
        buffer = String(buffer[start...])
        return out
    }

    /// Drops the `--` comment lines and blank lines in front of a statement.
    private static func stripLeadingComments(_ text: String) -> String {
        var lines = text.split(separator: "\n", omittingEmptySubsequences: false)[...]
        while let first = lines.first, first.trimmingCharacters(in: .whitespaces).hasPrefix("--") || first.trimmingCharacters(in: .whitespaces).isEmpty {
            lines = lines.dropFirst()
        }
        return lines.joined(separator: "\n")
    }

    private static func isOnlyComments(_ text: String) -> Bool {
        var rest = Substring(text)
        var kept = ""
        while let open = rest.range(of: "/*") {
            kept += rest[..<open.lowerBound]
            guard let close = rest[open.upperBound...].range(of: "*/") else { rest = ""; break }
            rest = rest[close.upperBound...]
        }
        kept += rest
        return kept.split(separator: "\n").allSatisfy { line in
            let t = line.trimmingCharacters(in: .whitespaces)
            return t.isEmpty || t.hasPrefix("--") || t == ";"
        }
    }

    /// Whether the connection is inside a transaction.
    public var inTransaction: Bool { sqlite3_get_autocommit(handle) == 0 }

    /// Turns the firing of triggers on or off for this connection only
    /// (`SQLITE_DBCONFIG_ENABLE_TRIGGER`); other connections are not affected.
    /// - Throws: `SQLiteError` when SQLite did not take the setting.
    public func setTriggersEnabled(_ on: Bool) throws {
        guard deployctl_enable_triggers(handle, on ? 1 : 0) == SQLITE_OK else {
            throw SQLiteError(code: SQLITE_ERROR, message: "cannot turn triggers \(on ? "on" : "off")", context: path)
        }
    }

    /// Rows inserted, updated or deleted since the connection opened
    /// (https://sqlite.org/c3ref/total_changes.html).
    public var totalChanges: Int64 { sqlite3_total_changes64(handle) }

    /// The SQLite library version, e.g. "3.40.1".
    public static var libraryVersion: String { String(cString: sqlite3_libversion()) }
}

/// A connection is used by the thread that opened it: the compiler refuses to send one to
/// another thread (`Parallel` work that needs a database opens its own).
@available(*, unavailable)
extension Connection: Sendable {}
