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

/// `deployctl baseline` and `accept`: changes to the migration history that run no migration.
public struct HistoryChanges: Sendable {
    let runtime: Runtime

    public init(_ runtime: Runtime) { self.runtime = runtime }

    /// `deployctl baseline <instance> --through <n>`: adopts a database another tool migrated.
    /// Records migrations up to `through` as applied without running them, after checking that
    /// the database holds every table, column and index they create (built on an empty
    /// database from the files; where a file refers to tables it does not create, the tables
    /// its CREATE statements name). One transaction; takes the instance lock.
    /// - Throws: `Failure` `migration.not_found` for an unknown number, `baseline.schema_differs`
    ///   naming what is missing.
    public func baseline(instance name: String, through: Int) throws -> HistoryChange {
        let instance = try runtime.instance(name, for: nil)
        let config = instance.config
        try Connection.checkIsDatabase(config.databasePath)
        let files = try MigrationFile.loadAll(folder: try instance.migrationsFolder)
        guard files.contains(where: { $0.id == through }) else {
            throw Failure(.migrationNotFound, "no migration numbered \(through) in \(try instance.migrationsFolder)",
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
        try live.adopt(adopted, deployId: "baseline-" + ISO8601DateFormatter().string(from: runtime.clock()), appliedAt: ISO8601DateFormatter().string(from: runtime.clock()))
        return HistoryChange(migrations: adopted.map(\.key),
                             checked: ["every statement of \(counted(adopted.count, "migration")), replayed on a copy of the database's schema, finds its change already there"])
    }

    /// `deployctl accept <instance> <migration>`, first step: finds the migration and the
    /// checksum it was applied with, without the instance lock, so that the operator can see
    /// the old and new checksums and the file's statements before anything is recorded.
    /// - Throws: `Failure` `migration.not_found`, `accept.not_applied` or `accept.unchanged`.
    public func prepareAccept(instance name: String, migration: String) throws -> PreparedAccept {
        let instance = try runtime.instance(name, for: nil)
        let files = try MigrationFile.loadAll(folder: try instance.migrationsFolder)
        // As status and verify name it (0001_cashback_tables), its file name (….sql), its name or number.
        guard let file = files.first(where: { $0.key == migration || $0.name == migration || String($0.id) == migration || $0.fileName == migration }) else {
            let known = files.map(\.key)
            throw Failure(.migrationNotFound, "no migration \(migration) in the migrations folder\(known.isEmpty ? " (it holds none)" : "; migrations: " + known.joined(separator: ", "))",
                          hint: known.isEmpty ? nil : "deployctl accept \(name) \(Suggestion.nearest(to: migration, in: known) ?? known[0])")
        }
        let applied = try PreparedAccept.appliedChecksum(of: file, in: instance)
        return PreparedAccept(instance: instance, file: file, applied: applied)
    }
}

/// An edit of an applied migration file, ready to be recorded (`perform()`) once the operator
/// has seen `applied` (the checksum it was applied with) and `file` (what it holds now).
public struct PreparedAccept: Sendable {
    let instance: InstanceContext
    /// The migration file as it is now.
    public let file: MigrationFile
    /// The sha256 it was applied with.
    public let applied: String

    /// The checksum `file` was applied with; refuses a migration that is not applied or unchanged.
    static func appliedChecksum(of file: MigrationFile, in instance: InstanceContext) throws -> String {
        let live = try LiveHistory(databasePath: instance.config.databasePath, busyTimeout: instance.config.busyTimeout)
        guard let row = try live.applied().first(where: { $0.id == file.id }) else {
            throw Failure(.acceptNotApplied, "\(file.key) is not applied to \(instance.name); there is nothing to accept", hint: "deploy it instead")
        }
        guard row.sha256 != file.sha256 else {
            throw Failure(.acceptUnchanged, "\(file.fileName) is unchanged since it was applied; there is nothing to accept")
        }
        return row.sha256
    }

    /// Records the file's new checksum under the instance lock, when neither the history nor
    /// the file changed since the operator saw them.
    /// - Throws: `Failure` `accept.changed_while_asked`; what recording throws.
    public func perform() throws -> HistoryChange {
        let lock = try instance.lock()
        defer { lock.release() }
        let live = try LiveHistory(databasePath: instance.config.databasePath, busyTimeout: instance.config.busyTimeout)
        let row = try live.applied().first { $0.id == file.id }
        let now = try? MigrationFile(path: file.path)
        guard row?.sha256 == applied, now?.sha256 == file.sha256 else {
            throw Failure(.acceptChangedWhileAsked, "\(file.fileName) or its history changed while deployctl asked; nothing was recorded",
                          hint: "deployctl accept \(instance.name) \(file.key)")
        }
        try live.accept(file)
        return HistoryChange(migrations: [file.key], checked: ["applied sha256 \(applied.prefix(12)), file now \(file.sha256.prefix(12))"])
    }
}
