import Foundation
import SQLite
import Support

extension Restorer {
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
        var tables = try TableComparison(live, backup: backup, restorer: self)
        for table in tables.names { try tables.compare(table) }
        var comparison = Comparison(differences: tables.result, notCompared: tables.notCompared, rowKeys: try tables.rowKeysForRows())
        comparison.holdsBackup = try tables.holdsBackup()
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
    func exceptDifference(_ live: Connection, _ table: String, liveRows: Int?, backupRows: Int?) throws -> TableDifference {
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
}

/// One `Restorer.compare`: `main` (the live side) against `restore_source` (the backup)
/// on one connection, inside its read transaction, table by table.
private struct TableComparison {
    let live: Connection
    let restorer: Restorer
    let backupPath: String
    let liveTables: [String: TableRoot]
    let backupTables: [String: TableRoot]
    let kinds: [String: TableKind]
    /// Tables none of whose pages differ, the page differences, and the objects owning them
    /// (nil: not known).
    let identical: Set<String>
    let pages: PageDifferences
    let touched: Set<String>?
    let backupFile: PageFile
    /// Whether the differing leaves hold every differing row (rows are then compared leaf by
    /// leaf); past the digest budget rows are merged from SQL instead.
    let narrow: Bool
    let virtualTables: [String]

    var result = [TableDifference]()
    var notCompared = [NotCompared]()
    var rowKeys: [String: [Int64]]? = [:]
    var allCompared = true

    init(_ live: Connection, backup: OpenedBackup, restorer: Restorer) throws {
        self.live = live
        self.restorer = restorer
        backupPath = backup.databasePath
        liveTables = try live.tableRoots(database: "main")
        backupTables = try live.tableRoots(database: "restore_source")
        kinds = try live.tableKinds(database: "main").merging(try live.tableKinds(database: "restore_source")) { a, _ in a }
        (identical, pages, touched) = try live.comparingTables(with: backup.databasePath, referenceRoots: backupTables, timeout: restorer.busyTimeout,
                                                               rowDigestBudget: restorer.rowDigestBudget)
        backupFile = try PageFile(path: backup.databasePath)
        narrow = pages.leafRowsComplete && Restorer.rowidRangesAreExact(pages, backupFile)
        virtualTables = kinds.filter { $0.value == .virtual }.keys.sorted()
    }

    /// Every table of either side, sorted.
    var names: [String] { Set(liveTables.keys).union(backupTables.keys).sorted() }

    /// Compares one table, the cheapest way that is exact for it.
    mutating func compare(_ table: String) throws {
        switch kinds[table] {
        case .shadow: noteShadow(table)
        case .virtual: try compareVirtual(table)
        default:
            if liveTables[table] == nil || backupTables[table] == nil {
                try compareOneSided(table)
            } else if identical.contains(table) {
                let rows = try count(table, in: "main")
                result.append(TableDifference(table: table, liveRows: rows, backupRows: rows, discarded: 0, restored: 0))
            } else if liveTables[table]?.sql == backupTables[table]?.sql, try live.rowidIsPrimaryKey(table: table, database: "main") {
                try compareByRowid(table)
            } else {
                try compareByFingerprint(table)
            }
        }
    }

    /// The rows of `table` in `database`; nil when that side lacks the table.
    func count(_ table: String, in database: String) throws -> Int? {
        (database == "main" ? liveTables : backupTables)[table] == nil ? nil
            : Int(try live.scalar("SELECT count(*) FROM \(database).\(quoteIdentifier(table))").int ?? 0)
    }

    /// The virtual table a shadow table belongs to: the longest name it starts with, then `_`.
    func owner(ofShadow table: String) -> String? {
        virtualTables.filter { table.hasPrefix($0 + "_") }.max { $0.count < $1.count }
    }

    /// A shadow table is compared through its virtual table (when that one can be).
    mutating func noteShadow(_ table: String) {
        if !identical.contains(table) { rowKeys = nil }
        let owner = owner(ofShadow: table)
        let comparable = owner.map { Restorer.uncomparable(liveTables[$0]?.sql ?? backupTables[$0]?.sql ?? "") == nil } ?? false
        notCompared.append(NotCompared(table: table, reason: "shadow table of virtual table \(owner ?? "?"): "
                                       + (comparable ? "its rows are compared there" : "which is not compared either")))
        if !comparable { allCompared = false }
    }

    /// A virtual table owns no pages: unchanged when all its shadow tables are, else its rows
    /// are compared through the module; a module that cannot be is reported as not compared.
    mutating func compareVirtual(_ table: String) throws {
        if let reason = Restorer.uncomparable(liveTables[table]?.sql ?? backupTables[table]?.sql ?? "") {
            notCompared.append(NotCompared(table: table, reason: reason))
            allCompared = false
            return
        }
        do {
            let (liveRows, backupRows) = (try count(table, in: "main"), try count(table, in: "restore_source"))
            let shadows = Set(liveTables.keys).union(backupTables.keys).filter { kinds[$0] == .shadow && owner(ofShadow: $0) == table }
            if liveRows != nil, backupRows != nil, !shadows.isEmpty, shadows.allSatisfy(identical.contains) {
                result.append(TableDifference(table: table, liveRows: liveRows, backupRows: backupRows, discarded: 0, restored: 0))
            } else {
                result.append(try restorer.exceptDifference(live, table, liveRows: liveRows, backupRows: backupRows))
            }
        } catch let error as SQLiteError {
            notCompared.append(NotCompared(table: table, reason: "virtual table: \(error.sqliteMessage)"))
            allCompared = false
        }
    }

    /// A table on one side only: all its rows are discarded or brought back.
    mutating func compareOneSided(_ table: String) throws {
        rowKeys = nil
        let (liveRows, backupRows) = (try count(table, in: "main"), try count(table, in: "restore_source"))
        result.append(TableDifference(table: table, liveRows: liveRows, backupRows: backupRows,
                                      discarded: liveRows ?? 0, restored: backupRows ?? 0))
    }

    /// The same definition, keyed by rowid: the differing leaves name the differing rows (kept
    /// for a restore by rows), or, past the digest budget, rows are merged from SQL.
    mutating func compareByRowid(_ table: String) throws {
        var rows: RowDifference
        if narrow, let changed = Restorer.changedRows(liveRoot: Int(liveTables[table]!.rootPage), backupRoot: Int(backupTables[table]!.rootPage),
                                                      pages: pages, backup: backupFile) {
            let differing = try live.differingRows(table: table, first: "main", second: "restore_source", rowids: changed.mismatched)
            rows = RowDifference(onlyInFirst: changed.only.onlyInFirst + differing, onlyInSecond: changed.only.onlyInSecond + differing)
            if rows.onlyInFirst + rows.onlyInSecond > 0 { rowKeys?[table] = changed.rowids }
        } else {
            rowKeys = nil
            rows = try live.rowDifferences(table: table, first: "main", second: "restore_source")
        }
        result.append(TableDifference(table: table, liveRows: try count(table, in: "main"), backupRows: try count(table, in: "restore_source"),
                                      discarded: rows.onlyInFirst, restored: rows.onlyInSecond))
    }

    /// Any other table: content fingerprints on both sides, two cores at once (the backup's on
    /// a connection of its own); set differences only when they differ.
    mutating func compareByFingerprint(_ table: String) throws {
        rowKeys = nil
        let backupPath = backupPath
        let (livePrint, backupPrint) = try Parallel.both({ try live.fingerprint(table: table) },
                                                         elsewhere: { try Connection(path: backupPath, mode: .immutable).fingerprint(table: table) })
        if livePrint == backupPrint {
            result.append(TableDifference(table: table, liveRows: livePrint.rows, backupRows: backupPrint.rows, discarded: 0, restored: 0))
        } else {
            result.append(try restorer.exceptDifference(live, table, liveRows: livePrint.rows, backupRows: backupPrint.rows))
        }
    }

    /// The table of every index.
    func indexTables() throws -> [String: String] {
        let indexes = try live.rows("SELECT name, tbl_name FROM main.sqlite_schema WHERE type = 'index'")
        return Dictionary(indexes.map { ($0[0].string ?? "", $0[1].string ?? "") }, uniquingKeysWith: { a, _ in a })
    }

    /// The rows a restore by rows rewrites, when it can: an index that differs while its
    /// table's rows do not (a damaged index, or one rebuilt apart from its table) is not set
    /// right by rewriting rows; the page copy is.
    func rowKeysForRows() throws -> [String: [Int64]]? {
        guard let rowKeys else { return nil }
        let tableOf = try indexTables()
        if touched == nil || touched!.contains(where: { tableOf[$0].map { rowKeys[$0] == nil } ?? false }) { return nil }
        return rowKeys
    }

    /// Whether the live side already holds the backup: every table compared with equal rows,
    /// the same schema, header versions and internal tables, and every index whose pages differ
    /// (another layout after a row restore, or damage) passing integrity_check with its table.
    func holdsBackup() throws -> Bool {
        guard allCompared, result.allSatisfy({ $0.discarded == 0 && $0.restored == 0 }), let touched,
              try header("main") == header("restore_source") else { return false }
        let tableOf = try indexTables()
        let tables = Set(touched.compactMap { tableOf[$0] })
        return try tables.allSatisfy { try live.integrityProblems(full: true, table: $0).isEmpty }
    }

    /// The schema, the header's versions and the internal tables (not in the table list).
    func header(_ database: String) throws -> [[Value]] {
        var rows = try Restorer.schemaRows(live, database) + Restorer.versionRows(live, database)
        for table in Restorer.internalTables where try live.scalar("SELECT count(*) FROM \(database).sqlite_schema WHERE name = ?", [.text(table)]).int == 1 {
            rows += try live.rows("SELECT * FROM \(database).\(table) ORDER BY 1, 2")
        }
        return rows
    }
}
