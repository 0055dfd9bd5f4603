import Foundation
import Testing

@Suite("restore under a live application", .serialized)
struct RestoreUnderWriterTests {
    @Test("no write the application saw committed is lost: each is live or in pre_restore; the discarded count is exact",
          arguments: ["wal", "delete"])
    func noAcknowledgedWriteLost(journalMode: String) throws {
        let box = try Sandbox(journalMode: journalMode, rows: 3000)
        let (name, file) = try box.takeSnapshot(gzip: true)
        let writer = try ApplicationWriter(box)
        defer { _ = writer.stop() }
        writer.waitFor(commits: 50)
        // The delay inside the critical section gives the writer 400 ms in which any commit
        // that slipped between the saved copy and the restore would be lost.
        let result = try box.deployctl(["restore", "prod", name, "--yes", "--json"],
                                       environment: ["DEPLOYCTL_FAILPOINTS": "restore=delay:400"])
        let during = writer.committed.count
        writer.waitFor(commits: during + 50)
        let ids = writer.stop()
        #expect(result.status == 0, "\(result.stderr)")
        let document = try Sandbox.document(result)
        let saved = box.backupsFolder + "/" + (try #require(document["pre_restore_backup"] as? String))
        let live = try box.applicationIds(box.databasePath)
        let kept = try box.applicationIds(saved)
        let lost = ids.filter { !live.contains($0) && !kept.contains($0) }
        #expect(lost.isEmpty, "\(lost.count) acknowledged writes are in neither the live database nor \(saved)")
        #expect(!kept.isEmpty && !live.isEmpty, "the writer committed both before and after the restore")
        #expect(kept.isDisjoint(with: live), "the restore replaced the state it saved, nothing in between")

        let plain = box.path("backup.db")
        #expect(try Sandbox.exec("/bin/sh", ["-c", "gunzip -c '\(file)' > '\(plain)'"]).status == 0)
        let outsiderCount = try box.rowsNotIn(saved, reference: plain)
        #expect(document["discarded_rows"] as? Int == outsiderCount, "reported \(document["discarded_rows"] ?? "nil"), counted \(outsiderCount)")
        #expect(outsiderCount >= kept.count)
        #expect((document["write_lock_ms"] as? Double ?? 0) >= 400)
        #expect(try box.sqlite(box.databasePath, "PRAGMA integrity_check") == "ok")
    }

    @Test("the application holding the write lock past the busy timeout: 75 naming it, nothing changed, nothing left",
          arguments: ["wal", "delete"])
    func writeLockHeld(journalMode: String) throws {
        let box = try Sandbox(journalMode: journalMode)
        let (name, _) = try box.takeSnapshot(gzip: false)
        _ = try box.sqlite(box.databasePath, "DELETE FROM payment WHERE id <= 10")
        let before = try box.sha3(box.databasePath)
        let files = box.allBackupFiles()
        let holder = try box.holdWriteLock()
        defer { holder.terminate(); holder.waitUntilExit() }
        let result = try box.deployctl(["restore", "prod", name, "--yes"])
        #expect(result.status == 75 && result.code == "lock.database_busy", "\(result.stdout)\(result.stderr)")
        #expect(result.stderr.contains("PID \(holder.processIdentifier)"), "\(result.stderr)")
        #expect(!result.stderr.contains("failed too"))
        holder.terminate()
        holder.waitUntilExit()
        #expect(try box.sha3(box.databasePath) == before)
        #expect(box.allBackupFiles() == files, "a pre_restore copy or temp file was left")
    }

    @Test("SIGINT before the commit: exit 1, the live database as it was, no copy left; after it: finished, exit 0 (through the page copy, and through the row restore, whose failpoint is just before its commit)",
          arguments: ["", "row-restore-size=skip"])
    func interrupts(path: String) throws {
        let box = try Sandbox(journalMode: "wal")
        let (name, _) = try box.takeSnapshot(gzip: false)
        let backupHash = try box.sha3(box.databasePath)
        _ = try box.sqlite(box.databasePath, "DELETE FROM payment WHERE id <= 10")
        let before = try box.sha3(box.databasePath)
        let files = box.allBackupFiles()

        // Several times: a signal that cuts a sleep short must still stop the commit.
        for _ in 0..<3 {
            let early = try box.spawnDeployctl(["restore", "prod", name, "--yes"], environment: ["DEPLOYCTL_FAILPOINTS": "restore=delay:1500," + path], stderr: Pipe())
            // Inside the critical section once the pre_restore copy exists.
            while !box.backupNames().contains(where: { $0.contains("_pre_restore_") }) && early.isRunning { Thread.sleep(forTimeInterval: 0.01) }
            kill(early.processIdentifier, SIGINT)
            early.waitUntilExit()
            #expect(early.terminationStatus == 1)
            #expect(try box.sha3(box.databasePath) == before)
            #expect(box.allBackupFiles() == files)
        }

        let stderr = Pipe()
        let late = try box.spawnDeployctl(["restore", "prod", name, "--yes"], environment: ["DEPLOYCTL_FAILPOINTS": "after-restore=delay:3000," + path], stderr: stderr)
        var polls = [String]()
        while late.isRunning {
            let hash = try Sandbox.exec("/usr/bin/sqlite3", [box.databasePath, ".sha3sum"])
            polls.append("\(hash.status):\(hash.stdout.prefix(8)):\(hash.stderr.prefix(60))")
            if hash.stdout.trimmingCharacters(in: .whitespacesAndNewlines) == backupHash { break }
            Thread.sleep(forTimeInterval: 0.05)
        }
        #expect(late.isRunning, "\(polls.suffix(5))")
        kill(late.processIdentifier, SIGINT)
        late.waitUntilExit()
        #expect(late.terminationStatus == 0)
        #expect(String(decoding: stderr.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self).contains("came after the restore had committed"))
        #expect(try box.sha3(box.databasePath) == backupHash)
    }
}

@Suite("restore picks only this instance's backups")
struct RestoreSelectionTests {
    @Test("a backup with another page size cannot go into a WAL database: 1 saying why, nothing changed")
    func pageSizeMismatch() throws {
        let box = try Sandbox(journalMode: "wal")
        let (name, file) = try box.takeSnapshot(gzip: false)
        try FileManager.default.removeItem(atPath: file)
        _ = try box.sqlite(box.databasePath, "PRAGMA page_size = 1024; VACUUM INTO '\(file)'")
        try Sandbox.rewriteManifestChecksum(of: file)
        _ = try box.sqlite(box.databasePath, "DELETE FROM payment WHERE id <= 10")
        let before = try box.sha3(box.databasePath)
        let files = box.allBackupFiles()
        let result = try box.deployctl(["restore", "prod", name, "--yes"])
        #expect(result.status == 1, "\(result.stderr)")
        #expect(result.stderr.contains("page size (1024)"), "\(result.stderr)")
        #expect(try box.sha3(box.databasePath) == before)
        #expect(box.allBackupFiles() == files)
    }

    @Test("--latest passes over pre_restore copies: running the runbook twice restores the same backup")
    func latestTwice() throws {
        let box = try Sandbox()
        let (name, _) = try box.takeSnapshot(gzip: false)
        let snapshotHash = try box.sha3(box.databasePath)
        _ = try box.sqlite(box.databasePath, "DELETE FROM payment WHERE id <= 10")
        for _ in 0..<2 {
            let result = try box.deployctl(["restore", "prod", "--latest", "--yes"])
            #expect(result.status == 0, "\(result.stderr)")
            #expect(result.stdout.contains("Backup \(name) (label snapshot"), "\(result.stdout)")
            #expect(try box.sha3(box.databasePath) == snapshotHash)
        }
        let preRestore = try box.deployctl(["restore", "prod", "--latest", "--label", "pre_restore", "--dry-run"])
        #expect(preRestore.status == 0)
        #expect(preRestore.stdout.contains("_pre_restore_"))
    }

    @Test("a foreign database with a matching checksum is refused with 65, unless --allow-foreign")
    func foreignDatabase() throws {
        let box = try Sandbox()
        let (name, file) = try box.takeSnapshot(gzip: false)
        let before = try box.sha3(box.databasePath)
        // Another application's database posing as our backup, its checksum made to match.
        try FileManager.default.removeItem(atPath: file)
        _ = try box.sqlite(file, "PRAGMA journal_mode=delete; CREATE TABLE sessions (id INTEGER PRIMARY KEY, token TEXT); INSERT INTO sessions VALUES (1, 'x');")
        try Sandbox.rewriteManifestChecksum(of: file)
        let refused = try box.deployctl(["restore", "prod", name, "--yes"])
        #expect(refused.status == 65, "\(refused.stderr)")
        #expect(refused.stderr.contains("is not a database of instance 'prod'"), "\(refused.stderr)")
        #expect(try box.sha3(box.databasePath) == before)
        let allowed = try box.deployctl(["restore", "prod", name, "--yes", "--allow-foreign"])
        #expect(allowed.status == 0, "\(allowed.stderr)")
        #expect(try box.tables() == ["sessions"])
    }

    @Test("an older manifest (no instance recorded) whose source path names another instance, or a manifest of another file: 65")
    func olderManifests() throws {
        let box = try Sandbox()
        let (name, file) = try box.takeSnapshot(gzip: false)
        let manifestURL = URL(fileURLWithPath: file + ".json")
        var manifest = try JSONSerialization.jsonObject(with: Data(contentsOf: manifestURL)) as! [String: Any]
        manifest["instance"] = nil
        manifest["database"] = nil
        manifest["source_path"] = "/srv/app/instances/staging/database/lending_app_staging.db"
        try JSONSerialization.data(withJSONObject: manifest).write(to: manifestURL)
        let staging = try box.deployctl(["restore", "prod", name, "--yes"])
        #expect(staging.status == 65, "\(staging.stderr)")
        #expect(staging.stderr.contains("lending_app_staging.db"))
        // The same file name, but another instance's folder once '..' is resolved.
        manifest["source_path"] = box.path("instances/prod/../staging/database/lending_app_prod.db")
        try JSONSerialization.data(withJSONObject: manifest).write(to: manifestURL)
        #expect(try box.deployctl(["restore", "prod", name, "--yes"]).status == 65)
        manifest["source_path"] = box.path("instances/staging/../prod/database/lending_app_prod.db")
        try JSONSerialization.data(withJSONObject: manifest).write(to: manifestURL)
        #expect(try box.deployctl(["restore", "prod", name, "--dry-run"]).status == 0)

        // A copy of the backup under another name, with its manifest renamed too.
        let renamed = name.replacingOccurrences(of: "_snapshot_", with: "_nightly_")
        try FileManager.default.copyItem(atPath: file, toPath: box.backupsFolder + "/" + renamed)
        try FileManager.default.copyItem(atPath: file + ".json", toPath: box.backupsFolder + "/" + renamed + ".json")
        let copied = try box.deployctl(["restore", "prod", renamed, "--yes", "--allow-foreign"])
        #expect(copied.status == 65 && copied.code == "backup.foreign_file", "\(copied.stderr)")
        #expect(copied.stderr.contains("manifest describes another file"))
    }

    @Test("a manifest naming another instance is refused with 65")
    func otherInstance() throws {
        let box = try Sandbox()
        let (name, file) = try box.takeSnapshot(gzip: false)
        let manifestURL = URL(fileURLWithPath: file + ".json")
        var manifest = try JSONSerialization.jsonObject(with: Data(contentsOf: manifestURL)) as! [String: Any]
        #expect(manifest["instance"] as? String == "prod")
        #expect(manifest["database"] as? String == "instances/prod/database/lending_app_prod.db")
        manifest["instance"] = "dev"
        try JSONSerialization.data(withJSONObject: manifest).write(to: manifestURL)
        let result = try box.deployctl(["restore", "prod", name, "--yes"])
        #expect(result.status == 65, "\(result.stderr)")
        #expect(result.stderr.contains("instance 'dev'"))
    }

    @Test("a symlink in the backups folder is never read: naming it is 65, --latest passes over it")
    func symlinkPosingAsBackup() throws {
        let box = try Sandbox()
        try box.addInstance("dev")
        let (name, _) = try box.takeSnapshot(gzip: false)
        let devDatabase = box.path("instances/dev/database/lending_app_dev.db")
        let link = box.backupsFolder + "/lending_app_prod_snapshot_29990101_000000.db"
        try FileManager.default.createSymbolicLink(atPath: link, withDestinationPath: devDatabase)
        try FileManager.default.copyItem(atPath: box.backupsFolder + "/\(name).json", toPath: link + ".json")
        try Sandbox.rewriteManifestChecksum(of: link)
        let before = try box.sha3(box.databasePath)
        let named = try box.deployctl(["restore", "prod", URL(fileURLWithPath: link).lastPathComponent, "--yes"])
        #expect(named.status == 65 && named.code == "backup.foreign_file", "\(named.stderr)")
        #expect(named.stderr.contains("symbolic link"))
        #expect(try box.sha3(box.databasePath) == before)
        let latest = try box.deployctl(["restore", "prod", "--latest", "--dry-run"])
        #expect(latest.status == 0, "\(latest.stderr)")
        #expect(latest.stdout.contains(name))
    }

    @Test("two instances naming the same database file cannot run writing commands: 64 naming both")
    func sharedDatabase() throws {
        let box = try Sandbox()
        let (name, _) = try box.takeSnapshot(gzip: false)
        // Through a symlinked folder, so the paths differ and only the file's identity is shared.
        try FileManager.default.createSymbolicLink(atPath: box.path("instances/prod/db-link"), withDestinationPath: box.path("instances/prod/database"))
        try box.write("instances/shadow/instance.toml", "[database]\npath = \"../prod/db-link/lending_app_prod.db\"\n")
        for arguments in [["restore", "prod", name, "--yes"], ["snapshot", "shadow"]] {
            let result = try box.deployctl(arguments)
            #expect(result.status == 64, "\(arguments): \(result.stderr)")
            #expect(result.stderr.contains("'prod'") && result.stderr.contains("'shadow'"), "\(result.stderr)")
        }
    }
}

@Suite("restore preview")
struct RestorePreviewTests {
    @Test("FTS5 and R*Tree tables are compared through their modules, their shadow tables reported apart")
    func virtualTables() throws {
        let box = try Sandbox()
        _ = try box.sqlite(box.databasePath, """
            CREATE VIRTUAL TABLE notes USING fts5(body);
            CREATE VIRTUAL TABLE places USING rtree(id, minx, maxx);
            WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n WHERE i < 2000)
              INSERT INTO notes SELECT 'note number ' || i FROM n;
            WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n WHERE i < 2000)
              INSERT INTO places SELECT i, i, i + 1 FROM n;
            """)
        #expect(try box.deployctl(["snapshot", "prod"]).status == 0)
        _ = try box.sqlite(box.databasePath, "DELETE FROM notes WHERE rowid <= 1500; DELETE FROM places WHERE id <= 1200; INSERT INTO places VALUES (5000, 1, 2);")
        let result = try box.deployctl(["restore", "prod", "--latest", "--dry-run", "--json"])
        #expect(result.status == 0, "\(result.stderr)")
        let document = try Sandbox.document(result)
        let differences = try #require(document["differences"] as? [[String: Any]])
        func row(_ table: String) -> [String: Any]? { differences.first { $0["table"] as? String == table } }
        #expect(row("notes")?["restored"] as? Int == 1500)
        #expect(row("places")?["restored"] as? Int == 1200)
        #expect(row("places")?["discarded"] as? Int == 1)
        let notCompared = try #require(document["not_compared"] as? [[String: Any]])
        #expect(notCompared.contains { $0["table"] as? String == "notes_data" })
        #expect(!differences.contains { ($0["table"] as? String)?.hasPrefix("notes_") == true })
    }
}

@Suite("restore with app hooks")
struct RestoreHookTests {
    @Test("stop runs before, start and health after; --no-hooks runs none; a failing health check puts the database back")
    func hooks() throws {
        let box = try Sandbox()
        try box.configureHooks("""
            stop = "echo stop >> hooks.log"
            start = "echo start >> hooks.log"
            health = "echo health >> hooks.log; test ! -f unhealthy"
            health_attempts = 1
            """)
        let (name, _) = try box.takeSnapshot(gzip: false)
        let backupHash = try box.sha3(box.databasePath)
        let hooksLog = box.path("instances/prod/hooks.log")
        func hookLines() -> [String] { ((try? String(contentsOfFile: hooksLog, encoding: .utf8)) ?? "").split(separator: "\n").map(String.init) }

        _ = try box.sqlite(box.databasePath, "DELETE FROM payment WHERE id <= 10")
        #expect(try box.deployctl(["restore", "prod", name, "--yes"]).status == 0)
        #expect(hookLines() == ["stop", "start", "health"])
        #expect(try box.sha3(box.databasePath) == backupHash)

        _ = try box.sqlite(box.databasePath, "DELETE FROM payment WHERE id <= 10")
        #expect(try box.deployctl(["restore", "prod", name, "--yes", "--no-hooks"]).status == 0)
        #expect(try box.deployctl(["restore", "prod", name, "--dry-run"]).status == 0)
        #expect(hookLines().count == 3)

        _ = try box.sqlite(box.databasePath, "DELETE FROM payment WHERE id <= 10")
        let before = try box.sha3(box.databasePath)
        _ = FileManager.default.createFile(atPath: box.path("instances/prod/unhealthy"), contents: nil)
        let failed = try box.deployctl(["restore", "prod", name, "--yes"])
        #expect(failed.status == 1, "\(failed.stderr)")
        #expect(failed.stderr.contains("health check failed"))
        #expect(failed.stderr.contains("put back"))
        #expect(try box.sha3(box.databasePath) == before)
        #expect(Array(hookLines().suffix(5)) == ["stop", "start", "health", "stop", "start"])
        // Nothing was written after the restore: the copy of what was put back is not kept.
        #expect(!box.backupNames().contains { $0.contains("_pre_putback_") })
    }

    @Test("a health check failing after the application wrote: put back, and what it wrote is saved and counted")
    func putBackAfterWrites() throws {
        let box = try Sandbox()
        try box.configureHooks("""
            health = "sqlite3 database/lending_app_prod.db \\"INSERT INTO tracker VALUES (77777, 1, 'after'); DELETE FROM tracker WHERE id IN (1, 2)\\"; exit 1"
            health_attempts = 1
            """)
        let (name, _) = try box.takeSnapshot(gzip: false)
        _ = try box.sqlite(box.databasePath, "DELETE FROM payment WHERE id <= 10")
        let before = try box.sha3(box.databasePath)
        let result = try box.deployctl(["restore", "prod", name, "--yes"])
        #expect(result.status == 1, "\(result.stderr)")
        #expect(result.stderr.contains("added or changed 1 row and removed 2"), "\(result.stderr)")
        #expect(try box.sha3(box.databasePath) == before)
        let kept = try #require(box.backupNames().first { $0.contains("_pre_putback_") })
        #expect(try box.sqlite(box.backupsFolder + "/" + kept, "SELECT name FROM tracker WHERE id = 77777") == "after")
        let undo = try box.deployctl(["restore", "prod", "--latest", "--label", "pre_restore", "--dry-run"])
        #expect(undo.stdout.contains("_pre_restore_"), "\(undo.stdout)")
    }

    @Test("without a stop hook, the preview names the processes holding the database")
    func holdersNamed() throws {
        let box = try Sandbox()
        #expect(try box.deployctl(["snapshot", "prod"]).status == 0)
        let reader = Process()
        reader.executableURL = URL(fileURLWithPath: "/usr/bin/python3")
        reader.arguments = ["-c", "import sqlite3, time\ndb = sqlite3.connect('\(box.databasePath)')\ndb.execute('SELECT 1 FROM user').fetchall()\ntime.sleep(10)"]
        try reader.run()
        defer { reader.terminate(); reader.waitUntilExit() }
        Thread.sleep(forTimeInterval: 0.5)
        let result = try box.deployctl(["restore", "prod", "--latest", "--dry-run"])
        #expect(result.status == 0)
        #expect(result.stdout.contains("PID \(reader.processIdentifier)"), "\(result.stdout)")
    }
}

@Suite("restore preview counts")
struct RestorePreviewCountTests {
    /// Changes to the sandbox's tables after a snapshot (whose payment rows with id % 40 = 0
    /// hold 9 KB notes, on overflow pages), each differing from the backup in its own way.
    static let edits = [
        "scattered": "DELETE FROM payment WHERE id % 97 = 0; UPDATE loan SET rate = 5.0 WHERE id % 53 = 0; INSERT INTO tracker VALUES (50000, 1, 'new'); UPDATE user SET name = 'X' WHERE id = 7",
        // No page freed and no overflow page touched: only the differing leaves are read.
        "in place": "DELETE FROM payment WHERE id % 97 = 1 AND id % 40 != 0; UPDATE loan SET rate = 5.0 WHERE id % 53 = 0; UPDATE user SET name = 'Y' || name WHERE id % 61 = 0; INSERT INTO tracker VALUES (50000, 1, 'new')",
        "freeing": "DELETE FROM payment WHERE id BETWEEN 100 AND 6000",
        "overflow": "UPDATE payment SET note = zeroblob(9000) || 'b' WHERE id % 80 = 0",
        "vacuum": "DELETE FROM payment WHERE id % 5 = 0; VACUUM",
    ]

    @Test("a case-only change in a NOCASE key is a changed row, in a rowid and a WITHOUT ROWID table")
    func caseOnlyChange() throws {
        let box = try Sandbox()
        _ = try box.sqlite(box.databasePath, """
            CREATE TABLE tn (k TEXT PRIMARY KEY COLLATE NOCASE, v); INSERT INTO tn VALUES ('abc', 1);
            CREATE TABLE wn (k TEXT PRIMARY KEY COLLATE NOCASE, v) WITHOUT ROWID; INSERT INTO wn VALUES ('abc', 1);
            """)
        #expect(try box.deployctl(["snapshot", "prod"]).status == 0)
        _ = try box.sqlite(box.databasePath, "UPDATE tn SET k = 'ABC'; UPDATE wn SET k = 'ABC';")
        let result = try box.deployctl(["restore", "prod", "--latest", "--dry-run", "--json"])
        let differences = try #require(Sandbox.document(result)["differences"] as? [[String: Any]])
        for table in ["tn", "wn"] {
            let row = differences.first { $0["table"] as? String == table }
            #expect([row?["discarded"] as? Int, row?["restored"] as? Int] == [1, 1], "\(table)")
        }
    }

    @Test("a table without a key counts every copy of a repeated row")
    func repeatedRows() throws {
        let box = try Sandbox()
        _ = try box.sqlite(box.databasePath, "CREATE TABLE tags (a, b); INSERT INTO tags VALUES (1, 1), (2, 2), (2, 2);")
        #expect(try box.deployctl(["snapshot", "prod"]).status == 0)
        _ = try box.sqlite(box.databasePath, "INSERT INTO tags VALUES (1, 1), (1, 1), (1, 1); DELETE FROM tags WHERE rowid = 3;")
        let result = try box.deployctl(["restore", "prod", "--latest", "--yes", "--json"])
        #expect(result.status == 0, "\(result.stderr)")
        let document = try Sandbox.document(result)
        let tags = (document["discarded"] as? [[String: Any]])?.first { $0["table"] as? String == "tags" }
        #expect(tags?["discarded"] as? Int == 3)
        #expect(tags?["restored"] as? Int == 1)
        #expect(document["discarded_rows"] as? Int == 3)
    }

    /// Per table, rows of `db` not in `reference` and rows of `reference` not in `db`, by EXCEPT.
    func outsiderCounts(_ box: Sandbox, _ db: String, _ reference: String) throws -> [String: [Int]] {
        var counts = [String: [Int]]()
        for table in ["user", "loan", "payment", "tracker"] {
            let line = try box.sqlite(db, """
                ATTACH '\(reference)' AS ref;
                SELECT (SELECT count(*) FROM (SELECT * FROM main.\(table) EXCEPT SELECT * FROM ref.\(table))),
                       (SELECT count(*) FROM (SELECT * FROM ref.\(table) EXCEPT SELECT * FROM main.\(table)));
                """)
            counts[table] = line.split(separator: "|").compactMap { Int($0) }
        }
        return counts
    }

    @Test("the preview counts what EXCEPT counts: scattered edits, deletions that free pages, overflow values changed in their tail, VACUUM",
          arguments: ["wal", "delete"], ["scattered", "in place", "freeing", "overflow", "vacuum"])
    func countsMatchExcept(journalMode: String, change: String) throws {
        let box = try Sandbox(journalMode: journalMode, rows: 3000)
        _ = try box.sqlite(box.databasePath, "UPDATE payment SET note = zeroblob(9000) || 'a' WHERE id % 40 = 0")
        let (_, file) = try box.takeSnapshot(gzip: false)
        _ = try box.sqlite(box.databasePath, Self.edits[change]!)
        let expected = try outsiderCounts(box, box.databasePath, file)
        // Twice: with the differing leaves' row digests, and without (what a large difference
        // past the digest budget takes: every row merged from SQL, in flat memory).
        for failpoints in ["", "row-digests=skip"] {
            let result = try box.deployctl(["restore", "prod", "--latest", "--dry-run", "--json"], environment: ["DEPLOYCTL_FAILPOINTS": failpoints])
            #expect(result.status == 0, "\(result.stderr)")
            let differences = try #require(Sandbox.document(result)["differences"] as? [[String: Any]])
            for (table, counts) in expected {
                let row = differences.first { $0["table"] as? String == table }
                #expect([row?["discarded"] as? Int ?? -1, row?["restored"] as? Int ?? -1] == counts, "\(table) \(failpoints)")
            }
        }
        #expect(expected.values.contains { $0 != [0, 0] })
    }
}

@Suite("restore checks a backup once")
struct RestoreCheckTests {
    @Test("a failed verification is recorded and shown; --latest passes over it; bytes that passed integrity_check are not checked again")
    func recordedChecks() throws {
        let box = try Sandbox()
        let (good, _) = try box.takeSnapshot(gzip: false)
        Thread.sleep(forTimeInterval: 1.1)
        #expect(try box.deployctl(["snapshot", "prod"]).status == 0)
        let bad = try #require(box.backupNames().first { $0 != good })
        // Truncated, with a checksum that matches: only the SQLite check can tell.
        let bytes = try Data(contentsOf: URL(fileURLWithPath: box.backupsFolder + "/" + bad))
        try bytes.prefix(bytes.count / 2).write(to: URL(fileURLWithPath: box.backupsFolder + "/" + bad))
        try Sandbox.rewriteManifestChecksum(of: box.backupsFolder + "/" + bad)

        #expect(try box.deployctl(["backups", "verify", "prod", "--all"]).status == 65)
        let entries = try box.listedBackups()
        #expect(entries.first { $0["name"] as? String == bad }?["status"] as? String == "failed")
        #expect(entries.first { $0["name"] as? String == good }?["status"] as? String == "verified")
        let manifest = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: box.backupsFolder + "/\(bad).json"))) as! [String: Any]
        let verification = try #require(manifest["verification"] as? [String: Any])
        #expect(verification["check"] as? String == "integrity_check" && verification["result"] as? String == "failed")

        let restore = try box.deployctl(["restore", "prod", "--latest", "--dry-run"])
        #expect(restore.status == 0, "\(restore.stderr)")
        #expect(restore.stdout.contains("Backup \(good)"))
        #expect(restore.stdout.contains("these bytes passed integrity_check on"), "\(restore.stdout)")
        #expect(restore.stderr.contains("passed over the newer \(bad)"), "\(restore.stderr)")
    }

    @Test("--latest passes over a newer backup that fails its check on the spot, and says so in --json")
    func latestPassesOverUnverified() throws {
        let box = try Sandbox()
        let (good, _) = try box.takeSnapshot(gzip: false)
        Thread.sleep(forTimeInterval: 1.1)
        #expect(try box.deployctl(["snapshot", "prod", "--gzip"]).status == 0)
        let bad = try #require(box.backupNames().first { $0 != good })
        let path = box.backupsFolder + "/" + bad
        let bytes = try Data(contentsOf: URL(fileURLWithPath: path))
        try bytes.prefix(bytes.count / 2).write(to: URL(fileURLWithPath: path))
        try Sandbox.rewriteManifestChecksum(of: path)
        let result = try box.deployctl(["restore", "prod", "--latest", "--dry-run", "--json"])
        #expect(result.status == 0, "\(result.stderr)")
        let document = try Sandbox.document(result)
        #expect(document["backup"] as? String == good)
        #expect((document["passed_over"] as? [String])?.first?.hasPrefix(bad) == true)
        #expect(box.allBackupFiles().allSatisfy { !$0.hasPrefix(".") }, "an inflated temp copy was left")
    }
}

@Suite("restore --replace")
struct RestoreReplaceTests {
    @Test("a database deleted (with a migration pending that creates other tables) or emptied to 0 bytes is put back by --replace, as status says; the new file gets 0644, not a temp file's 0600",
          arguments: ["deleted", "empty"])
    func replaceMissingOrEmpty(damage: String) throws {
        let box = try Sandbox(rows: 30)
        let (_, file) = try box.takeSnapshot(gzip: false)
        try box.write("instances/migrations/0001_q.sql", "CREATE TABLE q (id INTEGER PRIMARY KEY);\n")
        for suffix in ["", "-wal", "-shm"] { try? FileManager.default.removeItem(atPath: box.databasePath + suffix) }
        if damage == "empty" { #expect(FileManager.default.createFile(atPath: box.databasePath, contents: Data())) }
        let result = try box.deployctl(["restore", "prod", "--latest", "--replace", "--yes"])
        #expect(result.status == 0, "\(result.stdout)\(result.stderr)")
        #expect(try box.sha3(box.databasePath) == box.sha3(file))
        let mode = (try FileManager.default.attributesOfItem(atPath: box.databasePath)[.posixPermissions] as? NSNumber)?.intValue ?? 0
        #expect(damage == "empty" || mode & 0o044 == 0o044, "mode \(String(mode, radix: 8))")
    }

    @Test("--replace through a symbolic link replaces the file it points to, keeps the link, the owner and the mode")
    func replaceThroughLink() throws {
        let box = try Sandbox(journalMode: "delete")
        #expect(try box.deployctl(["snapshot", "prod"]).status == 0)
        let hash = try box.sha3(box.databasePath)
        let real = box.path("instances/prod/data/real.db")
        try FileManager.default.createDirectory(atPath: box.path("instances/prod/data"), withIntermediateDirectories: true)
        try FileManager.default.moveItem(atPath: box.databasePath, toPath: real)
        try FileManager.default.createSymbolicLink(atPath: box.databasePath, withDestinationPath: "../data/real.db")
        try Data("garbage that is not sqlite".utf8).write(to: URL(fileURLWithPath: real))
        chmod(real, 0o664)
        if getuid() == 0 { chown(real, 65534, 65534) }

        let result = try box.deployctl(["restore", "prod", "--latest", "--replace", "--yes"])
        #expect(result.status == 0, "\(result.stderr)")
        #expect((try? FileManager.default.destinationOfSymbolicLink(atPath: box.databasePath)) == "../data/real.db")
        #expect(try box.sha3(real) == hash)
        var info = stat()
        #expect(stat(real, &info) == 0 && info.st_mode & 0o7777 == 0o664)
        if getuid() == 0 { #expect(info.st_uid == 65534 && info.st_gid == 65534) }
        let aside = try #require(box.backupNames().first { $0.contains("_replaced_") })
        #expect(try String(contentsOfFile: box.backupsFolder + "/" + aside, encoding: .utf8) == "garbage that is not sqlite")
        #expect(try FileManager.default.attributesOfItem(atPath: box.backupsFolder + "/" + aside)[.type] as? FileAttributeType == .typeRegular)
    }
}

@Suite("restore --to")
struct RestoreToTests {
    @Test("--to into a missing folder or onto a dangling link is 73; onto the live database's journal is 64")
    func badTargets() throws {
        let box = try Sandbox()
        #expect(try box.deployctl(["snapshot", "prod"]).status == 0)
        #expect(try box.deployctl(["restore", "prod", "--latest", "--to", box.path("no/such/folder/copy.db")]).status == 73)
        try FileManager.default.createSymbolicLink(atPath: box.path("dangling.db"), withDestinationPath: box.path("nowhere.db"))
        let dangling = try box.deployctl(["restore", "prod", "--latest", "--to", box.path("dangling.db")])
        #expect(dangling.status == 73, "\(dangling.stderr)")
        #expect(!FileManager.default.fileExists(atPath: box.path("nowhere.db")))
        let journal = try box.deployctl(["restore", "prod", "--latest", "--to", box.databasePath + "-journal"])
        #expect(journal.status == 64, "\(journal.stderr)")
        // The same through a link to the database's folder.
        try FileManager.default.createSymbolicLink(atPath: box.path("dblink"), withDestinationPath: box.path("instances/prod/database"))
        let linked = try box.deployctl(["restore", "prod", "--latest", "--to", box.path("dblink/lending_app_prod.db-wal")])
        #expect(linked.status == 64, "\(linked.stderr)")
    }
}
