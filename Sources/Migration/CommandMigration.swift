import Foundation
import SQLite
import Support

/// A database migrated by its framework's own command instead of `.sql` files
/// (`[database] migrate_command`, docs/framework-commands.md).
public struct MigrationCommand: Sendable {
    /// Runs the framework's migrations (`python manage.py migrate`, `alembic upgrade head`).
    public let migrate: String
    /// Lists the pending migrations (`python manage.py showmigrations --plan`), read in `format`.
    public let pending: String
    public let format: PendingFormat
    /// How long either command may run before it is killed (and a deploy undone).
    public let timeout: Duration

    public init(migrate: String, pending: String, format: PendingFormat, timeout: Duration) {
        self.migrate = migrate
        self.pending = pending
        self.format = format
        self.timeout = timeout
    }

    /// The frameworks' own records of what they applied. Their rows differ between any two
    /// runs (Django's `applied` times), so they are neither evidence of a class nor compared
    /// between the rehearsal and the live run; their schema is.
    public static let bookkeepingTables: Set<String> = ["django_migrations", "alembic_version", "schema_migrations", "ar_internal_metadata"]

    /// The environment a command gets, the database named as frameworks take it.
    public static func environment(database: String) -> [String: String] {
        ["DATABASE_URL": "sqlite:///" + database, "DEPLOYCTL_DATABASE": database]
    }

    /// `command` with each `{database}` replaced by the database's path, quoted for the shell.
    public static func text(_ command: String, database: String) -> String {
        command.replacingOccurrences(of: "{database}", with: "'" + database.replacingOccurrences(of: "'", with: "'\\''") + "'")
    }
}

/// The output format of `pending_command` (`[database] pending_format`, else detected from the
/// command's text, never from its output).
public enum PendingFormat: String, Sendable, CaseIterable {
    /// One pending migration per line; no line: nothing pending.
    case plain
    /// `manage.py showmigrations --plan`: `[ ]  app.0002_name` pending, `[X]  …` applied.
    case django
    /// `bin/rails db:migrate:status`: `down  20240102000000  Name` pending, `up …` applied.
    case rails
    /// `alembic current`: `<revision> (head)` nothing pending; a revision without `(head)`, or
    /// none, pending.
    case alembic

    /// The format a pending command's text names: Django's `showmigrations`, Rails'
    /// `db:migrate:status`, `alembic`; else plain.
    public static func detect(_ command: String) -> PendingFormat {
        if command.contains("showmigrations") { return .django }
        if command.contains("db:migrate:status") { return .rails }
        if command.split(separator: " ").contains(where: { $0 == "alembic" || $0.hasSuffix("/alembic") }) { return .alembic }
        return .plain
    }

    /// What one line should look like, for the error.
    var expected: String {
        switch self {
        case .plain: "one pending migration name per line"
        case .django: "'[ ]  app.0001_name' or '[X]  app.0001_name' (showmigrations --plan)"
        case .rails: "'down  20240101000000  Name' or 'up  …' under the 'Status  Migration ID  Migration Name' header"
        case .alembic: "'<revision>' or '<revision> (head)' (alembic current)"
        }
    }

    /// The pending migrations in `output`, in order.
    /// - Throws: `PendingOutputUnreadable` naming the first line not in the format.
    public func parse(_ output: String) throws -> [String] {
        var pending = [String]()
        var revisions = 0, atHead = 0
        for (index, raw) in output.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let line = raw.trimmingCharacters(in: .whitespaces.union(CharacterSet(charactersIn: "\r")))
            if line.isEmpty { continue }
            let unreadable = PendingOutputUnreadable(line: String(line.prefix(200)), number: index + 1, expected: expected)
            guard line.unicodeScalars.allSatisfy({ $0.value >= 0x20 && $0.value != 0x7f || $0 == "\t" }) else { throw unreadable }
            let words = line.split(whereSeparator: { $0 == " " || $0 == "\t" }).map(String.init)
            switch self {
            case .plain:
                guard line.count <= 255 else { throw unreadable }
                pending.append(line)
            case .django:
                if line.hasPrefix("[ ]") || line.hasPrefix("[-]") {
                    guard words.count >= 3, words[2].contains(".") else { throw unreadable }
                    pending.append(words[2])
                } else if line.hasPrefix("[X]") || line.hasPrefix("[x]") {
                    guard words.count >= 2, words[1].contains(".") else { throw unreadable }
                } else {
                    throw unreadable
                }
            case .rails:
                if line.hasPrefix("database:") || (words.first == "Status" && line.contains("Migration ID")) || line.allSatisfy({ $0 == "-" }) { continue }
                guard words.count >= 2, ["up", "down"].contains(words[0]), words[1].allSatisfy(\.isNumber) else { throw unreadable }
                if words[0] == "down" { pending.append(words.dropFirst().joined(separator: " ")) }
            case .alembic:
                // Alembic's own log lines, when its logging goes to stdout.
                if words.first == "INFO" || words.first == "WARNING" { continue }
                let marks = words.dropFirst()
                guard let revision = words.first, revision.allSatisfy({ $0.isLetter || $0.isNumber || $0 == "_" }),
                      marks.allSatisfy({ ["(head)", "(effective", "head)", "(branchpoint)", "(mergepoint)"].contains($0) }) else { throw unreadable }
                revisions += 1
                if marks.contains("(head)") { atHead += 1 } else { pending.append("\(revision) → head") }
            }
        }
        if self == .alembic && revisions == 0 { return ["base → head"] }
        _ = atHead
        return pending
    }
}

/// A line of a pending command's output that is not in its format.
public struct PendingOutputUnreadable: Error, Sendable {
    public let line: String
    public let number: Int
    public let expected: String
}

/// What a framework's command did to a copy of the snapshot, table by table: the classes and
/// evidence the `.sql` route gives (`EvidenceRecorder`), the schema it left and the content
/// fingerprints of every table it changed or created, for the proof of the live run.
public struct CommandEffect: Sendable {
    public let evidence: [TableEvidence]
    public let created: [CreatedObject]
    /// Facts the table evidence does not hold: indexes or triggers added to existing tables,
    /// existing indexes, views or triggers dropped or changed.
    public let otherChanges: [String]
    /// The schema after the command (normalized SQL), as the live run must leave it.
    public let schema: [SchemaObject]
    /// The tables the command changed or created (bookkeeping tables aside), by final name,
    /// with their content fingerprints after it.
    public let fingerprints: [TableFingerprint]
    /// Existing tables it left unchanged (bookkeeping tables aside).
    public let untouched: [String]
    /// Existing tables' row counts before.
    public let rowCountsBefore: [String: Int]
    public let journalMode: String

    public var classification: MigrationClass {
        max(evidence.map(\.classification).max() ?? .additive, otherChanges.isEmpty ? .additive : .preserving)
    }

    /// The tables it created, the frameworks' bookkeeping tables aside (as `deployctl_migrations`
    /// is aside for `.sql` deploys).
    public var createdTables: [String] {
        created.filter { $0.type == .table && !MigrationCommand.bookkeepingTables.contains($0.name) }.map(\.name)
    }

    /// The plan of a command's pending migrations: one summary for the set (the command runs
    /// them together), with this effect as its class and evidence.
    public func plan(pending: [String], command: String, commandMilliseconds: Double) -> MigrationPlan {
        let tables = createdTables
        var claims = Planner.claims(statements: [], evidence: evidence, createTables: tables.count, originalTables: rowCountsBefore.keys.sorted(),
                                    untouched: untouched, unchanged: true, fingerprintCopy: true, rerunClean: true)
        // The `.sql` route's words name SQLite's authorizer, which sees no statement of a command.
        let onCopy = "on the rehearsal copy before and after the command, every existing row matched by primary key or rowid"
        let words = ["no existing table changed, \(onCopy) (identical pages or equal content fingerprints)", "no existing table's definition or content changed, \(onCopy)",
                     "0 rows deleted, no column or table dropped, \(onCopy)", "every existing value equal, \(onCopy)"]
        for (index, how) in words.enumerated() where claims[index].proven {
            claims[index] = SafetyClaim(claim: claims[index].claim, proven: true, how: how)
        }
        if !otherChanges.isEmpty {
            claims[0] = SafetyClaim(claim: claims[0].claim, proven: false, how: otherChanges.joined(separator: "; "))
            claims[1] = SafetyClaim(claim: claims[1].claim, proven: false, how: "changed: " + otherChanges.joined(separator: "; "))
        }
        claims[claims.count - 1] = SafetyClaim(claim: "Safe to run multiple times (idempotent)", proven: true,
                                               how: "after the command ran on the rehearsal copy, pending_command lists nothing there: a second run has nothing to do")
        let facts = evidence.flatMap(\.facts) + otherChanges
        let summary = MigrationSummary(migration: pending.count == 1 ? pending[0] : "\(pending.first ?? "")…\(pending.last ?? "") (\(pending.count))",
                                       classification: classification, evidence: facts, format: MigrationSummary.commandFormat, hasDown: false,
                                       notes: ["run by migrate_command '\(command)'; the class is that of the pending set as the command runs it, from the copy before against the copy after"])
        return MigrationPlan(applied: [], pending: pending, statements: [], tablesToCreate: tables, tablesAlreadyExisting: [],
                             existingTables: rowCountsBefore, journalMode: journalMode, created: created, claims: claims, migrations: [summary],
                             evidence: evidence, statementMilliseconds: commandMilliseconds, checkMilliseconds: 0)
    }
}

extension MigrationSummary {
    /// The `format` of a summary of migrations run by a framework's command.
    public static let commandFormat = "command"
}

extension MigrationPlan {
    /// The plan of a framework command's database before any rehearsal: the pending
    /// migrations `pending_command` listed, no class yet (the rehearsal gives it).
    public static func commandPending(_ pending: [String]) -> MigrationPlan {
        MigrationPlan(applied: [], pending: pending, statements: [], tablesToCreate: [], tablesAlreadyExisting: [], existingTables: [:],
                      journalMode: "", created: [], claims: [], migrations: [], evidence: [])
    }
}

/// Copies a database for a framework command's rehearsal: `source` (a live database when
/// `live`, else a plain backup file) into a new temp file in `folder`, whose path it returns.
public func commandScratchCopy(of source: String, live: Bool, in folder: String, name: String, busyTimeout: Duration) throws -> String {
    let path = DurableFile.temporaryPath(for: folder + "/" + name)
    close(try DurableFile.createNew(path))
    do {
        try Connection(path: source, mode: live ? .inspect : .immutable, busyTimeout: busyTimeout).copy(into: path, timeout: busyTimeout)
    } catch {
        removeCommandScratch(path)
        throw error
    }
    return path
}

/// Removes a scratch copy and the files SQLite may have left beside it.
public func removeCommandScratch(_ path: String) {
    for suffix in ["", "-journal", "-wal", "-shm"] { unlink(path + suffix) }
}

/// Watches a rehearsal copy while a framework's command runs on it: opened before the command
/// (the copy then holds the snapshot's state), finished after it.
public final class CommandObservation {
    let db: Connection
    let recorder: EvidenceRecorder
    let rowCounts: [String: Int]
    let journalMode: String

    /// `copy`: a scratch copy of the snapshot, which the command is about to migrate. Holds no
    /// lock while the command runs.
    public init(copy: String, stop: (@Sendable () -> Bool)? = nil) throws {
        db = try Connection(path: copy, mode: .readWrite)
        if let stop { db.stopWhen(stop) }
        let bookkeeping = Set(try db.tableNames().filter { MigrationCommand.bookkeepingTables.contains($0) })
        recorder = try EvidenceRecorder(db, newTables: bookkeeping)
        var counts = [String: Int]()
        for table in recorder.existingColumns.keys { counts[table] = try db.rowCount(table) }
        rowCounts = counts
        journalMode = try db.journalMode()
    }

    /// Compares the copy after the command with `snapshot` (the state before): tables whose
    /// pages are identical are unchanged; the others by definition and content fingerprint;
    /// those that differ are compared row by row and column by column.
    public func finish(snapshot: String, busyTimeout: Duration) throws -> CommandEffect {
        let reference = try Connection(path: snapshot, mode: .immutable)
        let bookkeeping = MigrationCommand.bookkeepingTables.union([History.table])
        let beforeRoots = try reference.tableRoots().filter { !bookkeeping.contains($0.key) }
        let beforeSchema = try reference.schema()
        let identical = try db.tablesWithIdenticalPages(as: snapshot, referenceRoots: beforeRoots, timeout: busyTimeout)
        let afterRoots = try db.tableRoots()
        var changed = [String](), untouched = [String]()
        for (table, root) in beforeRoots.sorted(by: { $0.key < $1.key }) {
            if identical.contains(table) { untouched.append(table); continue }
            guard let after = afterRoots[table], Connection.normalizeSQL(after.sql) == Connection.normalizeSQL(root.sql),
                  try db.fingerprint(table: table) == reference.fingerprint(table: table) else {
                changed.append(table)
                continue
            }
            untouched.append(table)
        }
        let attached = "deployctl_before"
        try db.execute("ATTACH DATABASE '\(Connection.uri(snapshot, query: "immutable=1").replacingOccurrences(of: "'", with: "''"))' AS \(attached)")
        let evidence: [TableEvidence]
        do {
            for table in changed { try recorder.save(table, from: attached) }
            try db.execute("DETACH DATABASE \(attached)")
            evidence = try recorder.compare(rowCounts: rowCounts, replaced: []).filter { !$0.findings.isEmpty || changed.contains($0.table) }
        } catch {
            try? db.execute("DETACH DATABASE \(attached)")
            throw error
        }
        let afterSchema = try db.schema()
        let beforeByKey = Dictionary(beforeSchema.map { ("\($0.type) \($0.name)", $0) }, uniquingKeysWith: { a, _ in a })
        let afterByKey = Dictionary(afterSchema.map { ("\($0.type) \($0.name)", $0) }, uniquingKeysWith: { a, _ in a })
        var created = [CreatedObject]()
        var other = [String]()
        let existingTables = Set(beforeRoots.keys)
        let rebuilt = Set(evidence.filter(\.rebuilt).compactMap(\.finalName))
        for object in afterSchema where beforeByKey["\(object.type) \(object.name)"] == nil {
            guard let kind = CreatedObject.Kind(rawValue: object.type) else { continue }
            created.append(CreatedObject(type: kind, name: object.name))
            if kind != .table && kind != .view && existingTables.contains(object.table) && !bookkeeping.contains(object.table) {
                other.append("\(object.table): gains \(object.type) \(object.name)")
            }
        }
        for object in beforeSchema where object.type != "table" && !bookkeeping.contains(object.table) && object.sql != nil {
            let after = afterByKey["\(object.type) \(object.name)"]
            if after == nil && !changed.contains(object.table) {
                other.append("\(object.table): \(object.type) \(object.name) dropped")
            } else if let after, after.sql != object.sql, !rebuilt.contains(object.table) {
                other.append("\(object.table): \(object.type) \(object.name) redefined")
            }
        }
        let finalChanged = Set(evidence.compactMap(\.finalName)).union(created.filter { $0.type == .table }.map(\.name))
            .filter { !bookkeeping.contains($0) && afterRoots[$0] != nil }
        let fingerprints = try finalChanged.sorted().map { try db.fingerprint(table: $0) }
        return CommandEffect(evidence: evidence, created: created, otherChanges: other, schema: afterSchema, fingerprints: fingerprints,
                             untouched: untouched, rowCountsBefore: rowCounts, journalMode: journalMode)
    }
}

/// The proof that a framework's command did to the live database what it did to the rehearsal
/// copy: the same schema, the same content in every table the rehearsal changed or created,
/// and every other table as it was just before the live run.
public struct CommandLiveProof: Sendable {
    public let effect: CommandEffect
    public let snapshot: String
    public let busyTimeout: Duration
    /// Tables the rehearsal left alone whose live pages differ from the snapshot's just before
    /// the live run (the application wrote them since), with their fingerprints then.
    var drifted = [String: TableFingerprint]()

    /// Taken just before the live run (the application stopped, or its writes counted).
    public init(effect: CommandEffect, snapshot: String, live: String, busyTimeout: Duration) throws {
        self.effect = effect
        self.snapshot = snapshot
        self.busyTimeout = busyTimeout
        let db = try Connection(path: live, mode: .inspect, busyTimeout: busyTimeout)
        for table in try Self.differing(db, snapshot: snapshot, tables: effect.untouched, busyTimeout: busyTimeout) {
            drifted[table] = try db.fingerprint(table: table)
        }
    }

    /// Of `tables`, those whose pages in `db` differ from the snapshot's (or that moved).
    static func differing(_ db: Connection, snapshot: String, tables: [String], busyTimeout: Duration) throws -> [String] {
        let reference = try Connection(path: snapshot, mode: .immutable)
        let roots = try reference.tableRoots().filter { tables.contains($0.key) }
        let identical = try db.tablesWithIdenticalPages(as: snapshot, referenceRoots: roots, timeout: busyTimeout)
        return tables.filter { !identical.contains($0) }
    }

    /// Checks the live database after the command.
    /// - Returns: what was proven, in words.
    /// - Throws: `Failure` `command.result_differs` naming each difference.
    public func prove(live: String) throws -> String {
        let db = try Connection(path: live, mode: .inspect, busyTimeout: busyTimeout)
        var differences = [String]()
        let schema = try db.schema()
        let expected = Dictionary(effect.schema.map { ("\($0.type) \($0.name)", $0.sql) }, uniquingKeysWith: { a, _ in a })
        let found = Dictionary(schema.map { ("\($0.type) \($0.name)", $0.sql) }, uniquingKeysWith: { a, _ in a })
        for key in Set(expected.keys).union(found.keys).sorted() where expected[key] != found[key] {
            differences.append(found[key] == nil ? "\(key) is missing" : expected[key] == nil ? "\(key) was not made by the rehearsal"
                                                                                               : "\(key) is defined differently")
        }
        for fingerprint in effect.fingerprints where found["table \(fingerprint.table)"] != nil {
            let now = try db.fingerprint(table: fingerprint.table)
            if now != fingerprint {
                differences.append("\(fingerprint.table): \(now.rows) rows, content fingerprint differs from the rehearsal's (\(fingerprint.rows) rows)")
            }
        }
        let moved = try Self.differing(db, snapshot: snapshot, tables: effect.untouched.filter { found["table \($0)"] != nil }, busyTimeout: busyTimeout)
        let reference = try Connection(path: snapshot, mode: .immutable)
        for table in moved {
            let now = try db.fingerprint(table: table)
            let before = try drifted[table] ?? reference.fingerprint(table: table)
            if now != before { differences.append("\(table): changed by the command, which left it alone on the rehearsal copy") }
        }
        guard differences.isEmpty else {
            throw Failure(.commandResultDiffers, "the live database after the command differs from the rehearsal copy after it: " + differences.prefix(8).joined(separator: "; "),
                          hint: "the command does something else on the live database than on a copy (a path written into its settings, a migration that reads the clock or the environment); make it migrate the database it is given by DATABASE_URL or {database}")
        }
        return "schema equal to the rehearsal's; \(counted(effect.fingerprints.count, "changed or new table")) with the rehearsal's content fingerprints; "
            + "\(counted(effect.untouched.count, "other table")) unchanged (\(effect.untouched.count - moved.count) with identical pages)"
    }
}
