import Foundation
import Migration
import SQLite
import Support

/// What `baseline` or `accept` recorded.
public struct HistoryChange: Sendable, Encodable {
    /// The migrations whose history rows were written.
    public let migrations: [String]
    /// What was checked first, for the operator.
    public let checked: [String]
}

extension Runtime {
    /// `deployctl baseline <instance> --through <n>`: adopts a database another tool migrated.
    /// Records migrations up to `through` as applied without running them, after checking that
    /// the database holds every table, column and index they create (built on an empty
    /// database from the files; where a file refers to tables it does not create, the tables
    /// its CREATE statements name). One transaction; takes the instance lock.
    /// - Throws: `Failure` `migration.not_found` for an unknown number, `baseline.schema_differs`
    ///   naming what is missing.
    public func baseline(instance name: String, through: Int) throws -> HistoryChange {
        let instance = try instance(name, for: nil)
        let config = instance.config
        try Connection.checkIsDatabase(config.databasePath)
        let files = try MigrationFile.loadAll(folder: try workspace.deployConfig().migrationsFolder)
        guard files.contains(where: { $0.id == through }) else {
            throw Failure(.migrationNotFound, "no migration numbered \(through) in \(try workspace.deployConfig().migrationsFolder)",
                          hint: "give the number of the last migration the other tool applied")
        }
        let lock = try instance.lock()
        defer { lock.release() }
        let live = try LiveHistory(databasePath: config.databasePath, busyTimeout: config.busyTimeout)
        let applied = Set(try live.applied().map(\.id))
        let adopted = files.filter { $0.id <= through && !applied.contains($0.id) }
        guard !adopted.isEmpty else { return HistoryChange(migrations: [], checked: ["every migration up to \(through) is already recorded"]) }
        let missing = try live.notYetIn(adopted)
        guard missing.isEmpty else {
            throw Failure(.baselineSchemaDiffers, "the database does not hold what migrations up to \(through) do: \(missing.prefix(5).joined(separator: "; "))\(missing.count > 5 ? "; …" : ""); nothing was recorded",
                          hint: "baseline through an earlier number, or deploy the missing migrations")
        }
        try live.adopt(adopted, deployId: "baseline-" + ISO8601DateFormatter().string(from: clock()), appliedAt: ISO8601DateFormatter().string(from: clock()))
        return HistoryChange(migrations: adopted.map(\.key),
                             checked: ["every statement of \(counted(adopted.count, "migration")), replayed on a copy of the database's schema, finds its change already there"])
    }

    /// `deployctl accept <instance> <migration>`: records a deliberate edit of an applied
    /// migration file (its new checksum), after `confirm` has seen the old and new checksums
    /// and the file's statements. Takes the instance lock.
    /// - Throws: `Failure` `migration.not_found`, `accept.not_applied` or `accept.unchanged`.
    public func accept(instance name: String, migration: String, confirm: (_ applied: String, _ file: MigrationFile) throws -> Void) throws -> HistoryChange {
        let instance = try instance(name, for: nil)
        let config = instance.config
        let files = try MigrationFile.loadAll(folder: try workspace.deployConfig().migrationsFolder)
        // As status and verify name it (0001_cashback_tables), its file name (….sql), its name or number.
        guard let file = files.first(where: { $0.key == migration || $0.name == migration || String($0.id) == migration || $0.fileName == migration }) else {
            let known = files.map(\.key)
            throw Failure(.migrationNotFound, "no migration \(migration) in the migrations folder\(known.isEmpty ? " (it holds none)" : "; migrations: " + known.joined(separator: ", "))",
                          hint: known.isEmpty ? nil : "deployctl accept \(name) \(Suggestion.nearest(to: migration, in: known) ?? known[0])")
        }
        let lock = try instance.lock()
        defer { lock.release() }
        let live = try LiveHistory(databasePath: config.databasePath, busyTimeout: config.busyTimeout)
        guard let row = try live.applied().first(where: { $0.id == file.id }) else {
            throw Failure(.acceptNotApplied, "\(file.key) is not applied to \(name); there is nothing to accept", hint: "deploy it instead")
        }
        guard row.sha256 != file.sha256 else {
            throw Failure(.acceptUnchanged, "\(file.fileName) is unchanged since it was applied; there is nothing to accept")
        }
        try confirm(row.sha256, file)
        try live.accept(file)
        return HistoryChange(migrations: [file.key], checked: ["applied sha256 \(row.sha256.prefix(12)), file now \(file.sha256.prefix(12))"])
    }
}
