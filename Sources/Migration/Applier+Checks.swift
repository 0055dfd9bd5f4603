import Foundation
import SQLite
import Support

extension Applier {
    /// Checks what the migration left, inside its transaction: the schema and new tables' row
    /// counts against the rehearsal's, `quick_check` of what it wrote (the whole database when
    /// nothing else proves the rest), foreign keys (the whole database, against the violations
    /// before, when a table was rebuilt, renamed or dropped), and the files' verify queries.
    /// `details` are the preupdate hook's records (nil without it). Returns the schema, the new
    /// tables' row counts and the problems found.
    func checkResult(_ db: Connection, pending: [MigrationFile], plan: MigrationPlan, existing: [String], created: [String],
                             touched: [String: TableEvidence], details: [String: RowChangeRecorder.TableChanges]?, rehearsal: Rehearsal?,
                             violationsBefore: [ForeignKeyViolation: Int]?) throws -> (schema: [SchemaObject], counts: [String: Int], problems: [String]) {
        var problems = [String]()
        let recording = details != nil
        let details = details ?? [:]
        let schema = try db.schema()
        var counts = [String: Int]()
        let destructive = plan.classification == .destructive
        // New tables only: existing ones may have gained the application's rows since the
        // snapshot the rehearsal ran on.
        for table in try db.tableNames() where !existing.contains(table) { counts[table] = try db.rowCount(table) }
        if let rehearsal {
            if schema != rehearsal.schema { problems.append("the schema differs from the rehearsal's") }
            let differing = counts.keys.filter { counts[$0] != rehearsal.rowCounts[$0] }.sorted()
            if !differing.isEmpty {
                problems.append("new tables' row counts differ from the rehearsal's: " + differing.map { "\($0) \(counts[$0] ?? 0) here, \(rehearsal.rowCounts[$0] ?? 0) there" }.joined(separator: ", "))
            }
        }
        // Tables the migration leaves under a name it created (a rebuild renames `new_x` back
        // to `x`) are checked under that name; dropped or renamed ones are not referred to.
        let finalTables = Set(try db.tableNames())
        // A touched table whose rows the hook saw unchanged (a column or index added) needs no
        // scan inside the lock: the rehearsal checked the same statements on the snapshot.
        let rowsWritten = touched.values.filter { e in e.rebuilt || (details["main." + (e.finalName ?? e.table)].map { !$0.inserted.isEmpty || $0.existingRowsDeleted > 0 || !$0.existingValuesChanged.isEmpty } ?? !recording) }
        let written = Array(Set(created.filter(finalTables.contains) + rowsWritten.compactMap(\.finalName).filter(finalTables.contains))).sorted()
        if recording || (!destructive && !proveUnchanged) {
            // Check what the migration wrote: the new and touched tables and the schema. The
            // other tables are proven untouched (above, or by the rehearsal's caller), and the
            // whole database passed quick_check as the snapshot the rehearsal checked first.
            for table in written + ["sqlite_schema", History.table] {
                problems += try timed("quick_check(\(table))") { try db.integrityProblems(table: table).map { "quick_check(\(table)): \($0)" } }
            }
        } else {
            problems += try timed("quick_check") { try db.integrityProblems().map { "quick_check: \($0)" } }
        }
        if let violationsBefore {
            // A table was rebuilt, renamed or dropped: every key that points at it is checked,
            // whole database, against the violations there were before.
            problems += timed("foreign_key_check after") { newViolations(db, since: violationsBefore) }
        } else {
            for table in written { problems += timed("foreign_key_check(\(table))") { newViolations(db, since: [:], table: table) } }
        }
        for file in pending {
            for query in file.verifyQueries {
                let rows = try db.rows(query)
                if rows.count != 1 || rows[0].count != 1 || !rows[0][0].isTrue {
                    problems.append(Self.falseQuery(file, query))
                }
            }
        }
        return (schema, counts, problems)
    }

    /// The violations that are new since `before` (of `table`'s rows only, when given), one
    /// line per pair of tables.
    func newViolations(_ db: Connection, since before: [ForeignKeyViolation: Int], table: String? = nil) -> [String] {
        Planner.foreignKeyViolations(db, table: table).sorted { $0.key < $1.key }.compactMap { key, count in
            let added = count - (before[key] ?? 0)
            guard added > 0 else { return nil }
            if case .uncheckable = key { return key.description }
            return "\(counted(added, "foreign key violation")): \(key) (rows of the first refer to rows the second does not hold)"
        }
    }

    /// The columns of each touched table the migration must keep, as (old name, new name),
    /// from the plan's evidence (renames followed, dropped ones left out).
    func keptColumns(_ db: Connection, _ touched: [String: TableEvidence]) throws -> [String: [(old: String, new: String)]] {
        var kept = [String: [(old: String, new: String)]]()
        for (table, evidence) in touched {
            let columns = try db.rows("SELECT name FROM pragma_table_info(?)", [.text(table)]).compactMap { $0[0].string }
            kept[table] = columns.filter { evidence.columnsDropped[$0] == nil }.map { ($0, evidence.columnsRenamed[$0] ?? $0) }
        }
        return kept
    }

    /// Proves, for each table the migration touched, that no existing row was deleted and no
    /// existing value changed: from the preupdate hook's old and new values for tables changed
    /// in place (`details`; nil without the hook), from fingerprints of the kept columns for
    /// rebuilt or renamed ones. Returns the problems.
    func provePreserved(_ db: Connection, touched: [String: TableEvidence], kept: [String: [(old: String, new: String)]],
                                details: [String: RowChangeRecorder.TableChanges]?, rebuiltBefore: [String: TableFingerprint]) throws -> [String] {
        var problems = [String]()
        for (table, evidence) in touched.sorted(by: { $0.key < $1.key }) {
            let columns = kept[table]!
            guard let final = evidence.finalName, try db.scalar("SELECT count(*) FROM sqlite_schema WHERE type = 'table' AND name = ?", [.text(final)]).int == 1 else {
                problems.append("\(table): gone after the migration, though the rehearsal kept its rows")
                continue
            }
            if let fingerprint = rebuiltBefore[table] {
                let after = try db.fingerprint(table: final, columns: columns.map(\.new))
                if after.rows != fingerprint.rows || after.sha256 != fingerprint.sha256 {
                    problems.append("\(table): its kept columns' content differs after the rebuild (fingerprints)")
                }
                continue
            }
            let now = try db.rows("SELECT name FROM pragma_table_info(?)", [.text(final)]).compactMap { $0[0].string }
            guard Array(now.prefix(columns.count)).map({ $0.lowercased() }) == columns.map({ $0.new.lowercased() }) else {
                problems.append("\(table): its existing columns are not where they were (\(now.joined(separator: ", ")))")
                continue
            }
            guard let details else {
                problems.append("\(table): changed in place, which needs SQLite's preupdate hook to prove (this libsqlite3 lacks it); deploy with a libsqlite3 that has it, or as destructive")
                continue
            }
            let changes = details["main." + final] ?? RowChangeRecorder.TableChanges()
            if changes.existingRowsDeleted > 0 { problems.append("\(table): \(counted(changes.existingRowsDeleted, "existing row")) deleted") }
            for (position, count) in changes.existingValuesChanged.sorted(by: { $0.key < $1.key }) where position < columns.count {
                problems.append("\(table).\(position < 0 ? "rowid" : columns[position].new): \(counted(count, "existing value")) changed")
            }
        }
        return problems
    }

    /// Definition, root page and row count of each of `tables`. The hook sees no DROP or
    /// CREATE: a dropped and recreated table shows as a new root page or lost rows.
    func tableShapes(_ db: Connection, _ tables: [String]) throws -> [String: TableShape] {
        let roots = try db.tableRoots()
        var shapes = [String: TableShape]()
        for table in tables { shapes[table] = TableShape(root: roots[table], rows: try db.rowCount(table)) }
        return shapes
    }

    struct TableShape: Equatable {
        let root: TableRoot?
        let rows: Int
    }

    /// How a false verify query is reported, by the deploy and by the plan alike.
    static func falseQuery(_ file: MigrationFile, _ query: String) -> String {
        "verify query of \(file.fileName) is not true: \(query)"
    }

    /// The `-- verify:` queries of `pending` that are not true on `db` (one row, one true
    /// value), or that fail to run, worded as the deploy reports them. Reads only.
    /// - Throws: `SQLiteError` only when stopped (an interrupt).
    public static func falseVerifyQueries(_ pending: [MigrationFile], on db: Connection) throws -> [String] {
        var failures = [String]()
        for file in pending {
            for query in file.verifyQueries {
                do {
                    let rows = try db.rows(query)
                    if rows.count != 1 || rows[0].count != 1 || !rows[0][0].isTrue { failures.append(falseQuery(file, query)) }
                } catch let error as SQLiteError where !error.interrupted {
                    failures.append("verify query of \(file.fileName) fails: \(error.sqliteMessage): \(query)")
                }
            }
        }
        return failures
    }
}
