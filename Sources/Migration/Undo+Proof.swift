import CSQLite
import Foundation
import SQLite
import Support

extension Undo {
    /// Proves on a rehearsed copy that the pending migrations' down parts, run newest first,
    /// return it to `reference`'s content: the same schema (the history table aside) and equal
    /// fingerprints of every table. Leaves the copy as it was (a savepoint rolled back).
    /// Returns nil when proven, else why not.
    public static func proveDown(_ pending: [MigrationFile], on db: Connection, reference: Connection) throws -> String? {
        let missing = pending.filter { $0.downSQL == nil }.map(\.key)
        guard missing.isEmpty else { return "no down part in \(missing.joined(separator: ", "))" }
        // A down part that writes rows (DELETE, UPDATE, INSERT) would change or remove what the
        // application wrote since the deploy: only schema changes undo without that risk.
        for file in pending {
            for sql in try Connection.split(file.downSQL!) where !Planner.isForeignKeysPragma(sql) {
                guard let actions = try? db.authorizerActions(for: sql) else { continue }
                if let write = actions.first(where: { action in
                    [SQLITE_INSERT, SQLITE_UPDATE, SQLITE_DELETE].contains(action.code) && !(action.first ?? "").hasPrefix("sqlite_")
                        && !actions.contains { [SQLITE_DROP_TABLE, SQLITE_DROP_VIEW].contains($0.code) && $0.first == action.first }
                }) {
                    return "the down part of \(file.key) writes rows (\(write.name) \(write.first ?? "")): it could change or remove the application's writes"
                }
            }
        }
        try db.execute("SAVEPOINT deployctl_down_proof")
        defer {
            try? db.execute("ROLLBACK TO deployctl_down_proof")
            try? db.execute("RELEASE deployctl_down_proof")
        }
        do {
            for file in pending.reversed() {
                for sql in try Connection.split(file.downSQL!) where !Planner.isForeignKeysPragma(sql) { try db.execute(sql) }
            }
        } catch let error as SQLiteError {
            return "the down parts fail on the rehearsed copy: \(error.sqliteMessage)"
        }
        // Byte for byte, as sqlite_schema stores it: a literal's case (DEFAULT 'EUR' against
        // 'eur'), whitespace or quoting that differ are a different schema, and an undo that
        // claims "the schema is the one before" must be exactly that. (A table renamed away and
        // back comes back quoted, "loan": not proven, so such an undo restores the snapshot.)
        let own = { (c: Connection) in
            Dictionary(try c.schema(exact: true).filter { $0.name != History.table && $0.table != History.table }
                .map { ($0.name, "\($0.type) \($0.table) \($0.sql ?? "")") }, uniquingKeysWith: { a, _ in a })
        }
        let after = try own(db)
        let before = try own(reference)
        guard after == before else {
            let differing = Set(after.keys).union(before.keys).filter { after[$0] != before[$0] }
            return "after up then down the schema text differs from the snapshot's, byte for byte (\(differing.sorted().joined(separator: ", ")))"
        }
        for table in try reference.tableNames() where table != History.table {
            if try db.fingerprint(table: table) != reference.fingerprint(table: table) {
                return "after up then down \(table) does not hold the snapshot's rows"
            }
        }
        return nil
    }
}
