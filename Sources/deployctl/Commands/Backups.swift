import ArgumentParser
import Backup
import Foundation
import Support

struct Backups: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "List, verify, prune, remove and push an instance's backups (local, or in an [[offsite]] remote).",
        subcommands: [BackupsList.self, BackupsVerify.self, BackupsPrune.self, BackupsPush.self, BackupsRemove.self])
}

/// The retention rules of `snapshot` and `backups prune`; a backup is kept if any rule keeps it.
struct RetentionOptions: ParsableArguments {
    @Option(help: ArgumentHelp("Keep the newest N backups of each label (e.g. --keep-last 7).", valueName: "n"))
    var keepLast: Int?

    @Option(help: ArgumentHelp("Keep every backup created within this long: h, d, w, m (months), y, or a sum (e.g. --keep-within 30d, --keep-within 1y6m).", valueName: "duration"))
    var keepWithin: String?

    @Option(help: ArgumentHelp("Keep the newest backup of each of the last N days (UTC) that have one (e.g. --keep-daily 14).", valueName: "n"))
    var keepDaily: Int?

    @Option(help: ArgumentHelp("Keep the newest backup of each of the last N ISO weeks that have one (e.g. --keep-weekly 8).", valueName: "n"))
    var keepWeekly: Int?

    @Option(help: ArgumentHelp("Keep the newest backup of each of the last N months that have one (e.g. --keep-monthly 12).", valueName: "n"))
    var keepMonthly: Int?

    func validate() throws {
        for (name, value) in [("--keep-daily", keepDaily), ("--keep-weekly", keepWeekly), ("--keep-monthly", keepMonthly)] {
            if let value, value < 1 { throw ValidationError("\(name) must be at least 1.") }
        }
        if let keepLast, keepLast < 0 { throw ValidationError("--keep-last must be 0 or more.") }
        _ = try policy()
    }

    /// The rules given on the command line (empty when none was).
    func policy() throws -> RetentionPolicy {
        var within: RetentionDuration?
        if let keepWithin {
            do {
                within = try RetentionDuration(parsing: keepWithin)
            } catch let failure as Failure {
                throw ValidationError(failure.message)
            }
        }
        return RetentionPolicy(keepLast: keepLast, keepWithin: within, keepDaily: keepDaily, keepWeekly: keepWeekly, keepMonthly: keepMonthly)
    }
}

/// One backup as `--json` shows it.
struct BackupDocument: Encodable {
    let name: String
    let path: String
    let created_at: Date
    let bytes: Int64
    let compressed: Bool
    /// `gzip`, `zstd` or `none`.
    let compression: String
    /// Age-encrypted (`….age`).
    let encrypted: Bool
    let label: String
    let sha256: String?
    let status: String
    let verified_at: Date?
    /// The last check of the stored bytes, good or failed; nil when never checked.
    let verification: Manifest.Verification?
    /// Dated more than five minutes after the clock's now: written under a wrong clock.
    let future_dated: Bool

    init(_ entry: BackupEntry, now: Date) {
        name = entry.name
        path = entry.path
        created_at = entry.createdAt
        bytes = entry.bytes
        compressed = entry.compressed
        compression = entry.compression.rawValue
        encrypted = entry.encrypted
        label = entry.label
        sha256 = entry.manifest?.sha256
        status = entry.status.rawValue
        verified_at = entry.manifest?.verifiedAt
        verification = entry.manifest?.verification.flatMap { $0.sha256 == entry.manifest?.sha256 ? $0 : nil }
        future_dated = entry.isFutureDated(now: now)
    }
}
