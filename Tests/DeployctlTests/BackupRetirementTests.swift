import Foundation
import Testing

/// Every backup can be retired: `backups remove` for any one (a damaged one included), and
/// the copies restores make kept by count and compressed later.
@Suite("backup retirement")
struct BackupRetirementTests {
    @Test("a damaged pre_* backup keeps status at 65 until 'backups remove' retires it (asks: --yes off a terminal); then status clears")
    func removeDamaged() throws {
        let box = try Sandbox(rows: 30)
        #expect(try box.deployctl(["snapshot", "prod"]).status == 0)
        sleep(1)
        #expect(try box.deployctl(["snapshot", "prod", "--label", "pre_cashback_tables", "--no-gzip"]).status == 0)
        let damaged = try #require(box.backupNames().first { $0.contains("pre_cashback_tables") })
        let file = box.backupsFolder + "/" + damaged
        // A flipped byte: the checksum no longer matches.
        var bytes = try Data(contentsOf: URL(fileURLWithPath: file))
        bytes[bytes.count / 2] ^= 0x40
        try bytes.write(to: URL(fileURLWithPath: file))
        #expect(try box.deployctl(["backups", "verify", "prod", damaged]).status == 65)
        let failing = try box.deployctl(["status", "prod"])
        #expect(failing.status == 65, "\(failing.stdout)\(failing.stderr)")
        #expect(failing.stdout.contains("retire it with 'deployctl backups remove prod \(damaged)'"), "\(failing.stdout)")
        // A later snapshot or prune does not clear it.
        #expect(try box.deployctl(["backups", "prune", "prod", "--keep-last", "1", "--yes"]).status == 0)
        #expect(FileManager.default.fileExists(atPath: file))

        let unasked = try box.deployctl(["backups", "remove", "prod", damaged])
        #expect(unasked.status == 64, "\(unasked.stderr)")
        #expect(unasked.stderr.contains("needs --yes when stdin is not a terminal; nothing was removed"), "\(unasked.stderr)")
        #expect(unasked.stderr.contains("Try: deployctl backups remove prod \(damaged) --yes"), "\(unasked.stderr)")
        #expect(FileManager.default.fileExists(atPath: file) && FileManager.default.fileExists(atPath: file + ".json"))

        let removed = try box.deployctl(["backups", "remove", "prod", damaged, "--yes"])
        #expect(removed.status == 0, "\(removed.stderr)")
        #expect(removed.stdout.contains("removed \(damaged) and its manifest"))
        #expect(!FileManager.default.fileExists(atPath: file) && !FileManager.default.fileExists(atPath: file + ".json"))
        let clear = try box.deployctl(["status", "prod"])
        #expect(clear.status == 0, "\(clear.stdout)\(clear.stderr)")
        #expect(box.backupNames().count == 1, "the good snapshot stays: \(box.backupNames())")
    }

    @Test("backups remove: a path is 64, an unknown backup 66, a file deployctl did not write 65 and stays; a manifest whose backup was rm'd is listed as such and retired")
    func removeBadInput() throws {
        let box = try Sandbox(rows: 10)
        #expect(try box.deployctl(["snapshot", "prod"]).status == 0)
        let name = try #require(box.backupNames().first)
        let path = try box.deployctl(["backups", "remove", "prod", "../database/lending_app_prod.db", "--yes"])
        #expect(path.status == 64 && path.code == "backup.invalid_name", "\(path.stderr)")
        let unknown = try box.deployctl(["backups", "remove", "prod", "lending_app_prod_snapshot_20200101_000000.db.gz", "--yes"])
        #expect(unknown.status == 66 && unknown.code == "backup.not_found", "\(unknown.stderr)")
        try Data("not mine".utf8).write(to: URL(fileURLWithPath: box.backupsFolder + "/notes.db"))
        let foreign = try box.deployctl(["backups", "remove", "prod", "notes.db", "--yes"])
        #expect(foreign.status == 65 && foreign.code == "backup.foreign_file" && foreign.stderr.contains("not a backup deployctl wrote"), "\(foreign.stderr)")
        #expect(FileManager.default.fileExists(atPath: box.backupsFolder + "/notes.db"))
        #expect(box.backupNames().contains(name))

        try FileManager.default.removeItem(atPath: box.backupsFolder + "/" + name)
        let list = try box.deployctl(["backups", "list", "prod"])
        #expect(list.stdout.contains("the manifest of \(name), whose file is gone"), "\(list.stdout)")
        let retired = try box.deployctl(["backups", "remove", "prod", name, "--yes"])
        #expect(retired.status == 0, "\(retired.stderr)")
        #expect(retired.stdout.contains("removed the manifest \(name).json"), "\(retired.stdout)")
        #expect(!FileManager.default.fileExists(atPath: box.backupsFolder + "/" + name + ".json"))
        #expect(!(try box.deployctl(["backups", "list", "prod"]).stdout.contains(name)))

        // The snapshot a killed deploy's journal names is what finishes or undoes that deploy.
        try box.installCashbackMigration()
        #expect(try box.deployctl(["deploy", "prod", "--yes"], environment: ["DEPLOYCTL_FAILPOINTS": "rehearse=crash"]).status != 0)
        let needed = try #require(box.backupNames().first { $0.contains("_pre_cashback_tables_") })
        let refused = try box.deployctl(["backups", "remove", "prod", needed, "--yes"])
        #expect(refused.status == 64 && refused.stderr.contains("\(needed) is not removed: an unfinished deploy refers to it"), "\(refused.stderr)")
        #expect(refused.stderr.contains("finish or undo the unfinished one first (e.g. deployctl deploy prod)"), "\(refused.stderr)")
        #expect(box.backupNames().contains(needed))
    }

    @Test("restores keep the last 2 pre_restore copies; the next snapshot with compress = gzip stores them gzip-compressed, verified, with the same content; keep_restore_copies = 1 is honoured by prune")
    func restoreCopies() throws {
        let box = try Sandbox(rows: 40)
        #expect(try box.deployctl(["snapshot", "prod", "--no-gzip", "--label", "nightly"]).status == 0)
        for round in 1...3 {
            // A change each time, so each restore replaces a different state.
            _ = try box.sqlite(box.databasePath, "INSERT INTO user VALUES (\(100_000 + round), 'r', 'r\(round)@x')")
            let restored = try box.deployctl(["restore", "prod", "--latest", "--yes"])
            #expect(restored.status == 0, "\(restored.stderr)")
            sleep(1)
        }
        var copies = box.backupNames().filter { $0.contains("_pre_restore_") }
        #expect(copies.count == 2, "\(box.backupNames())")
        #expect(copies.allSatisfy { $0.hasSuffix(".db") })
        // Their content as written: rows 100002 and 100003 (the first copy was retired).
        let contents = try copies.map { try box.sha3(box.backupsFolder + "/" + $0) }
        // Kept aside, to play a crash after the compressed copies were made and before the plain ones went.
        let aside = box.path("aside")
        try FileManager.default.createDirectory(atPath: aside, withIntermediateDirectories: true)
        for copy in copies {
            for file in [copy, copy + ".json"] { try FileManager.default.copyItem(atPath: box.backupsFolder + "/" + file, toPath: aside + "/" + file) }
        }
        #expect(try copies.map { try box.sqlite(box.backupsFolder + "/" + $0, "SELECT max(id) FROM user") }.sorted() == ["100002", "100003"])

        try box.write("instances/prod/instance.toml", """
            [database]
            path = "database/lending_app_prod.db"
            [backups]
            path = "backups"
            compress = "gzip"
            """)
        let snapshot = try box.deployctl(["snapshot", "prod"])
        #expect(snapshot.status == 0, "\(snapshot.stderr)")
        copies = box.backupNames().filter { $0.contains("_pre_restore_") }
        #expect(copies.count == 2 && copies.allSatisfy { $0.hasSuffix(".db.gz") }, "\(copies)")
        var inflated = [String]()
        for copy in copies {
            let out = box.path("inflated-\(copy).db")
            let gunzip = try Sandbox.exec("/bin/sh", ["-c", "gunzip -c '\(box.backupsFolder)/\(copy)' > '\(out)'"])
            #expect(gunzip.status == 0, "\(gunzip.stderr)")
            inflated.append(try box.sha3(out))
        }
        #expect(Set(inflated) == Set(contents), "the compressed copies hold other content")
        let listed = try box.listedBackups().filter { ($0["label"] as? String) == "pre_restore" }
        #expect(listed.count == 2 && listed.allSatisfy { $0["status"] as? String == "verified" }, "\(listed)")
        // The crash: the plain copies are back beside their compressed ones. The next run removes
        // them (their compressed_from copies checked good) and makes no third copy.
        let compressed = Set(copies)
        for file in try FileManager.default.contentsOfDirectory(atPath: aside) {
            try FileManager.default.copyItem(atPath: aside + "/" + file, toPath: box.backupsFolder + "/" + file)
        }
        #expect(try box.deployctl(["snapshot", "prod"]).status == 0)
        #expect(Set(box.backupNames().filter { $0.contains("_pre_restore_") }) == compressed, "\(box.backupNames())")
        // Still restorable as the state before the last restore.
        let undo = try box.deployctl(["restore", "prod", "--latest", "--label", "pre_restore", "--yes"])
        #expect(undo.status == 0, "\(undo.stderr)")
        #expect(try box.sqlite(box.databasePath, "SELECT max(id) FROM user") == "100003")

        try box.write("instances/prod/instance.toml", """
            [database]
            path = "database/lending_app_prod.db"
            [backups]
            path = "backups"
            keep_restore_copies = 1
            """)
        let prune = try box.deployctl(["backups", "prune", "prod", "--keep-last", "5", "--yes"])
        #expect(prune.status == 0, "\(prune.stderr)")
        #expect(box.backupNames().filter { $0.contains("_pre_restore_") }.count == 1, "\(box.backupNames())")
        #expect(box.backupNames().contains { $0.contains("_nightly_") })
    }
}
