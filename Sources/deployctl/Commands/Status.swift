import ArgumentParser
import Foundation
import Orchestrator
import Support

struct Status: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Show an instance's database, migrations, backups, deploys and lock holders; exit non-zero when something needs a person.",
        discussion: """
            Exit codes, for monitoring (the most severe problem of any instance decides):
              0   all is well
              64  an instance's config is broken
              66  the database is missing
              65  the database is not SQLite, a backup failed its last check, or a deploy journal cannot be read
              2   an unfinished deploy (its process died), or a backup dated in the future: a person should look
              75  the database is locked past the busy timeout (status could not read it)
              1   the newest backup is older than [backups] max_backup_age (or there is none); pre_* copies \
            of deploys and restores do not count
            A deploy or restore running now is shown as in progress (PID and stage) and is not a problem. \
            Temp files left by killed runs, and no backup without max_backup_age, are warnings. \
            'status all' reports every instance folder (deploy.toml's order, then any other with an \
            instance.toml) even when one is broken; the bundled example (seed SQL) is listed but never \
            makes it fail.
            Example (cron): deployctl status all --quiet || notify-ops
            """)

    @OptionGroup var global: GlobalOptions

    @OptionGroup var selection: DatabaseOption

    @OptionGroup var metrics: MetricsOption

    @Argument(help: "The instance, or 'all'.", completion: InstanceCompletion.instancesOrAll)
    var instance: String

    func run() throws {
        let console = Console(global, selection)
        try Metrics.around(metrics, console: console, instance: instance, every: { try $0.everyInstance() }, command: "status") {
            try console.run { runtime in
                let names = instance == "all" ? try runtime.workspace.everyInstance() : [instance]
                var rows = [Row]()
                for name in names {
                    try runtime.checkInterruption("nothing was changed")
                    do {
                        rows += try Inspection(runtime).statuses(instance: name).map(Row.status)
                    } catch let failure as Failure where instance == "all" {
                        // One broken instance must not hide the others.
                        rows.append(.broken(name, StatusProblem(failure.code, message: failure.message)))
                    }
                }
                // With 'all', each problem names its instance, and the bundled example's never count.
                let problems = instance == "all" || rows.count > 1
                    ? rows.filter(\.counts).flatMap { row in row.problems.map { StatusProblem($0.code, message: "\(row.name): \($0.message)") } }
                    : rows.flatMap(\.problems)
                if global.json {
                    // One instance with one database: its document; else one per database.
                    try console.json(instance == "all" || rows.count > 1 ? AnyEncodable(rows) : AnyEncodable(rows[0]))
                } else {
                    for row in rows { show(row, console, now: runtime.clock()) }
                }
                guard let worst = problems.min(by: { Self.rank($0.kind) < Self.rank($1.kind) }) else { return }
                let more = problems.count > 1 ? " (and \(problems.count - 1) more problem\(problems.count > 2 ? "s" : ""))" : ""
                if global.json {
                    // The document above is the one JSON document; the problems are in it.
                    console.standardError.write("deployctl: \(worst.message)\(more) [\(worst.code)]\n")
                    throw ExitCode(Console.exitCode(worst.kind))
                }
                // The rows above say what is wrong where; with --quiet they were not printed.
                throw Failure(worst.code, worst.message + more, hint: global.quiet ? "run 'deployctl status \(instance)' for every problem" : nil)
            }
        }
    }

    static func rank(_ kind: FailureKind) -> Int {
        [FailureKind.usage, .missingInput, .badData, .unproven, .temporary, .failed].firstIndex(of: kind) ?? 9
    }

    /// One instance's state, or why it could not be read.
    enum Row: Encodable {
        case status(InstanceStatus)
        case broken(String, StatusProblem)

        var problems: [StatusProblem] {
            switch self {
            case .status(let s): return s.problems
            case .broken(_, let problem): return [problem]
            }
        }

        /// The instance the row is about.
        var name: String {
            switch self {
            case .status(let s): return s.label
            case .broken(let name, _): return name
            }
        }

        /// Whether the row's problems decide the exit code of `status all`: not the bundled
        /// example's (a config that cannot be read is never known to be the example).
        var counts: Bool {
            if case .status(let s) = self { return !s.example }
            return true
        }

        func encode(to encoder: Encoder) throws {
            switch self {
            case .status(let s): try s.encode(to: encoder)
            case .broken(let name, let problem):
                struct Document: Encodable { let instance: String; let error: String; let problems: [StatusProblem] }
                try Document(instance: name, error: problem.message, problems: [problem]).encode(to: encoder)
            }
        }
    }

    func show(_ row: Row, _ console: Console, now: Date) {
        guard case .status(let s) = row else {
            if case .broken(let name, let problem) = row { console.line("\(name): ✗ \(problem.message)") }
            return
        }
        console.line("\(s.label): \(s.database)\(s.exists ? "" : " (missing)")\(s.example ? " (the bundled example: 'status all' lists it, its problems never fail it)" : "")")
        if let bytes = s.bytes { console.line("  size: \(Console.size(bytes)), journal mode: \(s.journalMode ?? "unreadable")") }
        let unknown = "unknown (the database could not be read)"
        console.line("  applied: \(s.applied.map { $0.isEmpty ? "none" : $0.joined(separator: ", ") } ?? unknown)")
        let pendingUnknown = s.problems.contains { $0.code == .migrationsFolderMissing } ? "unknown (the migrations folder is missing)" : unknown
        console.line("  pending: \(s.pending.map { $0.isEmpty ? "none" : $0.joined(separator: ", ") } ?? pendingUnknown)")
        console.line("  last backup: \(s.lastBackup ?? "none")")
        if let check = s.lastVerification {
            console.line("  last verification: \(check.backup) at \(Console.time(check.at)): \(check.result == "ok" ? "good" : "FAILED: \(check.reason ?? "")")")
        } else {
            console.line("  last verification: none" + (s.lastBackup == nil ? "" : " (deployctl backups verify \(s.instance))"))
        }
        for remote in s.remotes {
            if let error = remote.error {
                console.line("  remote \(remote.name): cannot be listed: \(error)")
            } else if let newest = remote.newest, let at = remote.newestAt {
                let hours = max(0, now.timeIntervalSince(at)) / 3600
                console.line("  remote \(remote.name): newest copy \(newest), \(hours < 48 ? String(format: "%.1f hours", hours) : String(format: "%.0f days", hours / 24)) old")
            } else {
                console.line("  remote \(remote.name): no copy yet (deployctl backups push \(s.instance))")
            }
        }
        console.line("  last deploy: \(s.lastDeploy.map { "\($0) (\(s.lastDeployOutcome?.rawValue ?? "?"))" } ?? "none")")
        if let work = s.inProgress {
            let what = work.operation == "deploy" ? "deploy \(work.deployId ?? "")" : work.operation
            console.line("  \(what) in progress: PID \(work.pid), stage \(work.stage ?? "unknown"), since \(Console.time(work.since)) (\(work.command))")
        } else if let holder = s.lockHolder {
            console.line("  instance lock held by PID \(holder.pid) (\(holder.command))")
        }
        for holder in s.databaseHolders { console.line("  database open in \(holder)") }
        if s.leftoverBytes > 0 {
            console.line("  \(Console.size(s.leftoverBytes)) of temp files left by runs that died (the next deploy, snapshot, restore or prune removes them)")
        }
        for warning in s.warnings { console.line("  ! \(warning)") }
        for problem in s.problems { console.line("  ✗ \(problem.message)") }
    }
}
