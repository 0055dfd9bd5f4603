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
    public let lockHolder: LockHolder?
    public let databaseHolders: [DatabaseHolder]
    public let unfinishedDeploy: String?
    /// Bytes of temp files left by runs that died (the next writing command removes them).
    public let leftoverBytes: Int64
    /// Backups whose manifest is dated more than five minutes ahead of this host's clock
    /// (clock skew): never taken as the last backup.
    public let futureDatedBackups: [String]
    /// The most recent check of any backup: which, when, and how it went.
    public let lastVerification: LastVerification?
    /// Backups whose last check failed.
    public let failedBackups: [String]
    /// What needs a person, most severe first (empty when all is well); `status` exits
    /// non-zero with the first one's kind.
    public let problems: [StatusProblem]
    /// Each `[[offsite]]` remote: this host's newest good copy there, or why it could not be
    /// listed (shown, not a problem: a store being down does not make the instance unhealthy).
    public let remotes: [RemoteStatus]

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
        case journalMode = "journal_mode"
        case lastBackup = "last_backup"
        case lastBackupAt = "last_backup_at"
        case lastBackupBytes = "last_backup_bytes"
        case lastDeployAt = "last_deploy_at"
        case lastDeploy = "last_deploy"
        case lastDeployOutcome = "last_deploy_outcome"
        case lockHolder = "lock_holder"
        case databaseHolders = "database_holders"
        case unfinishedDeploy = "unfinished_deploy"
        case leftoverBytes = "leftover_bytes"
        case futureDatedBackups = "future_dated_backups"
        case lastVerification = "last_verification"
        case failedBackups = "failed_backups"
        case problems, remotes
    }
}

/// Something `status` found that needs a person, and its kind (which decides the exit code).
public struct StatusProblem: Codable, Sendable, Equatable {
    public let kind: FailureKind
    public let message: String

    public init(kind: FailureKind, message: String) {
        self.kind = kind
        self.message = message
    }

    /// Most severe first: a broken config, a missing database, bad data, work left for a
    /// person, a stale backup.
    static let severity: [FailureKind] = [.usage, .missingInput, .badData, .unproven, .temporary, .failed]
}

extension Runtime {
    /// `deployctl verify`: integrity of the live database and applied migrations matching their
    /// files; pending migrations are reported, not a failure. Reads only.
    /// - Throws: `Failure` for config or a missing database.
    public func verifyLive(instance name: String) throws -> LiveVerification {
        let config = try workspace.instance(name)
        let db = try Connection(path: config.databasePath, mode: .inspect, busyTimeout: config.busyTimeout)
        var problems = try db.integrityProblems().map { "quick_check: \($0)" }
        problems += try db.foreignKeyProblems().prefix(10).map { "foreign_key_check: \($0)" }
        let files = try MigrationFile.loadAll(folder: try workspace.deployConfig().migrationsFolder)
        let applied = try History.applied(db)
        var pending = [String]()
        do {
            pending = try History.pending(files: files, applied: applied).map(\.key)
        } catch let failure as Failure {
            problems.append(failure.message)
        }
        return LiveVerification(instance: name, database: config.databasePath, problems: problems,
                                applied: applied.map(\.key), pending: pending)
    }

    /// `deployctl status`: what an operator checks first. Reads only; an unfinished deploy is
    /// reported, not recovered.
    /// - Throws: `Failure` for config.
    public func status(instance name: String) throws -> InstanceStatus {
        let config = try workspace.instance(name)
        let exists = FileManager.default.fileExists(atPath: config.databasePath)
        var bytes: Int64?
        var mode: String?
        var applied: [String]?
        var pending: [String]?
        var problems = [StatusProblem]()
        if exists {
            bytes = ((try? FileManager.default.attributesOfItem(atPath: config.databasePath))?[.size] as? NSNumber)?.int64Value
            do {
                try Connection.checkIsDatabase(config.databasePath)
                let db = try Connection(path: config.databasePath, mode: .inspect, busyTimeout: config.busyTimeout)
                mode = try db.journalMode()
                let rows = (try? History.applied(db)) ?? []
                applied = rows.map(\.key)
                let files = (try? MigrationFile.loadAll(folder: try workspace.deployConfig().migrationsFolder)) ?? []
                pending = files.filter { file in !rows.contains { $0.id == file.id } }.map(\.key)
            } catch let failure as Failure {
                problems.append(StatusProblem(kind: failure.kind == .badData ? .badData : .failed, message: failure.message))
            } catch let error as SQLiteError where error.kind == .temporary {
                problems.append(StatusProblem(kind: .temporary, message: "\(config.databasePath) is locked by another process for longer than the busy timeout; status could not read it"))
            } catch let error as SQLiteError {
                problems.append(StatusProblem(kind: .badData, message: "\(config.databasePath) cannot be read as a SQLite database: \(error.sqliteMessage)"))
            }
        } else {
            problems.append(StatusProblem(kind: .missingInput, message: "database \(config.databasePath) does not exist"))
        }
        let reports = deployReports(config)
        let lock = InstanceLock.inspect(path: config.lockPath)
        let now = clock()
        let backups = store(config).entries()
        var unfinished: String?
        do {
            unfinished = try DeployJournal.read(path: config.journalPath)?.deployId
            if let unfinished {
                problems.append(StatusProblem(kind: .unproven, message: "deploy \(unfinished) is unfinished: the next deploy or restore finishes or undoes it"))
            }
        } catch let failure as Failure {
            problems.append(StatusProblem(kind: .badData, message: failure.message))
        }
        for entry in backups where entry.status == "failed" {
            problems.append(StatusProblem(kind: .badData, message: "backup \(entry.name) failed its last check"))
        }
        for entry in backups where entry.isFutureDated(now: now) {
            problems.append(StatusProblem(kind: .unproven, message: "backup \(entry.name) is dated in the future (\(entry.createdAt)): check the clock, then remove it"))
        }
        let usable = backups.first { !$0.isFutureDated(now: now) && $0.status != "failed" }
        if let maxAge = config.maxBackupAge {
            if let usable {
                if usable.createdAt < maxAge.cutoff(before: now) {
                    let hours = Int(now.timeIntervalSince(usable.createdAt) / 3600)
                    problems.append(StatusProblem(kind: .failed, message: "the newest backup, \(usable.name), is \(hours) h old: older than max_backup_age \(maxAge)"))
                }
            } else {
                problems.append(StatusProblem(kind: .failed, message: "no usable backup, and max_backup_age is \(maxAge)"))
            }
        }
        problems.sort { (StatusProblem.severity.firstIndex(of: $0.kind) ?? 9) < (StatusProblem.severity.firstIndex(of: $1.kind) ?? 9) }
        return InstanceStatus(
            instance: name, database: config.databasePath, exists: exists, bytes: bytes, journalMode: mode,
            applied: applied, pending: pending, lastBackup: usable?.name, lastBackupAt: usable?.createdAt, lastBackupBytes: usable?.bytes,
            lastDeployAt: reports.first.map { $0.finishedAt ?? $0.startedAt },
            lastDeploy: reports.first?.deployId, lastDeployOutcome: reports.first?.outcome,
            lockHolder: lock.held ? lock.holder : nil, databaseHolders: exists ? DatabaseHolders.find(path: config.databasePath) : [],
            unfinishedDeploy: unfinished,
            leftoverBytes: Self.leftovers(config).reduce(0) { $0 + $1.bytes },
            futureDatedBackups: backups.filter { $0.isFutureDated(now: now) }.map(\.name),
            // A checksum-only check of an encrypted backup (no key here) is not a verification.
            lastVerification: backups.compactMap { entry in
                entry.manifest?.verification.flatMap { $0.check == "sha256" ? nil
                    : InstanceStatus.LastVerification(backup: entry.name, at: $0.at, result: $0.result, reason: $0.reason, check: $0.check) }
            }.max { $0.at < $1.at },
            failedBackups: backups.filter { $0.status == "failed" }.map(\.name), problems: problems,
            remotes: config.offsite.map { remote in
                do {
                    let newest = try remoteBackups(config, remote, try client(remote), host: nil).0.first { $0.problem == nil }
                    return InstanceStatus.RemoteStatus(name: remote.name, newest: newest?.name, newestAt: newest?.createdAt, error: nil)
                } catch let error as DeployctlError {
                    return InstanceStatus.RemoteStatus(name: remote.name, newest: nil, newestAt: nil, error: error.message)
                } catch {
                    return InstanceStatus.RemoteStatus(name: remote.name, newest: nil, newestAt: nil, error: "\(error)")
                }
            })
    }

    /// `deployctl history`: past deploys, newest first.
    public func history(instance name: String) throws -> [DeployReport] {
        deployReports(try workspace.instance(name))
    }

    func deployReports(_ config: InstanceConfig) -> [DeployReport] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: config.deploysFolder)) ?? []
        let decoder = JSON.decoder()
        return names.filter { $0.hasSuffix(".json") && !$0.hasPrefix(".") }
            .compactMap { FileManager.default.contents(atPath: config.deploysFolder + "/" + $0).flatMap { try? decoder.decode(DeployReport.self, from: $0) } }
            // Reports store whole seconds; the id's milliseconds order deploys started in the same second.
            .sorted { ($0.startedAt, $0.deployId) > ($1.startedAt, $1.deployId) }
    }
}
