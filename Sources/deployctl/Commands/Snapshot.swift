import ArgumentParser
import Backup
import Offsite
import Orchestrator
import Support

struct Snapshot: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Take one online snapshot of an instance's database, with its manifest.",
        discussion: """
            After the snapshot succeeds, retention runs for its label: the --keep-* rules given here, \
            else the instance config's [backups] keep_last/keep_within/keep_daily/keep_weekly/keep_monthly. \
            A backup is kept if any rule keeps it; the snapshot just taken, the newest backup of a pre_* \
            label, one an unfinished deploy refers to, and backups dated in the future are always kept.
            Example (cron): deployctl snapshot prod --gzip --label nightly --keep-daily 14 --keep-weekly 8 --quiet
            """)

    @OptionGroup var global: GlobalOptions

    @OptionGroup var selection: DatabaseOption

    @OptionGroup var metrics: MetricsOption

    @Argument(help: "The instance to snapshot.", completion: InstanceCompletion.instances)
    var instance: String

    @Flag(inversion: .prefixedNo, help: "Store the snapshot gzip-compressed (default: the instance config's backups.compress or backups.gzip).")
    var gzip: Bool?

    @Option(help: ArgumentHelp("Store the snapshot compressed this way: gzip, zstd or none (e.g. --compress zstd: .db.zst, independent frames that zstd -d reads).", valueName: "method"))
    var compress: String?

    @Option(help: "The label in the backup's name (default: snapshot).")
    var label: String?

    @OptionGroup(title: "Retention (after success, for this label)") var retention: RetentionOptions

    @Flag(help: "Run SQLite's quick_check on the copy before keeping it.")
    var verify = false

    @Flag(help: "After the snapshot succeeds, copy it to the instance's [[offsite]] remotes (or --remote NAME).")
    var offsite = false

    @Option(help: ArgumentHelp("With --offsite: only this remote.", valueName: "name"))
    var remote: String?

    /// `--compress`, else `--gzip`/`--no-gzip`, else nil (the config decides).
    func compression() throws -> Compression? {
        if let compress {
            guard let value = Compression(rawValue: compress) else { throw ValidationError("--compress must be gzip, zstd or none.") }
            return value
        }
        return gzip.map { $0 ? .gzip : .none }
    }

    func validate() throws {
        if compress != nil && gzip != nil { throw ValidationError("give --compress or --gzip/--no-gzip, not both.") }
        _ = try compression()
        if remote != nil && !offsite { throw ValidationError("--remote goes with --offsite.") }
        if let keepLast = retention.keepLast, keepLast < 1 { throw ValidationError("--keep-last must be at least 1 (the snapshot just taken is always kept).") }
    }

    func run() throws {
        let console = Console(global, selection)
        try Metrics.around(metrics, console: console, instance: instance, every: { _ in [] }, command: "snapshot") {
            try console.run { runtime in
                let outcomes = try Snapshots(runtime).take(instance: instance, compression: try compression(), label: label, retention: try retention.policy(), verify: verify)
                if let crashed = outcomes.first?.crashedHolder {
                    console.note("warning: a previous run (PID \(crashed.pid), \(crashed.command)) ended without releasing the instance lock; it crashed or was killed")
                }
                var documents = [SnapshotDocument]()
                for outcome in outcomes {
                    let within = outcome.database.map { " (database \($0))" } ?? ""
                    if let skipped = outcome.retentionSkipped {
                        console.note("warning: retention did not run\(within): \(skipped)")
                    }
                    for entry in outcome.futureDated {
                        console.note("warning: \(entry.name) is dated \(Console.time(entry.createdAt)), in the future: written under a wrong clock? Retention keeps it and never counts it as the newest; remove it by hand once checked.")
                    }
                    var pushed = [PushResult]()
                    if offsite {
                        do {
                            var runtime = runtime
                            if let database = outcome.database { runtime.database = database }
                            pushed = try RemoteBackups(runtime).push(instance: instance, backup: outcome.backup.name, all: false, remote: remote)
                        } catch let error as DeployctlError {
                            // The local backup stands; the copy is what failed.
                            throw Failure(error.code, "the snapshot \(outcome.backup.name) was written locally, but copying it offsite failed: \(error.message)",
                                          hint: error.hint.map { $0 + "; then 'deployctl backups push \(instance)'" } ?? "run 'deployctl backups push \(instance)' once the store is reachable")
                        }
                    }
                    documents.append(SnapshotDocument(backup: BackupDocument(outcome.backup, now: runtime.clock()), pruned: outcome.pruned.map(\.name),
                                                      future_dated: outcome.futureDated.map(\.name), offsite: pushed.map(\.key), database: outcome.database))
                    if global.json { continue }
                    console.line("✓ Snapshot \(outcome.backup.name) (\(Console.size(outcome.backup.bytes)))\(within)")
                    console.line("  \(outcome.backup.path)")
                    for entry in outcome.pruned { console.line("  pruned \(entry.name)") }
                    for copy in pushed { console.line("  copied to remote \(copy.remote): \(copy.key)") }
                }
                if global.json {
                    // One database: the snapshot's document as before; several: one each under `databases`.
                    if documents.count == 1, documents[0].database == nil { try console.json(documents[0]) } else { try console.json(["databases": documents]) }
                } else if outcomes.count > 1 && outcomes.first?.backup.manifest?.set != nil {
                    console.line("  one set: \(outcomes.count) databases, each consistent on its own; snapshot does not stop the application, so writes between them are not consistent across the set")
                }
            }
        }
    }
}

struct SnapshotDocument: Encodable {
    let backup: BackupDocument
    let pruned: [String]
    let future_dated: [String]
    /// With --offsite: the object keys the snapshot was copied to.
    let offsite: [String]
    /// The database, in an instance of several.
    let database: String?
}
