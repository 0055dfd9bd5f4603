import Backup
import Foundation
import Locking
import Migration
import Support

/// A database migrated by its framework's own command (`[database] migrate_command`,
/// docs/framework-commands.md): the pending list from `pending_command`, the rehearsal as the
/// command run on a copy of the snapshot and compared table by table, the live run proven
/// equal to the rehearsal or undone from the snapshot.
extension InstanceContext {
    /// Runs `text` (a framework command) with `database` passed as frameworks take it, in the
    /// instance folder; stdout and stderr to `<outputFolder>/<tag>.stdout` and `.stderr`.
    func runFrameworkCommand(_ text: String, database: String, outputFolder: String, tag: String, timeout: Duration,
                             started: (pid_t) -> Void = { _ in }) throws -> ShellCommandResult {
        try DurableFile.createFolder(outputFolder)
        var environment = MigrationCommand.environment(database: database)
        environment["DEPLOYCTL_INSTANCE"] = config.name
        let shell = ShellCommand(command: MigrationCommand.text(text, database: database), workingDirectory: config.folder, environment: environment)
        runtime.trace("command \(tag): /bin/sh -c \(shell.command)  (in \(config.folder), DATABASE_URL=\(environment["DATABASE_URL"] ?? ""))")
        let interruption = runtime.interruption
        let result = try shell.run(stdoutPath: outputFolder + "/\(tag).stdout", stderrPath: outputFolder + "/\(tag).stderr", timeout: timeout,
                                   stop: { interruption() != nil }, started: started)
        runtime.trace("command \(tag) \(result.ending) after \(String(format: "%.2f", result.seconds)) s")
        return result
    }

    /// Refuses (66) a `migrate_command` or `pending_command` whose program is not found, before
    /// anything is run or copied.
    func checkCommandsFound(_ command: MigrationCommand) throws {
        for (key, text) in [("migrate_command", command.migrate), ("pending_command", command.pending)] {
            let shell = ShellCommand(command: text, workingDirectory: config.folder, environment: [:])
            guard shell.programFound() else {
                throw Failure(.commandNotFound, "database.\(key) of instance '\(name)' runs '\(shell.program ?? text)', which is not an executable file in \(config.folder) or on PATH; nothing was changed",
                              hint: "fix database.\(key) in \(config.file), or install the framework on this host")
            }
        }
    }

    /// The pending migrations `pending_command` lists for `database`.
    /// - Throws: `command.pending_failed` (1) when it fails; `command.pending_unreadable` (64)
    ///   naming the first line not in its format.
    func pendingByCommand(_ command: MigrationCommand, database: String, outputFolder: String, tag: String) throws -> (pending: [String], run: ShellCommandResult) {
        let run = try runFrameworkCommand(command.pending, database: database, outputFolder: outputFolder, tag: tag, timeout: command.timeout)
        if run.interrupted { try runtime.checkInterruption("pending_command was stopped; nothing was changed") }
        guard run.succeeded else {
            throw Failure(.commandPendingFailed, "pending_command '\(command.pending)' \(run.ending) on \(database)\(Self.tail(run)); nothing was changed",
                          hint: "run it by hand in \(config.folder) with DATABASE_URL=sqlite:///\(database) to see why (its output: \(run.stderrPath))")
        }
        let output = (try? String(contentsOfFile: run.stdoutPath, encoding: .utf8)) ?? ""
        do {
            return (try command.format.parse(output), run)
        } catch let bad as PendingOutputUnreadable {
            throw Failure(.commandPendingUnreadable, "pending_command '\(command.pending)' printed a line that is not in the \(command.format.rawValue) format, line \(bad.number): '\(bad.line)' (expected \(bad.expected)); nothing was changed",
                          hint: "set database.pending_format in \(config.file) to the command's format (\(PendingFormat.allCases.map(\.rawValue).joined(separator: ", "))), or make the command print one pending migration per line")
        }
    }

    /// The last lines of a command's stderr, for a failure message.
    static func tail(_ run: ShellCommandResult) -> String {
        let lines = run.tail()
        return lines.isEmpty ? " (it printed nothing)" : "; the last lines it printed:\n    " + lines.joined(separator: "\n    ") + "\n"
    }

    /// The failure of `migrate_command` on `target` ("the rehearsal copy", "the live database").
    func commandFailure(_ run: ShellCommandResult, command: MigrationCommand, on target: String) -> Failure {
        Failure(.commandFailed, "migrate_command '\(command.migrate)' \(run.ending) on \(target)\(Self.tail(run))(all its output: \(run.stdoutPath), \(run.stderrPath))",
                hint: run.interrupted ? "deploy again when the command may run to its end"
                    : run.timedOut ? "raise database.command_timeout_seconds in \(config.file) if the migration needs longer, or fix what it waits for"
                    : "fix the migration (run the command by hand on a copy of the database to see it fail), then deploy again")
    }

    /// `migrate_command` on a scratch copy of `snapshot` (a plain database file, the state
    /// before), then `pending_command` there (it must list nothing: the command migrated the
    /// file it was given), then the copy compared with the snapshot.
    /// - Throws: `command.failed`, `command.copy_not_migrated`, what comparing throws.
    func rehearseCommand(_ command: MigrationCommand, snapshot: String, scratchFolder: String, outputFolder: String,
                         pending: [String], runs: inout [ShellCommandResult], started: (pid_t) -> Void = { _ in }) throws -> (plan: MigrationPlan, effect: CommandEffect) {
        let scratch = try commandScratchCopy(of: snapshot, live: false, in: scratchFolder, name: "rehearsal.db", busyTimeout: config.busyTimeout)
        defer { removeCommandScratch(scratch) }
        let interruption = runtime.interruption
        let observation = try CommandObservation(copy: scratch, stop: { interruption() != nil })
        let run = try runFrameworkCommand(command.migrate, database: scratch, outputFolder: outputFolder, tag: "rehearsal-migrate", timeout: command.timeout,
                                          started: started)
        runs.append(run)
        if run.interrupted { try runtime.checkInterruption("the rehearsal on a copy was stopped; the live database was not changed") }
        guard run.succeeded else { throw commandFailure(run, command: command, on: "the rehearsal copy (the live database was not changed)") }
        let (left, check) = try pendingByCommand(command, database: scratch, outputFolder: outputFolder, tag: "rehearsal-pending")
        runs.append(check)
        guard left.isEmpty else {
            throw Failure(.commandCopyNotMigrated, "after migrate_command '\(command.migrate)' ran on the rehearsal copy, pending_command still lists \(left.joined(separator: ", ")) there: the command did not migrate the database it was given, or does not apply all that pending_command lists",
                          hint: "make the application take its database from DATABASE_URL or DEPLOYCTL_DATABASE (or put {database} in the command) instead of a path in its settings, and make migrate_command apply everything (e.g. 'alembic upgrade head')")
        }
        let effect = try observation.finish(snapshot: snapshot, busyTimeout: config.busyTimeout)
        return (effect.plan(pending: pending, command: command.migrate, commandMilliseconds: run.seconds * 1000), effect)
    }

    /// The plan of a command database: `pending_command` on the live database (it only reads)
    /// and, with `rehearse` and something pending, the command on a copy of it for the class.
    func commandPlan(_ command: MigrationCommand, rehearse: Bool, outputFolder: String?) throws -> MigrationPlan {
        try checkCommandsFound(command)
        let folder = outputFolder ?? NSTemporaryDirectory() + "deployctl-plan-" + UUID().uuidString
        defer { if outputFolder == nil { try? FileManager.default.removeItem(atPath: folder) } }
        let (pending, _) = try pendingByCommand(command, database: config.databasePath, outputFolder: folder, tag: "pending")
        guard rehearse, !pending.isEmpty else { return .commandPending(pending) }
        var isFolder: ObjCBool = false
        let scratch = FileManager.default.fileExists(atPath: config.backupsFolder, isDirectory: &isFolder) && isFolder.boolValue
            ? config.backupsFolder : (config.databasePath as NSString).deletingLastPathComponent
        if !runtime.failpoints.skips(.freeSpace) {
            var needs = SpaceNeeds(instance: config.name)
            needs.add(liveBytes * 2, in: scratch, for: "the plan's two copies of the database (before and after the command)")
            try needs.check()
        }
        let before = try commandScratchCopy(of: config.databasePath, live: true, in: scratch, name: "plan.db", busyTimeout: config.busyTimeout)
        defer { removeCommandScratch(before) }
        var runs = [ShellCommandResult]()
        do {
            return try rehearseCommand(command, snapshot: before, scratchFolder: scratch, outputFolder: folder, pending: pending, runs: &runs).plan
        } catch let failure as Failure where failure.code == .commandCopyNotMigrated || failure.code == .commandFailed {
            // A plan has no snapshot to undo with: say loudly that the live database was written.
            guard let (now, _) = try? pendingByCommand(command, database: config.databasePath, outputFolder: folder, tag: "live-pending-after-plan"),
                  now != pending else { throw failure }
            throw Failure(failure.code, failure.message + "\nThe live database's pending migrations changed while the plan ran the command on a copy (\(pending.joined(separator: ", ")) → \(now.isEmpty ? "none" : now.joined(separator: ", "))): the command wrote the live database instead of its copy, and a plan has no snapshot to undo that with.",
                          hint: "restore the newest backup from before this plan with 'deployctl restore \(name) --latest', then make the command take its database from DATABASE_URL, DEPLOYCTL_DATABASE or {database}")
        }
    }
}

extension DeployPipeline {
    /// The deploy's folder for hook and command output (`deploys/<deploy-id>/`).
    var outputFolder: String { config.deploysFolder + "/" + report.deployId }

    /// The stages of a command database's deploy after its plan: snapshot, rehearsal (the
    /// command on a copy, its class, the refusal of a destructive one), the command on the live
    /// database and its proof, restart, report.
    mutating func runByCommand(_ command: MigrationCommand, pending: [String]) throws {
        journal = DeployJournal(deployId: report.deployId, instance: config.name, startedAt: report.startedAt, stage: .snapshot,
                                snapshot: nil, migrations: pending, appStopped: hooks.stoppedOnce, committed: false, additive: false,
                                created: [], addedColumns: nil)
        journal?.command = true
        report.commands = report.commands ?? []
        if config.hooks.stop == nil {
            runtime.events(.warning("no stop hook: the application's writes while migrate_command runs on the live database cannot be told from the command's, so any of them makes the proof fail and the deploy undone (they are kept in the pre_restore copy); set hooks.stop and hooks.start in \(config.file)"))
        }
        let store = instance.store
        let backup = try stage(.snapshot) { p in try p.takeSnapshot(label: "pre_\(Self.commandSnapshotName(pending))", store: store) }
        // The snapshot as a plain file, kept open until the live run is proven: the state before.
        let opened = try store.check(backup, keep: true)!
        defer { opened.discard() }
        let snapshot = opened.databasePath
        let effect = try stage(.rehearse) { p in try p.rehearseByCommand(command, snapshot: snapshot, pending: pending) }
        let proven = try stage(.migrateAndVerify) { p in try p.migrateByCommand(command, effect: effect, snapshot: snapshot) }
        report.tablesCreated = effect.createdTables
        runtime.events(.fact("proven after the command: \(proven)"))
        try stage(.restart) { p in try p.restart(committed: true) }
        report.outcome = .success
        try stage(.report) { p in try p.writeReport() }
        try DeployJournal.remove(path: config.journalPath)
        runtime.events(.deployed(report))
    }

    /// The rehearse stage of a command database: the plan with its class and evidence, shown;
    /// a destructive one refused without `--allow-destructive` (64). When the command did not
    /// migrate its copy but the live database lost pending migrations meanwhile, it migrated
    /// the live database instead: the journal then says so and the failure undoes it.
    mutating func rehearseByCommand(_ command: MigrationCommand, snapshot: String, pending: [String]) throws -> CommandEffect {
        var runs = [ShellCommandResult]()
        defer { report.commands?.append(contentsOf: runs) }
        let plan: MigrationPlan, effect: CommandEffect
        do {
            // The rehearsal's process group in the journal too: a deploy killed meanwhile leaves
            // a command the next run's recovery ends.
            var journal = self.journal
            defer { self.journal = journal }
            let path = config.journalPath
            (plan, effect) = try instance.rehearseCommand(command, snapshot: snapshot, scratchFolder: instance.store.folder, outputFolder: outputFolder,
                                                          pending: pending, runs: &runs, started: { group in
                                                              journal?.commandGroup = group
                                                              try? journal?.write(path: path)
                                                          })
        } catch let failure as Failure where failure.code == .commandCopyNotMigrated || failure.code == .commandFailed {
            // Typed: the live database's own pending list, against the one this deploy began with.
            guard let (now, check) = try? instance.pendingByCommand(command, database: config.databasePath, outputFolder: outputFolder, tag: "live-pending-after-rehearsal") else { throw failure }
            runs.append(check)
            guard now != pending else { throw failure }
            journal?.committed = true
            try journal?.write(path: config.journalPath)
            throw Failure(failure.code, failure.message + "\nThe live database's pending migrations changed during the rehearsal (\(pending.joined(separator: ", ")) → \(now.isEmpty ? "none" : now.joined(separator: ", "))): the command wrote the live database instead of its copy.",
                          hint: failure.hint)
        }
        report.classification = plan.classification.rawValue
        report.changes = plan.migrations.flatMap(\.evidence)
        runtime.events(.plan(plan, database: config.databasePath))
        try Planning.checkAllowed(plan, files: [], allowDestructive: options.allowDestructive)
        try checkCommandWriteLock(runs.first { $0.stdoutPath.hasSuffix("/rehearsal-migrate.stdout") })
        return effect
    }

    /// As for `.sql` deploys, `max_write_lock` bounds how long the application's writes may
    /// wait, unless the stop hook stops it: the command's time on the rehearsal copy (its
    /// start-up included) is the estimate; over budget, the deploy is refused before the live
    /// run (64).
    func checkCommandWriteLock(_ rehearsal: ShellCommandResult?) throws {
        guard config.hooks.stop == nil, let rehearsal, rehearsal.seconds * 1000 > config.maxWriteLock.milliseconds else { return }
        throw Failure(.migrationWriteLockOverBudget, "refused: migrate_command took \(String(format: "%.0f", rehearsal.seconds * 1000)) ms on the rehearsal copy (its start-up included), "
                      + "more than max_write_lock allows (\(String(format: "%.0f", config.maxWriteLock.milliseconds)) ms) for a run that blocks the application's writes; the live database was not changed",
                      hint: "stop the application during the deploy (hooks.stop and hooks.start in \(config.file)), or deploy at a quiet time with a larger database.max_write_lock_ms there")
    }

    /// The migrate stage of a command database: the journal says the live database may change,
    /// the command runs on it (its process group recorded for recovery), `pending_command` must
    /// list nothing, and the live result must equal the rehearsal's (`CommandLiveProof`).
    /// - Throws: `command.failed`, `command.result_differs`; the caller's failure path then
    ///   restores the snapshot.
    mutating func migrateByCommand(_ command: MigrationCommand, effect: CommandEffect, snapshot: String) throws -> String {
        let proof = try CommandLiveProof(effect: effect, snapshot: snapshot, live: config.databasePath, busyTimeout: config.busyTimeout)
        journal?.committed = true
        try journal?.write(path: config.journalPath)
        var journal = self.journal
        let path = config.journalPath
        let run = try instance.runFrameworkCommand(command.migrate, database: config.databasePath, outputFolder: outputFolder, tag: "migrate",
                                                   timeout: command.timeout, started: { group in
                                                       journal?.commandGroup = group
                                                       try? journal?.write(path: path)
                                                   })
        self.journal = journal
        report.commands?.append(run)
        report.writeLockMilliseconds = run.seconds * 1000
        try runtime.failpoints.hit(.migrateCommand)
        guard run.succeeded else { throw instance.commandFailure(run, command: command, on: "the live database") }
        let (left, check) = try instance.pendingByCommand(command, database: config.databasePath, outputFolder: outputFolder, tag: "live-pending")
        report.commands?.append(check)
        guard left.isEmpty else {
            throw Failure(.commandResultDiffers, "after migrate_command ran on the live database, pending_command still lists \(left.joined(separator: ", ")) there (on the rehearsal copy it listed none)",
                          hint: "run the command by hand on a copy of the live database to see why it stops short")
        }
        let proven = try proof.prove(live: config.databasePath)
        self.journal?.commandProven = true
        // Proven equal to an additive rehearsal: a later undo (a failed start or health check)
        // can drop what it created and keep the application's writes.
        self.journal?.commandAdditive = effect.classification == .additive
        self.journal?.created = effect.created.map { DeployJournal.CreatedObject(type: $0.type.rawValue, name: $0.name) }
        try self.journal?.write(path: config.journalPath)
        return proven
    }

    /// The snapshot label's part after `pre_` for a command's pending migrations: the first
    /// and last, in letters, digits, `-` and `_`, at most 60 characters.
    static func commandSnapshotName(_ pending: [String]) -> String {
        let clean = { (name: String) in
            String(name.map { $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "-") ? $0 : "_" }).split(separator: "_").joined(separator: "_")
        }
        guard let first = pending.first, let last = pending.last else { return "migration" }
        let named = pending.count > 1 ? "\(clean(first))-\(clean(last))" : clean(first)
        return named.isEmpty ? "migration" : String(named.prefix(60))
    }
}

extension DeployRecovery {
    /// A command deploy's state from its journal: committed once the command started on the
    /// live database, healthy once the live result was proven. Ends what is left of the
    /// command's process group first, so nothing writes the database while it is undone.
    static func commandState(_ journal: DeployJournal) -> (committed: Bool, healthy: Bool) {
        if let group = journal.commandGroup,
           let line = try? String(contentsOfFile: "/proc/\(group)/cmdline", encoding: .utf8), line.contains("deployctl-command") {
            ShellCommand.killGroup(group)
        }
        return (journal.committed, journal.commandProven == true)
    }

    /// The in-place undo of a command deploy: only one proven additive, by dropping what it
    /// created and putting the bookkeeping tables back from `snapshot` (a plain file); nil
    /// otherwise (the snapshot is restored).
    static func commandUndo(_ journal: DeployJournal, snapshot: String, config: InstanceConfig) -> Undo.Strategy? {
        guard journal.command == true, journal.commandProven == true, journal.commandAdditive == true,
              let created = try? createdObjects(journal, config: config) else { return nil }
        return .dropAddedByCommand(created: created, snapshot: snapshot, bookkeeping: MigrationCommand.bookkeepingTables.sorted())
    }

    /// What recovery did with a command deploy, for the operator.
    static func commandNote(_ journal: DeployJournal) -> String {
        if journal.committed && journal.commandProven == true {
            return "deploy \(journal.deployId) was interrupted at stage \(journal.stage) after its migrate_command was proven on the live database; it is kept"
        }
        if journal.committed {
            return "deploy \(journal.deployId) was interrupted while its migrate_command ran on the live database (it commits in several transactions); it was undone from the snapshot \(journal.snapshot ?? "?")"
        }
        return "deploy \(journal.deployId) was interrupted at stage \(journal.stage), before its migrate_command ran on the live database; the database is as it was"
    }
}
