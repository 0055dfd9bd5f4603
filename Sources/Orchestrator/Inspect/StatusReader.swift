import Backup
import Foundation
import Locking
import Migration
import SQLite
import Support

/// `status`'s reading of one instance, step by step, gathering the problems (which decide the
/// exit code) and warnings as it goes.
struct StatusReader {
    let instance: InstanceContext
    var config: InstanceConfig { instance.config }
    var problems = [StatusProblem]()
    var warnings = [String]()

    init(instance: InstanceContext) { self.instance = instance }

    /// The deploy journal: the work in progress (a live holder of the instance lock), and the
    /// id of a deploy that died and left its journal.
    mutating func readJournal(lock: (holder: LockHolder?, held: Bool)) -> (work: WorkInProgress?, unfinished: String?) {
        var journal: DeployJournal?
        do {
            journal = try DeployJournal.read(path: config.journalPath)
        } catch let failure as Failure {
            problems.append(StatusProblem(failure.code, message: failure.message))
        } catch {
            problems.append(StatusProblem(.journalUnreadable, message: "\(error)"))
        }
        let work = Inspection.workInProgress(lock: lock, journal: journal)
        if config.databaseName != nil, work == nil {
            do {
                if let restore = try SetRestoreJournal.read(config) {
                    let restored = restore.restored.keys.sorted()
                    problems.append(StatusProblem(.restoreUnfinished, message: "the restore of set \(restore.set) was interrupted"
                        + (restored.isEmpty ? "" : " after restoring \(restored.joined(separator: ", "))")
                        + ": the databases are not from one set; the next deploy or restore of \(config.name) puts them back (or 'deployctl restore \(config.name) --latest --yes' restores the set again)"))
                }
            } catch let failure as Failure {
                problems.append(StatusProblem(failure.code, message: failure.message))
            } catch {
                problems.append(StatusProblem(.journalUnreadable, message: "\(error)"))
            }
        }
        guard let journal else { return (work, nil) }
        if work == nil {
            problems.append(StatusProblem(.deployUnfinished, message: "deploy \(journal.deployId) is unfinished: the next deploy or restore finishes or undoes it (it stopped at stage \(journal.stage), and no live process holds the instance lock)"))
        }
        return (work, journal.deployId)
    }

    /// What status shows of the live database.
    struct Database {
        var exists = false
        var bytes: Int64?
        var mode: String?
        var applied: [String]?
        var pending: [String]?
    }

    /// The live database: size, journal mode, migrations applied and pending, an online
    /// rebuild's leftovers; a lock held by the work in progress is expected, not a problem.
    mutating func readDatabase(work: WorkInProgress?) -> Database {
        var database = Database(exists: FileManager.default.fileExists(atPath: config.databasePath))
        guard database.exists else {
            problems.append(StatusProblem(.databaseMissing, message: "database \(config.databasePath) does not exist"))
            return database
        }
        database.bytes = ((try? FileManager.default.attributesOfItem(atPath: config.databasePath))?[.size] as? NSNumber)?.int64Value
        do {
            let facts = try LiveDatabaseFacts.read(path: config.databasePath, busyTimeout: config.busyTimeout)
            database.mode = facts.journalMode
            database.applied = facts.applied.map(\.key)
            // A framework command's database is not migrated from the .sql folder; status runs no framework command.
            var files = [MigrationFile]()
            var folderMissing = false
            do {
                if config.command == nil { files = try MigrationFile.loadAll(folder: try instance.migrationsFolder) }
            } catch let failure as Failure where failure.code == .migrationsFolderMissing {
                problems.append(StatusProblem(failure.code, message: failure.message))
                folderMissing = true
            } catch {
                // A bad migration file is reported by verify and deploy; status shows what it can.
            }
            // Unknown, not none, when the folder is missing.
            database.pending = folderMissing ? nil : files.filter { file in !facts.applied.contains { $0.id == file.id } }.map(\.key)
            if work == nil, let source = facts.onlineLeftover {
                warnings.append("an online rebuild of \(source) left its shadow table and triggers in the database (a run that could not remove them, e.g. on a full disk): the application's writes to \(source) are copied into them until 'deployctl deploy \(config.name)' removes them")
            }
            do {
                _ = try History.pending(files: files, applied: facts.applied)
            } catch var changed as MigrationFileChanged {
                changed.instance = config.name
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
        } catch {
            problems.append(StatusProblem(.statusCheckFailed, message: "\(error)"))
        }
        return database
    }

    /// Failed and future-dated backups, and the newest usable one against `max_backup_age`
    /// (`pre_*` copies never count); returns that backup.
    mutating func checkBackups(_ backups: [BackupEntry], now: Date) -> BackupEntry? {
        let name = config.name
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
        return usable
    }
}
