import Foundation
import SQLite
import Support

extension Planner {
    /// Classifies and runs `pending` on `scratch`, a throwaway copy.
    static func classify(pending: [MigrationFile], applied: [AppliedMigration], journalMode: String,
                         on scratch: Connection, fingerprintCopy: Bool = false) throws -> MigrationPlan {
        let original = try scratch.schema()
        let originalTables = original.filter { $0.type == "table" }.map(\.name)
        var existingTables = [String: Int]()
        for table in originalTables { existingTables[table] = try scratch.rowCount(table) }
        if pending.isEmpty {
            return MigrationPlan(applied: applied, pending: [], statements: [], tablesToCreate: [], tablesAlreadyExisting: [],
                                 existingTables: existingTables, journalMode: journalMode, created: [], claims: [], migrations: [], evidence: [])
        }
        var run = try Classification(pending: pending, scratch: scratch, journalMode: journalMode, fingerprintCopy: fingerprintCopy,
                                     originalNames: Set(original.map(\.name)), originalTables: originalTables, existingTables: existingTables)
        try run.runStatements()
        return try run.finish(applied: applied)
    }
}

/// One classification of the pending migrations on the plan's copy (`Planner.classify`): what
/// it carries from statement to statement, and its steps in order (every statement judged and
/// run, then the evidence, the foreign keys, claim 5, the rerun and the claims).
struct Classification {
    let pending: [MigrationFile]
    let scratch: Connection
    let journalMode: String
    let fingerprintCopy: Bool
    let originalNames: Set<String>
    let originalTables: [String]
    /// Existing tables and their row counts.
    let existingTables: [String: Int]
    /// Existing tables' columns, lower-cased.
    let existingColumns: [String: Set<String>]
    /// Existing tables whose rows SQLite's preupdate hook cannot tell apart (no rowid).
    let withoutRowid: Set<String>
    let recorder: EvidenceRecorder
    /// Existing tables' fingerprints before, for claim 5 (with `fingerprintCopy`).
    let before: [String: TableFingerprint]
    /// Whether a file drops or renames a table, which can leave other tables' keys pointing
    /// nowhere: the violations before are counted then.
    let reshapes: Bool
    var violationsBefore = [ForeignKeyViolation: Int]()
    /// Time of the checks a deploy runs under its lock, and of the statements, on the copy.
    var checking = Duration.zero
    var executing = Duration.zero
    /// Existing tables a statement dropped or renamed away: rebuilt, if their rows live on.
    var replaced = Set<String>()
    var statements = [StatementPlan]()
    var created = [CreatedObject]()
    var toCreate = [String]()
    var alreadyExisting = [String]()
    var touchedBy = [String: Set<String>]()
    /// Each migration's own evidence, with several pending: the state before it against the
    /// state after it (`MigrationEffects`).
    var effects: MigrationEffects?
    var ownEvidence = [String: [TableEvidence]]()

    init(pending: [MigrationFile], scratch: Connection, journalMode: String, fingerprintCopy: Bool, originalNames: Set<String>,
         originalTables: [String], existingTables: [String: Int]) throws {
        self.pending = pending
        self.scratch = scratch
        self.journalMode = journalMode
        self.fingerprintCopy = fingerprintCopy
        self.originalNames = originalNames
        self.originalTables = originalTables
        self.existingTables = existingTables
        before = fingerprintCopy ? try Dictionary(uniqueKeysWithValues: originalTables.map { ($0, try scratch.fingerprint(table: $0)) }) : [:]
        recorder = try EvidenceRecorder(scratch)
        existingColumns = recorder.existingColumns.mapValues { Set($0.map { $0.lowercased() }) }
        withoutRowid = Set(try existingColumns.keys.filter { try scratch.isWithoutRowid($0) })
        reshapes = pending.contains { file in
            let text = Connection.normalizeSQL(file.sql).uppercased()
            return text.contains("DROP TABLE") || text.contains(" RENAME ")
        }
        // The deploy counts foreign-key violations before and after under its lock too.
        if reshapes {
            var found = [ForeignKeyViolation: Int]()
            checking += ContinuousClock().measure { found = Planner.foreignKeyViolations(scratch) } * 2
            violationsBefore = found
        }
        effects = pending.count > 1 ? MigrationEffects(existing: existingColumns, rowCounts: existingTables) : nil
    }

    /// Judges and runs every statement of every pending file, in order.
    mutating func runStatements() throws {
        for file in pending {
            let own = try effects?.begin(file, on: scratch)
            for (offset, sql) in try Connection.split(file.sql).enumerated() {
                try run(sql, index: offset + 1, of: file, own: own)
            }
            if let own { ownEvidence[file.key] = try effects!.end(own) }
        }
    }

    /// Judges one statement by SQLite's authorizer, saves the existing tables it touches, runs
    /// it and records what it created and whether it replaced a table.
    /// - Throws: `Failure` (`migration.sql_failed`, or from `Planner.judge`).
    private mutating func run(_ sql: String, index: Int, of file: MigrationFile, own: MigrationEffects.Own?) throws {
        let where_ = "\(file.fileName), statement \(index)"
        if Planner.isForeignKeysPragma(sql) {
            // Inside a transaction SQLite ignores it: foreign keys stay off while deployctl
            // migrates and foreign_key_check runs before COMMIT.
            statements.append(StatementPlan(migration: file.key, index: index, sql: Planner.summary(sql), actions: ["PRAGMA foreign_keys"],
                                            creates: [], alreadyExists: [], reasons: [], classification: .additive,
                                            note: "handled by deployctl: foreign keys are off while it migrates, and foreign_key_check runs before COMMIT"))
            return
        }
        let names = Set(try scratch.schema().map(\.name))
        let actions: [AuthorizerAction]
        do {
            actions = try scratch.authorizerActions(for: sql)
        } catch let error as SQLiteError where !error.interrupted {
            throw Failure(.migrationSQLFailed, "\(where_) does not prepare: \(error.sqliteMessage)\n  in: \(Planner.summary(sql))",
                          hint: "fix the SQL in \(file.path); nothing was applied")
        }
        var judged = try Planner.judge(actions, sql: sql, where_: where_, file: file, names: names, on: scratch,
                                       existing: existingColumns, originalNames: originalNames, withoutRowid: withoutRowid)
        for table in judged.touches {
            try recorder.save(table)
            try own?.recorder.save(table)
        }
        let started = ContinuousClock.now
        defer { executing += ContinuousClock.now - started }
        do {
            try scratch.execute(sql)
        } catch let error as SQLiteError where !error.interrupted {
            throw Failure(.migrationSQLFailed, "\(where_) fails: \(error.sqliteMessage)\n  in: \(Planner.summary(sql))",
                          hint: "fix the SQL in \(file.path); nothing was applied")
        }
        let namesAfter = Set(try scratch.tableNames())
        for table in judged.touches where existingColumns[table] != nil && !namesAfter.contains(table) { replaced.insert(table) }
        for table in judged.touches where own?.recorder.existingColumns[table] != nil && !namesAfter.contains(table) { own?.replaced.insert(table) }
        // A trigger acts later, on the application's writes: judge what its body does.
        for trigger in judged.creates where trigger.type == .trigger {
            for problem in try Planner.triggerEffects(trigger.name, on: scratch, existing: existingColumns) { judged.note(problem) }
        }
        for table in judged.touches { touchedBy[table, default: []].insert(file.key) }
        for object in judged.creates where object.type == .table { toCreate.append(object.name) }
        for name in judged.exists where !alreadyExisting.contains(name) && existingTables[name] != nil { alreadyExisting.append(name) }
        created += judged.creates
        statements.append(StatementPlan(migration: file.key, index: index, sql: Planner.summary(sql), actions: judged.described,
                                        creates: judged.creates, alreadyExists: judged.exists, reasons: judged.problems,
                                        classification: judged.classification, note: nil))
    }

    /// After the statements: the verify queries, the evidence, the checks a deploy would time,
    /// claim 5, the rerun, each migration's summary and the claims.
    mutating func finish(applied: [AppliedMigration]) throws -> MigrationPlan {
        // The files' verify queries, on the copy as the statements left it: a false one fails
        // the deploy at rehearse, so the plan says so first.
        let verifyFailures = try Applier.falseVerifyQueries(pending, on: scratch)
        // What the statements did on the copy, table by table, column by column.
        let evidence = try recorder.compare(rowCounts: existingTables, replaced: replaced)
        try refuseDanglingKeys()
        // A table created and dropped again (a rebuild's new_x renamed away) is not created.
        let finalNames = Set(try scratch.tableNames())
        toCreate = toCreate.filter(finalNames.contains)
        checking += try Planner.timeChecks(on: scratch, evidence: evidence, created: toCreate, finalNames: finalNames, journalMode: journalMode)
        let touched = Set(evidence.map(\.table))
        let unchanged = try untouchedUnchanged(touched: touched)
        let rerunClean = try rerunsClean()
        let claims = Planner.claims(statements: statements, evidence: evidence, createTables: toCreate.count, originalTables: originalTables,
                                    untouched: originalTables.filter { !touched.contains($0) && $0 != History.table }, unchanged: unchanged,
                                    fingerprintCopy: fingerprintCopy, rerunClean: rerunClean)
        var plan = MigrationPlan(applied: applied, pending: pending.map(\.key),
                                 statements: statements, tablesToCreate: toCreate, tablesAlreadyExisting: alreadyExisting,
                                 existingTables: existingTables, journalMode: journalMode, created: created, claims: claims,
                                 migrations: summaries(evidence), evidence: evidence,
                                 statementMilliseconds: executing.milliseconds, checkMilliseconds: checking.milliseconds)
        plan.verifyFailures = verifyFailures
        return plan
    }

    /// Refuses files that leave foreign keys pointing nowhere on the copy (counted only when a
    /// file drops or renames a table).
    /// - Throws: `Failure` `migration.foreign_keys_dangling`.
    private func refuseDanglingKeys() throws {
        guard reshapes else { return }
        let added = Planner.foreignKeyViolations(scratch).filter { $0.value > violationsBefore[$0.key, default: 0] }
        guard !added.isEmpty else { return }
        let lines = added.sorted { $0.key < $1.key }.map { "\(counted($0.value - violationsBefore[$0.key, default: 0], "row")) of \($0.key)" }
        throw Failure(.migrationForeignKeysDangling, "the pending migrations leave foreign keys pointing nowhere on the copy: " + lines.joined(separator: ", ")
                      + " (renaming a table repoints the keys that refer to it; dropping it then leaves them dangling)",
                      hint: "rebuild as sqlite.org's 12 steps describe (create new_x, copy, drop x, rename new_x to x), or fix the keys in the migration; nothing was applied")
    }

    /// Claim 5, checked on the rehearsed copy itself: every existing table no statement touched
    /// is still there, with its fingerprint unchanged (when fingerprinting the copy).
    private func untouchedUnchanged(touched: Set<String>) throws -> Bool {
        let remaining = Set(try scratch.tableNames())
        for table in originalTables where !touched.contains(table) {
            if !remaining.contains(table) { return false }
            if fingerprintCopy, try scratch.fingerprint(table: table) != before[table] { return false }
        }
        return true
    }

    /// Idempotence: running everything again must fail nowhere, change no schema object and no
    /// row (SQLite's own count of row changes, triggers included).
    private func rerunsClean() throws -> Bool {
        let schemaAfter = try scratch.schema()
        let changesAfter = scratch.totalChanges
        var clean = true
        for file in pending {
            do { try scratch.execute(file.sql) } catch { clean = false }
        }
        if clean { clean = try scratch.schema() == schemaAfter && scratch.totalChanges == changesAfter }
        return clean
    }

    /// Each pending migration's class and evidence.
    private func summaries(_ evidence: [TableEvidence]) -> [MigrationSummary] {
        pending.map { file in
            let own = statements.filter { $0.migration == file.key }
            // Alone, evidence on a table no statement named (a trigger, a virtual table's shadow
            // tables) counts against it; with several, each has its own.
            let seen = ownEvidence[file.key] ?? evidence.filter { touchedBy[$0.table]?.contains(file.key) ?? true }
            let kind = max(own.map(\.classification).max() ?? .additive, seen.map(\.classification).max() ?? .additive)
            return MigrationSummary(migration: file.key, classification: kind, evidence: seen.flatMap(\.facts), format: file.format,
                                    hasDown: file.downSQL != nil, notes: file.notes)
        }
    }
}
