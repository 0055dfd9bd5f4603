import Backup
import Foundation
import Locking
import Migration
import SQLite
import Support

/// The result of `deployctl verify`.
public struct LiveVerification: Codable, Sendable {
    public let instance: String
    public let database: String
    public let problems: [String]
    public let applied: [String]
    public let pending: [String]
    /// Whether quick_check or foreign_key_check found a problem (else the problems are about
    /// migration files: the database itself is sound).
    public let damaged: Bool
    public var ok: Bool { problems.isEmpty }
}

/// The result of `deployctl status`.
public struct InstanceStatus: Codable, Sendable {
    public let instance: String
    public let database: String
    public let exists: Bool
    public let bytes: Int64?
    public let journalMode: String?
    /// Nil (left out of `--json`) when the database could not be read: unknown, not "none".
    public let applied: [String]?
    public let pending: [String]?
    public let lastBackup: String?
    /// When the last backup was taken, and its stored size.
    public let lastBackupAt: Date?
    public let lastBackupBytes: Int64?
    /// When the last deploy finished (or started, when it never finished).
    public let lastDeployAt: Date?
    public let lastDeploy: String?
    public let lastDeployOutcome: DeployOutcome?
    /// How long the last deploy blocked the application's writes, in milliseconds (its report's
    /// `write_lock_ms`), when it got that far.
    public let lastDeployWriteLockMilliseconds: Double?
    public let lockHolder: LockHolder?
    public let databaseHolders: [DatabaseHolder]
    /// A deploy whose process died before it ended (its journal is left and no live process
    /// holds the lock for it): the next deploy or restore finishes or undoes it.
    public let unfinishedDeploy: String?
    /// A deploy or restore running now: its process holds the instance lock.
    public let inProgress: WorkInProgress?
    /// Bytes of temp files left by runs that died (the next writing command removes them).
    public let leftoverBytes: Int64
    /// Backups whose manifest is dated more than five minutes ahead of this host's clock
    /// (clock skew): never taken as the last backup.
    public let futureDatedBackups: [String]
    /// The most recent check of any backup: which, when, and how it went.
    public let lastVerification: LastVerification?
    /// Backups whose last check failed.
    public let failedBackups: [String]
    /// The bundled example (its config builds the database from seed SQL): `status all` lists
    /// it, but its problems never make `status all` fail.
    public let example: Bool
    /// What a person should know but that needs no action now (no exit code): no backup and
    /// no `max_backup_age`, an instance outside deploy.toml's order, a database busy with the
    /// deploy or restore in progress.
    public let warnings: [String]
    /// What needs a person, most severe first (empty when all is well); `status` exits
    /// non-zero with the first one's kind.
    public let problems: [StatusProblem]
    /// Each `[[offsite]]` remote: this host's newest good copy there, or why it could not be
    /// listed (shown, not a problem: a store being down does not make the instance unhealthy).
    public let remotes: [RemoteStatus]
    /// The database's name, in an instance of several (`[[database]]`).
    public var databaseName: String? = nil
    /// `instance` or `instance/database`.
    public var label: String { databaseName.map { "\(instance)/\($0)" } ?? instance }

    public struct RemoteStatus: Codable, Sendable {
        public let name: String
        public let newest: String?
        public let newestAt: Date?
        public let error: String?

        enum CodingKeys: String, CodingKey {
            case name, newest, error
            case newestAt = "newest_at"
        }
    }

    public struct LastVerification: Codable, Sendable {
        public let backup: String
        public let at: Date
        public let result: String
        public let reason: String?
        /// `integrity_check` or `quick_check`.
        public let check: String
    }

    enum CodingKeys: String, CodingKey {
        case instance, database, exists, bytes, applied, pending
        case databaseName = "database_name"
        case journalMode = "journal_mode"
        case lastBackup = "last_backup"
        case lastBackupAt = "last_backup_at"
        case lastBackupBytes = "last_backup_bytes"
        case lastDeployAt = "last_deploy_at"
        case lastDeploy = "last_deploy"
        case lastDeployOutcome = "last_deploy_outcome"
        case lastDeployWriteLockMilliseconds = "last_deploy_write_lock_ms"
        case lockHolder = "lock_holder"
        case databaseHolders = "database_holders"
        case unfinishedDeploy = "unfinished_deploy"
        case inProgress = "in_progress"
        case leftoverBytes = "leftover_bytes"
        case futureDatedBackups = "future_dated_backups"
        case lastVerification = "last_verification"
        case failedBackups = "failed_backups"
        case problems, remotes, example, warnings
    }
}

/// A deploy or restore that is running: its process holds the instance lock (so it is alive).
public struct WorkInProgress: Codable, Sendable {
    /// `deploy` or `restore`.
    public let operation: String
    /// The process doing it (alive: it holds the lock).
    public let pid: Int32
    /// The stage it is at (a deploy's journal says; a restore records it in the lock file).
    public let stage: String?
    /// The deploy's id, or for a deploy or restore finishing a killed deploy first, that one's.
    public let deployId: String?
    /// The holder's command line.
    public let command: String
    /// When it took the instance lock.
    public let since: Date

    enum CodingKeys: String, CodingKey {
        case operation, pid, stage, command, since
        case deployId = "deploy_id"
    }
}

/// Something `status` found that needs a person: its code, whose kind decides the exit code.
public struct StatusProblem: Codable, Sendable, Equatable {
    public let code: FailureCode
    public let message: String
    public var kind: FailureKind { code.kind }

    public init(_ code: FailureCode, message: String) {
        self.code = code
        self.message = message
    }

    enum CodingKeys: String, CodingKey { case kind, code, message }

    public func encode(to encoder: Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(kind, forKey: .kind)
        try container.encode(code.rawValue, forKey: .code)
        try container.encode(message, forKey: .message)
    }

    public init(from decoder: Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        let kind = try container.decode(FailureKind.self, forKey: .kind)
        code = FailureCode(try container.decodeIfPresent(String.self, forKey: .code) ?? "unclassified.\(kind.rawValue)", kind)
        message = try container.decode(String.self, forKey: .message)
    }

    /// Most severe first: a broken config, a missing database, bad data, work left for a
    /// person, a stale backup.
    static let severity: [FailureKind] = [.usage, .missingInput, .badData, .unproven, .temporary, .failed]
}
