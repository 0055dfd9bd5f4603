import CSQLite
import Support

/// One object in `sqlite_schema`.
public struct SchemaObject: Sendable, Hashable, Codable {
    /// "table", "index", "view" or "trigger".
    public let type: String
    public let name: String
    /// The table an index or trigger belongs to (the object itself for tables and views).
    public let table: String
    /// The CREATE statement, normalized for comparison (nil for automatic indexes).
    public let sql: String?
}

/// What `PRAGMA table_list` says a table is (https://sqlite.org/pragma.html#pragma_table_list);
/// the raw values are its `type` column.
public enum TableKind: String, Sendable {
    case table, view, virtual
    /// A table a virtual table keeps its rows in (FTS5's `x_data`, an R*Tree's `x_node`).
    case shadow
}

/// A table's content fingerprint: row count and an order-independent hash of every row.
public struct TableFingerprint: Sendable, Hashable, Codable {
    public let table: String
    public let rows: Int
    public let sha256: String
}

/// Where a table's b-tree starts and how the table is defined. Two databases whose table has
/// the same root and whose pages of that table are byte-identical hold the same rows in it.
public struct TableRoot: Sendable, Hashable {
    public let rootPage: Int64
    public let sql: String
}

/// Quotes an identifier for SQL ("name" with inner quotes doubled).
public func quoteIdentifier(_ name: String) -> String {
    "\"" + name.replacingOccurrences(of: "\"", with: "\"\"") + "\""
}

extension Connection {
    /// Every schema object of the main database except SQLite's internal ones, sorted by type
    /// and name.
    /// - Throws: `SQLiteError`.
    /// With `exact`, each statement is as sqlite_schema stores it, byte for byte (whitespace kept).
    public func schema(database: String = "main", exact: Bool = false) throws -> [SchemaObject] {
        try rows("SELECT type, name, tbl_name, sql FROM \(quoteIdentifier(database)).sqlite_schema WHERE name NOT LIKE 'sqlite\\_%' ESCAPE '\\' ORDER BY type, name")
            .map { SchemaObject(type: $0[0].string ?? "", name: $0[1].string ?? "", table: $0[2].string ?? "",
                                sql: exact ? $0[3].string : $0[3].string.map(Self.normalizeSQL)) }
    }

    /// Root page and definition of every user table in `database`, by name.
    /// - Throws: `SQLiteError`.
    public func tableRoots(database: String = "main") throws -> [String: TableRoot] {
        var roots = [String: TableRoot]()
        for row in try rows("SELECT name, rootpage, sql FROM \(quoteIdentifier(database)).sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\'") {
            roots[row[0].string ?? ""] = TableRoot(rootPage: row[1].int ?? 0, sql: row[2].string ?? "")
        }
        return roots
    }

    /// Whether `table` of `database` is a WITHOUT ROWID table: the `wr` column of
    /// `PRAGMA table_list` (https://sqlite.org/pragma.html#pragma_table_list), which reads
    /// SQLite's own parse (`WITHOUT ROWID, STRICT`, comments and any spacing included).
    /// - Throws: `SQLiteError`.
    public func isWithoutRowid(_ table: String, database: String = "main") throws -> Bool {
        try scalar("SELECT wr FROM pragma_table_list(?) WHERE schema = ?", [.text(table), .text(database)]).int == 1
    }

    /// The kind of every user table in `database`: a table, a virtual table or a shadow table (a table a
    /// virtual table keeps its rows in), from `PRAGMA table_list`
    /// (https://sqlite.org/pragma.html#pragma_table_list). Where that pragma fails (a module
    /// this libsqlite3 lacks), tables named `<virtual table>_…` count as shadow tables.
    /// - Throws: `SQLiteError`.
    public func tableKinds(database: String = "main") throws -> [String: TableKind] {
        if let listed = try? rows("PRAGMA \(quoteIdentifier(database)).table_list") {
            var kinds = [String: TableKind]()
            for row in listed where !(row[1].string ?? "").hasPrefix("sqlite_") { kinds[row[1].string ?? ""] = TableKind(rawValue: row[2].string ?? "") ?? .table }
            return kinds
        }
        let tables = try rows("SELECT name, sql FROM \(quoteIdentifier(database)).sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\'")
        let virtual = Set(tables.filter { Self.normalizeSQL($0[1].string ?? "").uppercased().hasPrefix("CREATE VIRTUAL TABLE") }.compactMap { $0[0].string })
        var kinds = [String: TableKind]()
        for row in tables {
            let name = row[0].string ?? ""
            kinds[name] = virtual.contains(name) ? .virtual : virtual.contains { name.hasPrefix($0 + "_") } ? .shadow : .table
        }
        return kinds
    }

    /// The names of the user tables, sorted.
    /// - Throws: `SQLiteError`.
    public func tableNames(database: String = "main") throws -> [String] {
        try schema(database: database).filter { $0.type == "table" }.map(\.name)
    }

    /// Collapses whitespace so that equal CREATE statements compare equal.
    public static func normalizeSQL(_ sql: String) -> String {
        sql.split(whereSeparator: { $0 == " " || $0 == "\n" || $0 == "\t" || $0 == "\r" }).joined(separator: " ")
    }

    /// The number of rows in `table`.
    /// - Throws: `SQLiteError`.
    public func rowCount(_ table: String, database: String = "main") throws -> Int {
        Int(try scalar("SELECT count(*) FROM \(quoteIdentifier(database)).\(quoteIdentifier(table))").int ?? 0)
    }

    /// The journal mode ("wal", "delete", …).
    /// - Throws: `SQLiteError`.
    public func journalMode() throws -> String {
        try scalar("PRAGMA journal_mode").string ?? "unknown"
    }

    /// `PRAGMA quick_check` (or `integrity_check` when `full`) of the whole database, or of
    /// `table` and its indexes only; returns the problems found, empty when healthy.
    /// - Throws: `SQLiteError` (a corrupt file often fails to read at all).
    public func integrityProblems(full: Bool = false, table: String? = nil) throws -> [String] {
        let pragma = (full ? "PRAGMA integrity_check" : "PRAGMA quick_check") + (table.map { "(\(quoteIdentifier($0)))" } ?? "")
        let result = try rows(pragma).compactMap { $0.first?.string }
        return result == ["ok"] ? [] : result
    }

    /// `PRAGMA foreign_key_check`: one line per violating row, empty when none.
    /// - Throws: `SQLiteError`.
    public func foreignKeyProblems() throws -> [String] {
        try rows("PRAGMA foreign_key_check").map { row in
            "\(row[0].string ?? "?") row \(row[1].int.map(String.init) ?? "?") → \(row[2].string ?? "?")"
        }
    }

    /// The content fingerprint of `table`: its row count and an order-independent hash
    /// (sum modulo 2^256 of each row's SHA-256), so it is stable across VACUUM and rowid
    /// renumbering, like `sqlite3 .sha3sum`, and any changed, added or removed row changes it.
    /// - Throws: `SQLiteError`.
    /// With `columns`, only those columns, in that order (a rebuilt table's kept columns).
    public func fingerprint(table: String, columns: [String]? = nil, database: String = "main") throws -> TableFingerprint {
        let list = columns.map { $0.map(quoteIdentifier).joined(separator: ", ") } ?? "*"
        let stmt = try prepare("SELECT \(list) FROM \(quoteIdentifier(database)).\(quoteIdentifier(table))")
        let columns = stmt.columnCount
        var sum: [UInt64] = [0, 0, 0, 0]
        var rows = 0
        var row = [UInt8]()
        row.reserveCapacity(512)
        let hasher = try SHA256.Repeated()
        while try stmt.step() {
            rows += 1
            row.removeAll(keepingCapacity: true)
            for i in 0..<columns {
                stmt.withColumnBytes(i) { type, bytes in
                    row.append(UInt8(truncatingIfNeeded: type))
                    let length = UInt32(truncatingIfNeeded: bytes.count)
                    row.append(UInt8(truncatingIfNeeded: length >> 24))
                    row.append(UInt8(truncatingIfNeeded: length >> 16))
                    row.append(UInt8(truncatingIfNeeded: length >> 8))
                    row.append(UInt8(truncatingIfNeeded: length))
                    row.append(contentsOf: bytes)
                }
            }
            let digest = try row.withUnsafeBytes { try hasher.digestWords(of: $0) }
            var carry: UInt64 = 0
            func add(_ lane: Int, _ word: UInt64) {
                let (partial, o1) = sum[lane].addingReportingOverflow(word)
                let (total, o2) = partial.addingReportingOverflow(carry)
                sum[lane] = total
                carry = (o1 ? 1 : 0) + (o2 ? 1 : 0)
            }
            add(3, digest.3)
            add(2, digest.2)
            add(1, digest.1)
            add(0, digest.0)
        }
        let hex = sum.map { word in
            let s = String(word, radix: 16)
            return String(repeating: "0", count: 16 - s.count) + s
        }.joined()
        return TableFingerprint(table: table, rows: rows, sha256: hex)
    }
}
