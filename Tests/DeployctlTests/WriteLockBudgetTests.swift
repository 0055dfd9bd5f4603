import Foundation
import Testing

/// Deploys of large rebuilds: the plan's write-lock estimate counts the checks done inside the
/// transaction, and a deploy estimated past `max_write_lock` is refused before its snapshot.
@Suite("write-lock budget")
struct WriteLockBudgetTests {
    static let rebuild = """
        CREATE TABLE new_payment (id INTEGER PRIMARY KEY, loan_id INTEGER NOT NULL REFERENCES loan(id), amount_cents INTEGER, note BLOB,
            currency TEXT NOT NULL DEFAULT 'EUR');
        INSERT INTO new_payment (id, loan_id, amount_cents, note) SELECT id, loan_id, amount_cents, note FROM payment;
        DROP TABLE payment;
        ALTER TABLE new_payment RENAME TO payment;
        CREATE INDEX payment_loan ON payment(loan_id);

        """

    static func config(_ extra: String) -> String {
        """
        [database]
        path = "database/lending_app_prod.db"
        busy_timeout_ms = 2000
        \(extra)
        [backups]
        path = "backups"
        gzip = false
        """
    }

    @Test("the plan's estimate is the statements plus the checks measured on its copy, and the rebuild of 90,000 rows deploys with its proof")
    func estimateCountsChecks() throws {
        let box = try Sandbox(rows: 30_000)
        try box.write("instances/migrations/0001_payment_currency.sql", Self.rebuild)
        let plan = try Sandbox.document(try box.deployctl(["plan", "prod", "--json"]))
        let statements = try #require(plan["statement_ms"] as? Double)
        let checks = try #require(plan["check_ms"] as? Double)
        let estimate = try #require(plan["write_lock_estimate_ms"] as? Double)
        #expect(checks > 0, "a rebuilt table's fingerprint and quick_check are timed on the copy")
        #expect(abs(estimate - (statements + checks)) < 0.01)
        let human = try box.deployctl(["plan", "prod"])
        #expect(human.stdout.contains("Writes blocked during the deploy: about "), "\(human.stdout)")
        #expect(human.stdout.contains("checks inside the transaction"), "\(human.stdout)")
        let deploy = try box.deployctl(["deploy", "prod", "--json"])
        #expect(deploy.status == 0, "\(deploy.stderr)")
        let report = try Sandbox.document(deploy)
        #expect((report["write_lock_ms"] as? Double ?? 0) > 0)
        let kept = try box.sqlite(box.databasePath, "SELECT count(*), sum(amount_cents), count(DISTINCT currency) FROM payment")
        #expect(kept == "90000|\((1...90_000).reduce(0) { $0 + $1 * 10 })|1")
    }

    @Test("a deploy estimated past max_write_lock_ms that cannot run online (a rollback-journal database) is refused before its snapshot with the estimate, the budget, why not online and what to do; nothing changes")
    func refusedOverBudget() throws {
        let box = try Sandbox(journalMode: "delete", rows: 3_000, config: Self.config("max_write_lock_ms = 1"))
        try box.write("instances/migrations/0001_payment_currency.sql", Self.rebuild)
        let before = try box.sha3(box.databasePath)
        for arguments in [["deploy", "prod"], ["deploy", "prod", "--dry-run"]] {
            let result = try box.deployctl(arguments)
            #expect(result.status == 64 && result.code == "migration.write_lock_over_budget", "\(arguments): \(result.stdout)\(result.stderr)")
            #expect(result.stderr.contains("refused: the deploy would block the application's writes for about"), "\(result.stderr)")
            #expect(result.stderr.contains("more than max_write_lock allows (1 ms; busy timeout 2000 ms), and it cannot run online: the database is in delete journal mode"), "\(result.stderr)")
            #expect(result.stderr.contains("; nothing was changed"), "\(result.stderr)")
            #expect(result.stderr.contains("Try: stop the application during the deploy (hooks.stop and hooks.start in"), "\(result.stderr)")
            #expect(result.stdout.contains("Writes blocked during the deploy: about"), "the refusal shows the plan it quotes: \(result.stdout)")
        }
        #expect(try box.sha3(box.databasePath) == before)
        #expect(box.backupNames().isEmpty, "no snapshot was taken")
        #expect(try box.sqlite(box.databasePath, "SELECT count(*) FROM sqlite_schema WHERE name = 'deployctl_migrations'") == "0")
        #expect(!FileManager.default.fileExists(atPath: box.path("instances/prod/.deployctl.journal")))
    }

    @Test("with a stop hook the application's writes are not blocked but stopped: the budget does not apply")
    func stopHookLiftsBudget() throws {
        let box = try Sandbox(rows: 3_000, config: Self.config("max_write_lock_ms = 1") + "\n[hooks]\nstop = \"true\"\nstart = \"true\"\n")
        try box.write("instances/migrations/0001_payment_currency.sql", Self.rebuild)
        let result = try box.deployctl(["deploy", "prod"])
        #expect(result.status == 0, "\(result.stdout)\(result.stderr)")
        #expect(try box.sqlite(box.databasePath, "SELECT count(*) FROM payment WHERE currency = 'EUR'") == "9000")
    }

    @Test("max_write_lock_ms out of range or not a number names the file, line and key")
    func badBudget() throws {
        for value in ["0", "\"fast\""] {
            let box = try Sandbox(rows: 10, config: Self.config("max_write_lock_ms = \(value)"))
            let result = try box.deployctl(["plan", "prod"])
            #expect(result.status == 64, "\(value): \(result.stderr)")
            #expect(result.stderr.contains("instance.toml:4") && result.stderr.contains("database.max_write_lock_ms"), "\(result.stderr)")
        }
    }
}
