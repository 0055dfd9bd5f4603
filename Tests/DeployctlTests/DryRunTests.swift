import Foundation
import Testing

/// Dry runs run the checks: a false `-- verify:` query is found by `plan` and `deploy
/// --dry-run` on the rehearsal copy, with the deploy's exit code; a deploy failing before it
/// migrates leaves no `pre_*` snapshot behind, retry after retry.
@Suite("dry runs")
struct DryRunTests {
    static let falseCheck = "-- verify: SELECT count(*) = 5 FROM goal\nCREATE TABLE goal (id INTEGER PRIMARY KEY, name TEXT);\n"

    @Test("a false verify query: plan, plan --json, deploy --dry-run and deploy all exit 1 naming it, before any snapshot; a true one passes")
    func falseVerifyQuery() throws {
        let box = try Sandbox(rows: 20)
        try box.write("instances/migrations/0001_goal.sql", Self.falseCheck)
        let before = try box.sha3(box.databasePath)
        let expected = "verify query of 0001_goal.sql is not true: SELECT count(*) = 5 FROM goal"
        for command in [["plan", "prod"], ["deploy", "prod", "--dry-run"], ["deploy", "prod", "--yes"], ["deploy", "prod", "--yes"]] {
            let result = try box.deployctl(command)
            #expect(result.status == 1 && result.code == "migration.verify_query_false", "\(command): \(result.stderr)")
            #expect(result.stderr.contains(expected), "\(command): \(result.stderr)")
            #expect(result.stderr.contains("Try: fix the migration or its verify query, then check again with 'deployctl plan prod'"), "\(result.stderr)")
        }
        let json = try box.deployctl(["plan", "prod", "--json"])
        #expect(json.status == 1 && json.code == "migration.verify_query_false", "\(json.stdout)")
        let document = try Sandbox.document(json)
        #expect((document["verify_failures"] as? [String]) == [expected], "\(document)")
        #expect(((document["error"] as? [String: Any])?["exit_code"] as? Int) == 1, "\(document)")
        #expect(box.backupNames().isEmpty, "a refused deploy took a snapshot: \(box.backupNames())")
        #expect(try box.sha3(box.databasePath) == before)
        #expect(try box.deployctl(["status", "prod"]).status == 0)

        try box.write("instances/migrations/0001_goal.sql", Self.falseCheck.replacingOccurrences(of: "= 5", with: "= 0"))
        #expect(try box.deployctl(["plan", "prod"]).status == 0)
        #expect(try box.deployctl(["deploy", "prod", "--yes"]).status == 0)
        #expect(try box.tables().contains("goal"))
    }

    @Test("a directive below the first statement (a verify query that would never run) is refused with 64 naming the file and line; nothing is done")
    func directiveAfterStatement() throws {
        let box = try Sandbox(rows: 20)
        try box.write("instances/migrations/0001_goal.sql", "CREATE TABLE goal (id INTEGER PRIMARY KEY, name TEXT);\n-- verify: SELECT count(*) = 5 FROM goal\n")
        let before = try box.sha3(box.databasePath)
        for command in [["plan", "prod"], ["deploy", "prod", "--yes"]] {
            let result = try box.deployctl(command)
            #expect(result.status == 64 && result.code == "migration.directive_misplaced", "\(command): \(result.stderr)")
            #expect(result.stderr.contains("0001_goal.sql line 2: '-- verify:' comes after the first statement"), "\(result.stderr)")
            #expect(result.stderr.contains("Try: move that line above the first statement of 0001_goal.sql"), "\(result.stderr)")
        }
        #expect(box.backupNames().isEmpty)
        #expect(try box.sha3(box.databasePath) == before)
    }

    @Test("a deploy failing at rehearse, twice, leaves no pre_* snapshot, the database as it was and status clean")
    func noSnapshotPerRetry() throws {
        let box = try Sandbox(rows: 20)
        try box.installCashbackMigration()
        #expect(try box.deployctl(["snapshot", "prod", "--label", "nightly"]).status == 0)
        let before = try box.sha3(box.databasePath)
        let backups = box.backupNames()
        for _ in 1...2 {
            let result = try box.deployctl(["deploy", "prod", "--yes"], environment: ["DEPLOYCTL_FAILPOINTS": "rehearse=error"])
            #expect(result.status == 1, "\(result.stderr)")
            #expect(result.stdout.contains("removed the snapshot lending_app_prod_pre_cashback_tables_"), "\(result.stdout)")
        }
        #expect(box.backupNames() == backups, "\(box.backupNames())")
        #expect(try box.sha3(box.databasePath) == before)
        #expect(try box.deployctl(["status", "prod"]).status == 0)
        // The deploy after it still snapshots and keeps its snapshot.
        #expect(try box.deployctl(["deploy", "prod", "--yes"]).status == 0)
        #expect(box.backupNames().contains { $0.contains("_pre_cashback_tables_") })
    }
}
