import Foundation
import SQLite
import Support

extension OnlineRebuildPlan {
    /// `verdict(_:plan:on:)` on the database at `databasePath`, opened read only.
    /// - Throws: `SQLiteError` from opening or reading it.
    public static func verdict(_ pending: [MigrationFile], plan: MigrationPlan, databasePath: String, busyTimeout: Duration) throws -> OnlineVerdict {
        try verdict(pending, plan: plan, on: try Connection(path: databasePath, mode: .inspect, busyTimeout: busyTimeout))
    }

    /// Decides whether `pending` can run online on `live` (read only): one pending migration
    /// of the 12-step shape, preserving by the plan, on a WAL database, of a rowid table whose
    /// INTEGER PRIMARY KEY is copied to the new table's, with no trigger on it and no foreign
    /// key with ON DELETE/UPDATE actions pointing at it.
    /// - Throws: `SQLiteError` from reading the live schema.
    public static func verdict(_ pending: [MigrationFile], plan: MigrationPlan, on live: Connection) throws -> OnlineVerdict {
        do {
            let file = try candidate(pending, plan: plan, on: live)
            var rebuild = try Rebuild(file, on: live)
            try rebuild.readCopy()
            try rebuild.readIndexes()
            try rebuild.checkKeyAndNeighbours()
            return .online(try rebuild.finish())
        } catch let refusal as Refusal {
            return .offline(refusal.why)
        }
    }

    /// Why a deploy runs offline, thrown by the verdict's steps.
    struct Refusal: Error {
        let why: String
        init(_ why: String) { self.why = why }
    }

    /// The one pending file, when the deploy could run online at all: alone, on a WAL
    /// database, preserving.
    private static func candidate(_ pending: [MigrationFile], plan: MigrationPlan, on live: Connection) throws -> MigrationFile {
        guard !pending.isEmpty else { throw Refusal("nothing is pending") }
        guard pending.count == 1, let file = pending.first else {
            throw Refusal("online rebuilds run one migration at a time, and \(pending.count) are pending (deploy them one by one)")
        }
        let mode = try live.journalMode()
        guard mode == "wal" else {
            throw Refusal("the database is in \(mode) journal mode; an online rebuild needs WAL (readers must not block the copy's commits)")
        }
        guard plan.classification == .preserving else {
            throw Refusal("\(file.key) is \(plan.classification.rawValue); only a rebuild that keeps every row and value runs online")
        }
        return file
    }

    /// One migration read as a 12-step rebuild, step by step: its statements, the columns it
    /// copies, its indexes, the live table's key and neighbours, then the exact text SQLite
    /// will store and the UNIQUE sets the triggers mirror. Each step throws `Refusal`.
    private struct Rebuild {
        let file: MigrationFile
        let live: Connection
        /// The statements as written, and with whitespace collapsed (matched on).
        let raw: [String]
        let statements: [String]
        let table: String
        let shadow: String
        /// The new table, built from its own statement on an in-memory database.
        let memory: Connection
        let shadowColumns: [Column]
        let tableColumns: [Column]
        var source = [String]()
        var target = [String]()
        var indexStatements = [String]()
        var indexNames = [String]()
        var sourceKey = ""
        var targetKey = ""

        init(_ file: MigrationFile, on live: Connection) throws {
            self.file = file
            self.live = live
            // Matched on their text with whitespace collapsed; run as written (SQLite keeps a
            // CREATE statement's text as written, and the online result must be the same bytes).
            raw = try Connection.split(file.sql).filter { !Planner.isForeignKeysPragma($0) }
            statements = raw.map(OnlineRebuildPlan.clean)
            guard statements.count >= 4,
                  let create = Shape.match(statements[0], #"^CREATE TABLE (\#(Shape.name)) ?\("#),
                  let drop = Shape.match(statements[2], #"^DROP TABLE (?:IF EXISTS )?(\#(Shape.name))$"#),
                  let rename = Shape.match(statements[3], #"^ALTER TABLE (\#(Shape.name)) RENAME TO (\#(Shape.name))$"#) else {
                throw Refusal("\(file.key) is not a table rebuild of the 12-step shape (CREATE TABLE new_x; INSERT INTO new_x … SELECT … FROM x; DROP TABLE x; ALTER TABLE new_x RENAME TO x; CREATE INDEX … ON x)")
            }
            shadow = Shape.unquote(create[0])
            table = Shape.unquote(drop[0])
            guard Shape.same(rename[0], shadow), Shape.same(rename[1], table) else {
                throw Refusal("statement 4 of \(file.key) renames \(Shape.unquote(rename[0])) to \(Shape.unquote(rename[1])), not \(shadow) to \(table)")
            }
            guard try live.scalar("SELECT count(*) FROM sqlite_schema WHERE type = 'table' AND name = ? COLLATE NOCASE", [.text(table)]).int == 1 else {
                throw Refusal("\(table) does not exist in the live database")
            }
            memory = try Connection(path: ":memory:", mode: .create)
            try memory.execute(raw[0])
            shadowColumns = try OnlineRebuildPlan.columns(memory, shadow)
            tableColumns = try OnlineRebuildPlan.columns(live, table)
        }

        /// Statement 2: the columns copied, all (`SELECT *`) or listed plain.
        mutating func readCopy() throws {
            if let star = Shape.match(statements[1], #"^INSERT INTO (\#(Shape.name)) SELECT \* FROM (\#(Shape.name))$"#) {
                guard Shape.same(star[0], shadow), Shape.same(star[1], table), shadowColumns.count == tableColumns.count else {
                    throw Refusal("statement 2 of \(file.key) does not copy \(table) into \(shadow) column for column")
                }
                source = tableColumns.map(\.name)
                target = shadowColumns.map(\.name)
                return
            }
            guard let listed = Shape.match(statements[1], #"^INSERT INTO (\#(Shape.name)) ?\(([^()]*)\) SELECT (.+) FROM (\#(Shape.name))$"#) else {
                throw Refusal("statement 2 of \(file.key) is not a plain INSERT INTO \(shadow) (…) SELECT … FROM \(table)")
            }
            guard Shape.same(listed[0], shadow), Shape.same(listed[3], table) else {
                throw Refusal("statement 2 of \(file.key) does not copy \(table) into \(shadow)")
            }
            target = listed[1].split(separator: ",").map { Shape.unquote(String($0).trimmingCharacters(in: .whitespaces)) }
            let selected = listed[2].split(separator: ",").map { String($0).trimmingCharacters(in: .whitespaces) }
            guard selected.allSatisfy({ Shape.match($0, "^\(Shape.name)$") != nil }) else {
                throw Refusal("statement 2 of \(file.key) computes values (\(listed[2])), so the rebuild also changes rows; it runs offline")
            }
            source = selected.map(Shape.unquote)
            guard source.count == target.count,
                  source.allSatisfy({ s in tableColumns.contains { Shape.same($0.name, s) } }),
                  target.allSatisfy({ t in shadowColumns.contains { Shape.same($0.name, t) } }) else {
                throw Refusal("statement 2 of \(file.key) names columns that \(table) or \(shadow) does not have")
            }
        }

        /// Statements 5 on: indexes on the rebuilt table, nothing else.
        mutating func readIndexes() throws {
            for (offset, statement) in statements.dropFirst(4).enumerated() {
                guard let index = Shape.match(statement, #"^CREATE (?:UNIQUE )?INDEX (?:IF NOT EXISTS )?(\#(Shape.name)) ON (\#(Shape.name)) ?\("#),
                      Shape.same(index[1], table) else {
                    throw Refusal("statement \(offset + 5) of \(file.key) does more than create an index on \(table); an online rebuild runs the rebuild alone")
                }
                indexStatements.append(raw[offset + 4])
                indexNames.append(Shape.unquote(index[0]))
            }
        }

        /// The rowid copied as is; no trigger on the table, no foreign-key action pointing at
        /// it, no self-reference by the temporary name, no name taken.
        mutating func checkKeyAndNeighbours() throws {
            // Rows are matched by the rowid while the application writes: it must be copied as is.
            let keys = tableColumns.filter { $0.primaryKey }
            guard keys.count == 1, let key = keys.first, key.type.uppercased() == "INTEGER", !(try OnlineRebuildPlan.withoutRowid(live, table)),
                  let position = source.firstIndex(where: { Shape.same($0, key.name) }),
                  let newKey = shadowColumns.first(where: { $0.primaryKey && $0.type.uppercased() == "INTEGER" }),
                  shadowColumns.filter(\.primaryKey).count == 1, Shape.same(target[position], newKey.name) else {
                throw Refusal("\(table)'s INTEGER PRIMARY KEY is not copied to \(shadow)'s: rows cannot be matched while the application writes")
            }
            sourceKey = key.name
            targetKey = newKey.name
            let triggers = try live.rows("SELECT name FROM sqlite_schema WHERE type = 'trigger' AND tbl_name = ? COLLATE NOCASE", [.text(table)]).compactMap { $0[0].string }
            guard triggers.isEmpty else {
                throw Refusal("the application's triggers on \(table) (\(triggers.joined(separator: ", "))) would fire for the copy's rows")
            }
            let actions = try live.rows("""
                SELECT m.name, f."from" FROM sqlite_schema m, pragma_foreign_key_list(m.name) f
                WHERE m.type = 'table' AND f."table" = ? COLLATE NOCASE AND (f.on_delete <> 'NO ACTION' OR f.on_update <> 'NO ACTION')
                """, [.text(table)]).map { "\($0[0].string ?? "").\($0[1].string ?? "")" }
            guard actions.isEmpty else {
                throw Refusal("foreign keys with ON DELETE/UPDATE actions point at \(table) (\(actions.joined(separator: ", "))); renaming it aside would fire them differently")
            }
            let selfReference = try memory.scalar("SELECT count(*) FROM pragma_foreign_key_list(?) WHERE \"table\" = ? COLLATE NOCASE", [.text(shadow), .text(shadow)]).int ?? 0
            guard selfReference == 0 else {
                throw Refusal("\(shadow) has a foreign key to itself by its temporary name, which the cut-over's rename would leave pointing at \(shadow)")
            }
            let taken = try live.rows("SELECT name FROM sqlite_schema WHERE name = ? COLLATE NOCASE OR name LIKE '\(OnlineRebuild.prefix)%'", [.text(shadow)]).compactMap { $0[0].string }
            guard taken.isEmpty else {
                throw Refusal("\(taken.joined(separator: ", ")) already exists in the live database")
            }
        }

        /// The exact text SQLite will store for the rebuilt table and its indexes, the UNIQUE
        /// sets to mirror, and the new table's own foreign-key actions: the plan.
        func finish() throws -> OnlineRebuildPlan {
            try memory.execute("ALTER TABLE \(quoteIdentifier(shadow)) RENAME TO \(quoteIdentifier(table))")
            for statement in indexStatements { try memory.execute(statement) }
            let finalTable = try memory.scalar("SELECT sql FROM sqlite_schema WHERE type = 'table' AND name = ?", [.text(table)]).string ?? ""
            let finalIndexes = try indexNames.map { try memory.scalar("SELECT sql FROM sqlite_schema WHERE type = 'index' AND name = ?", [.text($0)]).string ?? "" }
            guard finalIndexes.allSatisfy({ OnlineRebuildPlan.indexParts($0) != nil }) else {
                throw Refusal("an index statement of \(file.key) has a form deployctl does not rebuild online (comments or unusual spacing before its column list)")
            }
            let mirrored = try mirroredUniqueSets()
            // A foreign-key action of the new table's own (ON DELETE CASCADE, SET NULL…) would change
            // its rows behind the triggers when the application deletes a parent while copying.
            let ownActions = try memory.rows("SELECT \"from\", \"table\" FROM pragma_foreign_key_list(?) WHERE on_delete NOT IN ('NO ACTION', 'RESTRICT') OR on_update NOT IN ('NO ACTION', 'RESTRICT')",
                                          [.text(table)]).map { "\($0[0].string ?? "") → \($0[1].string ?? "")" }
            guard ownActions.isEmpty else {
                throw Refusal("the rebuilt \(table) has foreign keys with ON DELETE/UPDATE actions (\(ownActions.joined(separator: ", "))), which would change its rows behind the copy's triggers")
            }
            return OnlineRebuildPlan(migration: file.key, table: table, shadow: shadow, createSQL: raw[0], sourceColumns: source,
                                     targetColumns: target, sourceKey: sourceKey, targetKey: targetKey, indexStatements: indexStatements,
                                     uniqueSets: mirrored, indexNames: indexNames, finalTableSQL: finalTable, finalIndexSQL: finalIndexes)
        }

        /// UNIQUE column sets: the old table's (an application's REPLACE deletes by them), as
        /// (source, target) pairs; the new table's must be among the old's, or a write the old
        /// table takes could be refused or replaced in the new one while copying.
        private func mirroredUniqueSets() throws -> [[ColumnPair]] {
            let pairs = Dictionary(zip(target.map { $0.lowercased() }, source), uniquingKeysWith: { a, _ in a })
            guard let oldSets = try OnlineRebuildPlan.uniqueSets(live, table), let newSets = try OnlineRebuildPlan.uniqueSets(memory, table) else {
                throw Refusal("\(table) or its rebuild has a UNIQUE index on an expression or with a WHERE clause; such an index cannot be mirrored while the application writes")
            }
            // Compared with their collations: a UNIQUE that is NOCASE in one table and BINARY in the
            // other treats the application's values differently.
            let oldKeys = Set(oldSets.map { Set($0.map { "\($0.name.lowercased()) \($0.collation.uppercased())" }) })
            var mirrored = [[ColumnPair]]()
            for set in oldSets {
                let reverse = Dictionary(zip(source.map { $0.lowercased() }, target), uniquingKeysWith: { a, _ in a })
                let mapped = set.compactMap { column in reverse[column.name.lowercased()].map { ColumnPair(source: column.name, target: $0, collation: column.collation) } }
                if mapped.count == set.count { mirrored.append(mapped) }
            }
            for set in newSets {
                let sourceSet = Set(set.compactMap { column in pairs[column.name.lowercased()].map { "\($0.lowercased()) \(column.collation.uppercased())" } })
                guard sourceSet.count == set.count, oldKeys.contains(sourceSet) else {
                    throw Refusal("the rebuild adds a UNIQUE constraint on \(set.map { "\($0.name) (\($0.collation))" }.joined(separator: ", ")) that \(table) does not have with that collation: a row the application writes while copying could be refused or replace another in \(shadow)")
                }
            }
            return mirrored
        }
    }
}
