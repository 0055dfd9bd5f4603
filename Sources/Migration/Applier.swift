import CSQLite
import Dispatch
import Foundation
import SQLite
import Support

/// The schema and row counts a rehearsal produced, for the live run to match.
public struct Rehearsal: Codable, Sendable {
    public let schema: [SchemaObject]
    public let rowCounts: [String: Int]

    enum CodingKeys: String, CodingKey {
        case schema
        case rowCounts = "row_counts"
    }
}

/// What applying the pending migrations did.
public struct ApplyResult: Codable, Sendable {
    public let tablesCreated: [String]
    public let tablesAlreadyExisted: [String]
    /// Pre-existing tables proven unchanged.
    public let tablesProvenUnchanged: Int
    /// How they were proven (nil when not: a rehearsal, or a non-additive migration).
    public let unchangedProof: String?
    /// How long the write lock was held (application writes blocked), in milliseconds.
    public let writeLockMilliseconds: Double
    /// The resulting schema and row counts.
    public let result: Rehearsal

    public init(tablesCreated: [String], tablesAlreadyExisted: [String], tablesProvenUnchanged: Int, unchangedProof: String?,
                writeLockMilliseconds: Double, result: Rehearsal) {
        self.tablesCreated = tablesCreated
        self.tablesAlreadyExisted = tablesAlreadyExisted
        self.tablesProvenUnchanged = tablesProvenUnchanged
        self.unchangedProof = unchangedProof
        self.writeLockMilliseconds = writeLockMilliseconds
        self.result = result
    }

    enum CodingKeys: String, CodingKey {
        case result
        case tablesCreated = "tables_created"
        case tablesAlreadyExisted = "tables_already_existed"
        case tablesProvenUnchanged = "tables_proven_unchanged"
        case unchangedProof = "unchanged_proof"
        case writeLockMilliseconds = "write_lock_ms"
    }
}

/// What the Applier reports as it runs each statement; the CLI renders it.
public enum TableEvent: Sendable, Equatable {
    case creating(String)
    case created(String)
    case alreadyExists(String)
}

/// Applies pending migrations and verifies them in one `BEGIN IMMEDIATE` transaction that
/// commits only when verification passes (SPEC.md stage 5).
public struct Applier: Sendable {
    public let failpoints: Failpoints
    public let tables: @Sendable (TableEvent) -> Void
    /// Whether to prove the pre-existing tables unchanged. The live run always does; a
    /// rehearsal on a throwaway copy is proven afterwards by its caller (identical pages or
    /// fingerprints against the snapshot), outside any write lock.
    public let proveUnchanged: Bool

    /// Receives each statement run and its time (`--log-level debug`).
    public let debug: @Sendable (String) -> Void
    /// Called just before COMMIT: throws to roll back instead (an interrupt).
    public let interrupted: @Sendable () throws -> Void
    /// Asked every thousand SQLite steps while the statements and checks run: true stops the
    /// running statement (`SQLITE_INTERRUPT`) and rolls the transaction back, so an interrupt
    /// takes effect within a second even in a long INSERT … SELECT.
    public let stop: @Sendable () -> Bool

    public init(failpoints: Failpoints, tables: @escaping @Sendable (TableEvent) -> Void = { _ in }, proveUnchanged: Bool = true,
                debug: @escaping @Sendable (String) -> Void = { _ in }, interrupted: @escaping @Sendable () throws -> Void = {},
                stop: @escaping @Sendable () -> Bool = { false }) {
        self.stop = stop
        self.failpoints = failpoints
        self.tables = tables
        self.proveUnchanged = proveUnchanged
        self.debug = debug
        self.interrupted = interrupted
    }

    /// Applies `pending` with their history rows, then verifies inside the transaction: every
    /// pre-existing table unchanged (history table excluded; see `RowChangeRecorder`: no row
    /// change recorded, the same definition and root page, the same row count; or, without the
    /// preupdate hook, equal fingerprints before and after), the schema and new
    /// tables' row counts equal to `rehearsal` (when given), `quick_check`, `foreign_key_check`
    /// of the new tables, and each migration's verify queries. Commits only if all pass.
    /// Failpoints `migrate` (after the first statement) and `verify` fire inside.
    /// - Throws: on any failure the transaction is rolled back, so the database is as before:
    ///   `Failure` `.failed` for a failed verification, `SQLiteError` for SQL or lock errors.
    public func apply(_ pending: [MigrationFile], plan: MigrationPlan, to db: Connection, deployId: String,
                      appliedAt: String, rehearsal: Rehearsal?) throws -> ApplyResult {
        db.stopWhen(stop)
        defer { db.stopWhen(nil) }
        try db.execute("BEGIN IMMEDIATE")
        let lockedAt = ContinuousClock.now
        do {
            let result = try applyAndVerify(pending, plan: plan, db: db, deployId: deployId, appliedAt: appliedAt, rehearsal: rehearsal)
            try interrupted()
            try db.execute("COMMIT")
            let held = ContinuousClock.now - lockedAt
            let ms = held.milliseconds
            return ApplyResult(tablesCreated: result.created, tablesAlreadyExisted: result.already,
                               tablesProvenUnchanged: result.proven, unchangedProof: result.proof,
                               writeLockMilliseconds: ms, result: result.rehearsal)
        } catch {
            if db.inTransaction { try? db.execute("ROLLBACK") }
            throw error
        }
    }

    private func applyAndVerify(_ pending: [MigrationFile], plan: MigrationPlan, db: Connection, deployId: String,
                                appliedAt: String, rehearsal: Rehearsal?)
        throws -> (created: [String], already: [String], proven: Int, proof: String?, rehearsal: Rehearsal) {
        let existing = try db.tableNames().filter { $0 != History.table }
        var before = [String: TableFingerprint]()
        // Additive and preserving migrations are proven here; a destructive one is meant to
        // change existing data (both its file and the command allowed it) and is checked
        // against its rehearsal instead.
        let proving = plan.classification != .destructive && proveUnchanged
        // Tables the plan saw the migration touch (gain columns, indexes or rows, rebuilt) are
        // proven for what they must keep; the others must not change at all.
        let touched = Dictionary(plan.evidence.map { ($0.table, $0) }, uniquingKeysWith: { a, _ in a })
        let untouched = existing.filter { touched[$0] == nil }
        // SQLite's own record of every row change costs nothing while writes are blocked; two
        // fingerprint passes cost about one `.sha3sum` of the database.
        let recording = proving && RowChangeRecorder.isAvailable
        let fingerprinting = proving && !recording
        let shapesBefore = recording ? try timed("definitions, root pages and row counts of untouched tables") { try tableShapes(db, untouched) } : [:]
        let kept = proving ? try keptColumns(db, touched) : [:]
        // A rebuilt or renamed table fires no hook for its old rows: its kept columns are
        // fingerprinted before and after, inside the lock.
        let rebuilt = touched.filter { proving && $0.value.rebuilt }.keys.sorted()
        var rebuiltBefore = [String: TableFingerprint]()
        // In WAL mode a second connection sees exactly the state this transaction started from
        // (we hold the write lock, so nobody commits, and our changes are not visible to it):
        // the "before" fingerprints are taken there, on the other core, while this connection
        // migrates, which halves the time application writes are blocked (1M-row rebuild: the
        // 0.46 s before-pass leaves the lock). In rollback-journal mode a reader could block our
        // commit, so they are taken here first.
        let requests = (fingerprinting ? untouched.map { FingerprintRequest(table: $0, columns: nil) } : [])
            + rebuilt.map { FingerprintRequest(table: $0, columns: kept[$0]!.map(\.old)) }
        var background: BeforeFingerprints?
        // Whole tables (untouched) and kept columns (rebuilt), taken here or in the background.
        func keep(_ prints: [(FingerprintRequest, TableFingerprint)]) {
            for (request, print) in prints {
                if request.columns == nil { before[request.table] = print } else { rebuiltBefore[request.table] = print }
            }
        }
        if !requests.isEmpty, try db.journalMode() == "wal" {
            background = try BeforeFingerprints(path: db.path, requests: requests, debug: debug)
        } else {
            keep(try requests.map { request in
                (request, try timed("fingerprint of \(request.table) before") { try db.fingerprint(table: request.table, columns: request.columns) })
            })
        }

        // Rebuilding, renaming or dropping a table can leave other tables' keys pointing nowhere.
        let reshaped = touched.values.contains { $0.rebuilt || $0.finalName != $0.table }
        let violationsBefore = reshaped ? timed("foreign_key_check before") { Planner.foreignKeyViolations(db) } : nil
        // Only the touched existing tables need each row's old and new values; a table the
        // migration creates (a rebuild's new_x) needs only its count.
        let detailed = Set(touched.values.flatMap { ["main." + $0.table] + ($0.finalName.map { ["main." + $0] } ?? []) })
        let recorder = recording ? try RowChangeRecorder(db, detailed: !touched.isEmpty, only: detailed) : nil
        defer { recorder?.stop() }
        try db.execute(History.createSQL)
        var created = [String]()
        var already = [String]()
        var first = true
        for file in pending {
            let key = file.key
            let statements = plan.statements.filter { $0.migration == key }
            for (offset, sql) in try Connection.split(file.sql).enumerated() {
                // Foreign keys stay off while migrating (SQLite ignores the pragma inside a
                // transaction anyway); foreign_key_check runs before COMMIT.
                if Planner.isForeignKeysPragma(sql) { continue }
                let info = statements.first { $0.index == offset + 1 }
                let newTables = info?.creates.filter { $0.type == "table" }.map(\.name) ?? []
                for table in newTables { tables(.creating(table)) }
                let started = ContinuousClock.now
                try db.execute(sql)
                let took = ContinuousClock.now - started
                let ms = took.milliseconds
                debug("SQL (\(file.fileName) #\(offset + 1), \(String(format: "%.2f", ms)) ms): \(Connection.normalizeSQL(sql))")
                for table in newTables { tables(.created(table)) }
                for name in info?.alreadyExists ?? [] where existing.contains(name) {
                    tables(.alreadyExists(name))
                    already.append(name)
                }
                created += newTables
                if first {
                    first = false
                    try failpoints.hit(.migrate)
                }
            }
            try History.record([file], on: db, deployId: deployId, appliedAt: appliedAt)
        }
        let details = recorder?.details ?? [:]
        let rowChanges = recorder?.stop() ?? [:]
        try failpoints.hit(.verify)

        var problems = [String]()
        if recording {
            let shapesAfter = try timed("definitions, root pages and row counts of untouched tables") { try tableShapes(db, untouched) }
            for table in untouched {
                if let changed = rowChanges["main." + table] { problems.append("existing table \(table) changed: SQLite recorded \(counted(changed, "row change"))") }
                if shapesAfter[table] != shapesBefore[table] { problems.append("existing table \(table) changed: its definition, root page or row count differs") }
            }
        }
        if let background { keep(try timed("waiting for the fingerprints before", { try background.wait() })) }
        for table in untouched where fingerprinting {
            if try db.fingerprint(table: table) != before[table] { problems.append("existing table \(table) changed") }
        }
        if proving {
            problems += try timed("proof that touched tables kept their rows") {
                try provePreserved(db, touched: touched, kept: kept, details: recording ? details : nil, rebuiltBefore: rebuiltBefore)
            }
        }
        let (schema, counts, found) = try checkResult(db, pending: pending, plan: plan, existing: existing, created: created, touched: touched,
                                                      details: recording ? details : nil, rehearsal: rehearsal, violationsBefore: violationsBefore)
        problems += found
        guard problems.isEmpty else {
            throw Failure(.migrationVerificationFailed, "verification failed, so the migration was rolled back and the database is as it was: \(problems.joined(separator: "; "))",
                          hint: "fix the migration and run again")
        }
        var proof = recording ? "SQLite's preupdate hook recorded no row change to them; definitions, root pages and row counts equal"
            : fingerprinting ? "content fingerprints equal before and after, inside the transaction" : nil
        if proving && !touched.isEmpty {
            proof = (proof ?? "") + "; \(touched.keys.sorted().joined(separator: ", ")): no existing row deleted and no existing value changed"
                + (recording ? " (old and new values compared by the preupdate hook" : " (") + (rebuiltBefore.isEmpty ? ")" : "; rebuilt tables by fingerprints of their kept columns)")
        }
        return (created, already, proving ? untouched.count : 0, proof, Rehearsal(schema: schema, rowCounts: counts))
    }

    /// Checks what the migration left, inside its transaction: the schema and new tables' row
    /// counts against the rehearsal's, `quick_check` of what it wrote (the whole database when
    /// nothing else proves the rest), foreign keys (the whole database, against the violations
    /// before, when a table was rebuilt, renamed or dropped), and the files' verify queries.
    /// `details` are the preupdate hook's records (nil without it). Returns the schema, the new
    /// tables' row counts and the problems found.
    private func checkResult(_ db: Connection, pending: [MigrationFile], plan: MigrationPlan, existing: [String], created: [String],
                             touched: [String: TableEvidence], details: [String: RowChangeRecorder.TableChanges]?, rehearsal: Rehearsal?,
                             violationsBefore: [String: Int]?) throws -> (schema: [SchemaObject], counts: [String: Int], problems: [String]) {
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

    /// Runs `body` and reports its time under `what` (`--log-level debug`).
    private func timed<T>(_ what: String, _ body: () throws -> T) rethrows -> T {
        let started = ContinuousClock.now
        defer { debug("check (\(what)): \(String(format: "%.2f", (ContinuousClock.now - started).milliseconds)) ms") }
        return try body()
    }

    /// The violations that are new since `before` (of `table`'s rows only, when given), one
    /// line per pair of tables.
    private func newViolations(_ db: Connection, since before: [String: Int], table: String? = nil) -> [String] {
        Planner.foreignKeyViolations(db, table: table).sorted { $0.key < $1.key }.compactMap { key, count in
            let added = count - (before[key] ?? 0)
            guard added > 0 else { return nil }
            return key.hasPrefix("foreign_key_check") ? key : "\(counted(added, "foreign key violation")): \(key) (rows of the first refer to rows the second does not hold)"
        }
    }

    /// The columns of each touched table the migration must keep, as (old name, new name),
    /// from the plan's evidence (renames followed, dropped ones left out).
    private func keptColumns(_ db: Connection, _ touched: [String: TableEvidence]) throws -> [String: [(old: String, new: String)]] {
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
    private func provePreserved(_ db: Connection, touched: [String: TableEvidence], kept: [String: [(old: String, new: String)]],
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
    private func tableShapes(_ db: Connection, _ tables: [String]) throws -> [String: TableShape] {
        let roots = try db.tableRoots()
        var shapes = [String: TableShape]()
        for table in tables { shapes[table] = TableShape(root: roots[table], rows: try db.rowCount(table)) }
        return shapes
    }

    private struct TableShape: Equatable {
        let root: TableRoot?
        let rows: Int
    }
}

/// One table's fingerprint to take before the migration: all columns, or the kept ones.
struct FingerprintRequest: Sendable {
    let table: String
    let columns: [String]?
}

/// Fingerprints of tables taken on a second connection in the background, inside one read
/// transaction begun before the call returns.
private final class BeforeFingerprints: @unchecked Sendable {
    // The connection is used by the background task only after `init` returns, and by nobody
    // after `wait` returns: one thread at a time.
    private let connection: Connection
    private let done = DispatchSemaphore(value: 0)
    private var result: Result<[(FingerprintRequest, TableFingerprint)], Error> = .success([])
    private var finished = false

    init(path: String, requests: [FingerprintRequest], debug: @escaping @Sendable (String) -> Void) throws {
        connection = try Connection(path: path, mode: .inspect)
        try connection.execute("BEGIN")
        _ = try connection.scalar("SELECT count(*) FROM sqlite_schema")
        DispatchQueue.global().async { [self] in
            result = Result {
                var prints = [(FingerprintRequest, TableFingerprint)]()
                for request in requests {
                    let started = ContinuousClock.now
                    prints.append((request, try connection.fingerprint(table: request.table, columns: request.columns)))
                    debug("check (fingerprint of \(request.table) before, on a second connection): \(String(format: "%.2f", (ContinuousClock.now - started).milliseconds)) ms")
                }
                try connection.execute("COMMIT")
                return prints
            }
            done.signal()
        }
    }

    /// Waits for the fingerprints.
    func wait() throws -> [(FingerprintRequest, TableFingerprint)] {
        if !finished {
            done.wait()
            finished = true
        }
        return try result.get()
    }

    // Never free the connection under the background task (an error path drops us early).
    deinit { if !finished { done.wait() } }
}

extension Applier {
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
