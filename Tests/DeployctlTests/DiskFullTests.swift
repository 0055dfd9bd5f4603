import Foundation
import Testing

/// Disk full mid-snapshot and mid-restore, on a real full filesystem: a small tmpfs mounted for
/// the test (needs root, as CI and the development machines run).
@Suite("disk full", .serialized, .enabled(if: getuid() == 0, "mounting a small tmpfs needs root"))
struct DiskFullTests {
    /// Mounts a tmpfs of `kib` KiB at a new folder and returns it; `unmount` removes it.
    func mountSmallFilesystem(kib: Int) throws -> String {
        let folder = NSTemporaryDirectory() + "deployctl-full-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        let result = try Sandbox.exec("/bin/mount", ["-t", "tmpfs", "-o", "size=\(kib)k", "tmpfs", folder])
        try #require(result.status == 0, "mount failed: \(result.stderr)")
        return folder
    }

    func unmount(_ folder: String) {
        _ = try? Sandbox.exec("/bin/umount", [folder])
        try? FileManager.default.removeItem(atPath: folder)
    }

    /// Turns the free-space preflight off, so that a test reaches the out-of-space handling of
    /// the writes themselves.
    static let noPreflight = ["DEPLOYCTL_FAILPOINTS": "free-space=skip"]

    /// Checks the preflight's refusal: 74, naming the folder and the bytes, before writing.
    func expectRefusedEarly(_ result: Sandbox.Result, folder: String) {
        #expect(result.status == 74, "\(result.stderr)")
        #expect(result.stderr.contains("not enough free space") && result.stderr.contains(folder) && result.stderr.contains(" bytes, estimated)"), "\(result.stderr)")
        #expect(result.stderr.contains("nothing was written"), "\(result.stderr)")
    }

    @Test("an online rebuild whose shadow copy does not fit beside the database: refused in preflight with 74 (or, past the preflight, stopped by the full disk with 74), the live table as it was",
          arguments: [true, false])
    func onlineCopyDiskFull(preflight: Bool) throws {
        let box = try OnlineRebuildTests.box(rows: 20_000)
        _ = try box.takeSnapshot(gzip: false)
        _ = try box.sqlite(box.databasePath, "PRAGMA wal_checkpoint(TRUNCATE)")
        // The database alone on a filesystem with room for it and its WAL, not for a second `user`.
        let folder = (box.databasePath as NSString).deletingLastPathComponent
        let aside = box.path("aside.db")
        try FileManager.default.moveItem(atPath: box.databasePath, toPath: aside)
        let bytes = try #require((try FileManager.default.attributesOfItem(atPath: aside)[.size] as? NSNumber)?.intValue)
        let mounted = try Sandbox.exec("/bin/mount", ["-t", "tmpfs", "-o", "size=\(bytes / 1024 + 400)k", "tmpfs", folder])
        try #require(mounted.status == 0, "mount failed: \(mounted.stderr)")
        defer { _ = try? Sandbox.exec("/bin/umount", [folder]) }
        try FileManager.default.copyItem(atPath: aside, toPath: box.databasePath)
        let before = try box.sha3(box.databasePath)
        let schema = try box.sqlite(box.databasePath, "SELECT sql FROM sqlite_schema ORDER BY name")

        let result = try box.deployctl(["deploy", "prod", "--online"], environment: preflight ? [:] : Self.noPreflight)
        #expect(result.status == 74, "\(result.stdout)\(result.stderr)")
        if preflight {
            #expect(result.stderr.contains("the online rebuild's copy of user and its indexes"), "\(result.stderr)")
            #expect(try box.sqlite(box.databasePath, "SELECT sql FROM sqlite_schema ORDER BY name") == schema, "\(result.stderr)")
            #expect(box.backupNames().count == 1, "refused before the snapshot")
        } else {
            // The full disk can stop the clean-up too: then the next deploy removes the leftovers.
            #expect(result.stderr.lowercased().contains("full"), "\(result.stderr)")
            #expect(try box.sqlite(box.databasePath, "SELECT sql FROM sqlite_schema WHERE name = 'user'") == schema.split(separator: "\n").first { $0.contains("TABLE user") }.map(String.init))
        }
        #expect(try box.sha3(box.databasePath) == before || !preflight)
        #expect(try box.sqlite(box.databasePath, "SELECT count(*) FROM user") == "20000")
        #expect(try box.sqlite(box.databasePath, "PRAGMA integrity_check") == "ok")
        if !preflight, try box.sqlite(box.databasePath, "SELECT count(*) FROM sqlite_schema WHERE name = '_deployctl_online_state'") == "1" {
            let status = try box.deployctl(["status", "prod"])
            #expect(status.stdout.contains("an online rebuild of user left its shadow table and triggers"), "\(status.stdout)")
        }
        // With room again (the tmpfs gone, the database back on the sandbox's disk), the deploy
        // removes what is left and runs online.
        let now = box.path("now.db")
        for suffix in ["", "-wal"] where FileManager.default.fileExists(atPath: box.databasePath + suffix) {
            try FileManager.default.copyItem(atPath: box.databasePath + suffix, toPath: now + suffix)
        }
        _ = try? Sandbox.exec("/bin/umount", [folder])
        for suffix in ["", "-wal"] where FileManager.default.fileExists(atPath: now + suffix) {
            try? FileManager.default.removeItem(atPath: box.databasePath + suffix)
            try FileManager.default.moveItem(atPath: now + suffix, toPath: box.databasePath + suffix)
        }
        let again = try box.deployctl(["deploy", "prod", "--online"])
        #expect(again.status == 0, "\(again.stdout)\(again.stderr)")
        #expect(try box.sqlite(box.databasePath, "SELECT count(*) FROM user WHERE tier = 'basic'") == "20000")
        #expect(try box.sqlite(box.databasePath, "SELECT count(*) FROM sqlite_schema WHERE name LIKE '%deployctl_online%' OR name = 'new_user'") == "0")
    }

    @Test("a snapshot into a full disk fails with 74, leaves no partial file, and the live database is untouched: refused by the preflight, or by the write itself",
          arguments: [false, true], [true, false])
    func snapshotDiskFull(gzip: Bool, preflight: Bool) throws {
        let box = try Sandbox(rows: 3000)
        let small = try mountSmallFilesystem(kib: 256)
        defer { unmount(small) }
        try box.write("instances/prod/instance.toml", "[database]\npath = \"database/lending_app_prod.db\"\n[backups]\npath = \"\(small)/backups\"\n")
        let before = try box.sha3(box.databasePath)
        let result = try box.deployctl(["snapshot", "prod", gzip ? "--gzip" : "--no-gzip"], environment: preflight ? [:] : Self.noPreflight)
        if preflight {
            expectRefusedEarly(result, folder: small + "/backups")
        } else {
            #expect(result.status == 74, "\(result.stderr)")
            #expect(result.stderr.lowercased().contains("full") || result.stderr.contains("No space"), "\(result.stderr)")
        }
        #expect(((try? FileManager.default.contentsOfDirectory(atPath: small + "/backups")) ?? []).isEmpty)
        #expect(try box.sha3(box.databasePath) == before)
    }

    @Test("the free-space estimate is the database's pages, not a large checkpointed -wal a killed application left: the snapshot fits and is taken")
    func checkpointedWalNotCounted() throws {
        let box = try Sandbox(journalMode: "wal", rows: 300)
        // The application commits many small transactions without checkpointing, checkpoints
        // passively, and is killed: its -wal stays, every frame already in the database.
        let app = try Sandbox.exec("/usr/bin/python3", ["-c", """
            import os, sqlite3
            db = sqlite3.connect('\(box.databasePath)', isolation_level=None)
            db.execute('PRAGMA wal_autocheckpoint=0')
            for i in range(3000):
                db.execute('UPDATE loan SET rate = rate + 1 WHERE id = ?', (1 + i % 300,))
            db.execute('PRAGMA wal_checkpoint(PASSIVE)')
            os.kill(os.getpid(), 9)
            """])
        #expect(app.status != 0)
        let wal = try #require(FileManager.default.attributesOfItem(atPath: box.databasePath + "-wal")[.size] as? Int)
        let database = try #require(FileManager.default.attributesOfItem(atPath: box.databasePath)[.size] as? Int)
        try #require(wal > database * 8, "the -wal (\(wal)) should dwarf the database (\(database))")
        let small = try mountSmallFilesystem(kib: max(512, database * 3 / 1024))
        defer { unmount(small) }
        try #require(freeBytes(small) < wal)
        try box.write("instances/prod/instance.toml", "[database]\npath = \"database/lending_app_prod.db\"\n[backups]\npath = \"\(small)/backups\"\n")
        let result = try box.deployctl(["snapshot", "prod", "--no-gzip"])
        #expect(result.status == 0, "\(result.stderr)")
    }

    @Test("a deploy whose snapshot and rehearsal copy do not fit is refused in preflight with 74: no hook run, nothing written, no journal")
    func deployDiskFull() throws {
        let box = try Sandbox(rows: 3000)
        try box.installCashbackMigration()
        let small = try mountSmallFilesystem(kib: 256)
        defer { unmount(small) }
        try box.write("instances/prod/instance.toml", "[database]\npath = \"database/lending_app_prod.db\"\n[backups]\npath = \"\(small)/backups\"\n[hooks]\nstop = \"touch stopped\"\n")
        let before = try box.sha3(box.databasePath)
        let result = try box.deployctl(["deploy", "prod", "--skip-promotion-check"])
        expectRefusedEarly(result, folder: small + "/backups")
        #expect(result.stderr.contains("the rehearsal copy") || result.stderr.contains("the plan's copy"), "\(result.stderr)")
        #expect(!FileManager.default.fileExists(atPath: box.path("instances/prod/stopped")), "the stop hook ran before the space check")
        #expect(!FileManager.default.fileExists(atPath: box.path("instances/prod/.deployctl.journal")))
        #expect(((try? FileManager.default.contentsOfDirectory(atPath: small + "/backups")) ?? []).isEmpty)
        #expect(try box.sha3(box.databasePath) == before)
    }

    @Test("a restore into a new file on a full disk fails with 74 and leaves nothing behind", arguments: [true, false])
    func restoreDiskFull(preflight: Bool) throws {
        let box = try Sandbox(rows: 3000)
        #expect(try box.deployctl(["snapshot", "prod", "--gzip"]).status == 0)
        let small = try mountSmallFilesystem(kib: 256)
        defer { unmount(small) }
        let before = try box.sha3(box.databasePath)
        let result = try box.deployctl(["restore", "prod", "--latest", "--to", small + "/copy.db"], environment: preflight ? [:] : Self.noPreflight)
        #expect(result.status == 74, "\(result.stderr)")
        if preflight { expectRefusedEarly(result, folder: small) }
        #expect(try FileManager.default.contentsOfDirectory(atPath: small).isEmpty)
        #expect(try box.sha3(box.databasePath) == before)
    }

    @Test("inflating a .gz backup onto a full disk fails with 74 and leaves only the backup behind")
    func inflateDiskFull() throws {
        let box = try Sandbox(rows: 3000)
        let (name, file) = try box.takeSnapshot(gzip: true)
        let gzBytes = try #require(FileManager.default.attributesOfItem(atPath: file)[.size] as? Int)
        let databaseBytes = try #require(FileManager.default.attributesOfItem(atPath: box.databasePath)[.size] as? Int)
        // Room for the backup and its manifest, not for the database inflated from it.
        let kib = gzBytes / 1024 + 64
        try #require(databaseBytes > kib * 1024, "the database must not fit beside its backup")
        let small = try mountSmallFilesystem(kib: kib)
        defer { unmount(small) }
        try FileManager.default.createDirectory(atPath: small + "/backups", withIntermediateDirectories: false)
        for file in [name, name + ".json"] {
            try FileManager.default.copyItem(atPath: box.backupsFolder + "/" + file, toPath: small + "/backups/" + file)
        }
        try box.write("instances/prod/instance.toml", "[database]\npath = \"database/lending_app_prod.db\"\n[backups]\npath = \"\(small)/backups\"\n")
        let before = try box.sha3(box.databasePath)

        let verify = try box.deployctl(["backups", "verify", "prod", name])
        #expect(verify.status == 74 && verify.code == "file.no_space", "\(verify.stdout)\(verify.stderr)")
        #expect(verify.stderr.lowercased().contains("full") || verify.stderr.contains("No space"), "\(verify.stderr)")
        let restore = try box.deployctl(["restore", "prod", name, "--yes"], environment: Self.noPreflight)
        #expect(restore.status == 74, "\(restore.stderr)")
        expectRefusedEarly(try box.deployctl(["restore", "prod", name, "--yes"]), folder: small + "/backups")
        #expect(try FileManager.default.contentsOfDirectory(atPath: small + "/backups").sorted() == [name, name + ".json"])
        #expect(try box.sha3(box.databasePath) == before)
    }

    /// Free bytes on the filesystem holding `path`.
    func freeBytes(_ path: String) -> Int {
        var info = statvfs()
        statvfs(path, &info)
        return Int(info.f_bavail) * Int(info.f_frsize)
    }

    @Test("a restore into the live database on a full disk exits 74 and leaves it as it was: the saved copy does not fit, or the commit does not",
          arguments: ["saved copy", "commit"])
    func restoreLiveDiskFull(where full: String) throws {
        let box = try Sandbox(journalMode: "wal", rows: 3000)
        let small = try mountSmallFilesystem(kib: 8192)
        defer { unmount(small) }
        let database = small + "/database/lending_app_prod.db"
        try FileManager.default.createDirectory(atPath: small + "/database", withIntermediateDirectories: false)
        #expect(try box.sqlite(box.databasePath, "VACUUM INTO '\(database)'").isEmpty)
        _ = try box.sqlite(database, "PRAGMA journal_mode=wal")
        try box.write("instances/prod/instance.toml", "[database]\npath = \"\(database)\"\n[backups]\npath = \"\(small)/backups\"\n")
        #expect(try box.deployctl(["snapshot", "prod"]).status == 0)
        _ = try box.sqlite(database, "DELETE FROM payment WHERE id % 2 = 0; PRAGMA wal_checkpoint(TRUNCATE);")
        let before = try box.sha3(database)
        let files = try FileManager.default.contentsOfDirectory(atPath: small + "/backups").sorted()
        let databaseBytes = try #require(FileManager.default.attributesOfItem(atPath: database)[.size] as? Int)
        // Leave half the database's size free (the saved copy cannot be written), or one and a
        // half (it can, but the restore's WAL frames, a whole database more, cannot).
        let leave = full == "saved copy" ? databaseBytes / 2 : databaseBytes * 3 / 2
        let filler = try #require(FileManager.default.createFile(atPath: small + "/filler", contents: Data(count: freeBytes(small) - leave)) ? small + "/filler" : nil)
        _ = filler

        // Both cases are refused before anything is written; without the preflight, the writes
        // themselves run out of space and are undone.
        expectRefusedEarly(try box.deployctl(["restore", "prod", "--latest", "--yes"]), folder: small + "/backups")
        let result = try box.deployctl(["restore", "prod", "--latest", "--yes"], environment: Self.noPreflight)
        #expect(result.status == 74, "\(result.stdout)\(result.stderr)")
        #expect(!result.stderr.contains("failed too"))
        // The commit case fails inside SQLite's transaction, after the copy was saved.
        #expect(result.stderr.contains("rolled back") == (full == "commit"), "\(result.stderr)")
        #expect(try box.sha3(database) == before)
        #expect(try box.sqlite(database, "PRAGMA integrity_check") == "ok")
        #expect(try FileManager.default.contentsOfDirectory(atPath: small + "/backups").sorted() == files, "a saved copy or temp file was left")
    }

    @Test("a restore into a database on a read-only filesystem exits 73 and changes nothing")
    func readOnlyDatabase() throws {
        let box = try Sandbox(journalMode: "delete")
        let small = try mountSmallFilesystem(kib: 4096)
        defer { unmount(small) }
        let database = small + "/lending_app_prod.db"
        try FileManager.default.copyItem(atPath: box.databasePath, toPath: database)
        try box.write("instances/prod/instance.toml", "[database]\npath = \"\(database)\"\n[backups]\npath = \"backups\"\n")
        #expect(try box.deployctl(["snapshot", "prod"]).status == 0)
        _ = try box.sqlite(database, "DELETE FROM payment WHERE id <= 10")
        let before = try box.sha3(database)
        #expect(try Sandbox.exec("/bin/mount", ["-o", "remount,ro", small]).status == 0)
        let files = box.allBackupFiles()
        let result = try box.deployctl(["restore", "prod", "--latest", "--yes"])
        #expect(result.status == 73 && result.code == "restore.live_read_only", "\(result.stdout)\(result.stderr)")
        #expect(result.stderr.contains("read-only") || result.stderr.contains("cannot be written"), "\(result.stderr)")
        #expect(!result.stderr.contains("failed too"))
        #expect(try box.sha3(database) == before)
        #expect(box.allBackupFiles() == files)
    }

    @Test("restore --to into a read-only folder from a compressed backup is 73, as from a plain one, and leaves nothing", arguments: [false, true])
    func restoreToReadOnly(gzip: Bool) throws {
        let box = try Sandbox(rows: 300)
        let (name, _) = try box.takeSnapshot(gzip: gzip)
        let small = try mountSmallFilesystem(kib: 4096)
        defer { unmount(small) }
        #expect(try Sandbox.exec("/bin/mount", ["-o", "remount,ro", small]).status == 0)
        let result = try box.deployctl(["restore", "prod", name, "--to", small + "/copy.db"])
        #expect(result.status == 73 && result.code == "file.cannot_create", "\(result.stderr)")
        #expect(box.allBackupFiles().allSatisfy { !$0.hasPrefix(".tmp-") })
    }
}
