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
    func snapshotInStep(_ db: Connection) throws -> Connection {
        let reader = try Connection(path: db.path, mode: .inspect)
        try inWriteTransaction(db) {
            try reader.execute("BEGIN")
            _ = try reader.scalar("SELECT count(*) FROM \(table)")
            try db.execute("DELETE FROM \(Self.logTable)")
        }
        return reader
    }

    var quotedSource: String { plan.sourceColumns.map(quoteIdentifier).joined(separator: ", ") }
    var quotedTarget: String { plan.targetColumns.map(quoteIdentifier).joined(separator: ", ") }
    var table: String { quoteIdentifier(plan.table) }
    var shadow: String { quoteIdentifier(plan.shadow) }

    func temporaryIndexName(_ position: Int) -> String { "\(Self.prefix)_index_\(position + 1)" }

    /// Step 1: shadow table, its indexes under temporary names, log, state and triggers.
    func setUp(_ db: Connection) throws {
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

    /// Runs `body` in a `BEGIN IMMEDIATE` transaction, waiting for the application's write lock
    /// in short tries (it holds it briefly) up to `giveUpAfter` in all.
    func inWriteTransaction(_ db: Connection, _ body: () throws -> Void) throws {
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
}
