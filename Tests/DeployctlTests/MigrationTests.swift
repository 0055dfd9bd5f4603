import Foundation
import Testing

@Suite("migrations and plan")
struct MigrationTests {
    @Test("plan lists the six tables, proves all six claims, and leaves the database byte-identical",
          arguments: ["wal", "delete"])
    func planChangesNothing(journalMode: String) throws {
        let box = try Sandbox(journalMode: journalMode)
        try box.installCashbackMigration()
        let bytes = try Data(contentsOf: URL(fileURLWithPath: box.databasePath))
        let mtime = try FileManager.default.attributesOfItem(atPath: box.databasePath)[.modificationDate] as? Date
        let folder = try FileManager.default.contentsOfDirectory(atPath: box.path("instances/prod/database"))
        let result = try box.deployctl(["plan", "prod", "--json"])
        #expect(result.status == 0, "\(result.stderr)")
        let plan = try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as! [String: Any]
        #expect((plan["tables_to_create"] as? [String])?.sorted() == Sandbox.cashbackTables)
        let claims = plan["claims"] as! [[String: Any]]
        #expect(claims.count == 6)
        #expect(claims.allSatisfy { $0["proven"] as? Bool == true })
        #expect(plan["additive"] as? Bool == true && plan["class"] as? String == "additive")
        #expect(try Data(contentsOf: URL(fileURLWithPath: box.databasePath)) == bytes)
        #expect(try FileManager.default.attributesOfItem(atPath: box.databasePath)[.modificationDate] as? Date == mtime)
        #expect(try FileManager.default.contentsOfDirectory(atPath: box.path("instances/prod/database")) == folder)
        let human = try box.deployctl(["plan", "prod"])
        #expect(human.stdout.contains("✓ It only ADDS new objects (6 new tables): proven — no statement touches an existing table"), "\(human.stdout)")
    }

    @Test("a migration that changes, deletes or drops existing data is refused with 64 naming what, with counts; nothing is applied", arguments: [
        ("UPDATE loan SET status = 'closed' WHERE id <= 33;", "loan.status: 33 existing values changed"),
        ("DROP TABLE tracker;", "tracker: table dropped (16 rows)"),
        ("DELETE FROM payment WHERE id % 3 = 0;", "payment: 50 rows deleted"),
        ("ALTER TABLE payment DROP COLUMN note;", "payment.note: column dropped, 150 non-NULL values lost"),
    ])
    func destructiveRefused(sql: String, evidence: String) throws {
        let box = try Sandbox(rows: 50)
        try box.write("instances/migrations/0001_change.sql", "CREATE TABLE extra (id INTEGER PRIMARY KEY);\n\(sql)\n")
        let before = try box.sha3(box.databasePath)
        let plan = try box.deployctl(["plan", "prod"])
        #expect(plan.status == 64 && plan.code == "migration.destructive_refused", "\(plan.stdout)\(plan.stderr)")
        #expect(plan.stdout.contains("0001_change: destructive") && plan.stdout.contains(evidence), "\(plan.stdout)")
        #expect(plan.stdout.contains("✗ It does NOT change any existing data: NOT proven"), "\(plan.stdout)")
        #expect(!plan.stdout.contains("does NOT delete any data: proven") || sql.hasPrefix("UPDATE"), "\(plan.stdout)")
        // One JSON document, with the refusal in it.
        let json = try box.deployctl(["plan", "prod", "--json"])
        #expect(json.status == 64 && json.code == "migration.destructive_refused", "\(json.stdout)")
        let document = try Sandbox.document(json)
        #expect(document["class"] as? String == "destructive" && (document["error"] as? [String: Any])?["exit_code"] as? Int == 64)
        #expect(((document["migrations"] as? [[String: Any]])?.first?["evidence"] as? [String])?.contains(evidence) == true)
        let deploy = try box.deployctl(["deploy", "prod"])
        #expect(deploy.status == 64 && deploy.code == "migration.destructive_refused", "\(deploy.stderr)")
        #expect(deploy.stderr.contains("destructive") && deploy.stderr.contains(evidence), "\(deploy.stderr)")
        #expect(try box.sha3(box.databasePath) == before)
        #expect(box.backupNames().isEmpty)
    }

    @Test("allow-destructive needs both the file and the flag")
    func allowDestructive() throws {
        let box = try Sandbox(rows: 50)
        try box.write("instances/migrations/0001_close.sql", "-- allow-destructive\nUPDATE loan SET status = 'closed' WHERE id = 1;\n")
        let refused = try box.deployctl(["deploy", "prod"])
        #expect(refused.status == 64 && refused.code == "migration.destructive_refused", "\(refused.stderr)")
        let result = try box.deployctl(["deploy", "prod", "--allow-destructive"])
        #expect(result.status == 0, "\(result.stderr)")
        #expect(try box.sqlite(box.databasePath, "SELECT status FROM loan WHERE id = 1") == "closed")
    }

    @Test("a SQL error names the file and statement; nothing is applied")
    func syntaxError() throws {
        let box = try Sandbox(rows: 50)
        try box.write("instances/migrations/0001_bad.sql", "CREATE TABLE good (id INTEGER);\nCREATE TABLE bad (id INTEGER,, x);\n")
        let before = try box.sha3(box.databasePath)
        let result = try box.deployctl(["deploy", "prod"])
        #expect(result.status == 64 && result.code == "migration.sql_failed", "\(result.stderr)")
        #expect(result.stderr.contains("0001_bad.sql, statement 2"), "\(result.stderr)")
        #expect(try box.sha3(box.databasePath) == before)
    }

    @Test("duplicate numbers, a changed applied migration, and an empty folder")
    func migrationFolderProblems() throws {
        let box = try Sandbox(rows: 50)
        // Empty folder: nothing to do.
        try FileManager.default.createDirectory(atPath: box.path("instances/migrations"), withIntermediateDirectories: true)
        let empty = try box.deployctl(["deploy", "prod"])
        #expect(empty.status == 0, "\(empty.stderr)")
        #expect(empty.stdout.contains("Nothing to do"))

        try box.installCashbackMigration()
        #expect(try box.deployctl(["deploy", "prod"]).status == 0)
        try box.write("instances/migrations/0001_other.sql", "CREATE TABLE other (id INTEGER);\n")
        let duplicate = try box.deployctl(["plan", "prod"])
        #expect(duplicate.status == 64 && duplicate.code == "migration.duplicate_number", "\(duplicate.stderr)")
        #expect(duplicate.stderr.contains("share the number 0001"))
        try FileManager.default.removeItem(atPath: box.path("instances/migrations/0001_other.sql"))

        let file = box.path("instances/migrations/0001_cashback_tables.sql")
        try (try String(contentsOfFile: file, encoding: .utf8) + "\n-- edited\n").write(toFile: file, atomically: true, encoding: .utf8)
        let changed = try box.deployctl(["deploy", "prod"])
        // Bad data, as from verify and status: one exit code for a changed file.
        #expect(changed.status == 65 && changed.code == "migration.changed", "\(changed.stderr)")
        #expect(changed.stderr.contains("0001_cashback_tables.sql changed after it was applied"), "\(changed.stderr)")
        let verify = try box.deployctl(["verify", "prod"])
        #expect(verify.status == 65)
    }

    @Test("an existing table with a different shape is reported, not silently accepted")
    func shapeMismatch() throws {
        let box = try Sandbox(rows: 50)
        try box.installCashbackMigration()
        _ = try box.sqlite(box.databasePath, "CREATE TABLE tracker_entry (id INTEGER PRIMARY KEY, something_else TEXT)")
        let result = try box.deployctl(["plan", "prod"])
        #expect(result.status == 64 && result.code == "migration.table_shape_differs", "\(result.stderr)")
        #expect(result.stderr.contains("table tracker_entry already exists with a different shape than 0001_cashback_tables.sql, statement 4"), "\(result.stderr)")
    }
}
