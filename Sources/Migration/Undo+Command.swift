import Foundation
import SQLite
import Support

extension Undo {
    static let snapshotSchema = "deployctl_snapshot"

    static func attachSnapshot(_ snapshot: String, to live: Connection) throws {
        try live.execute("ATTACH DATABASE '\(Connection.uri(snapshot, query: "immutable=1").replacingOccurrences(of: "'", with: "''"))' AS \(snapshotSchema)")
    }

    /// Drops what a framework command's additive deploy created, then gives each bookkeeping
    /// table that the snapshot holds the snapshot's rows again, so the framework does not count
    /// the undone migrations as applied; proves both (content fingerprints equal to the
    /// snapshot's). The application's writes to existing tables are kept.
    func dropAddedByCommand(_ created: [CreatedObject], bookkeeping: [String], on live: Connection) throws -> String {
        _ = try dropAddedObjects(created, on: live)
        let snapshotTables = Set(try live.tableNames(database: Self.snapshotSchema))
        let liveTables = Set(try live.tableNames())
        var restored = [String]()
        for table in bookkeeping.sorted() where snapshotTables.contains(table) && liveTables.contains(table) {
            try live.execute("DELETE FROM main.\(quoteIdentifier(table))")
            try live.execute("INSERT INTO main.\(quoteIdentifier(table)) SELECT * FROM \(Self.snapshotSchema).\(quoteIdentifier(table))")
            let now = try live.fingerprint(table: table)
            let then = try live.fingerprint(table: table, database: Self.snapshotSchema)
            guard now.rows == then.rows, now.sha256 == then.sha256 else {
                throw Failure(.undoUnproven, "after the undo, \(table) does not hold the snapshot's rows")
            }
            restored.append(table)
        }
        return "the objects the framework's command created were dropped"
            + (restored.isEmpty ? "" : " and its records (\(restored.joined(separator: ", "))) put back as the snapshot holds them")
            + "; application writes to existing tables were kept"
    }
}
