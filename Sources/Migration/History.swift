import Foundation
import SQLite
import Support

/// A row of `deployctl_migrations`.
public struct AppliedMigration: Sendable, Codable, Equatable {
    public let id: Int
    public let name: String
    public let sha256: String
    public let appliedAt: String
    public let deployId: String

    /// The migration's key, `0001_cashback_tables`.
    public var key: String { migrationKey(id: id, name: name) }

    enum CodingKeys: String, CodingKey {
        case id, name, sha256
        case appliedAt = "applied_at"
        case deployId = "deploy_id"
    }
}

/// The migration history table and the comparison of history with the files.
public enum History {
    /// The history table's name; verification excludes it from "unchanged" checks.
    public static let table = "deployctl_migrations"

    static let createSQL = """
        CREATE TABLE IF NOT EXISTS deployctl_migrations (
            id INTEGER PRIMARY KEY,
            name TEXT NOT NULL,
            sha256 TEXT NOT NULL,
            applied_at TEXT NOT NULL,
            deploy_id TEXT NOT NULL
        )
        """

    /// Creates the history table if needed and records `files` as applied, inside the caller's
    /// transaction.
    /// - Throws: `SQLiteError`.
    public static func record(_ files: [MigrationFile], on db: Connection, deployId: String, appliedAt: String) throws {
        try db.execute(createSQL)
        for file in files {
            try db.rows("INSERT INTO deployctl_migrations (id, name, sha256, applied_at, deploy_id) VALUES (?, ?, ?, ?, ?)",
                        [.integer(Int64(file.id)), .text(file.name), .text(file.sha256), .text(appliedAt), .text(deployId)]).forEach { _ in }
        }
    }

    /// Removes the history rows `deployId` wrote, inside the caller's transaction (an undo);
    /// drops the table when that leaves it empty (that deploy created it: the first one), so
    /// the schema goes back too. Nothing when there is no table.
    /// - Throws: `SQLiteError`.
    public static func forget(deployId: String, on db: Connection) throws {
        guard try exists(db) else { return }
        try db.rows("DELETE FROM deployctl_migrations WHERE deploy_id = ?", [.text(deployId)]).forEach { _ in }
        if try db.scalar("SELECT count(*) FROM deployctl_migrations").int == 0 { try db.execute("DROP TABLE deployctl_migrations") }
    }

    /// Whether the history table exists.
    static func exists(_ db: Connection) throws -> Bool {
        try db.scalar("SELECT 1 FROM sqlite_schema WHERE type = 'table' AND name = ?", [.text(table)]).int == 1
    }

    /// Whether `deployId` committed in the database at `databasePath` (its history rows are
    /// there), and whether the database passes `quick_check`: what a deploy killed after its
    /// commit is judged by. Reads only.
    /// - Throws: `SQLiteError`.
    public static func state(ofDeploy deployId: String, databasePath: String, busyTimeout: Duration) throws -> (committed: Bool, healthy: Bool) {
        let live = try Connection(path: databasePath, mode: .inspect, busyTimeout: busyTimeout)
        let committed = try applied(live).contains { $0.deployId == deployId }
        return (committed, try live.integrityProblems().isEmpty)
    }

    /// The applied migrations, in order; empty when the table does not exist.
    /// - Throws: `SQLiteError`.
    public static func applied(_ db: Connection) throws -> [AppliedMigration] {
        guard try exists(db) else { return [] }
        return try db.rows("SELECT id, name, sha256, applied_at, deploy_id FROM deployctl_migrations ORDER BY id").map {
            AppliedMigration(id: Int($0[0].int ?? 0), name: $0[1].string ?? "", sha256: $0[2].string ?? "",
                             appliedAt: $0[3].string ?? "", deployId: $0[4].string ?? "")
        }
    }

    /// The files not yet applied, in order, after checking that every applied migration's file
    /// is unchanged.
    /// - Throws: `MigrationFileChanged` (65) for a file whose checksum changed; `Failure`
    ///   `.usage` for an applied migration whose file is gone.
    public static func pending(files: [MigrationFile], applied: [AppliedMigration]) throws -> [MigrationFile] {
        let byId = Dictionary(uniqueKeysWithValues: files.map { ($0.id, $0) })
        for row in applied {
            guard let file = byId[row.id] else {
                throw Failure(.migrationFileMissing, "migration \(row.key) is applied but its file is missing",
                              hint: "restore the file from version control; applied migrations are never removed")
            }
            guard file.sha256 == row.sha256 else {
                throw MigrationFileChanged(path: file.path, key: file.key, fileSHA256: file.sha256, appliedSHA256: row.sha256)
            }
        }
        let appliedIds = Set(applied.map(\.id))
        return files.filter { !appliedIds.contains($0.id) }
    }
}

/// An applied migration's file no longer has the checksum it was applied with: bad data (65)
/// for every command that reads it (deploy, plan, verify, status).
public struct MigrationFileChanged: DeployctlError, Sendable {
    public let path: String
    /// The migration's name, as `accept` takes it (`0001_cashback_tables`).
    public let key: String
    public let fileSHA256: String
    public let appliedSHA256: String
    /// The instance, for the `accept` command in the hint; set by the caller that knows it.
    public var instance: String?

    public var code: FailureCode { .migrationChanged }
    public var message: String {
        "migration file \(path) changed after it was applied (sha256 \(fileSHA256.prefix(12)) ≠ applied \(appliedSHA256.prefix(12)))"
    }
    public var hint: String? {
        let accept = instance.map { "'deployctl accept \($0) \(key)'" } ?? "accept"
        return "restore the file as applied and put the change in a new migration, or record a deliberate edit with \(accept)"
    }
}
