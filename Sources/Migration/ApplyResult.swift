import Foundation
import SQLite
import Support

/// The schema and row counts a rehearsal produced, for the live run to match.
public struct Rehearsal: Codable, Sendable {
    public let schema: [SchemaObject]
    public let rowCounts: [String: Int]

    enum CodingKeys: String, CodingKey {
        case schema
        case rowCounts = "row_counts"
    }
}

/// What applying the pending migrations did.
public struct ApplyResult: Codable, Sendable {
    public let tablesCreated: [String]
    public let tablesAlreadyExisted: [String]
    /// Pre-existing tables proven unchanged.
    public let tablesProvenUnchanged: Int
    /// How they were proven (nil when not: a rehearsal, or a non-additive migration).
    public let unchangedProof: String?
    /// How long the write lock was held (application writes blocked), in milliseconds.
    public let writeLockMilliseconds: Double
    /// The resulting schema and row counts.
    public let result: Rehearsal

    public init(tablesCreated: [String], tablesAlreadyExisted: [String], tablesProvenUnchanged: Int, unchangedProof: String?,
                writeLockMilliseconds: Double, result: Rehearsal) {
        self.tablesCreated = tablesCreated
        self.tablesAlreadyExisted = tablesAlreadyExisted
        self.tablesProvenUnchanged = tablesProvenUnchanged
        self.unchangedProof = unchangedProof
        self.writeLockMilliseconds = writeLockMilliseconds
        self.result = result
    }

    enum CodingKeys: String, CodingKey {
        case result
        case tablesCreated = "tables_created"
        case tablesAlreadyExisted = "tables_already_existed"
        case tablesProvenUnchanged = "tables_proven_unchanged"
        case unchangedProof = "unchanged_proof"
        case writeLockMilliseconds = "write_lock_ms"
    }
}

/// What the Applier reports as it runs each statement; the CLI renders it.
public enum TableEvent: Sendable, Equatable {
    case creating(String)
    case created(String)
    case alreadyExists(String)
}
