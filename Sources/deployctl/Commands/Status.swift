import ArgumentParser
import Orchestrator

struct Status: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Show an instance's database, migrations, last backup and deploy, lock holders and unfinished deploys.")

    @OptionGroup var global: GlobalOptions

    @Argument(help: "The instance, or 'all'.")
    var instance: String

    func run() throws {
        let console = Console(global)
        try console.run { runtime in
            let names = instance == "all" ? try runtime.workspace.allInstances() : [instance]
            let statuses = try names.map { try runtime.status(instance: $0) }
            if global.json {
                try console.json(instance == "all" ? AnyEncodable(statuses) : AnyEncodable(statuses[0]))
                return
            }
            for s in statuses {
                console.line("\(s.instance): \(s.database)\(s.exists ? "" : " (missing)")")
                if let bytes = s.bytes { console.line("  size: \(Console.size(bytes)), journal mode: \(s.journalMode ?? "?")") }
                console.line("  applied: \(s.applied.isEmpty ? "none" : s.applied.joined(separator: ", "))")
                console.line("  pending: \(s.pending.isEmpty ? "none" : s.pending.joined(separator: ", "))")
                console.line("  last backup: \(s.lastBackup ?? "none")")
                if let check = s.lastVerification {
                    console.line("  last verification: \(check.backup) at \(Console.time(check.at)): \(check.result == "ok" ? "good" : "FAILED: \(check.reason ?? "")")")
                } else {
                    console.line("  last verification: none (deployctl backups verify \(s.instance))")
                }
                for name in s.failedBackups { console.line("  warning: \(name) failed its last check; it is never restored by --latest") }
                console.line("  last deploy: \(s.lastDeploy.map { "\($0) (\(s.lastDeployOutcome ?? "?"))" } ?? "none")")
                if let holder = s.lockHolder { console.line("  instance lock held by PID \(holder.pid) (\(holder.command))") }
                for holder in s.databaseHolders { console.line("  database open in \(holder)") }
                for name in s.futureDatedBackups {
                    console.line("  warning: \(name) is dated in the future (clock skew?); it is not counted as the last backup")
                }
                if s.leftoverBytes > 0 {
                    console.line("  \(Console.size(s.leftoverBytes)) of temp files left by runs that died (the next deploy, snapshot, restore or prune removes them)")
                }
                if let unfinished = s.unfinishedDeploy {
                    console.line("  unfinished deploy \(unfinished): the next deploy or restore finishes or undoes it")
                }
            }
        }
    }
}
