import CSQLite
import Foundation
import SQLite
import Support

/// Runs an `OnlineRebuildPlan` on the live database while the application writes, holding the
/// write lock only for short transactions (pt-online-schema-change's method, with SQLite's
/// triggers):
///
/// 1. Set-up, one short transaction: the new table (the shadow, under the migration's own name)
///    with its indexes under temporary names (built from the exact text they end with), a change
///    log, and triggers on the old table that mirror every INSERT/UPDATE/DELETE into the shadow
///    and log the rowids they touched — rows an application's REPLACE deletes by a UNIQUE value
///    (no DELETE trigger fires for those) included.
/// 2. Copy, in batches of about `batchTime` (the size adapts, from 16 rows), each followed by a
///    pause as long; a wait for the write lock longer than `giveUpAfter` gives up.
/// 3. Proof, outside the lock, on a read snapshot where both tables are in step (begun inside a
///    write transaction that also clears the log): every copied column of every row equal (row
///    counts and order-independent fingerprints), `integrity_check` of the shadow, and no
///    foreign-key violation the old table does not have. The rows logged since are compared
///    next, a few thousand at a time.
/// 4. Cut-over, one transaction whose cost does not grow with the rows: the rows logged since
///    compared; the triggers dropped; with `legacy_alter_table` on (so that other tables'
///    foreign keys, views and triggers keep naming the table, as after the offline DROP and
///    RENAME), the old table renamed aside and the shadow into place; the indexes take their
///    final names and text (sqlite.org's documented `writable_schema` edit, the schema version
///    bumped); the table's definition checked byte for byte; the history row written.
/// 5. After the commit: `integrity_check` of the table under its final index definitions (a
///    failure undoes the deploy like any other), then the old table emptied in short batches and
///    dropped.
///
/// Any failure before the cut-over commits removes the shadow, triggers and log (the live table
/// was never changed); a crash leaves them for `cleanUp`, which the next deploy runs first. A
/// crash after the commit leaves a table already proven (step 3 and the cut-over's comparison).
public struct OnlineRebuild: Sendable {
    /// The prefix of every object an online rebuild creates besides the shadow table.
    public static let prefix = "_deployctl_online"
    static let stateTable = "_deployctl_online_state"
    static let logTable = "_deployctl_online_log"
    static let oldTable = "_deployctl_online_old"

    public let plan: OnlineRebuildPlan
    public let failpoints: Failpoints
    /// Throws to stop (an interrupt): asked between batches and before the cut-over.
    public let checkpoint: @Sendable () throws -> Void
    /// Asked every thousand SQLite steps: true stops the running statement.
    public let stop: @Sendable () -> Bool
    /// Rows copied so far and the table's rows when the copy began.
    public let progress: @Sendable (_ copied: Int, _ total: Int) -> Void
    public let debug: @Sendable (String) -> Void
    /// The target time of one copy batch (the application's writes wait at most about this).
    public let batchTime: Duration
    /// How long one wait for the write lock (a gap in the application's writes) may last before
    /// the rebuild gives up and removes what it built.
    public let giveUpAfter: Duration

    public init(plan: OnlineRebuildPlan, failpoints: Failpoints, checkpoint: @escaping @Sendable () throws -> Void = {},
                stop: @escaping @Sendable () -> Bool = { false }, progress: @escaping @Sendable (Int, Int) -> Void = { _, _ in },
                debug: @escaping @Sendable (String) -> Void = { _ in }, batchTime: Duration = .milliseconds(40), giveUpAfter: Duration = .seconds(60)) {
        self.plan = plan
        self.failpoints = failpoints
        self.checkpoint = checkpoint
        self.stop = stop
        self.progress = progress
        self.debug = debug
        self.batchTime = batchTime
        self.giveUpAfter = giveUpAfter
    }

    /// What the cut-over did: the write lock it held, and the longest batch's.
    public struct Outcome: Sendable {
        public let cutOverMilliseconds: Double
        public let longestBatchMilliseconds: Double
        public let rowsCopied: Int
        public let proof: String
    }

    /// Runs the rebuild on the database at `path`. `record` writes the history rows inside the
    /// cut-over transaction; `committed` is called right after the cut-over commits (the deploy
    /// journals it), before the `integrity_check` that follows.
    /// - Throws: before the cut-over commits, any error (a failed proof included) after removing
    ///   what it created, the live table as it was; after it, `Failure` `online.integrity_failed` (or `online.foreign_keys_dangling`) when the
    ///   table's `integrity_check` fails (the caller undoes the deploy).
    public func run(path: String, busyTimeout: Duration, record: (Connection) throws -> Void, committed: () throws -> Void) throws -> Outcome {
        let db = try Connection(path: path, mode: .readWrite, busyTimeout: .milliseconds(50))
        // Off, so that renaming the table aside at the cut-over (legacy_alter_table) leaves the
        // REFERENCES clauses of other tables naming it, as the offline DROP and RENAME do.
        try db.execute("PRAGMA foreign_keys = OFF")
        // The copy's batches need not be durable one by one (a crash discards them all; the next
        // deploy removes them): no fsync per batch. The cut-over commits with FULL.
        try db.execute("PRAGMA synchronous = NORMAL")
        try Self.readThroughMap(db)
        db.stopWhen(stop)
        var longest = 0.0
        var copied = 0
        var proof = ""
        let cutOver: Double
        var mark = ContinuousClock.now
        func step(_ what: String) {
            debug("online \(what): \(String(format: "%.1f", (ContinuousClock.now - mark).milliseconds)) ms")
            mark = ContinuousClock.now
        }
        do {
            try setUp(db)
            step("set-up")
            (copied, longest) = try copy(db)
            step("copy")
            // Proven before the cut-over, so that a crash after its commit leaves a proven
            // table: the whole copy on a snapshot where both tables are in step, then, in the
            // cut-over, every row the application changed since.
            proof = try prove(reader: try snapshotInStep(db))
            step("proof on a snapshot")
            try failpoints.hit(.onlineProven)
            try verifyLog(db)
            step("comparison of the rows changed since")
            try checkpoint()
            try db.execute("PRAGMA synchronous = FULL")
            cutOver = try cut(db, record: record)
            step("cut-over")
        } catch {
            db.stopWhen(nil)
            if db.inTransaction { try? db.execute("ROLLBACK") }
            do {
                _ = try Self.cleanUp(path: path, busyTimeout: busyTimeout)
            } catch let cleanUpError {
                // Said, not hidden: the triggers stay on the live table until the next deploy.
                let code = (error as? DeployctlError)?.code ?? .internalError
                throw Failure(code, "\((error as? DeployctlError)?.message ?? "\(error)"); its shadow table \(plan.shadow) and the triggers on \(plan.table) could not be removed yet (\(cleanUpError)): the next deploy removes them first",
                              hint: (error as? DeployctlError)?.hint ?? "run the deploy again when the application leaves the write lock free")
            }
            throw error
        }
        try committed()
        try checkAfter(path: path)
        step("integrity_check and foreign keys after the cut-over")
        try Self.freeOld(path: path, busyTimeout: busyTimeout, debug: debug)
        step("freeing the old table")
        return Outcome(cutOverMilliseconds: cutOver, longestBatchMilliseconds: longest, rowsCopied: copied, proof: proof)
    }

    /// A read snapshot in which the old table and the shadow are in step: begun inside a write
    /// transaction (nobody commits meanwhile), which also clears the change log, so that the
    /// log holds exactly the rows changed after the snapshot.
    private func snapshotInStep(_ db: Connection) throws -> Connection {
        let reader = try Connection(path: db.path, mode: .inspect)
        try inWriteTransaction(db) {
            try reader.execute("BEGIN")
            _ = try reader.scalar("SELECT count(*) FROM \(table)")
            try db.execute("DELETE FROM \(Self.logTable)")
        }
        return reader
    }

    private var quotedSource: String { plan.sourceColumns.map(quoteIdentifier).joined(separator: ", ") }
    private var quotedTarget: String { plan.targetColumns.map(quoteIdentifier).joined(separator: ", ") }
    private var table: String { quoteIdentifier(plan.table) }
    private var shadow: String { quoteIdentifier(plan.shadow) }

    private func temporaryIndexName(_ position: Int) -> String { "\(Self.prefix)_index_\(position + 1)" }

    /// Step 1: shadow table, its indexes under temporary names, log, state and triggers.
    private func setUp(_ db: Connection) throws {
        try inWriteTransaction(db) {
            try db.execute("CREATE TABLE \(Self.stateTable) (shadow TEXT NOT NULL, source TEXT NOT NULL)")
            try db.rows("INSERT INTO \(Self.stateTable) VALUES (?, ?)", [.text(plan.shadow), .text(plan.table)]).forEach { _ in }
            try db.execute(plan.createSQL)
            // Each index under a temporary name, from the very text the cut-over gives it (what
            // follows the table's name, byte for byte), and checked to be stored so.
            for (position, final) in plan.finalIndexSQL.enumerated() {
                guard let parts = OnlineRebuildPlan.indexParts(final) else { throw Failure(.onlineCutOverFailed, "cannot read the index statement \(final)") }
                let name = temporaryIndexName(position)
                try db.execute(parts.head + quoteIdentifier(name) + " ON " + shadow + " " + parts.rest)
                let stored = try db.scalar("SELECT sql FROM sqlite_schema WHERE type = 'index' AND name = ?", [.text(name)]).string
                guard let built = stored.flatMap(OnlineRebuildPlan.indexParts), built.head == parts.head, built.rest == parts.rest else {
                    throw Failure(.onlineCutOverFailed, "the index \(plan.indexNames[position]) could not be built under a temporary name with the migration's definition; nothing was changed")
                }
            }
            // No UNIQUE on the log: an application statement's own conflict clause (UPDATE OR
            // ABORT) overrides the triggers', so a repeated key must never conflict.
            try db.execute("CREATE TABLE \(Self.logTable) (k INTEGER)")
            try db.execute("CREATE INDEX \(Self.logTable)_k ON \(Self.logTable) (k)")
            let new = plan.sourceColumns.map { "NEW.\(quoteIdentifier($0))" }.joined(separator: ", ")
            let key = quoteIdentifier(plan.targetKey)
            let sourceKey = quoteIdentifier(plan.sourceKey)
            // An application's INSERT/UPDATE OR REPLACE deletes the rows its new values conflict
            // with, and fires no DELETE trigger for them (recursive_triggers is off by default):
            // their copies are removed and logged by the same UNIQUE values. The new table's
            // UNIQUE sets are among the old's, so no other conflict can arise there; the
            // A row the new table refuses (a CHECK or NOT NULL it adds) is left out (OR IGNORE),
            // so the application's write goes on; its logged key then differs and the rebuild
            // stops before cutting over. An application statement with its own OR clause
            // overrides that one: with OR ABORT/FAIL/ROLLBACK such a row fails its statement.
            let conflicts = plan.uniqueSets.map { set in
                let match = set.map { "\(quoteIdentifier($0.target)) = NEW.\(quoteIdentifier($0.source)) COLLATE \(quoteIdentifier($0.collation))" }.joined(separator: " AND ")
                return """
                      INSERT INTO \(Self.logTable) (k) SELECT \(key) FROM \(shadow) WHERE \(match) AND \(key) <> NEW.\(sourceKey);
                      DELETE FROM \(shadow) WHERE \(match) AND \(key) <> NEW.\(sourceKey);
                    """
            }.joined(separator: "\n")
            try db.execute("""
                CREATE TRIGGER \(Self.prefix)_insert AFTER INSERT ON \(table) BEGIN
                \(conflicts)
                  DELETE FROM \(shadow) WHERE \(key) = NEW.\(sourceKey);
                  INSERT OR IGNORE INTO \(shadow) (\(quotedTarget)) VALUES (\(new));
                  INSERT INTO \(Self.logTable) (k) VALUES (NEW.\(sourceKey));
                END;
                CREATE TRIGGER \(Self.prefix)_update AFTER UPDATE ON \(table) BEGIN
                  DELETE FROM \(shadow) WHERE \(key) = OLD.\(sourceKey);
                \(conflicts)
                  DELETE FROM \(shadow) WHERE \(key) = NEW.\(sourceKey);
                  INSERT OR IGNORE INTO \(shadow) (\(quotedTarget)) VALUES (\(new));
                  INSERT INTO \(Self.logTable) (k) VALUES (OLD.\(sourceKey));
                  INSERT INTO \(Self.logTable) (k) VALUES (NEW.\(sourceKey));
                END;
                CREATE TRIGGER \(Self.prefix)_delete AFTER DELETE ON \(table) BEGIN
                  DELETE FROM \(shadow) WHERE \(key) = OLD.\(sourceKey);
                  INSERT INTO \(Self.logTable) (k) VALUES (OLD.\(sourceKey));
                END;
                """)
        }
    }

    /// Step 2: copies the rows in rowid order, in batches sized to `batchTime`. Returns the rows
    /// copied and the longest batch in milliseconds.
    private func copy(_ db: Connection) throws -> (Int, Double) {
        let total = try db.rowCount(plan.table)
        let sourceKey = quoteIdentifier(plan.sourceKey)
        let key = quoteIdentifier(plan.targetKey)
        // Inclusive rowid ranges, so that the first starts at Int64.min itself; plain range
        // conditions, so that each batch seeks its range of the rowid b-tree (constant work per
        // batch, not a scan from the start).
        let next = "SELECT \(sourceKey) FROM \(table) WHERE \(sourceKey) >= ?1 ORDER BY \(sourceKey) LIMIT 1 OFFSET ?2"
        let insert = """
            INSERT INTO \(shadow) (\(quotedTarget)) SELECT \(quotedSource) FROM \(table)
            WHERE \(sourceKey) >= ?1 AND \(sourceKey) <= ?2
              AND \(sourceKey) NOT IN (SELECT \(key) FROM \(shadow) WHERE \(key) >= ?1 AND \(key) <= ?2)
            """
        var lower = Int64.min
        // Small first, growing 4x a batch while under batchTime: rows may be large.
        var batch = 16
        var copied = 0
        var longest = 0.0
        var first = true
        progress(0, total)
        while true {
            try checkpoint()
            let upper = try db.scalar(next, [.integer(lower), .integer(Int64(batch - 1))]).int ?? Int64.max
            let started = ContinuousClock.now
            do {
                try inWriteTransaction(db) {
                    let before = db.totalChanges
                    try db.rows(insert, [.integer(lower), .integer(upper)]).forEach { _ in }
                    copied += Int(db.totalChanges - before)
                }
            } catch let error as SQLiteError where error.primaryCode == SQLITE_CONSTRAINT {
                throw Failure(.onlineRowRefused, "a row of \(plan.table) with rowid between \(lower) and \(upper) does not fit \(plan.shadow) (\(error.sqliteMessage)), so the rebuild stopped before cutting over; \(plan.table) is as it was",
                              hint: "the offline deploy would fail on it too: fix the migration's constraints or that row")
            }
            let took = (ContinuousClock.now - started)
            longest = max(longest, took.milliseconds)
            progress(min(copied, total), total)
            if first {
                first = false
                try failpoints.hit(.onlineCopy)
            }
            if upper == Int64.max { break }
            lower = upper + 1
            // Aim each batch at batchTime, and leave the application a gap as long as the batch.
            let ratio = batchTime.milliseconds / max(took.milliseconds, 0.1)
            batch = min(200_000, max(1, Int(Double(batch) * min(4, max(0.25, ratio)))))
            Thread.sleep(forTimeInterval: max(0.002, took.milliseconds / 1000))
        }
        debug("online copy: \(copied) rows, longest batch \(String(format: "%.1f", longest)) ms")
        return (copied, longest)
    }

    /// The rows logged by the triggers whose old and new versions differ (present in one table
    /// only, or a copied column not the same), at most `limit` of them.
    /// `within`: only the keys in this range.
    private func differingLogged(_ db: Connection, limit: Int, within range: ClosedRange<Int64> = Int64.min...Int64.max) throws -> [Int64] {
        let sourceKey = quoteIdentifier(plan.sourceKey)
        let key = quoteIdentifier(plan.targetKey)
        let same = zip(plan.sourceColumns, plan.targetColumns).map { "n.\(quoteIdentifier($1)) IS o.\(quoteIdentifier($0))" }.joined(separator: " AND ")
        return try db.rows("""
            SELECT l.k FROM \(Self.logTable) l
            WHERE ((SELECT count(*) FROM \(table) WHERE \(sourceKey) = l.k) <> (SELECT count(*) FROM \(shadow) WHERE \(key) = l.k)
               OR EXISTS (SELECT 1 FROM \(table) o, \(shadow) n WHERE o.\(sourceKey) = l.k AND n.\(key) = l.k AND NOT (\(same))))
              AND l.k >= ?1 AND l.k <= ?2
            LIMIT \(limit)
            """, [.integer(range.lowerBound), .integer(range.upperBound)]).compactMap { $0[0].int }
    }

    /// Compares the rows logged so far, old against new, a few thousand at a time in short
    /// transactions, and clears them, so the cut-over compares only those logged since.
    private func verifyLog(_ db: Connection) throws {
        var lower = Int64.min
        while true {
            try checkpoint()
            var upper: Int64?
            try inWriteTransaction(db) {
                let keys = try db.rows("SELECT k FROM \(Self.logTable) WHERE k >= ? ORDER BY k LIMIT 2000", [.integer(lower)]).compactMap { $0[0].int }
                guard let last = keys.last else { return }
                let bad = try differingLogged(db, limit: 5, within: lower...last)
                guard bad.isEmpty else { throw mismatch(bad) }
                try db.rows("DELETE FROM \(Self.logTable) WHERE k >= ? AND k <= ?", [.integer(lower), .integer(last)]).forEach { _ in }
                upper = last
            }
            guard let upper, upper < Int64.max else { return }
            lower = upper + 1
        }
    }

    private func mismatch(_ keys: [Int64]) -> Failure {
        Failure(.onlineProofFailed, "rows of \(plan.table) changed by the application since the proof's snapshot are not the same in \(plan.shadow) (rowids \(keys.map(String.init).joined(separator: ", "))): the new table's rules (a CHECK, NOT NULL or UNIQUE it adds or compares differently) treat them otherwise, so the rebuild stopped before cutting over; \(plan.table) is as it was",
                hint: "deploy it offline (without --online) at a quiet time, or fix the migration's constraints")
    }

    /// Step 3: the cut-over transaction. Returns the time the write lock was held.
    private func cut(_ db: Connection, record: (Connection) throws -> Void) throws -> Double {
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

    private func updateSchema(_ db: Connection, type: String, name: String, to newName: String, sql: String) throws {
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
    private func prove(reader: Connection) throws -> String {
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
    private static func addedViolations(_ db: Connection, in table: String, beside reference: String) -> [String: Int] {
        let byParent = { (counts: [String: Int]) in
            Dictionary(counts.map { ($0.key.components(separatedBy: " → ").last ?? $0.key, $0.value) }, uniquingKeysWith: +)
        }
        let before = byParent(Planner.foreignKeyViolations(db, table: reference))
        return byParent(Planner.foreignKeyViolations(db, table: table)).filter { $0.value > before[$0.key, default: 0] }
    }

    /// After the commit: the live table and its indexes whole (`integrity_check`, which reads
    /// each index against the rows, not only the b-trees), now under their final definitions.
    /// - Throws: `Failure` `online.integrity_failed` or `online.foreign_keys_dangling`: the deploy is
    ///   then undone like any failure after a commit.
    private func checkAfter(path: String) throws {
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

    /// Runs `body` in a `BEGIN IMMEDIATE` transaction, waiting for the application's write lock
    /// in short tries (it holds it briefly) up to `giveUpAfter` in all.
    private func inWriteTransaction(_ db: Connection, _ body: () throws -> Void) throws {
        let deadline = ContinuousClock.now + giveUpAfter
        while true {
            do {
                try db.execute("BEGIN IMMEDIATE")
                break
            } catch let error as SQLiteError where error.kind == .temporary && ContinuousClock.now < deadline {
                try checkpoint()
                Thread.sleep(forTimeInterval: 0.01)
            } catch let error as SQLiteError where error.kind == .temporary {
                throw Failure(.onlineLockTimeout, "the application held the write lock without a gap for \(Int(giveUpAfter.milliseconds / 1000)) s; the online rebuild of \(plan.table) gave up before its cut-over; \(plan.table) is as it was",
                              hint: "deploy again at a quieter time, or allow a longer wait with database.online_lock_wait_seconds in instance.toml")
            }
        }
        do {
            try body()
            try db.execute("COMMIT")
        } catch {
            if db.inTransaction { try? db.execute("ROLLBACK") }
            throw error
        }
    }

    /// The table an online rebuild left its shadow table and triggers on (a run killed, or
    /// whose clean-up could not write), or nil.
    public static func leftover(_ db: Connection) -> String? {
        guard (try? db.scalar("SELECT count(*) FROM sqlite_schema WHERE name = ?", [.text(stateTable)]).int) == 1 else { return nil }
        return (try? db.scalar("SELECT source FROM \(stateTable)").string) ?? "a table"
    }

    /// Removes what an online rebuild left on the database at `path`: before its cut-over, the
    /// shadow table, triggers and log (the live table was never changed); after it, the old
    /// table renamed aside. Returns what was done, or nil when there was nothing.
    /// - Throws: `SQLiteError` (a lock held past `busyTimeout`).
    public static func cleanUp(path: String, busyTimeout: Duration, debug: @Sendable (String) -> Void = { _ in }) throws -> String? {
        let db = try Connection(path: path, mode: .readWrite, busyTimeout: busyTimeout)
        guard try db.scalar("SELECT count(*) FROM sqlite_schema WHERE name = ?", [.text(stateTable)]).int == 1 else { return nil }
        let state = try db.rows("SELECT shadow, source FROM \(stateTable)").first
        if try db.scalar("SELECT count(*) FROM sqlite_schema WHERE name = ?", [.text(oldTable)]).int == 1 {
            try freeOld(path: path, busyTimeout: busyTimeout, debug: debug)
            return "the old table of an online rebuild of \(state?[1].string ?? "?") that had cut over was freed"
        }
        let shadow = state?[0].string
        try transaction(db) {
            for row in try db.rows("SELECT name FROM sqlite_schema WHERE type = 'trigger' AND name LIKE '\(prefix)%'") {
                try db.execute("DROP TRIGGER \(quoteIdentifier(row[0].string ?? ""))")
            }
        }
        if let shadow { try empty(db, shadow) }
        try dropRemains(db, [shadow].compactMap { $0 } + [logTable, stateTable])
        return "the shadow table \(shadow ?? "?"), triggers and log of an online rebuild of \(state?[1].string ?? "?") that did not cut over were removed; \(state?[1].string ?? "the table") is as it was"
    }

    /// Step 5: empties the old table renamed aside in short batches, then drops it with the log
    /// and the state table.
    static func freeOld(path: String, busyTimeout: Duration, debug: @Sendable (String) -> Void) throws {
        let db = try Connection(path: path, mode: .readWrite, busyTimeout: busyTimeout)
        if try db.scalar("SELECT count(*) FROM sqlite_schema WHERE name = ?", [.text(oldTable)]).int == 1 { try empty(db, oldTable) }
        try dropRemains(db, [oldTable, logTable, stateTable])
        debug("online rebuild: old table freed")
    }

    /// Drops `tables` (emptied already, so each drop frees few pages) in one transaction.
    private static func dropRemains(_ db: Connection, _ tables: [String]) throws {
        try transaction(db) { for table in tables { try db.execute("DROP TABLE IF EXISTS \(quoteIdentifier(table))") } }
    }

    /// Runs `body` in one `BEGIN IMMEDIATE` transaction: committed, or rolled back and rethrown.
    private static func transaction(_ db: Connection, _ body: () throws -> Void) throws {
        try db.execute("BEGIN IMMEDIATE")
        do {
            try body()
            try db.execute("COMMIT")
        } catch {
            try? db.execute("ROLLBACK")
            throw error
        }
    }

    /// Reads pages through a memory map: the copy's index inserts and the batched deletes touch
    /// pages all over the b-trees, which SQLite's 2,000-page cache would otherwise read again and
    /// again with `pread` (1M rows: 48 s, most of it in the kernel). Mapped pages are the
    /// operating system's file cache, not this process's memory.
    static func readThroughMap(_ db: Connection) throws {
        try db.execute("PRAGMA mmap_size = 17179869184")
    }

    /// Deletes every row of `table` in short transactions (a DROP of a large table would hold the
    /// write lock while it frees every page).
    private static func empty(_ db: Connection, _ table: String) throws {
        let quoted = quoteIdentifier(table)
        try readThroughMap(db)
        try db.execute("PRAGMA synchronous = NORMAL")
        defer { try? db.execute("PRAGMA synchronous = FULL") }
        var batch = 16
        while true {
            let started = ContinuousClock.now
            var deleted: Int64 = 0
            try transaction(db) {
                let before = db.totalChanges
                try db.execute("DELETE FROM \(quoted) WHERE rowid IN (SELECT rowid FROM \(quoted) LIMIT \(batch))")
                deleted = db.totalChanges - before
            }
            if deleted == 0 { return }
            // About 40 ms a batch, and as long a gap for the application.
            let took = (ContinuousClock.now - started).milliseconds
            batch = min(100_000, max(1, Int(Double(batch) * min(4, max(0.25, 40 / max(took, 0.1))))))
            Thread.sleep(forTimeInterval: max(0.002, took / 1000))
        }
    }
}
