import Foundation
import Testing

/// Defects issue 24 names, each with a test that fails without its fix.
@Suite("plan defects")
struct PlanDefectTests {
    @Test("a table declared WITHOUT ROWID, STRICT is planned (no 'no such column: rowid'), classified, and compared by the restore preview")
    func withoutRowidStrict() throws {
        let box = try Sandbox(rows: 30)
        _ = try box.sqlite(box.databasePath, "CREATE TABLE kv (k TEXT PRIMARY KEY, v TEXT) WITHOUT ROWID, STRICT; INSERT INTO kv VALUES ('a', '1'), ('b', '2');")
        try box.write("instances/migrations/0001_kv.sql", "-- allow-destructive\nUPDATE kv SET v = '3' WHERE k = 'a';\n")
        let result = try box.deployctl(["plan", "prod", "--allow-destructive", "--json"])
        #expect(result.status == 0, "\(result.stderr)")
        let plan = try Sandbox.document(result)
        #expect(plan["class"] as? String == "destructive", "\(plan)")
        let evidence = (plan["migrations"] as? [[String: Any]])?.first?["evidence"] as? [String] ?? []
        #expect(evidence.contains("kv.v: 1 existing value changed"), "\(evidence)")
        // The restore preview's row comparison reads the table by its key, not a rowid.
        _ = try box.takeSnapshot(gzip: false)
        _ = try box.sqlite(box.databasePath, "UPDATE kv SET v = '9' WHERE k = 'b'")
        let preview = try Sandbox.document(try box.deployctl(["restore", "prod", "--latest", "--dry-run", "--json"]))
        let kv = (preview["differences"] as? [[String: Any]])?.first { $0["table"] as? String == "kv" }
        #expect([kv?["discarded"] as? Int, kv?["restored"] as? Int] == [1, 1], "\(preview)")
    }

    @Test("the plan's copy goes into the instance's backups folder, not TMPDIR: a TMPDIR that cannot be written does not matter")
    func planCopyInInstance() throws {
        let box = try Sandbox(rows: 30)
        _ = try box.takeSnapshot(gzip: false)
        try box.write("instances/migrations/0001_add.sql", "ALTER TABLE loan ADD COLUMN c TEXT;\n")
        let result = try box.deployctl(["plan", "prod", "--json"], environment: ["TMPDIR": "/nonexistent-deployctl-tmp"])
        #expect(result.status == 0, "\(result.stderr)")
        #expect(try Sandbox.document(result)["class"] as? String == "preserving")
        // Nothing is left behind in the backups folder.
        #expect(box.allBackupFiles().allSatisfy { !$0.contains(".tmp-") }, "\(box.allBackupFiles())")
    }

    @Test("a migration that writes every existing table: claim 5 says so instead of naming no tables")
    func claimWithoutUntouchedTables() throws {
        let box = try Sandbox(rows: 30)
        _ = try box.sqlite(box.databasePath, "DROP TABLE tracker; DROP TABLE payment; DROP TABLE loan;")
        try box.write("instances/migrations/0001_add.sql", "ALTER TABLE user ADD COLUMN c TEXT;\n")
        let plan = try Sandbox.document(try box.deployctl(["plan", "prod", "--json"]))
        let claims = (plan["claims"] as? [[String: Any]] ?? []).compactMap { $0["claim"] as? String }
        #expect(claims.contains { $0.hasPrefix("No other existing table is changed") }, "\(claims)")
        #expect(!claims.contains { $0.contains("existing  remain") })
    }
}
