import Foundation
import Testing

/// Migrations as teams write them: each is classified by what it may do and by what it did on a
/// copy, deployed when it keeps every existing row and value, and its result compared with the
/// same SQL run by the sqlite3 CLI on a copy.
@Suite("migration classes")
struct MigrationClassTests {
    static let preserving: [(name: String, sql: String)] = [
        ("add_columns", "ALTER TABLE loan ADD COLUMN cashback_rate REAL;\nALTER TABLE loan ADD COLUMN tier TEXT NOT NULL DEFAULT 'basic';"),
        ("indexes", "CREATE INDEX loan_status ON loan(status);\nCREATE UNIQUE INDEX user_email_lower ON user(lower(email));"),
        ("rename_column", "ALTER TABLE tracker RENAME COLUMN name TO title;"),
        ("backfill", "ALTER TABLE loan ADD COLUMN cashback_rate REAL;\nUPDATE loan SET cashback_rate = rate / 100 WHERE id % 2 = 0;"),
        ("insert_rows", "CREATE TABLE orm_migrations (name TEXT);\nINSERT INTO orm_migrations VALUES ('0001');\nINSERT INTO user (id, name, email) VALUES (900001, 'System', 'system@example.com');"),
        // SQLite's 12-step rebuild of a table other tables refer to, as ORMs print it.
        ("rebuild", """
            PRAGMA foreign_keys=OFF;
            CREATE TABLE new_loan (id INTEGER PRIMARY KEY, user_id INTEGER NOT NULL REFERENCES user(id), principal_cents INTEGER NOT NULL,
                rate REAL, status TEXT NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'closed')));
            INSERT INTO new_loan (id, user_id, principal_cents, rate, status) SELECT id, user_id, principal_cents, rate, status FROM loan;
            DROP TABLE loan;
            ALTER TABLE new_loan RENAME TO loan;
            CREATE INDEX loan_user ON loan(user_id);
            PRAGMA foreign_keys=ON;
            """),
    ]

    /// Every table's definition and rows, as the sqlite3 CLI prints them (history table aside).
    static func content(_ box: Sandbox, _ db: String) throws -> String {
        let tables = try box.sqlite(db, "SELECT name FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE 'deployctl%' AND name NOT LIKE 'sqlite%' ORDER BY name")
        var text = try box.sqlite(db, "SELECT type, name, sql FROM sqlite_schema WHERE name NOT LIKE 'deployctl%' ORDER BY type, name")
        for table in tables.split(separator: "\n") { text += "\n\(table):\n" + (try box.sqlite(db, "SELECT * FROM \"\(table)\" ORDER BY rowid")) }
        return text
    }

    @Test("a preserving migration is classified so, proven on the copy and inside the transaction, deploys without flags, equals the sqlite3 CLI's result, and a second deploy exits 0",
          arguments: ["wal", "delete"], Self.preserving.map(\.name))
    func preservingDeploys(journalMode: String, name: String) throws {
        let sql = Self.preserving.first { $0.name == name }!.sql
        let box = try Sandbox(journalMode: journalMode, rows: 60)
        try box.write("instances/migrations/0001_\(name).sql", sql + "\n")
        let expected = box.path("expected.db")
        _ = try box.sqlite(box.databasePath, "VACUUM INTO '\(expected)'")
        let plan = try Sandbox.document(try box.deployctl(["plan", "prod", "--json"]))
        #expect(plan["class"] as? String == "preserving", "\(plan)")
        let claims = try #require(plan["claims"] as? [[String: Any]])
        for claim in claims where (claim["claim"] as? String)?.contains("does NOT delete") == true || (claim["claim"] as? String)?.contains("does NOT change") == true {
            #expect(claim["proven"] as? Bool == true, "\(claim)")
        }
        let deploy = try box.deployctl(["deploy", "prod"])
        #expect(deploy.status == 0, "\(deploy.stdout)\(deploy.stderr)")
        #expect(deploy.stdout.contains("Class: preserving"), "\(deploy.stdout)")
        // Indexes leave every table's rows where they were: those are proven untouched.
        #expect(deploy.stdout.contains(name == "indexes" ? "4 existing tables proven unchanged" : "no existing row deleted and no existing value changed"), "\(deploy.stdout)")
        // The same SQL through the sqlite3 CLI, on the copy taken before.
        let cli = try Sandbox.exec("/usr/bin/sqlite3", [expected], input: sql)
        #expect(cli.status == 0, "\(cli.stderr)")
        #expect(try Self.content(box, box.databasePath) == Self.content(box, expected))
        #expect(try box.sqlite(box.databasePath, "PRAGMA integrity_check") == "ok")
        #expect(try box.sqlite(box.databasePath, "PRAGMA foreign_key_check").isEmpty)
        let again = try box.deployctl(["deploy", "prod"])
        #expect(again.status == 0 && again.stdout.contains("Nothing to do"), "\(again.stdout)\(again.stderr)")
    }

    @Test("a deploy that only added columns and an index, undone after its commit: exactly those are dropped, the application's writes since are kept")
    func preservingUndone() throws {
        let box = try Sandbox(rows: 60)
        try box.write("instances/migrations/0001_add_columns.sql", Self.preserving[0].sql + "\nCREATE INDEX loan_tier ON loan(tier);\n")
        var after = ""
        _ = try Self.undoneAfterWrites(box) {
            // The application, after the commit: a new payment and a closed loan.
            _ = try box.sqlite(box.databasePath, "INSERT INTO payment (id, loan_id, amount_cents) VALUES (900001, 2, 500); UPDATE loan SET status = 'closed' WHERE id = 1;")
            after = try Self.content(box, box.databasePath)
        }
        #expect(try box.sqlite(box.databasePath, "SELECT count(*) FROM payment WHERE id = 900001") == "1")
        #expect(try box.sqlite(box.databasePath, "SELECT status FROM loan WHERE id = 1") == "closed")
        #expect(try box.sqlite(box.databasePath, "SELECT group_concat(name) FROM pragma_table_info('loan')") == "id,user_id,principal_cents,rate,status")
        #expect(try box.sqlite(box.databasePath, "SELECT count(*) FROM sqlite_schema WHERE name IN ('loan_tier', 'deployctl_migrations')") == "0")
        #expect(try box.sqlite(box.databasePath, "PRAGMA integrity_check") == "ok")
        #expect(after.contains("cashback_rate"), "the deploy had committed before the application wrote")
    }

    @Test("a unique index that existing rows violate fails the plan with 64 naming file and statement; nothing is applied")
    func uniqueIndexOnDuplicates() throws {
        let box = try Sandbox(rows: 60)
        try box.write("instances/migrations/0001_unique.sql", "CREATE UNIQUE INDEX loan_one_per_status ON loan(status);\n")
        let before = try box.sha3(box.databasePath)
        let result = try box.deployctl(["deploy", "prod"])
        #expect(result.status == 64 && result.code == "migration.sql_failed", "\(result.stderr)")
        #expect(result.stderr.contains("0001_unique.sql, statement 1 fails: UNIQUE constraint failed"), "\(result.stderr)")
        #expect(try box.sha3(box.databasePath) == before && box.backupNames().isEmpty)
    }

    @Test("an application row written between plan and migrate that the migration would replace: the in-transaction proof catches it, rolls back, exit 1, the row stays")
    func replaceCaughtInsideTransaction() throws {
        let box = try Sandbox(rows: 60)
        try box.write("instances/migrations/0001_system_user.sql",
                      "INSERT OR REPLACE INTO user (id, name, email) VALUES (900001, 'System', 'system@example.com');\n")
        let plan = try Sandbox.document(try box.deployctl(["plan", "prod", "--json"]))
        #expect(plan["class"] as? String == "preserving")
        let deploy = try box.spawnDeployctl(["deploy", "prod"], environment: ["DEPLOYCTL_FAILPOINTS": "rehearse=delay:3000"])
        // The application writes user 900001 while the deploy rehearses on its snapshot.
        box.waitForJournal("rehearse")
        _ = try box.sqlite(box.databasePath, "INSERT INTO user (id, name, email) VALUES (900001, 'Customer', 'customer@example.com')")
        deploy.waitUntilExit()
        #expect(deploy.terminationStatus == 1)
        #expect(try box.sqlite(box.databasePath, "SELECT name FROM user WHERE id = 900001") == "Customer")
        #expect(try box.sqlite(box.databasePath, "SELECT count(*) FROM sqlite_schema WHERE name = 'deployctl_migrations'") == "0")
    }

    /// Migrations that lose or change existing data in ways a loose comparison misses: each must
    /// be destructive at plan time (64, nothing applied), with the evidence named.
    static let disguised: [(name: String, setup: String, sql: String, evidence: String)] = [
        ("text_to_number", "CREATE TABLE coupon (id INTEGER PRIMARY KEY, code TEXT); INSERT INTO coupon VALUES (1, '007'), (2, '0042'), (3, 'ab');",
         "ALTER TABLE coupon ADD COLUMN code_num INTEGER;\nUPDATE coupon SET code_num = code;\nALTER TABLE coupon DROP COLUMN code;",
         "coupon.code: column dropped, 3 non-NULL values lost"),
        ("text_key_collapsed", "CREATE TABLE coupon (code TEXT PRIMARY KEY, discount INT); INSERT INTO coupon VALUES ('007', 10), ('7', 10), ('12', 15);",
         "CREATE TABLE coupon_backup AS SELECT * FROM coupon;\nDROP TABLE coupon;\nCREATE TABLE coupon (code INTEGER PRIMARY KEY, discount INT);\nINSERT OR IGNORE INTO coupon SELECT code, discount FROM coupon_backup;\nDROP TABLE coupon_backup;",
         "coupon: 3 rows deleted"),
        ("nocase_change", "CREATE TABLE tag (id INTEGER PRIMARY KEY, name TEXT COLLATE NOCASE); INSERT INTO tag VALUES (1, 'Alpha'), (2, 'beta');",
         "CREATE TABLE new_tag (id INTEGER PRIMARY KEY, name TEXT COLLATE NOCASE);\nINSERT INTO new_tag SELECT id, lower(name) FROM tag;\nDROP TABLE tag;\nALTER TABLE new_tag RENAME TO tag;",
         "tag.name: 1 existing value changed"),
        ("without_rowid", "CREATE TABLE setting (k TEXT PRIMARY KEY, v TEXT) WITHOUT ROWID; INSERT INTO setting VALUES ('a', 'on');",
         "INSERT INTO setting VALUES ('b', 'off');",
         "a WITHOUT ROWID table"),
        ("trigger_deletes", "",
         "CREATE TRIGGER payment_cleanup AFTER INSERT ON payment BEGIN DELETE FROM tracker WHERE user_id = 1; END;",
         "trigger payment_cleanup deletes rows of existing table tracker"),
    ]

    @Test("a migration that loses or changes data in disguise (type conversion, collapsed keys, collation, no rowid, a trigger) is destructive at plan: 64, nothing applied",
          arguments: Self.disguised.map(\.name))
    func disguisedLossRefused(name: String) throws {
        let item = Self.disguised.first { $0.name == name }!
        let box = try Sandbox(rows: 30)
        if !item.setup.isEmpty { _ = try box.sqlite(box.databasePath, item.setup) }
        try box.write("instances/migrations/0001_\(name).sql", item.sql + "\n")
        let before = try box.sha3(box.databasePath)
        let plan = try box.deployctl(["plan", "prod"])
        #expect(plan.status == 64 && plan.code == "migration.destructive_refused", "\(plan.stdout)\(plan.stderr)")
        #expect(plan.stdout.contains("0001_\(name): destructive") && (plan.stdout + plan.stderr).contains(item.evidence), "\(plan.stdout)")
        #expect(!plan.stdout.contains("does NOT delete any data: proven") || !plan.stdout.contains("does NOT change any existing data: proven"), "\(plan.stdout)")
        let deploy = try box.deployctl(["deploy", "prod"])
        #expect(deploy.status == 64 && deploy.code == "migration.destructive_refused", "\(deploy.stderr)")
        #expect(try box.sha3(box.databasePath) == before && box.backupNames().isEmpty)
    }

    @Test("a virtual table's shadow tables emptied by a statement the authorizer sees as an insert: the plan's evidence makes it destructive")
    func ftsDeleteAll() throws {
        let box = try Sandbox(rows: 30)
        let fts = try Sandbox.exec("/usr/bin/sqlite3", [box.databasePath],
                                   input: "CREATE VIRTUAL TABLE user_fts USING fts5(name, content='user', content_rowid='id'); INSERT INTO user_fts(user_fts) VALUES ('rebuild');")
        try #require(fts.status == 0, "no FTS5 here: \(fts.stderr)")
        try box.write("instances/migrations/0001_reset.sql", "INSERT INTO user_fts(user_fts) VALUES ('delete-all');\n")
        let plan = try box.deployctl(["plan", "prod"])
        #expect(plan.status == 64 && plan.code == "migration.destructive_refused" && plan.stdout.contains("0001_reset: destructive") && plan.stdout.contains("rows deleted"), "\(plan.stdout)\(plan.stderr)")
    }

    @Test("renaming a table away and dropping it leaves other tables' keys dangling: the plan refuses and says why")
    func renameAwayDangles() throws {
        let box = try Sandbox(rows: 30)
        try box.write("instances/migrations/0001_rebuild_loan.sql", """
            ALTER TABLE loan RENAME TO _loan_old;
            CREATE TABLE loan (id INTEGER PRIMARY KEY, user_id INTEGER NOT NULL REFERENCES user(id), principal_cents INTEGER, rate REAL, status TEXT);
            INSERT INTO loan SELECT * FROM _loan_old;
            DROP TABLE _loan_old;
            """)
        let before = try box.sha3(box.databasePath)
        let plan = try box.deployctl(["deploy", "prod"])
        #expect(plan.status == 64 && plan.code == "migration.foreign_keys_dangling", "\(plan.stderr)")
        #expect(plan.stderr.contains("payment → _loan_old") && plan.stderr.contains("12 steps"), "\(plan.stderr)")
        #expect(try box.sha3(box.databasePath) == before)
    }

    @Test("an identical INSERT OR REPLACE of an existing row keeps it: preserving, and the deploy proves it")
    func identicalReplace() throws {
        let box = try Sandbox(rows: 30)
        let row = try box.sqlite(box.databasePath, "SELECT quote(name) || ', ' || quote(email) FROM user WHERE id = 5")
        try box.write("instances/migrations/0001_replace.sql", "INSERT OR REPLACE INTO user (id, name, email) VALUES (5, \(row));\n")
        let deploy = try box.deployctl(["deploy", "prod"])
        #expect(deploy.status == 0, "\(deploy.stdout)\(deploy.stderr)")
        #expect(deploy.stdout.contains("Class: preserving"))
    }

    @Test("a preserving deploy undone after commit says the snapshot was restored and where the replaced state is saved; a destructive one survives application writes before it")
    func undoMessageAndDestructiveUnderWrites() throws {
        let box = try Sandbox(rows: 30)
        try box.write("instances/migrations/0001_add.sql", "INSERT INTO user (id, name, email) VALUES (900002, 'System', 'system@example.com');\n")
        let undone = try box.deployctl(["deploy", "prod"], environment: ["DEPLOYCTL_FAILPOINTS": "after-commit=error"])
        #expect(undone.status == 1)
        #expect(undone.stderr.contains("was restored; the state it replaced") && undone.stderr.contains("saved as lending_app_prod_pre_restore_"), "\(undone.stderr)")
        try FileManager.default.removeItem(atPath: box.path("instances/migrations/0001_add.sql"))
        try box.write("instances/migrations/0001_close.sql", "-- allow-destructive\nUPDATE loan SET status = 'closed' WHERE id = 1;\n")
        let deploy = try box.spawnDeployctl(["deploy", "prod", "--allow-destructive"], environment: ["DEPLOYCTL_FAILPOINTS": "rehearse=delay:2000"])
        box.waitForJournal("rehearse")
        _ = try box.sqlite(box.databasePath, "INSERT INTO payment (id, loan_id, amount_cents) VALUES (900001, 2, 500)")
        deploy.waitUntilExit()
        #expect(deploy.terminationStatus == 0)
        #expect(try box.sqlite(box.databasePath, "SELECT count(*) FROM payment WHERE id = 900001") == "1")
        #expect(try box.sqlite(box.databasePath, "SELECT status FROM loan WHERE id = 1") == "closed")
    }

    @Test("golang-migrate, dbmate and Flyway files (and a whole-file BEGIN…COMMIT wrapper) plan, deploy and record as deployctl's own; a second deploy exits 0")
    func otherToolsFiles() throws {
        let box = try Sandbox(rows: 30)
        try box.write("instances/migrations/0001_loan_note.up.sql", "ALTER TABLE loan ADD COLUMN note TEXT;\n")
        try box.write("instances/migrations/0001_loan_note.down.sql", "ALTER TABLE loan DROP COLUMN note;\n")
        try box.write("instances/migrations/20261125120000_audit.sql", "-- migrate:up\nCREATE TABLE audit (id INTEGER PRIMARY KEY, what TEXT);\n\n-- migrate:down\nDROP TABLE audit;\n")
        try box.write("instances/migrations/V3__loan_note_index.sql", "BEGIN;\nCREATE INDEX loan_note ON loan(note);\nCOMMIT;\n")
        try box.write("instances/migrations/U3__loan_note_index.sql", "DROP INDEX loan_note;\n")
        let plan = try box.deployctl(["plan", "prod"])
        #expect(plan.status == 0, "\(plan.stderr)")
        #expect(plan.stdout.contains("0001_loan_note: preserving, golang-migrate file, has a down part"), "\(plan.stdout)")
        #expect(plan.stdout.contains("0003_loan_note_index: preserving, flyway file, has a down part"), "\(plan.stdout)")
        #expect(plan.stdout.contains("20261125120000_audit: additive, dbmate file, has a down part"), "\(plan.stdout)")
        #expect(plan.stdout.contains("note: its whole-file BEGIN … COMMIT wrapper was removed"), "\(plan.stdout)")
        let deploy = try box.deployctl(["deploy", "prod"])
        #expect(deploy.status == 0, "\(deploy.stdout)\(deploy.stderr)")
        #expect(try box.sqlite(box.databasePath, "SELECT group_concat(id || ':' || name, ' ') FROM (SELECT * FROM deployctl_migrations ORDER BY id)")
                == "1:loan_note 3:loan_note_index 20261125120000:audit")
        #expect(try box.sqlite(box.databasePath, "SELECT count(*) FROM sqlite_schema WHERE name IN ('audit', 'loan_note')") == "2")
        #expect(try box.deployctl(["deploy", "prod"]).status == 0)
    }

    @Test("a down part proven on the rehearsal undoes a committed deploy and keeps the application's writes; one that does not give the content back is not used")
    func downMigrationUndo() throws {
        let box = try Sandbox(rows: 30)
        try box.write("instances/migrations/0001_rename.up.sql", "ALTER TABLE tracker RENAME COLUMN name TO title;\n")
        try box.write("instances/migrations/0001_rename.down.sql", "ALTER TABLE tracker RENAME COLUMN title TO name;\n")
        _ = try Self.undoneAfterWrites(box) {
            _ = try box.sqlite(box.databasePath, "INSERT INTO tracker (id, user_id, title) VALUES (900001, 1, 'written after the commit')")
        }
        #expect(try box.sqlite(box.databasePath, "SELECT name FROM tracker WHERE id = 900001") == "written after the commit")
        #expect(try box.sqlite(box.databasePath, "SELECT count(*) FROM sqlite_schema WHERE name = 'deployctl_migrations'") == "0")

        // A down part that does not give the rows back: the snapshot is restored instead.
        try FileManager.default.removeItem(atPath: box.path("instances/migrations/0001_rename.up.sql"))
        try FileManager.default.removeItem(atPath: box.path("instances/migrations/0001_rename.down.sql"))
        try box.write("instances/migrations/0001_close.up.sql", "-- allow-destructive\nUPDATE loan SET status = 'closed' WHERE id = 1;\n")
        try box.write("instances/migrations/0001_close.down.sql", "SELECT 1;\n")
        let closed = try box.deployctl(["deploy", "prod", "--allow-destructive"], environment: ["DEPLOYCTL_FAILPOINTS": "after-commit=error"])
        #expect(closed.status == 1)
        #expect(closed.stdout.contains("the down parts are not used for an undo: after up then down loan does not hold the snapshot's rows"), "\(closed.stdout)")
        #expect(closed.stderr.contains("was restored"), "\(closed.stderr)")
        #expect(try box.sqlite(box.databasePath, "SELECT status FROM loan WHERE id = 1") == "active")
    }

    @Test("down parts are proven byte for byte: a table renamed away and back (SQLite quotes its name), a view given back with a literal in another case or other whitespace is not proven, and the undo restores the snapshot",
          arguments: ["rename", "literal", "whitespace"])
    func downProofExact(variant: String) throws {
        let box = try Sandbox(rows: 30)
        if variant == "rename" {
            try box.write("instances/migrations/0001_goal.up.sql", "ALTER TABLE tracker RENAME TO goal;\n")
            try box.write("instances/migrations/0001_goal.down.sql", "ALTER TABLE goal RENAME TO tracker;\n")
        } else {
            _ = try box.sqlite(box.databasePath, "CREATE VIEW open_loans AS SELECT id FROM loan WHERE status = 'ACTIVE'")
            try box.write("instances/migrations/0001_goal.up.sql", "DROP VIEW open_loans;\nCREATE VIEW open_loans AS SELECT id, rate FROM loan WHERE status = 'ACTIVE';\n")
            let given = variant == "literal" ? "SELECT id FROM loan WHERE status = 'active'" : "SELECT id  FROM loan WHERE status = 'ACTIVE'"
            try box.write("instances/migrations/0001_goal.down.sql", "DROP VIEW open_loans;\nCREATE VIEW open_loans AS \(given);\n")
        }
        let schemaBefore = try box.sqlite(box.databasePath, "SELECT type, name, sql FROM sqlite_schema ORDER BY name")
        let result = try box.deployctl(["deploy", "prod"], environment: ["DEPLOYCTL_FAILPOINTS": "after-commit=error"])
        #expect(result.status == 1, "\(result.stdout)\(result.stderr)")
        let differing = variant == "rename" ? "tracker" : "open_loans"
        #expect(result.stdout.contains("the down parts are not used for an undo: after up then down the schema text differs from the snapshot's, byte for byte (\(differing))"),
                "\(result.stdout)")
        #expect(result.stderr.contains("was restored") && !result.stderr.contains("its down parts were run"), "\(result.stderr)")
        #expect(try box.sqlite(box.databasePath, "SELECT type, name, sql FROM sqlite_schema ORDER BY name") == schemaBefore)
    }

    @Test("baseline adopts a database another tool migrated: refuses (65, nothing recorded) when something is missing, records without running otherwise; accept records a deliberate edit")
    func baselineAndAccept() throws {
        let box = try Sandbox(rows: 30)
        try box.installCashbackMigration()
        try box.write("instances/migrations/0002_loan_note.sql", "ALTER TABLE loan ADD COLUMN note TEXT;\n")
        // Another tool applied 0001 only.
        let cashback = try String(contentsOfFile: box.path("instances/migrations/0001_cashback_tables.sql"), encoding: .utf8)
        #expect(try Sandbox.exec("/usr/bin/sqlite3", [box.databasePath], input: cashback).status == 0)
        let before = try box.sha3(box.databasePath)
        let tooFar = try box.deployctl(["baseline", "prod", "--through", "2"])
        #expect(tooFar.status == 65 && tooFar.code == "baseline.schema_differs" && tooFar.stderr.contains("0002_loan_note.sql statement 1 would still change loan"), "\(tooFar.stderr)")
        #expect(try box.sha3(box.databasePath) == before)
        let adopted = try box.deployctl(["baseline", "prod", "--through", "1"])
        #expect(adopted.status == 0, "\(adopted.stderr)")
        #expect(adopted.stdout.contains("Recorded as applied, without running them: 0001_cashback_tables"), "\(adopted.stdout)")
        let deploy = try box.deployctl(["deploy", "prod"])
        #expect(deploy.status == 0, "\(deploy.stdout)\(deploy.stderr)")
        #expect(try box.sqlite(box.databasePath, "SELECT count(*) FROM deployctl_migrations") == "2")
        // A deliberate edit of an applied file: verify says so, accept records it.
        try box.write("instances/migrations/0002_loan_note.sql", "-- a note for readers\nALTER TABLE loan ADD COLUMN note TEXT;\n")
        #expect(try box.deployctl(["verify", "prod"]).status == 65)
        let refused = try box.deployctl(["accept", "prod", "0002_loan_note"])
        #expect(refused.status == 64 && refused.stdout.contains("It now reads:"), "\(refused.stdout)\(refused.stderr)")
        let accepted = try box.deployctl(["accept", "prod", "0002_loan_note", "--yes"])
        #expect(accepted.status == 0, "\(accepted.stderr)")
        #expect(try box.deployctl(["verify", "prod"]).status == 0)
    }

    /// Starts a deploy that commits, then waits in the after-commit failpoint while `application`
    /// runs (with the sqlite3 CLI, as the application would write), then fails its restart so
    /// the deploy is undone. Returns the deploy's stdout and stderr.
    static func undoneAfterWrites(_ box: Sandbox, _ arguments: [String] = ["deploy", "prod"], application: () throws -> Void) throws -> String {
        let stderr = Pipe()
        let deploy = try box.spawnDeployctl(arguments, environment: ["DEPLOYCTL_FAILPOINTS": "after-commit=delay:2000,restart=error"], stderr: stderr)
        box.waitForJournal("\"committed\" : true")
        try application()
        deploy.waitUntilExit()
        #expect(deploy.terminationStatus == 1)
        return String(decoding: stderr.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
    }

    @Test("a down part that writes rows is never used for an undo (it could remove the application's writes): the snapshot is restored and the replaced state saved")
    func downWritingRowsNotUsed() throws {
        let box = try Sandbox(rows: 30)
        try box.write("instances/migrations/0001_vip.sql", "-- migrate:up\nINSERT INTO user (id, name, email) VALUES (900001, 'VIP', 'vip@example.com');\n-- migrate:down\nDELETE FROM user WHERE id > 900000;\n")
        let stderr = try Self.undoneAfterWrites(box) {
            _ = try box.sqlite(box.databasePath, "INSERT INTO user (id, name, email) VALUES (900002, 'Customer', 'c@example.com')")
        }
        #expect(stderr.contains("was restored") && stderr.contains("saved as lending_app_prod_pre_restore_"), "\(stderr)")
        // The customer's row is not destroyed: it is in the saved copy.
        let saved = try #require(box.backupNames().first { $0.contains("_pre_restore_") })
        #expect(try box.sqlite(box.backupsFolder + "/" + saved, "SELECT name FROM user WHERE id = 900002") == "Customer")
    }

    @Test("the undo runs the down text the rehearsal proved, not what is on disk by then")
    func downTextFromRehearsal() throws {
        let box = try Sandbox(rows: 30)
        try box.write("instances/migrations/0001_rename.up.sql", "ALTER TABLE tracker RENAME COLUMN name TO title;\n")
        try box.write("instances/migrations/0001_rename.down.sql", "ALTER TABLE tracker RENAME COLUMN title TO name;\n")
        let payments = try box.sqlite(box.databasePath, "SELECT count(*) FROM payment")
        _ = try Self.undoneAfterWrites(box) {
            try box.write("instances/migrations/0001_rename.down.sql", "ALTER TABLE tracker RENAME COLUMN title TO name;\nDELETE FROM payment;\n")
        }
        #expect(try box.sqlite(box.databasePath, "SELECT count(*) FROM payment") == payments)
        #expect(try box.sqlite(box.databasePath, "SELECT group_concat(name) FROM pragma_table_info('tracker')") == "id,user_id,name")
    }

    @Test("an undo gives the schema back: an index-only migration drops its index and keeps the application's writes; one that also dropped an existing index restores the snapshot")
    func undoGivesSchemaBack() throws {
        let box = try Sandbox(rows: 30)
        _ = try box.sqlite(box.databasePath, "CREATE INDEX loan_user ON loan(user_id)")
        let schema = try box.sqlite(box.databasePath, "SELECT group_concat(name) FROM (SELECT name FROM sqlite_schema ORDER BY name)")
        try box.write("instances/migrations/0001_status_index.sql", "CREATE INDEX loan_status ON loan(status);\n")
        _ = try Self.undoneAfterWrites(box) {
            _ = try box.sqlite(box.databasePath, "UPDATE loan SET status = 'closed' WHERE id = 1")
        }
        #expect(try box.sqlite(box.databasePath, "SELECT status FROM loan WHERE id = 1") == "closed")
        #expect(try box.sqlite(box.databasePath, "SELECT group_concat(name) FROM (SELECT name FROM sqlite_schema ORDER BY name)") == schema)
        try FileManager.default.removeItem(atPath: box.path("instances/migrations/0001_status_index.sql"))
        try box.write("instances/migrations/0001_rate.sql", "ALTER TABLE loan ADD COLUMN cashback_rate REAL;\nDROP INDEX loan_user;\nCREATE INDEX loan_user_rate ON loan(user_id, cashback_rate);\n")
        let result = try box.deployctl(["deploy", "prod"], environment: ["DEPLOYCTL_FAILPOINTS": "after-commit=error"])
        #expect(result.status == 1 && result.stderr.contains("was restored"), "\(result.stderr)")
        #expect(try box.sqlite(box.databasePath, "SELECT group_concat(name) FROM (SELECT name FROM sqlite_schema ORDER BY name)") == schema)
    }

    @Test("Ctrl-C while the migrating transaction is open rolls it back: exit 1, nothing applied, no restore")
    func interruptDuringMigration() throws {
        let box = try Sandbox(rows: 30)
        try box.write("instances/migrations/0001_status_index.sql", "CREATE INDEX loan_status ON loan(status);\nCREATE INDEX loan_rate ON loan(rate);\n")
        let before = try box.sha3(box.databasePath)
        let stderr = Pipe()
        let deploy = try box.spawnDeployctl(["deploy", "prod"], environment: ["DEPLOYCTL_FAILPOINTS": "migrate=delay:2000"], stderr: stderr)
        box.waitForJournal("migrate and verify")
        Thread.sleep(forTimeInterval: 0.5)
        kill(deploy.processIdentifier, SIGINT)
        deploy.waitUntilExit()
        let text = String(decoding: stderr.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        #expect(deploy.terminationStatus == 1, "\(text)")
        #expect(text.contains("the migration was rolled back"), "\(text)")
        #expect(try box.sha3(box.databasePath) == before)
        #expect(!box.backupNames().contains { $0.contains("pre_restore") })
    }

    @Test("baseline refuses a database whose tables have another shape or where a statement fails (65); long migration names make a valid snapshot label")
    func baselineShapesAndLongNames() throws {
        let box = try Sandbox(rows: 30)
        try box.installCashbackMigration()
        for table in Sandbox.cashbackTables { _ = try box.sqlite(box.databasePath, "CREATE TABLE \(table) (legacy_blob BLOB)") }
        let baseline = try box.deployctl(["baseline", "prod", "--through", "1"])
        #expect(baseline.status == 65 && baseline.code == "baseline.schema_differs" && baseline.stderr.contains("exists with another shape"), "\(baseline.stderr)")
        #expect(try box.sqlite(box.databasePath, "SELECT count(*) FROM sqlite_schema WHERE name = 'deployctl_migrations'") == "0")

        let other = try Sandbox(rows: 30)
        try other.write("instances/migrations/20261125000001_create_shops_table_with_owner_and_address_columns_and_more.sql", "CREATE TABLE shop (id INTEGER PRIMARY KEY);\n")
        try other.write("instances/migrations/20261125000002_create_coupons_table.sql", "CREATE TABLE coupon (id INTEGER PRIMARY KEY);\n")
        let deploy = try other.deployctl(["deploy", "prod"])
        #expect(deploy.status == 0, "\(deploy.stderr)")
        #expect(other.backupNames().contains { $0.contains("_pre_20261125000001-20261125000002_") }, "\(other.backupNames())")
    }
}

/// With several pending migrations each gets the class of its own effect (SPEC), not of the
/// whole set's: the state before it against the state after it, on the plan's copy.
@Suite("each migration's own class")
struct OwnClassTests {
    /// The plan's `migrations` as name → (class, evidence).
    static func classes(_ plan: [String: Any]) -> [String: (String, [String])] {
        var result = [String: (String, [String])]()
        for migration in plan["migrations"] as? [[String: Any]] ?? [] {
            result[migration["migration"] as? String ?? "?"] = (migration["class"] as? String ?? "?", migration["evidence"] as? [String] ?? [])
        }
        return result
    }

    @Test("an added column then a dropped column of the same table: 0001 preserving, 0002 destructive; deploys with --allow-destructive")
    func addThenDrop() throws {
        let box = try Sandbox(rows: 100)
        try box.write("instances/migrations/0001_add_c.sql", "ALTER TABLE loan ADD COLUMN c TEXT;\n")
        try box.write("instances/migrations/0002_drop_status.sql", "-- allow-destructive\nALTER TABLE loan DROP COLUMN status;\n")
        let plan = try Sandbox.document(try box.deployctl(["plan", "prod", "--allow-destructive", "--json"]))
        let classes = Self.classes(plan)
        #expect(classes["0001_add_c"]?.0 == "preserving", "\(classes)")
        #expect(classes["0001_add_c"]?.1.contains { $0.contains("dropped") } == false, "\(classes)")
        #expect(classes["0002_drop_status"]?.0 == "destructive", "\(classes)")
        #expect(classes["0002_drop_status"]?.1.contains("loan.status: column dropped, 100 non-NULL values lost") == true, "\(classes)")
        #expect(plan["class"] as? String == "destructive")
        let deploy = try box.deployctl(["deploy", "prod", "--allow-destructive"])
        #expect(deploy.status == 0, "\(deploy.stdout)\(deploy.stderr)")
        #expect(try box.sqlite(box.databasePath, "SELECT count(*) FROM pragma_table_info('loan') WHERE name IN ('c', 'status')") == "1")
        // Without the flag the refusal names only the destructive one.
        let box2 = try Sandbox(rows: 100)
        try box2.write("instances/migrations/0001_add_c.sql", "ALTER TABLE loan ADD COLUMN c TEXT;\n")
        try box2.write("instances/migrations/0002_drop_status.sql", "-- allow-destructive\nALTER TABLE loan DROP COLUMN status;\n")
        let refused = try box2.deployctl(["deploy", "prod"])
        #expect(refused.status == 64 && refused.code == "migration.destructive_refused", "\(refused.stderr)")
        #expect(refused.stderr.contains("0002_drop_status") && !refused.stderr.contains("0001_add_c"), "\(refused.stderr)")
    }

    @Test("a value-keeping rebuild then a drop of a column of the same table: the rebuild stays preserving")
    func rebuildThenDrop() throws {
        let box = try Sandbox(rows: 100)
        try box.write("instances/migrations/0001_rebuild.sql", """
            CREATE TABLE new_loan (id INTEGER PRIMARY KEY, user_id INTEGER NOT NULL REFERENCES user(id), principal_cents INTEGER, rate REAL, status TEXT, currency TEXT NOT NULL DEFAULT 'EUR');
            INSERT INTO new_loan (id, user_id, principal_cents, rate, status) SELECT id, user_id, principal_cents, rate, status FROM loan;
            DROP TABLE loan;
            ALTER TABLE new_loan RENAME TO loan;

            """)
        try box.write("instances/migrations/0002_drop_rate.sql", "-- allow-destructive\nALTER TABLE loan DROP COLUMN rate;\n")
        let classes = Self.classes(try Sandbox.document(try box.deployctl(["plan", "prod", "--allow-destructive", "--json"])))
        #expect(classes["0001_rebuild"]?.0 == "preserving", "\(classes)")
        #expect(classes["0002_drop_rate"]?.0 == "destructive", "\(classes)")
        #expect(classes["0002_drop_rate"]?.1.contains("loan.rate: column dropped, 100 non-NULL values lost") == true, "\(classes)")
        let deploy = try box.deployctl(["deploy", "prod", "--allow-destructive"])
        #expect(deploy.status == 0, "\(deploy.stdout)\(deploy.stderr)")
    }

    @Test("a column added by one migration and backfilled by the next: both preserving; a later change of an existing value is still destructive")
    func addThenBackfill() throws {
        let box = try Sandbox(rows: 100)
        try box.write("instances/migrations/0001_add_tier.sql", "ALTER TABLE loan ADD COLUMN tier TEXT;\n")
        try box.write("instances/migrations/0002_backfill_tier.sql", "UPDATE loan SET tier = 'gold' WHERE id % 2 = 0;\n")
        try box.write("instances/migrations/0003_reprice.sql", "-- allow-destructive\nUPDATE loan SET rate = 1.0 WHERE id <= 10;\n")
        let classes = Self.classes(try Sandbox.document(try box.deployctl(["plan", "prod", "--allow-destructive", "--json"])))
        #expect(classes["0001_add_tier"]?.0 == "preserving", "\(classes)")
        #expect(classes["0002_backfill_tier"]?.0 == "preserving", "\(classes)")
        #expect(classes["0003_reprice"]?.0 == "destructive", "\(classes)")
        #expect(classes["0003_reprice"]?.1.contains("loan.rate: 10 existing values changed") == true, "\(classes)")
        #expect(classes["0002_backfill_tier"]?.1.contains { $0.contains("rate") } == false, "\(classes)")
    }
}
