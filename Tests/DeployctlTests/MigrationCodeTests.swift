import Foundation
import Testing

/// Bad migration files and bad `baseline`/`accept` requests are refused with their own code and
/// exit code, naming what is wrong, and change nothing (issue 24, items 3 and 4).
@Suite("migration failure codes")
struct MigrationCodeTests {
    /// A file the migrations folder must not hold: its name, its bytes, the code, and what the
    /// message says.
    static let badFiles: [(name: String, bytes: Data, code: String, says: String)] = [
        ("R__refresh_views.sql", Data("CREATE VIEW v AS SELECT 1;\n".utf8), "migration.bad_name", "is a Flyway repeatable migration (R__)"),
        ("V2.1__add_note.sql", Data("CREATE TABLE note (id INTEGER);\n".utf8), "migration.bad_name", "has a dotted Flyway version"),
        ("add_note.sql", Data("CREATE TABLE note (id INTEGER);\n".utf8), "migration.bad_name", "is not named NNNN_name.sql"),
        ("0001_latin1.sql", Data([0x2D, 0x2D, 0x20, 0xE9, 0x0A, 0x43, 0x52, 0x45, 0x41, 0x54, 0x45, 0x20, 0x54, 0x41, 0x42, 0x4C, 0x45, 0x20, 0x6E, 0x28, 0x69, 0x64, 0x29, 0x3B, 0x0A]),
         "migration.unreadable", "cannot be read as UTF-8 text"),
        ("0001_savepoint.sql", Data("CREATE TABLE goal (id INTEGER PRIMARY KEY);\nSAVEPOINT half;\nCREATE TABLE step (id INTEGER PRIMARY KEY);\n".utf8),
         "migration.transaction_control", "0001_savepoint.sql, statement 2 controls the transaction"),
    ]

    @Test("a badly named, non-UTF-8 or transaction-controlling migration file is refused by plan and deploy with 64 and its code; nothing is changed",
          arguments: badFiles.indices)
    func badFile(index: Int) throws {
        let item = Self.badFiles[index]
        let box = try Sandbox(rows: 20)
        try FileManager.default.createDirectory(atPath: box.path("instances/migrations"), withIntermediateDirectories: true)
        try item.bytes.write(to: URL(fileURLWithPath: box.path("instances/migrations/" + item.name)))
        let before = try box.sha3(box.databasePath)
        for command in [["plan", "prod"], ["deploy", "prod", "--yes"], ["deploy", "prod", "--yes", "--json"]] {
            let result = try box.deployctl(command)
            #expect(result.status == 64 && result.code == item.code, "\(command): \(result.stdout)\(result.stderr)")
            #expect((result.stdout + result.stderr).contains(item.says), "\(command): \(result.stdout)\(result.stderr)")
        }
        #expect(try box.sha3(box.databasePath) == before)
        #expect(box.backupNames().isEmpty)
    }

    @Test("an applied migration whose file is gone is refused with 64 (migration.file_missing); baseline and accept name unknown, unapplied and unchanged migrations by code")
    func historyRequests() throws {
        let box = try Sandbox(rows: 20)
        try box.installCashbackMigration()
        try box.write("instances/migrations/0002_loan_note.sql", "ALTER TABLE loan ADD COLUMN note TEXT;\n")
        let baseline = try box.deployctl(["baseline", "prod", "--through", "7"])
        #expect(baseline.status == 64 && baseline.code == "migration.not_found" && baseline.stderr.contains("no migration numbered 7"), "\(baseline.stderr)")
        let cashback = try box.deployctl(["baseline", "prod", "--through", "1"])
        #expect(cashback.status == 65 && cashback.code == "baseline.schema_differs", "\(cashback.stderr)")
        #expect(try box.deployctl(["deploy", "prod", "--yes"]).status == 0)
        let history = try box.sqlite(box.databasePath, "SELECT id, sha256 FROM deployctl_migrations ORDER BY id")

        let unknown = try box.deployctl(["accept", "prod", "0009_nothing", "--yes"])
        #expect(unknown.status == 64 && unknown.code == "migration.not_found", "\(unknown.stderr)")
        let unchanged = try box.deployctl(["accept", "prod", "0002_loan_note", "--yes"])
        #expect(unchanged.status == 64 && unchanged.code == "accept.unchanged" && unchanged.stderr.contains("is unchanged since it was applied"), "\(unchanged.stderr)")
        try box.write("instances/migrations/0003_goal.sql", "CREATE TABLE goal (id INTEGER PRIMARY KEY);\n")
        let unapplied = try box.deployctl(["accept", "prod", "0003_goal", "--yes"])
        #expect(unapplied.status == 64 && unapplied.code == "accept.not_applied" && unapplied.stderr.contains("0003_goal is not applied to prod"), "\(unapplied.stderr)")
        #expect(try box.sqlite(box.databasePath, "SELECT id, sha256 FROM deployctl_migrations ORDER BY id") == history)

        try FileManager.default.removeItem(atPath: box.path("instances/migrations/0002_loan_note.sql"))
        let before = try box.sha3(box.databasePath)
        for command in [["plan", "prod"], ["deploy", "prod", "--yes"]] {
            let result = try box.deployctl(command)
            #expect(result.status == 64 && result.code == "migration.file_missing", "\(command): \(result.stderr)")
            #expect(result.stderr.contains("migration 0002_loan_note is applied but its file is missing"), "\(command): \(result.stderr)")
        }
        #expect(try box.sha3(box.databasePath) == before)
    }

    @Test("the safety claims read what a statement may do, not its wording: updating a column named deleted_at changes data but deletes none, and rows added to a table named dropped_item lose nothing")
    func claimsByKind() throws {
        let box = try Sandbox(rows: 20)
        _ = try box.sqlite(box.databasePath, "ALTER TABLE loan ADD COLUMN deleted_at TEXT; CREATE TABLE dropped_item (id INTEGER PRIMARY KEY, name TEXT)")
        try box.write("instances/migrations/0001_soft_delete.sql", "UPDATE loan SET deleted_at = '2026-12-01' WHERE id = 3;\n")
        let soft = try box.deployctl(["plan", "prod"])
        #expect(soft.status == 64 && soft.code == "migration.destructive_refused", "\(soft.stdout)\(soft.stderr)")
        #expect(soft.stdout.contains("✓ It does NOT delete any data: proven"), "\(soft.stdout)")
        #expect(soft.stdout.contains("✗ It does NOT change any existing data: NOT proven — loan.deleted_at: 1 existing value changed; may change existing values of loan.deleted_at"),
                "\(soft.stdout)")
        try FileManager.default.removeItem(atPath: box.path("instances/migrations/0001_soft_delete.sql"))
        try box.write("instances/migrations/0001_items.sql", "INSERT INTO dropped_item (name) VALUES ('kept');\n")
        let items = try box.deployctl(["plan", "prod"])
        #expect(items.status == 0, "\(items.stdout)\(items.stderr)")
        #expect(items.stdout.contains("✓ It does NOT delete any data: proven") && items.stdout.contains("dropped_item: 1 row added"), "\(items.stdout)")
    }
}
