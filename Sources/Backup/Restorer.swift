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

/// Restores backups through SQLite's backup API: into the live database (one write
/// transaction), into a new file, or over a missing or unreadable live database.
public struct Restorer: Sendable {
    public let busyTimeout: Duration

    public init(busyTimeout: Duration) { self.busyTimeout = busyTimeout }

    /// The comparison of the live database with a backup, shown before a restore.
    public struct Comparison: Sendable {
        public let differences: [TableDifference]
    }

    /// Compares every table of the live database with the backup, so the operator sees what a
    /// restore would discard. Reads only, in one read transaction on the live database.
    ///
    /// First every live page is compared with the backup's (`comparePages`, about the cost of
    /// a copy). A table none of whose live pages differ (SQLite's `dbstat` lists them), with the
    /// same root page and definition on both sides, holds the same rows: only its rows are
    /// counted. The other tables get fingerprints on both sides (two cores at once), and
    /// row-set differences when those differ.
    /// - Throws: `SQLiteError`.
    public func compare(livePath: String, backup: OpenedBackup) throws -> Comparison {
        let live = try Connection(path: livePath, mode: .inspect, busyTimeout: busyTimeout)
        try live.execute("ATTACH DATABASE \(sqlLiteral(Connection.uri(backup.databasePath, query: "immutable=1"))) AS restore_source")
        defer { try? live.execute("DETACH DATABASE restore_source") }
        try live.execute("BEGIN")
        defer { try? live.execute("COMMIT") }
        let liveTables = try live.tableRoots(database: "main")
        let backupTables = try live.tableRoots(database: "restore_source")
        let backupDatabase = try Connection(path: backup.databasePath, mode: .immutable)
        let identical = try live.tablesWithIdenticalPages(as: backup.databasePath, referenceRoots: backupTables, timeout: busyTimeout)

        var result = [TableDifference]()
        for table in Set(liveTables.keys).union(backupTables.keys).sorted() {
            let q = quoteIdentifier(table)
            guard liveTables[table] != nil, backupTables[table] != nil else {
                let liveRows = liveTables[table] == nil ? nil : Int(try live.scalar("SELECT count(*) FROM main.\(q)").int ?? 0)
                let backupRows = backupTables[table] == nil ? nil : Int(try live.scalar("SELECT count(*) FROM restore_source.\(q)").int ?? 0)
                result.append(TableDifference(table: table, liveRows: liveRows, backupRows: backupRows,
                                              discarded: liveRows ?? 0, restored: backupRows ?? 0))
                continue
            }
            if identical.contains(table) {
                let rows = Int(try live.scalar("SELECT count(*) FROM main.\(q)").int ?? 0)
                result.append(TableDifference(table: table, liveRows: rows, backupRows: rows, discarded: 0, restored: 0))
                continue
            }
            let (livePrint, backupPrint) = try bothAtOnce({ try live.fingerprint(table: table) },
                                                          { try backupDatabase.fingerprint(table: table) })
            // Equal fingerprints mean equal rows: no set differences needed.
            if livePrint == backupPrint {
                result.append(TableDifference(table: table, liveRows: livePrint.rows, backupRows: backupPrint.rows, discarded: 0, restored: 0))
                continue
            }
            guard try columns(live, table, "main") == columns(live, table, "restore_source") else {
                result.append(TableDifference(table: table, liveRows: livePrint.rows, backupRows: backupPrint.rows,
                                              discarded: livePrint.rows, restored: backupPrint.rows))
                continue
            }
            let discarded = try live.scalar("SELECT count(*) FROM (SELECT * FROM main.\(q) EXCEPT SELECT * FROM restore_source.\(q))").int ?? 0
            let restored = try live.scalar("SELECT count(*) FROM (SELECT * FROM restore_source.\(q) EXCEPT SELECT * FROM main.\(q))").int ?? 0
            result.append(TableDifference(table: table, liveRows: livePrint.rows, backupRows: backupPrint.rows,
                                          discarded: Int(discarded), restored: Int(restored)))
        }
        return Comparison(differences: result)
    }

    private func columns(_ db: Connection, _ table: String, _ database: String) throws -> [String] {
        try db.rows("SELECT name FROM pragma_table_info(?, ?)", [.text(table), .text(database)]).compactMap { $0[0].string }
    }

    /// Restores `backup` into the live database with the backup API: one write transaction,
    /// correct with a `-wal` file present, keeping the live journal mode; then proves the live
    /// database equals the backup: a new connection reads every page and compares it with the
    /// backup file's. Returns the number of pages proven identical.
    /// - Throws: `SQLiteError` (`.temporary` when the write lock is not had in time; the live
    ///   database is then unchanged); `Failure` `.unproven` when the proof fails.
    public func restore(_ backup: OpenedBackup, intoLive livePath: String) throws -> Int {
        do {
            let live = try Connection(path: livePath, mode: .readWrite, busyTimeout: busyTimeout)
            try copy(backup, into: live)
        }
        return try prove(Connection(path: livePath, mode: .inspect, busyTimeout: busyTimeout),
                         equals: backup, what: "the live database \(livePath)")
    }

    /// Restores `backup` into `target`, a file that must not exist: temp file, fsync, link
    /// without replacing, folder fsync. Returns the number of pages proven identical.
    /// - Throws: `Failure` `.cannotCreate` when `target` exists or cannot be created.
    public func restore(_ backup: OpenedBackup, toNewFile target: String) throws -> Int {
        guard !FileManager.default.fileExists(atPath: target) else {
            throw Failure(.cannotCreate, "\(target) exists; --to only writes a new file",
                          hint: "choose a path that does not exist")
        }
        let temp = DurableFile.temporaryPath(for: target)
        defer { unlink(temp); unlink(temp + "-journal") }
        let pages = try writeCopy(of: backup, to: temp)
        try DurableFile.publish(temp, as: target)
        try DurableFile.syncDirectory(containing: target)
        return pages
    }

    /// Replaces a missing or unreadable live database with `backup`: a temp copy beside it,
    /// fsynced, renamed over it, stale `-wal`/`-shm`/`-journal` files moved aside, folder fsynced.
    /// The caller has checked that no process holds the file. Whatever was there is kept: the
    /// unreadable file and its side files are renamed to `aside` + suffix, never deleted.
    /// Returns the number of pages proven identical.
    /// - Throws: `Failure` `.io`.
    public func replace(livePath: String, with backup: OpenedBackup, aside: String) throws -> Int {
        let temp = DurableFile.temporaryPath(for: livePath)
        defer { unlink(temp); unlink(temp + "-journal") }
        let pages = try writeCopy(of: backup, to: temp)
        for suffix in ["", "-wal", "-shm", "-journal"] where FileManager.default.fileExists(atPath: livePath + suffix) {
            try DurableFile.publish(livePath + suffix, as: aside + suffix)
        }
        guard rename(temp, livePath) == 0 else { throw DurableFile.posixFailure("cannot rename \(temp) to \(livePath)", errno) }
        try DurableFile.syncDirectory(containing: livePath)
        try DurableFile.syncDirectory(containing: aside)
        return pages
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
            throw Failure(.unproven, "after the restore, \(what) does not hold the backup's pages (\(differences.pages.count) of \(differences.referencePageCount) differ)",
                          hint: "do not start the application; run 'deployctl verify' and restore again with --replace")
        }
        return differences.pageCount
    }
}

/// A SQL string literal.
func sqlLiteral(_ text: String) -> String {
    "'" + text.replacingOccurrences(of: "'", with: "''") + "'"
}
