import Foundation
import Testing

@Suite("only deployctl's files are backups")
struct BackupFolderTests {
    @Test("a backups folder that is, or lies inside, the database's folder is a config error (64) naming both")
    func backupsInDatabaseFolder() throws {
        for path in ["database", "database/backups"] {
            let box = try Sandbox()
            try box.write("instances/prod/instance.toml", "[database]\npath = \"database/lending_app_prod.db\"\n[backups]\npath = \"\(path)\"\n")
            let before = try box.sha3(box.databasePath)
            for arguments in [["backups", "list", "prod"], ["backups", "prune", "prod", "--keep-last", "0"], ["snapshot", "prod"]] {
                let result = try box.deployctl(arguments)
                #expect(result.status == 64, "\(path) \(arguments): \(result.stderr)")
                #expect(result.stderr.contains("backups.path") && result.stderr.contains("database's folder"), "\(result.stderr)")
            }
            #expect(try box.sha3(box.databasePath) == before)
        }
    }

    @Test("files deployctl did not write are listed apart and never pruned: another database, a replaced file, a renamed copy")
    func otherFilesLeftAlone() throws {
        let box = try Sandbox()
        let (name, file) = try box.takeSnapshot(gzip: false)
        let strays = ["sessions.db", "lending_app_prod.db", "lending_app_prod_snapshot_29990101_000000.db", "notes.txt"]
        for stray in strays { try FileManager.default.copyItem(atPath: file, toPath: box.backupsFolder + "/" + stray) }
        let list = try box.deployctl(["backups", "list", "prod"])
        #expect(list.status == 0)
        #expect(list.stdout.contains("Not deployctl backups"))
        for stray in strays { #expect(list.stdout.contains("  \(stray): "), "\(stray)") }
        let prune = try box.deployctl(["backups", "prune", "prod", "--keep-last", "0", "--yes"])
        #expect(prune.status == 0, "\(prune.stderr)")
        for stray in strays { #expect(FileManager.default.fileExists(atPath: box.backupsFolder + "/" + stray), "\(stray) was removed") }
        #expect(!FileManager.default.fileExists(atPath: file), "the real backup \(name) is pruned by --keep-last 0")
        #expect(try box.deployctl(["backups", "verify", "prod", "--all"]).status == 66)
    }
}

@Suite("retention")
struct RetentionTests {
    @Test("a manifest dated in the future does not let snapshot --keep-last 1 prune the snapshot it has just taken")
    func futureManifest() throws {
        let box = try Sandbox()
        let (_, file) = try box.takeSnapshot(gzip: false)
        let manifestURL = URL(fileURLWithPath: file + ".json")
        var manifest = try JSONSerialization.jsonObject(with: Data(contentsOf: manifestURL)) as! [String: Any]
        manifest["created_at"] = "2099-01-01T00:00:00Z"
        try JSONSerialization.data(withJSONObject: manifest).write(to: manifestURL)
        Thread.sleep(forTimeInterval: 1.1)
        let result = try box.deployctl(["snapshot", "prod", "--keep-last", "1", "--json"])
        #expect(result.status == 0, "\(result.stderr)")
        let document = try Sandbox.document(result)
        let taken = try #require((document["backup"] as? [String: Any])?["name"] as? String)
        #expect(FileManager.default.fileExists(atPath: box.backupsFolder + "/" + taken), "the new snapshot was pruned")
        // status reports the future-dated one and does not take it for the last backup.
        let status = try Sandbox.document(try box.deployctl(["status", "prod", "--json"]))
        #expect(status["last_backup"] as? String == taken)
        #expect(status["future_dated_backups"] as? [String] == [URL(fileURLWithPath: file).lastPathComponent])
    }
}

@Suite("read-only commands")
struct ReadOnlyCommandTests {
    @Test("status, plan, verify, history, backups list, restore --dry-run (and snapshot) leave a hot WAL, the database's bytes and its mtime as they were")
    func hotWALUntouched() throws {
        let box = try Sandbox(journalMode: "wal")
        // An application that committed and died without checkpointing: a hot WAL.
        let crash = try Sandbox.exec("/usr/bin/python3", ["-c", """
            import os, sqlite3
            db = sqlite3.connect('\(box.databasePath)', isolation_level=None)
            db.execute('PRAGMA wal_autocheckpoint = 0')
            db.execute("INSERT INTO user VALUES (424242, 'Hot', 'hot@example.com')")
            os._exit(0)
            """])
        #expect(crash.status == 0)
        func state() throws -> [String] {
            let mtime = try FileManager.default.attributesOfItem(atPath: box.databasePath)[.modificationDate] as! Date
            return [try Sandbox.exec("/usr/bin/sha256sum", [box.databasePath, box.databasePath + "-wal"]).stdout, "\(mtime.timeIntervalSince1970)"]
        }
        let before = try state()
        #expect(FileManager.default.fileExists(atPath: box.databasePath + "-wal"))
        #expect(try box.deployctl(["snapshot", "prod"]).status == 0)
        let snapshotted = try state()
        #expect(snapshotted == before, "snapshot changed the database or its WAL")
        for command in [["status", "prod"], ["plan", "prod"], ["verify", "prod"], ["history", "prod"], ["backups", "list", "prod"],
                        ["restore", "prod", "--latest", "--dry-run"]] {
            _ = try box.deployctl(command)
            #expect(try state() == before, "\(command) changed the database or its WAL")
        }
    }
}

@Suite("crash leftovers")
struct LeftoverTests {
    @Test("temp files of dead runs are shown by status and removed by the next snapshot; a live writer's are kept")
    func leftovers() throws {
        let box = try Sandbox()
        #expect(try box.deployctl(["snapshot", "prod"]).status == 0)
        let dead = Process()
        dead.executableURL = URL(fileURLWithPath: "/bin/true")
        try dead.run()
        dead.waitUntilExit()
        let deadFile = box.backupsFolder + "/.tmp-\(dead.processIdentifier)-1a2b-lending_app_prod_snapshot_20261125_000000.db"
        let liveFile = box.backupsFolder + "/.tmp-\(getpid())-3c4d-lending_app_prod_snapshot_20261125_000001.db"
        let deadBeside = box.databasePath.replacingOccurrences(of: "lending_app_prod.db", with: ".tmp-\(dead.processIdentifier)-5e6f-lending_app_prod.db")
        let appFile = box.databasePath.replacingOccurrences(of: "lending_app_prod.db", with: ".tmp-\(dead.processIdentifier)-app-cache")
        for path in [deadFile, liveFile, deadBeside, appFile] { try Data(count: 100_000).write(to: URL(fileURLWithPath: path)) }
        let status = try box.deployctl(["status", "prod"])
        #expect(status.stdout.contains("of temp files left by runs that died"), "\(status.stdout)")
        #expect(try box.deployctl(["snapshot", "prod"]).status == 0)
        #expect(!FileManager.default.fileExists(atPath: deadFile))
        #expect(!FileManager.default.fileExists(atPath: deadBeside))
        #expect(FileManager.default.fileExists(atPath: liveFile), "a running process's temp file was removed")
        #expect(FileManager.default.fileExists(atPath: appFile), "a file not ours beside the database was removed")
    }

}

extension RetentionTests {
    /// Seven `nightly` backups dated as a host keeping them for a year would have: now, yesterday
    /// (twice), three, twenty, sixty and four hundred days ago. Returns their names, newest first.
    static func yearOfBackups(_ box: Sandbox) throws -> [String] {
        let now = Date()
        var calendar = Calendar(identifier: .iso8601)
        calendar.timeZone = TimeZone(identifier: "UTC")!
        let today = calendar.startOfDay(for: now)
        let daysAndHours: [(days: Double, hour: Double)] = [(1, 12), (1, 6), (3, 12), (20, 12), (60, 12), (400, 12)]
        var dates = [now.addingTimeInterval(-60)]
        for (days, hour) in daysAndHours { dates.append(today.addingTimeInterval(-days * 86_400 + hour * 3600)) }
        var names = [String]()
        for date in dates {
            let result = try box.deployctl(["snapshot", "prod", "--label", "nightly", "--json"])
            try #require(result.status == 0, "\(result.stderr)")
            let name = try #require((try Sandbox.document(result)["backup"] as? [String: Any])?["name"] as? String)
            try Sandbox.redate(box.backupsFolder + "/" + name, to: date)
            names.append(name)
        }
        return names
    }

    @Test("--keep-daily and --keep-within keep what restic would, --dry-run names the rule for each backup, and prune removes exactly the rest")
    func ageRules() throws {
        let box = try Sandbox(rows: 20)
        let names = try Self.yearOfBackups(box)
        let dryRun = try box.deployctl(["backups", "prune", "prod", "--keep-daily", "3", "--keep-within", "21d", "--dry-run", "--json"])
        #expect(dryRun.status == 0, "\(dryRun.stderr)")
        let decisions = try #require(try Sandbox.document(dryRun)["decisions"] as? [[String: Any]])
        let reasons = Dictionary(uniqueKeysWithValues: decisions.map { ($0["name"] as! String, $0["reasons"] as! [String]) })
        // Daily keeps the newest of today, yesterday and three days ago; within 21d keeps the first five.
        #expect(reasons[names[0]]!.contains { $0.hasPrefix("daily ") } && reasons[names[0]]!.contains("within 21d"))
        #expect(reasons[names[1]]!.contains { $0.hasPrefix("daily ") })
        #expect(reasons[names[2]] == ["within 21d"], "yesterday's older backup is kept by age only: \(reasons[names[2]]!)")
        #expect(reasons[names[3]]!.contains { $0.hasPrefix("daily ") })
        #expect(reasons[names[4]] == ["within 21d"])
        #expect(reasons[names[5]] == [] && reasons[names[6]] == [])
        #expect(box.backupNames().count == 7, "--dry-run removed something")
        let human = try box.deployctl(["backups", "prune", "prod", "--keep-daily", "3", "--keep-within", "21d", "--dry-run"])
        #expect(human.stdout.contains("keep: within 21d") && human.stdout.contains("remove") && human.stdout.contains("2 backups would be removed"), "\(human.stdout)")

        let prune = try box.deployctl(["backups", "prune", "prod", "--keep-daily", "3", "--keep-within", "21d"])
        #expect(prune.status == 0, "\(prune.stderr)")
        #expect(Set(box.backupNames()) == Set(names.prefix(5)))
        #expect(box.allBackupFiles().count == 10, "a manifest outlived its backup or the reverse: \(box.allBackupFiles())")

        // Monthly: the two old backups are alone in their months and kept as such.
        let monthly = try Sandbox.document(try box.deployctl(["backups", "prune", "prod", "--keep-monthly", "10", "--dry-run", "--json"]))
        let kept = (monthly["decisions"] as! [[String: Any]]).filter { $0["keep"] as? Bool == true }.map { $0["name"] as! String }
        #expect(kept.contains(names[0]) && !kept.contains(names[2]), "\(kept)")
    }

    @Test("retention rules come from the instance config when the command line gives none, and a bad duration is a config error naming file and line")
    func configRules() throws {
        let box = try Sandbox(rows: 20)
        let names = try Self.yearOfBackups(box)
        try box.write("instances/prod/instance.toml", "[database]\npath = \"database/lending_app_prod.db\"\n[backups]\npath = \"backups\"\nkeep_within = \"3x\"\n")
        let bad = try box.deployctl(["snapshot", "prod", "--label", "nightly"])
        #expect(bad.status == 64)
        #expect(bad.stderr.contains("instance.toml:5") && bad.stderr.contains("keep_within") && bad.stderr.contains("14d"), "\(bad.stderr)")
        try box.write("instances/prod/instance.toml", "[database]\npath = \"database/lending_app_prod.db\"\n[backups]\npath = \"backups\"\nkeep_within = \"2w\"\n")
        let result = try box.deployctl(["snapshot", "prod", "--label", "nightly", "--json"])
        #expect(result.status == 0, "\(result.stderr)")
        let pruned = try #require(try Sandbox.document(result)["pruned"] as? [String])
        #expect(Set(pruned) == Set(names.suffix(3)), "\(pruned)")
        // A rule on the command line replaces the config's.
        let override = try Sandbox.document(try box.deployctl(["snapshot", "prod", "--label", "nightly", "--keep-last", "2", "--json"]))
        #expect((override["pruned"] as? [String])?.count == 4, "six nightly backups, two kept")
    }

    @Test("a prune that would empty a label needs --yes off a terminal: 64, and nothing removed")
    func emptyingNeedsYes() throws {
        let box = try Sandbox(rows: 20)
        for label in ["nightly", "nightly", "weekly"] { #expect(try box.deployctl(["snapshot", "prod", "--label", label]).status == 0) }
        let before = box.allBackupFiles()
        let refused = try box.deployctl(["backups", "prune", "prod", "--label", "nightly", "--keep-last", "0"])
        #expect(refused.status == 64)
        #expect(refused.stderr.contains("label nightly (2 removed)") && refused.stderr.contains("--yes"), "\(refused.stderr)")
        #expect(box.allBackupFiles() == before)
        // Keeping one of the label needs no confirmation.
        #expect(try box.deployctl(["backups", "prune", "prod", "--keep-last", "1"]).status == 0)
        #expect(box.backupNames().count == 2)
        let confirmed = try box.deployctl(["backups", "prune", "prod", "--label", "nightly", "--keep-last", "0", "--yes"])
        #expect(confirmed.status == 0, "\(confirmed.stderr)")
        #expect(box.backupNames().count == 1 && box.backupNames()[0].contains("_weekly_"))
        let none = try box.deployctl(["backups", "prune", "prod"])
        #expect(none.status == 64 && none.stderr.contains("at least one rule"), "\(none.stderr)")
    }

    @Test("a backup dated in the future is listed last and flagged, never taken by restore --latest, and kept by prune with the reason")
    func futureDatedBackup() throws {
        let box = try Sandbox(rows: 20)
        let (future, file) = try box.takeSnapshot(gzip: false)
        try Sandbox.redate(file, to: Date().addingTimeInterval(400 * 86_400))
        Thread.sleep(forTimeInterval: 1.1)
        #expect(try box.deployctl(["snapshot", "prod"]).status == 0)
        let listed = try box.listedBackups()
        #expect(listed.last?["name"] as? String == future && listed.last?["future_dated"] as? Bool == true)
        #expect(listed.first?["future_dated"] as? Bool == false)
        let human = try box.deployctl(["backups", "list", "prod"])
        #expect(human.stdout.contains("(future!)") && human.stdout.contains("warning: \(future) is dated"), "\(human.stdout)")
        let restore = try Sandbox.document(try box.deployctl(["restore", "prod", "--latest", "--dry-run", "--json"]))
        let restored = try #require(restore["backup"] as? String)
        #expect(restored != future && restored == listed.first?["name"] as? String)
        let prune = try Sandbox.document(try box.deployctl(["backups", "prune", "prod", "--keep-last", "1", "--dry-run", "--json"]))
        let decision = try #require((prune["decisions"] as? [[String: Any]])?.first { $0["name"] as? String == future })
        #expect((decision["reasons"] as? [String])?.first?.hasPrefix("dated in the future") == true, "\(decision)")
        // A prune that would leave only the future-dated one is emptying the label: refused.
        let emptying = try box.deployctl(["backups", "prune", "prod", "--keep-last", "0"])
        #expect(emptying.status == 64, "\(emptying.stderr)")
        #expect(box.backupNames().count == 2)
        #expect(try box.deployctl(["backups", "prune", "prod", "--keep-last", "0", "--yes"]).status == 0)
        #expect(box.backupNames() == [future])
        // restore --latest never takes it: nothing to restore, and it says what it passed over.
        let latest = try box.deployctl(["restore", "prod", "--latest", "--dry-run"])
        #expect(latest.status == 66, "\(latest.stderr)")
        #expect(latest.stderr.contains("passed over \(future): dated") && latest.stderr.contains("in the future"), "\(latest.stderr)")
    }

    @Test("a backup whose last check failed takes no place in --keep-last: the good one is kept, the failed one removed; status names it and the last verification")
    func failedBackupTakesNoSlot() throws {
        let box = try Sandbox(rows: 20)
        let (good, _) = try box.takeSnapshot(gzip: false)
        Thread.sleep(forTimeInterval: 1.1)
        #expect(try box.deployctl(["snapshot", "prod"]).status == 0)
        let bad = try #require(box.backupNames().first { $0 != good })
        let file = box.backupsFolder + "/" + bad
        var bytes = try Data(contentsOf: URL(fileURLWithPath: file))
        bytes[bytes.count / 2] ^= 0xFF
        try bytes.write(to: URL(fileURLWithPath: file))
        #expect(try box.deployctl(["backups", "verify", "prod", bad]).status == 65)
        let status = try Sandbox.document(try box.deployctl(["status", "prod", "--json"]))
        #expect(status["last_backup"] as? String == good, "a failed backup is not the last backup")
        #expect(status["failed_backups"] as? [String] == [bad])
        #expect((status["last_verification"] as? [String: Any])?["result"] as? String == "failed")
        let prune = try box.deployctl(["backups", "prune", "prod", "--keep-last", "1"])
        #expect(prune.status == 0, "\(prune.stderr)")
        #expect(box.backupNames() == [good])
    }

    @Test("an unfinished deploy journal that cannot be read stops prune (65, nothing removed) and snapshot's retention (warning)")
    func unreadableJournal() throws {
        let box = try Sandbox(rows: 20)
        for _ in 0..<2 { #expect(try box.deployctl(["snapshot", "prod"]).status == 0) }
        try box.write("instances/prod/.deployctl.journal", "{\"deploy_id\": tru")
        let before = box.backupNames()
        let prune = try box.deployctl(["backups", "prune", "prod", "--keep-last", "1"])
        #expect(prune.status == 65, "\(prune.stderr)")
        #expect(prune.stderr.contains(".deployctl.journal"), "\(prune.stderr)")
        #expect(box.backupNames() == before)
        let snapshot = try box.deployctl(["snapshot", "prod", "--keep-last", "1"])
        #expect(snapshot.status == 0 && snapshot.stderr.contains("retention did not run"), "\(snapshot.stderr)")
        #expect(box.backupNames().count == 3)
    }
}
