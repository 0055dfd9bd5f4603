import Foundation
import SQLite
import Support

/// The questions the use cases above ask of a database file about its migrations, each opening
/// its own connection here, so that none is opened outside the modules that own the SQL.
extension History {
    /// The migrations applied to the database at `path` (read as a reader, waiting up to `busyTimeout`).
    public static func applied(path: String, busyTimeout: Duration) throws -> [AppliedMigration] {
        try applied(Connection(path: path, mode: .inspect, busyTimeout: busyTimeout))
    }
}

extension Planner {
    /// The tables `files` define that the database at `path` already has.
    public static func tablesExisting(definedBy files: [MigrationFile], path: String, busyTimeout: Duration) throws -> [String] {
        let defined = try tablesDefined(by: files)
        let existing = Set(try Connection.tableNames(path: path, live: true, busyTimeout: busyTimeout))
        return defined.filter { existing.contains($0) }
    }
}

extension Applier {
    /// `apply(_:plan:to:…)` on the live database at `path`, opened for writing with `busyTimeout`.
    public func apply(_ pending: [MigrationFile], plan: MigrationPlan, toDatabaseAt path: String, busyTimeout: Duration, deployId: String,
                      appliedAt: String, rehearsal: Rehearsal?) throws -> ApplyResult {
        let live = try Connection(path: path, mode: .readWrite, busyTimeout: busyTimeout)
        return try apply(pending, plan: plan, to: live, deployId: deployId, appliedAt: appliedAt, rehearsal: rehearsal)
    }
}

/// What `status` reads of a live database: its journal mode, the migrations applied, and the
/// leftovers of an online rebuild that could not clean up.
public struct LiveDatabaseFacts: Sendable {
    public let journalMode: String
    public let applied: [AppliedMigration]
    /// The table an online rebuild left its shadow and triggers beside, if any.
    public let onlineLeftover: String?

    /// Reads them; the first read that fails throws (a lock held past `busyTimeout`, not a database).
    public static func read(path: String, busyTimeout: Duration) throws -> LiveDatabaseFacts {
        try Connection.checkIsDatabase(path)
        let db = try Connection(path: path, mode: .inspect, busyTimeout: busyTimeout)
        return LiveDatabaseFacts(journalMode: try db.journalMode(), applied: (try? History.applied(db)) ?? [], onlineLeftover: OnlineRebuild.leftover(db))
    }

    /// `verify`: quick_check and foreign_key_check problems, and the migrations applied.
    public static func health(path: String, busyTimeout: Duration) throws -> (problems: [String], applied: [AppliedMigration]) {
        let db = try Connection(path: path, mode: .inspect, busyTimeout: busyTimeout)
        return (try db.healthProblems(), try History.applied(db))
    }
}
