import Foundation
import SQLite
import Support

/// A 12-step table rebuild that can run online: the migration is exactly `CREATE TABLE new_x
/// (…)`, `INSERT INTO new_x (cols) SELECT cols FROM x` (plain columns, or `SELECT *`), `DROP
/// TABLE x`, `ALTER TABLE new_x RENAME TO x`, then any `CREATE [UNIQUE] INDEX … ON x (…)` (and
/// `PRAGMA foreign_keys`, which deployctl handles) — the shape sqlite.org's 12 steps, Django,
/// Alembic's batch mode and hand-written migrations emit.
public struct OnlineRebuildPlan: Sendable, Codable, Equatable {
    /// The migration's key.
    public let migration: String
    /// The table rebuilt (`x`).
    public let table: String
    /// The table the migration builds (`new_x`): the shadow table while copying.
    public let shadow: String
    /// The migration's CREATE TABLE statement.
    public let createSQL: String
    /// Columns of `table` copied, in order, and the `shadow` columns they go to.
    public let sourceColumns: [String]
    public let targetColumns: [String]
    /// `table`'s INTEGER PRIMARY KEY (its rowid) and the `shadow` column it goes to: rows are
    /// matched by it while the application writes.
    public let sourceKey: String
    public let targetKey: String
    /// The migration's CREATE INDEX statements on the rebuilt table, as written.
    public let indexStatements: [String]
    /// The old table's UNIQUE column sets (the new table's are among them), as (source, target)
    /// column names: an application's REPLACE deletes a conflicting row without firing DELETE
    /// triggers, so the mirror triggers remove that row's copy by these values.
    public let uniqueSets: [[ColumnPair]]
    /// The names of those indexes.
    public let indexNames: [String]
    /// sqlite_schema's exact text, after the migration, of the rebuilt table and of each index
    /// (as SQLite stores it: computed by running the statements on an in-memory database).
    public let finalTableSQL: String
    public let finalIndexSQL: [String]
}

/// A column of the old table and the new table's column it is copied to.
public struct ColumnPair: Sendable, Codable, Equatable {
    public let source: String
    public let target: String
    /// The collation the old table's UNIQUE index compares this column with.
    public var collation = "BINARY"
}

/// Whether a deploy can run online, and if not, why not (one sentence an operator can act on).
public enum OnlineVerdict: Sendable {
    case online(OnlineRebuildPlan)
    case offline(String)
}

extension OnlineRebuildPlan {
    /// `verdict(_:plan:on:)` on the database at `databasePath`, opened read only.
    /// - Throws: `SQLiteError` from opening or reading it.
    public static func verdict(_ pending: [MigrationFile], plan: MigrationPlan, databasePath: String, busyTimeout: Duration) throws -> OnlineVerdict {
        try verdict(pending, plan: plan, on: try Connection(path: databasePath, mode: .inspect, busyTimeout: busyTimeout))
    }

    /// Decides whether `pending` can run online on `live` (read only): one pending migration
    /// of the 12-step shape, preserving by the plan, on a WAL database, of a rowid table whose
    /// INTEGER PRIMARY KEY is copied to the new table's, with no trigger on it and no foreign
    /// key with ON DELETE/UPDATE actions pointing at it.
    /// - Throws: `SQLiteError` from reading the live schema.
    public static func verdict(_ pending: [MigrationFile], plan: MigrationPlan, on live: Connection) throws -> OnlineVerdict {
        guard !pending.isEmpty else { return .offline("nothing is pending") }
        guard pending.count == 1, let file = pending.first else {
            return .offline("online rebuilds run one migration at a time, and \(pending.count) are pending (deploy them one by one)")
        }
        let mode = try live.journalMode()
        guard mode == "wal" else {
            return .offline("the database is in \(mode) journal mode; an online rebuild needs WAL (readers must not block the copy's commits)")
        }
        guard plan.classification == .preserving else {
            return .offline("\(file.key) is \(plan.classification.rawValue); only a rebuild that keeps every row and value runs online")
        }
        // Matched on their text with whitespace collapsed; run as written (SQLite keeps a
        // CREATE statement's text as written, and the online result must be the same bytes).
        let raw = try Connection.split(file.sql).filter { !Planner.isForeignKeysPragma($0) }
        let statements = raw.map(Self.clean)
        guard statements.count >= 4,
              let create = Shape.match(statements[0], #"^CREATE TABLE (\#(Shape.name)) ?\("#),
              let drop = Shape.match(statements[2], #"^DROP TABLE (?:IF EXISTS )?(\#(Shape.name))$"#),
              let rename = Shape.match(statements[3], #"^ALTER TABLE (\#(Shape.name)) RENAME TO (\#(Shape.name))$"#) else {
            return .offline("\(file.key) is not a table rebuild of the 12-step shape (CREATE TABLE new_x; INSERT INTO new_x … SELECT … FROM x; DROP TABLE x; ALTER TABLE new_x RENAME TO x; CREATE INDEX … ON x)")
        }
        let shadow = Shape.unquote(create[0])
        let table = Shape.unquote(drop[0])
        guard Shape.same(rename[0], shadow), Shape.same(rename[1], table) else {
            return .offline("statement 4 of \(file.key) renames \(Shape.unquote(rename[0])) to \(Shape.unquote(rename[1])), not \(shadow) to \(table)")
        }
        guard try live.scalar("SELECT count(*) FROM sqlite_schema WHERE type = 'table' AND name = ? COLLATE NOCASE", [.text(table)]).int == 1 else {
            return .offline("\(table) does not exist in the live database")
        }
        // The new table's columns, from its own statement on an in-memory database.
        let memory = try Connection(path: ":memory:", mode: .create)
        try memory.execute(raw[0])
        let shadowColumns = try columns(memory, shadow)
        let tableColumns = try columns(live, table)
        var source: [String]
        var target: [String]
        if let star = Shape.match(statements[1], #"^INSERT INTO (\#(Shape.name)) SELECT \* FROM (\#(Shape.name))$"#) {
            guard Shape.same(star[0], shadow), Shape.same(star[1], table), shadowColumns.count == tableColumns.count else {
                return .offline("statement 2 of \(file.key) does not copy \(table) into \(shadow) column for column")
            }
            source = tableColumns.map(\.name)
            target = shadowColumns.map(\.name)
        } else if let listed = Shape.match(statements[1], #"^INSERT INTO (\#(Shape.name)) ?\(([^()]*)\) SELECT (.+) FROM (\#(Shape.name))$"#) {
            guard Shape.same(listed[0], shadow), Shape.same(listed[3], table) else {
                return .offline("statement 2 of \(file.key) does not copy \(table) into \(shadow)")
            }
            target = listed[1].split(separator: ",").map { Shape.unquote(String($0).trimmingCharacters(in: .whitespaces)) }
            let selected = listed[2].split(separator: ",").map { String($0).trimmingCharacters(in: .whitespaces) }
            guard selected.allSatisfy({ Shape.match($0, "^\(Shape.name)$") != nil }) else {
                return .offline("statement 2 of \(file.key) computes values (\(listed[2])), so the rebuild also changes rows; it runs offline")
            }
            source = selected.map(Shape.unquote)
            guard source.count == target.count,
                  source.allSatisfy({ s in tableColumns.contains { Shape.same($0.name, s) } }),
                  target.allSatisfy({ t in shadowColumns.contains { Shape.same($0.name, t) } }) else {
                return .offline("statement 2 of \(file.key) names columns that \(table) or \(shadow) does not have")
            }
        } else {
            return .offline("statement 2 of \(file.key) is not a plain INSERT INTO \(shadow) (…) SELECT … FROM \(table)")
        }
        var indexStatements = [String]()
        var indexNames = [String]()
        for (offset, statement) in statements.dropFirst(4).enumerated() {
            guard let index = Shape.match(statement, #"^CREATE (?:UNIQUE )?INDEX (?:IF NOT EXISTS )?(\#(Shape.name)) ON (\#(Shape.name)) ?\("#),
                  Shape.same(index[1], table) else {
                return .offline("statement \(offset + 5) of \(file.key) does more than create an index on \(table); an online rebuild runs the rebuild alone")
            }
            indexStatements.append(raw[offset + 4])
            indexNames.append(Shape.unquote(index[0]))
        }
        // Rows are matched by the rowid while the application writes: it must be copied as is.
        let keys = tableColumns.filter { $0.primaryKey }
        guard keys.count == 1, let key = keys.first, key.type.uppercased() == "INTEGER", !(try withoutRowid(live, table)),
              let position = source.firstIndex(where: { Shape.same($0, key.name) }),
              let targetKey = shadowColumns.first(where: { $0.primaryKey && $0.type.uppercased() == "INTEGER" }),
              shadowColumns.filter(\.primaryKey).count == 1, Shape.same(target[position], targetKey.name) else {
            return .offline("\(table)'s INTEGER PRIMARY KEY is not copied to \(shadow)'s: rows cannot be matched while the application writes")
        }
        let triggers = try live.rows("SELECT name FROM sqlite_schema WHERE type = 'trigger' AND tbl_name = ? COLLATE NOCASE", [.text(table)]).compactMap { $0[0].string }
        guard triggers.isEmpty else {
            return .offline("the application's triggers on \(table) (\(triggers.joined(separator: ", "))) would fire for the copy's rows")
        }
        let actions = try live.rows("""
            SELECT m.name, f."from" FROM sqlite_schema m, pragma_foreign_key_list(m.name) f
            WHERE m.type = 'table' AND f."table" = ? COLLATE NOCASE AND (f.on_delete <> 'NO ACTION' OR f.on_update <> 'NO ACTION')
            """, [.text(table)]).map { "\($0[0].string ?? "").\($0[1].string ?? "")" }
        guard actions.isEmpty else {
            return .offline("foreign keys with ON DELETE/UPDATE actions point at \(table) (\(actions.joined(separator: ", "))); renaming it aside would fire them differently")
        }
        let selfReference = try memory.scalar("SELECT count(*) FROM pragma_foreign_key_list(?) WHERE \"table\" = ? COLLATE NOCASE", [.text(shadow), .text(shadow)]).int ?? 0
        guard selfReference == 0 else {
            return .offline("\(shadow) has a foreign key to itself by its temporary name, which the cut-over's rename would leave pointing at \(shadow)")
        }
        let taken = try live.rows("SELECT name FROM sqlite_schema WHERE name = ? COLLATE NOCASE OR name LIKE '\(OnlineRebuild.prefix)%'", [.text(shadow)]).compactMap { $0[0].string }
        guard taken.isEmpty else {
            return .offline("\(taken.joined(separator: ", ")) already exists in the live database")
        }
        // The exact text SQLite will store for the rebuilt table and its indexes.
        try memory.execute("ALTER TABLE \(quoteIdentifier(shadow)) RENAME TO \(quoteIdentifier(table))")
        for statement in indexStatements { try memory.execute(statement) }
        let finalTable = try memory.scalar("SELECT sql FROM sqlite_schema WHERE type = 'table' AND name = ?", [.text(table)]).string ?? ""
        let finalIndexes = try indexNames.map { try memory.scalar("SELECT sql FROM sqlite_schema WHERE type = 'index' AND name = ?", [.text($0)]).string ?? "" }
        guard finalIndexes.allSatisfy({ OnlineRebuildPlan.indexParts($0) != nil }) else {
            return .offline("an index statement of \(file.key) has a form deployctl does not rebuild online (comments or unusual spacing before its column list)")
        }
        // UNIQUE column sets: the old table's (an application's REPLACE deletes by them) and the
        // new table's, which must be among the old's, or a write the old table takes could be
        // refused or replaced in the new one while copying.
        let pairs = Dictionary(zip(target.map { $0.lowercased() }, source), uniquingKeysWith: { a, _ in a })
        guard let oldSets = try uniqueSets(live, table), let newSets = try uniqueSets(memory, table) else {
            return .offline("\(table) or its rebuild has a UNIQUE index on an expression or with a WHERE clause; such an index cannot be mirrored while the application writes")
        }
        // Compared with their collations: a UNIQUE that is NOCASE in one table and BINARY in the
        // other treats the application's values differently.
        let oldKeys = Set(oldSets.map { Set($0.map { "\($0.name.lowercased()) \($0.collation.uppercased())" }) })
        var mirrored = [[ColumnPair]]()
        for set in oldSets {
            let reverse = Dictionary(zip(source.map { $0.lowercased() }, target), uniquingKeysWith: { a, _ in a })
            let mapped = set.compactMap { column in reverse[column.name.lowercased()].map { ColumnPair(source: column.name, target: $0, collation: column.collation) } }
            if mapped.count == set.count { mirrored.append(mapped) }
        }
        for set in newSets {
            let sourceSet = Set(set.compactMap { column in pairs[column.name.lowercased()].map { "\($0.lowercased()) \(column.collation.uppercased())" } })
            guard sourceSet.count == set.count, oldKeys.contains(sourceSet) else {
                return .offline("the rebuild adds a UNIQUE constraint on \(set.map { "\($0.name) (\($0.collation))" }.joined(separator: ", ")) that \(table) does not have with that collation: a row the application writes while copying could be refused or replace another in \(shadow)")
            }
        }
        // A foreign-key action of the new table's own (ON DELETE CASCADE, SET NULL…) would change
        // its rows behind the triggers when the application deletes a parent while copying.
        let ownActions = try memory.rows("SELECT \"from\", \"table\" FROM pragma_foreign_key_list(?) WHERE on_delete NOT IN ('NO ACTION', 'RESTRICT') OR on_update NOT IN ('NO ACTION', 'RESTRICT')",
                                      [.text(table)]).map { "\($0[0].string ?? "") → \($0[1].string ?? "")" }
        guard ownActions.isEmpty else {
            return .offline("the rebuilt \(table) has foreign keys with ON DELETE/UPDATE actions (\(ownActions.joined(separator: ", "))), which would change its rows behind the copy's triggers")
        }
        return .online(OnlineRebuildPlan(migration: file.key, table: table, shadow: shadow, createSQL: raw[0], sourceColumns: source,
                                         targetColumns: target, sourceKey: key.name, targetKey: targetKey.name, indexStatements: indexStatements,
                                         uniqueSets: mirrored, indexNames: indexNames, finalTableSQL: finalTable, finalIndexSQL: finalIndexes))
    }

    private struct Column {
        let name: String
        let type: String
        let primaryKey: Bool
    }

    private static func columns(_ db: Connection, _ table: String) throws -> [Column] {
        try db.rows("SELECT name, type, pk FROM pragma_table_info(?)", [.text(table)])
            .map { Column(name: $0[0].string ?? "", type: $0[1].string ?? "", primaryKey: ($0[2].int ?? 0) > 0) }
    }

    /// The column sets of `table`'s UNIQUE indexes (constraints included), or nil when one is on
    /// an expression or partial. The INTEGER PRIMARY KEY is the rowid, not an index.
    private static func uniqueSets(_ db: Connection, _ table: String) throws -> [[(name: String, collation: String)]]? {
        var sets = [[(name: String, collation: String)]]()
        for index in try db.rows("SELECT name, partial FROM pragma_index_list(?) WHERE \"unique\" = 1", [.text(table)]) {
            if index[1].int == 1 { return nil }
            let columns = try db.rows("SELECT cid, name, coll FROM pragma_index_xinfo(?) WHERE key = 1", [index[0]])
            if columns.contains(where: { ($0[0].int ?? -1) < 0 }) { return nil }
            sets.append(columns.map { (name: $0[1].string ?? "", collation: $0[2].string ?? "BINARY") })
        }
        return sets
    }

    /// A CREATE INDEX statement as sqlite_schema stores it, in parts: `CREATE [UNIQUE] INDEX `,
    /// and what follows the table's name (the column list and any WHERE), kept byte for byte so
    /// that the index built under a temporary name is the very index the final text describes.
    static func indexParts(_ sql: String) -> (head: String, rest: String)? {
        guard let parts = Shape.match(sql, #"^(CREATE (?:UNIQUE )?INDEX )\#(Shape.name) ON \#(Shape.name) ?(\([\s\S]*)$"#) else { return nil }
        return (parts[0], parts[1])
    }

    private static func withoutRowid(_ db: Connection, _ table: String) throws -> Bool {
        try db.scalar("SELECT wr FROM pragma_table_list WHERE name = ? COLLATE NOCASE AND schema = 'main'", [.text(table)]).int == 1
    }

    /// A statement with its whitespace collapsed and its trailing semicolon removed.
    static func clean(_ sql: String) -> String {
        var text = Connection.normalizeSQL(sql)
        while text.hasSuffix(";") || text.hasSuffix(" ") { text.removeLast() }
        return text
    }
}

/// Pattern matching of statement shapes, with SQLite's identifier quoting.
enum Shape {
    /// An identifier: bare, "double", [bracketed] or `backticked`.
    static let name = #"(?:"(?:[^"]|"")+"|\[[^\]]+\]|`(?:[^`]|``)+`|[A-Za-z_][A-Za-z0-9_$]*)"#

    /// The capture groups of `pattern` (case-insensitive) in `text`, or nil.
    static func match(_ text: String, _ pattern: String) -> [String]? {
        guard let regex = try? NSRegularExpression(pattern: pattern, options: [.caseInsensitive]),
              let found = regex.firstMatch(in: text, range: NSRange(text.startIndex..., in: text)) else { return nil }
        return (1..<found.numberOfRanges).map { i in Range(found.range(at: i), in: text).map { String(text[$0]) } ?? "" }
    }

    /// An identifier without its quotes.
    static func unquote(_ name: String) -> String {
        guard let first = name.first, let last = name.last, name.count >= 2 else { return name }
        switch (first, last) {
        case ("\"", "\""): return String(name.dropFirst().dropLast()).replacingOccurrences(of: "\"\"", with: "\"")
        case ("`", "`"): return String(name.dropFirst().dropLast()).replacingOccurrences(of: "``", with: "`")
        case ("[", "]"): return String(name.dropFirst().dropLast())
        default: return name
        }
    }

    /// Whether two identifiers name the same object (SQLite compares names case-insensitively).
    static func same(_ a: String, _ b: String) -> Bool { unquote(a).lowercased() == unquote(b).lowercased() }
}
