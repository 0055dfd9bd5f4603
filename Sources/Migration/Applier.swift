import Dispatch
import Foundation
import SQLite
import Support


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
    ///   `Failure` `migration.verification_failed` for a failed verification, `SQLiteError` for SQL or
    ///   lock errors.
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
        var before = try takeBefore(plan: plan, db: db)
        // On a way out before they are used, still wait: no reader is left running behind us.
        defer { _ = try? before.background?.wait(report: { _ in }) }
        // Only the touched existing tables need each row's old and new values; a table the
        // migration creates (a rebuild's new_x) needs only its count.
        let detailed = Set(before.touched.values.flatMap { ["main." + $0.table] + ($0.finalName.map { ["main." + $0] } ?? []) })
        let recorder = before.recording ? try RowChangeRecorder(db, detailed: !before.touched.isEmpty, only: detailed) : nil
        defer { recorder?.stop() }
        let (created, already) = try runStatements(pending, plan: plan, db: db, existing: before.existing, deployId: deployId, appliedAt: appliedAt)
        let details = recorder?.details ?? [:]
        let rowChanges = recorder?.stop() ?? [:]
        try failpoints.hit(.verify)

        var problems = try untouchedProblems(db, before: &before, rowChanges: rowChanges)
        if before.proving {
            problems += try timed("proof that touched tables kept their rows") {
                try provePreserved(db, touched: before.touched, kept: before.kept, details: before.recording ? details : nil,
                                   rebuiltBefore: before.rebuiltPrints)
            }
        }
        let (schema, counts, found) = try checkResult(db, pending: pending, plan: plan, existing: before.existing, created: created,
                                                      touched: before.touched, details: before.recording ? details : nil, rehearsal: rehearsal,
                                                      violationsBefore: before.violations)
        problems += found
        guard problems.isEmpty else {
            throw Failure(.migrationVerificationFailed, "verification failed, so the migration was rolled back and the database is as it was: \(problems.joined(separator: "; "))",
                          hint: "fix the migration and run again")
        }
        return (created, already, before.proving ? before.untouched.count : 0, before.proof, Rehearsal(schema: schema, rowCounts: counts))
    }

    /// What is taken inside the transaction before the statements run, to prove afterwards
    /// what they kept (`takeBefore`).
    private struct Before {
        let existing: [String]
        /// Tables the plan saw the migration touch, by name, with that evidence.
        let touched: [String: TableEvidence]
        let untouched: [String]
        /// Additive and preserving migrations are proven here.
        let proving: Bool
        /// Proven by SQLite's preupdate hook; else by fingerprints before and after.
        let recording: Bool
        let fingerprinting: Bool
        let shapes: [String: TableShape]
        /// The columns of each touched table the migration must keep, as (old name, new name).
        let kept: [String: [(old: String, new: String)]]
        /// Untouched tables' fingerprints (without the hook) and rebuilt tables' kept columns'.
        var prints = [String: TableFingerprint]()
        var rebuiltPrints = [String: TableFingerprint]()
        /// The fingerprints being taken on a second connection (WAL mode).
        var background: Parallel.Background<[(FingerprintRequest, TableFingerprint)]>?
        /// Foreign-key violations before, when a table is rebuilt, renamed or dropped.
        var violations: [ForeignKeyViolation: Int]?

        // Whole tables (untouched) and kept columns (rebuilt), taken here or in the background.
        mutating func keep(_ taken: [(FingerprintRequest, TableFingerprint)]) {
            for (request, print) in taken {
                if request.columns == nil { prints[request.table] = print } else { rebuiltPrints[request.table] = print }
            }
        }

        /// How the untouched tables, and what the touched ones kept, were proven; nil when not.
        var proof: String? {
            var proof = recording ? "SQLite's preupdate hook recorded no row change to them; definitions, root pages and row counts equal"
                : fingerprinting ? "content fingerprints equal before and after, inside the transaction" : nil
            if proving && !touched.isEmpty {
                proof = (proof ?? "") + "; \(touched.keys.sorted().joined(separator: ", ")): no existing row deleted and no existing value changed"
                    + (recording ? " (old and new values compared by the preupdate hook" : " (") + (rebuiltPrints.isEmpty ? ")" : "; rebuilt tables by fingerprints of their kept columns)")
            }
            return proof
        }
    }

    /// Takes what the proof needs before the statements: the untouched tables' shapes (with the
    /// hook) or fingerprints (without), the rebuilt tables' kept columns' fingerprints and the
    /// foreign-key violations when a table is reshaped.
    private func takeBefore(plan: MigrationPlan, db: Connection) throws -> Before {
        let existing = try db.tableNames().filter { $0 != History.table }
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
        let shapes = recording ? try timed("definitions, root pages and row counts of untouched tables") { try tableShapes(db, untouched) } : [:]
        var before = Before(existing: existing, touched: touched, untouched: untouched, proving: proving, recording: recording,
                            fingerprinting: fingerprinting, shapes: shapes, kept: proving ? try keptColumns(db, touched) : [:])
        // A rebuilt or renamed table fires no hook for its old rows: its kept columns are
        // fingerprinted before and after, inside the lock.
        let rebuilt = touched.filter { proving && $0.value.rebuilt }.keys.sorted()
        // In WAL mode a second connection sees exactly the state this transaction started from
        // (we hold the write lock, so nobody commits, and our changes are not visible to it):
        // the "before" fingerprints are taken there, on the other core, while this connection
        // migrates, which halves the time application writes are blocked (1M-row rebuild: the
        // 0.46 s before-pass leaves the lock). In rollback-journal mode a reader could block our
        // commit, so they are taken here first.
        let requests = (fingerprinting ? untouched.map { FingerprintRequest(table: $0, columns: nil) } : [])
            + rebuilt.map { FingerprintRequest(table: $0, columns: before.kept[$0]!.map(\.old)) }
        if !requests.isEmpty, try db.journalMode() == "wal" {
            let (path, debug) = (db.path, debug)
            before.background = Parallel.Background { _ in try Self.fingerprints(requests, at: path, debug: debug) }
        } else {
            before.keep(try requests.map { request in
                (request, try timed("fingerprint of \(request.table) before") { try db.fingerprint(table: request.table, columns: request.columns) })
            })
        }
        // Rebuilding, renaming or dropping a table can leave other tables' keys pointing nowhere.
        let reshaped = touched.values.contains { $0.rebuilt || $0.finalName != $0.table }
        before.violations = reshaped ? timed("foreign_key_check before") { Planner.foreignKeyViolations(db) } : nil
        return before
    }

    /// Runs the statements of `pending` in order, each file followed by its history row, and
    /// reports the tables created and those that already existed. Failpoint `migrate` fires
    /// after the first statement.
    private func runStatements(_ pending: [MigrationFile], plan: MigrationPlan, db: Connection, existing: [String], deployId: String,
                               appliedAt: String) throws -> (created: [String], already: [String]) {
        try db.execute(History.createSQL)
        var created = [String]()
        var already = [String]()
        var first = true
        for file in pending {
            let statements = plan.statements.filter { $0.migration == file.key }
            for (offset, sql) in try Connection.split(file.sql).enumerated() {
                // Foreign keys stay off while migrating (SQLite ignores the pragma inside a
                // transaction anyway); foreign_key_check runs before COMMIT.
                if Planner.isForeignKeysPragma(sql) { continue }
                let info = statements.first { $0.index == offset + 1 }
                let newTables = info?.creates.filter { $0.type == .table }.map(\.name) ?? []
                for table in newTables { tables(.creating(table)) }
                let started = ContinuousClock.now
                try db.execute(sql)
                let ms = (ContinuousClock.now - started).milliseconds
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
        return (created, already)
    }

    /// What changed in the tables the migration must not touch: rows the hook recorded and
    /// shapes (with the hook), or fingerprints (without).
    private func untouchedProblems(_ db: Connection, before: inout Before, rowChanges: [String: Int]) throws -> [String] {
        var problems = [String]()
        if before.recording {
            let shapesAfter = try timed("definitions, root pages and row counts of untouched tables") { try tableShapes(db, before.untouched) }
            for table in before.untouched {
                if let changed = rowChanges["main." + table] { problems.append("existing table \(table) changed: SQLite recorded \(counted(changed, "row change"))") }
                if shapesAfter[table] != before.shapes[table] { problems.append("existing table \(table) changed: its definition, root page or row count differs") }
            }
        }
        if let background = before.background { before.keep(try timed("waiting for the fingerprints before", { try background.wait(report: { _ in }) })) }
        for table in before.untouched where before.fingerprinting {
            if try db.fingerprint(table: table) != before.prints[table] { problems.append("existing table \(table) changed") }
        }
        return problems
    }

    /// Runs `body` and reports its time under `what` (`--log-level debug`).
    func timed<T>(_ what: String, _ body: () throws -> T) rethrows -> T {
        let started = ContinuousClock.now
        defer { debug("check (\(what)): \(String(format: "%.2f", (ContinuousClock.now - started).milliseconds)) ms") }
        return try body()
    }
}

/// One table's fingerprint to take before the migration: all columns, or the kept ones.
struct FingerprintRequest: Sendable {
    let table: String
    let columns: [String]?
}

extension Applier {
    /// The fingerprints `requests` ask for, on a connection of its own to `path` in one read
    /// transaction. Run in the background in WAL mode: the migrating connection holds the write
    /// lock and waits for these before it commits, so this sees exactly the state it started from.
    static func fingerprints(_ requests: [FingerprintRequest], at path: String,
                             debug: @Sendable (String) -> Void) throws -> [(FingerprintRequest, TableFingerprint)] {
        let connection = try Connection(path: path, mode: .inspect)
        try connection.execute("BEGIN")
        defer { try? connection.execute("COMMIT") }
        var prints = [(FingerprintRequest, TableFingerprint)]()
        for request in requests {
            let started = ContinuousClock.now
            prints.append((request, try connection.fingerprint(table: request.table, columns: request.columns)))
            debug("check (fingerprint of \(request.table) before, on a second connection): \(String(format: "%.2f", (ContinuousClock.now - started).milliseconds)) ms")
        }
        return prints
    }
}
