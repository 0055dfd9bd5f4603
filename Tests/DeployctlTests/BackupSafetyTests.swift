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
        let prune = try box.deployctl(["backups", "prune", "prod", "--keep-last", "0"])
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
