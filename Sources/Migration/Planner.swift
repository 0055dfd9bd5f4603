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
    public func plan(livePath: String, files: [MigrationFile], scratchFolder: String, busyTimeout: Duration,
                     fingerprintCopy: Bool = true) throws -> MigrationPlan {
        let scratchPath = scratchFolder + "/.deployctl-plan-\(getpid())-\(UInt32.random(in: 0...UInt32.max)).db"
        defer { unlink(scratchPath); unlink(scratchPath + "-journal") }
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
            try scratch.execute("PRAGMA journal_mode = OFF; PRAGMA synchronous = OFF")
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

        var statements = [StatementPlan]()
        var created = [CreatedObject]()
        var toCreate = [String]()
        var alreadyExisting = [String]()
        var touchedBy = [String: Set<String>]()
        for file in pending {
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
                } catch let error as SQLiteError {
                    throw Failure(.usage, "\(where_) does not prepare: \(error.sqliteMessage)\n  in: \(summary(sql))",
                                  hint: "fix the SQL in \(file.path); nothing was applied")
                }
                var creates = [CreatedObject]()
                var exists = [String]()
                var problems = [String]()
                var described = [String]()
                var statementClass = MigrationClass.additive
                func note(_ problem: String, _ kind: MigrationClass) {
                    if !problems.contains(problem) { problems.append(problem) }
                    statementClass = max(statementClass, kind)
                }
                func describe(_ text: String) { if !described.contains(text) { described.append(text) } }
                var touches = Set<String>()
                for action in actions {
                    let target = action.first ?? ""
                    switch action.code {
                    case SQLITE_CREATE_TABLE, SQLITE_CREATE_VIEW, SQLITE_CREATE_INDEX, SQLITE_CREATE_TRIGGER:
                        let type = ["table", "view", "index", "trigger"][[SQLITE_CREATE_TABLE, SQLITE_CREATE_VIEW, SQLITE_CREATE_INDEX, SQLITE_CREATE_TRIGGER].firstIndex(of: action.code)!]
                        if target.hasPrefix("sqlite_") { continue }
                        describe("\(action.name) \(target)")
                        if names.contains(target) {
                            exists.append(target)
                            if type == "table", let existing = try scratch.schema().first(where: { $0.name == target })?.sql,
                               normalizeCreate(existing) != normalizeCreate(sql) {
                                // Later statements (indexes on its columns) would fail against the
                                // wrong shape, so say what is wrong here rather than there.
                                throw Failure(.usage, "table \(target) already exists with a different shape than \(where_) defines\n  existing:  \(existing)\n  migration: \(summary(sql))",
                                              hint: "reconcile the existing table with the migration by hand (or in a new migration); nothing was applied")
                            }
                            continue
                        }
                        if (type == "index" || type == "trigger"), let table = action.second, originalNames.contains(table) {
                            note("\(type) \(target) on existing table \(table)", .preserving)
                        }
                        creates.append(CreatedObject(type: type, name: target))
                    case SQLITE_INSERT, SQLITE_UPDATE, SQLITE_DELETE:
                        if target.hasPrefix("sqlite_") { continue }
                        describe("\(action.name) \(target)")
                        guard let columns = existingColumns[target] else { continue }
                        // DROP TABLE authorizes the DELETE of its rows too: judged as the drop.
                        if action.code == SQLITE_DELETE, actions.contains(where: { $0.code == SQLITE_DROP_TABLE && $0.first == target }) { continue }
                        touches.insert(target)
                        if action.code == SQLITE_INSERT {
                            note("adds rows to existing table \(target)", .preserving)
                        } else if action.code == SQLITE_DELETE {
                            note("may delete rows of existing table \(target)", .destructive)
                        } else if let column = action.second, columns.contains(column.lowercased()) {
                            note("may change existing values of \(target).\(column)", .destructive)
                        } else {
                            note("fills new column \(target).\(action.second ?? "?")", .preserving)
                        }
                    case SQLITE_READ, SQLITE_SELECT, SQLITE_FUNCTION, SQLITE_RECURSIVE, SQLITE_REINDEX:
                        continue
                    case SQLITE_TRANSACTION, SQLITE_SAVEPOINT:
                        throw Failure(.usage, "\(where_) controls the transaction (\(summary(sql))); deployctl runs every migration in its own transaction",
                                      hint: "remove BEGIN/COMMIT/SAVEPOINT from \(file.path)")
                    case SQLITE_ALTER_TABLE:
                        // Arguments: the database, then the table.
                        let table = action.second ?? target
                        describe("ALTER TABLE \(table)")
                        if existingColumns[table] != nil {
                            touches.insert(table)
                            note("alters existing table \(table)", .preserving)
                        }
                    case SQLITE_DROP_TABLE:
                        describe("DROP TABLE \(target)")
                        if existingColumns[target] != nil {
                            touches.insert(target)
                            // A rebuild drops the old table; the rehearsal shows whether its rows live on.
                            note("drops existing table \(target)", .preserving)
                        }
                    case SQLITE_DROP_INDEX, SQLITE_DROP_VIEW, SQLITE_DROP_TRIGGER:
                        describe("\(action.name) \(target)")
                        if originalNames.contains(target) { note("\(action.name.lowercased()) of existing \(target) (no rows)", .preserving) }
                    default:
                        let text = "\(action.name) \(target)".trimmingCharacters(in: .whitespaces)
                        describe(text)
                        note("\(text) (not understood: treated as destructive)", .destructive)
                    }
                }
                for table in touches { try recorder.save(table) }
                do {
                    try scratch.execute(sql)
                } catch let error as SQLiteError {
                    throw Failure(.usage, "\(where_) fails: \(error.sqliteMessage)\n  in: \(summary(sql))",
                                  hint: "fix the SQL in \(file.path); nothing was applied")
                }
                for table in touches { touchedBy[table, default: []].insert(file.key) }
                for object in creates where object.type == "table" { toCreate.append(object.name) }
                for name in exists where !alreadyExisting.contains(name) && existingTables[name] != nil { alreadyExisting.append(name) }
                created += creates
                statements.append(StatementPlan(migration: file.key, index: offset + 1,
                                                sql: summary(sql), actions: described, creates: creates,
                                                alreadyExists: exists, problems: problems, classification: statementClass, note: nil))
            }
        }
        // What the statements did on the copy, table by table, column by column.
        let evidence = try recorder.compare(rowCounts: existingTables)
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
            let seen = evidence.filter { touchedBy[$0.table]?.contains(file.key) == true }
            let kind = max(own.map(\.classification).max() ?? .additive, seen.map(\.classification).max() ?? .additive)
            return MigrationSummary(migration: file.key, classification: kind, evidence: seen.flatMap(\.facts))
        }
        let claims = Self.claims(statements: statements, evidence: evidence, createTables: toCreate.count, originalTables: originalTables,
                                 untouched: originalTables.filter { !touched.contains($0) && $0 != History.table }, unchanged: unchanged,
                                 fingerprintCopy: fingerprintCopy, rerunClean: rerunClean)
        return MigrationPlan(applied: applied, pending: pending.map(\.key),
                             statements: statements, tablesToCreate: toCreate, tablesAlreadyExisting: alreadyExisting,
                             existingTables: existingTables, journalMode: journalMode, created: created, claims: claims,
                             migrations: migrations, evidence: evidence)
    }

    /// The guide's safety claims, each proven only by a check that would fail were it false:
    /// SQLite's authorizer for what the statements may do, the rehearsal copy's evidence for
    /// what they did.
    static func claims(statements: [StatementPlan], evidence: [TableEvidence], createTables: Int, originalTables: [String],
                       untouched: [String], unchanged: Bool, fingerprintCopy: Bool, rerunClean: Bool) -> [SafetyClaim] {
        let nonAdditive = statements.flatMap(\.problems)
        let deletes = statements.flatMap(\.problems).filter { $0.hasPrefix("may delete") }
        let updates = statements.flatMap(\.problems).filter { $0.hasPrefix("may change") }
        let lost = evidence.flatMap { e in e.facts.filter { $0.contains("rows deleted") || $0.contains("dropped") } }
        let changed = evidence.flatMap { e in e.facts.filter { $0.contains("values changed") } }
        let list = { (items: [String]) in items.prefix(6).joined(separator: "; ") + (items.count > 6 ? "; …" : "") }
        let onCopy = "on the rehearsal copy, every existing row matched by primary key or rowid"
        let untouchedNames = untouched.joined(separator: ", ")
        return [
            SafetyClaim(claim: "It only ADDS new objects (\(createTables) new tables)", proven: nonAdditive.isEmpty && evidence.isEmpty,
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
                ? SafetyClaim(claim: "All existing \(untouchedNames) remain untouched", proven: unchanged,
                              how: "content fingerprints of \(untouched.count) existing tables equal before and after, on a rehearsal copy")
                : SafetyClaim(claim: "All existing \(untouchedNames) remain untouched", proven: false,
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
    static func normalizeCreate(_ sql: String) -> String {
        var text = Connection.normalizeSQL(sql).lowercased()
        text = text.replacingOccurrences(of: " if not exists", with: "")
        while text.hasSuffix(";") { text.removeLast() }
        text = text.replacingOccurrences(of: "( ", with: "(").replacingOccurrences(of: " )", with: ")")
        return text.replacingOccurrences(of: "\"", with: "")
    }
}
