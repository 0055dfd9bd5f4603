import Foundation
import SQLite
import Support

extension OnlineRebuild {
    /// Step 3: the cut-over transaction. Returns the time the write lock was held.
    func cut(_ db: Connection, record: (Connection) throws -> Void) throws -> Double {
        var held = 0.0
        try inWriteTransaction(db) {
            let locked = ContinuousClock.now
            let bad = try differingLogged(db, limit: 5)
            guard bad.isEmpty else { throw mismatch(bad) }
            try failpoints.hit(.cutOver)
            for trigger in ["insert", "update", "delete"] { try db.execute("DROP TRIGGER \(Self.prefix)_\(trigger)") }
            try db.execute("PRAGMA legacy_alter_table = ON")
            defer { try? db.execute("PRAGMA legacy_alter_table = OFF") }
            try db.execute("ALTER TABLE \(table) RENAME TO \(Self.oldTable)")
            try db.execute("ALTER TABLE \(shadow) RENAME TO \(table)")
            try db.execute("PRAGMA legacy_alter_table = OFF")
            let oldIndexes = try db.rows("SELECT name, sql FROM sqlite_schema WHERE type = 'index' AND tbl_name = ? AND sql IS NOT NULL",
                                         [.text(Self.oldTable)]).map { ($0[0].string ?? "", $0[1].string ?? "") }
            try db.execute("PRAGMA writable_schema = ON")
            defer { try? db.execute("PRAGMA writable_schema = OFF") }
            for (position, (name, sql)) in oldIndexes.enumerated() {
                let renamed = "\(Self.prefix)_old_index_\(position + 1)"
                guard let parts = Shape.match(sql, #"^(CREATE (?:UNIQUE )?INDEX )\#(Shape.name)( ON [\s\S]*)$"#) else {
                    throw Failure(.onlineCutOverFailed, "cannot read the index \(name) of \(plan.table)")
                }
                try updateSchema(db, type: "index", name: name, to: renamed, sql: parts[0] + quoteIdentifier(renamed) + parts[1])
            }
            for position in plan.indexNames.indices {
                try updateSchema(db, type: "index", name: temporaryIndexName(position), to: plan.indexNames[position], sql: plan.finalIndexSQL[position])
            }
            try db.execute("PRAGMA writable_schema = OFF")
            let version = try db.scalar("PRAGMA schema_version").int ?? 0
            try db.execute("PRAGMA schema_version = \(version + 1)")
            let tableSQL = try db.scalar("SELECT sql FROM sqlite_schema WHERE type = 'table' AND name = ?", [.text(plan.table)]).string
            guard tableSQL == plan.finalTableSQL else {
                throw Failure(.onlineCutOverFailed, "after the cut-over \(plan.table)'s definition is not the migration's; rolled back, \(plan.table) is as it was")
            }
            try record(db)
            held = (ContinuousClock.now - locked).milliseconds
        }
        return held
    }

    func updateSchema(_ db: Connection, type: String, name: String, to newName: String, sql: String) throws {
        let before = db.totalChanges
        try db.rows("UPDATE sqlite_schema SET name = ?, sql = ? WHERE type = ? AND name = ?",
                    [.text(newName), .text(sql), .text(type), .text(name)]).forEach { _ in }
        guard db.totalChanges - before == 1 else { throw Failure(.onlineCutOverFailed, "the \(type) \(name) was not found at the cut-over") }
    }

    /// The proof of the copy, outside the lock, on a snapshot where both tables are in step:
    /// every copied column of every row equal (row counts and order-independent fingerprints),
    /// and the shadow's indexes hold its rows (`integrity_check`).
    /// - Throws: `Failure` `online.proof_failed`, `online.integrity_failed` or
    ///   `online.foreign_keys_dangling` when not: the rebuild stops before its cut-over.
    func prove(reader: Connection) throws -> String {
        defer { try? reader.execute("COMMIT") }
        let old = try reader.fingerprint(table: plan.table, columns: plan.sourceColumns)
        let new = try reader.fingerprint(table: plan.shadow, columns: plan.targetColumns)
        guard old.rows == new.rows, old.sha256 == new.sha256 else {
            throw Failure(.onlineProofFailed, "the online rebuild's proof failed: \(plan.shadow) held \(old.rows == new.rows ? "other values than" : "\(new.rows) rows against \(old.rows) in") \(plan.table), so the rebuild stopped before cutting over; \(plan.table) is as it was",
                          hint: "deploy it offline (without --online), with the application stopped if the write lock would be long")
        }
        let problems = try reader.integrityProblems(full: true, table: plan.shadow)
        guard problems.isEmpty else {
            throw Failure(.onlineIntegrityFailed, "integrity_check(\(plan.shadow)) before the cut-over: \(problems.prefix(3).joined(separator: "; ")); the rebuild stopped, \(plan.table) is as it was")
        }
        // Keys that point at the table are unchanged (its rows and keys are equal); its own
        // REFERENCES clauses may differ in the rebuild: compared on the same snapshot, so that
        // what the application wrote meanwhile counts on both sides.
        let added = Self.addedViolations(reader, in: plan.shadow, beside: plan.table)
        guard added.isEmpty else {
            throw Failure(.onlineForeignKeysDangling, "the rebuilt \(plan.table) would have foreign keys pointing nowhere (\(added.keys.sorted().joined(separator: ", "))); the rebuild stopped before cutting over, \(plan.table) is as it was",
                          hint: "fix the REFERENCES clauses in the migration, or the rows they refuse")
        }
        return "\(counted(old.rows, "row")) of \(plan.table) equal, column for column, to the new table's on one snapshot before the cut-over, and every row changed since compared in it; its foreign keys checked on that snapshot and again after the cut-over, integrity_check after it"
    }

    /// The parent tables that rows of `table` point at without a match more often than rows of
    /// `reference` (the same rows under the other table's REFERENCES clauses) do.
    static func addedViolations(_ db: Connection, in table: String, beside reference: String) -> [String: Int] {
        let byParent = { (counts: [ForeignKeyViolation: Int]) in Dictionary(counts.map { ($0.key.parent, $0.value) }, uniquingKeysWith: +) }
        let before = byParent(Planner.foreignKeyViolations(db, table: reference))
        return byParent(Planner.foreignKeyViolations(db, table: table)).filter { $0.value > before[$0.key, default: 0] }
    }

    /// After the commit: the live table and its indexes whole (`integrity_check`, which reads
    /// each index against the rows, not only the b-trees), now under their final definitions.
    /// - Throws: `Failure` `online.integrity_failed` or `online.foreign_keys_dangling`: the deploy is
    ///   then undone like any failure after a commit.
    func checkAfter(path: String) throws {
        let live = try Connection(path: path, mode: .inspect)
        let problems = try live.integrityProblems(full: true, table: plan.table)
        guard problems.isEmpty else { throw Failure(.onlineIntegrityFailed, "integrity_check(\(plan.table)) after the online rebuild: \(problems.prefix(3).joined(separator: "; "))") }
        // The application may have deleted parents since the snapshot (with its foreign keys
        // off): the new table's keys against the old table's, which is still there aside and
        // held the same rows at the cut-over.
        let added = Self.addedViolations(live, in: plan.table, beside: Self.oldTable)
        guard added.isEmpty else {
            throw Failure(.onlineForeignKeysDangling, "after the online rebuild \(plan.table) has foreign keys pointing nowhere that it did not have before (\(added.keys.sorted().joined(separator: ", ")))")
        }
    }
}
