import Foundation
import Testing

/// Online table rebuilds: a 12-step rebuild of `user` while the application (a second process)
/// writes to it, compared with the same migration run offline by the sqlite3 CLI; the cases that
/// cannot run online, crashes, interrupts and a proof that fails.
@Suite("online rebuild")
struct OnlineRebuildTests {
    static let rebuild = """
        -- online
        PRAGMA foreign_keys=OFF;
        CREATE TABLE new_user (
            id INTEGER PRIMARY KEY,
            name TEXT NOT NULL,
            email TEXT NOT NULL UNIQUE,
            tier TEXT NOT NULL DEFAULT 'basic'
        );
        INSERT INTO new_user (id, name, email) SELECT id, name, email FROM user;
        DROP TABLE user;
        ALTER TABLE new_user RENAME TO user;
        CREATE INDEX user_name ON user(name);
        PRAGMA foreign_keys=ON;

        """

    /// A sandbox whose `user` table has an index of the name the migration recreates.
    static func box(rows: Int = 3_000, journalMode: String = "wal", migration: String = rebuild, config: String? = nil) throws -> Sandbox {
        let box = try Sandbox(journalMode: journalMode, rows: rows, config: config)
        _ = try box.sqlite(box.databasePath, "CREATE INDEX user_name ON user(name)")
        try box.write("instances/migrations/0001_user_tier.sql", migration)
        return box
    }

    /// Waits (at most 30 s) until an online rebuild's set-up has committed: its log exists.
    static func waitForShadow(_ box: Sandbox) {
        let deadline = Date().addingTimeInterval(30)
        while Date() < deadline, (try? box.sqlite(box.databasePath, "SELECT count(*) FROM sqlite_schema WHERE name = '_deployctl_online_log'")) != "1" {
            Thread.sleep(forTimeInterval: 0.05)
        }
    }

    /// Runs `deploy prod` held at `failpoint` (a delay), and `action` once the rebuild's set-up
    /// has committed and `after` seconds passed: the application acting in that window.
    static func deploy(_ box: Sandbox, heldAt failpoint: String, after: TimeInterval, _ action: () throws -> Void) throws -> (status: Int32, stderr: String) {
        let err = Pipe()
        let process = try box.spawnDeployctl(["deploy", "prod"], environment: ["DEPLOYCTL_FAILPOINTS": failpoint], stderr: err)
        waitForShadow(box)
        Thread.sleep(forTimeInterval: after)
        try action()
        process.waitUntilExit()
        return (process.terminationStatus, String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self))
    }

    /// The failure code a deploy run with `deploy(_:heldAt:after:_:)` printed.
    static func code(_ stderr: String) -> String? { Sandbox.Result(status: 1, stdout: "", stderr: stderr).code }

    /// The schema without deployctl's history table, and the original users, as the CLI prints them.
    static func schema(_ box: Sandbox, _ db: String) throws -> String {
        try box.sqlite(db, "SELECT type, name, tbl_name, sql FROM sqlite_schema WHERE name NOT LIKE 'deployctl%' ORDER BY name")
    }

    @Test("a rebuild deploys online while the application writes to the table: every acknowledged write kept, the schema byte for byte and the rows equal to the sqlite3 CLI's offline result, nothing of the rebuild left")
    func underWriter() throws {
        let box = try Self.box(rows: 20_000)
        let expected = box.path("expected.db")
        _ = try box.sqlite(box.databasePath, "VACUUM INTO '\(expected)'")
        #expect(try Sandbox.exec("/usr/bin/sqlite3", [expected], input: Self.rebuild).status == 0)
        let writer = try ApplicationWriter(box)
        writer.waitFor(commits: 20)
        let deploy = try box.deployctl(["deploy", "prod"], environment: ["DEPLOYCTL_FAILPOINTS": "online-copy=delay:1500"])
        let committed = writer.stop()
        #expect(deploy.status == 0, "\(deploy.stdout)\(deploy.stderr)")
        #expect(deploy.stdout.contains("online: user is rebuilt while the application writes"), "\(deploy.stdout)")
        #expect(deploy.stdout.contains("the cut-over held the write lock"), "\(deploy.stdout)")
        #expect(deploy.stdout.contains("20000 rows of user equal, column for column") || deploy.stdout.contains("rows of user equal, column for column"), "\(deploy.stdout)")
        let written = try box.applicationIds(box.databasePath)
        #expect(committed.count > 100, "the application kept writing during the deploy: \(committed.count) commits")
        #expect(Set(committed).isSubset(of: written), "acknowledged writes lost: \(Set(committed).subtracting(written).count)")
        #expect(try box.sqlite(box.databasePath, "SELECT count(*) FROM user WHERE id >= 1000000 AND tier <> 'basic'") == "0")
        #expect(try Self.schema(box, box.databasePath) == Self.schema(box, expected))
        let original = "SELECT id, name, email, tier FROM user WHERE id < 1000000 ORDER BY id"
        #expect(try box.sqlite(box.databasePath, original) == box.sqlite(expected, original))
        #expect(try box.sqlite(box.databasePath, "PRAGMA integrity_check") == "ok")
        #expect(try box.sqlite(box.databasePath, "PRAGMA foreign_key_check").isEmpty)
        #expect(try box.sqlite(box.databasePath, "SELECT count(*) FROM sqlite_schema WHERE name LIKE '%deployctl_online%' OR name = 'new_user'") == "0")
        #expect(try box.deployctl(["status", "prod"]).status == 0)
    }

    @Test("what cannot run online is refused when --online asks for it, with the reason; nothing changes",
          arguments: ["rollback journal", "computed values", "trigger", "cascade", "not a rebuild", "unique collation", "own cascade"])
    func notOnline(reason: String) throws {
        var migration = Self.rebuild
        switch reason {
        case "computed values": migration = migration.replacingOccurrences(of: "SELECT id, name, email FROM user", with: "SELECT id, name || '', email FROM user")
        case "not a rebuild": migration = "ALTER TABLE user ADD COLUMN tier TEXT;\n"
        case "unique collation": migration = migration.replacingOccurrences(of: "email TEXT NOT NULL UNIQUE", with: "email TEXT NOT NULL UNIQUE COLLATE NOCASE")
        case "own cascade": migration = migration.replacingOccurrences(of: "tier TEXT NOT NULL DEFAULT 'basic'", with: "tier TEXT NOT NULL DEFAULT 'basic',\n    loan_id INTEGER REFERENCES loan(id) ON DELETE SET NULL")
        default: break
        }
        let box = try Self.box(journalMode: reason == "rollback journal" ? "delete" : "wal", migration: migration)
        if reason == "trigger" { _ = try box.sqlite(box.databasePath, "CREATE TABLE audit (n); CREATE TRIGGER user_audit AFTER INSERT ON user BEGIN INSERT INTO audit VALUES (NEW.id); END;") }
        if reason == "cascade" { _ = try box.sqlite(box.databasePath, "CREATE TABLE note (id INTEGER PRIMARY KEY, user_id INTEGER REFERENCES user(id) ON DELETE CASCADE)") }
        let before = try box.sha3(box.databasePath)
        let result = try box.deployctl(["deploy", "prod", "--online"])
        let why = [
            "rollback journal": "the database is in delete journal mode; an online rebuild needs WAL",
            "computed values": "computes values (id, name || '', email), so the rebuild also changes rows",
            "trigger": "the application's triggers on user (user_audit) would fire for the copy's rows",
            "cascade": "foreign keys with ON DELETE/UPDATE actions point at user (note.user_id)",
            "not a rebuild": "0001_user_tier is not a table rebuild of the 12-step shape",
            "unique collation": "the rebuild adds a UNIQUE constraint on email (NOCASE) that user does not have with that collation",
            "own cascade": "the rebuilt user has foreign keys with ON DELETE/UPDATE actions (loan_id → loan)",
        ][reason]!
        #expect(result.status == 64 && result.code == "deploy.online_refused", "\(result.stdout)\(result.stderr)")
        #expect(result.stderr.contains("refused: an online rebuild was asked for, but"), "\(result.stderr)")
        #expect(result.stderr.contains(why), "\(result.stderr)")
        #expect(result.stderr.contains("Try: deploy without --online"), "\(result.stderr)")
        #expect(try box.sha3(box.databasePath) == before)
        #expect(box.backupNames().isEmpty)
    }

    @Test("over max_write_lock, a rebuild that can run online does so without being asked; one that cannot is refused with the reason")
    func overBudget() throws {
        let config = "[database]\npath = \"database/lending_app_prod.db\"\nbusy_timeout_ms = 2000\nmax_write_lock_ms = 1\n[backups]\npath = \"backups\"\n"
        let migration = Self.rebuild.replacingOccurrences(of: "-- online\n", with: "")
        let box = try Self.box(migration: migration, config: config)
        // The plan says how the deploy will run it.
        let plan = try box.deployctl(["plan", "prod"])
        #expect(plan.stdout.contains("Deploy: online — user is rebuilt while the application writes"), "\(plan.stdout)")
        #expect((try Sandbox.document(try box.deployctl(["plan", "prod", "--json"]))["deploy"] as? [String: Any])?["mode"] as? String == "online")
        let result = try box.deployctl(["deploy", "prod"])
        #expect(result.status == 0, "\(result.stdout)\(result.stderr)")
        #expect(result.stdout.contains("the one-transaction deploy would block writes past max_write_lock"), "\(result.stdout)")
        #expect(try box.sqlite(box.databasePath, "SELECT count(*) FROM user WHERE tier = 'basic'") == "3000")

        let refused = try Self.box(journalMode: "delete", migration: migration, config: config)
        let before = try refused.sha3(refused.databasePath)
        let planned = try Sandbox.document(try refused.deployctl(["plan", "prod", "--json"]))["deploy"] as? [String: Any]
        #expect(planned?["mode"] as? String == "refused", "\(String(describing: planned))")
        #expect((planned?["reason"] as? String)?.contains("it cannot run online: the database is in delete journal mode") == true, "\(String(describing: planned))")
        // Within the budget, one transaction.
        let small = try Self.box(migration: migration)
        #expect(try small.deployctl(["plan", "prod"]).stdout.contains("Deploy: in one transaction (about "))
        let again = try refused.deployctl(["deploy", "prod"])
        #expect(again.status == 64 && again.code == "migration.write_lock_over_budget", "\(again.stderr)")
        #expect(again.stderr.contains("more than max_write_lock allows (1 ms; busy timeout 2000 ms), and it cannot run online: the database is in delete journal mode"), "\(again.stderr)")
        #expect(try refused.sha3(refused.databasePath) == before)
    }

    @Test("a deploy killed during the copy leaves the live table intact; the next deploy removes the shadow table and triggers first, then deploys",
          arguments: ["online-copy", "cut-over"])
    func killed(failpoint: String) throws {
        let box = try Self.box()
        let users = try box.sqlite(box.databasePath, ".sha3sum user")
        let process = try box.spawnDeployctl(["deploy", "prod"], environment: ["DEPLOYCTL_FAILPOINTS": "\(failpoint)=delay:8000"])
        let deadline = Date().addingTimeInterval(30)
        // The shadow table exists once the set-up committed; the failpoint holds the run there.
        while Date() < deadline, (try? box.sqlite(box.databasePath, "SELECT count(*) FROM sqlite_schema WHERE name = '_deployctl_online_log'")) != "1" {
            Thread.sleep(forTimeInterval: 0.05)
        }
        Thread.sleep(forTimeInterval: 0.5)
        kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
        #expect(try box.sqlite(box.databasePath, ".sha3sum user") == users, "the live table is as it was")
        #expect(try box.sqlite(box.databasePath, "SELECT count(*) FROM sqlite_schema WHERE name = 'new_user'") == "1", "the shadow is left by the kill")
        let next = try box.deployctl(["deploy", "prod"])
        #expect(next.status == 0, "\(next.stdout)\(next.stderr)")
        #expect(next.stdout.contains("the shadow table new_user, triggers and log of an online rebuild of user that did not cut over were removed"), "\(next.stdout)")
        #expect(try box.sqlite(box.databasePath, "SELECT count(*) FROM user WHERE tier = 'basic'") == "3000")
        #expect(try box.sqlite(box.databasePath, "SELECT count(*) FROM sqlite_schema WHERE name LIKE '%deployctl_online%' OR name = 'new_user'") == "0")
        #expect(try box.sqlite(box.databasePath, "PRAGMA integrity_check") == "ok")
    }

    @Test("SIGTERM during the copy, or an error at the cut-over: exit 1, the shadow table and triggers removed at once, the table as it was",
          arguments: ["signal", "error"])
    func stoppedBeforeCutOver(how: String) throws {
        let box = try Self.box()
        let before = try box.sha3(box.databasePath)
        let result: (status: Int32, stderr: String)
        if how == "signal" {
            let err = Pipe()
            let process = try box.spawnDeployctl(["deploy", "prod"], environment: ["DEPLOYCTL_FAILPOINTS": "online-copy=delay:3000"], stderr: err)
            Self.waitForShadow(box)
            kill(process.processIdentifier, SIGTERM)
            process.waitUntilExit()
            result = (process.terminationStatus, String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self))
        } else {
            let run = try box.deployctl(["deploy", "prod"], environment: ["DEPLOYCTL_FAILPOINTS": "cut-over=error"])
            result = (run.status, run.stderr)
        }
        #expect(result.status == 1, "\(result.stderr)")
        #expect(result.stderr.contains(how == "signal" ? "the online rebuild stopped before its cut-over; its shadow table and triggers were removed" : "failpoint 'cut-over'"), "\(result.stderr)")
        #expect(try box.sha3(box.databasePath) == before)
        #expect(try box.sqlite(box.databasePath, "SELECT count(*) FROM sqlite_schema WHERE name LIKE '%deployctl_online%' OR name = 'new_user'") == "0")
    }

    @Test("the proof fails when the new table does not hold the old one's rows (a row of the shadow changed behind the triggers): the rebuild stops before its cut-over, the table as it was")
    func proofFails() throws {
        let box = try Self.box()
        let before = try box.sha3(box.databasePath)
        // The first batches are copied, then the failpoint holds the copy.
        let (status, stderr) = try Self.deploy(box, heldAt: "online-copy=delay:2000", after: 0.5) {
            // Written straight into the shadow, where no trigger logs it: only the proof can see it.
            _ = try box.sqlite(box.databasePath, "PRAGMA busy_timeout = 5000; UPDATE new_user SET name = 'tampered' WHERE id = 5")
        }
        #expect(status == 1 && Self.code(stderr) == "online.proof_failed", "\(stderr)")
        #expect(stderr.contains("the online rebuild's proof failed: new_user held other values than user, so the rebuild stopped before cutting over; user is as it was"), "\(stderr)")
        #expect(try box.sha3(box.databasePath) == before)
        #expect(try box.sqlite(box.databasePath, "SELECT count(*) FROM sqlite_schema WHERE name LIKE '%deployctl_online%' OR name = 'new_user'") == "0")
    }

    @Test("the application's own conflict clauses during the copy: INSERT OR REPLACE deleting rows by a UNIQUE value (no DELETE trigger fires) brings none back; UPDATE OR ABORT never fails because of the rebuild",
          arguments: ["replace", "update or abort"])
    func conflictClauses(mode: String) throws {
        // Without UNIQUE in the new table, a row REPLACE deleted would come back as a duplicate.
        let migration = Self.rebuild.replacingOccurrences(of: "email TEXT NOT NULL UNIQUE", with: "email TEXT NOT NULL")
        let box = try Self.box(migration: migration)
        let log = box.path("conflicts.log")
        let writer = Process()
        writer.executableURL = URL(fileURLWithPath: "/usr/bin/python3")
        writer.arguments = ["-c", """
            import os, sqlite3, time
            db = sqlite3.connect('\(box.databasePath)', timeout=30, isolation_level=None)
            ok, failed, i, seen = 0, [], 0, False
            end = time.time() + 30
            while not os.path.exists('\(box.path("conflicts.stop"))') and time.time() < end:
                i += 1
                try:
                    # Inside the write lock: once the cut-over committed (the new table, without
                    # UNIQUE, is in place) the application stops, so what is checked is the cut-over's.
                    db.execute('BEGIN IMMEDIATE')
                    shadow = db.execute("SELECT count(*) FROM sqlite_schema WHERE name = 'new_user'").fetchone()[0] == 1
                    if seen and not shadow:
                        db.execute('ROLLBACK')
                        break
                    seen = seen or shadow
                    if '\(mode)' == 'replace':
                        db.execute("INSERT OR REPLACE INTO user (id, name, email) VALUES (?, 'r', ?)", (2000000 + i, 'u%d@example.com' % (1 + (i * 7) % 3000)))
                    else:
                        db.execute("UPDATE OR ABORT user SET name = ? WHERE id = ?", ('n%d' % i, 1 + i % 40))
                    db.execute('COMMIT')
                    ok += 1
                except sqlite3.Error as e:
                    failed.append(str(e))
                    if db.in_transaction: db.execute('ROLLBACK')
                time.sleep(0.002)
            open('\(log)', 'w').write('%d\\n%s' % (ok, '\\n'.join(failed)))
            """]
        try writer.run()
        Thread.sleep(forTimeInterval: 0.3)
        let deploy = try box.deployctl(["deploy", "prod"], environment: ["DEPLOYCTL_FAILPOINTS": "online-copy=delay:1500"])
        _ = FileManager.default.createFile(atPath: box.path("conflicts.stop"), contents: nil)
        writer.waitUntilExit()
        let lines = try String(contentsOfFile: log, encoding: .utf8).split(separator: "\n", omittingEmptySubsequences: false)
        #expect(deploy.status == 0, "\(deploy.stdout)\(deploy.stderr)")
        #expect((Int(lines.first ?? "") ?? 0) > 100, "the application kept writing: \(lines.first ?? "")")
        let failures = lines.dropFirst().filter { !$0.isEmpty }
        #expect(failures.isEmpty, "application writes failed: \(failures.prefix(3))")
        #expect(try box.sqlite(box.databasePath, "SELECT count(*) - count(DISTINCT email) FROM user") == "0", "rows REPLACE deleted came back")
        #expect(try box.sqlite(box.databasePath, "PRAGMA integrity_check") == "ok")
    }

    @Test("an index whose text holds what whitespace folding would change (two spaces in a literal) is built with its exact definition: integrity_check passes, the schema is the CLI's")
    func exactIndexText() throws {
        let migration = Self.rebuild.replacingOccurrences(of: "CREATE INDEX user_name ON user(name);", with: "CREATE INDEX user_name ON user(name);\nCREATE INDEX user_tagged ON user(name || '  x') WHERE email <> 'a  b';")
        let box = try Self.box(migration: migration)
        let expected = box.path("expected.db")
        _ = try box.sqlite(box.databasePath, "VACUUM INTO '\(expected)'")
        #expect(try Sandbox.exec("/usr/bin/sqlite3", [expected], input: migration).status == 0)
        let deploy = try box.deployctl(["deploy", "prod"])
        #expect(deploy.status == 0, "\(deploy.stdout)\(deploy.stderr)")
        #expect(try box.sqlite(box.databasePath, "PRAGMA integrity_check") == "ok")
        #expect(try Self.schema(box, box.databasePath) == Self.schema(box, expected))
        #expect(try box.sqlite(box.databasePath, "SELECT count(*) FROM user WHERE name || '  x' = 'User 7  x' AND email <> 'a  b'") == "1")
    }

    @Test("--online with nothing pending exits 0 like any deploy with nothing to do")
    func nothingPending() throws {
        let box = try Self.box()
        #expect(try box.deployctl(["deploy", "prod"]).status == 0)
        let again = try box.deployctl(["deploy", "prod", "--online"])
        #expect(again.status == 0 && again.stdout.contains("Nothing to do"), "\(again.stdout)\(again.stderr)")
    }

    @Test("an application that leaves no gap for a batch: the copy gives up after online_lock_wait_seconds (75), says its leftovers could not be removed while the lock is held, and the next deploy removes them and deploys")
    func noGap() throws {
        let config = "[database]\npath = \"database/lending_app_prod.db\"\nbusy_timeout_ms = 1000\nonline_lock_wait_seconds = 1\n[backups]\npath = \"backups\"\n"
        let box = try Self.box(config: config)
        let users = try box.sqlite(box.databasePath, ".sha3sum user")
        let err = Pipe()
        let process = try box.spawnDeployctl(["deploy", "prod"], environment: ["DEPLOYCTL_FAILPOINTS": "online-copy=delay:1500"], stderr: err)
        Self.waitForShadow(box)
        let holder = try box.holdWriteLock(seconds: 5)
        process.waitUntilExit()
        let stderr = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        // The clean-up that could not run either keeps the lock timeout's code.
        #expect(process.terminationStatus == 75 && Self.code(stderr) == "online.lock_timeout", "\(stderr)")
        #expect(stderr.contains("the application held the write lock without a gap for 1 s; the online rebuild of user gave up before its cut-over; user is as it was"), "\(stderr)")
        #expect(stderr.contains("its shadow table new_user and the triggers on user could not be removed yet"), "\(stderr)")
        holder.waitUntilExit()
        #expect(try box.sqlite(box.databasePath, ".sha3sum user") == users)
        let next = try box.deployctl(["deploy", "prod"])
        #expect(next.status == 0, "\(next.stdout)\(next.stderr)")
        #expect(next.stdout.contains("the shadow table new_user, triggers and log of an online rebuild of user that did not cut over were removed"), "\(next.stdout)")
        #expect(try box.sqlite(box.databasePath, "SELECT count(*) FROM sqlite_schema WHERE name LIKE '%deployctl_online%' OR name = 'new_user'") == "0")
    }

    @Test("a row the new table's added CHECK refuses, written by the application during the copy: the application's write succeeds, the rebuild stops before its cut-over with the reason, the table keeps the row")
    func addedCheck() throws {
        let migration = Self.rebuild.replacingOccurrences(of: "name TEXT NOT NULL,", with: "name TEXT NOT NULL CHECK (length(name) < 40),")
        let box = try Self.box(migration: migration)
        let long = String(repeating: "x", count: 60)
        let (status, stderr) = try Self.deploy(box, heldAt: "online-copy=delay:1500", after: 0) {
            let write = try Sandbox.exec("/usr/bin/sqlite3", [box.databasePath, "PRAGMA busy_timeout = 5000; INSERT INTO user (id, name, email) VALUES (900001, '\(long)', 'long@example.com')"])
            #expect(write.status == 0, "the application's write failed: \(write.stderr)")
        }
        #expect(status == 1 && Self.code(stderr) == "online.row_refused", "\(stderr)")
        #expect(stderr.contains("does not fit new_user (CHECK constraint failed: length(name) < 40), so the rebuild stopped before cutting over; user is as it was"), "\(stderr)")
        #expect(try box.sqlite(box.databasePath, "SELECT length(name) FROM user WHERE id = 900001") == "60")
        #expect(try box.sqlite(box.databasePath, "SELECT count(*) FROM sqlite_schema WHERE name LIKE '%deployctl_online%' OR name = 'new_user'") == "0")
    }

    @Test("a foreign key the rebuild adds, left pointing nowhere by the application between the proof and the cut-over (its foreign keys off): found after the commit against the old table's, and the deploy undone")
    func foreignKeyAfterCutOver() throws {
        let migration = """
            -- online
            CREATE TABLE new_note (id INTEGER PRIMARY KEY, user_id INTEGER REFERENCES user(id), body TEXT);
            INSERT INTO new_note (id, user_id, body) SELECT id, user_id, body FROM note;
            DROP TABLE note;
            ALTER TABLE new_note RENAME TO note;

            """
        let box = try Self.box(migration: migration)
        try FileManager.default.removeItem(atPath: box.path("instances/migrations/0001_user_tier.sql"))
        try box.write("instances/migrations/0001_note_user.sql", migration)
        _ = try box.sqlite(box.databasePath, """
            CREATE TABLE note (id INTEGER PRIMARY KEY, user_id INTEGER, body TEXT);
            INSERT INTO note SELECT id, id, 'note ' || id FROM user WHERE id <= 500;
            """)
        let (status, stderr) = try Self.deploy(box, heldAt: "online-proven=delay:2000", after: 1.0) {
            // The application, its foreign keys off as SQLite's default, deletes a user a note names.
            _ = try box.sqlite(box.databasePath, "PRAGMA busy_timeout = 5000; DELETE FROM user WHERE id = 7")
        }
        #expect(status == 1, "\(stderr)")
        #expect(stderr.contains("after the online rebuild note has foreign keys pointing nowhere that it did not have before (user)"), "\(stderr)")
        #expect(stderr.contains("The deploy was undone"), "\(stderr)")
        #expect(try box.sqlite(box.databasePath, "SELECT sql FROM sqlite_schema WHERE name = 'note'") == "CREATE TABLE note (id INTEGER PRIMARY KEY, user_id INTEGER, body TEXT)")
        #expect(try box.sqlite(box.databasePath, "PRAGMA integrity_check") == "ok")
    }
}
