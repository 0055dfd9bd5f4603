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
    /// - Throws: `Failure` `.usage` for a statement that does not prepare or run (file and
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

    /// Classifies and runs `pending` on `scratch`, a throwaway copy.
    static func classify(pending: [MigrationFile], applied: [AppliedMigration], journalMode: String,
                         on scratch: Connection, fingerprintCopy: Bool = false) throws -> MigrationPlan {
        let original = try scratch.schema()
        let originalNames = Set(original.map(\.name))
        let originalTables = original.filter { $0.type == "table" }.map(\.name)
        var existingTables = [String: Int]()
        for table in originalTables { existingTables[table] = try scratch.rowCount(table) }
        if pending.isEmpty {
            return MigrationPlan(applied: applied, pending: [], statements: [], tablesToCreate: [], tablesAlreadyExisting: [],
                                 existingTables: existingTables, journalMode: journalMode, created: [], claims: [], migrations: [], evidence: [])
        }
        let before = fingerprintCopy ? try Dictionary(uniqueKeysWithValues: originalTables.map { ($0, try scratch.fingerprint(table: $0)) }) : [:]
        let recorder = try EvidenceRecorder(scratch)
        let existingColumns = recorder.existingColumns.mapValues { Set($0.map { $0.lowercased() }) }
        // Existing tables whose rows SQLite's preupdate hook cannot tell apart (no rowid).
        let withoutRowid = Set(try existingColumns.keys.filter { try scratch.isWithoutRowid($0) })
        // Existing tables a statement dropped or renamed away: rebuilt, if their rows live on.
        var replaced = Set<String>()
        // Dropping or renaming a table can leave other tables' keys pointing nowhere: the
        // violations before are counted when the files could do that.
        let reshapes = pending.contains { file in
            let text = Connection.normalizeSQL(file.sql).uppercased()
            return text.contains("DROP TABLE") || text.contains(" RENAME ")
        }
        var checking = Duration.zero
        let clock = ContinuousClock()
        var violationsBefore = [String: Int]()
        // The deploy counts foreign-key violations before and after under its lock too.
        if reshapes { checking += clock.measure { violationsBefore = Self.foreignKeyViolations(scratch) } * 2 }

        var statements = [StatementPlan]()
        var created = [CreatedObject]()
        var toCreate = [String]()
        var alreadyExisting = [String]()
        var touchedBy = [String: Set<String>]()
        var executing = Duration.zero
        // Each migration's own evidence, with several pending: the state before it against the
        // state after it (`MigrationEffects`).
        var effects = pending.count > 1 ? MigrationEffects(existing: existingColumns, rowCounts: existingTables) : nil
        var ownEvidence = [String: [TableEvidence]]()
        for file in pending {
            let own = try effects?.begin(file, on: scratch)
            let parts = try Connection.split(file.sql)
            for (offset, sql) in parts.enumerated() {
                let where_ = "\(file.fileName), statement \(offset + 1)"
                if Self.isForeignKeysPragma(sql) {
                    // Inside a transaction SQLite ignores it: foreign keys stay off while deployctl
                    // migrates and foreign_key_check runs before COMMIT.
                    statements.append(StatementPlan(migration: file.key, index: offset + 1, sql: summary(sql), actions: ["PRAGMA foreign_keys"],
                                                    creates: [], alreadyExists: [], problems: [], classification: .additive,
                                                    note: "handled by deployctl: foreign keys are off while it migrates, and foreign_key_check runs before COMMIT"))
                    continue
                }
                let names = Set(try scratch.schema().map(\.name))
                let actions: [AuthorizerAction]
                do {
                    actions = try scratch.authorizerActions(for: sql)
                } catch let error as SQLiteError where !error.interrupted {
                    throw Failure(.migrationSQLFailed, "\(where_) does not prepare: \(error.sqliteMessage)\n  in: \(summary(sql))",
                                  hint: "fix the SQL in \(file.path); nothing was applied")
                }
                var judged = try Self.judge(actions, sql: sql, where_: where_, file: file, names: names, on: scratch,
                                            existing: existingColumns, originalNames: originalNames, withoutRowid: withoutRowid)
                let (creates, exists, touches) = (judged.creates, judged.exists, judged.touches)
                for table in touches {
                    try recorder.save(table)
                    try own?.recorder.save(table)
                }
                let started = ContinuousClock.now
                defer { executing += ContinuousClock.now - started }
                do {
                    try scratch.execute(sql)
                } catch let error as SQLiteError where !error.interrupted {
                    throw Failure(.migrationSQLFailed, "\(where_) fails: \(error.sqliteMessage)\n  in: \(summary(sql))",
                                  hint: "fix the SQL in \(file.path); nothing was applied")
                }
                let namesAfter = Set(try scratch.tableNames())
                for table in touches where existingColumns[table] != nil && !namesAfter.contains(table) { replaced.insert(table) }
                for table in touches where own?.recorder.existingColumns[table] != nil && !namesAfter.contains(table) { own?.replaced.insert(table) }
                // A trigger acts later, on the application's writes: judge what its body does.
                for trigger in creates where trigger.type == "trigger" {
                    for (problem, kind) in try Self.triggerEffects(trigger.name, on: scratch, existing: existingColumns) { judged.note(problem, kind) }
                }
                for table in touches { touchedBy[table, default: []].insert(file.key) }
                for object in creates where object.type == "table" { toCreate.append(object.name) }
                for name in exists where !alreadyExisting.contains(name) && existingTables[name] != nil { alreadyExisting.append(name) }
                created += creates
                statements.append(StatementPlan(migration: file.key, index: offset + 1,
                                                sql: summary(sql), actions: judged.described, creates: creates,
                                                alreadyExists: exists, problems: judged.problems, classification: judged.classification, note: nil))
            }
            if let own { ownEvidence[file.key] = try effects!.end(own) }
        }
        // The files' verify queries, on the copy as the statements left it: a false one fails
        // the deploy at rehearse, so the plan says so first.
        let verifyFailures = try Applier.falseVerifyQueries(pending, on: scratch)
        // What the statements did on the copy, table by table, column by column.
        let evidence = try recorder.compare(rowCounts: existingTables, replaced: replaced)
        if reshapes {
            let added = Self.foreignKeyViolations(scratch).filter { $0.value > violationsBefore[$0.key, default: 0] }
            if !added.isEmpty {
                let lines = added.sorted { $0.key < $1.key }.map { "\(counted($0.value - violationsBefore[$0.key, default: 0], "row")) of \($0.key)" }
                throw Failure(.migrationForeignKeysDangling, "the pending migrations leave foreign keys pointing nowhere on the copy: " + lines.joined(separator: ", ")
                              + " (renaming a table repoints the keys that refer to it; dropping it then leaves them dangling)",
                              hint: "rebuild as sqlite.org's 12 steps describe (create new_x, copy, drop x, rename new_x to x), or fix the keys in the migration; nothing was applied")
            }
        }
        // A table created and dropped again (a rebuild's new_x renamed away) is not created.
        let finalNames = Set(try scratch.tableNames())
        toCreate = toCreate.filter(finalNames.contains)
        checking += try Self.timeChecks(on: scratch, evidence: evidence, created: toCreate, finalNames: finalNames, journalMode: journalMode)
        // Claim 5 is checked on the rehearsed copy itself.
        var unchanged = true
        let remaining = Set(try scratch.tableNames())
        let touched = Set(evidence.map(\.table))
        for table in originalTables where !touched.contains(table) {
            if !remaining.contains(table) { unchanged = false; continue }
            if fingerprintCopy, try scratch.fingerprint(table: table) != before[table] { unchanged = false }
        }
        // Idempotence: running everything again must fail nowhere, change no schema object and
        // no row (SQLite's own count of row changes, triggers included).
        let schemaAfter = try scratch.schema()
        let changesAfter = scratch.totalChanges
        var rerunClean = true
        for file in pending {
            do { try scratch.execute(file.sql) } catch { rerunClean = false }
        }
        if rerunClean { rerunClean = try scratch.schema() == schemaAfter && scratch.totalChanges == changesAfter }
        let migrations = pending.map { file in
            let own = statements.filter { $0.migration == file.key }
            // Alone, evidence on a table no statement named (a trigger, a virtual table's shadow
            // tables) counts against it; with several, each has its own.
            let seen = ownEvidence[file.key] ?? evidence.filter { touchedBy[$0.table]?.contains(file.key) ?? true }
            let kind = max(own.map(\.classification).max() ?? .additive, seen.map(\.classification).max() ?? .additive)
            return MigrationSummary(migration: file.key, classification: kind, evidence: seen.flatMap(\.facts), format: file.format,
                                    hasDown: file.downSQL != nil, notes: file.notes)
        }
        let claims = Self.claims(statements: statements, evidence: evidence, createTables: toCreate.count, originalTables: originalTables,
                                 untouched: originalTables.filter { !touched.contains($0) && $0 != History.table }, unchanged: unchanged,
                                 fingerprintCopy: fingerprintCopy, rerunClean: rerunClean)
        var plan = MigrationPlan(applied: applied, pending: pending.map(\.key),
                                 statements: statements, tablesToCreate: toCreate, tablesAlreadyExisting: alreadyExisting,
                                 existingTables: existingTables, journalMode: journalMode, created: created, claims: claims,
                                 migrations: migrations, evidence: evidence,
                                 statementMilliseconds: executing.milliseconds, checkMilliseconds: checking.milliseconds)
        plan.verifyFailures = verifyFailures
        return plan
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

    /// What one statement may do, by SQLite's authorizer: the objects it creates, the names it
    /// would create that exist, the existing tables it touches, and its class with the reasons.
    struct Judgement {
        var creates = [CreatedObject]()
        var exists = [String]()
        var problems = [String]()
        var described = [String]()
        var classification = MigrationClass.additive
        var touches = Set<String>()

        mutating func note(_ problem: String, _ kind: MigrationClass) {
            if !problems.contains(problem) { problems.append(problem) }
            classification = max(classification, kind)
        }

        mutating func describe(_ text: String) { if !described.contains(text) { described.append(text) } }
    }

    /// Judges one statement from its authorizer actions (see `Judgement`).
    /// - Throws: `Failure` `.usage` for a statement that controls the transaction or creates a
    ///   table that exists with another shape.
    static func judge(_ actions: [AuthorizerAction], sql: String, where_: String, file: MigrationFile, names: Set<String>, on scratch: Connection,
                      existing existingColumns: [String: Set<String>], originalNames: Set<String>, withoutRowid: Set<String>) throws -> Judgement {
        var j = Judgement()
        for action in actions {
            let target = action.first ?? ""
            switch action.code {
            case SQLITE_CREATE_TABLE, SQLITE_CREATE_VIEW, SQLITE_CREATE_INDEX, SQLITE_CREATE_TRIGGER:
                let type = ["table", "view", "index", "trigger"][[SQLITE_CREATE_TABLE, SQLITE_CREATE_VIEW, SQLITE_CREATE_INDEX, SQLITE_CREATE_TRIGGER].firstIndex(of: action.code)!]
                if target.hasPrefix("sqlite_") { continue }
                j.describe("\(action.name) \(target)")
                if names.contains(target) {
                    j.exists.append(target)
                    if type == "table", let existing = try scratch.schema().first(where: { $0.name == target })?.sql,
                       normalizeCreate(existing) != normalizeCreate(sql) {
                        // Later statements (indexes on its columns) would fail against the
                        // wrong shape, so say what is wrong here rather than there.
                        throw Failure(.migrationTableShapeDiffers, "table \(target) already exists with a different shape than \(where_) defines\n  existing:  \(existing)\n  migration: \(summary(sql))",
                                      hint: "reconcile the existing table with the migration by hand (or in a new migration); nothing was applied")
                    }
                    continue
                }
                if (type == "index" || type == "trigger"), let table = action.second, originalNames.contains(table) {
                    j.note("\(type) \(target) on existing table \(table)", .preserving)
                }
                j.creates.append(CreatedObject(type: type, name: target))
            case SQLITE_INSERT, SQLITE_UPDATE, SQLITE_DELETE:
                if target.hasPrefix("sqlite_") { continue }
                j.describe("\(action.name) \(target)")
                guard let columns = existingColumns[target] else { continue }
                // DROP TABLE authorizes the DELETE of its rows too: judged as the drop.
                if action.code == SQLITE_DELETE, actions.contains(where: { $0.code == SQLITE_DROP_TABLE && $0.first == target }) { continue }
                j.touches.insert(target)
                if withoutRowid.contains(target) {
                    j.note("writes to \(target), a WITHOUT ROWID table whose rows cannot be followed inside the migrating transaction", .destructive)
                }
                if action.code == SQLITE_INSERT {
                    j.note("adds rows to existing table \(target)", .preserving)
                } else if action.code == SQLITE_DELETE {
                    j.note("may delete rows of existing table \(target)", .destructive)
                } else if let column = action.second, columns.contains(column.lowercased()) {
                    j.note("may change existing values of \(target).\(column)", .destructive)
                } else {
                    j.note("fills new column \(target).\(action.second ?? "?")", .preserving)
                }
            case SQLITE_READ, SQLITE_SELECT, SQLITE_FUNCTION, SQLITE_RECURSIVE, SQLITE_REINDEX:
                continue
            case SQLITE_TRANSACTION, SQLITE_SAVEPOINT:
                throw Failure(.migrationTransactionControl, "\(where_) controls the transaction (\(summary(sql))); deployctl runs every migration in its own transaction",
                              hint: "remove BEGIN/COMMIT/SAVEPOINT from \(file.path)")
            case SQLITE_ALTER_TABLE:
                // Arguments: the database, then the table.
                let table = action.second ?? target
                j.describe("ALTER TABLE \(table)")
                if existingColumns[table] != nil {
                    j.touches.insert(table)
                    j.note("alters existing table \(table)", .preserving)
                }
            case SQLITE_DROP_TABLE:
                j.describe("DROP TABLE \(target)")
                if existingColumns[target] != nil {
                    j.touches.insert(target)
                    // A rebuild drops the old table; the rehearsal shows whether its rows live on.
                    j.note("drops existing table \(target)", .preserving)
                }
            case SQLITE_DROP_INDEX, SQLITE_DROP_VIEW, SQLITE_DROP_TRIGGER:
                j.describe("\(action.name) \(target)")
                if originalNames.contains(target) { j.note("\(action.name.lowercased()) of existing \(target) (no rows)", .preserving) }
            default:
                let text = "\(action.name) \(target)".trimmingCharacters(in: .whitespaces)
                j.describe(text)
                j.note("\(text) (not understood: treated as destructive)", .destructive)
            }
        }
        return j
    }

    /// The guide's safety claims, each proven only by a check that would fail were it false:
    /// SQLite's authorizer for what the statements may do, the rehearsal copy's evidence for
    /// what they did.
    static func claims(statements: [StatementPlan], evidence: [TableEvidence], createTables: Int, originalTables: [String],
                       untouched: [String], unchanged: Bool, fingerprintCopy: Bool, rerunClean: Bool) -> [SafetyClaim] {
        let nonAdditive = statements.flatMap(\.problems)
        // What the statements may do that no copy can rule out: deleting (a DELETE, a trigger
        // that deletes, rows that cannot be followed, SQL not understood) or changing values.
        let risky = statements.filter { $0.classification == .destructive }.flatMap(\.problems)
        let deletes = risky.filter { $0.contains("delete") || $0.contains("WITHOUT ROWID") || $0.contains("not understood") || $0.contains("could not be checked") }
        let updates = risky.filter { !deletes.contains($0) }
        let lost = evidence.flatMap { e in e.facts.filter { $0.hasSuffix(" deleted") || $0.contains("dropped") } }
        let changed = evidence.flatMap { e in e.facts.filter { $0.hasSuffix(" changed") } }
        let list = { (items: [String]) in items.prefix(6).joined(separator: "; ") + (items.count > 6 ? "; …" : "") }
        let onCopy = "on the rehearsal copy, every existing row matched by primary key or rowid"
        // Claim 5 names the tables it is about; with none left untouched it says so.
        let untouchedClaim = untouched.isEmpty ? "No other existing table is changed (the migrations write every existing table)"
            : "All other existing tables (\(untouched.prefix(8).joined(separator: ", "))\(untouched.count > 8 ? ", …" : "")) remain untouched"
        return [
            SafetyClaim(claim: "It only ADDS new objects (\(counted(createTables, "new table")))", proven: nonAdditive.isEmpty && evidence.isEmpty,
                        how: nonAdditive.isEmpty && evidence.isEmpty ? "no statement touches an existing table, by SQLite's authorizer and the rehearsal copy"
                                                                    : list(nonAdditive + evidence.flatMap(\.facts))),
            SafetyClaim(claim: "It does NOT modify any existing tables", proven: nonAdditive.isEmpty && evidence.isEmpty,
                        how: evidence.isEmpty && nonAdditive.isEmpty ? "no ALTER, DROP, index, trigger or write on existing objects, by SQLite's authorizer; every existing table's definition and row count equal on the rehearsal copy"
                                                                    : "changed: " + list(evidence.map(\.table) + nonAdditive)),
            SafetyClaim(claim: "It does NOT delete any data", proven: deletes.isEmpty && lost.isEmpty,
                        how: deletes.isEmpty && lost.isEmpty ? "no DELETE on existing tables (SQLite's authorizer); 0 rows deleted, no column or table dropped, \(onCopy)"
                                                             : list(lost + deletes)),
            SafetyClaim(claim: "It does NOT change any existing data", proven: updates.isEmpty && changed.isEmpty && deletes.isEmpty && lost.isEmpty,
                        how: updates.isEmpty && changed.isEmpty && deletes.isEmpty && lost.isEmpty
                            ? "no UPDATE of an existing column (SQLite's authorizer); every existing value equal, \(onCopy)"
                            : list(changed + updates + lost + deletes)),
            fingerprintCopy
                ? SafetyClaim(claim: untouchedClaim, proven: unchanged,
                              how: "content fingerprints of \(counted(untouched.count, "existing table")) equal before and after, on a rehearsal copy")
                : SafetyClaim(claim: untouchedClaim, proven: false,
                              how: "proven by the deploy: on a rehearsal copy the \(originalTables.count) existing tables' pages are identical to the snapshot's (or their content fingerprints equal), then SQLite's record of row changes inside the migrating transaction",
                              deferred: true),
            SafetyClaim(claim: "Safe to run multiple times (idempotent)", proven: rerunClean,
                        how: rerunClean ? "running the migrations again on the rehearsed copy succeeds and changes no schema object and no row; deployctl_migrations also records them"
                                        : "running the migrations again on the rehearsed copy fails or changes content; deployctl_migrations still prevents a second run"),
        ]
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

    /// Foreign-key violations per "child → parent", and a definition that cannot be checked
    /// ("foreign key mismatch") as its message.
    /// With `table`, only the rows of that table are checked.
    public static func foreignKeyViolations(_ db: Connection, table: String? = nil) -> [String: Int] {
        do {
            var counts = [String: Int]()
            for row in try db.rows("PRAGMA foreign_key_check" + (table.map { "(\(quoteIdentifier($0)))" } ?? "")) { counts["\(row[0].string ?? "?") → \(row[2].string ?? "?")", default: 0] += 1 }
            return counts
        } catch {
            return ["foreign_key_check fails (\((error as? SQLiteError)?.sqliteMessage ?? "\(error)"))": 1]
        }
    }

    /// What a new trigger's body does to existing tables when it fires: found by preparing (never
    /// running) a statement that fires it, with the authorizer watching the trigger's program.
    static func triggerEffects(_ name: String, on db: Connection, existing: [String: Set<String>]) throws -> [(String, MigrationClass)] {
        guard let row = try db.rows("SELECT tbl_name, sql FROM sqlite_schema WHERE type = 'trigger' AND name = ?", [.text(name)]).first,
              let table = row[0].string else { return [] }
        let sql = Connection.normalizeSQL(row[1].string ?? "").uppercased()
        let head = sql.components(separatedBy: " BEGIN ").first ?? sql
        let quoted = quoteIdentifier(table)
        let firing = head.contains(" DELETE ON ") ? "DELETE FROM \(quoted)"
            : head.contains(" INSERT ON ") ? "INSERT INTO \(quoted) DEFAULT VALUES"
            : "UPDATE \(quoted) SET rowid = rowid"
        var columns = [String]()
        if head.contains(" UPDATE ") {
            columns = try db.rows("SELECT name FROM pragma_table_info(?)", [.text(table)]).compactMap { $0[0].string }
        }
        let statements = head.contains(" UPDATE ") && !columns.isEmpty
            ? columns.map { "UPDATE \(quoted) SET \(quoteIdentifier($0)) = \(quoteIdentifier($0))" } : [firing]
        var effects = [(String, MigrationClass)]()
        for statement in statements {
            guard let actions = try? db.authorizerActions(for: statement) else {
                return [("trigger \(name): what it does could not be checked", .destructive)]
            }
            for action in actions where action.source == name {
                guard let target = action.first, let kept = existing[target] else { continue }
                switch action.code {
                case SQLITE_DELETE:
                    effects.append(("trigger \(name) deletes rows of existing table \(target) when \(table) is written", .destructive))
                case SQLITE_UPDATE where kept.contains((action.second ?? "").lowercased()):
                    effects.append(("trigger \(name) changes existing values of \(target).\(action.second ?? "?") when \(table) is written", .destructive))
                case SQLITE_INSERT, SQLITE_UPDATE:
                    effects.append(("trigger \(name) adds to existing table \(target) when \(table) is written", .preserving))
                default:
                    continue
                }
            }
        }
        var unique = [(String, MigrationClass)]()
        for effect in effects where !unique.contains(where: { $0.0 == effect.0 }) { unique.append(effect) }
        return unique
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

/// What each of several pending migrations did on its own (SPEC: each migration has its own
/// class, from its own effect): before a migration, a recorder whose existing tables and columns
/// are those that existed before the deploy (followed through earlier renames and drops), so a
/// table or column an earlier migration of the set created counts as new; after it, that
/// migration's evidence. Row counts are carried from one migration's evidence to the next, not
/// counted again.
struct MigrationEffects {
    /// Per current table name, its pre-deploy columns (lower-cased, current spelling).
    private var kept: [String: Set<String>]
    private var rowCounts: [String: Int]
    private var index = 0

    final class Own {
        let recorder: EvidenceRecorder
        var replaced = Set<String>()
        init(_ recorder: EvidenceRecorder) { self.recorder = recorder }
    }

    init(existing: [String: Set<String>], rowCounts: [String: Int]) {
        kept = existing
        self.rowCounts = rowCounts
    }

    /// A recorder for the migration about to run.
    mutating func begin(_ file: MigrationFile, on db: Connection) throws -> Own {
        index += 1
        let tables = try db.tableNames().filter { $0 != History.table }
        var newColumns = [String: Set<String>]()
        for table in tables {
            guard let old = kept[table] else { continue }
            newColumns[table] = Set(try EvidenceRecorder.columns(db, table).map { $0.lowercased() }).subtracting(old)
        }
        return Own(try EvidenceRecorder(db, prefix: "deployctl_before_m\(index)_", newTables: Set(tables).subtracting(kept.keys),
                                        newColumns: newColumns))
    }

    /// The migration's evidence; carries the pre-deploy tables and columns, and the row
    /// counts, through what it did.
    mutating func end(_ own: Own) throws -> [TableEvidence] {
        let evidence = try own.recorder.compare(rowCounts: rowCounts, replaced: own.replaced)
        for e in evidence {
            var columns = kept.removeValue(forKey: e.table) ?? []
            rowCounts[e.table] = nil
            guard let final = e.finalName else { continue }
            for column in e.columnsDropped.keys { columns.remove(column.lowercased()) }
            for (old, new) in e.columnsRenamed {
                columns.remove(old.lowercased())
                columns.insert(new.lowercased())
            }
            kept[final] = columns
            rowCounts[final] = e.rowsBefore - e.rowsDeleted + e.rowsAdded
        }
        return evidence
    }
}
