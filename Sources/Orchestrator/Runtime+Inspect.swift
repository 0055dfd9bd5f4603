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

extension Runtime {
    /// `deployctl verify`: integrity of the live database and applied migrations matching their
    /// files; pending migrations are reported, not a failure. Reads only.
    /// - Throws: `Failure` for config or a missing database.
    public func verifyLive(instance name: String) throws -> LiveVerification {
        let config = try workspace.instance(name)
        try checkAccess(config, .readDatabase)
        let db = try Connection(path: config.databasePath, mode: .inspect, busyTimeout: config.busyTimeout)
        var problems = try db.integrityProblems().map { "quick_check: \($0)" }
        problems += try db.foreignKeyProblems().prefix(10).map { "foreign_key_check: \($0)" }
        let damaged = !problems.isEmpty
        let files = try MigrationFile.loadAll(folder: try workspace.deployConfig().migrationsFolder)
        let applied = try History.applied(db)
        var pending = [String]()
        do {
            pending = try History.pending(files: files, applied: applied).map(\.key)
        } catch var changed as MigrationFileChanged {
            changed.instance = name
            problems.append("\(changed.message): \(changed.hint!)")
        } catch let failure as Failure {
            problems.append(failure.message)
        }
        return LiveVerification(instance: name, database: config.databasePath, problems: problems,
                                applied: applied.map(\.key), pending: pending, damaged: damaged)
    }

    /// `deployctl status`: what an operator checks first. Reads only; an unfinished deploy is
    /// reported, not recovered. A deploy or restore whose process holds the instance lock is in
    /// progress (no problem); a deploy journal no live process holds the lock for is unfinished.
    /// `pre_*` copies (a deploy's snapshot, the state a restore replaced) are never the last
    /// backup: they are not the backups `max_backup_age` watches.
    /// - Throws: `Failure` for config.
    public func status(instance name: String) throws -> InstanceStatus {
        let config = try workspace.instance(name)
        try checkAccess(config, .inspect)
        let exists = FileManager.default.fileExists(atPath: config.databasePath)
        var problems = [StatusProblem]()
        var warnings = [String]()
        let lock = InstanceLock.inspect(path: config.lockPath)
        var journal: DeployJournal?
        do {
            journal = try DeployJournal.read(path: config.journalPath)
        } catch let failure as Failure {
            problems.append(StatusProblem(failure.code, message: failure.message))
        }
        let work = Self.workInProgress(lock: lock, journal: journal)
        var unfinished: String?
        if let journal {
            unfinished = journal.deployId
            if work == nil {
                problems.append(StatusProblem(.deployUnfinished, message: "deploy \(journal.deployId) is unfinished: the next deploy or restore finishes or undoes it (it stopped at stage \(journal.stage), and no live process holds the instance lock)"))
            }
        }
        var bytes: Int64?
        var mode: String?
        var applied: [String]?
        var pending: [String]?
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
                if work == nil, let source = OnlineRebuild.leftover(db) {
                    warnings.append("an online rebuild of \(source) left its shadow table and triggers in the database (a run that could not remove them, e.g. on a full disk): the application's writes to \(source) are copied into them until 'deployctl deploy \(name)' removes them")
                }
                do {
                    _ = try History.pending(files: files, applied: rows)
                } catch var changed as MigrationFileChanged {
                    changed.instance = name
                    problems.append(StatusProblem(changed.code, message: "\(changed.message): \(changed.hint!)"))
                } catch {
                    // A missing file is reported by verify and deploy; status shows what it can.
                }
            } catch let failure as Failure {
                problems.append(StatusProblem(failure.kind == .badData ? failure.code : .statusCheckFailed, message: failure.message))
            } catch let error as SQLiteError where error.kind == .temporary {
                if let work {
                    // The deploy or restore in progress holds the write lock: expected, not a problem.
                    warnings.append("\(config.databasePath) is busy with the \(work.operation) in progress; status could not read it")
                } else {
                    problems.append(StatusProblem(.sqliteBusy, message: "\(config.databasePath) is locked by another process for longer than the busy timeout; status could not read it"))
                }
            } catch let error as SQLiteError {
                problems.append(StatusProblem(.databaseUnreadable, message: "\(config.databasePath) cannot be read as a SQLite database: \(error.sqliteMessage)"))
            }
        } else {
            problems.append(StatusProblem(.databaseMissing, message: "database \(config.databasePath) does not exist"))
        }
        let reports = deployReports(config)
        let now = clock()
        let backups = store(config).entries()
        for entry in backups where entry.status == "failed" {
            problems.append(StatusProblem(.backupFailedCheck, message: "backup \(entry.name) failed its last check: check it again with 'deployctl backups verify \(name) \(entry.name)', or retire it with 'deployctl backups remove \(name) \(entry.name)'"))
        }
        for entry in backups where entry.isFutureDated(now: now) {
            problems.append(StatusProblem(.backupFutureDated, message: "backup \(entry.name) is dated in the future (\(entry.createdAt)): check the clock, then remove it"))
        }
        let usable = backups.first { !$0.isFutureDated(now: now) && $0.status != "failed" && !Self.isOwnCopy($0) }
        let ownCopies = backups.filter(Self.isOwnCopy).count
        let notCounted = ownCopies > 0 ? " (not counting \(counted(ownCopies, "pre_* copy", "pre_* copies")) made by deploys or restores)" : ""
        if let maxAge = config.maxBackupAge {
            if let usable {
                if usable.createdAt < maxAge.cutoff(before: now) {
                    let hours = Int(now.timeIntervalSince(usable.createdAt) / 3600)
                    problems.append(StatusProblem(.backupStale, message: "the newest backup, \(usable.name), is \(hours) h old: older than max_backup_age \(maxAge)"))
                }
            } else {
                problems.append(StatusProblem(.backupStale, message: "no usable backup\(notCounted), and max_backup_age is \(maxAge): take one with 'deployctl snapshot \(name)'"))
            }
        } else if usable == nil {
            warnings.append("no backup\(notCounted), and no max_backup_age to say how old one may be: set [backups] max_backup_age in \(config.file) (e.g. \"26h\" for nightly snapshots)")
        }
        if config.seedSQL == nil, let order = try? workspace.deployConfig().order, !order.isEmpty, !order.contains(name) {
            warnings.append("not in deploy.toml's order: 'deploy all' and promotion checks leave it out")
        }
        problems.sort { (StatusProblem.severity.firstIndex(of: $0.kind) ?? 9) < (StatusProblem.severity.firstIndex(of: $1.kind) ?? 9) }
        return InstanceStatus(
            instance: name, database: config.databasePath, exists: exists, bytes: bytes, journalMode: mode,
            applied: applied, pending: pending, lastBackup: usable?.name, lastBackupAt: usable?.createdAt, lastBackupBytes: usable?.bytes,
            lastDeployAt: reports.first.map { $0.finishedAt ?? $0.startedAt },
            lastDeploy: reports.first?.deployId, lastDeployOutcome: reports.first?.outcome,
            lastDeployWriteLockMilliseconds: reports.first?.writeLockMilliseconds,
            lockHolder: lock.held ? lock.holder : nil, databaseHolders: exists ? DatabaseHolders.find(path: config.databasePath) : [],
            unfinishedDeploy: work == nil ? unfinished : nil, inProgress: work,
            leftoverBytes: Self.leftovers(config).reduce(0) { $0 + $1.bytes },
            futureDatedBackups: backups.filter { $0.isFutureDated(now: now) }.map(\.name),
            // A checksum-only check of an encrypted backup (no key here) is not a verification.
            lastVerification: backups.compactMap { entry in
                entry.manifest?.verification.flatMap { $0.check == "sha256" ? nil
                    : InstanceStatus.LastVerification(backup: entry.name, at: $0.at, result: $0.result, reason: $0.reason, check: $0.check) }
            }.max { $0.at < $1.at },
            failedBackups: backups.filter { $0.status == "failed" }.map(\.name),
            example: config.seedSQL != nil, warnings: warnings, problems: problems,
            remotes: config.offsite.map { remote in
                do {
                    let newest = try remoteBackups(config, remote, try client(remote), host: nil, allowUnsigned: false).0.first { $0.problem == nil }
                    return InstanceStatus.RemoteStatus(name: remote.name, newest: newest?.name, newestAt: newest?.createdAt, error: nil)
                } catch let error as DeployctlError {
                    return InstanceStatus.RemoteStatus(name: remote.name, newest: nil, newestAt: nil, error: error.message)
                } catch {
                    return InstanceStatus.RemoteStatus(name: remote.name, newest: nil, newestAt: nil, error: "\(error)")
                }
            })
    }

    /// Whether a backup is a copy a deploy or restore made for itself (`pre_<migration>`,
    /// `pre_restore`): kept for undoing that run, not the scheduled backups `max_backup_age`
    /// and the last-backup metric watch (a release must not hide a stopped backup job).
    static func isOwnCopy(_ entry: BackupEntry) -> Bool { entry.label.hasPrefix("pre_") }

    /// The deploy or restore running now, if any: a live process holds the instance lock (the
    /// kernel frees a dead one's flock) and either wrote the journal (same PID) or recorded
    /// its operation in the lock file. A journal with no live holder of its own is not in
    /// progress, unless a deploy or restore holds the lock (it finishes that journal first).
    static func workInProgress(lock: (holder: LockHolder?, held: Bool), journal: DeployJournal?) -> WorkInProgress? {
        guard lock.held, let holder = lock.holder else { return nil }
        if let journal, journal.pid == holder.pid {
            return WorkInProgress(operation: "deploy", pid: holder.pid, stage: journal.stage.rawValue, deployId: journal.deployId,
                                  command: holder.command, since: holder.startedAt)
        }
        guard let operation = holder.operation else { return nil }
        let stage = journal.map { "finishing the killed deploy \($0.deployId)" } ?? holder.stage
        return WorkInProgress(operation: operation, pid: holder.pid, stage: stage, deployId: journal?.deployId,
                              command: holder.command, since: holder.startedAt)
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
