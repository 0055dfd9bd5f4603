import Dispatch
import Foundation
import SQLite
import Support

/// How one table differs between the live database and a backup.
public struct TableDifference: Codable, Sendable, Equatable {
    public let table: String
    /// Rows in the live table (nil when the table exists only in the backup).
    public let liveRows: Int?
    /// Rows in the backup's table (nil when the table exists only in the live database).
    public let backupRows: Int?
    /// Distinct live rows the backup does not hold: what a restore discards.
    public let discarded: Int
    /// Distinct backup rows the live table does not hold: what a restore brings back.
    public let restored: Int

    enum CodingKeys: String, CodingKey {
        case table, discarded, restored
        case liveRows = "live_rows"
        case backupRows = "backup_rows"
    }
}

extension [TableDifference] {
    /// Rows a restore discards, summed over tables.
    public var discardedRows: Int { reduce(0) { $0 + $1.discarded } }
}

/// A table of either side the preview could not compare row by row, and why.
public struct NotCompared: Codable, Sendable, Equatable {
    public let table: String
    public let reason: String
}

/// Restores backups through SQLite's backup API: into the live database (one write
/// transaction, inside a critical section that first saves the live state), into a new file,
/// or over a missing or unreadable live database.
public struct Restorer: Sendable {
    public let busyTimeout: Duration
    /// How many differing rows a comparison keeps digests of (`Connection.rowDigestBudget`);
    /// past it the tables are merged row by row from SQL, in flat memory.
    public let rowDigestBudget: Int

    /// The smallest live database a restore into it rewrites by rows when it can
    /// (`restoreByRows`); nil: always through the backup API.
    public let rowRestoreMinimumBytes: Int64?

    public init(busyTimeout: Duration, rowDigestBudget: Int = Connection.rowDigestBudget,
                rowRestoreMinimumBytes: Int64? = Restorer.rowRestoreMinimumBytes) {
        self.busyTimeout = busyTimeout
        self.rowDigestBudget = rowDigestBudget
        self.rowRestoreMinimumBytes = rowRestoreMinimumBytes
    }

    /// The comparison of a database with a backup: what a restore discards and brings back.
    public struct Comparison: Sendable {
        public let differences: [TableDifference]
        /// Rows the restore discards, summed over tables.
        public var discardedRows: Int { differences.discardedRows }
        /// Tables whose rows could not be compared (virtual tables of unknown modules,
        /// contentless full-text tables) and shadow tables, compared through their virtual table.
        public let notCompared: [NotCompared]
        /// The rowids of every row that differs, per table, when each differing table was
        /// compared leaf by leaf (`changedRows`) and every other table's pages were identical:
        /// rewriting just these rows gives the backup's content (`restoreByRows`). Nil otherwise.
        public let rowKeys: [String: [Int64]]?
        /// Whether the live database already holds the backup's content: every table's rows
        /// compared and equal, the schema and the header's versions the same.
        public var holdsBackup = false
    }

    /// Compares every table of `live` (the live database, or a `pre_restore` copy opened
    /// immutable) with the backup. Reads only, in one read transaction on `live`.
    ///
    /// First every page is compared with the backup's (`comparePages`, about the cost of a
    /// copy). A table none of whose pages differ (SQLite's `dbstat` lists them), with the same
    /// root page and definition on both sides, holds the same rows: only its rows are counted.
    /// The other tables get fingerprints on both sides (two cores at once), and row-set
    /// differences when those differ. A virtual table owns no pages: it is unchanged when all
    /// its shadow tables are, else its rows are compared through the module (FTS3/4/5 with
    /// content, R*Tree); other modules are reported as not compared, never as a false 0.
    /// - Throws: `SQLiteError`.
    public func compare(_ live: Connection, backup: OpenedBackup) throws -> Comparison {
        try live.execute("ATTACH DATABASE \(sqlLiteral(Connection.uri(backup.databasePath, query: "immutable=1"))) AS restore_source")
        defer { try? live.execute("DETACH DATABASE restore_source") }
        try live.execute("BEGIN")
        defer { try? live.execute("COMMIT") }
        let liveTables = try live.tableRoots(database: "main")
        let backupTables = try live.tableRoots(database: "restore_source")
        let kinds = try live.tableKinds(database: "main").merging(try live.tableKinds(database: "restore_source")) { a, _ in a }
        let (identical, pages, touched) = try live.comparingTables(with: backup.databasePath, referenceRoots: backupTables, timeout: busyTimeout,
                                                             rowDigestBudget: rowDigestBudget)
        let backupFile = try PageFile(path: backup.databasePath)
        // Past the digest budget (much of a large database differs) rows are merged from SQL instead.
        let narrow = pages.leafRowsComplete && Self.rowidRangesAreExact(pages, backupFile)
        let virtualTables = kinds.filter { $0.value == "virtual" }.keys.sorted()
        func owner(ofShadow table: String) -> String? {
            virtualTables.filter { table.hasPrefix($0 + "_") }.max { $0.count < $1.count }
        }

        var result = [TableDifference]()
        var notCompared = [NotCompared]()
        var rowKeys: [String: [Int64]]? = [:]
        var allCompared = true
        for table in Set(liveTables.keys).union(backupTables.keys).sorted() {
            let q = quoteIdentifier(table)
            func count(_ database: String) throws -> Int? {
                (database == "main" ? liveTables : backupTables)[table] == nil ? nil
                    : Int(try live.scalar("SELECT count(*) FROM \(database).\(q)").int ?? 0)
            }
            if kinds[table] == "shadow" {
                if !identical.contains(table) { rowKeys = nil }
                let owner = owner(ofShadow: table)
                let comparable = owner.map { Self.uncomparable(liveTables[$0]?.sql ?? backupTables[$0]?.sql ?? "") == nil } ?? false
                notCompared.append(NotCompared(table: table, reason: "shadow table of virtual table \(owner ?? "?"): "
                                               + (comparable ? "its rows are compared there" : "which is not compared either")))
                if !comparable { allCompared = false }
                continue
            }
            if kinds[table] == "virtual" {
                if let reason = Self.uncomparable(liveTables[table]?.sql ?? backupTables[table]?.sql ?? "") {
                    notCompared.append(NotCompared(table: table, reason: reason))
                    allCompared = false
                    continue
                }
                do {
                    let (liveRows, backupRows) = (try count("main"), try count("restore_source"))
                    let shadows = Set(liveTables.keys).union(backupTables.keys).filter { kinds[$0] == "shadow" && owner(ofShadow: $0) == table }
                    if liveRows != nil, backupRows != nil, !shadows.isEmpty, shadows.allSatisfy(identical.contains) {
                        result.append(TableDifference(table: table, liveRows: liveRows, backupRows: backupRows, discarded: 0, restored: 0))
                    } else {
                        result.append(try exceptDifference(live, table, liveRows: liveRows, backupRows: backupRows))
                    }
                } catch let error as SQLiteError {
                    notCompared.append(NotCompared(table: table, reason: "virtual table: \(error.sqliteMessage)"))
                    allCompared = false
                }
                continue
            }
            guard liveTables[table] != nil, backupTables[table] != nil else {
                rowKeys = nil
                let (liveRows, backupRows) = (try count("main"), try count("restore_source"))
                result.append(TableDifference(table: table, liveRows: liveRows, backupRows: backupRows,
                                              discarded: liveRows ?? 0, restored: backupRows ?? 0))
                continue
            }
            if identical.contains(table) {
                let rows = try count("main")
                result.append(TableDifference(table: table, liveRows: rows, backupRows: rows, discarded: 0, restored: 0))
                continue
            }
            if liveTables[table]?.sql == backupTables[table]?.sql, try live.rowidIsPrimaryKey(table: table, database: "main") {
                var rows: RowDifference
                if narrow, let changed = Self.changedRows(liveRoot: Int(liveTables[table]!.rootPage), backupRoot: Int(backupTables[table]!.rootPage),
                                                          pages: pages, backup: backupFile) {
                    let differing = try live.differingRows(table: table, first: "main", second: "restore_source", rowids: changed.mismatched)
                    rows = RowDifference(onlyInFirst: changed.only.onlyInFirst + differing, onlyInSecond: changed.only.onlyInSecond + differing)
                    if rows.onlyInFirst + rows.onlyInSecond > 0 { rowKeys?[table] = changed.rowids }
                } else {
                    rowKeys = nil
                    rows = try live.rowDifferences(table: table, first: "main", second: "restore_source")
                }
                result.append(TableDifference(table: table, liveRows: try count("main"), backupRows: try count("restore_source"),
                                              discarded: rows.onlyInFirst, restored: rows.onlyInSecond))
                continue
            }
            rowKeys = nil
            // The backup's side on a connection of its own, on the other core.
            let backupPath = backup.databasePath
            let (livePrint, backupPrint) = try Parallel.both({ try live.fingerprint(table: table) },
                                                             elsewhere: { try Connection(path: backupPath, mode: .immutable).fingerprint(table: table) })
            // Equal fingerprints mean equal rows: no set differences needed.
            if livePrint == backupPrint {
                result.append(TableDifference(table: table, liveRows: livePrint.rows, backupRows: backupPrint.rows, discarded: 0, restored: 0))
                continue
            }
            result.append(try exceptDifference(live, table, liveRows: livePrint.rows, backupRows: backupPrint.rows))
        }
        // An index that differs while its table's rows do not (a damaged index, or one rebuilt
        // apart from its table) is not set right by rewriting rows: the page copy is.
        let indexes = try live.rows("SELECT name, tbl_name FROM main.sqlite_schema WHERE type = 'index'")
        let tableOf = Dictionary(indexes.map { ($0[0].string ?? "", $0[1].string ?? "") }, uniquingKeysWith: { a, _ in a })
        if rowKeys != nil, touched == nil || touched!.contains(where: { tableOf[$0].map { rowKeys?[$0] == nil } ?? false }) { rowKeys = nil }
        var comparison = Comparison(differences: result, notCompared: notCompared, rowKeys: rowKeys)
        // The schema, the header's versions and the internal tables (not in the table list).
        let header = { (database: String) in
            var rows = try Self.schemaRows(live, database) + Self.versionRows(live, database)
            for table in Self.internalTables where try live.scalar("SELECT count(*) FROM \(database).sqlite_schema WHERE name = ?", [.text(table)]).int == 1 {
                rows += try live.rows("SELECT * FROM \(database).\(table) ORDER BY 1, 2")
            }
            return rows
        }
        let sameHeader = try header("main") == header("restore_source")
        if allCompared && sameHeader && result.allSatisfy({ $0.discarded == 0 && $0.restored == 0 }), let touched {
            // Equal rows; an index whose pages differ (another layout after a row restore, or
            // damage) must pass integrity_check with its table for the content to be the same.
            let tables = Set(touched.compactMap { tableOf[$0] })
            comparison.holdsBackup = try tables.allSatisfy { try live.integrityProblems(full: true, table: $0).isEmpty }
        }
        return comparison
    }

    /// Whether the differing leaves hold every differing row: no differing page can be part of
    /// the overflow chain of a row whose cells are equal on both sides. Such a chain is in use
    /// as overflow pages on both sides (its first page is named by the equal cell, each next one
    /// by an equal page before it, or that page differs and is itself such a page). So a
    /// differing page is harmless when on either side it is a b-tree page, is on the freelist
    /// (a delete frees the pages of the rows it removes; `secure_delete` zeroes them), or does
    /// not exist; else (an overflow page rewritten in place, a pointer-map page, bytes that do
    /// not parse) rows must all be compared.
    static func rowidRangesAreExact(_ pages: PageDifferences, _ backup: PageFile) -> Bool {
        lazy var liveFree: Set<Int> = pages.rawPages.flatMap { raw in
            PageFile.freelist(page: { raw[$0] ?? (pages.pages.contains($0) ? nil : backup.bytes($0)) })
        } ?? []
        lazy var backupFree: Set<Int> = PageFile.freelist(page: backup.bytes) ?? []
        return pages.pages.allSatisfy { number in
            let live: BTreePage? = number > pages.pageCount ? nil : pages.content[number] ?? .other
            let theirs = number > pages.referencePageCount ? nil : backup.page(number)
            if live != .other || theirs != .other { return true }
            return liveFree.contains(number) || backupFree.contains(number)
        }
    }

    /// The rows that differ in one rowid table, found from its b-tree pages instead of by
    /// reading every row; nil when a b-tree does not parse (then compare every row).
    ///
    /// Only leaves that differ, or that are not a leaf of the same table on the other side,
    /// are read: a leaf that is in the table's b-tree on both sides with equal bytes holds the
    /// same rows on both sides (`rowidRangesAreExact` rules out differing overflow pages), so a
    /// row on a read leaf has its counterpart, if any, on a read leaf of the other side. Rows
    /// are merged by rowid; equal cells are equal rows, and rows whose cells differ are compared
    /// again by value in SQL (`mismatched`). Pages that do not differ are read from the backup
    /// file; the live database's differing leaves come parsed from the page comparison (so a
    /// WAL database is read as SQLite sees it).
    static func changedRows(liveRoot: Int, backupRoot: Int, pages: PageDifferences,
                            backup: PageFile) -> (only: RowDifference, mismatched: [Int64], rowids: [Int64])? {
        let livePage = { (number: Int) in pages.pages.contains(number) ? pages.content[number] : backup.page(number) }
        guard let liveLeaves = BTreePage.leaves(root: liveRoot, page: livePage),
              let backupLeaves = BTreePage.leaves(root: backupRoot, page: backup.page) else { return nil }
        let (liveSet, backupSet) = (Set(liveLeaves), Set(backupLeaves))
        var live = LeafRows(leaves: liveLeaves.filter { pages.pages.contains($0) || !backupSet.contains($0) }) {
            pages.pages.contains($0) ? pages.leafRows[$0] : backup.rowDigests($0)
        }
        var theirs = LeafRows(leaves: backupLeaves.filter { pages.pages.contains($0) || !liveSet.contains($0) }) { backup.rowDigests($0) }
        var only = RowDifference()
        var mismatched = [Int64]()
        var rowids = [Int64]()
        var (a, b) = (live.next(), theirs.next())
        while a != nil || b != nil {
            if let x = a, b == nil || x.rowid < b!.rowid {
                only.onlyInFirst += 1
                rowids.append(x.rowid)
                a = live.next()
            } else if let y = b, a == nil || y.rowid < a!.rowid {
                only.onlyInSecond += 1
                rowids.append(y.rowid)
                b = theirs.next()
            } else {
                if a!.hash != b!.hash {
                    mismatched.append(a!.rowid)
                    rowids.append(a!.rowid)
                }
                (a, b) = (live.next(), theirs.next())
            }
        }
        guard !live.failed, !theirs.failed else { return nil }
        return (only, mismatched, rowids)
    }

    /// The rows of a list of table leaves, in order; `failed` when a leaf does not parse or
    /// rowids do not increase.
    struct LeafRows {
        let leaves: [Int]
        let fetch: (Int) -> [RowDigest]?
        var leaf = 0
        var rows: [RowDigest] = []
        var index = 0
        var last = Int64.min
        var started = false
        var failed = false

        init(leaves: [Int], fetch: @escaping (Int) -> [RowDigest]?) {
            self.leaves = leaves
            self.fetch = fetch
        }

        mutating func next() -> RowDigest? {
            while index >= rows.count {
                guard !failed, leaf < leaves.count, let fetched = fetch(leaves[leaf]) else {
                    if leaf < leaves.count { failed = true }
                    return nil
                }
                (rows, index, leaf) = (fetched, 0, leaf + 1)
            }
            let row = rows[index]
            index += 1
            if started && row.rowid <= last { failed = true; return nil }
            (last, started) = (row.rowid, true)
            return row
        }
    }

    /// Why a virtual table's rows cannot be compared through its module, or nil when they can:
    /// FTS3/4/5 tables that store their content, and R*Trees.
    static func uncomparable(_ sql: String) -> String? {
        let lower = sql.lowercased().replacingOccurrences(of: " ", with: "")
        guard let using = lower.range(of: "using") else { return "virtual table without a module" }
        let module = lower[using.upperBound...].prefix { $0.isLetter || $0.isNumber || $0 == "_" }
        guard ["fts3", "fts4", "fts5", "rtree", "rtree_i32"].contains(String(module)) else {
            return "virtual table of module \(module): its rows are not compared"
        }
        if lower.contains("content=''") || lower.contains("content=\"\"") {
            return "contentless \(module) table: it stores no rows to compare"
        }
        return nil
    }

    /// Row differences of one table between `main` and `restore_source`, every copy of a
    /// repeated row counted (a multiset difference: each copy is numbered before `EXCEPT`).
    private func exceptDifference(_ live: Connection, _ table: String, liveRows: Int?, backupRows: Int?) throws -> TableDifference {
        let q = quoteIdentifier(table)
        let names = try columns(live, table, "main")
        guard let liveRows, let backupRows, !names.isEmpty, try names == columns(live, table, "restore_source") else {
            return TableDifference(table: table, liveRows: liveRows, backupRows: backupRows, discarded: liveRows ?? 0, restored: backupRows ?? 0)
        }
        // BINARY: a column's own collation (NOCASE) would call 'abc' and 'ABC' the same row.
        let list = names.map { quoteIdentifier($0) + " COLLATE BINARY" }.joined(separator: ", ")
        let numbered = { (database: String) in "SELECT \(list), row_number() OVER (PARTITION BY \(list)) FROM \(database).\(q)" }
        let discarded = try live.scalar("SELECT count(*) FROM (\(numbered("main")) EXCEPT \(numbered("restore_source")))").int ?? 0
        let restored = try live.scalar("SELECT count(*) FROM (\(numbered("restore_source")) EXCEPT \(numbered("main")))").int ?? 0
        return TableDifference(table: table, liveRows: liveRows, backupRows: backupRows, discarded: Int(discarded), restored: Int(restored))
    }

    private func columns(_ db: Connection, _ table: String, _ database: String) throws -> [String] {
        try db.rows("SELECT name FROM pragma_table_info(?, ?)", [.text(table), .text(database)]).compactMap { $0[0].string }
    }

    /// What a restore into the live database did.
    public struct LiveResult: Sendable {
        /// The `pre_restore` snapshot: exactly the state the restore replaced.
        public let saved: BackupEntry
        /// True when no other connection committed between the preview's read transaction
        /// and the write lock, so the preview's counts are exactly what was discarded.
        public let previewExact: Bool
        /// How long other connections could not write: from the write lock to the commit.
        public let writeLockMilliseconds: Double
        public let proof: Proof
    }

    /// The proof that the live database holds the backup after a restore.
    public enum Proof: Sendable {
        /// Every page is identical to the backup's.
        case identical(pages: Int)
        /// A row restore (`restoreByRows`): the `rows` rewritten in `tables` tables, the internal
        /// tables, the header's versions and the schema equal the backup's; every other row was
        /// proven equal by the page comparison before the restore.
        case rows(rows: Int, tables: Int)
        /// Another connection committed to the restored database before the proof could read
        /// it: equality can no longer be shown (nor is it expected).
        case overtaken
        /// Pages differ, and nobody else committed: the restore is wrong.
        case differs(pages: Int, of: Int)
        /// After a row restore, rows differ (counted on both sides) and nobody else committed.
        case rowsDiffer(rows: Int)
    }

    /// Restores `backup` into the live database `live` as one critical section: takes the
    /// write lock (`HeldBackup.lock`), saves the live state as a snapshot through `saving`
    /// (WAL: read by a second connection, which readers may still be; rollback journal: the
    /// locked file's bytes), runs `beforeCommit` (a throw there aborts: the live database is
    /// untouched and the saved copy removed), commits the restore in one transaction, then
    /// proves every page equals the backup's in the first read transaction after the commit.
    /// No commit of another connection can fall between the saved state and the restore.
    ///
    /// `live` must have no open transaction; when it read the preview, `previewVersion` is its
    /// `dataVersion` after that read.
    /// - Throws: `SQLiteError` (`.temporary` when the write lock is not had within the busy
    ///   timeout); `Failure` `.cannotCreate` for a read-only database, `.io` for a full disk.
    ///   Whatever is thrown, the live database is as it was; when the commit itself failed
    ///   this was checked page by page, and `.unproven` is thrown if it is not.
    public func restore(_ backup: OpenedBackup, intoLive live: Connection, previewVersion: UInt32?, rowKeys: [String: [Int64]]? = nil,
                        saving request: SnapshotRequest, in store: BackupStore, progress: @escaping ProgressHandler = { _ in },
                        stop: (@Sendable () -> Bool)? = nil, beforeCommit: () throws -> Void) throws -> LiveResult {
        guard !live.isReadOnly else {
            throw Failure(.restoreLiveReadOnly, "the live database \(live.path) is read-only for this user; nothing was changed",
                          hint: "run as the database's owner, or make the file and its folder writable")
        }
        let bytes = (try live.scalar("PRAGMA page_count").int ?? 0) * (try live.scalar("PRAGMA page_size").int ?? 0)
        if let minimum = rowRestoreMinimumBytes, let rowKeys, let previewVersion, bytes >= minimum,
           rowKeys.values.reduce(0, { $0 + $1.count }) <= (minimum == 0 ? Self.rowRestoreMaximumRows : Self.rowRestoreLimit(bytes: bytes)),
           let result = try restoreByRows(backup, intoLive: live, keys: rowKeys, previewVersion: previewVersion, saving: request,
                                          in: store, progress: progress, stop: stop, beforeCommit: beforeCommit) {
            return result
        }
        let source = try Connection(path: backup.databasePath, mode: .immutable)
        let held = try HeldBackup(from: source, into: live)
        try held.lock(timeout: busyTimeout)
        let locked = ContinuousClock.now
        let previewExact = previewVersion == live.dataVersion
        var published: BackupEntry?
        let wal: Bool
        do {
            wal = try live.readFileBytes(at: 18, count: 2).first == 2
            progress(.working(.savingPreRestore))
            let snapshotter = Snapshotter(store: store)
            if wal {
                // A second connection reads the committed state while the restore's pages go
                // into the WAL uncommitted, one core each; the commit waits for the saved copy.
                // A signal stops either copy between steps (the commit is not reached).
                // The reader is opened on the thread that uses it.
                let (livePath, timeout) = (live.path, busyTimeout)
                (_, published) = try Parallel.both({ try held.copyAllButLastPage(timeout: timeout, stop: stop) }, elsewhere: {
                    let reader = try Connection(path: livePath, mode: .inspect, busyTimeout: timeout)
                    reader.stopWhen(stop)
                    return try snapshotter.snapshot(request) { path in try reader.copy(into: path, timeout: timeout, durable: true) }
                })
            } else {
                // EXCLUSIVE lock: the file is the committed database. Copied before any page
                // of the restore is written, since the pager may spill pages into the file.
                published = try snapshotter.snapshot(request, progress: progress) { path in
                    let fd = open(path, O_WRONLY | O_CLOEXEC)
                    guard fd >= 0 else { throw DurableFile.posixFailure("cannot open \(path)", errno) }
                    defer { close(fd) }
                    _ = try live.copyFileBytes(into: fd, outputPath: path)
                    return nil
                }
            }
        } catch {
            held.abort()
            if let published { try? store.remove([published]) }
            throw error
        }
        let saved = published!
        do {
            try beforeCommit()
        } catch {
            held.abort()
            try? store.remove([saved])
            throw error
        }
        progress(.working(.restoringPages))
        do {
            try held.commit(timeout: busyTimeout)
        } catch let error as DeployctlError {
            throw rolledBack(error, live: live, saved: saved, store: store)
        }
        let blocked = ContinuousClock.now - locked
        progress(.working(.provingRestore))
        let proof = try proveRestored(live, equals: backup, checkpointing: wal)
        progress(.ended(announce: true))
        return LiveResult(saved: saved, previewExact: previewExact,
                          writeLockMilliseconds: blocked.milliseconds,
                          proof: proof)
    }

    /// The failure for a restore whose commit failed: the live database is checked page by
    /// page against `saved`, the copy taken just before; when equal the copy is removed and the
    /// cause's kind kept, else `.unproven` naming the copy to put back.
    func rolledBack(_ error: DeployctlError, live: Connection, saved: BackupEntry, store: BackupStore) -> Failure {
        let unchanged = try? Connection(path: live.path, mode: .inspect, busyTimeout: busyTimeout)
            .comparePages(with: saved.path, timeout: busyTimeout).identical
        guard unchanged == true else {
            return Failure(.restoreUnproven, "\(error.message)\nThe live database may be partly restored: it no longer equals \(saved.name), the copy saved just before.",
                           hint: "do not start the application; put the saved copy back: deployctl restore \(store.instance ?? store.stem) \(saved.name) --yes")
        }
        try? store.remove([saved])
        return Failure(error.kind == .unproven ? .restoreRolledBack : error.code,
                       "\(error.message)\nThe restore was rolled back: the live database is as it was (every page equals \(saved.name)).",
                       hint: error.hint)
    }

    /// The proof after a live restore, in `live`'s first read transaction after its commit:
    /// every page is compared with the backup's. Pages that differ prove the restore wrong only
    /// when the data version shows no other connection committed since. With `checkpointing` (WAL), a second connection copies the
    /// restore's frames into the database file meanwhile, on the other core (a reader does not
    /// stop that; it only keeps the WAL from being reset), which the last connection to close
    /// would otherwise do afterwards.
    private func proveRestored(_ live: Connection, equals backup: OpenedBackup, checkpointing: Bool) throws -> Proof {
        let committed = live.dataVersion
        try live.execute("BEGIN")
        defer { try? live.execute("COMMIT") }
        _ = try live.scalar("SELECT count(*) FROM sqlite_schema")
        // A changed data version may be another connection's commit, or only this pager
        // starting afresh (a restore that changed the page size): the pages decide.
        let overtaken = live.dataVersion != committed
        let path = live.path
        let (differences, _) = try Parallel.both({ try live.comparePages(with: backup.databasePath, timeout: busyTimeout) }, elsewhere: {
            // Best effort: a checkpoint that cannot run now is done by the next one.
            if checkpointing { try? Connection(path: path, mode: .readWrite, busyTimeout: .zero).execute("PRAGMA wal_checkpoint(PASSIVE)") }
        })
        if differences.identical { return .identical(pages: differences.pageCount) }
        return overtaken ? .overtaken : .differs(pages: differences.pages.count, of: differences.referencePageCount)
    }

    /// Restores `backup` into `target`, a file that must not exist: temp file, fsync, link
    /// without replacing, folder fsync. Returns the number of pages proven identical.
    /// - Throws: `Failure` `.cannotCreate` when `target` exists or cannot be created.
    public func restore(_ backup: OpenedBackup, toNewFile target: String) throws -> Int {
        guard !FileManager.default.fileExists(atPath: target) else {
            throw Failure(.restoreTargetExists, "\(target) exists; --to only writes a new file",
                          hint: "choose a path that does not exist")
        }
        // A compressed backup was inflated to a checked temp file: on the same filesystem that
        // very file becomes the new one (fsync, link without replacing), with no second copy.
        if backup.temporary, try linkChecked(backup.databasePath, as: target) {
            return Int(try Connection(path: target, mode: .immutable).scalar("PRAGMA page_count").int ?? 0)
        }
        let temp = DurableFile.temporaryPath(for: target)
        defer { unlink(temp); unlink(temp + "-journal") }
        let pages = try writeCopy(of: backup, to: temp)
        guard link(temp, target) == 0 else {
            let code = errno
            if code == EEXIST { throw Failure(.restoreTargetExists, "\(target) appeared meanwhile; --to only writes a new file, and it was left as it is", hint: "choose a path that does not exist") }
            throw DurableFile.posixFailure("cannot create \(target)", code, creating: true)
        }
        try DurableFile.syncDirectory(containing: target)
        return pages
    }

    /// fsyncs `checked` and links it as `target` (never replacing); false when they are on
    /// different filesystems.
    /// - Throws: `Failure` for any other error.
    private func linkChecked(_ checked: String, as target: String) throws -> Bool {
        try DurableFile.syncFile(checked)
        guard link(checked, target) == 0 else {
            let code = errno
            if code == EXDEV { return false }
            if code == EEXIST { throw Failure(.restoreTargetExists, "\(target) exists; --to only writes a new file", hint: "choose a path that does not exist") }
            throw DurableFile.posixFailure("cannot create \(target)", code, creating: true)
        }
        try DurableFile.syncDirectory(containing: target)
        return true
    }

    /// Replaces a missing or unreadable live database with `backup`: a temp copy beside it,
    /// fsynced, renamed over it, stale `-wal`/`-shm`/`-journal` files moved aside, folder fsynced.
    /// The caller has checked that no process holds the file. Whatever was there is kept: the
    /// unreadable file and its side files are moved to `aside` + suffix (or, on another
    /// filesystem, beside the database under the same name), never deleted. When `livePath` is
    /// a symbolic link, the file it points to is replaced and the link stays. The new file gets
    /// the old one's owner and mode. Returns the number of pages proven identical and where the
    /// old file went (nil when there was none).
    /// - Throws: `Failure` `.io`.
    public func replace(livePath: String, with backup: OpenedBackup, aside: String) throws -> (pages: Int, movedTo: String?) {
        let target = Self.linkTarget(livePath)
        let temp = DurableFile.temporaryPath(for: target)
        defer { unlink(temp); unlink(temp + "-journal") }
        let pages = try writeCopy(of: backup, to: temp)
        var old = stat()
        if stat(target, &old) == 0 {
            chown(temp, old.st_uid, old.st_gid)
            chmod(temp, old.st_mode & 0o7777)
        } else {
            // No file to take them from: the mode SQLite gives a database it creates (0644 under
            // the usual umask), not a temp file's 0600, and the folder's owner (an application
            // reading through its group keeps reading).
            let mask = umask(0)
            umask(mask)
            chmod(temp, 0o666 & ~mask)
            var folder = stat()
            if stat((target as NSString).deletingLastPathComponent, &folder) == 0, getuid() == 0 { chown(temp, folder.st_uid, folder.st_gid) }
        }
        var movedTo: String?
        for suffix in ["", "-wal", "-shm", "-journal"] where FileManager.default.fileExists(atPath: target + suffix) {
            var destination = aside + suffix
            if rename(target + suffix, destination) != 0 {
                guard errno == EXDEV else { throw DurableFile.posixFailure("cannot move \(target + suffix) aside to \(destination)", errno) }
                destination = (target as NSString).deletingLastPathComponent + "/" + (aside as NSString).lastPathComponent + suffix
                guard !FileManager.default.fileExists(atPath: destination), rename(target + suffix, destination) == 0 else {
                    throw DurableFile.posixFailure("cannot move \(target + suffix) aside to \(destination)", errno)
                }
            }
            if suffix.isEmpty { movedTo = destination }
        }
        guard rename(temp, target) == 0 else { throw DurableFile.posixFailure("cannot rename \(temp) to \(target)", errno) }
        try DurableFile.syncDirectory(containing: target)
        if let movedTo { try DurableFile.syncDirectory(containing: movedTo) }
        return (pages, movedTo)
    }

    /// The file a path names after following symbolic links, even a dangling last one.
    static func linkTarget(_ path: String) -> String {
        var current = path
        for _ in 0..<40 {
            guard let destination = try? FileManager.default.destinationOfSymbolicLink(atPath: current) else { return current }
            current = destination.hasPrefix("/") ? destination
                : URL(fileURLWithPath: (current as NSString).deletingLastPathComponent).appendingPathComponent(destination).standardizedFileURL.path
        }
        return current
    }

    private func writeCopy(of backup: OpenedBackup, to temp: String) throws -> Int {
        let fd = try DurableFile.createNew(temp)
        close(fd)
        do {
            let destination = try Connection(path: temp, mode: .create)
            try copy(backup, into: destination)
        }
        let pages = try prove(Connection(path: temp, mode: .inspect), equals: backup, what: temp)
        try DurableFile.syncFile(temp)
        return pages
    }

    /// The backup API from the backup file, read through `mmap` (it is immutable), into `destination`.
    private func copy(_ backup: OpenedBackup, into destination: Connection) throws {
        let source = try Connection(path: backup.databasePath, mode: .immutable)
        try source.useMemoryMappedReads()
        try source.backup(into: destination, timeout: busyTimeout)
    }

    private func prove(_ restored: Connection, equals backup: OpenedBackup, what: String) throws -> Int {
        let differences = try restored.comparePages(with: backup.databasePath, timeout: busyTimeout)
        guard differences.identical else {
            throw Failure(.restoreUnproven, "after the restore, \(what) does not hold the backup's pages (\(differences.pages.count) of \(differences.referencePageCount) differ)",
                          hint: "do not start the application; check the database with verify, and restore again with --replace")
        }
        return differences.pageCount
    }
}

/// A SQL string literal.
func sqlLiteral(_ text: String) -> String {
    "'" + text.replacingOccurrences(of: "'", with: "''") + "'"
}
