import CSQLite
import Foundation
import SQLite
import Support

extension Planner {
    /// What one statement may do, by SQLite's authorizer: the objects it creates, the names it
    /// would create that exist, the existing tables it touches, and its class with the reasons.
    struct Judgement {
        var creates = [CreatedObject]()
        var exists = [String]()
        var problems = [StatementProblem]()
        var described = [String]()
        var classification = MigrationClass.additive
        var touches = Set<String>()

        mutating func note(_ problem: StatementProblem) {
            if !problems.contains(problem) { problems.append(problem) }
            classification = max(classification, problem.classification)
        }

        mutating func describe(_ text: String) { if !described.contains(text) { described.append(text) } }
    }

    /// Judges one statement from its authorizer actions (see `Judgement`).
    /// - Throws: `Failure` `migration.transaction_control` for a statement that controls the transaction,
    ///   `migration.table_shape_differs` for one that creates a
    ///   table that exists with another shape.
    static func judge(_ actions: [AuthorizerAction], sql: String, where_: String, file: MigrationFile, names: Set<String>, on scratch: Connection,
                      existing existingColumns: [String: Set<String>], originalNames: Set<String>, withoutRowid: Set<String>) throws -> Judgement {
        var j = Judgement()
        for action in actions {
            let target = action.first ?? ""
            switch action.code {
            case SQLITE_CREATE_TABLE, SQLITE_CREATE_VIEW, SQLITE_CREATE_INDEX, SQLITE_CREATE_TRIGGER:
                try judgeCreate(action, sql: sql, where_: where_, names: names, on: scratch, originalNames: originalNames, into: &j)
            case SQLITE_INSERT, SQLITE_UPDATE, SQLITE_DELETE:
                judgeWrite(action, among: actions, existing: existingColumns, withoutRowid: withoutRowid, into: &j)
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
                    j.note(.altersTable(table: table))
                }
            case SQLITE_DROP_TABLE:
                j.describe("DROP TABLE \(target)")
                if existingColumns[target] != nil {
                    j.touches.insert(target)
                    // A rebuild drops the old table; the rehearsal shows whether its rows live on.
                    j.note(.dropsTable(table: target))
                }
            case SQLITE_DROP_INDEX, SQLITE_DROP_VIEW, SQLITE_DROP_TRIGGER:
                j.describe("\(action.name) \(target)")
                let type = action.code == SQLITE_DROP_INDEX ? "index" : action.code == SQLITE_DROP_VIEW ? "view" : "trigger"
                if originalNames.contains(target) { j.note(.dropsObject(type: type, name: target)) }
            default:
                let text = "\(action.name) \(target)".trimmingCharacters(in: .whitespaces)
                j.describe(text)
                j.note(.notUnderstood(action: text))
            }
        }
        return j
    }

    /// A CREATE: the object it creates, or the name that exists already (refused when a table
    /// exists with another shape); an index or trigger on an existing table is preserving.
    private static func judgeCreate(_ action: AuthorizerAction, sql: String, where_: String, names: Set<String>, on scratch: Connection,
                                    originalNames: Set<String>, into j: inout Judgement) throws {
        let target = action.first ?? ""
        let type: CreatedObject.Kind = [.table, .view, .index, .trigger][[SQLITE_CREATE_TABLE, SQLITE_CREATE_VIEW, SQLITE_CREATE_INDEX, SQLITE_CREATE_TRIGGER].firstIndex(of: action.code)!]
        if target.hasPrefix("sqlite_") { return }
        j.describe("\(action.name) \(target)")
        if names.contains(target) {
            j.exists.append(target)
            if type == .table, let existing = try scratch.schema().first(where: { $0.name == target })?.sql,
               normalizeCreate(existing) != normalizeCreate(sql) {
                // Later statements (indexes on its columns) would fail against the
                // wrong shape, so say what is wrong here rather than there.
                throw Failure(.migrationTableShapeDiffers, "table \(target) already exists with a different shape than \(where_) defines\n  existing:  \(existing)\n  migration: \(summary(sql))",
                              hint: "reconcile the existing table with the migration by hand (or in a new migration); nothing was applied")
            }
            return
        }
        if type == .index || type == .trigger, let table = action.second, originalNames.contains(table) {
            j.note(.onExistingTable(type: type.rawValue, name: target, table: table))
        }
        j.creates.append(CreatedObject(type: type, name: target))
    }

    /// An INSERT, UPDATE or DELETE of an existing table: what it may do to its rows and values.
    private static func judgeWrite(_ action: AuthorizerAction, among actions: [AuthorizerAction], existing existingColumns: [String: Set<String>],
                                   withoutRowid: Set<String>, into j: inout Judgement) {
        let target = action.first ?? ""
        if target.hasPrefix("sqlite_") { return }
        j.describe("\(action.name) \(target)")
        guard let columns = existingColumns[target] else { return }
        // DROP TABLE authorizes the DELETE of its rows too: judged as the drop.
        if action.code == SQLITE_DELETE, actions.contains(where: { $0.code == SQLITE_DROP_TABLE && $0.first == target }) { return }
        j.touches.insert(target)
        if withoutRowid.contains(target) {
            j.note(.writesWithoutRowid(table: target))
        }
        if action.code == SQLITE_INSERT {
            j.note(.addsRows(table: target))
        } else if action.code == SQLITE_DELETE {
            j.note(.mayDeleteRows(table: target))
        } else if let column = action.second, columns.contains(column.lowercased()) {
            j.note(.mayChangeValues(table: target, column: column))
        } else {
            j.note(.fillsNewColumn(table: target, column: action.second ?? "?"))
        }
    }

    /// What a new trigger's body does to existing tables when it fires: found by preparing (never
    /// running) a statement that fires it, with the authorizer watching the trigger's program.
    static func triggerEffects(_ name: String, on db: Connection, existing: [String: Set<String>]) throws -> [StatementProblem] {
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
        var effects = [StatementProblem]()
        for statement in statements {
            guard let actions = try? db.authorizerActions(for: statement) else {
                return [.triggerUncheckable(trigger: name)]
            }
            for action in actions where action.source == name {
                guard let target = action.first, let kept = existing[target] else { continue }
                switch action.code {
                case SQLITE_DELETE:
                    effects.append(.triggerDeletes(trigger: name, target: target, table: table))
                case SQLITE_UPDATE where kept.contains((action.second ?? "").lowercased()):
                    effects.append(.triggerChangesValues(trigger: name, target: target, column: action.second ?? "?", table: table))
                case SQLITE_INSERT, SQLITE_UPDATE:
                    effects.append(.triggerAdds(trigger: name, target: target, table: table))
                default:
                    continue
                }
            }
        }
        var unique = [StatementProblem]()
        for effect in effects where !unique.contains(effect) { unique.append(effect) }
        return unique
    }

}
