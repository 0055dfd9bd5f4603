import Foundation
import SQLite
import Support

/// The connections a restore holds on the live database and on saved copies, opened here so
/// that the use case above passes them along and never opens one itself.
extension Restorer {
    /// The live database as a restore's preview reads it: `readOnly` (a dry run) never writes,
    /// not even the `-wal`; otherwise the connection that will perform the restore, held from
    /// the preview on so that SQLite can say whether anybody committed in between.
    public func openLive(_ path: String, readOnly: Bool) throws -> Connection {
        try Connection(path: path, mode: readOnly ? .inspect : .readWrite, busyTimeout: busyTimeout)
    }

    /// Compares a saved copy (`pre_restore`, `pre_putback`) with the backup: what the state it
    /// holds has that the backup does not.
    public func compare(savedAt path: String, backup: OpenedBackup) throws -> Comparison {
        try compare(Connection(path: path, mode: .immutable), backup: backup)
    }

    /// The page sizes of the backup and of a live database in WAL mode when they differ (SQLite's
    /// backup API cannot restore across page sizes into a WAL database); nil otherwise.
    public static func pageSizeMismatch(backup: OpenedBackup, livePath: String) -> (backup: Int64, live: Int64)? {
        guard let live = try? Connection(path: livePath, mode: .inspect), (try? live.journalMode()) == "wal" else { return nil }
        let sizes = ((try? Connection.pageSize(path: backup.databasePath, live: false)) ?? 0, (try? Connection.pageSize(path: livePath, live: true)) ?? 0)
        return sizes.0 == sizes.1 ? nil : sizes
    }
}
