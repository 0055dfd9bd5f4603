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
        /// The backup's logical content hash, which the restored database must have.
        public let backupHash: String
    }

    /// Compares every table of the live database with the backup, so the operator sees what a
    /// restore would discard: table fingerprints of both sides, computed on two cores at once,
    /// and row-set differences only for tables whose fingerprints differ. Reads only.
    /// - Throws: `SQLiteError`.
    public func compare(livePath: String, backup: OpenedBackup) throws -> Comparison {
        let timeout = busyTimeout
        let (livePrints, (backupPrints, backupHash)) = try bothAtOnce({
            let db = try Connection(path: livePath, mode: .inspect, busyTimeout: timeout)
            return try Dictionary(uniqueKeysWithValues: db.tableNames().map { ($0, try db.fingerprint(table: $0)) })
        }, {
            let db = try Connection(path: backup.databasePath, mode: .immutable)
            let prints = try Dictionary(uniqueKeysWithValues: db.tableNames().map { ($0, try db.fingerprint(table: $0)) })
            return (prints, try db.contentHash(known: prints))
        })

        let live = try Connection(path: livePath, mode: .inspect, busyTimeout: busyTimeout)
        try live.execute("ATTACH DATABASE \(sqlLiteral(Connection.uri(backup.databasePath, query: "immutable=1"))) AS restore_source")
        defer { try? live.execute("DETACH DATABASE restore_source") }
        var result = [TableDifference]()
        for table in Set(livePrints.keys).union(backupPrints.keys).sorted() {
            let liveRows = livePrints[table]?.rows
            let backupRows = backupPrints[table]?.rows
            guard let liveRows, let backupRows else {
                result.append(TableDifference(table: table, liveRows: liveRows, backupRows: backupRows,
                                              discarded: liveRows ?? 0, restored: backupRows ?? 0))
                continue
            }
            // Equal fingerprints mean equal rows: no set differences needed.
            if livePrints[table] == backupPrints[table] {
                result.append(TableDifference(table: table, liveRows: liveRows, backupRows: backupRows, discarded: 0, restored: 0))
                continue
            }
            guard try columns(live, table, "main") == columns(live, table, "restore_source") else {
                result.append(TableDifference(table: table, liveRows: liveRows, backupRows: backupRows,
                                              discarded: liveRows, restored: backupRows))
                continue
            }
            let q = quoteIdentifier(table)
            let discarded = try live.scalar("SELECT count(*) FROM (SELECT * FROM main.\(q) EXCEPT SELECT * FROM restore_source.\(q))").int ?? 0
            let restored = try live.scalar("SELECT count(*) FROM (SELECT * FROM restore_source.\(q) EXCEPT SELECT * FROM main.\(q))").int ?? 0
            result.append(TableDifference(table: table, liveRows: liveRows, backupRows: backupRows,
                                          discarded: Int(discarded), restored: Int(restored)))
        }
        return Comparison(differences: result, backupHash: backupHash)
    }

    private func columns(_ db: Connection, _ table: String, _ database: String) throws -> [String] {
        try db.rows("SELECT name FROM pragma_table_info(?, ?)", [.text(table), .text(database)]).compactMap { $0[0].string }
    }

    /// Restores `backup` into the live database with the backup API: one write transaction,
    /// correct with a `-wal` file present, keeping the live journal mode; then proves the live
    /// content equals the backup's. Returns the proven content hash.
    /// - Throws: `SQLiteError` (`.temporary` when the write lock is not had in time; the live
    ///   database is then unchanged); `Failure` `.unproven` when the proof fails.
    /// `expectedHash`, when given, is the backup's content hash from `compare`, so the backup
    /// is not hashed a second time.
    public func restore(_ backup: OpenedBackup, intoLive livePath: String, expectedHash: String? = nil) throws -> String {
        let live = try Connection(path: livePath, mode: .readWrite, busyTimeout: busyTimeout)
        let source = try Connection(path: backup.databasePath, mode: .immutable)
        try source.backup(into: live, timeout: busyTimeout)
        return try prove(live, equals: source, expectedHash: expectedHash, what: "the live database \(livePath)")
    }

    /// Restores `backup` into `target`, a file that must not exist: temp file, fsync, link
    /// without replacing, folder fsync. Returns the proven content hash.
    /// - Throws: `Failure` `.cannotCreate` when `target` exists or cannot be created.
    public func restore(_ backup: OpenedBackup, toNewFile target: String) throws -> String {
        guard !FileManager.default.fileExists(atPath: target) else {
            throw Failure(.cannotCreate, "\(target) exists; --to only writes a new file",
                          hint: "choose a path that does not exist")
        }
        let temp = DurableFile.temporaryPath(for: target)
        defer { unlink(temp); unlink(temp + "-journal") }
        let hash = try writeCopy(of: backup, to: temp)
        try DurableFile.publish(temp, as: target)
        try DurableFile.syncDirectory(containing: target)
        return hash
    }

    /// Replaces a missing or unreadable live database with `backup`: a temp copy beside it,
    /// fsynced, renamed over it, stale `-wal`/`-shm`/`-journal` files moved aside, folder fsynced.
    /// The caller has checked that no process holds the file. Whatever was there is kept: the
    /// unreadable file and its side files are renamed to `aside` + suffix, never deleted.
    /// Returns the proven content hash.
    /// - Throws: `Failure` `.io`.
    public func replace(livePath: String, with backup: OpenedBackup, aside: String) throws -> String {
        let temp = DurableFile.temporaryPath(for: livePath)
        defer { unlink(temp); unlink(temp + "-journal") }
        let hash = try writeCopy(of: backup, to: temp)
        for suffix in ["", "-wal", "-shm", "-journal"] where FileManager.default.fileExists(atPath: livePath + suffix) {
            try DurableFile.publish(livePath + suffix, as: aside + suffix)
        }
        guard rename(temp, livePath) == 0 else { throw DurableFile.posixFailure("cannot rename \(temp) to \(livePath)", errno) }
        try DurableFile.syncDirectory(containing: livePath)
        try DurableFile.syncDirectory(containing: aside)
        return hash
    }

    private func writeCopy(of backup: OpenedBackup, to temp: String) throws -> String {
        let fd = try DurableFile.createNew(temp)
        close(fd)
        let hash: String
        do {
            let destination = try Connection(path: temp, mode: .create)
            let source = try Connection(path: backup.databasePath, mode: .immutable)
            try source.backup(into: destination, timeout: busyTimeout)
            hash = try prove(destination, equals: source, what: temp)
        }
        try DurableFile.syncFile(temp)
        return hash
    }

    private func prove(_ restored: Connection, equals source: Connection, expectedHash: String? = nil, what: String) throws -> String {
        let restoredHash = try restored.contentHash()
        let sourceHash = try expectedHash ?? source.contentHash()
        guard restoredHash == sourceHash else {
            throw Failure(.unproven, "after the restore, \(what) does not hold the backup's content (content hash \(restoredHash.prefix(12)) ≠ \(sourceHash.prefix(12)))",
                          hint: "do not start the application; run 'deployctl verify' and restore again with --replace")
        }
        return restoredHash
    }
}

/// A SQL string literal.
func sqlLiteral(_ text: String) -> String {
    "'" + text.replacingOccurrences(of: "'", with: "''") + "'"
}
