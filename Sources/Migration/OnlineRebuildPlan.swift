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
    struct Column {
        let name: String
        let type: String
        let primaryKey: Bool
    }

    static func columns(_ db: Connection, _ table: String) throws -> [Column] {
        try db.rows("SELECT name, type, pk FROM pragma_table_info(?)", [.text(table)])
            .map { Column(name: $0[0].string ?? "", type: $0[1].string ?? "", primaryKey: ($0[2].int ?? 0) > 0) }
    }

    /// The column sets of `table`'s UNIQUE indexes (constraints included), or nil when one is on
    /// an expression or partial. The INTEGER PRIMARY KEY is the rowid, not an index.
    static func uniqueSets(_ db: Connection, _ table: String) throws -> [[(name: String, collation: String)]]? {
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

    static func withoutRowid(_ db: Connection, _ table: String) throws -> Bool {
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
