import Backup
import Foundation
import Testing

@Suite("snapshot")
struct SnapshotTests {
    @Test("a snapshot holds the live content and is stored as SPEC.md says", arguments: ["wal", "delete"], [false, true])
    func snapshotMatchesSource(journalMode: String, gzip: Bool) throws {
        let box = try Sandbox(journalMode: journalMode)
        let before = try box.sha3(box.databasePath)
        let result = try box.deployctl(["snapshot", "prod", "--verify", "--json"] + (gzip ? ["--gzip"] : ["--no-gzip"]))
        #expect(result.status == 0, "\(result.stderr)")
        let names = box.backupNames()
        #expect(names.count == 1)
        let name = try #require(names.first)
        #expect(name.hasPrefix("lending_app_prod_snapshot_") && name.hasSuffix(gzip ? ".db.gz" : ".db"))
        let file = box.backupsFolder + "/" + name
        var plain = file
        if gzip {
            #expect(try Sandbox.exec("/bin/gzip", ["-t", file]).status == 0)
            plain = box.path("restored.db")
            let out = try Sandbox.exec("/bin/sh", ["-c", "gunzip -c '\(file)' > '\(plain)'"])
            #expect(out.status == 0)
        }
        #expect(try box.sqlite(plain, "PRAGMA integrity_check") == "ok")
        #expect(try box.sqlite(plain, "PRAGMA journal_mode") == "delete")
        #expect(try box.sha3(plain) == before)
        // Manifest: sha256 of the stored file, permissions 0600.
        let manifest = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: file + ".json"))) as! [String: Any]
        let sum = try Sandbox.exec("/usr/bin/sha256sum", [file]).stdout.split(separator: " ").first.map(String.init)
        #expect(manifest["sha256"] as? String == sum)
        #expect(manifest["label"] as? String == "snapshot")
        #expect(manifest["compressed"] as? Bool == gzip)
        #expect(manifest["verified_at"] != nil)
        let attributes = try FileManager.default.attributesOfItem(atPath: file)
        #expect((attributes[.posixPermissions] as? NSNumber)?.intValue == 0o600)
        // The backups folder deployctl made has its parent's mode (DurableFile.createFolder).
        let folder = try FileManager.default.attributesOfItem(atPath: box.backupsFolder)
        let parent = try FileManager.default.attributesOfItem(atPath: (box.backupsFolder as NSString).deletingLastPathComponent)
        #expect((folder[.posixPermissions] as? NSNumber)?.intValue == (parent[.posixPermissions] as? NSNumber)?.intValue)
        #expect(box.allBackupFiles().allSatisfy { !$0.hasPrefix(".") }, "temp files left: \(box.allBackupFiles())")
        #expect(try box.sha3(box.databasePath) == before)
    }

    @Test("WAL snapshots, compressed and plain, complete while another process commits every few milliseconds; each plain one's manifest sha256 is sha256sum's (hashed as it was written)")
    func snapshotUnderWriter() throws {
        let box = try Sandbox(journalMode: "wal", rows: 3000)
        let writer = Process()
        writer.executableURL = URL(fileURLWithPath: "/usr/bin/python3")
        writer.arguments = ["-c", """
            import sqlite3, time
            db = sqlite3.connect('\(box.databasePath)', timeout=5, isolation_level=None)
            db.execute('CREATE TABLE IF NOT EXISTS ticks (id INTEGER PRIMARY KEY, at REAL)')
            end = time.time() + 6
            while time.time() < end:
                db.execute('INSERT INTO ticks (at) VALUES (?)', (time.time(),))
                time.sleep(0.003)
            """]
        try writer.run()
        defer { writer.terminate(); writer.waitUntilExit() }
        Thread.sleep(forTimeInterval: 0.3)
        for round in 0..<6 {
            let result = try box.deployctl(["snapshot", "prod", round % 2 == 0 ? "--gzip" : "--no-gzip"])
            #expect(result.status == 0, "\(result.stderr)")
        }
        #expect(box.backupNames().count == 6)
        for name in box.backupNames() where name.hasSuffix(".db") {
            let file = box.backupsFolder + "/" + name
            let manifest = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: file + ".json"))) as! [String: Any]
            #expect(manifest["sha256"] as? String == String(try Sandbox.exec("/usr/bin/sha256sum", [file]).stdout.prefix(64)))
        }
        let verify = try box.deployctl(["backups", "verify", "prod", "--all"])
        #expect(verify.status == 0, "\(verify.stdout)\(verify.stderr)")
    }

    @Test("an application holding its database locked past the busy timeout: the snapshot waits one busy timeout (2 s here), not one per read, exits 75 naming the database and the holder, and leaves nothing",
          arguments: [("delete", "--no-gzip"), ("delete", "--gzip"), ("wal", "--no-gzip")])
    func lockedPastBusyTimeout(journalMode: String, compression: String) throws {
        let box = try Sandbox(journalMode: journalMode)
        let before = try box.sha3(box.databasePath)
        let holder = Process()
        holder.executableURL = URL(fileURLWithPath: "/usr/bin/python3")
        // Rollback journal: an EXCLUSIVE lock (mid-commit); WAL: exclusive locking mode.
        holder.arguments = ["-c", """
            import sqlite3, sys
            db = sqlite3.connect('\(box.databasePath)', isolation_level=None)
            if '\(journalMode)' == 'wal': db.execute('PRAGMA locking_mode = EXCLUSIVE')
            db.execute('BEGIN EXCLUSIVE')
            db.execute("INSERT INTO user VALUES (999999, 'x', 'x@x')")
            print('locked', flush=True)
            sys.stdin.read()
            db.execute('ROLLBACK')
            """]
        let out = Pipe(), release = Pipe()
        holder.standardOutput = out
        holder.standardInput = release
        try holder.run()
        // Closing its input ends the holder (a signal may be blocked in the test runner).
        defer { try? release.fileHandleForWriting.close(); holder.waitUntilExit() }
        _ = out.fileHandleForReading.availableData
        let started = Date()
        let result = try box.deployctl(["snapshot", "prod", compression])
        let waited = Date().timeIntervalSince(started)
        #expect(result.status == 75 && result.code == "lock.database_busy", "\(result.stdout)\(result.stderr)")
        #expect(waited >= 1.9 && waited < 3.9, "waited \(waited) s with busy_timeout_ms = 2000")
        #expect(result.stderr.contains(box.databasePath) && result.stderr.contains("PID \(holder.processIdentifier)"), "\(result.stderr)")
        #expect(!result.stderr.contains(".tmp-"), "the error names a temp file: \(result.stderr)")
        #expect(box.allBackupFiles().isEmpty, "left: \(box.allBackupFiles())")
        try release.fileHandleForWriting.close()
        holder.waitUntilExit()
        #expect(try box.sha3(box.databasePath) == before)
    }

    @Test("two snapshots in the same second are both kept under distinct names")
    func sameSecond() throws {
        let box = try Sandbox(rows: 20)
        let store = BackupStore(folder: box.backupsFolder, databasePath: box.databasePath)
        let now = Date(timeIntervalSince1970: 1_800_000_000)
        let first = try Snapshotter(store: store).snapshot(SnapshotRequest(databasePath: box.databasePath, label: "snapshot", now: now))
        let second = try Snapshotter(store: store).snapshot(SnapshotRequest(databasePath: box.databasePath, label: "snapshot", now: now))
        let third = try Snapshotter(store: store).snapshot(SnapshotRequest(databasePath: box.databasePath, label: "snapshot", gzip: true, now: now))
        #expect(first.name == "lending_app_prod_snapshot_20270115_080000.db")
        #expect(second.name == "lending_app_prod_snapshot_20270115_080000_1.db")
        #expect(third.name == "lending_app_prod_snapshot_20270115_080000_2.db.gz")
        #expect(box.backupNames().count == 3)
        // A prune removes the last two; the next snapshot of that second still gets a new name.
        try store.remove([second, third])
        let fourth = try Snapshotter(store: store).snapshot(SnapshotRequest(databasePath: box.databasePath, label: "snapshot", now: now))
        #expect(fourth.name == "lending_app_prod_snapshot_20270115_080000_3.db")
        // Newest first means issued last first, `_10` and `_11` after `_9` (not as strings sort).
        for _ in 4...11 { _ = try Snapshotter(store: store).snapshot(SnapshotRequest(databasePath: box.databasePath, label: "snapshot", now: now)) }
        #expect(store.entries().prefix(3).map(\.name) == ["_11", "_10", "_9"].map { "lending_app_prod_snapshot_20270115_080000\($0).db" })
    }

    @Test("--keep-last prunes per label after success, and backups list shows newest first")
    func retentionAndList() throws {
        let box = try Sandbox(rows: 20)
        for label in ["nightly", "nightly", "nightly", "pre_cashback_tables"] {
            #expect(try box.deployctl(["snapshot", "prod", "--label", label]).status == 0)
        }
        let keep = try box.deployctl(["snapshot", "prod", "--label", "nightly", "--keep-last", "2"])
        #expect(keep.status == 0, "\(keep.stderr)")
        let entries = try box.listedBackups()
        #expect(entries.filter { $0["label"] as? String == "nightly" }.count == 2)
        #expect(entries.filter { $0["label"] as? String == "pre_cashback_tables" }.count == 1)
        for key in ["name", "path", "created_at", "bytes", "compressed", "label", "sha256", "status", "verified_at"] {
            #expect(entries[0].keys.contains(key) || key == "verified_at", "missing \(key)")
        }
        let dates = entries.compactMap { $0["created_at"] as? String }
        #expect(dates == dates.sorted(by: >))
        // Prune never removes the newest backup of a pre_* label.
        let prune = try box.deployctl(["backups", "prune", "prod", "--keep-last", "0", "--yes"])
        #expect(prune.status == 0, "\(prune.stderr)")
        #expect(box.backupNames().count == 1)
        #expect(box.backupNames().first?.contains("pre_cashback_tables") == true)
        #expect(box.allBackupFiles().count == 2)
    }

    @Test("a cron snapshot with --quiet prints nothing")
    func quiet() throws {
        let box = try Sandbox(rows: 10)
        let result = try box.deployctl(["snapshot", "prod", "--gzip", "--label", "nightly", "--keep-last", "14", "--quiet"])
        #expect(result.status == 0)
        #expect(result.stdout.isEmpty && result.stderr.isEmpty)
    }

    @Test("a .gz written by gzip -9 (one member, no length field) is read by deployctl: verify passes and restore --to gives the same database")
    func foreignGzipRead() throws {
        let box = try Sandbox(rows: 2000)
        let (name, file) = try box.takeSnapshot(gzip: false)
        let gzName = String(name.dropLast(3)) + "_9.db.gz"
        let gzPath = box.backupsFolder + "/" + gzName
        let gz = try Sandbox.exec("/bin/sh", ["-c", "gzip -9 -c '\(file)' > '\(gzPath)'"])
        try #require(gz.status == 0, "\(gz.stderr)")
        var manifest = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: file + ".json"))) as! [String: Any]
        manifest["name"] = gzName
        manifest["compressed"] = true
        try JSONSerialization.data(withJSONObject: manifest).write(to: URL(fileURLWithPath: gzPath + ".json"))
        try Sandbox.rewriteManifestChecksum(of: gzPath)
        let verify = try box.deployctl(["backups", "verify", "prod", gzName])
        #expect(verify.status == 0, "\(verify.stdout)\(verify.stderr)")
        let copy = box.path("restored.db")
        let restore = try box.deployctl(["restore", "prod", gzName, "--to", copy])
        #expect(restore.status == 0, "\(restore.stderr)")
        #expect(try box.sha3(copy) == box.sha3(file))
    }

    @Test("--compress zstd writes .db.zst frames that zstd -t and zstd -d read; deployctl verifies and restores it; config compress = \"zstd\" does the same")
    func zstdSnapshot() throws {
        let box = try Sandbox(rows: 3000)
        let result = try box.deployctl(["snapshot", "prod", "--compress", "zstd", "--json"])
        #expect(result.status == 0, "\(result.stderr)")
        let name = try #require((try Sandbox.document(result)["backup"] as? [String: Any])?["name"] as? String)
        #expect(name.hasSuffix(".db.zst"))
        let file = box.backupsFolder + "/" + name
        #expect(try Sandbox.exec("/usr/bin/zstd", ["-q", "-t", file]).status == 0)
        let plain = box.path("plain.db")
        #expect(try Sandbox.exec("/usr/bin/zstd", ["-q", "-d", file, "-o", plain]).status == 0)
        #expect(try box.sha3(plain) == box.sha3(box.databasePath))
        #expect(try box.deployctl(["backups", "verify", "prod", name]).status == 0)
        let listed = try box.listedBackups()
        #expect(listed.first?["compression"] as? String == "zstd" && listed.first?["compressed"] as? Bool == true)
        let copy = box.path("restored.db")
        #expect(try box.deployctl(["restore", "prod", name, "--to", copy]).status == 0)
        #expect(try box.sha3(copy) == box.sha3(box.databasePath))
        try box.write("instances/prod/instance.toml", "[database]\npath = \"database/lending_app_prod.db\"\n[backups]\npath = \"backups\"\ncompress = \"zstd\"\n")
        Thread.sleep(forTimeInterval: 1.1)
        #expect(try box.deployctl(["snapshot", "prod"]).status == 0)
        #expect(box.backupNames().filter { $0.hasSuffix(".db.zst") }.count == 2)
        try box.write("instances/prod/instance.toml", "[database]\npath = \"database/lending_app_prod.db\"\n[backups]\ncompress = \"lz4\"\n")
        let bad = try box.deployctl(["snapshot", "prod"])
        #expect(bad.status == 64 && bad.stderr.contains("compress") && bad.stderr.contains("gzip, zstd or none"), "\(bad.stderr)")
        try box.write("instances/prod/instance.toml", "[database]\npath = \"database/lending_app_prod.db\"\n[backups]\ngzip = true\ncompress = \"zstd\"\n")
        let conflict = try box.deployctl(["snapshot", "prod"])
        #expect(conflict.status == 64 && conflict.stderr.contains("disagree"), "\(conflict.stderr)")
    }

    @Test("a .zst from the zstd CLI (one large frame) is read; a truncated or flipped .zst is refused with 65 and the live database untouched",
          arguments: ["cli", "truncated", "flipped"])
    func zstdForeignAndDamaged(kind: String) throws {
        let box = try Sandbox(rows: 3000)
        let (name, file) = try box.takeSnapshot(gzip: false)
        let zstName = String(name.dropLast(3)) + "_7.db.zst"
        let zstPath = box.backupsFolder + "/" + zstName
        if kind == "cli" {
            #expect(try Sandbox.exec("/usr/bin/zstd", ["-q", "-19", file, "-o", zstPath]).status == 0)
        } else {
            #expect(try box.deployctl(["snapshot", "prod", "--compress", "zstd"]).status == 0)
            let ours = try #require(box.backupNames().first { $0.hasSuffix(".zst") })
            try FileManager.default.moveItem(atPath: box.backupsFolder + "/" + ours, toPath: zstPath)
            try FileManager.default.removeItem(atPath: box.backupsFolder + "/" + ours + ".json")
            var bytes = try Data(contentsOf: URL(fileURLWithPath: zstPath))
            if kind == "truncated" { bytes = bytes.prefix(bytes.count - 100) } else { bytes[bytes.count / 2] ^= 0x5A }
            try bytes.write(to: URL(fileURLWithPath: zstPath))
        }
        var manifest = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: file + ".json"))) as! [String: Any]
        manifest["name"] = zstName
        manifest["compressed"] = true
        manifest["compression"] = "zstd"
        try JSONSerialization.data(withJSONObject: manifest).write(to: URL(fileURLWithPath: zstPath + ".json"))
        try Sandbox.rewriteManifestChecksum(of: zstPath)
        let before = try box.sha3(box.databasePath)
        let copy = box.path("restored.db")
        let restore = try box.deployctl(["restore", "prod", zstName, "--to", copy])
        if kind == "cli" {
            #expect(restore.status == 0, "\(restore.stderr)")
            #expect(try box.sha3(copy) == box.sha3(file))
        } else {
            #expect(restore.status == 65 && ["backup.compression_damaged", "backup.unreadable"].contains(restore.code), "\(restore.stderr)")
            #expect(restore.stderr.contains("not a valid zstd file") || restore.stderr.contains("not a readable SQLite database"), "\(restore.stderr)")
            #expect(!FileManager.default.fileExists(atPath: copy))
            let live = try box.deployctl(["restore", "prod", zstName, "--yes"])
            #expect(live.status == 65 && live.code == "backup.compression_damaged", "\(live.stderr)")
        }
        #expect(try box.sha3(box.databasePath) == before)
        #expect(box.allBackupFiles().allSatisfy { !$0.hasPrefix(".tmp-") }, "\(box.allBackupFiles())")
    }

    /// Writes a manifest for `file` (copied from a real backup's, with this file's name,
    /// compression, checksum and sizes), as deployctl would have written it.
    static func manifest(for file: String, from real: String, compression: String, databaseBytes: Int) throws {
        var manifest = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: real + ".json"))) as! [String: Any]
        manifest["name"] = URL(fileURLWithPath: file).lastPathComponent
        manifest["compressed"] = compression != "none"
        manifest["compression"] = compression
        manifest["database_bytes"] = databaseBytes
        try JSONSerialization.data(withJSONObject: manifest).write(to: URL(fileURLWithPath: file + ".json"))
        try Sandbox.rewriteManifestChecksum(of: file)
    }

    @Test("a zstd CLI file of a database whose size is a multiple of 128 KiB is read (the stream's last output fills its buffer exactly)")
    func zstdExactChunk() throws {
        let box = try Sandbox(rows: 200)
        let (_, real) = try box.takeSnapshot(gzip: false)
        let db = box.path("exact.db")
        let made = try Sandbox.exec("/usr/bin/python3", ["-c", """
            import sqlite3
            db = sqlite3.connect('\(db)')
            db.execute('PRAGMA page_size = 4096')
            db.execute('CREATE TABLE t (x BLOB)')
            while True:
                db.execute('INSERT INTO t VALUES (randomblob(3000))'); db.commit()
                if db.execute('PRAGMA page_count').fetchone()[0] % 32 == 0: break
            """])
        try #require(made.status == 0, "\(made.stderr)")
        let size = try #require(FileManager.default.attributesOfItem(atPath: db)[.size] as? Int)
        try #require(size % (128 * 1024) == 0)
        let zst = box.backupsFolder + "/lending_app_prod_cli_20261120_100000.db.zst"
        #expect(try Sandbox.exec("/usr/bin/zstd", ["-q", db, "-o", zst]).status == 0)
        try Self.manifest(for: zst, from: real, compression: "zstd", databaseBytes: size)
        let verify = try box.deployctl(["backups", "verify", "prod", URL(fileURLWithPath: zst).lastPathComponent])
        #expect(verify.status == 0, "\(verify.stdout)\(verify.stderr)")
    }

    @Test("a compressed backup holding more (or less) than its manifest's database is refused with 65: doubled content, an empty stream, a bomb",
          arguments: ["gz-doubled", "zst-doubled", "zst-empty", "gz-empty", "zst-bomb"])
    func wrongInflatedSize(kind: String) throws {
        let box = try Sandbox(rows: 300)
        let (_, real) = try box.takeSnapshot(gzip: false)
        let size = try #require(FileManager.default.attributesOfItem(atPath: real)[.size] as? Int)
        let zst = kind.hasPrefix("zst")
        let file = box.backupsFolder + "/lending_app_prod_odd_20261120_100000.db" + (zst ? ".zst" : ".gz")
        let tool = zst ? "zstd -q -c" : "gzip -c"
        let script: String
        switch kind {
        case "gz-doubled", "zst-doubled": script = "\(tool) '\(real)' > '\(file)' && \(tool) '\(real)' >> '\(file)'"
        case "zst-bomb": script = "head -c 67108864 /dev/zero | \(tool) > '\(file)'"
        default: script = "\(tool) < /dev/null > '\(file)'"
        }
        #expect(try Sandbox.exec("/bin/sh", ["-c", script]).status == 0)
        try Self.manifest(for: file, from: real, compression: zst ? "zstd" : "gzip", databaseBytes: size)
        let name = URL(fileURLWithPath: file).lastPathComponent
        let verify = try box.deployctl(["backups", "verify", "prod", name])
        #expect(verify.status == 65, "\(verify.stdout)\(verify.stderr)")
        let copy = box.path("restored.db")
        let restore = try box.deployctl(["restore", "prod", name, "--to", copy])
        #expect(restore.status == 65, "\(restore.stderr)")
        #expect(!FileManager.default.fileExists(atPath: copy))
        #expect(box.allBackupFiles().allSatisfy { !$0.hasPrefix(".tmp-") }, "\(box.allBackupFiles())")
    }
}
