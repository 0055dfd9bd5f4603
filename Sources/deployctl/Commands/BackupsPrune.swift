import ArgumentParser
import Backup
import Foundation
import Orchestrator
import Support

struct BackupsPrune: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "prune",
        abstract: "Remove old backups by retention rules, per label.",
        discussion: """
            A backup is kept if any --keep-* rule keeps it. Whatever the rules, the newest backup of \
            every pre_* label, one an unfinished deploy refers to, and backups dated in the future \
            are kept. Only deployctl backups are ever removed. A prune that leaves a label with no \
            backup restore could use asks on a terminal and needs --yes otherwise.

            Examples:
              deployctl backups prune prod --keep-last 7 --dry-run
              deployctl backups prune prod --label nightly --keep-within 30d --keep-monthly 12
            """)

    @OptionGroup var global: GlobalOptions

    @OptionGroup var selection: DatabaseOption

    @Argument(help: "The instance whose backups to prune.", completion: InstanceCompletion.instances)
    var instance: String

    @OptionGroup(title: "Retention (at least one)") var retention: RetentionOptions

    @Option(help: "Only prune backups with this label.")
    var label: String?

    @Flag(help: "Show each backup with the rule that keeps it, or 'remove'; remove nothing.")
    var dryRun = false

    @Flag(help: "Remove even when a label would lose every backup (asked on a terminal otherwise).")
    var yes = false

    @Option(help: ArgumentHelp("Prune this host's copies in an [[offsite]] remote instead (its keep_* keys apply when no rule is given).", valueName: "name"))
    var remote: String?

    func validate() throws {
        if try retention.policy().isEmpty && remote == nil {
            throw ValidationError("give at least one rule: --keep-last, --keep-within, --keep-daily, --keep-weekly or --keep-monthly.")
        }
    }

    func run() throws {
        let console = Console(global, selection)
        if remote != nil { return try pruneRemote(console) }
        try console.run { runtime in try console.eachDatabase(instance, runtime) { console, runtime in
            let policy = try retention.policy()
            let prepared = try PreparedPrune.prepare(runtime, instance: instance, policy: policy, label: label, dryRun: dryRun)
            if dryRun { return try show(console, dryRun: true, decisions: prepared.decisions, removed: prepared.decisions.filter { !$0.kept }.map(\.entry.name)) }
            if !prepared.emptied.isEmpty {
                try confirm(prepared.emptied, console)
                try runtime.failpoints.hit(.confirm)
            }
            let outcome = try prepared.perform()
            try show(console, dryRun: false, decisions: outcome.decisions, removed: outcome.doomed.map(\.name))
        } }
    }

    /// `--remote`: the same rules on this host's copies in the store.
    func pruneRemote(_ console: Console) throws {
        try console.run { runtime in try console.eachDatabase(instance, runtime) { console, runtime in
            let prepared = try PreparedRemotePrune.prepare(runtime, instance: instance, remote: remote, policy: try retention.policy(), label: label,
                                                           dryRun: dryRun)
            defer { prepared.release() }
            if !dryRun && !prepared.emptied.isEmpty { try confirm(prepared.emptied, console) }
            let decisions = dryRun ? prepared.decisions : try prepared.perform()
            try show(console, dryRun: dryRun, decisions: decisions, removed: decisions.filter { !$0.kept }.map(\.entry.name))
        } }
    }

    /// Asks before a label loses every backup: on a terminal, or `--yes`.
    func confirm(_ emptied: [String: Int], _ console: Console) throws {
        let labels = emptied.sorted { $0.key < $1.key }.map { "label \($0.key) (\($0.value) removed)" }.joined(separator: ", ")
        let what = "this prune leaves no backup restore --latest could use for \(labels)"
        try console.confirm("Careful: \(what). Go on?", yes: yes,
                            notTerminal: Failure(.confirmationNeeded, "\(what); nothing was removed", hint: "check with --dry-run, then add --yes if that is what you want"),
                            declined: Failure(.declined, "prune cancelled; nothing was removed"))
    }

    func show(_ console: Console, dryRun: Bool, decisions: [RetentionDecision], removed: [String]) throws {
        if global.json {
            struct Decision: Encodable { let name: String; let label: String; let keep: Bool; let reasons: [String] }
            struct Document: Encodable { let dry_run: Bool; let removed: [String]; let decisions: [Decision] }
            return try console.json(Document(dry_run: dryRun, removed: removed,
                                             decisions: decisions.map { Decision(name: $0.entry.name, label: $0.entry.label, keep: $0.kept, reasons: $0.reasons) }))
        }
        if dryRun {
            console.line(Console.table(["NAME", "CREATED (UTC)", "LABEL", "DECISION"], decisions.map {
                [$0.entry.name, Console.time($0.entry.createdAt), $0.entry.label, $0.kept ? "keep: " + $0.reasons.joined(separator: "; ") : "remove"]
            }))
        } else {
            for name in removed { console.line("removed \(name)") }
        }
        console.line("\(counted(removed.count, "backup")) \(dryRun ? "would be removed" : "removed"), \(decisions.count - removed.count) kept.")
    }
}
