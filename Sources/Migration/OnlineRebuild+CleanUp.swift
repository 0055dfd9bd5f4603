import Foundation
import SQLite
import Support

extension OnlineRebuild {
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
    static func dropRemains(_ db: Connection, _ tables: [String]) throws {
        try transaction(db) { for table in tables { try db.execute("DROP TABLE IF EXISTS \(quoteIdentifier(table))") } }
    }

    /// Runs `body` in one `BEGIN IMMEDIATE` transaction: committed, or rolled back and rethrown.
    static func transaction(_ db: Connection, _ body: () throws -> Void) throws {
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
    static func empty(_ db: Connection, _ table: String) throws {
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
