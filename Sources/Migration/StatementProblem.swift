import Foundation

/// One line of `PRAGMA foreign_key_check`'s tally (`Planner.foreignKeyViolations`): rows of
/// `child` whose key points at a row `parent` does not hold, or a definition SQLite cannot
/// check (`foreign key mismatch`) with its message. Printed as `child → parent`.
public enum ForeignKeyViolation: Hashable, Comparable, Sendable, CustomStringConvertible {
    case dangling(child: String, parent: String)
    case uncheckable(String)

    public var description: String {
        switch self {
        case .dangling(let child, let parent): "\(child) → \(parent)"
        case .uncheckable(let message): "foreign_key_check fails (\(message))"
        }
    }

    /// The table pointed at; for a definition that cannot be checked, its message.
    public var parent: String {
        switch self {
        case .dangling(_, let parent): parent
        case .uncheckable: description
        }
    }

    public static func < (a: Self, b: Self) -> Bool { a.description < b.description }
}

/// Why a statement is not additive, as SQLite's authorizer (or a new trigger's body) shows it:
/// what it may do to a table or object that existed before the migrations. Decisions (the
/// class, the safety claims, how an undo works) read the case; `description` is the sentence
/// `plan` prints and `--json` carries.
public enum StatementProblem: Sendable, Hashable, CustomStringConvertible {
    /// A new index or trigger on an existing table (`type` is `index` or `trigger`).
    case onExistingTable(type: String, name: String, table: String)
    /// A write to a WITHOUT ROWID table, whose rows the migrating transaction cannot follow.
    case writesWithoutRowid(table: String)
    case addsRows(table: String)
    case mayDeleteRows(table: String)
    case mayChangeValues(table: String, column: String)
    /// An UPDATE of a column the table did not have before (an `ALTER TABLE … ADD COLUMN`'s).
    case fillsNewColumn(table: String, column: String)
    case altersTable(table: String)
    /// A table dropped: a rebuild's old table, if the rehearsal shows its rows live on.
    case dropsTable(table: String)
    /// An existing index, view or trigger dropped (`type`), which holds no rows.
    case dropsObject(type: String, name: String)
    /// An authorizer action deployctl does not judge (`action` as SQLite names it, and its target).
    case notUnderstood(action: String)
    /// A new trigger whose body could not be prepared to see what it does.
    case triggerUncheckable(trigger: String)
    case triggerDeletes(trigger: String, target: String, table: String)
    case triggerChangesValues(trigger: String, target: String, column: String, table: String)
    case triggerAdds(trigger: String, target: String, table: String)

    public var description: String {
        switch self {
        case .onExistingTable(let type, let name, let table): "\(type) \(name) on existing table \(table)"
        case .writesWithoutRowid(let table): "writes to \(table), a WITHOUT ROWID table whose rows cannot be followed inside the migrating transaction"
        case .addsRows(let table): "adds rows to existing table \(table)"
        case .mayDeleteRows(let table): "may delete rows of existing table \(table)"
        case .mayChangeValues(let table, let column): "may change existing values of \(table).\(column)"
        case .fillsNewColumn(let table, let column): "fills new column \(table).\(column)"
        case .altersTable(let table): "alters existing table \(table)"
        case .dropsTable(let table): "drops existing table \(table)"
        case .dropsObject(let type, let name): "drop \(type) of existing \(name) (no rows)"
        case .notUnderstood(let action): "\(action) (not understood: treated as destructive)"
        case .triggerUncheckable(let trigger): "trigger \(trigger): what it does could not be checked"
        case .triggerDeletes(let trigger, let target, let table): "trigger \(trigger) deletes rows of existing table \(target) when \(table) is written"
        case .triggerChangesValues(let trigger, let target, let column, let table):
            "trigger \(trigger) changes existing values of \(target).\(column) when \(table) is written"
        case .triggerAdds(let trigger, let target, let table): "trigger \(trigger) adds to existing table \(target) when \(table) is written"
        }
    }

    /// What it makes of the statement: additive statements have no problem at all.
    public var classification: MigrationClass {
        switch self {
        case .onExistingTable, .addsRows, .fillsNewColumn, .altersTable, .dropsTable, .dropsObject, .triggerAdds: .preserving
        case .writesWithoutRowid, .mayDeleteRows, .mayChangeValues, .notUnderstood, .triggerUncheckable, .triggerDeletes,
             .triggerChangesValues: .destructive
        }
    }

    /// Whether it may remove existing rows, or do what no copy can rule out (rows that cannot
    /// be followed, SQL not understood or not checked): safety claim 3 ("does NOT delete").
    public var mayDelete: Bool {
        switch self {
        case .mayDeleteRows, .triggerDeletes, .writesWithoutRowid, .notUnderstood, .triggerUncheckable: true
        default: false
        }
    }

    /// Whether it drops an existing table, index, view or trigger: dropping what a deploy
    /// added does not undo that, so such a deploy's undo restores the snapshot.
    public var dropsExisting: Bool {
        switch self {
        case .dropsTable, .dropsObject: true
        default: false
        }
    }
}
