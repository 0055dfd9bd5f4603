import Foundation
import SQLite
import Support

/// A restore that rewrites only the rows that differ (SPEC, Restore: "a page copy of the
/// differing pages inside one write transaction"; this libsqlite3 has no `sqlite_dbpage` to
/// write pages, so the differing rows are written instead).
///
/// Through the backup API a restore writes every page of the backup into the WAL under the
/// write lock: at 1 GiB that blocks the application's writes for seconds, however little
/// differs. This path does the long work before the lock, in one read transaction of the live
/// database (snapshot S): the `pre_restore` copy is taken of S, and the preview's page
/// comparison (made in S, when no commit fell between them) names every row that differs.
/// Then the same transaction becomes the write transaction, which SQLite allows only when no
/// other connection committed since S (else `SQLITE_BUSY_SNAPSHOT`, and the page copy runs as
/// before): the saved copy is exactly the state replaced. Under the lock only the differing
/// rows are deleted and inserted from the backup (triggers off for this connection, foreign
/// keys off, `OR ABORT` overriding any `ON CONFLICT REPLACE`), plus the small internal tables
/// (`sqlite_sequence`, `sqlite_stat1`, `sqlite_stat4`) and the header's `user_version` and
/// `application_id`; then one commit.
///
/// The proof, in the first read transaction after the commit: the rewritten rows and the
/// internal tables equal the backup's (values, types and bytes of text), and the schema is the
/// backup's. Every other row was proven equal in S by the page comparison, and no statement
/// of this restore reached it: the preupdate hook, which sees every row change (a trigger's or
/// a foreign-key action's too), counted exactly the rows of the restore's own statements, else
/// the transaction is rolled back and the page copy runs. The pages differ from the backup's
/// (another b-tree layout), so equality is proven row by row, not page by page.
extension Restorer {
    /// When the row path is used: a database this large (below it a page copy is quick, and
    /// it proves the pages), and at most one row to rewrite per 16 KiB of database, at most
    /// `rowRestoreMaximumRows`: a rewrite costs about 40-75 µs a row under the write lock, a
    /// page copy about 3.5 s per GiB, so past that the page copy blocks writes no longer.
    public static let rowRestoreMinimumBytes: Int64 = 64 << 20
    public static let rowRestoreMaximumRows = 100_000

    /// The most rows a row restore rewrites in a database of `bytes`.
    static func rowRestoreLimit(bytes: Int64) -> Int { min(rowRestoreMaximumRows, Int(bytes / 16384)) }

    /// The internal tables a row restore copies whole (they are small, and a rewrite of an
    /// AUTOINCREMENT table's rows may move `sqlite_sequence`).
    static let internalTables = ["sqlite_sequence", "sqlite_stat1", "sqlite_stat4"]

    /// Tries the row path (see the type's notes). Returns nil, having changed and left nothing,
    /// when it does not apply: not WAL, schema or page size different from the backup's, a
    /// commit since the preview, or the write lock not to be had at once.
    /// - Throws: as `restore(_:intoLive:…)`; a throw from `beforeCommit` aborts.
    func restoreByRows(_ backup: OpenedBackup, intoLive live: Connection, keys: [String: [Int64]], previewVersion: UInt32,
                       saving request: SnapshotRequest, in store: BackupStore, progress: @escaping ProgressHandler,
                       stop: (@Sendable () -> Bool)?, beforeCommit: () throws -> Void) throws -> LiveResult? {
        guard try live.readFileBytes(at: 18, count: 2).first == 2 else { return nil }
        try live.execute("ATTACH DATABASE \(sqlLiteral(Connection.uri(backup.databasePath, query: "immutable=1"))) AS restore_source")
        defer { try? live.execute("DETACH DATABASE restore_source") }
        guard try Self.sameShape(live) else { return nil }
        guard let shapes = try Self.rowShapes(live, tables: Array(keys.keys)) else { return nil }
        let internals = try Self.internalTables.filter { try live.scalar("SELECT count(*) FROM main.sqlite_schema WHERE type = 'table' AND name = ?", [.text($0)]).int == 1 }
        let putBackSettings = try Self.suspendTriggersAndForeignKeys(live)
        defer { putBackSettings() }

        try live.execute("BEGIN")
        var published: BackupEntry?
        var committed = false
        defer {
            if !committed {
                try? live.execute("ROLLBACK")
                if let published { try? store.remove([published]) }
            }
            try? live.execute("DROP TABLE IF EXISTS temp.deployctl_restore_keys")
        }
        _ = try live.scalar("SELECT count(*) FROM main.sqlite_schema")
        guard live.dataVersion == previewVersion else { return nil }
        let tables = keys.keys.sorted()
        try Self.stageKeys(live, keys, tables: tables)

        progress(.working(.savingPreRestore))
        let (copied, check) = try savePreRestore(live, checking: tables, saving: request, in: store, progress: progress, stop: stop)
        // A copy saved is removed (the defer) when the check failed; the copy's failure first.
        published = try? copied.get()
        let saved = try copied.get()
        guard try !check.get() else { return nil }

        guard try Self.takeWriteLockAtOnce(live) else { return nil }
        let locked = ContinuousClock.now
        progress(.working(.restoringPages))
        // A signal stops the rewrite (SQLite's progress handler): rolled back, nothing changed.
        live.stopWhen(stop)
        defer { live.stopWhen(nil) }
        guard try Self.rewriteRows(live, tables: tables, shapes: shapes, internals: internals) else { return nil }
        live.stopWhen(nil)
        // The last point a failpoint or an interrupt can stop it: just before the commit.
        try beforeCommit()
        do {
            try live.execute("COMMIT")
        } catch let error as DeployctlError {
            if live.inTransaction { try? live.execute("ROLLBACK") }
            committed = true  // Rolled back here; the saved copy is removed by the check below.
            throw rolledBack(error, live: live, saved: saved, store: store)
        }
        committed = true
        let blocked = ContinuousClock.now - locked
        progress(.working(.provingRestore))
        let proof = try proveRows(live, tables: tables, keys: keys, internals: internals)
        progress(.ended(announce: true))
        return LiveResult(saved: saved, previewExact: true, writeLockMilliseconds: blocked.milliseconds, proof: proof)
    }

    /// Turns triggers and foreign keys off for the rewrite (its statements must change exactly
    /// their own rows); returns what turns them back as they were.
    private static func suspendTriggersAndForeignKeys(_ live: Connection) throws -> () -> Void {
        let foreignKeys = try live.scalar("PRAGMA foreign_keys").int == 1
        if foreignKeys { try live.execute("PRAGMA foreign_keys = OFF") }
        try live.setTriggersEnabled(false)
        return {
            try? live.setTriggersEnabled(true)
            if foreignKeys { try? live.execute("PRAGMA foreign_keys = ON") }
        }
    }

    /// The write lock, without waiting: SQLite upgrades this read transaction only if nobody
    /// committed since it began (the first write is the backup's user_version). False when
    /// another connection holds or took it.
    private static func takeWriteLockAtOnce(_ live: Connection) throws -> Bool {
        let userVersion = try live.scalar("PRAGMA restore_source.user_version").int ?? 0
        do {
            try live.withoutWaitingForLocks { try live.execute("PRAGMA main.user_version = \(userVersion)") }
            return true
        } catch let error as SQLiteError where error.kind == .temporary {
            return false
        }
    }

    /// Each table's columns but generated ones, and its INTEGER PRIMARY KEY (the rowid's
    /// alias: the preview only names rows of such tables); nil when a table has none. Rows are
    /// chosen by that column, never by the word `rowid`, which a column of that name would shadow.
    private static func rowShapes(_ live: Connection, tables: [String]) throws -> [String: (columns: [String], key: String)]? {
        var shapes = [String: (columns: [String], key: String)]()
        for table in tables {
            let columns = try live.rows("SELECT name FROM pragma_table_xinfo(?, 'main') WHERE hidden = 0", [.text(table)]).compactMap { $0[0].string }
            guard try live.rowidIsPrimaryKey(table: table, database: "main"),
                  let key = try live.scalar("SELECT name FROM pragma_table_info(?, 'main') WHERE pk = 1", [.text(table)]).string else { return nil }
            shapes[table] = (columns, key)
        }
        return shapes
    }

    /// Puts the keys into a temp table (`t` the table's number in `tables`, `k` the key):
    /// writing `temp` takes no lock on the live database.
    private static func stageKeys(_ live: Connection, _ keys: [String: [Int64]], tables: [String]) throws {
        try live.execute("CREATE TEMP TABLE deployctl_restore_keys (t INTEGER, k INTEGER, PRIMARY KEY (t, k)) WITHOUT ROWID")
        let insertKey = try live.prepare("INSERT INTO temp.deployctl_restore_keys VALUES (?, ?)")
        for (number, table) in tables.enumerated() {
            for key in keys[table]! {
                try insertKey.bind([.integer(Int64(number)), .integer(key)])
                _ = try insertKey.step()
                try insertKey.reset()
            }
        }
    }

    /// Saves the live state (this read transaction's) as the `pre_restore` copy and, beside
    /// it on the other core, runs `integrity_check` on the tables to be rewritten on a second
    /// connection (the same state: nobody committed since the preview, checked again when the
    /// lock is taken): rewriting rows keeps a damaged index damaged, where the page copy sets it
    /// right. Returns how each ended: the copy, and whether a table is damaged. `stop` is asked
    /// between steps of the copy (2048 pages each): an interrupt stops it within a second.
    private func savePreRestore(_ live: Connection, checking tables: [String], saving request: SnapshotRequest, in store: BackupStore,
                                progress: @escaping ProgressHandler, stop: (@Sendable () -> Bool)?)
        throws -> (copy: Result<BackupEntry, any Error>, damaged: Result<Bool, any Error>) {
        live.stopWhen(stop)
        defer { live.stopWhen(nil) }
        let (livePath, timeout) = (live.path, busyTimeout)
        return try Parallel.both({
            Result {
                try Snapshotter(store: store).snapshot(request, progress: progress) { path in
                    defer { live.stopWhen(nil) }
                    return try live.copy(into: path, timeout: timeout, durable: true)
                }
            }
        }, elsewhere: {
            Result {
                let checker = try Connection(path: livePath, mode: .inspect, busyTimeout: timeout)
                try checker.useMemoryMappedReads()
                return try tables.contains { try !checker.integrityProblems(full: true, table: $0).isEmpty }
            }
        })
    }

    /// Rewrites the chosen rows of each table from the backup, then the internal tables whole
    /// and the application id, inside the caller's write transaction. False (give up, the
    /// caller rolls back) when any table changed by other rows than its own statements' (the
    /// preupdate hook sees triggers' and foreign-key actions' changes too) or SQLite refused a
    /// statement (a damaged page the check did not reach: the page copy sets it right).
    /// - Throws: a full disk (rolled back: said so); an interrupt.
    private static func rewriteRows(_ live: Connection, tables: [String], shapes: [String: (columns: [String], key: String)],
                                    internals: [String]) throws -> Bool {
        do {
            let recorder = try RowChangeRecorder(live)
            var expected = [String: Int]()
            for (number, table) in tables.enumerated() {
                let q = quoteIdentifier(table)
                let list = shapes[table]!.columns.map(quoteIdentifier).joined(separator: ", ")
                let chosen = "\(quoteIdentifier(shapes[table]!.key)) IN (SELECT k FROM temp.deployctl_restore_keys WHERE t = \(number))"
                let before = live.totalChanges
                try live.execute("DELETE FROM main.\(q) WHERE \(chosen)")
                try live.execute("INSERT OR ABORT INTO main.\(q) (\(list)) SELECT \(list) FROM restore_source.\(q) WHERE \(chosen)")
                expected["main." + table] = Int(live.totalChanges - before)
            }
            let seen = recorder.stop().filter { !internals.contains(String($0.key.dropFirst(5))) && $0.value > 0 }
            guard seen == expected.filter({ $0.value > 0 }) else { return false }
            for table in internals {
                try live.execute("DELETE FROM main.\(table)")
                try live.execute("INSERT INTO main.\(table) SELECT * FROM restore_source.\(table)")
            }
            let applicationId = try live.scalar("PRAGMA restore_source.application_id").int ?? 0
            try live.execute("PRAGMA main.application_id = \(applicationId)")
            return true
        } catch let error as SQLiteError where !error.interrupted {
            guard error.kind == .io else { return false }
            throw Failure(error.code, "\(error.message)\nThe restore was rolled back: the live database is as it was.", hint: error.hint)
        }
    }

    /// Whether the live database and the attached backup have the same schema (every
    /// `sqlite_schema` row but the root pages), page size and text encoding.
    static func sameShape(_ live: Connection) throws -> Bool {
        guard try schemaRows(live, "main") == schemaRows(live, "restore_source") else { return false }
        return try live.scalar("PRAGMA main.page_size") == live.scalar("PRAGMA restore_source.page_size")
    }

    /// Every `sqlite_schema` row of `database` but its root page (copies of equal content may
    /// keep a table in other pages).
    static func schemaRows(_ db: Connection, _ database: String) throws -> [[Value]] {
        try db.rows("SELECT type, name, tbl_name, sql FROM \(database).sqlite_schema ORDER BY type, name")
    }

    /// The header's `user_version` and `application_id` of `database`.
    static func versionRows(_ db: Connection, _ database: String) throws -> [[Value]] {
        try db.rows("PRAGMA \(database).user_version") + db.rows("PRAGMA \(database).application_id")
    }

    /// The proof after a row restore, in the first read transaction after its commit (see the
    /// type's notes): `.rows` when every rewritten row (value by value, reals bit for bit, text
    /// and blobs byte for byte), the internal tables and the schema equal the backup's;
    /// `.overtaken` when they do not and another connection committed since.
    private func proveRows(_ live: Connection, tables: [String], keys: [String: [Int64]], internals: [String]) throws -> Proof {
        let committed = live.dataVersion
        try live.execute("BEGIN")
        defer { try? live.execute("COMMIT") }
        _ = try live.scalar("SELECT count(*) FROM main.sqlite_schema")
        let overtaken = live.dataVersion != committed
        var wrong = 0
        for table in tables {
            wrong += try live.differingRows(table: table, first: "main", second: "restore_source", rowids: keys[table]!)
        }
        for table in internals {
            // Small tables without a key: compared whole, each value with its type.
            let names = try live.rows("SELECT name FROM pragma_table_info(?, 'main')", [.text(table)]).compactMap { $0[0].string }
            let list = names.map { "\(quoteIdentifier($0)) COLLATE BINARY, typeof(\(quoteIdentifier($0)))" }.joined(separator: ", ")
            let side = { (database: String) in "SELECT \(list) FROM \(database).\(table)" }
            wrong += Int(try live.scalar("SELECT count(*) FROM (\(side("main")) EXCEPT \(side("restore_source")))").int ?? 0)
            wrong += Int(try live.scalar("SELECT count(*) FROM (\(side("restore_source")) EXCEPT \(side("main")))").int ?? 0)
        }
        if wrong == 0, try Self.versionRows(live, "main") == Self.versionRows(live, "restore_source"), try Self.sameShape(live) { return .rows(rows: keys.values.reduce(0) { $0 + $1.count }, tables: tables.count) }
        return overtaken ? .overtaken : .rowsDiffer(rows: wrong)
    }
}
