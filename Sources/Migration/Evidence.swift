import Foundation
import SQLite
import Support

/// A migration's class: what it does to data that existed before it (docs/migrations.md).
public enum MigrationClass: String, Codable, Sendable, Comparable {
    /// Only new objects.
    case additive
    /// Existing tables gain columns, indexes, views, triggers or rows, are renamed or rebuilt,
    /// or new columns are filled; no existing row removed, no existing value changed.
    case preserving
    /// An existing row removed, an existing value changed, or a column or table dropped.
    case destructive

    public static func < (a: Self, b: Self) -> Bool {
        let order: [Self] = [.additive, .preserving, .destructive]
        return order.firstIndex(of: a)! < order.firstIndex(of: b)!
    }
}

/// What the rehearsal copy shows the pending migrations did to one table that existed before
/// them: the copy's rows before (saved before the first statement touching the table) against
/// the rows after, matched by primary key or rowid, column by column.
public struct TableEvidence: Codable, Sendable, Equatable {
    public let table: String
    /// The table holding its rows afterwards (itself, a rebuild or rename target); nil when dropped.
    public var finalName: String?
    public var rowsBefore: Int
    public var rowsDeleted = 0
    public var rowsAdded = 0
    public var columnsAdded = [String]()
    /// Dropped columns with the non-NULL values they held.
    public var columnsDropped = [String: Int]()
    /// Renamed columns, old name to new (every value kept).
    public var columnsRenamed = [String: String]()
    /// Existing values changed, per kept column.
    public var valuesChanged = [String: Int]()
    /// Dropped and recreated (a new root page) or renamed: the preupdate hook cannot follow it.
    public var rebuilt = false
    /// The key rows were matched by (`rowid` or the primary key's columns).
    public var matchedBy = "rowid"

    enum CodingKeys: String, CodingKey {
        case table, rebuilt
        case finalName = "final_name"
        case rowsBefore = "rows_before"
        case rowsDeleted = "rows_deleted"
        case rowsAdded = "rows_added"
        case columnsAdded = "columns_added"
        case columnsDropped = "columns_dropped"
        case columnsRenamed = "columns_renamed"
        case valuesChanged = "values_changed"
        case matchedBy = "matched_by"
    }

    /// Two values are the same only with the same type and the same bytes: `'007'` is not `7`,
    /// `'a'` is not `'A'` whatever the column's collation or affinity.
    static func differs(_ old: String, _ new: String) -> String {
        "(\(old) IS NOT \(new) COLLATE BINARY OR typeof(\(old)) <> typeof(\(new)))"
    }

    public var dropped: Bool { finalName == nil }

    public var classification: MigrationClass {
        if dropped || rowsDeleted > 0 || !columnsDropped.isEmpty || valuesChanged.values.contains(where: { $0 > 0 }) { return .destructive }
        return .preserving
    }

    /// What happened, one phrase per fact, naming tables and columns with counts.
    public var facts: [String] { findings.map(\.description) }

    /// What happened, one fact per table or column, typed: `facts` renders them.
    public var findings: [Fact] {
        guard let finalName else { return [.tableDropped(table: table, rows: rowsBefore)] }
        var facts = [Fact]()
        if finalName != table { facts.append(.tableRenamed(table: table, to: finalName)) }
        if rebuilt && finalName == table { facts.append(.rebuilt(table: table, matchedBy: matchedBy)) }
        if rowsDeleted > 0 { facts.append(.rowsDeleted(table: table, count: rowsDeleted)) }
        for (column, values) in columnsDropped.sorted(by: { $0.key < $1.key }) {
            facts.append(.columnDropped(table: table, column: column, values: values))
        }
        for (column, count) in valuesChanged.sorted(by: { $0.key < $1.key }) where count > 0 {
            facts.append(.valuesChanged(table: table, column: column, count: count))
        }
        for (old, new) in columnsRenamed.sorted(by: { $0.key < $1.key }) { facts.append(.columnRenamed(table: table, from: old, to: new)) }
        if !columnsAdded.isEmpty { facts.append(.columnsAdded(table: finalName, columns: columnsAdded)) }
        if rowsAdded > 0 { facts.append(.rowsAdded(table: finalName, count: rowsAdded)) }
        return facts
    }

    /// One thing the rehearsal copy shows happened to an existing table.
    public enum Fact: Sendable, Hashable, CustomStringConvertible {
        case tableDropped(table: String, rows: Int)
        case tableRenamed(table: String, to: String)
        case rebuilt(table: String, matchedBy: String)
        case rowsDeleted(table: String, count: Int)
        /// A column dropped, with the non-NULL values it held.
        case columnDropped(table: String, column: String, values: Int)
        case valuesChanged(table: String, column: String, count: Int)
        case columnRenamed(table: String, from: String, to: String)
        case columnsAdded(table: String, columns: [String])
        case rowsAdded(table: String, count: Int)

        public var description: String {
            switch self {
            case .tableDropped(let table, let rows): "\(table): table dropped (\(counted(rows, "row")))"
            case .tableRenamed(let table, let to): "\(table): renamed to \(to), every row and value kept"
            case .rebuilt(let table, let matchedBy): "\(table): rebuilt (matched by \(matchedBy))"
            case .rowsDeleted(let table, let count): "\(table): \(counted(count, "row")) deleted"
            case .columnDropped(let table, let column, let values): "\(table).\(column): column dropped, \(values) non-NULL values lost"
            case .valuesChanged(let table, let column, let count): "\(table).\(column): \(counted(count, "existing value")) changed"
            case .columnRenamed(let table, let from, let to): "\(table).\(from): renamed to \(to), every value kept"
            case .columnsAdded(let table, let columns): "\(table): gains \(columns.count == 1 ? "column" : "columns") \(columns.joined(separator: ", "))"
            case .rowsAdded(let table, let count): "\(table): \(counted(count, "row")) added"
            }
        }

        /// Existing data gone: a table or column dropped, rows deleted (safety claim 3).
        public var losesData: Bool {
            switch self {
            case .tableDropped, .rowsDeleted, .columnDropped: true
            default: false
            }
        }

        /// Existing values changed (safety claim 4).
        public var changesValues: Bool {
            if case .valuesChanged = self { return true }
            return false
        }
    }
}

/// Saves the rows of existing tables on a rehearsal copy before a migration first touches
/// them, and compares them with what the migration left. Works on the copy's connection, in
/// temp tables (`temp_store` is a file), so it never reads the live database again.
final class EvidenceRecorder {
    private let db: Connection
    private let original: [String: [String]]
    private let originalKeys: [String: [String]]
    private let originalRoots: [String: TableRoot]
    /// Names this recorder's saved copies: two recorders (the whole set's and one migration's)
    /// save the same table side by side.
    private let prefix: String
    /// Per existing table, columns (lower-cased) that an earlier migration of the same pending
    /// set created: filling, changing or dropping their values loses nothing that existed.
    private let newColumns: [String: Set<String>]
    private var saved = [String: String]()
    private var counter = 0

    /// `db` holds the state before the migrations; its tables and columns are "existing", but
    /// for `newTables` and `newColumns`, which an earlier migration of the same pending set
    /// created (README, Migrations: each migration's class from its own effect).
    init(_ db: Connection, prefix: String = "deployctl_before_", newTables: Set<String> = [], newColumns: [String: Set<String>] = [:]) throws {
        self.db = db
        self.newColumns = newColumns
        self.prefix = prefix
        var original = [String: [String]]()
        var keys = [String: [String]]()
        for table in try db.tableNames() where table != History.table && !newTables.contains(table) {
            original[table] = try Self.columns(db, table)
            keys[table] = try Self.primaryKey(db, table)
        }
        self.original = original
        self.originalKeys = keys
        self.originalRoots = try db.tableRoots()
    }

    /// The existing tables and their columns.
    var existingColumns: [String: [String]] { original }

    /// Saves `table`'s rows if it is an existing table not saved yet. `database`: the attached
    /// database holding the state before (a framework command's snapshot), else `main`.
    func save(_ table: String, from database: String = "main") throws {
        guard let columns = original[table], saved[table] == nil else { return }
        counter += 1
        let copy = prefix + String(counter)
        let key = try !db.isWithoutRowid(table, database: database) ? "rowid AS deployctl_rowid, " : ""
        try db.execute("CREATE TEMP TABLE \(copy) AS SELECT \(key)\(columns.map(quoteIdentifier).joined(separator: ", ")) FROM \(quoteIdentifier(database)).\(quoteIdentifier(table))")
        saved[table] = copy
    }

    /// Compares every saved table with what the migrations left, and checks that every other
    /// existing table is still there with its definition and row count. `replaced` are the
    /// tables a statement dropped or renamed away (a rebuild, even when the new table got the
    /// old root page back). Drops the saved copies.
    func compare(rowCounts: [String: Int], replaced: Set<String>) throws -> [TableEvidence] {
        defer { for copy in saved.values { try? db.execute("DROP TABLE IF EXISTS temp.\(copy)") } }
        let finalTables = Set(try db.tableNames())
        let roots = try db.tableRoots()
        var evidence = [TableEvidence]()
        for table in original.keys.sorted() {
            guard let copy = saved[table] else {
                // Not touched by any statement, as the authorizer saw them; still checked.
                let count = finalTables.contains(table) ? try db.rowCount(table) : 0
                if !finalTables.contains(table) || roots[table]?.sql != originalRoots[table]?.sql || count != rowCounts[table] {
                    var e = TableEvidence(table: table, finalName: finalTables.contains(table) ? table : nil, rowsBefore: rowCounts[table] ?? 0)
                    e.rowsDeleted = max(0, e.rowsBefore - count)
                    e.rowsAdded = max(0, count - e.rowsBefore)
                    evidence.append(e)
                }
                continue
            }
            var e = try compare(table, copy: copy, finalTables: finalTables, roots: roots)
            if replaced.contains(table) && e.finalName != nil { e.rebuilt = true }
            evidence.append(e)
        }
        return evidence
    }

    private func compare(_ table: String, copy: String, finalTables: Set<String>, roots: [String: TableRoot]) throws -> TableEvidence {
        let before = Int(try db.scalar("SELECT count(*) FROM temp.\(copy)").int ?? 0)
        var candidates = [String]()
        if finalTables.contains(table) {
            candidates = [table]
        } else {
            // Renamed: a table the migrations left that did not exist, holding every row.
            candidates = finalTables.filter { original[$0] == nil && $0 != History.table }.sorted()
        }
        for name in candidates {
            var e = try match(table, copy: copy, rowsBefore: before, into: name)
            e.rebuilt = name != table || roots[name]?.rootPage != originalRoots[table]?.rootPage
            if name == table || (e.rowsDeleted == 0 && e.valuesChanged.values.allSatisfy { $0 == 0 } && e.columnsDropped.isEmpty) {
                return e
            }
        }
        var e = TableEvidence(table: table, finalName: nil, rowsBefore: before)
        e.rowsDeleted = before
        for column in original[table]! {
            e.columnsDropped[column] = Int(try db.scalar("SELECT count(\(quoteIdentifier(column))) FROM temp.\(copy)").int ?? 0)
        }
        return e
    }

    /// Matches the saved rows of `table` with the rows of `name` by primary key (when both
    /// have the same one) or rowid, and counts what was lost, changed and added.
    private func match(_ table: String, copy: String, rowsBefore: Int, into name: String) throws -> TableEvidence {
        var e = TableEvidence(table: table, finalName: name, rowsBefore: rowsBefore)
        let oldColumns = original[table]!
        let newColumns = try Self.columns(db, name)
        let newLower = Set(newColumns.map { $0.lowercased() })
        let fresh = self.newColumns[table] ?? []
        // A column an earlier migration of this set created holds no value that existed.
        let kept = oldColumns.filter { newLower.contains($0.lowercased()) && !fresh.contains($0.lowercased()) }
        var gone = oldColumns.filter { !newLower.contains($0.lowercased()) && !fresh.contains($0.lowercased()) }
        let oldLower = Set(oldColumns.map { $0.lowercased() })
        var added = newColumns.filter { !oldLower.contains($0.lowercased()) }
        let oldKey = originalKeys[table] ?? []
        let newKey = try Self.primaryKey(db, name)
        let on: String
        if !oldKey.isEmpty, oldKey.map({ $0.lowercased() }) == newKey.map({ $0.lowercased() }) {
            // Equal and of the same type: a text key '007' does not match the integer 7.
            on = oldKey.map { "n.\(quoteIdentifier($0)) = b.\(quoteIdentifier($0)) AND typeof(n.\(quoteIdentifier($0))) = typeof(b.\(quoteIdentifier($0)))" }
                .joined(separator: " AND ")
            e.matchedBy = oldKey.joined(separator: ", ")
        } else if try hasRowid(name), try db.scalar("SELECT count(*) FROM pragma_table_info(?, 'temp') WHERE name = 'deployctl_rowid'", [.text(copy)]).int == 1 {
            on = "n.rowid = b.deployctl_rowid"
        } else {
            on = "0"
            e.matchedBy = "nothing (no common key): every row counts as replaced"
        }
        let from = "temp.\(copy) b JOIN main.\(quoteIdentifier(name)) n ON \(on)"
        e.rowsDeleted = Int(try db.scalar("SELECT count(*) FROM temp.\(copy) b WHERE NOT EXISTS (SELECT 1 FROM main.\(quoteIdentifier(name)) n WHERE \(on))").int ?? 0)
        let after = try db.rowCount(name)
        // Fewer rows than were matched: several old rows met one new row.
        let net = after - (rowsBefore - e.rowsDeleted)
        if net < 0 { e.rowsDeleted -= net }
        e.rowsAdded = max(0, net)
        if !kept.isEmpty {
            let sums = kept.map { column in
                let new = newColumns.first { $0.lowercased() == column.lowercased() }!
                return "ifnull(sum(\(TableEvidence.differs("b.\(quoteIdentifier(column))", "n.\(quoteIdentifier(new))"))), 0)"
            }
            let row = try db.rows("SELECT \(sums.joined(separator: ", ")) FROM \(from)")[0]
            for (index, column) in kept.enumerated() {
                let changed = Int(row[index].int ?? 0)
                if changed > 0 { e.valuesChanged[column] = changed }
            }
        }
        // A column gone and one added holding the very same values: renamed.
        for column in gone {
            if let target = try added.first(where: { new in
                try db.scalar("SELECT ifnull(sum(\(TableEvidence.differs("b.\(quoteIdentifier(column))", "n.\(quoteIdentifier(new))"))), 0) FROM \(from)").int == 0
                    && e.rowsDeleted == 0
            }) {
                e.columnsRenamed[column] = target
                added.removeAll { $0 == target }
                gone.removeAll { $0 == column }
            }
        }
        for column in gone {
            e.columnsDropped[column] = Int(try db.scalar("SELECT count(\(quoteIdentifier(column))) FROM temp.\(copy)").int ?? 0)
        }
        e.columnsAdded = added
        return e
    }

    private func hasRowid(_ table: String) throws -> Bool {
        try !db.isWithoutRowid(table)
    }

    static func columns(_ db: Connection, _ table: String) throws -> [String] {
        try db.rows("SELECT name FROM pragma_table_info(?)", [.text(table)]).compactMap { $0[0].string }
    }

    static func primaryKey(_ db: Connection, _ table: String) throws -> [String] {
        try db.rows("SELECT name FROM pragma_table_info(?) WHERE pk > 0 ORDER BY pk", [.text(table)]).compactMap { $0[0].string }
    }
}
