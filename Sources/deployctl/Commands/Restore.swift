import ArgumentParser
import Backup
import Foundation
import Orchestrator
import Support

struct Restore: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Restore a backup into the live database (after saving it as a pre_restore snapshot), a new file, or over a broken one.")

    @OptionGroup var global: GlobalOptions

    @Argument(help: "The instance to restore.")
    var instance: String

    @Argument(help: "The backup to restore: a bare name from 'backups list'.")
    var backup: String?

    @Flag(help: "Restore the newest backup whose checksum is good.")
    var latest = false

    @Option(help: "With --latest, only consider backups with this label.")
    var label: String?

    @Flag(help: "Do not ask for confirmation (required when stdin is not a terminal).")
    var yes = false

    @Flag(help: "Verify the backup and show what the restore would discard; change nothing.")
    var dryRun = false

    @Option(help: "Restore into this new file instead of the live database (never an existing file).")
    var to: String?

    @Flag(help: "Recover a missing or unreadable live database: the broken file is moved aside, never deleted.")
    var replace = false

    func validate() throws {
        if latest == (backup != nil) { throw ValidationError("Give exactly one of a backup name or --latest.") }
        if label != nil && !latest { throw ValidationError("--label only goes with --latest.") }
        if to != nil && replace { throw ValidationError("--to and --replace exclude each other.") }
    }

    func run() throws {
        let console = Console(global)
        try console.run { runtime in
            let selection: BackupSelection = latest ? .latest(label: label) : .named(backup!)
            let target: RestoreTarget = to.map { .newFile($0) } ?? (replace ? .replace : .live)
            let outcome = try runtime.restore(instance: instance, selection: selection, target: target, dryRun: dryRun) { preview in
                show(preview, console)
                if yes { return true }
                guard isatty(0) == 1 else {
                    throw Failure(.usage, "restore needs --yes when stdin is not a terminal; nothing was changed",
                                  hint: "review the lines above, then run again with --yes")
                }
                FileHandle.standardError.write(Data("Restore \(preview.backup.name) into \(preview.targetPath)? [y/N] ".utf8))
                return readLine()?.lowercased().hasPrefix("y") == true
            }
            if global.json {
                try console.json(RestoreDocument(outcome))
                return
            }
            if !outcome.performed {
                show(outcome.preview, console)
                console.line("Dry run: backup \(outcome.preview.backup.name) is good; nothing was changed.")
                return
            }
            if let aside = outcome.movedAside { console.line("  the unreadable database was moved to \(aside)") }
            console.line(console.green("✓") + " Restored \(outcome.preview.backup.name) into \(outcome.preview.targetPath)")
            if let pages = outcome.provenPages { console.line("  proven: all \(pages) pages are identical to the backup's") }
            if let safety = outcome.preRestoreBackup {
                console.line("  the database as it was is saved as \(safety.name)")
            }
        }
    }

    private func show(_ preview: RestorePreview, _ console: Console) {
        console.line("Backup \(preview.backup.name): checksum and quick_check good")
        guard !preview.differences.isEmpty else { return }
        console.line("What the restore changes in \(preview.targetPath):")
        console.line(Console.table(
            ["TABLE", "LIVE ROWS", "BACKUP ROWS", "DISCARDED", "RESTORED"],
            preview.differences.map {
                [$0.table, $0.liveRows.map(String.init) ?? "-", $0.backupRows.map(String.init) ?? "-", String($0.discarded), String($0.restored)]
            }).split(separator: "\n").map { "  " + $0 }.joined(separator: "\n"))
        console.line("  \(preview.discardedRows) row(s) of the live database are discarded (kept in the pre_restore snapshot).")
    }
}

struct RestoreDocument: Encodable {
    let backup: String
    let target: String
    let performed: Bool
    let differences: [TableDifference]
    let discarded_rows: Int
    let pre_restore_backup: String?
    let moved_aside: String?
    let proven_pages: Int?

    init(_ outcome: RestoreOutcome) {
        backup = outcome.preview.backup.name
        target = outcome.preview.targetPath
        performed = outcome.performed
        differences = outcome.preview.differences
        discarded_rows = outcome.preview.discardedRows
        pre_restore_backup = outcome.preRestoreBackup?.name
        moved_aside = outcome.movedAside
        proven_pages = outcome.provenPages
    }
}
