import Foundation

/// The manifest stored beside each backup as `<backup>.json` (SPEC.md, Conventions).
public struct Manifest: Codable, Sendable, Equatable {
    /// The backup's file name.
    public var name: String
    /// SHA-256 of the file as stored (compressed bytes for `.gz`).
    public var sha256: String
    /// Size of the stored file in bytes.
    public var bytes: Int64
    /// Whether the stored file is gzip.
    public var compressed: Bool
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
    }
}
