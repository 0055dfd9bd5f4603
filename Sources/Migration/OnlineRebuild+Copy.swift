import CSQLite
import Foundation
import SQLite
import Support

extension OnlineRebuild {
    /// Step 2: copies the rows in rowid order, in batches sized to `batchTime`. Returns the rows
    /// copied and the longest batch in milliseconds.
    func copy(_ db: Connection) throws -> (Int, Double) {
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
    func differingLogged(_ db: Connection, limit: Int, within range: ClosedRange<Int64> = Int64.min...Int64.max) throws -> [Int64] {
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
    func verifyLog(_ db: Connection) throws {
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

    func mismatch(_ keys: [Int64]) -> Failure {
        Failure(.onlineProofFailed, "rows of \(plan.table) changed by the application since the proof's snapshot are not the same in \(plan.shadow) (rowids \(keys.map(String.init).joined(separator: ", "))): the new table's rules (a CHECK, NOT NULL or UNIQUE it adds or compares differently) treat them otherwise, so the rebuild stopped before cutting over; \(plan.table) is as it was",
                hint: "deploy it offline (without --online) at a quiet time, or fix the migration's constraints")
    }
}
