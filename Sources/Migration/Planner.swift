import CSQLite
import Foundation
import SQLite
import Support

/// Plans pending migrations on a scratch copy of a database, classifying every statement with
/// SQLite's authorizer (SPEC.md stage 2). Never writes to the database it plans for.
public struct Planner: Sendable {
    public init() {}

    /// Copies `livePath` into a scratch file under `scratchFolder` (removed afterwards), then
    /// prepares each pending statement there with an authorizer recording what it would do and
    /// runs it, so statements depending on earlier ones prepare. The live database is read once
    /// (a consistent copy) and otherwise untouched: no bytes, no mtime, no `-wal`/`-shm` left.
    /// - Throws: `Failure` `migration.sql_failed` for a statement that does not prepare or run (file and
    ///   statement named), a changed applied migration or bad file names.
    /// With `fingerprintCopy` false (a deploy, which proves it inside its transaction anyway)
    /// claim 5 is not checked on the copy, saving two passes over the data.
    /// `stop` is asked every thousand SQLite steps on the copy: true stops the running statement
    /// (`SQLiteError` with `interrupted`), so a Ctrl-C during the plan of a large rebuild takes
    /// effect within a second.
    public func plan(livePath: String, files: [MigrationFile], scratchFolder: String, busyTimeout: Duration,
                     fingerprintCopy: Bool = true, stop: (@Sendable () -> Bool)? = nil) throws -> MigrationPlan {
        // A temp name a dead run's leftovers are found by (`DurableFile.leftovers`).
        let scratchPath = DurableFile.temporaryPath(for: scratchFolder + "/plan.db")
        defer { for suffix in ["", "-journal", "-wal", "-shm"] { unlink(scratchPath + suffix) } }
        let live = try Connection(path: livePath, mode: .inspect, busyTimeout: busyTimeout)
        let applied = try History.applied(live)
        let journalMode = try live.journalMode()
        let pending = try History.pending(files: files, applied: applied)
        // Nothing pending: classify nothing, but still report the state without copying.
        let scratch: Connection
        if pending.isEmpty {
            scratch = live
        } else {
            close(try DurableFile.createNew(scratchPath))
            try live.copy(into: scratchPath, timeout: busyTimeout)
            scratch = try Connection(path: scratchPath, mode: .readWrite)
            // The statements' time on the copy is the plan's write-lock estimate: in WAL mode
            // the copy writes and syncs its WAL as the live commit will (rows of 200 KB made the
            // estimate 3.3x short with no journal); without checkpoints, which the live commit
            // leaves to later.
            if journalMode == "wal" {
                try scratch.execute("PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA wal_autocheckpoint = 0")
            } else {
                try scratch.execute("PRAGMA journal_mode = OFF; PRAGMA synchronous = OFF")
            }
            scratch.stopWhen(stop)
        }
        return try Self.classify(pending: pending, applied: applied, journalMode: journalMode, on: scratch,
                                 fingerprintCopy: fingerprintCopy)
    }

    /// Runs on the plan's copy the checks a deploy runs inside its transaction after the
    /// statements, and returns their time, counted as the deploy counts them: each rebuilt
    /// table's fingerprint after (and before, in rollback-journal mode; in WAL mode the
    /// before-pass runs on a second connection while the statements run) and `quick_check`
    /// of each table the statements wrote. Slightly more than the deploy's own (all columns of
    /// a rebuilt table are fingerprinted, not only the kept ones), never less.
    static func timeChecks(on scratch: Connection, evidence: [TableEvidence], created: [String], finalNames: Set<String>,
                           journalMode: String) throws -> Duration {
        let clock = ContinuousClock()
        var total = Duration.zero
        var written = Set(created)
        for table in evidence {
            guard let final = table.finalName, finalNames.contains(final) else { continue }
            if table.rebuilt {
                let pass = try clock.measure { _ = try scratch.fingerprint(table: final) }
                total += journalMode == "wal" ? pass : pass * 2
            }
            if table.rebuilt || table.rowsAdded > 0 || table.rowsDeleted > 0 || !table.valuesChanged.isEmpty { written.insert(final) }
        }
        for table in written.sorted() { total += try clock.measure { _ = try scratch.integrityProblems(table: table) } }
        return total
    }

    /// The tables `files` create, found by preparing their statements on an empty in-memory
    /// database with the authorizer watching. A statement that refers to tables the files do not
    /// create (an `ALTER TABLE` of the application's own table) does not prepare there and is
    /// passed over: this only names tables, it never judges the files.
    public static func tablesDefined(by files: [MigrationFile]) throws -> [String] {
        let scratch = try Connection(path: ":memory:", mode: .create)
        var tables = [String]()
        for file in files {
            for sql in (try? Connection.split(file.sql)) ?? [] {
                guard let actions = try? scratch.authorizerActions(for: sql) else { continue }
                for action in actions where action.code == SQLITE_CREATE_TABLE {
                    if let name = action.first, !name.hasPrefix("sqlite_"), !tables.contains(name) { tables.append(name) }
                }
                try? scratch.execute(sql)
            }
        }
        return tables
    }

    /// Foreign-key violations per child and parent table, and a definition that cannot be
    /// checked ("foreign key mismatch") with its message.
    /// With `table`, only the rows of that table are checked.
    public static func foreignKeyViolations(_ db: Connection, table: String? = nil) -> [ForeignKeyViolation: Int] {
        do {
            var counts = [ForeignKeyViolation: Int]()
            for row in try db.rows("PRAGMA foreign_key_check" + (table.map { "(\(quoteIdentifier($0)))" } ?? "")) {
                counts[.dangling(child: row[0].string ?? "?", parent: row[2].string ?? "?"), default: 0] += 1
            }
            return counts
        } catch {
            return [.uncheckable((error as? SQLiteError)?.sqliteMessage ?? "\(error)"): 1]
        }
    }

    /// `PRAGMA foreign_keys = OFF` (or `ON`, `0`, `1`, …), as ORMs emit around table rebuilds.
    public static func isForeignKeysPragma(_ sql: String) -> Bool {
        var text = Connection.normalizeSQL(sql).lowercased().replacingOccurrences(of: " ", with: "")
        while text.hasSuffix(";") { text.removeLast() }
        return ["off", "on", "0", "1", "false", "true", "no", "yes"].contains { text == "pragmaforeign_keys=\($0)" || text == "pragmamain.foreign_keys=\($0)" }
    }

    static func summary(_ sql: String) -> String {
        let flat = Connection.normalizeSQL(sql)
        return flat.count > 100 ? String(flat.prefix(100)) + "…" : flat
    }

    /// A CREATE TABLE statement reduced for shape comparison: whitespace collapsed, case folded,
    /// `IF NOT EXISTS` and a trailing semicolon removed.
    public static func normalizeCreate(_ sql: String) -> String {
        var text = Connection.normalizeSQL(sql).lowercased()
        text = text.replacingOccurrences(of: " if not exists", with: "")
        while text.hasSuffix(";") { text.removeLast() }
        text = text.replacingOccurrences(of: "( ", with: "(").replacingOccurrences(of: " )", with: ")")
        return text.replacingOccurrences(of: "\"", with: "")
    }
}
