import CSQLite
import Foundation
import SQLite
import Support

/// Runs an `OnlineRebuildPlan` on the live database while the application writes, holding the
/// write lock only for short transactions (pt-online-schema-change's method, with SQLite's
/// triggers):
///
/// 1. Set-up, one short transaction: the new table (the shadow, under the migration's own name)
///    with its indexes under temporary names, a change log, and triggers on the old table that
///    mirror every INSERT/UPDATE/DELETE into the shadow and log the rowid they touched.
/// 2. Copy, in batches of about `batchTime` (40 ms) each (the batch size adapts), with a pause as long
///    as the batch after each so the application always finds gaps; busy waits are bounded by
///    `giveUpAfter`. Logged rows are then compared, old against new, and cleared.
/// 3. Cut-over, one transaction: the rows logged since are compared; the triggers dropped; with
///    `legacy_alter_table` on (so that other tables' foreign keys, views and triggers keep naming
///    the table, as after the offline DROP + RENAME), the old table is renamed aside and the
///    shadow into place; the indexes take their final names and the exact text the offline
///    migration gives them (sqlite.org's documented `writable_schema` edit, with the schema
///    version bumped); the history row is written. Its cost does not grow with the rows.
/// 4. The proof, outside the lock, on a read snapshot taken inside the cut-over before its commit
///    (the old table and the shadow, in step): every copied column of every row equal (row counts
///    and order-independent fingerprints), then `quick_check` of the table and no new foreign-key
///    violation. A failed proof throws after the commit: the deploy is undone like any other.
/// 5. The old table is emptied in short batches and dropped.
///
/// Any failure before the cut-over commits removes the shadow, triggers and log (the live table
/// was never changed); a crash leaves them for `cleanUp`, which the next deploy runs first.
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
    /// journals it), before the proof.
    /// - Throws: before the cut-over commits, any error after removing what it created (the live
    ///   table as it was); after it, a `Failure` `.failed` when the proof fails.
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
        let violationsBefore = Planner.foreignKeyViolations(db)
        var longest = 0.0
        var copied = 0
        let proofReader: Connection
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
            try verifyLog(db)
            step("comparison of the logged rows")
            try checkpoint()
            try db.execute("PRAGMA synchronous = FULL")
            (proofReader, cutOver) = try cut(db, path: path, record: record)
            step("cut-over")
        } catch {
            db.stopWhen(nil)
            if db.inTransaction { try? db.execute("ROLLBACK") }
            do {
                _ = try Self.cleanUp(path: path, busyTimeout: busyTimeout)
            } catch let cleanUpError {
                // Said, not hidden: the triggers stay on the live table until the next deploy.
                let kind = (error as? DeployctlError)?.kind ?? .failed
                throw Failure(kind, "\((error as? DeployctlError)?.message ?? "\(error)"); its shadow table \(plan.shadow) and the triggers on \(plan.table) could not be removed yet (\(cleanUpError)): the next deploy removes them first",
                              hint: (error as? DeployctlError)?.hint ?? "run the deploy again when the application leaves the write lock free")
            }
            throw error
        }
        try committed()
        let proof = try prove(reader: proofReader, path: path, violationsBefore: violationsBefore)
        step("proof")
        try Self.freeOld(path: path, busyTimeout: busyTimeout, debug: debug)
        step("freeing the old table")
        return Outcome(cutOverMilliseconds: cutOver, longestBatchMilliseconds: longest, rowsCopied: copied, proof: proof)
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
            for (position, statement) in plan.indexStatements.enumerated() {
                guard let parts = Shape.match(OnlineRebuildPlan.clean(statement), #"^CREATE (UNIQUE )?INDEX (?:IF NOT EXISTS )?\#(Shape.name) ON \#(Shape.name) ?(\(.*)$"#) else {
                    throw Failure(.failed, "cannot read the index statement \(statement)")
                }
                try db.execute("CREATE \(parts[0])INDEX \(quoteIdentifier(temporaryIndexName(position))) ON \(shadow) \(parts[1])")
            }
            try db.execute("CREATE TABLE \(Self.logTable) (k INTEGER PRIMARY KEY)")
            let new = plan.sourceColumns.map { "NEW.\(quoteIdentifier($0))" }.joined(separator: ", ")
            let key = quoteIdentifier(plan.targetKey)
            let sourceKey = quoteIdentifier(plan.sourceKey)
            // OR IGNORE: a row the new table refuses never fails the application's write; the
            // logged key then differs at the comparison and the rebuild stops before cutting over.
            try db.execute("""
                CREATE TRIGGER \(Self.prefix)_insert AFTER INSERT ON \(table) BEGIN
                  DELETE FROM \(shadow) WHERE \(key) = NEW.\(sourceKey);
                  INSERT OR IGNORE INTO \(shadow) (\(quotedTarget)) VALUES (\(new));
                  INSERT OR IGNORE INTO \(Self.logTable) (k) VALUES (NEW.\(sourceKey));
                END;
                CREATE TRIGGER \(Self.prefix)_update AFTER UPDATE ON \(table) BEGIN
                  DELETE FROM \(shadow) WHERE \(key) = OLD.\(sourceKey);
                  DELETE FROM \(shadow) WHERE \(key) = NEW.\(sourceKey);
                  INSERT OR IGNORE INTO \(shadow) (\(quotedTarget)) VALUES (\(new));
                  INSERT OR IGNORE INTO \(Self.logTable) (k) VALUES (OLD.\(sourceKey));
                  INSERT OR IGNORE INTO \(Self.logTable) (k) VALUES (NEW.\(sourceKey));
                END;
                CREATE TRIGGER \(Self.prefix)_delete AFTER DELETE ON \(table) BEGIN
                  DELETE FROM \(shadow) WHERE \(key) = OLD.\(sourceKey);
                  INSERT OR IGNORE INTO \(Self.logTable) (k) VALUES (OLD.\(sourceKey));
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
        var batch = 1_000
        var copied = 0
        var longest = 0.0
        var first = true
        progress(0, total)
        while true {
            try checkpoint()
            let upper = try db.scalar(next, [.integer(lower), .integer(Int64(batch - 1))]).int ?? Int64.max
            let started = ContinuousClock.now
            try inWriteTransaction(db) {
                let before = db.totalChanges
                try db.rows(insert, [.integer(lower), .integer(upper)]).forEach { _ in }
                copied += Int(db.totalChanges - before)
            }
            let took = (ContinuousClock.now - started)
            longest = max(longest, took.milliseconds)
            progress(min(copied, total), total)
            if first {
                first = false
                try failpoints.hit("online-copy")
            }
            if upper == Int64.max { break }
            lower = upper + 1
            // Aim each batch at batchTime, and leave the application a gap as long as the batch.
            let ratio = batchTime.milliseconds / max(took.milliseconds, 0.1)
            batch = min(200_000, max(100, Int(Double(batch) * min(4, max(0.25, ratio)))))
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
        Failure(.failed, "the application wrote rows of \(plan.table) that \(plan.shadow) does not hold as they are (rowids \(keys.map(String.init).joined(separator: ", "))): the new table refuses them (a constraint it adds), so the rebuild stopped before cutting over; \(plan.table) is as it was",
                hint: "deploy it offline (without --online) at a quiet time, or fix the migration's constraints")
    }

    /// Step 3: the cut-over transaction. Returns the proof's reader (a snapshot from just before
    /// the commit) and the time the write lock was held.
    private func cut(_ db: Connection, path: String, record: (Connection) throws -> Void) throws -> (Connection, Double) {
        let reader = try Connection(path: path, mode: .inspect)
        var held = 0.0
        try inWriteTransaction(db) {
            let locked = ContinuousClock.now
            let bad = try differingLogged(db, limit: 5)
            guard bad.isEmpty else { throw mismatch(bad) }
            try failpoints.hit("cut-over")
            for trigger in ["insert", "update", "delete"] { try db.execute("DROP TRIGGER \(Self.prefix)_\(trigger)") }
            // The snapshot the proof reads: the old table and the shadow, in step, as committed.
            try reader.execute("BEGIN")
            _ = try reader.scalar("SELECT count(*) FROM \(table)")
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
                    throw Failure(.failed, "cannot read the index \(name) of \(plan.table)")
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
                throw Failure(.failed, "after the cut-over \(plan.table)'s definition is not the migration's; rolled back, \(plan.table) is as it was")
            }
            try record(db)
            held = (ContinuousClock.now - locked).milliseconds
        }
        return (reader, held)
    }

    private func updateSchema(_ db: Connection, type: String, name: String, to newName: String, sql: String) throws {
        let before = db.totalChanges
        try db.rows("UPDATE sqlite_schema SET name = ?, sql = ? WHERE type = ? AND name = ?",
                    [.text(newName), .text(sql), .text(type), .text(name)]).forEach { _ in }
        guard db.totalChanges - before == 1 else { throw Failure(.failed, "the \(type) \(name) was not found at the cut-over") }
    }

    /// Step 4: the old table's copied columns against the new table's, on the snapshot from
    /// before the commit; then the live table's `quick_check` and foreign keys.
    private func prove(reader: Connection, path: String, violationsBefore: [String: Int]) throws -> String {
        let old = try reader.fingerprint(table: plan.table, columns: plan.sourceColumns)
        let new = try reader.fingerprint(table: plan.shadow, columns: plan.targetColumns)
        try? reader.execute("COMMIT")
        guard old.rows == new.rows, old.sha256 == new.sha256 else {
            throw Failure(.failed, "the online rebuild's proof failed: at the cut-over \(plan.shadow) held \(old.rows == new.rows ? "other values than" : "\(new.rows) rows against \(old.rows) in") \(plan.table)")
        }
        let live = try Connection(path: path, mode: .inspect)
        let problems = try live.integrityProblems(table: plan.table)
        guard problems.isEmpty else { throw Failure(.failed, "quick_check(\(plan.table)) after the online rebuild: \(problems.joined(separator: "; "))") }
        let added = Planner.foreignKeyViolations(live).filter { $0.value > violationsBefore[$0.key, default: 0] }
        guard added.isEmpty else { throw Failure(.failed, "the online rebuild left foreign keys pointing nowhere: \(added.keys.sorted().joined(separator: ", "))") }
        return "\(counted(old.rows, "row")) of \(plan.table) equal, column for column, to the rows before the cut-over (fingerprints on one snapshot); quick_check and foreign keys clean"
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
                throw Failure(.temporary, "the application held the write lock without a gap for \(Int(giveUpAfter.milliseconds / 1000)) s; the online rebuild of \(plan.table) gave up before its cut-over; \(plan.table) is as it was",
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
        var batch = 2_000
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
            batch = min(100_000, max(200, Int(Double(batch) * min(4, max(0.25, 40 / max(took, 0.1))))))
            Thread.sleep(forTimeInterval: max(0.002, took / 1000))
        }
    }
}
