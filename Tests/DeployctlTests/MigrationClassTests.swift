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

    @Test("a preserving deploy undone after its commit leaves the database as before")
    func preservingUndone() throws {
        let box = try Sandbox(rows: 60)
        try box.write("instances/migrations/0001_add_columns.sql", Self.preserving[0].sql + "\n")
        let before = try Self.content(box, box.databasePath)
        let result = try box.deployctl(["deploy", "prod"], environment: ["DEPLOYCTL_FAILPOINTS": "after-commit=error"])
        #expect(result.status == 1, "\(result.stdout)\(result.stderr)")
        #expect(try Self.content(box, box.databasePath) == before)
    }

    @Test("a unique index that existing rows violate fails the plan with 64 naming file and statement; nothing is applied")
    func uniqueIndexOnDuplicates() throws {
        let box = try Sandbox(rows: 60)
        try box.write("instances/migrations/0001_unique.sql", "CREATE UNIQUE INDEX loan_one_per_status ON loan(status);\n")
        let before = try box.sha3(box.databasePath)
        let result = try box.deployctl(["deploy", "prod"])
        #expect(result.status == 64)
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
        let journal = box.path("instances/prod/.deployctl.journal")
        let deadline = Date().addingTimeInterval(20)
        while Date() < deadline, (try? String(contentsOfFile: journal, encoding: .utf8))?.contains("rehearse") != true { usleep(20_000) }
        _ = try box.sqlite(box.databasePath, "INSERT INTO user (id, name, email) VALUES (900001, 'Customer', 'customer@example.com')")
        deploy.waitUntilExit()
        #expect(deploy.terminationStatus == 1)
        #expect(try box.sqlite(box.databasePath, "SELECT name FROM user WHERE id = 900001") == "Customer")
        #expect(try box.sqlite(box.databasePath, "SELECT count(*) FROM sqlite_schema WHERE name = 'deployctl_migrations'") == "0")
    }
}
