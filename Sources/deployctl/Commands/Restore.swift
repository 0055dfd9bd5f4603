import ArgumentParser
import Backup
import Foundation
import Locking
import Orchestrator
import Support

struct Restore: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Restore a backup into the live database (after saving it as a pre_restore snapshot), a new file, or over a broken one.",
        discussion: """
            Into the live database: the backup is checked (sha256, integrity_check), the preview shows \
            what is discarded, the stop hook runs, then the live state is saved as a pre_restore \
            copy and replaced in one critical section (no application commit can fall between), \
            the result is proven page by page, and the start and health hooks run. Only backups of \
            this instance are restored (--allow-foreign overrides). --latest never picks a \
            pre_restore copy unless --label pre_restore is given.

            Exit codes: 0 done; 1 failed or interrupted, the live database as it was; 2 changed and \
            not proven back; 65 bad or foreign backup; 66 no such backup; 73 database not writable; \
            74 disk full or I/O error; 75 write lock held past the busy timeout.

            Examples:
              deployctl restore prod --latest --dry-run
              deployctl restore prod --latest --yes
              deployctl restore prod --latest --label pre_restore --yes   # undo the last restore
              deployctl restore prod --remote primary --latest --yes      # from the object store

            With --remote the copy is first downloaded into the local backups folder, checked against \
            its manifest (sha256, size; 65 when it is damaged or truncated in the store, nothing \
            restored), then restored exactly as a local backup. On a new host, --host names the old \
            host's folder.
            """)

    @OptionGroup var global: GlobalOptions

    @OptionGroup var selection: DatabaseOption

    @Argument(help: "The instance to restore.", completion: InstanceCompletion.instances)
    var instance: String

    @Argument(help: "The backup to restore: a bare name from 'backups list'.")
    var backup: String?

    @Flag(help: "Restore the newest backup whose checksum is good and whose label is not pre_restore.")
    var latest = false

    @Option(help: "With --latest, only consider backups with this label (pre_restore copies only this way).")
    var label: String?

    @Flag(help: "Do not ask for confirmation (required when stdin is not a terminal).")
    var yes = false

    @Flag(help: "Verify the backup and show what the restore would discard; change nothing, run no hook.")
    var dryRun = false

    @Option(help: "Restore into this new file instead of the live database (never an existing file); runs no hook.")
    var to: String?

    @Flag(help: "Recover a missing or unreadable live database: the broken file is moved aside, never deleted.")
    var replace = false

    @Flag(help: "Do not run the instance's stop hook before and start and health hooks after the restore.")
    var noHooks = false

    @Flag(help: "Restore a backup taken of another instance or database (refused otherwise).")
    var allowForeign = false

    @Flag(help: "With --remote: accept a copy whose manifest this instance's offsite signing key did not sign (pushed before signing, or on a host without the key).")
    var allowUnsigned = false

    @OptionGroup var remote: RemoteOptions

    func validate() throws {
        if latest == (backup != nil) { throw ValidationError("Give exactly one of a backup name or --latest.") }
        if label != nil && !latest { throw ValidationError("--label only goes with --latest.") }
        if to != nil && replace { throw ValidationError("--to and --replace exclude each other.") }
    }

    func run() throws {
        let console = Console(global, selection)
        try console.run { runtime in
            // A backup named without --database: the database whose backups hold it.
            let runtime = try runtime.holding(backup, of: instance)
            let request = RestoreRequest(
                instance: instance, selection: latest ? .latest(label: label) : .named(backup!),
                target: to.map { .newFile($0) } ?? (replace ? .replace : .live), dryRun: dryRun,
                runHooks: !noHooks, allowForeign: allowForeign,
                source: remote.remote != nil || remote.host != nil ? .remote(name: remote.remote, host: remote.host, allowUnsigned: allowUnsigned) : .local)
            if let set = try RestorePlanner(runtime).beginSet(request) {
                defer { set.release() }
                return try restoreSet(set, console)
            }
            let prepared = try RestorePlanner(runtime).begin(request)
            defer { prepared.release() }
            if let fetched = prepared.fetched {
                console.note(fetched.downloaded ? "fetched \(fetched.name) from the remote into the local backups folder, checked against its manifest"
                                                : "\(fetched.name) is already in the local backups folder with the remote copy's checksum: using it")
            }
            let preview = prepared.preview
            for skipped in preview.passedOver { console.note("warning: --latest passed over the newer \(skipped)") }
            if dryRun {
                let outcome = try prepared.perform()
                if global.json { return try console.json(RestoreDocument(outcome)) }
                show(preview, console)
                console.line("Dry run: backup \(preview.backup.name) is good; nothing was changed.")
                return
            }
            show(preview, console)
            // --to writes a new file and changes nothing that exists: no question to ask.
            try console.confirm("Restore \(preview.backup.name) into \(preview.targetPath)?", yes: yes || to != nil,
                                notTerminal: Failure(.confirmationNeeded, "restore needs --yes when stdin is not a terminal; nothing was changed",
                                                     hint: "review the lines above, then run again with --yes"),
                                declined: Failure(.declined, "restore cancelled; nothing was changed"))
            let outcome = try prepared.perform()
            if global.json {
                if outcome.interruptedTooLate { console.note("deployctl: the interrupt came after the restore had committed: it was finished") }
                return try console.json(RestoreDocument(outcome))
            }
            if outcome.alreadyHeld {
                console.line(console.green("✓") + " Nothing to restore: \(preview.targetPath) already holds every row, the schema and the header versions of \(preview.backup.name); nothing was changed and no copy was saved")
                return
            }
            if let aside = outcome.movedAside { console.line("  the unreadable database was moved to \(aside)") }
            console.line(console.green("✓") + " Restored \(preview.backup.name) into \(preview.targetPath)")
            if let pages = outcome.provenPages { console.line("  proven: all \(pages) pages are identical to the backup's") }
            if let proven = outcome.provenRows {
                console.line("  restored by rows: the \(counted(proven.rows, "row")) that differed (\(counted(proven.tables, "table"))) were rewritten and proven equal to the backup's; every other row was proven equal page by page before the restore")
            }
            if let reason = outcome.unproven { console.line("  not proven page by page: \(reason)") }
            if let safety = outcome.preRestoreBackup {
                console.line("  \(counted(outcome.discardedRows, "row")) of the replaced database \(outcome.discardedRows == 1 ? "was" : "were") discarded; it is saved as \(safety.name)")
                if outcome.differences != preview.differences {
                    console.line("  (the application wrote after the preview; the counts above are exact, from the saved copy)")
                }
            }
            if let ms = outcome.writeLockMilliseconds { console.line("  writes were blocked for \(String(format: "%.0f", ms)) ms") }
            if outcome.interruptedTooLate { console.note("deployctl: the interrupt came after the restore had committed: it was finished, and proven as said above") }
        }
    }

    /// `restore --latest` of an instance of several databases: each preview, one question,
    /// then every database from the one set.
    private func restoreSet(_ set: PreparedSetRestore, _ console: Console) throws {
        for skipped in set.passedOver { console.note("warning: --latest passed over the newer \(skipped)") }
        if !global.json {
            console.line("Set \(set.setId): \(set.members.count) databases, the newest complete good set"
                         + (set.stopsApplication ? "; the stop hook runs first, start and health after" : ""))
            for member in set.members {
                console.line("Database \(member.preview.targetPath):")
                show(member.preview, console)
            }
        }
        if dryRun {
            let outcomes = try set.perform()
            if global.json { return try console.json(RestoreSetDocument(set: set.setId, databases: outcomes.map(RestoreDocument.init))) }
            console.line("Dry run: every backup of set \(set.setId) is good; nothing was changed.")
            return
        }
        try console.confirm("Restore set \(set.setId) into the \(set.members.count) live databases?", yes: yes,
                            notTerminal: Failure(.confirmationNeeded, "restore needs --yes when stdin is not a terminal; nothing was changed",
                                                 hint: "review the lines above, then run again with --yes"),
                            declined: Failure(.declined, "restore cancelled; nothing was changed"))
        let outcomes = try set.perform()
        if global.json { return try console.json(RestoreSetDocument(set: set.setId, databases: outcomes.map(RestoreDocument.init))) }
        for outcome in outcomes {
            let preview = outcome.preview
            if outcome.alreadyHeld {
                console.line(console.green("✓") + " \(preview.targetPath) already holds \(preview.backup.name); nothing was changed")
                continue
            }
            console.line(console.green("✓") + " Restored \(preview.backup.name) into \(preview.targetPath)")
            if let pages = outcome.provenPages { console.line("  proven: all \(pages) pages are identical to the backup's") }
            if let proven = outcome.provenRows { console.line("  restored by rows: \(counted(proven.rows, "row")) rewritten and proven equal to the backup's") }
            if let reason = outcome.unproven { console.line("  not proven page by page: \(reason)") }
            if let safety = outcome.preRestoreBackup {
                console.line("  \(counted(outcome.discardedRows, "row")) of the replaced database \(outcome.discardedRows == 1 ? "was" : "were") discarded; it is saved as \(safety.name)")
            }
        }
        if !set.stopsApplication {
            console.line("  no stop hook ran: each database is restored on its own; writes the application made between them are not consistent across the set")
        }
    }

    private func show(_ preview: RestorePreview, _ console: Console) {
        var chosen = "Backup \(preview.backup.name) (label \(preview.backup.label), taken \(Console.time(preview.backup.createdAt)) UTC)"
        if latest { chosen += ", the newest good one" + (label == nil ? " not labelled pre_restore" : " labelled \(label!)") }
        console.line(chosen)
        console.line("  checksum good; \(preview.check == "integrity_check" ? "integrity_check good" : preview.check)")
        if preview.stopsApplication { console.line("  the stop hook runs first; start and health run after") }
        if !preview.holders.isEmpty {
            console.line("  no stop hook runs, and these processes hold the database (their writes wait while it is replaced):")
            for holder in preview.holders { console.line("    \(holder.description)") }
        }
        guard !preview.differences.isEmpty || !preview.notCompared.isEmpty else { return }
        console.line("What the restore changes in \(preview.targetPath) (as it stands now):")
        console.line(Console.table(
            ["TABLE", "LIVE ROWS", "BACKUP ROWS", "DISCARDED", "RESTORED"],
            preview.differences.map {
                [$0.table, $0.liveRows.map(String.init) ?? "-", $0.backupRows.map(String.init) ?? "-", String($0.discarded), String($0.restored)]
            }).split(separator: "\n").map { "  " + $0 }.joined(separator: "\n"))
        for table in preview.notCompared { console.line("  \(table.table): not compared (\(table.reason))") }
        console.line("  \(counted(preview.discardedRows, "row")) of the live database \(preview.discardedRows == 1 ? "is" : "are") discarded (kept in the pre_restore snapshot).")
    }
}

/// `restore --latest --json` of an instance of several databases.
struct RestoreSetDocument: Encodable {
    let set: String
    let databases: [RestoreDocument]
}

struct RestoreDocument: Encodable {
    let backup: String
    let label: String
    let target: String
    let performed: Bool
    let check: String
    /// The preview's differences (as the live database stood when compared).
    let differences: [TableDifference]
    let not_compared: [NotCompared]
    let discarded_rows: Int
    /// What was discarded, exactly: the replaced state against the backup.
    let discarded: [TableDifference]?
    let pre_restore_backup: String?
    let moved_aside: String?
    let proven_pages: Int?
    /// A restore by rows: the rows rewritten and proven equal (nil for a page copy).
    let proven_rows: Int?
    /// True when nothing was done because the live database already held the backup's content.
    let already_held: Bool
    let unproven: String?
    let write_lock_ms: Double?
    let holders: [DatabaseHolder]
    let hooks: [HookResult]
    let interrupted_too_late: Bool
    /// Newer backups `--latest` passed over, each with why.
    let passed_over: [String]

    init(_ outcome: RestoreOutcome) {
        backup = outcome.preview.backup.name
        label = outcome.preview.backup.label
        target = outcome.preview.targetPath
        performed = outcome.performed
        check = outcome.preview.check
        differences = outcome.preview.differences
        not_compared = outcome.notCompared
        discarded_rows = outcome.performed ? outcome.discardedRows : outcome.preview.discardedRows
        discarded = outcome.performed ? outcome.differences : nil
        pre_restore_backup = outcome.preRestoreBackup?.name
        moved_aside = outcome.movedAside
        proven_pages = outcome.provenPages
        proven_rows = outcome.provenRows?.rows
        already_held = outcome.alreadyHeld
        unproven = outcome.unproven
        write_lock_ms = outcome.writeLockMilliseconds
        holders = outcome.preview.holders
        hooks = outcome.hooks
        interrupted_too_late = outcome.interruptedTooLate
        passed_over = outcome.preview.passedOver
    }
}
