import ArgumentParser
import Backup
import Foundation

struct Backups: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "List, verify and prune an instance's backups.",
        subcommands: [BackupsList.self, BackupsVerify.self, BackupsPrune.self])
}

/// One backup as `--json` shows it.
struct BackupDocument: Encodable {
    let name: String
    let path: String
    let created_at: Date
    let bytes: Int64
    let compressed: Bool
    let label: String
    let sha256: String?
    let status: String
    let verified_at: Date?

    init(_ entry: BackupEntry) {
        name = entry.name
        path = entry.path
        created_at = entry.createdAt
        bytes = entry.bytes
        compressed = entry.compressed
        label = entry.label
        sha256 = entry.manifest?.sha256
        status = entry.status
        verified_at = entry.manifest?.verifiedAt
    }
}
