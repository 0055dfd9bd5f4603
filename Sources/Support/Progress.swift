/// A long phase of work, as the library names it; the CLI chooses the words shown for it.
public enum Phase: Sendable, Equatable {
    /// Copying the database with SQLite's online backup API.
    case copying
    /// Compressing a copy (`gzip`, `zstd`).
    case compressing(algorithm: String)
    /// Encrypting an uncompressed copy (age).
    case encrypting
    /// Planning: every pending statement run on a copy of the database.
    case planning
    /// Checking one backup of several: checksum, then `integrity_check`.
    case checkingBackup(name: String, number: Int, of: Int)
    /// Checking the chosen backup and comparing it with the live database (restore preview).
    case comparingWithLive
    /// Saving the live database as a `pre_restore` backup.
    case savingPreRestore
    /// Committing the backup's pages into the live database.
    case restoringPages
    /// Proving every live page equals the backup's after a restore.
    case provingRestore
    /// Copying a backup to an object store, or from one.
    case uploading(name: String, remote: String)
    case downloading(name: String, remote: String)
    /// Copying a table's rows into its rebuilt version while the application writes (online
    /// rebuild); done and total count rows, not bytes.
    case copyingRows(table: String)

    /// Whether done and total count rows rather than bytes.
    public var countsRows: Bool {
        if case .copyingRows = self { return true }
        return false
    }
}

/// Progress of long work, reported to a `ProgressHandler`: a phase with bytes done of a total
/// (total 0 when unknown), then its end.
public enum WorkProgress: Sendable, Equatable {
    case working(Phase, done: Int64, total: Int64)
    /// The phase ended. `announce`: whether a renderer may mark it done (it took long enough
    /// to be worth a line); false when the caller reports its outcome itself.
    case ended(announce: Bool)

    /// A phase started or went on, with no byte count.
    public static func working(_ phase: Phase) -> WorkProgress { .working(phase, done: 0, total: 0) }
}

/// Receives progress of long work; the CLI draws it on a terminal only.
public typealias ProgressHandler = @Sendable (WorkProgress) -> Void

extension Duration {
    /// The duration in milliseconds, fractions kept (for reports: `write_lock_ms`, `statement_ms`).
    public var milliseconds: Double { Double(components.seconds) * 1000 + Double(components.attoseconds) / 1e15 }

    /// The duration in seconds, fractions kept.
    public var seconds: Double { Double(components.seconds) + Double(components.attoseconds) / 1e18 }
}
