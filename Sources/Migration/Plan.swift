import Foundation
import SQLite
import Support

/// A schema object a migration creates.
public struct CreatedObject: Codable, Sendable, Hashable {
    public let type: Kind
    public let name: String

    /// A schema object's type, as `sqlite_schema` names it (and plans and journals write it).
    public enum Kind: String, Codable, Sendable {
        case table, index, view, trigger
    }

    public init(type: Kind, name: String) {
        self.type = type
        self.name = name
    }
}

/// What one statement of a migration does, as SQLite's authorizer reported it.
public struct StatementPlan: Encodable, Sendable {
    public let migration: String
    /// 1-based position in its file.
    public let index: Int
    /// The statement's text, shortened.
    public let sql: String
    /// The authorizer's actions, e.g. "CREATE TABLE cashback_transaction".
    public let actions: [String]
    /// Objects it creates.
    public let creates: [CreatedObject]
    /// Names it would create that already exist (a `CREATE … IF NOT EXISTS` no-op).
    public let alreadyExists: [String]
    /// Why it is not additive; empty when it is.
    public let reasons: [StatementProblem]
    /// What it may do to existing data, by SQLite's authorizer (the rehearsal's evidence is in
    /// the migration's summary).
    public let classification: MigrationClass
    /// What deployctl does with it instead of running it, if anything (`PRAGMA foreign_keys`).
    public let note: String?

    public var additive: Bool { reasons.isEmpty }
    /// Why it is not additive, as `plan` prints it and `--json` carries it.
    public var problems: [String] { reasons.map(\.description) }
    /// Whether it drops an existing table, index, view or trigger.
    public var dropsExisting: Bool { reasons.contains(where: \.dropsExisting) }

    enum CodingKeys: String, CodingKey {
        case migration, index, sql, actions, creates, problems, note
        case alreadyExists
        case classification = "class"
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(migration, forKey: .migration)
        try c.encode(index, forKey: .index)
        try c.encode(sql, forKey: .sql)
        try c.encode(actions, forKey: .actions)
        try c.encode(creates, forKey: .creates)
        try c.encode(alreadyExists, forKey: .alreadyExists)
        try c.encode(problems, forKey: .problems)
        try c.encode(classification, forKey: .classification)
        try c.encodeIfPresent(note, forKey: .note)
    }
}

/// One pending migration's class, the stricter of what its statements may do and what they
/// did on the rehearsal copy, with that evidence.
public struct MigrationSummary: Codable, Sendable {
    public let migration: String
    public let classification: MigrationClass
    /// What the rehearsal copy shows, per table and column, with counts.
    public let evidence: [String]
    /// The file's format: `deployctl`, `golang-migrate`, `dbmate` or `flyway`.
    public let format: String
    /// Whether the file (or its down file) holds SQL that undoes it.
    public let hasDown: Bool
    /// What deployctl did with the file as written.
    public let notes: [String]

    enum CodingKeys: String, CodingKey {
        case migration, evidence, format, notes
        case classification = "class"
        case hasDown = "has_down"
    }
}

/// One of the guide's safety claims, marked proven or not, with how.
public struct SafetyClaim: Codable, Sendable {
    public let claim: String
    public let proven: Bool
    public let how: String
    /// Not checked by the plan but later, by the deploy itself.
    public let deferred: Bool

    init(claim: String, proven: Bool, how: String, deferred: Bool = false) {
        self.claim = claim
        self.proven = proven
        self.how = how
        self.deferred = deferred
    }
}

/// The plan for the pending migrations of one database (SPEC.md stage 2). Written as JSON
/// (`plan --json`, the deploy's events); never read back.
public struct MigrationPlan: Encodable, Sendable {
    /// Applied migrations, in order.
    public let applied: [AppliedMigration]
    /// Pending migration names (`0001_cashback_tables`), in order.
    public let pending: [String]
    public let statements: [StatementPlan]
    /// Tables the pending migrations create.
    public let tablesToCreate: [String]
    /// Tables the pending migrations define that already exist.
    public let tablesAlreadyExisting: [String]
    /// Tables that exist before the migration, with their row counts.
    public let existingTables: [String: Int]
    public let journalMode: String
    /// Every object the pending migrations create (for an undo).
    public let created: [CreatedObject]
    public let claims: [SafetyClaim]
    /// Each pending migration's class and evidence.
    public let migrations: [MigrationSummary]
    /// What the rehearsal copy shows the migrations did to each existing table they touched.
    public let evidence: [TableEvidence]
    /// How long the statements took on the plan's copy: about how long a deploy blocks the
    /// application's writes, before its in-transaction checks.
    public let statementMilliseconds: Double
    /// How long the checks a deploy runs inside its transaction took on the plan's copy (the
    /// fingerprints of rebuilt tables, `quick_check` of what the statements wrote, foreign-key
    /// checks), counted as often as the deploy runs them under its lock.
    public let checkMilliseconds: Double
    /// The migrations' `-- verify:` queries that were not true (or did not run) on the plan's
    /// copy after its statements, as the deploy words them: a deploy would fail at rehearse.
    public internal(set) var verifyFailures: [String] = []
    /// The plan's estimate of how long a deploy blocks the application's writes: statements and
    /// checks, as measured on the plan's copy.
    public var writeLockEstimateMilliseconds: Double { statementMilliseconds + checkMilliseconds }
    /// True when every statement is additive and no existing table was touched.
    public var additive: Bool { classification == .additive }
    /// The strictest class of the pending migrations.
    public var classification: MigrationClass {
        max(migrations.map(\.classification).max() ?? .additive, statements.map(\.classification).max() ?? .additive)
    }

    enum CodingKeys: String, CodingKey {
        case applied, pending, statements, created, claims, additive, migrations, evidence
        case classification = "class"
        case statementMilliseconds = "statement_ms"
        case checkMilliseconds = "check_ms"
        case writeLockEstimateMilliseconds = "write_lock_estimate_ms"
        case tablesToCreate = "tables_to_create"
        case tablesAlreadyExisting = "tables_already_existing"
        case existingTables = "existing_tables"
        case journalMode = "journal_mode"
        case verifyFailures = "verify_failures"
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(applied, forKey: .applied)
        try c.encode(pending, forKey: .pending)
        try c.encode(statements, forKey: .statements)
        try c.encode(created, forKey: .created)
        try c.encode(claims, forKey: .claims)
        try c.encode(additive, forKey: .additive)
        try c.encode(classification, forKey: .classification)
        try c.encode(migrations, forKey: .migrations)
        try c.encode(evidence, forKey: .evidence)
        try c.encode(statementMilliseconds, forKey: .statementMilliseconds)
        try c.encode(checkMilliseconds, forKey: .checkMilliseconds)
        try c.encode(writeLockEstimateMilliseconds, forKey: .writeLockEstimateMilliseconds)
        try c.encode(tablesToCreate, forKey: .tablesToCreate)
        try c.encode(tablesAlreadyExisting, forKey: .tablesAlreadyExisting)
        try c.encode(existingTables, forKey: .existingTables)
        try c.encode(journalMode, forKey: .journalMode)
        try c.encode(verifyFailures, forKey: .verifyFailures)
    }

    init(applied: [AppliedMigration], pending: [String], statements: [StatementPlan], tablesToCreate: [String],
         tablesAlreadyExisting: [String], existingTables: [String: Int], journalMode: String, created: [CreatedObject],
         claims: [SafetyClaim], migrations: [MigrationSummary], evidence: [TableEvidence], statementMilliseconds: Double = 0,
         checkMilliseconds: Double = 0) {
        self.applied = applied
        self.pending = pending
        self.statements = statements
        self.tablesToCreate = tablesToCreate
        self.tablesAlreadyExisting = tablesAlreadyExisting
        self.existingTables = existingTables
        self.journalMode = journalMode
        self.created = created
        self.claims = claims
        self.migrations = migrations
        self.evidence = evidence
        self.statementMilliseconds = statementMilliseconds
        self.checkMilliseconds = checkMilliseconds
    }
}
