import CSQLite
import Foundation

/// Rows that differ between one table in two databases of one connection.
public struct RowDifference: Sendable, Equatable {
    /// Rows of the first database the second does not hold (by rowid, with equal values).
    public var onlyInFirst = 0
    /// Rows of the second database the first does not hold.
    public var onlyInSecond = 0

    public init(onlyInFirst: Int = 0, onlyInSecond: Int = 0) {
        self.onlyInFirst = onlyInFirst
        self.onlyInSecond = onlyInSecond
    }
}

extension Connection {
    /// Compares `table` in the attached databases `first` and `second` row by row, walking both
    /// in rowid order at once (a merge: no sorting, no temp files). Meant for tables whose rowid
    /// is an `INTEGER PRIMARY KEY`, where it is part of the row: then a row of one side is
    /// "held" by the other exactly when a row with the same rowid has equal values, which is
    /// what `EXCEPT` would count.
    /// - Throws: `SQLiteError`.
    public func rowDifferences(table: String, first: String, second: String) throws -> RowDifference {
        var result = RowDifference()
        let q = quoteIdentifier(table)
        let key = try rowKey(table, first)
        let a = try prepare("SELECT \(key), * FROM \(quoteIdentifier(first)).\(q) ORDER BY \(key)")
        let b = try prepare("SELECT \(key), * FROM \(quoteIdentifier(second)).\(q) ORDER BY \(key)")
        var hasA = try a.step(), hasB = try b.step()
        while hasA || hasB {
            let rowA = hasA ? sqlite3_column_int64(a.handle, 0) : Int64.max
            let rowB = hasB ? sqlite3_column_int64(b.handle, 0) : Int64.max
            if hasA && (!hasB || rowA < rowB) {
                result.onlyInFirst += 1
                hasA = try a.step()
            } else if hasB && (!hasA || rowB < rowA) {
                result.onlyInSecond += 1
                hasB = try b.step()
            } else {
                if !Self.sameRow(a, b) {
                    result.onlyInFirst += 1
                    result.onlyInSecond += 1
                }
                hasA = try a.step()
                hasB = try b.step()
            }
        }
        return result
    }

    /// How many of `rowids` name rows of `table` whose values differ between the attached
    /// databases `first` and `second` (or that one of them lacks).
    /// - Throws: `SQLiteError`.
    public func differingRows(table: String, first: String, second: String, rowids: [Int64]) throws -> Int {
        guard !rowids.isEmpty else { return 0 }
        let q = quoteIdentifier(table)
        let key = try rowKey(table, first)
        let a = try prepare("SELECT \(key), * FROM \(quoteIdentifier(first)).\(q) WHERE \(key) = ?")
        let b = try prepare("SELECT \(key), * FROM \(quoteIdentifier(second)).\(q) WHERE \(key) = ?")
        var count = 0
        for rowid in rowids {
            try a.reset()
            try b.reset()
            try a.bind([.integer(rowid)])
            try b.bind([.integer(rowid)])
            let (hasA, hasB) = (try a.step(), try b.step())
            if hasA != hasB || (hasA && !Self.sameRow(a, b)) { count += 1 }
        }
        return count
    }

    /// Whether the current rows of `a` and `b` hold equal values (as `EXCEPT` compares them:
    /// same storage class, equal numbers, equal bytes).
    private static func sameRow(_ a: Statement, _ b: Statement) -> Bool {
        let count = sqlite3_column_count(a.handle)
        guard count == sqlite3_column_count(b.handle) else { return false }
        for i in 1..<count {
            let type = sqlite3_column_type(a.handle, i)
            guard type == sqlite3_column_type(b.handle, i) else { return false }
            switch type {
            case SQLITE_INTEGER:
                if sqlite3_column_int64(a.handle, i) != sqlite3_column_int64(b.handle, i) { return false }
            case SQLITE_FLOAT:
                // Bit for bit: -0.0 == 0.0 as numbers, but they are different values stored.
                if sqlite3_column_double(a.handle, i).bitPattern != sqlite3_column_double(b.handle, i).bitPattern { return false }
            case SQLITE_TEXT, SQLITE_BLOB:
                let pa = type == SQLITE_TEXT ? UnsafeRawPointer(sqlite3_column_text(a.handle, i)) : sqlite3_column_blob(a.handle, i)
                let pb = type == SQLITE_TEXT ? UnsafeRawPointer(sqlite3_column_text(b.handle, i)) : sqlite3_column_blob(b.handle, i)
                let na = sqlite3_column_bytes(a.handle, i), nb = sqlite3_column_bytes(b.handle, i)
                if na != nb { return false }
                if na > 0, let pa, let pb, memcmp(pa, pb, Int(na)) != 0 { return false }
            default:
                break
            }
        }
        return true
    }

    /// The rowid of `table` as SQL: its INTEGER PRIMARY KEY column, quoted, or `rowid` without
    /// one. The column, not the word: a column named `rowid` would shadow the real rowid.
    func rowKey(_ table: String, _ database: String) throws -> String {
        guard try rowidIsPrimaryKey(table: table, database: database),
              let name = try scalar("SELECT name FROM pragma_table_info(?, ?) WHERE pk = 1", [.text(table), .text(database)]).string else { return "rowid" }
        return quoteIdentifier(name)
    }

    /// Whether `table` in `database` is a rowid table whose rowid is an `INTEGER PRIMARY KEY`
    /// column (https://sqlite.org/lang_createtable.html#rowid).
    public func rowidIsPrimaryKey(table: String, database: String) throws -> Bool {
        let keys = try rows("SELECT type FROM pragma_table_info(?, ?) WHERE pk > 0", [.text(table), .text(database)])
        guard keys.count == 1, keys[0][0].string?.uppercased() == "INTEGER" else { return false }
        // `INTEGER PRIMARY KEY DESC` is no alias of the rowid: SQLite keeps the key in an index
        // of its own (origin "pk"), as for any other primary key.
        let ownIndex = try scalar("SELECT count(*) FROM pragma_index_list(?, ?) WHERE origin = 'pk'", [.text(table), .text(database)]).int ?? 0
        guard ownIndex == 0 else { return false }
        return try !isWithoutRowid(table, database: database)
    }
}
