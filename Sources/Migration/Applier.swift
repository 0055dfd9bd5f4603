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

    enum CodingKeys: String, CodingKey {
        case result
        case tablesCreated = "tables_created"
        case tablesAlreadyExisted = "tables_already_existed"
        case tablesProvenUnchanged = "tables_proven_unchanged"
        case unchangedProof = "unchanged_proof"
        case writeLockMilliseconds = "write_lock_ms"
    }
}

/// Applies pending migrations and verifies them in one `BEGIN IMMEDIATE` transaction that
/// commits only when verification passes (SPEC.md stage 5).
public struct Applier: Sendable {
    public let failpoints: Failpoints
    public let log: @Sendable (String) -> Void
    /// Whether to prove the pre-existing tables unchanged. The live run always does; a
    /// rehearsal on a throwaway copy is proven afterwards by its caller (identical pages or
    /// fingerprints against the snapshot), outside any write lock.
    public let proveUnchanged: Bool

    public init(failpoints: Failpoints, log: @escaping @Sendable (String) -> Void, proveUnchanged: Bool = true) {
        self.failpoints = failpoints
        self.log = log
        self.proveUnchanged = proveUnchanged
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
        try db.execute("BEGIN IMMEDIATE")
        let lockedAt = ContinuousClock.now
        do {
            let result = try applyAndVerify(pending, plan: plan, db: db, deployId: deployId, appliedAt: appliedAt, rehearsal: rehearsal)
            try db.execute("COMMIT")
            let held = ContinuousClock.now - lockedAt
            let ms = Double(held.components.seconds) * 1000 + Double(held.components.attoseconds) / 1e15
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
        let proving = plan.additive && proveUnchanged
        // SQLite's own record of every row change costs nothing while writes are blocked; two
        // fingerprint passes cost about one `.sha3sum` of the database.
        let recording = proving && RowChangeRecorder.isAvailable
        let fingerprinting = proving && !recording
        let shapesBefore = recording ? try tableShapes(db, existing) : [:]
        // In WAL mode a second connection sees exactly the state this transaction started from
        // (we hold the write lock, so nobody commits, and our changes are not visible to it):
        // the "before" fingerprints are taken there, on the other core, while this connection
        // migrates, which halves the time application writes are blocked. In rollback-journal
        // mode a reader could block our commit, so they are taken here first.
        var background: BeforeFingerprints?
        if fingerprinting, try db.journalMode() == "wal" { background = try BeforeFingerprints(path: db.path, tables: existing) }
        if fingerprinting && background == nil { for table in existing { before[table] = try db.fingerprint(table: table) } }

        let recorder = recording ? try RowChangeRecorder(db) : nil
        defer { recorder?.stop() }
        try db.execute(History.createSQL)
        var created = [String]()
        var already = [String]()
        var first = true
        for file in pending {
            let key = file.key
            let statements = plan.statements.filter { $0.migration == key }
            for (offset, sql) in try Connection.split(file.sql).enumerated() {
                let info = statements.first { $0.index == offset + 1 }
                let newTables = info?.creates.filter { $0.type == "table" }.map(\.name) ?? []
                for table in newTables { log("→ Creating \(table)…") }
                try db.execute(sql)
                for table in newTables { log("✓ \(table) created") }
                for name in info?.alreadyExists ?? [] where existing.contains(name) {
                    log("\(name) already exists")
                    already.append(name)
                }
                created += newTables
                if first {
                    first = false
                    try failpoints.hit("migrate")
                }
            }
            try db.rows("INSERT INTO deployctl_migrations (id, name, sha256, applied_at, deploy_id) VALUES (?, ?, ?, ?, ?)",
                        [.integer(Int64(file.id)), .text(file.name), .text(file.sha256), .text(appliedAt), .text(deployId)]).forEach { _ in }
        }
        let rowChanges = recorder?.stop() ?? [:]
        try failpoints.hit("verify")

        var problems = [String]()
        if recording {
            let shapesAfter = try tableShapes(db, existing)
            for table in existing {
                if let changed = rowChanges["main." + table] { problems.append("existing table \(table) changed: SQLite recorded \(changed) row change(s)") }
                if shapesAfter[table] != shapesBefore[table] { problems.append("existing table \(table) changed: its definition, root page or row count differs") }
            }
        }
        if let background { before = try background.wait() }
        // A non-additive migration is meant to change existing tables (both the file and the
        // command allowed it); the rehearsal comparison below still proves its result.
        for table in existing where fingerprinting {
            if try db.fingerprint(table: table) != before[table] { problems.append("existing table \(table) changed") }
        }
        let schema = try db.schema()
        var counts = [String: Int]()
        for table in try db.tableNames() where !existing.contains(table) || !plan.additive { counts[table] = try db.rowCount(table) }
        if let rehearsal {
            if schema != rehearsal.schema { problems.append("the schema differs from the rehearsal's") }
            if counts != rehearsal.rowCounts { problems.append("new tables' row counts \(counts) differ from the rehearsal's \(rehearsal.rowCounts)") }
        }
        if recording || (plan.additive && !proveUnchanged) {
            // Check what the migration wrote: the new tables and the schema. The old tables are
            // proven untouched (above, or by the rehearsal's caller), and the whole
            // database passed quick_check as the snapshot the rehearsal checked first.
            for table in created + ["sqlite_schema", History.table] {
                problems += try db.integrityProblems(table: table).map { "quick_check(\(table)): \($0)" }
            }
        } else {
            problems += try db.integrityProblems().map { "quick_check: \($0)" }
        }
        for table in created {
            do {
                problems += try db.rows("PRAGMA foreign_key_check(\(quoteIdentifier(table)))").map { "foreign key violation in \($0[0].string ?? table)" }
            } catch let error as SQLiteError {
                problems.append("foreign_key_check(\(table)): \(error.sqliteMessage)")
            }
        }
        for file in pending {
            for query in file.verifyQueries {
                let rows = try db.rows(query)
                if rows.count != 1 || rows[0].count != 1 || !rows[0][0].isTrue {
                    problems.append("verify query of \(file.fileName) is not true: \(query)")
                }
            }
        }
        guard problems.isEmpty else {
            throw Failure(.failed, "verification failed, so the migration was rolled back and the database is as it was: \(problems.joined(separator: "; "))",
                          hint: "fix the migration and run again")
        }
        let proof = recording ? "SQLite's preupdate hook recorded no row change to them; definitions, root pages and row counts equal"
            : fingerprinting ? "content fingerprints equal before and after, inside the transaction" : nil
        return (created, already, proving ? existing.count : 0, proof, Rehearsal(schema: schema, rowCounts: counts))
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

/// Fingerprints of tables taken on a second connection in the background, inside one read
/// transaction begun before the call returns.
private final class BeforeFingerprints: @unchecked Sendable {
    // The connection is used by the background task only after `init` returns, and by nobody
    // after `wait` returns: one thread at a time.
    private let connection: Connection
    private let done = DispatchSemaphore(value: 0)
    private var result: Result<[String: TableFingerprint], Error> = .success([:])
    private var finished = false

    init(path: String, tables: [String]) throws {
        connection = try Connection(path: path, mode: .inspect)
        try connection.execute("BEGIN")
        _ = try connection.scalar("SELECT count(*) FROM sqlite_schema")
        DispatchQueue.global().async { [self] in
            result = Result {
                var prints = [String: TableFingerprint]()
                for table in tables { prints[table] = try connection.fingerprint(table: table) }
                try connection.execute("COMMIT")
                return prints
            }
            done.signal()
        }
    }

    /// Waits for the fingerprints.
    func wait() throws -> [String: TableFingerprint] {
        if !finished {
            done.wait()
            finished = true
        }
        return try result.get()
    }

    // Never free the connection under the background task (an error path drops us early).
    deinit { if !finished { done.wait() } }
}
