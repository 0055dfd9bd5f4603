import Backup
import Foundation
import Locking
import Migration
import SQLite
import Support

/// `deployctl verify`, `status` and `history`: what an operator checks. Reads only.
public struct Inspection: Sendable {
    let runtime: Runtime

    public init(_ runtime: Runtime) { self.runtime = runtime }

    /// `deployctl verify`: integrity of the live database and applied migrations matching their
    /// files; pending migrations are reported, not a failure. Reads only.
    /// - Throws: `Failure` for config or a missing database.
    public func verify(instance name: String) throws -> LiveVerification {
        let instance = try runtime.instance(name, for: .readDatabase)
        let config = instance.config
        var (problems, applied) = try LiveDatabaseFacts.health(path: config.databasePath, busyTimeout: config.busyTimeout)
        let damaged = !problems.isEmpty
        let files = try MigrationFile.loadAll(folder: try runtime.workspace.deployConfig().migrationsFolder)
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
        let instance = try runtime.instance(name, for: .inspect)
        let config = instance.config
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
                let facts = try LiveDatabaseFacts.read(path: config.databasePath, busyTimeout: config.busyTimeout)
                mode = facts.journalMode
                let rows = facts.applied
                applied = rows.map(\.key)
                let files = (try? MigrationFile.loadAll(folder: try runtime.workspace.deployConfig().migrationsFolder)) ?? []
                pending = files.filter { file in !rows.contains { $0.id == file.id } }.map(\.key)
                if work == nil, let source = facts.onlineLeftover {
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
        let reports = instance.deployReports
        let now = runtime.clock()
        let backups = instance.store.entries()
        for entry in backups where entry.status == .failed {
            problems.append(StatusProblem(.backupFailedCheck, message: "backup \(entry.name) failed its last check: check it again with 'deployctl backups verify \(name) \(entry.name)', or retire it with 'deployctl backups remove \(name) \(entry.name)'"))
        }
        for entry in backups where entry.isFutureDated(now: now) {
            problems.append(StatusProblem(.backupFutureDated, message: "backup \(entry.name) is dated in the future (\(entry.createdAt)): check the clock, then remove it"))
        }
        let usable = backups.first { !$0.isFutureDated(now: now) && $0.status != .failed && !$0.isOwnCopy }
        let ownCopies = backups.filter(\.isOwnCopy).count
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
        if config.seedSQL == nil, let order = try? runtime.workspace.deployConfig().order, !order.isEmpty, !order.contains(name) {
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
            leftoverBytes: InstanceContext.leftovers(config).reduce(0) { $0 + $1.bytes },
            futureDatedBackups: backups.filter { $0.isFutureDated(now: now) }.map(\.name),
            // A checksum-only check of an encrypted backup (no key here) is not a verification.
            lastVerification: backups.compactMap { entry in
                entry.manifest?.verification.flatMap { $0.check == .sha256 ? nil
                    : InstanceStatus.LastVerification(backup: entry.name, at: $0.at, result: $0.result.rawValue, reason: $0.reason, check: $0.check.rawValue) }
            }.max { $0.at < $1.at },
            failedBackups: backups.filter { $0.status == .failed }.map(\.name),
            example: config.seedSQL != nil, warnings: warnings, problems: problems,
            remotes: config.offsite.map { remote in
                do {
                    let newest = try RemoteBackups(runtime).newestGood(instance, remote)
                    return InstanceStatus.RemoteStatus(name: remote.name, newest: newest?.name, newestAt: newest?.createdAt, error: nil)
                } catch let error as DeployctlError {
                    return InstanceStatus.RemoteStatus(name: remote.name, newest: nil, newestAt: nil, error: error.message)
                } catch {
                    return InstanceStatus.RemoteStatus(name: remote.name, newest: nil, newestAt: nil, error: "\(error)")
                }
            })
    }

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
        try runtime.instance(name, for: nil).deployReports
    }
}

extension InstanceContext {
    /// The instance's deploy reports, newest first; unreadable ones are passed over.
    var deployReports: [DeployReport] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: config.deploysFolder)) ?? []
        let decoder = JSON.decoder()
        return names.filter { $0.hasSuffix(".json") && !$0.hasPrefix(".") }
            .compactMap { FileManager.default.contents(atPath: config.deploysFolder + "/" + $0).flatMap { try? decoder.decode(DeployReport.self, from: $0) } }
            // Reports store whole seconds; the id's milliseconds order deploys started in the same second.
            .sorted { ($0.startedAt, $0.deployId) > ($1.startedAt, $1.deployId) }
    }
}
