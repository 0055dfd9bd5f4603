import Foundation
import Migration
import Orchestrator
import Support

/// How the CLI shows what the library reports: the one place where events become lines,
/// marks and progress. `--quiet`, `--json` and `--log-level` are decided here and in `Console`.
extension Console {
    func render(_ event: Event) {
        switch event {
        case .progress(let report):
            progress?.report(report)
        case .instanceStarted(let name):
            info(String(repeating: "=", count: 60))
            info("Deploying instance: \(name)")
            info(String(repeating: "=", count: 60))
        case .databaseStarted(let name, let path):
            info("  Database \(name) (\(path)):")
        case .stageStarted(let stage):
            info("→ \(stage.rawValue)…")
            progress?.update(ProgressLine.words(stage), 0, 0)
        case .stageFinished(let stage, let seconds, let succeeded):
            progress?.abandon()
            debug("stage \(stage.rawValue) took \(String(format: "%.3f", seconds)) s")
            info("\(succeeded ? "✓" : "✗") \(stage.rawValue) (\(String(format: "%.2f", seconds))s)")
        case .plan(let plan, let database):
            info("  Database: \(database)")
            for line in Self.planLines(plan) { info(fit("  " + line)) }
        case .table(.creating(let table)):
            info("  → Creating \(table)…")
        case .table(.created(let table)):
            info("  ✓ \(table) created")
        case .table(.alreadyExists(let table)):
            info("  \(table) already exists")
        case .fact(let text):
            info(fit("  " + text))
        case .warning(let text):
            warning(fit("  warning: " + text))
        case .notice(let text):
            progress?.clearForOutput()
            standardError.write("deployctl: notice: \(text)\n")
        case .stepStarted(let text):
            info("→ \(text)…")
        case .stepDone(let text):
            info("✓ \(text)")
        case .dryRunFinished:
            info("Dry run: nothing was changed.")
        case .nothingToDo(let existing):
            for table in existing { info("  \(table) already exists") }
            info("Nothing to do: every migration is already applied.")
        case .deployed(let report):
            info("")
            info(report.outcome == .nothingToDo ? "✓ \(report.instance) is up to date" : "✓ Migration completed for \(report.instance)")
            info("  Tables created: \(report.tablesCreated.count)")
            info("  Tables already existed: \(report.tablesAlreadyExisted.count)")
            if let classification = report.classification { info("  Class: \(classification)") }
            for change in report.changes ?? [] { info(fit("  Changed: \(change)")) }
            if let snapshot = report.snapshot { info("  Backup: \(snapshot)") }
            for database in report.databases ?? [] {
                if let snapshot = database.snapshot { info("  Backup of \(database.database ?? ""): \(snapshot)") }
            }
        case .debug(let text):
            debug(text)
        }
    }

    /// A plan as lines, for `plan` and for a deploy's plan stage (and so `deploy --dry-run`):
    /// state, each pending migration with its statements' classes and what the rehearsal copy
    /// showed, and the safety claims with how each is proven.
    static func planLines(_ plan: MigrationPlan) -> [String] {
        var lines = [
            "Existing tables: " + plan.existingTables.keys.sorted().map { "\($0) (\(counted(plan.existingTables[$0]!, "row")))" }.joined(separator: ", "),
            "Journal mode: \(plan.journalMode)",
            "Applied migrations: \(plan.applied.isEmpty ? "none" : plan.applied.map(\.key).joined(separator: ", "))",
            "Pending migrations: \(plan.pending.isEmpty ? "none" : plan.pending.joined(separator: ", "))",
        ]
        for migration in plan.migrations {
            let origin = migration.format == "deployctl" ? "" : migration.format == MigrationSummary.commandFormat ? ", by migrate_command" : ", \(migration.format) file"
            lines.append("  \(migration.migration): \(migration.classification.rawValue)\(origin)\(migration.hasDown ? ", has a down part" : "")")
            for note in migration.notes { lines.append("    note: \(note)") }
            for statement in plan.statements where statement.migration == migration.migration {
                // A statement the authorizer calls preserving may still be what the rehearsal found
                // destructive (DROP COLUMN is an ALTER TABLE): no tick inside a destructive migration.
                let mark = statement.classification == .destructive ? "✗" : migration.classification == .destructive ? "·" : "✓"
                lines.append("    \(mark) #\(statement.index) \(statement.classification.rawValue): \(statement.actions.joined(separator: ", "))"
                             + (statement.problems.isEmpty ? "" : " — " + statement.problems.joined(separator: "; "))
                             + (statement.note.map { " — note: " + $0 } ?? ""))
            }
            for fact in migration.evidence { lines.append("    on the rehearsal copy: \(fact)") }
        }
        guard !plan.pending.isEmpty else { return lines }
        lines.append("Class: \(plan.classification.rawValue)")
        lines.append("Tables to create: \(plan.tablesToCreate.isEmpty ? "none" : plan.tablesToCreate.joined(separator: ", "))")
        lines.append("Tables already existing: \(plan.tablesAlreadyExisting.isEmpty ? "none" : plan.tablesAlreadyExisting.joined(separator: ", "))")
        lines.append("Writes blocked during the deploy: about \(String(format: "%.0f", plan.writeLockEstimateMilliseconds)) ms (measured on the plan's copy: "
                     + "statements \(String(format: "%.0f", plan.statementMilliseconds)) ms, checks inside the transaction \(String(format: "%.0f", plan.checkMilliseconds)) ms)")
        lines.append("Safety claims:")
        for claim in plan.claims {
            let (mark, verdict) = claim.proven ? ("✓", "proven") : claim.deferred ? ("…", "checked during the deploy") : ("✗", "NOT proven")
            lines.append("  \(mark) \(claim.claim): \(verdict) — \(claim.how)")
        }
        return lines
    }
}
