import Foundation
import Testing

@Suite("deploy")
struct DeployTests {
    @Test("happy path: six tables, old tables unchanged, a second run creates none", arguments: ["wal", "delete"])
    func happyPath(journalMode: String) throws {
        let box = try Sandbox(journalMode: journalMode)
        try box.installCashbackMigration()
        let old = try box.oldTableHashes()
        let first = try box.deployctl(["deploy", "prod"])
        #expect(first.status == 0, "\(first.stderr)")
        #expect(first.stdout.contains("Tables created: 6"))
        #expect(first.stdout.contains("✓ cashback_transaction created"))
        #expect(first.stdout.contains("rehearsal: 4 existing tables unchanged on the copy (4 with every page identical"), "\(first.stdout)")
        #expect(first.stdout.contains("4 existing tables proven unchanged (SQLite's preupdate hook recorded no row change"), "\(first.stdout)")
        #expect(try box.tables().filter { Sandbox.cashbackTables.contains($0) } == Sandbox.cashbackTables)
        #expect(try box.oldTableHashes() == old)
        #expect(try box.sqlite(box.databasePath, "SELECT name FROM deployctl_migrations") == "cashback_tables")
        #expect(box.backupNames().contains { $0.contains("_pre_cashback_tables_") })
        let second = try box.deployctl(["deploy", "prod"])
        #expect(second.status == 0)
        #expect(second.stdout.contains("Tables created: 0"))
        #expect(second.stdout.contains("Tables already existed: 6"))
        #expect(second.stdout.contains("tracker_entry already exists"))
        let history = try box.deployctl(["history", "prod", "--json"])
        let reports = try JSONSerialization.jsonObject(with: Data(history.stdout.utf8)) as! [[String: Any]]
        #expect(reports.count == 2)
        #expect(Set(reports.compactMap { $0["outcome"] as? String }) == ["success", "nothing to do"])
        #expect(!FileManager.default.fileExists(atPath: box.path("instances/prod/.deployctl.journal")))
    }

    @Test("an auto-vacuum database, where CREATE TABLE moves pages of old tables: fingerprints prove those")
    func autoVacuum() throws {
        let box = try Sandbox()
        _ = try box.sqlite(box.databasePath, "PRAGMA journal_mode = DELETE; PRAGMA auto_vacuum = FULL; VACUUM; PRAGMA journal_mode = WAL;")
        #expect(try box.sqlite(box.databasePath, "PRAGMA auto_vacuum") == "1")
        try box.installCashbackMigration()
        let old = try box.oldTableHashes()
        let result = try box.deployctl(["deploy", "prod"])
        #expect(result.status == 0, "\(result.stderr)")
        #expect(result.stdout.contains("rehearsal: 4 existing tables unchanged on the copy"), "\(result.stdout)")
        #expect(!result.stdout.contains("0 by equal content fingerprints"), "some old table's pages moved: \(result.stdout)")
        #expect(try box.oldTableHashes() == old)
        #expect(try box.sqlite(box.databasePath, "PRAGMA integrity_check") == "ok")
    }

    @Test("a failpoint before the commit leaves the live database exactly as it was",
          arguments: ["preflight", "after-snapshot", "rehearse", "migrate", "verify"])
    func errorBeforeCommit(failpoint: String) throws {
        let box = try Sandbox()
        try box.installCashbackMigration()
        let before = try box.sha3(box.databasePath)
        let result = try box.deployctl(["deploy", "prod"], environment: ["DEPLOYCTL_FAILPOINTS": "\(failpoint)=error"])
        #expect(result.status == 1, "\(result.stderr)")
        #expect(result.stderr.contains("failpoint '\(failpoint)'"))
        #expect(try box.sha3(box.databasePath) == before)
        #expect(!FileManager.default.fileExists(atPath: box.path("instances/prod/.deployctl.journal")))
    }

    @Test("a failure after the commit undoes the deploy: new tables gone, old tables unchanged, app started again",
          arguments: ["after-commit", "restart"])
    func errorAfterCommit(failpoint: String) throws {
        let box = try Sandbox()
        try box.installCashbackMigration()
        try box.configureHooks("""
            stop = "echo stopped >> app.log"
            start = "echo started >> app.log"
            """)
        let old = try box.oldTableHashes()
        let schema = try box.sqlite(box.databasePath, ".sha3sum --schema")
        let result = try box.deployctl(["deploy", "prod"], environment: ["DEPLOYCTL_FAILPOINTS": "\(failpoint)=error"])
        #expect(result.status == 1, "\(result.stderr)")
        #expect(result.stderr.contains("undone"))
        #expect(try box.oldTableHashes() == old)
        // The schema as before: no empty history table left by the first deploy.
        #expect(try box.tables() == ["loan", "payment", "tracker", "user"])
        #expect(try box.sqlite(box.databasePath, ".sha3sum --schema") == schema)
        #expect(try box.sqlite(box.databasePath, "SELECT count(*) FROM sqlite_schema WHERE name LIKE 'cashback%'") == "0")
        let log = try String(contentsOfFile: box.path("instances/prod/app.log"), encoding: .utf8)
        #expect(log.hasSuffix("started\n"), "app log: \(log)")
    }

    @Test("a start hook that fails after the commit and again after the undo: the deploy is undone, the app stopped before the undo, and the error says the application is not running")
    func applicationLeftDown() throws {
        let box = try Sandbox()
        try box.installCashbackMigration()
        try box.configureHooks("""
            stop = "echo stop >> app.log"
            start = "echo start >> app.log; exit 3"
            """)
        let old = try box.oldTableHashes()
        let result = try box.deployctl(["deploy", "prod", "--json"])
        #expect(result.status == 1 && result.code == "deploy.undone", "\(result.stderr)")
        #expect(result.stderr.contains("The application is not running: its start hook failed") && result.stderr.contains("start it by hand"), "\(result.stderr)")
        let document = try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any]
        #expect(document?["cause"] as? String == "hook.start_failed", "\(result.stdout)")
        #expect(try box.oldTableHashes() == old)
        let log = try String(contentsOfFile: box.path("instances/prod/app.log"), encoding: .utf8)
        #expect(log == "stop\nstart\nstop\nstart\n", "app log: \(log)")
    }

    @Test("a killed deploy is finished by the next one, nothing lost", arguments: ["after-snapshot", "migrate", "after-commit"])
    func crashRecovery(failpoint: String) throws {
        let box = try Sandbox()
        try box.installCashbackMigration()
        let old = try box.oldTableHashes()
        let crashed = try box.deployctl(["deploy", "prod"], environment: ["DEPLOYCTL_FAILPOINTS": "\(failpoint)=crash"])
        #expect(crashed.status == 9, "expected SIGKILL, got \(crashed.status): \(crashed.stderr)")
        #expect(FileManager.default.fileExists(atPath: box.path("instances/prod/.deployctl.journal")))
        let status = try box.deployctl(["status", "prod"])
        #expect(status.status == 2 && status.stdout.contains("is unfinished: the next deploy or restore finishes or undoes it"), "\(status.stdout)")
        let next = try box.deployctl(["deploy", "prod"])
        #expect(next.status == 0, "\(next.stderr)")
        #expect(next.stdout.contains("recovered:"))
        #expect(next.stdout.contains("crashed or was killed"))
        #expect(try box.oldTableHashes() == old)
        #expect(try box.tables().filter { Sandbox.cashbackTables.contains($0) } == Sandbox.cashbackTables)
        #expect(try box.sqlite(box.databasePath, "PRAGMA integrity_check") == "ok")
        #expect(!FileManager.default.fileExists(atPath: box.path("instances/prod/.deployctl.journal")))
    }

    @Test("another process holding a write transaction: 75 naming its PID, nothing changed")
    func writeLockHeld() throws {
        let box = try Sandbox()
        try box.installCashbackMigration()
        // A reader (a read-only server) beside the writer: only the writer is the lock holder.
        let reader = Process()
        reader.executableURL = URL(fileURLWithPath: "/usr/bin/python3")
        reader.arguments = ["-c", """
            import sqlite3, time
            db = sqlite3.connect('\(box.databasePath)', isolation_level=None)
            db.execute('BEGIN')
            db.execute('SELECT count(*) FROM user').fetchall()
            print('reading', flush=True)
            time.sleep(8)
            """]
        let out = Pipe()
        reader.standardOutput = out
        try reader.run()
        defer { reader.terminate(); reader.waitUntilExit() }
        _ = out.fileHandleForReading.availableData
        let holder = try box.holdWriteLock()
        defer { holder.terminate(); holder.waitUntilExit() }
        let result = try box.deployctl(["deploy", "prod"])
        #expect(result.status == 75 && result.code == "lock.database_busy", "\(result.stderr)")
        #expect(result.stderr.contains("locked for writing by PID \(holder.processIdentifier) ("), "\(result.stderr)")
        #expect(result.stderr.contains("also open in") && result.stderr.contains("PID \(reader.processIdentifier) (") , "\(result.stderr)")
        holder.terminate()
        holder.waitUntilExit()
        #expect(!(try box.tables().contains("cashback_transaction")))
    }

    @Test("two deploys at once: one waits at a delay failpoint, the other exits 75")
    func twoDeploys() throws {
        let box = try Sandbox(rows: 50)
        try box.installCashbackMigration()
        let first = try box.spawnDeployctl(["deploy", "prod"], environment: ["DEPLOYCTL_FAILPOINTS": "after-snapshot=delay:3000"])
        let lockFile = box.path("instances/prod/.deployctl.lock")
        for _ in 0..<100 where !((try? String(contentsOfFile: lockFile, encoding: .utf8)) ?? "").contains("\(first.processIdentifier)") {
            Thread.sleep(forTimeInterval: 0.05)
        }
        let second = try box.deployctl(["deploy", "prod"])
        #expect(second.status == 75 && second.code == "lock.held", "\(second.stderr)")
        #expect(second.stderr.contains("PID \(first.processIdentifier)"))
        first.waitUntilExit()
        #expect(first.terminationStatus == 0)
    }

    @Test("a failing health check while the app writes to old tables keeps those writes and drops the new tables")
    func healthFailsKeepsWrites() throws {
        let box = try Sandbox()
        try box.installCashbackMigration()
        let db = box.databasePath
        // The "app": started by the start hook in the background; writes to payment every 20 ms.
        try box.write("instances/prod/app.py", """
            import sqlite3, time
            db = sqlite3.connect('\(db)', timeout=5, isolation_level=None)
            for i in range(100):
                db.execute('INSERT INTO payment (loan_id, amount_cents) VALUES (1, ?)', (i,))
                time.sleep(0.02)
            """)
        try box.configureHooks("""
            start = "python3 app.py > app.out 2>&1 &"
            health = "sleep 1; exit 1"
            health_attempts = 2
            timeout_seconds = 10
            """)
        let paymentsBefore = Int(try box.sqlite(db, "SELECT count(*) FROM payment"))!
        let result = try box.deployctl(["deploy", "prod"])
        #expect(result.status == 1, "\(result.stderr)")
        Thread.sleep(forTimeInterval: 2.5)
        let paymentsAfter = Int(try box.sqlite(db, "SELECT count(*) FROM payment"))!
        #expect(paymentsAfter > paymentsBefore, "the app's writes were lost")
        #expect(try box.sqlite(db, "SELECT count(*) FROM sqlite_schema WHERE name LIKE 'cashback%'") == "0")
    }

    @Test("deploy all stops at a failing testing and leaves prod untouched; promotion refuses prod alone")
    func deployAllAndPromotion() throws {
        let box = try Sandbox()
        try box.installCashbackMigration()
        try box.addInstance("dev")
        try box.addInstance("testing")
        try box.write("instances/deploy.toml", "order = [\"dev\", \"testing\", \"prod\"]\n")
        let prodBefore = try box.sha3(box.databasePath)
        let promotion = try box.deployctl(["deploy", "prod"])
        #expect(promotion.status == 1, "\(promotion.stderr)")
        #expect(promotion.stderr.contains("promotion refused: dev"))
        #expect(try box.sha3(box.databasePath) == prodBefore)

        let testingDB = box.path("instances/testing/database/lending_app_testing.db")
        try FileManager.default.removeItem(atPath: testingDB)
        try Data(repeating: 7, count: 4096).write(to: URL(fileURLWithPath: testingDB))
        let all = try box.deployctl(["deploy", "all"])
        #expect(all.status == 65, "\(all.stderr)")
        #expect(try box.tables(box.path("instances/dev/database/lending_app_dev.db")).contains("cashback_transaction"))
        #expect(try box.sha3(box.databasePath) == prodBefore)
    }

    @Test("dry run leaves the database byte-identical and runs no hook")
    func dryRun() throws {
        let box = try Sandbox()
        try box.installCashbackMigration()
        try box.configureHooks("""
            stop = "touch stop-ran"
            start = "touch start-ran"
            """)
        let bytes = try Data(contentsOf: URL(fileURLWithPath: box.databasePath))
        let result = try box.deployctl(["deploy", "prod", "--dry-run"])
        #expect(result.status == 0, "\(result.stderr)")
        #expect(try Data(contentsOf: URL(fileURLWithPath: box.databasePath)) == bytes)
        #expect(!FileManager.default.fileExists(atPath: box.path("instances/prod/stop-ran")))
        #expect(!FileManager.default.fileExists(atPath: box.path("instances/prod/.deployctl.lock")))
        #expect(box.backupNames().isEmpty)
    }

    @Test("SIGTERM, and SIGHUP (a dropped SSH session), during a deploy are handled like an error at the current stage", arguments: [SIGTERM, SIGHUP])
    func sigterm(signal: Int32) throws {
        let box = try Sandbox(rows: 50)
        try box.installCashbackMigration()
        let before = try box.sha3(box.databasePath)
        let err = Pipe()
        let process = try box.spawnDeployctl(["deploy", "prod"], environment: ["DEPLOYCTL_FAILPOINTS": "after-snapshot=delay:2000"], stderr: err)
        let journal = box.path("instances/prod/.deployctl.journal")
        for _ in 0..<100 where !((try? String(contentsOfFile: journal, encoding: .utf8)) ?? "").contains("\"snapshot\" : \"") {
            Thread.sleep(forTimeInterval: 0.05)
        }
        kill(process.processIdentifier, signal)
        process.waitUntilExit()
        let stderr = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        #expect(process.terminationStatus == 1, "\(stderr)")
        #expect(stderr.contains("interrupted by signal \(signal == SIGHUP ? "SIGHUP" : "SIGTERM")"), "\(stderr)")
        let report = try #require(try FileManager.default.contentsOfDirectory(atPath: box.path("instances/prod/deploys")).first { $0.hasSuffix(".json") })
        #expect(try String(contentsOfFile: box.path("instances/prod/deploys/" + report), encoding: .utf8).contains("interrupted by signal"))
        #expect(try box.deployctl(["status", "prod"]).status == 0)
        #expect(try box.sha3(box.databasePath) == before)
        #expect(!FileManager.default.fileExists(atPath: journal))
    }

    /// A statement that counts to `steps` only where the main database's file name matches
    /// `pattern`: slow on one of the live database, the plan's copy and the rehearsal's copy.
    static func slowStatement(where pattern: String, steps: Int = 400_000_000) -> String {
        """
        CREATE TABLE slow_result (n INTEGER);
        INSERT INTO slow_result SELECT count(*) FROM (WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n
            WHERE i < (SELECT CASE WHEN file LIKE '\(pattern)' THEN \(steps) ELSE 1 END FROM pragma_database_list WHERE name = 'main'))
            SELECT i FROM n);

        """
    }

    @Test("a signal during a long statement stops it within seconds (SQLite's progress handler), not when it ends: the migration on the live database rolls back, the plan's copy is left; exit 1, nothing changed",
          arguments: [("%lending_app_prod.db", "migrate and verify", SIGTERM), ("%lending_app_prod.db", "migrate and verify", SIGHUP),
                      ("%-plan.db", "", SIGINT)])
    func signalStopsStatement(pattern: String, stage: String, signal: Int32) throws {
        let box = try Sandbox(rows: 50)
        try box.write("instances/migrations/0001_slow.sql", Self.slowStatement(where: pattern))
        let before = try box.sha3(box.databasePath)
        let err = Pipe()
        let process = try box.spawnDeployctl(["deploy", "prod"], environment: [:], stderr: err)
        if stage.isEmpty { Thread.sleep(forTimeInterval: 1.5) } else {
            box.waitForJournal(stage)
            Thread.sleep(forTimeInterval: 0.5)
        }
        let sent = Date()
        kill(process.processIdentifier, signal)
        process.waitUntilExit()
        let took = Date().timeIntervalSince(sent)
        let stderr = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        #expect(process.terminationStatus == 1, "\(stderr)")
        // Counting to 400M takes SQLite over a minute here; stopped at once, it ends in well under one.
        #expect(took < 20, "the statement ran on after the signal: \(took) s")
        #expect(stderr.contains("interrupted by signal"), "\(stderr)")
        #expect(stderr.contains(stage.isEmpty ? "the plan on a copy was stopped" : "the running statement was stopped and the migration rolled back"), "\(stderr)")
        #expect(try box.sha3(box.databasePath) == before)
        #expect(try box.sqlite(box.databasePath, "SELECT count(*) FROM sqlite_schema WHERE name IN ('slow_result', 'deployctl_migrations')") == "0")
        #expect(!FileManager.default.fileExists(atPath: box.path("instances/prod/.deployctl.journal")))
        #expect(try box.deployctl(["status", "prod"]).status == 0)
    }
}
