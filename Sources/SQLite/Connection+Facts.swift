import Foundation
import Support

/// Facts about a database file the use cases above ask for, each one question answered here so
/// that no SQL is written outside the modules that own it.
extension Connection {
    /// The database's size as SQLite sees it (page count × page size, the WAL's last commit
    /// included; a large but checkpointed `-wal` adds nothing): what a copy of it takes. Never
    /// waits for a lock; nil when it cannot be opened.
    public static func bytesAsSQLiteSeesThem(path: String) -> Int64? {
        guard let db = try? Connection(path: path, mode: .inspect, busyTimeout: .zero),
              let pages = try? db.scalar("PRAGMA page_count").int, let size = try? db.scalar("PRAGMA page_size").int else { return nil }
        return pages * size
    }

    /// The bytes of `table` and its indexes (their pages from `dbstat`; 0 where this libsqlite3
    /// has no `dbstat`).
    public static func treeBytes(path: String, table: String, busyTimeout: Duration) throws -> Int64 {
        let db = try Connection(path: path, mode: .inspect, busyTimeout: busyTimeout)
        let trees = [table] + (try db.rows("SELECT name FROM sqlite_schema WHERE type = 'index' AND tbl_name = ?", [.text(table)]).compactMap { $0[0].string })
        return trees.reduce(Int64(0)) { bytes, tree in
            bytes + ((try? db.scalar("SELECT pgsize FROM dbstat('main', 1) WHERE name = ?", [.text(tree)]).int) ?? 0)
        }
    }

    /// Creates the database at `path` (which must not exist) and runs `sql` in it, with no
    /// surrounding transaction: the SQL may set the journal mode.
    public static func create(at path: String, running sql: String) throws {
        let db = try Connection(path: path, mode: .create)
        try db.execute(sql)
    }

    /// Whether `path` is a SQLite database that opens and passes `quick_check`.
    public static func isHealthy(path: String, busyTimeout: Duration) -> Bool {
        (try? Connection(path: path, mode: .inspect, busyTimeout: busyTimeout).integrityProblems().isEmpty) == true
    }

    /// The tables of the database at `path`, read without a lock (`.immutable`) or, for a live
    /// database, as a reader (`.inspect`).
    public static func tableNames(path: String, live: Bool, busyTimeout: Duration = .seconds(5)) throws -> [String] {
        try Connection(path: path, mode: live ? .inspect : .immutable, busyTimeout: busyTimeout).tableNames()
    }

    /// The schema (every object's SQL) and every table's content fingerprint of the live
    /// database at `path`, read in one read transaction: what a command that should not touch
    /// it must leave as it was. Linear in its rows.
    public static func contentFingerprint(path: String, busyTimeout: Duration) throws -> DatabaseFingerprint {
        let db = try Connection(path: path, mode: .inspect, busyTimeout: busyTimeout)
        try db.execute("BEGIN")
        defer { try? db.execute("COMMIT") }
        var schema = try db.rows("SELECT type, name, coalesce(sql, '') FROM sqlite_schema ORDER BY type, name").map { row in
            row.map { $0.string ?? "" }.joined(separator: " ")
        }
        // The header's own fields a command could change: user_version, application_id, the journal mode.
        for pragma in ["user_version", "application_id", "journal_mode"] {
            let value = try db.scalar("PRAGMA \(pragma)")
            schema.append("\(pragma)=\(value.int.map(String.init) ?? value.string ?? "")")
        }
        return DatabaseFingerprint(schema: schema, tables: try db.tableNames().map { try db.fingerprint(table: $0) })
    }

    /// The page size of the database at `path`.
    public static func pageSize(path: String, live: Bool) throws -> Int64 {
        try Connection(path: path, mode: live ? .inspect : .immutable).scalar("PRAGMA page_size").int ?? 0
    }

    /// Whether nobody committed to this database since this connection read `version`
    /// (`dataVersion`): one read transaction, so the answer is SQLite's own.
    public func unchanged(since version: UInt32) throws -> Bool {
        try execute("BEGIN")
        _ = try scalar("SELECT count(*) FROM sqlite_schema")
        let unchanged = dataVersion == version
        try execute("COMMIT")
        return unchanged
    }

    /// Turns `PRAGMA query_only` on or off: a preview connection reads only until the operator
    /// has said yes.
    public func setQueryOnly(_ on: Bool) throws {
        try execute("PRAGMA query_only = \(on ? "ON" : "OFF")")
    }

    /// `quick_check` and `foreign_key_check` problems of the database, each prefixed with the
    /// check that found it, foreign key problems cut at `foreignKeyLimit`.
    public func healthProblems(foreignKeyLimit: Int = 10) throws -> [String] {
        try integrityProblems().map { "quick_check: \($0)" } + foreignKeyProblems().prefix(foreignKeyLimit).map { "foreign_key_check: \($0)" }
    }
}

/// A database's schema and content, as `Connection.contentFingerprint` reads them.
public struct DatabaseFingerprint: Sendable, Equatable {
    public let schema: [String]
    public let tables: [TableFingerprint]

    /// What differs from `other`, in words (tables whose rows differ, objects added or gone).
    public func differences(from other: DatabaseFingerprint) -> [String] {
        var found = [String]()
        let mine = Dictionary(tables.map { ($0.table, $0) }, uniquingKeysWith: { a, _ in a })
        for table in other.tables where mine[table.table] != table {
            found.append(mine[table.table].map { "\(table.table): rows changed (\(table.rows) → \($0.rows) rows)" } ?? "\(table.table): gone")
        }
        for table in tables where !other.tables.contains(where: { $0.table == table.table }) { found.append("\(table.table): new") }
        if found.isEmpty && schema != other.schema {
            found.append("its schema or header changed (" + zip(other.schema, schema).filter { $0 != $1 }.prefix(2).map { "\($0) → \($1)" }.joined(separator: "; ") + ")")
        }
        return found
    }
}
