import Foundation
import Testing

@Suite("restore")
struct RestoreTests {
    @Test("restore --latest brings back the snapshot, saves the live state first, and proves equality",
          arguments: ["wal", "delete"], [false, true])
    func restoreLatest(journalMode: String, gzip: Bool) throws {
        let box = try Sandbox(journalMode: journalMode)
        #expect(try box.deployctl(["snapshot", "prod", gzip ? "--gzip" : "--no-gzip"]).status == 0)
        let snapshotHash = try box.sha3(box.databasePath)
        _ = try box.sqlite(box.databasePath, "INSERT INTO user VALUES (100000, 'Late', 'late@example.com'); DELETE FROM tracker WHERE id <= 5;")
        let changedHash = try box.sha3(box.databasePath)
        #expect(changedHash != snapshotHash)

        // Without --yes on a pipe: refused, nothing changed.
        let refused = try box.deployctl(["restore", "prod", "--latest"])
        #expect(refused.status == 64)
        #expect(refused.stderr.contains("--yes"))
        #expect(try box.sha3(box.databasePath) == changedHash)

        let result = try box.deployctl(["restore", "prod", "--latest", "--yes"])
        #expect(result.status == 0, "\(result.stderr)")
        #expect(result.stdout.contains("1 row of the live database is discarded"))
        // Per table: user lost the late row, tracker gets its 5 rows back, the rest is untouched.
        let rows = result.stdout.split(separator: "\n").map { $0.split(separator: " ").map(String.init) }
        #expect(rows.first { $0.first == "user" }?.suffix(2) == ["1", "0"])
        #expect(rows.first { $0.first == "tracker" }?.suffix(2) == ["0", "5"])
        #expect(rows.first { $0.first == "payment" }?.suffix(2) == ["0", "0"])
        #expect(try box.sha3(box.databasePath) == snapshotHash)
        #expect(try box.sqlite(box.databasePath, "PRAGMA journal_mode") == journalMode)
        #expect(try box.sqlite(box.databasePath, "PRAGMA integrity_check") == "ok")
        let safety = try #require(box.backupNames().first { $0.contains("_pre_restore_") })
        // The pre_restore snapshot holds the state the restore replaced.
        var plain = box.backupsFolder + "/" + safety
        if safety.hasSuffix(".gz") {
            plain = box.path("pre.db")
            #expect(try Sandbox.exec("/bin/sh", ["-c", "gunzip -c '\(box.backupsFolder)/\(safety)' > '\(plain)'"]).status == 0)
        }
        #expect(try box.sha3(plain) == changedHash)
    }

    @Test("a damaged backup is refused with 65 by verify and restore, and the live database is untouched",
          arguments: ["truncate", "flip"], [false, true])
    func damagedBackup(damage: String, gzip: Bool) throws {
        let box = try Sandbox()
        let (name, file) = try box.takeSnapshot(gzip: gzip)
        var bytes = try Data(contentsOf: URL(fileURLWithPath: file))
        if damage == "truncate" { bytes = bytes.prefix(bytes.count / 2) } else { bytes[bytes.count / 2] ^= 0x40 }
        try bytes.write(to: URL(fileURLWithPath: file))
        _ = try box.sqlite(box.databasePath, "INSERT INTO user VALUES (100000, 'Late', 'late@example.com')")
        let before = try box.sha3(box.databasePath)
        let files = box.allBackupFiles()

        let verify = try box.deployctl(["backups", "verify", "prod", name])
        #expect(verify.status == 65, "\(verify.stdout)\(verify.stderr)")
        let restore = try box.deployctl(["restore", "prod", name, "--yes"])
        #expect(restore.status == 65 && restore.code == "backup.checksum_mismatch", "\(restore.stderr)")
        #expect(restore.stderr.contains(name))
        #expect(try box.sha3(box.databasePath) == before)
        #expect(box.allBackupFiles() == files, "files appeared or vanished beside the backups")
        // --latest skips a backup whose checksum is bad and finds none.
        #expect(try box.deployctl(["restore", "prod", "--latest", "--yes"]).status == 66)
    }

    @Test("a backup recompressed by gzip -6 (no member index) still verifies and restores")
    func foreignGzip() throws {
        let box = try Sandbox()
        let (name, file) = try box.takeSnapshot(gzip: true)
        let snapshotHash = try box.sha3(box.databasePath)
        // Ours: every member's header has the DC length field (FEXTRA set).
        let ours = try Data(contentsOf: URL(fileURLWithPath: file))
        #expect(ours[3] == 0x04 && ours[12] == 0x44 && ours[13] == 0x43)
        #expect(try Sandbox.exec("/bin/sh", ["-c", "gunzip -c '\(file)' | gzip -6 > '\(file).tmp' && mv '\(file).tmp' '\(file)'"]).status == 0)
        try Sandbox.rewriteManifestChecksum(of: file)
        #expect(try Data(contentsOf: URL(fileURLWithPath: file))[3] & 0x04 == 0, "gzip -6 writes no extra field")

        _ = try box.sqlite(box.databasePath, "DELETE FROM payment WHERE id % 7 = 0")
        let verify = try box.deployctl(["backups", "verify", "prod", name])
        #expect(verify.status == 0, "\(verify.stdout)\(verify.stderr)")
        let restore = try box.deployctl(["restore", "prod", name, "--yes"])
        #expect(restore.status == 0, "\(restore.stderr)")
        #expect(try box.sha3(box.databasePath) == snapshotHash)
    }

    @Test("a gzip member stream that fails its CRC is bad data even when the checksum is recomputed")
    func crcFailure() throws {
        let box = try Sandbox()
        let (name, file) = try box.takeSnapshot(gzip: true)
        var bytes = try Data(contentsOf: URL(fileURLWithPath: file))
        bytes[bytes.count - 6] ^= 0x01  // inside the CRC32 trailer
        try bytes.write(to: URL(fileURLWithPath: file))
        try Sandbox.rewriteManifestChecksum(of: file)
        let verify = try box.deployctl(["backups", "verify", "prod", name])
        #expect(verify.status == 65, "\(verify.stdout)\(verify.stderr)")
        #expect(box.allBackupFiles().allSatisfy { !$0.hasPrefix(".") })
    }

    @Test("--to restores into a new file and never over an existing one")
    func restoreToNewFile() throws {
        let box = try Sandbox()
        #expect(try box.deployctl(["snapshot", "prod", "--gzip"]).status == 0)
        let target = box.path("copy.db")
        let result = try box.deployctl(["restore", "prod", "--latest", "--to", target])
        #expect(result.status == 0, "\(result.stderr)")
        #expect(try box.sha3(target) == box.sha3(box.databasePath))
        let again = try box.deployctl(["restore", "prod", "--latest", "--to", target])
        #expect(again.status == 73)
    }

    @Test("--replace recovers a missing live database and refuses a healthy one")
    func replaceMissing() throws {
        let box = try Sandbox(journalMode: "delete")
        #expect(try box.deployctl(["snapshot", "prod"]).status == 0)
        let hash = try box.sha3(box.databasePath)
        let healthy = try box.deployctl(["restore", "prod", "--latest", "--replace", "--yes"])
        #expect(healthy.status == 64, "\(healthy.stderr)")
        try Data("garbage that is not sqlite".utf8).write(to: URL(fileURLWithPath: box.databasePath))
        let result = try box.deployctl(["restore", "prod", "--latest", "--replace", "--yes"])
        #expect(result.status == 0, "\(result.stderr)")
        #expect(try box.sha3(box.databasePath) == hash)
        // The unreadable file was moved aside, not deleted.
        let aside = try #require(box.backupNames().first { $0.contains("_replaced_") })
        #expect(try String(contentsOfFile: box.backupsFolder + "/" + aside, encoding: .utf8) == "garbage that is not sqlite")
    }

    @Test("restore --dry-run verifies and reports, changing nothing")
    func dryRun() throws {
        let box = try Sandbox()
        #expect(try box.deployctl(["snapshot", "prod"]).status == 0)
        _ = try box.sqlite(box.databasePath, "DELETE FROM payment WHERE id <= 10")
        let before = try box.sha3(box.databasePath)
        let files = box.allBackupFiles()
        let result = try box.deployctl(["restore", "prod", "--latest", "--dry-run", "--json"])
        #expect(result.status == 0, "\(result.stderr)")
        let document = try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as! [String: Any]
        #expect(document["performed"] as? Bool == false)
        let payment = (document["differences"] as! [[String: Any]]).first { $0["table"] as? String == "payment" }
        #expect(payment?["restored"] as? Int == 10)
        #expect(try box.sha3(box.databasePath) == before)
        #expect(box.allBackupFiles() == files)
    }
}

@Suite("restore failpoints")
struct RestoreFailpointTests {
    @Test("a restore failing after its pre_restore snapshot or after the copy leaves the database as it was",
          arguments: ["restore", "after-restore"])
    func failpoints(name: String) throws {
        let box = try Sandbox()
        #expect(try box.deployctl(["snapshot", "prod", "--gzip"]).status == 0)
        _ = try box.sqlite(box.databasePath, "INSERT INTO user VALUES (100000, 'Late', 'late@example.com')")
        let before = try box.sha3(box.databasePath)
        let result = try box.deployctl(["restore", "prod", "--latest", "--yes"], environment: ["DEPLOYCTL_FAILPOINTS": "\(name)=error"])
        #expect(result.status == 1, "\(result.stderr)")
        #expect(result.stderr.contains("failpoint '\(name)'"))
        #expect(try box.sha3(box.databasePath) == before)
        // Before the commit the saved copy equals the live database and is removed; after
        // it, the copy is what was put back and stays.
        #expect(box.backupNames().contains { $0.contains("_pre_restore_") } == (name == "after-restore"))
        #expect(box.allBackupFiles().allSatisfy { !$0.hasPrefix(".") }, "temp files left: \(box.allBackupFiles())")
    }
}

@Suite("restore killed")
struct RestoreKilledTests {
    @Test("kill -9 inside the critical section or right after the commit: the live database is the old or the new state, whole, and the next restore runs",
          arguments: ["restore", "after-restore"], ["wal", "delete"])
    func killed(at failpoint: String, journalMode: String) throws {
        let box = try Sandbox(journalMode: journalMode)
        let (name, _) = try box.takeSnapshot(gzip: false)
        let backupHash = try box.sha3(box.databasePath)
        _ = try box.sqlite(box.databasePath, "INSERT INTO user VALUES (100000, 'Late', 'late@example.com')")
        let before = try box.sha3(box.databasePath)
        let killed = try box.deployctl(["restore", "prod", name, "--yes"], environment: ["DEPLOYCTL_FAILPOINTS": "\(failpoint)=crash"])
        #expect(killed.status == 137 || killed.status == 9, "\(killed.status) \(killed.stderr)")
        #expect(try box.sha3(box.databasePath) == (failpoint == "restore" ? before : backupHash))
        #expect(try box.sqlite(box.databasePath, "PRAGMA integrity_check") == "ok")
        // The saved copy is a whole backup (published before the commit), holding the old state.
        let saved = try #require(box.backupNames().first { $0.contains("_pre_restore_") })
        #expect(try box.sha3(box.backupsFolder + "/" + saved) == before)
        let again = try box.deployctl(["restore", "prod", name, "--yes"])
        #expect(again.status == 0, "\(again.stderr)")
        #expect(try box.sha3(box.databasePath) == backupHash)
        #expect(box.allBackupFiles().allSatisfy { !$0.hasPrefix(".") }, "temp files left: \(box.allBackupFiles())")
    }
}
