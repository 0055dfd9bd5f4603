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
        // A framework command's database is not migrated from the .sql folder (its pending list is the framework's).
        let files = config.command != nil ? [] : try MigrationFile.loadAll(folder: try instance.migrationsFolder)
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
        try status(try runtime.instance(name, for: .inspect))
    }

    /// `deployctl status` of each database of an instance (one for an instance with one
    /// database, or with `--database`).
    public func statuses(instance name: String) throws -> [InstanceStatus] {
        try runtime.instanceSet(name, for: .inspect).selectedDatabases.map(status)
    }

    private func status(_ instance: InstanceContext) throws -> InstanceStatus {
        let name = instance.config.name
        let config = instance.config
        var reader = StatusReader(instance: instance)
        let lock = InstanceLock.inspect(path: config.lockPath)
        let (work, unfinished) = reader.readJournal(lock: lock)
        let database = reader.readDatabase(work: work)
        let backups = instance.store.entries()
        let now = runtime.clock()
        let usable = reader.checkBackups(backups, now: now)
        if config.seedSQL == nil, let order = try? runtime.workspace.deployConfig().order, !order.isEmpty, !order.contains(name) {
            reader.warnings.append("not in deploy.toml's order: 'deploy all' and promotion checks leave it out")
        }
        let problems = reader.problems.sorted { (StatusProblem.severity.firstIndex(of: $0.kind) ?? 9) < (StatusProblem.severity.firstIndex(of: $1.kind) ?? 9) }
        let reports = instance.deployReports
        var status = InstanceStatus(
            instance: name, database: config.databasePath, exists: database.exists, bytes: database.bytes, journalMode: database.mode,
            applied: database.applied, pending: database.pending, lastBackup: usable?.name, lastBackupAt: usable?.createdAt, lastBackupBytes: usable?.bytes,
            lastDeployAt: reports.first.map { $0.finishedAt ?? $0.startedAt },
            lastDeploy: reports.first?.deployId, lastDeployOutcome: reports.first?.outcome,
            // A set deploy's report holds each database's own.
            lastDeployWriteLockMilliseconds: config.databaseName.map { name in reports.first?.databases?.first { $0.database == name }?.writeLockMilliseconds }
                ?? reports.first?.writeLockMilliseconds,
            lockHolder: lock.held ? lock.holder : nil, databaseHolders: database.exists ? DatabaseHolders.find(path: config.databasePath) : [],
            unfinishedDeploy: work == nil ? unfinished : nil, inProgress: work,
            leftoverBytes: InstanceContext.leftovers(config).reduce(0) { $0 + $1.bytes },
            futureDatedBackups: backups.filter { $0.isFutureDated(now: now) }.map(\.name),
            // A checksum-only check of an encrypted backup (no key here) is not a verification.
            lastVerification: backups.compactMap { entry in
                entry.manifest?.verification.flatMap { $0.check == .sha256 ? nil
                    : InstanceStatus.LastVerification(backup: entry.name, at: $0.at, result: $0.result.rawValue, reason: $0.reason, check: $0.check.rawValue) }
            }.max { $0.at < $1.at },
            failedBackups: backups.filter { $0.status == .failed }.map(\.name),
            example: config.seedSQL != nil, warnings: reader.warnings, problems: problems,
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
        status.databaseName = config.databaseName
        return status
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
        // One deploys folder for every database of an instance.
        try runtime.instanceSet(name, for: nil).deployReports
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
