import Migration
import Support

/// A deploy's stages, in the order they run. The raw value is the stage's name in the journal,
/// the report and the checklist.
public enum Stage: String, CaseIterable, Codable, Sendable, CustomStringConvertible {
    case preflight
    case plan
    case snapshot
    case rehearse
    case migrateAndVerify = "migrate and verify"
    case restart
    case report

    /// The name as the journal, the report and the checklist write it.
    public var description: String { rawValue }
}

/// How one stage of a deploy ended, as the report records it.
public enum StageStatus: String, Codable, Sendable {
    case ok, failed, skipped
}

/// How a deploy ended, as its report records it.
public enum DeployOutcome: String, Codable, Sendable {
    case success
    case nothingToDo = "nothing to do"
    case dryRun = "dry run"
    case failed
    /// Committed, then undone after a failure (start hook, health check).
    case undone
    /// The undo itself failed: a person must look.
    case unproven
    /// Outcomes a later run wrote for a deploy that died, after recovering it.
    case recoveredKept = "recovered: kept"
    case recoveredUndone = "recovered: undone"
    case recoveredRolledBack = "recovered: rolled back"
}

/// What the library reports while it works, to the sink in `Runtime.events`. The library never
/// formats checklist lines, chooses marks or colours, or decides what is shown: the CLI renders
/// each event (or not, with `--quiet`, `--json` or `--log-level`).
public enum Event: Sendable {
    /// Progress of a long phase (bytes, or time only).
    case progress(WorkProgress)
    /// `deploy all`: the next instance's deploy begins.
    case instanceStarted(String)
    /// A command working on each database of an instance of several: the next database
    /// (its name and path) begins.
    case databaseStarted(String, path: String)
    case stageStarted(Stage)
    case stageFinished(Stage, seconds: Double, succeeded: Bool)
    /// The deploy's plan, shown in its plan stage (and as the whole of a dry run).
    case plan(MigrationPlan, database: String)
    /// A table created by, or already present before, a migration statement.
    case table(TableEvent)
    /// A finding worth a line under the current step, in words (`rehearsal: 3 tables created
    /// on a copy of the snapshot`); no marks, no indentation.
    case fact(String)
    /// Something a person should look at; the work goes on.
    case warning(String)
    /// Something a person must see once even from cron (a new secret to back up): printed on
    /// stderr under `--quiet` and `--json` too.
    case notice(String)
    /// A step outside a deploy's stages starts (`stopping the application (stop hook)`).
    case stepStarted(String)
    /// A step finished with this result (`Saved the replaced database as …`).
    case stepDone(String)
    /// A deploy that changed nothing: `--dry-run`.
    case dryRunFinished
    /// A deploy with nothing pending; `alreadyExisting`: tables the migrations define that exist.
    case nothingToDo(alreadyExisting: [String])
    /// A deploy finished; its report.
    case deployed(DeployReport)
    /// Detail for `--log-level debug`: SQL run on the live database, hook commands, timings.
    case debug(String)
}
