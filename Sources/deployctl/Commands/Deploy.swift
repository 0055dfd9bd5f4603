import ArgumentParser
import Orchestrator

struct Deploy: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Preflight, snapshot, rehearse, migrate and verify in one transaction, restart; undo on failure.",
        discussion: """
            The plan stage prints what 'deployctl plan' prints; --dry-run stops there. A failure after \
            the commit (start hook, health check) undoes the deploy by the migration's class.
            Examples:
              deployctl deploy prod --dry-run
              deployctl deploy all
              deployctl deploy prod --allow-destructive     # only for files that say -- allow-destructive
              deployctl deploy prod --online                # a 12-step table rebuild, while the application writes
            """)

    @OptionGroup var global: GlobalOptions

    @OptionGroup var selection: DatabaseOption

    @OptionGroup var metrics: MetricsOption

    @Argument(help: "The instance to deploy, or 'all' for deploy.toml's order.", completion: InstanceCompletion.instancesOrAll)
    var instance: String

    @Flag(help: "Plan only: show what would happen; take no lock, run no hook, change nothing.")
    var dryRun = false

    @Flag(inversion: .prefixedNo, help: "Gzip the pre-deploy snapshot, or store it plain (default: the instance config's backups.compress, else backups.gzip).")
    var gzip: Bool?

    @Flag(help: "Answer yes to any question deploy asks (it asks none today, and never waits for input without a terminal).")
    var yes = false

    @Flag(help: "Allow non-additive statements in migration files that say allow-destructive.")
    var allowDestructive = false

    @Flag(help: "Skip the check that earlier instances in deploy.toml already have the pending migrations.")
    var skipPromotionCheck = false

    @Flag(help: "Rebuild the table online: copy in short batches while the application writes, then cut over in one short transaction (refused when the migration cannot run so).")
    var online = false

    func run() throws {
        let console = Console(global, selection)
        try Metrics.around(metrics, console: console, instance: instance, every: { try $0.allInstances() }, command: "deploy") {
            try console.run { runtime in
                let options = DeployOptions(dryRun: dryRun, gzip: gzip, allowDestructive: allowDestructive, skipPromotionCheck: skipPromotionCheck,
                                            online: online)
                let reports = instance == "all"
                    ? try Deployment(runtime).deployAll(options: options)
                    : [try Deployment(runtime).deploy(instance: instance, options: options)]
                if global.json { try console.json(instance == "all" ? AnyEncodable(reports) : AnyEncodable(reports[0])) }
            }
        }
    }
}

/// Wraps a value so either of two encodable shapes can be printed.
struct AnyEncodable: Encodable {
    let encodeValue: (Encoder) throws -> Void
    init<T: Encodable>(_ value: T) { encodeValue = value.encode }
    func encode(to encoder: Encoder) throws { try encodeValue(encoder) }
}
