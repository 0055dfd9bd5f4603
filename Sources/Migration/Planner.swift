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
                                 existingTables: existingTables, journalMode: journalMode, created: [], claims: [])
        }
        let before = fingerprintCopy ? try Dictionary(uniqueKeysWithValues: originalTables.map { ($0, try scratch.fingerprint(table: $0)) }) : [:]

        var statements = [StatementPlan]()
        var created = [CreatedObject]()
        var toCreate = [String]()
        var alreadyExisting = [String]()
        var writesToExisting = 0, createTables = 0, modifications = 0, deletions = 0
        for file in pending {
            let parts = try Connection.split(file.sql)
            for (offset, sql) in parts.enumerated() {
                let where_ = "\(file.fileName), statement \(offset + 1)"
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
                for action in actions {
                    let target = action.first ?? ""
                    switch action.code {
                    case SQLITE_CREATE_TABLE, SQLITE_CREATE_VIEW, SQLITE_CREATE_INDEX, SQLITE_CREATE_TRIGGER:
                        let type = ["table", "view", "index", "trigger"][[SQLITE_CREATE_TABLE, SQLITE_CREATE_VIEW, SQLITE_CREATE_INDEX, SQLITE_CREATE_TRIGGER].firstIndex(of: action.code)!]
                        if target.hasPrefix("sqlite_") { continue }
                        described.append("\(action.name) \(target)")
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
                        if type == "table" { createTables += 1 }
                        if (type == "index" || type == "trigger"), let table = action.second, originalNames.contains(table) {
                            problems.append("\(type) \(target) on existing table \(table)")
                            modifications += 1
                        }
                        creates.append(CreatedObject(type: type, name: target))
                    case SQLITE_INSERT, SQLITE_UPDATE, SQLITE_DELETE:
                        if target.hasPrefix("sqlite_") { continue }
                        described.append("\(action.name) \(target)")
                        if originalNames.contains(target) {
                            problems.append("\(action.name) writes to existing table \(target)")
                            writesToExisting += 1
                            if action.code == SQLITE_DELETE { deletions += 1 }
                        }
                    case SQLITE_READ, SQLITE_SELECT, SQLITE_FUNCTION, SQLITE_RECURSIVE, SQLITE_REINDEX:
                        continue
                    case SQLITE_TRANSACTION, SQLITE_SAVEPOINT:
                        throw Failure(.usage, "\(where_) controls the transaction (\(summary(sql))); deployctl runs every migration in its own transaction",
                                      hint: "remove BEGIN/COMMIT/SAVEPOINT from \(file.path)")
                    default:
                        described.append("\(action.name) \(target)")
                        problems.append("\(action.name) \(target)".trimmingCharacters(in: .whitespaces))
                        if action.code == SQLITE_DROP_TABLE || action.code == SQLITE_DROP_INDEX || action.code == SQLITE_DROP_VIEW
                            || action.code == SQLITE_DROP_TRIGGER { deletions += 1 }
                        modifications += 1
                    }
                }
                do {
                    try scratch.execute(sql)
                } catch let error as SQLiteError {
                    throw Failure(.usage, "\(where_) fails: \(error.sqliteMessage)\n  in: \(summary(sql))",
                                  hint: "fix the SQL in \(file.path); nothing was applied")
                }
                for object in creates where object.type == "table" { toCreate.append(object.name) }
                for name in exists where !alreadyExisting.contains(name) && existingTables[name] != nil { alreadyExisting.append(name) }
                created += creates
                statements.append(StatementPlan(migration: file.key, index: offset + 1,
                                                sql: summary(sql), actions: described, creates: creates,
                                                alreadyExists: exists, problems: problems))
            }
        }
        // Claims 5 and 6 are checked on the rehearsed copy itself.
        var unchanged = true
        let remaining = Set(try scratch.tableNames())
        for table in originalTables {
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
        let claims = [
            SafetyClaim(claim: "It only ADDS new tables (\(createTables) new tables)", proven: writesToExisting == 0 && modifications == 0,
                        how: "\(createTables) CREATE TABLE, \(writesToExisting) writes to existing tables, \(modifications) other changes, by SQLite's authorizer"),
            SafetyClaim(claim: "It does NOT modify any existing tables", proven: modifications == 0,
                        how: "\(modifications) ALTER/DROP/index/trigger actions on existing objects, by SQLite's authorizer"),
            SafetyClaim(claim: "It does NOT delete any data", proven: deletions == 0,
                        how: "\(deletions) DELETE/DROP actions, by SQLite's authorizer"),
            SafetyClaim(claim: "It does NOT change any existing data", proven: writesToExisting == 0,
                        how: "\(writesToExisting) INSERT/UPDATE/DELETE on existing tables, by SQLite's authorizer"),
            fingerprintCopy
                ? SafetyClaim(claim: "All existing \(originalTables.filter { $0 != History.table }.joined(separator: ", ")) remain untouched", proven: unchanged,
                              how: "content fingerprints of \(originalTables.count) existing tables equal before and after, on a rehearsal copy")
                : SafetyClaim(claim: "All existing \(originalTables.filter { $0 != History.table }.joined(separator: ", ")) remain untouched", proven: false,
                              how: "proven by the deploy: on a rehearsal copy the \(originalTables.count) existing tables' pages are identical to the snapshot's (or their content fingerprints equal), then SQLite's record of row changes inside the migrating transaction",
                              deferred: true),
            SafetyClaim(claim: "Safe to run multiple times (idempotent)", proven: rerunClean,
                        how: rerunClean ? "running the migrations again on the rehearsed copy succeeds and changes no schema object and no row; deployctl_migrations also records them"
                                        : "running the migrations again on the rehearsed copy fails or changes content; deployctl_migrations still prevents a second run"),
        ]
        return MigrationPlan(applied: applied, pending: pending.map(\.key),
                             statements: statements, tablesToCreate: toCreate, tablesAlreadyExisting: alreadyExisting,
                             existingTables: existingTables, journalMode: journalMode, created: created, claims: claims)
    }

    /// The tables `files` create, found by classifying them on an empty in-memory database.
    /// - Throws: `Failure` `.usage` for SQL that does not prepare.
    public static func tablesDefined(by files: [MigrationFile]) throws -> [String] {
        let scratch = try Connection(path: ":memory:", mode: .create)
        return try classify(pending: files, applied: [], journalMode: "memory", on: scratch).tablesToCreate
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
