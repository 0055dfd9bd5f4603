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

    /// The compression a backup name's suffix says (under any `.age`).
    public static func of(name: String) -> Compression {
        let inner = BackupStore.unencryptedName(name)
        return inner.hasSuffix(".db.gz") ? .gzip : inner.hasSuffix(".db.zst") ? .zstd : .none
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
    /// For a restore copy stored again compressed: the plain backup it was made from (removed
    /// once this one checked good; a crash in between leaves both, and the plain one goes next).
    public var compressedFrom: String?
    /// In a remote copy's manifest only: where and how the copy was stored.
    public var remote: RemoteCopy?
    /// For an encrypted backup (`….age`): how, to whom, and what the decrypted file must be.
    public var encryption: Encryption?
    /// For a backup of one database of an instance with several (`[[database]]`): the set it
    /// was taken in (nil for an instance with one database, and in older manifests).
    public var set: SetMembership?

    /// The backups one deploy or one `snapshot` run took of every database of an instance:
    /// restoring the newest complete set gives every database back from one moment.
    public struct SetMembership: Codable, Sendable, Equatable {
        /// The deploy id, or the snapshot run's id: the same in every member.
        public var id: String
        /// This backup's database (`[[database]] name`).
        public var database: String
        /// Every database of the set, in the instance's order.
        public var databases: [String]

        public init(id: String, database: String, databases: [String]) {
            self.id = id
            self.database = database
            self.databases = databases
        }
    }

    /// The checksum of the backup's content before any encryption: the same for a local backup
    /// and its encrypted remote copy, so the two are known to be one backup.
    public var contentSha256: String { encryption?.plaintextSha256 ?? sha256 }

    /// How an encrypted backup was encrypted. `sha256` and `bytes` of the manifest are the
    /// encrypted file's (checked without the key); these are the decrypted file's.
    public struct Encryption: Codable, Sendable, Equatable {
        /// `age-encryption.org/v1`.
        public var format: String
        /// The age recipients (public keys) it was encrypted to: an identity for one of them opens it.
        public var recipients: [String]
        /// SHA-256 and size of the decrypted file (the `.db.gz`, `.db.zst` or `.db` inside).
        public var plaintextSha256: String
        public var plaintextBytes: Int64

        public init(recipients: [String], plaintextSha256: String, plaintextBytes: Int64) {
            self.format = "age-encryption.org/v1"
            self.recipients = recipients
            self.plaintextSha256 = plaintextSha256
            self.plaintextBytes = plaintextBytes
        }

        enum CodingKeys: String, CodingKey {
            case format, recipients
            case plaintextSha256 = "plaintext_sha256"
            case plaintextBytes = "plaintext_bytes"
        }
    }

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
        /// Which check ran.
        public var check: Check
        public var result: Outcome
        public var reason: String?
        public var sha256: String

        /// Which check ran; the raw values are the manifest's text.
        public enum Check: String, Codable, Sendable {
            case integrityCheck = "integrity_check"
            case quickCheck = "quick_check"
            /// Only the encrypted file's checksum could be checked (no identity to decrypt it).
            case sha256
        }

        /// How it ended; the raw values are the manifest's text.
        public enum Outcome: String, Codable, Sendable {
            case ok, failed
        }

        public init(at: Date, check: Check, result: Outcome, reason: String?, sha256: String) {
            self.at = at
            self.check = check
            self.result = result
            self.reason = reason
            self.sha256 = sha256
        }
    }

    /// Whether these exact bytes already passed `integrity_check`.
    public var passedIntegrityCheck: Bool {
        verification.map { $0.check == .integrityCheck && $0.result == .ok && $0.sha256 == sha256 } ?? false
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
        case instance, database, note, verification, compression, remote, encryption, set
        case compressedFrom = "compressed_from"
    }
}
