import CSQLite
import Foundation
import Support

/// Where a database differs from a reference database file, page by page.
public struct PageDifferences: Sendable {
    /// Page numbers (1-based) whose bytes differ, or that exist on one side only.
    public let pages: Set<Int>
    /// Pages in the compared database.
    public let pageCount: Int
    /// Pages in the reference file.
    public let referencePageCount: Int
    /// What each differing page of the compared database holds, parsed as a b-tree page.
    package let content: [Int: BTreePage]
    /// The rows of each differing table leaf page of the compared database.
    package let leafRows: [Int: [RowDigest]]
    /// Whether `leafRows` holds every differing table leaf's rows (see `CopyTargetVFS`).
    package let leafRowsComplete: Bool
    /// The bytes of each differing page that is not a b-tree page, and of page 1, of the
    /// compared database; nil when there were too many to keep.
    package let rawPages: [Int: [UInt8]]?

    /// True when every page is byte-identical (bar the page-1 header fields a backup rewrites),
    /// which proves the two databases hold the same schema and rows.
    public var identical: Bool { pages.isEmpty && pageCount == referencePageCount }
}

extension Connection {
    /// Compares every page of this database, as one read transaction sees it (the open one, if
    /// any), with the database file at `reference`, byte for byte, without writing anything.
    ///
    /// It runs SQLite's online backup API (https://sqlite.org/backup.html) into `CopyTargetVFS`
    /// in comparing mode, so pages come from SQLite's own consistent read of a live database
    /// (WAL included) and the reference file is only read. Page-1 header fields that name the
    /// journal mode or count changes are ignored (see `CopyTargetVFS`). Reads this database
    /// through `mmap`.
    /// - Throws: `SQLiteError` (`.temporary` kind when no read lock was had within `timeout`);
    ///   `Failure` `.io` when the reference cannot be read.
    public func comparePages(with reference: String, timeout: Duration,
                             rowDigestBudget: Int = Connection.rowDigestBudget) throws -> PageDifferences {
        let vfs = try CopyTargetVFS(comparingWith: reference, rowDigestBudget: rowDigestBudget)
        // The name is never created: the comparing VFS opens `reference` read-only instead.
        try backup(into: reference + "-compare", through: vfs, pragmas: "PRAGMA journal_mode = OFF; PRAGMA synchronous = OFF",
                   timeout: timeout, failing: "cannot read")
        let pageSize = Int64(try scalar("PRAGMA page_size").int ?? 4096)
        var info = stat()
        guard stat(reference, &info) == 0 else { throw DurableFile.posixFailure("cannot stat \(reference)", errno) }
        let pageCount = Int(vfs.comparedBytes / pageSize)
        let referencePageCount = Int(Int64(info.st_size) / pageSize)
        var pages = vfs.differingPages
        if pageCount != referencePageCount {
            pages.formUnion(min(pageCount, referencePageCount) + 1 ... max(pageCount, referencePageCount))
        }
        return PageDifferences(pages: pages, pageCount: pageCount, referencePageCount: referencePageCount,
                               content: vfs.differingPageContent, leafRows: vfs.differingLeafRows,
                               leafRowsComplete: vfs.leafRowsComplete, rawPages: vfs.differingRawPages)
    }
}

extension Connection {
    /// How many rows of differing table leaves a page comparison keeps digests of, by default:
    /// 1 Mi rows (16 MiB plus their arrays); past it none (see `CopyTargetVFS`).
    public static let rowDigestBudget = 1 << 20

    /// The tables and indexes of `main` that own any of `pages` (from SQLite's `dbstat` virtual
    /// table, https://sqlite.org/dbstat.html: b-tree and overflow pages, by owner name); nil when
    /// this libsqlite3 has no `dbstat`.
    ///
    /// With `comparePages` this proves a table unchanged without reading its rows: when none of
    /// its pages differ from the reference and its root page is the same there, walking its b-tree
    /// in either file visits the same bytes.
    func objectsOwning(pages: Set<Int>) -> Set<String>? {
        guard !pages.isEmpty else { return [] }
        do {
            var owners = Set<String>()
            for row in try rows("SELECT name, pageno FROM dbstat('main')") where pages.contains(Int(row[1].int ?? 0)) {
                owners.insert(row[0].string ?? "")
            }
            return owners
        } catch {
            return nil
        }
    }
}

extension Connection {
    /// The tables of `main` proven byte-identical to the same table of the database file at
    /// `reference`, whose tables are `referenceRoots`: the same root page and definition there,
    /// and none of their pages differ (`comparePages`, `objectsOwning`). Any other table may
    /// still hold the same rows (its pages moved); compare those by content. Empty without
    /// `dbstat` when any page differs. Reads in the open read transaction, if any.
    /// - Throws: as `comparePages`.
    public func tablesWithIdenticalPages(as reference: String, referenceRoots: [String: TableRoot],
                                         timeout: Duration) throws -> Set<String> {
        try comparingTables(with: reference, referenceRoots: referenceRoots, timeout: timeout).identical
    }

    /// `tablesWithIdenticalPages`, with the page comparison it made.
    /// - Throws: as `comparePages`.
    package func comparingTables(with reference: String, referenceRoots: [String: TableRoot], timeout: Duration,
                                 rowDigestBudget: Int = Connection.rowDigestBudget) throws -> (identical: Set<String>, pages: PageDifferences) {
        let roots = try tableRoots()
        let pages = try comparePages(with: reference, timeout: timeout, rowDigestBudget: rowDigestBudget)
        guard let touched = pages.identical ? [] : objectsOwning(pages: pages.pages) else { return ([], pages) }
        return (Set(roots.keys.filter { !touched.contains($0) && roots[$0] == referenceRoots[$0] }), pages)
    }
}
