import Foundation
import SQLite
import Support

/// The migration history of one live database, opened for writing: what `baseline` (adopting a
/// database another tool migrated) and `accept` (a deliberate edit of an applied file) read and
/// change. Never runs a migration's statements on it.
public struct LiveHistory {
    private let db: Connection

    /// Opens the database at `databasePath` for writing.
    /// - Throws: `SQLiteError`.
    public init(databasePath: String, busyTimeout: Duration) throws {
        db = try Connection(path: databasePath, mode: .readWrite, busyTimeout: busyTimeout)
    }

    /// The applied migrations, in order.
    public func applied() throws -> [AppliedMigration] { try History.applied(db) }

    /// Records `files` as applied without running them, in one `BEGIN IMMEDIATE` transaction
    /// (committed, or rolled back and rethrown).
    /// - Throws: `SQLiteError`.
    public func adopt(_ files: [MigrationFile], deployId: String, appliedAt: String) throws {
        try db.execute("BEGIN IMMEDIATE")
        do {
            try History.record(files, on: db, deployId: deployId, appliedAt: appliedAt)
            try db.execute("COMMIT")
        } catch {
            try? db.execute("ROLLBACK")
            throw error
        }
    }

    /// Records `file`'s current checksum as the one it was applied with (one statement).
    /// - Throws: `SQLiteError`.
    public func accept(_ file: MigrationFile) throws {
        try db.rows("UPDATE deployctl_migrations SET sha256 = ? WHERE id = ?", [.text(file.sha256), .integer(Int64(file.id))]).forEach { _ in }
    }

    /// The statements of `files` that would still change the database's schema: each is
    /// replayed, in order, on an in-memory copy of the schema (no rows). One that fails
    /// ("already exists", "duplicate column") or changes nothing was applied; one that changes
    /// the schema was not. Reads only.
    public func notYetIn(_ files: [MigrationFile]) throws -> [String] {
        let copy = try Connection(path: ":memory:", mode: .create)
        let objects = try db.rows("SELECT type, sql FROM sqlite_schema WHERE sql IS NOT NULL AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\'")
        for type in ["table", "index", "view", "trigger"] {
            for row in objects where row[0].string == type { try? copy.execute(row[1].string ?? "") }
        }
        var missing = [String]()
        for file in files {
            for (offset, sql) in ((try? Connection.split(file.sql)) ?? []).enumerated() where !Planner.isForeignKeysPragma(sql) {
                missing += try Self.replay(sql, on: copy, where_: "\(file.fileName) statement \(offset + 1)")
            }
        }
        return missing
    }

    /// Replays one statement on the schema copy; returns what it shows missing (nothing when
    /// its change is already there).
    private static func replay(_ sql: String, on copy: Connection, where_: String) throws -> [String] {
        var missing = [String]()
        let before = try copy.schema()
        for table in MigrationFile.createdTables(in: sql) {
            if let existing = before.first(where: { $0.name == table && $0.type == "table" })?.sql,
               Planner.normalizeCreate(existing) != Planner.normalizeCreate(sql) {
                missing.append("\(where_): table \(table) exists with another shape")
            }
        }
        do {
            try copy.execute(sql)
        } catch let error as SQLiteError {
            // Already there is fine; any other failure means the schema is not what the file expects.
            if !error.alreadyThere { missing.append("\(where_) fails on the database's schema: \(error.sqliteMessage)") }
            return missing
        }
        let after = try copy.schema()
        if after != before {
            let changed = Set(after.map(\.name)).symmetricDifference(before.map(\.name))
                .union(after.filter { object in before.first { $0.name == object.name }.map { $0 != object } ?? false }.map(\.name))
            missing.append("\(where_) would still change \(changed.sorted().joined(separator: ", "))")
        }
        return missing
    }
}

extension SQLiteError {
    /// The statement creates what exists already (`… already exists`, `duplicate column name`).
    /// SQLite gives both one result code (`SQLITE_ERROR`), so only its message tells them apart.
    var alreadyThere: Bool {
        sqliteMessage.contains("already exists") || sqliteMessage.contains("duplicate column name")
    }
}
