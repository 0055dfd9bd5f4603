import Foundation

/// How a backup is stored: plain, gzip (`.db.gz`) or zstd (`.db.zst`).
public enum Compression: String, Sendable, Codable, CaseIterable {
    case none, gzip, zstd

    /// The name's suffix after `.db`.
    public var suffix: String {
        switch self {
        case .none: return ""
        case .gzip: return ".gz"
        case .zstd: return ".zst"
        }
    }

    /// The compression a backup name's suffix says.
    public static func of(name: String) -> Compression {
        name.hasSuffix(".db.gz") ? .gzip : name.hasSuffix(".db.zst") ? .zstd : .none
    }
}

/// The manifest stored beside each backup as `<backup>.json` (SPEC.md, Conventions).
public struct Manifest: Codable, Sendable, Equatable {
    /// The backup's file name.
    public var name: String
    /// SHA-256 of the file as stored (compressed bytes for `.gz`).
    public var sha256: String
    /// Size of the stored file in bytes.
    public var bytes: Int64
    /// Whether the stored file is compressed (gzip or zstd: see `compression`).
    public var compressed: Bool
    /// `gzip` or `zstd` (nil in manifests written before zstd: gzip when compressed).
    public var compression: String?
    /// Size of the database itself (the inflated size for `.gz`).
    public var databaseBytes: Int64
    public var pageSize: Int
    public var pageCount: Int
    public var sqliteVersion: String
    /// Migrations recorded in `deployctl_migrations` at snapshot time, in order.
    public var appliedMigrations: [String]
    /// The live database the backup was taken from.
    public var sourcePath: String
    public var createdAt: Date
    public var label: String
    /// When `backups verify` (or `--verify`) last found the backup good.
    public var verifiedAt: Date?
    /// The instance the backup was taken of (nil in manifests written before it was recorded).
    public var instance: String?
    /// The live database's path relative to the deployment root (nil in older manifests).
    public var database: String?
    /// Why the backup is stored as it is (the `pre_restore` copy is never compressed).
    public var note: String?
    /// The last SQLite check of the stored bytes, good or failed.
    public var verification: Verification?
    /// In a remote copy's manifest only: where and how the copy was stored.
    public var remote: RemoteCopy?

    /// A remote copy of a backup, as its manifest in the store records it.
    public struct RemoteCopy: Codable, Sendable, Equatable {
        /// The `[[offsite]]` remote's name and the host folder the copy is under.
        public var remote: String
        public var host: String
        /// The object's ETag as the store gave it after the upload (MD5-based), and its parts.
        public var etag: String
        public var parts: Int
        public var pushedAt: Date

        public init(remote: String, host: String, etag: String, parts: Int, pushedAt: Date) {
            self.remote = remote
            self.host = host
            self.etag = etag
            self.parts = parts
            self.pushedAt = pushedAt
        }

        enum CodingKeys: String, CodingKey {
            case remote, host, etag, parts
            case pushedAt = "pushed_at"
        }
    }

    /// One check of a backup: when, which check, its result, and the checksum of the bytes it
    /// checked (a later restore of the same bytes need not check them again).
    public struct Verification: Codable, Sendable, Equatable {
        public var at: Date
        /// `integrity_check` or `quick_check`.
        public var check: String
        /// `ok` or `failed`.
        public var result: String
        public var reason: String?
        public var sha256: String

        public init(at: Date, check: String, result: String, reason: String?, sha256: String) {
            self.at = at
            self.check = check
            self.result = result
            self.reason = reason
            self.sha256 = sha256
        }
    }

    /// Whether these exact bytes already passed `integrity_check`.
    public var passedIntegrityCheck: Bool {
        verification.map { $0.check == "integrity_check" && $0.result == "ok" && $0.sha256 == sha256 } ?? false
    }

    enum CodingKeys: String, CodingKey {
        case name, sha256, bytes, compressed, label
        case databaseBytes = "database_bytes"
        case pageSize = "page_size"
        case pageCount = "page_count"
        case sqliteVersion = "sqlite_version"
        case appliedMigrations = "applied_migrations"
        case sourcePath = "source_path"
        case createdAt = "created_at"
        case verifiedAt = "verified_at"
        case instance, database, note, verification, compression, remote
    }
}
