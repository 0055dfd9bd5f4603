import Foundation
import SQLite
import Support

/// Undoes a committed deploy in the live database without restoring its snapshot, so that the
/// application's writes since the deploy are kept (SPEC.md stage 6): by dropping what it added,
/// or by its down parts the rehearsal proved. One `BEGIN IMMEDIATE` transaction with the
/// deploy's history rows: it commits only once the result is proven, else it is rolled back and
/// the database is as it was. What to fall back on (the snapshot) is the caller's.
public struct Undo: Sendable {
    /// How a deploy is undone in place, from the facts its journal recorded.
    public enum Strategy: Sendable, Equatable {
        /// Drop the objects the deploy created, then the columns it added (per table; none for
        /// an additive deploy).
        case dropAdded(created: [CreatedObject], columns: [String: [String]])
        /// Run the down parts the rehearsal proved (`downSQL`, one per migration, oldest first),
        /// newest first, and prove the schema is `schemaBefore` (`Undo.schemaLines`).
        case runDown(migrations: [String], downSQL: [String], schemaBefore: [String])
        /// A framework command's additive deploy, proven: drop the objects it created and put the
        /// framework's bookkeeping tables (`bookkeeping`) back as the snapshot (`snapshot`, a
        /// plain database file) holds them.
        case dropAddedByCommand(created: [CreatedObject], snapshot: String, bookkeeping: [String])

        /// What it does, as a failure of it is reported (`… failed (why), so …`).
        public var attempt: String {
            switch self {
            case .dropAdded: "dropping the added columns"
            case .runDown: "running the down parts"
            case .dropAddedByCommand: "dropping what the framework's command created"
            }
        }
    }

    /// The deploy whose history rows are removed with what it did.
    public let deployId: String
    public let strategy: Strategy

    public init(deployId: String, strategy: Strategy) {
        self.deployId = deployId
        self.strategy = strategy
    }

    /// Runs the undo on the database at `databasePath`, in one transaction. Returns what was
    /// done, for the operator.
    /// - Throws: the SQL error (a column SQLite cannot drop, a failing down part), `Failure`
    ///   `undo.unproven` when what is left is not what it must be; rolled back either way.
    public func run(databasePath: String, busyTimeout: Duration) throws -> String {
        let live = try Connection(path: databasePath, mode: .readWrite, busyTimeout: busyTimeout)
        // SQLite attaches outside a transaction only.
        if case .dropAddedByCommand(_, let snapshot, _) = strategy { try Self.attachSnapshot(snapshot, to: live) }
        try live.execute("BEGIN IMMEDIATE")
        do {
            let done: String
            switch strategy {
            case .dropAdded(let created, let columns): done = try dropAdded(created, columns: columns, on: live)
            case .runDown(let migrations, let downs, let schemaBefore): done = try runDown(migrations, downs, schemaBefore: schemaBefore, on: live)
            case .dropAddedByCommand(let created, _, let bookkeeping): done = try dropAddedByCommand(created, bookkeeping: bookkeeping, on: live)
            }
            try live.execute("COMMIT")
            return done
        } catch {
            try? live.execute("ROLLBACK")
            throw error
        }
    }

    /// Drops the objects the deploy created, then the columns it added, and its history rows;
    /// proves none is left. The application's writes to existing columns are kept.
    private func dropAdded(_ created: [CreatedObject], columns: [String: [String]], on live: Connection) throws -> String {
        try dropAddedObjects(created, columns: columns, on: live)
        if columns.isEmpty { return "the objects it created were dropped; application writes to existing tables were kept" }
        let list = columns.sorted { $0.key < $1.key }.flatMap { table, added in added.map { "\(table).\($0)" } }
        return "the columns it added (\(list.joined(separator: ", "))) and the objects it created were dropped; application writes to existing columns were kept"
    }

    /// Drops `created` and the `columns`, removes the deploy's history rows, and proves none of
    /// them is left and the database passes quick_check.
    @discardableResult
    func dropAddedObjects(_ created: [CreatedObject], columns: [String: [String]] = [:], on live: Connection) throws -> Bool {
        for object in created where object.type != .table {
            try live.execute("DROP \(object.type.rawValue.uppercased()) IF EXISTS \(quoteIdentifier(object.name))")
        }
        for object in created.reversed() where object.type == .table {
            try live.execute("DROP TABLE IF EXISTS \(quoteIdentifier(object.name))")
        }
        for (table, added) in columns.sorted(by: { $0.key < $1.key }) {
            for column in added.reversed() {
                try live.execute("ALTER TABLE \(quoteIdentifier(table)) DROP COLUMN \(quoteIdentifier(column))")
            }
        }
        try History.forget(deployId: deployId, on: live)
        let names = Set(try live.schema().map(\.name))
        var left = created.filter { names.contains($0.name) }.map(\.name)
        for (table, added) in columns {
            let now = Set(try live.rows("SELECT lower(name) FROM pragma_table_info(?)", [.text(table)]).compactMap { $0[0].string })
            left += added.filter { now.contains($0.lowercased()) }.map { "\(table).\($0)" }
        }
        guard left.isEmpty, try live.integrityProblems().isEmpty else {
            throw Failure(.undoUnproven, "undo left \(left.joined(separator: ", ")) behind")
        }
        return true
    }

    /// Runs the proven down parts, newest migration first, and removes the history rows;
    /// proves the schema is the one before the deploy and no foreign key points nowhere anew.
    /// The application's writes are kept, as far as the down parts keep them.
    private func runDown(_ migrations: [String], _ downs: [String], schemaBefore: [String], on live: Connection) throws -> String {
        guard downs.count == migrations.count else {
            throw Failure(.undoNoDownParts, "the journal holds no proven down parts")
        }
        let violationsBefore = Planner.foreignKeyViolations(live)
        // The text the rehearsal proved, newest migration first; never what is on disk now.
        for down in downs.reversed() {
            for sql in try Connection.split(down) where !Planner.isForeignKeysPragma(sql) { try live.execute(sql) }
        }
        let added = Planner.foreignKeyViolations(live).filter { $0.value > violationsBefore[$0.key, default: 0] }
        guard added.isEmpty else {
            throw Failure(.undoUnproven, "the down parts would leave foreign keys pointing nowhere: \(added.keys.sorted().map(\.description).joined(separator: ", "))")
        }
        try History.forget(deployId: deployId, on: live)
        guard try Self.schemaLines(live) == schemaBefore, try live.integrityProblems().isEmpty else {
            throw Failure(.undoUnproven, "after the down parts the schema is not the one before the deploy")
        }
        return "its down parts were run (\(migrations.reversed().joined(separator: ", "))), proven on the rehearsal to give the snapshot's content back; the schema is the one before the deploy"
    }

    /// A database's schema as lines, the history table aside: each object's SQL byte for byte as
    /// sqlite_schema stores it, so that "the schema is the one before" is said only when it is.
    /// What a deploy journals before it migrates, for an undo by down parts to compare with.
    public static func schemaLines(_ db: Connection) throws -> [String] {
        try db.schema(exact: true).filter { $0.name != History.table && $0.table != History.table }
            .map { "\($0.type) \($0.name) \($0.sql ?? "")" }.sorted()
    }
}
