import Foundation
import Testing

/// Encrypted backups end to end: the built deployctl writes them, the `age` tool opens them,
/// and every bad input of the encryption issue is refused with its code, losing nothing.
@Suite("encrypted backups (age)")
struct EncryptedBackupTests {
    /// A sandbox whose prod instance encrypts its snapshots (`local = true`) to a key made by
    /// `deployctl keygen`; the identity file is configured unless `identity` is false.
    static func sandbox(compress: String = "gzip", identity: Bool = true, rows: Int = 300) throws -> (box: Sandbox, key: String, publicKey: String) {
        let box = try Sandbox(rows: rows)
        let key = box.path("keys/prod.agekey")
        try FileManager.default.createDirectory(atPath: box.path("keys"), withIntermediateDirectories: true)
        let made = try box.deployctl(["keygen", "--output", key])
        try #require(made.status == 0, "keygen: \(made.stderr)")
        let publicKey = made.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        try box.write("instances/prod/instance.toml", """
            [database]
            path = "database/lending_app_prod.db"
            busy_timeout_ms = 2000
            [backups]
            path = "backups"
            compress = "\(compress)"
            [encryption]
            recipients = ["\(publicKey)"]
            local = true
            \(identity ? "identity_file = \"../../keys/prod.agekey\"" : "")
            """)
        return (box, key, publicKey)
    }

    static func manifest(_ file: String) throws -> [String: Any] {
        try #require(JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: file + ".json"))) as? [String: Any])
    }

    static func sha256(_ file: String) throws -> String {
        String(try Sandbox.exec("/usr/bin/sha256sum", [file]).stdout.prefix(64))
    }

    /// No hidden temp file (a decrypted or inflated scratch copy) is left in the backups folder.
    static func expectNoScratch(_ box: Sandbox, sourceLocation: SourceLocation = #_sourceLocation) {
        #expect(box.allBackupFiles().allSatisfy { !$0.hasPrefix(".") }, "scratch files left: \(box.allBackupFiles())", sourceLocation: sourceLocation)
    }

    @Test("keygen writes an identity file (0600) that age-keygen reads, prints its public key, and never replaces a file")
    func keygen() throws {
        let box = try Sandbox()
        let key = box.path("prod.agekey")
        let made = try box.deployctl(["keygen", "--output", key])
        #expect(made.status == 0, "\(made.stderr)")
        let publicKey = made.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(publicKey.hasPrefix("age1") && publicKey.count == 62)
        let mode = try FileManager.default.attributesOfItem(atPath: key)[.posixPermissions] as? NSNumber
        #expect(mode?.intValue == 0o600)
        let keygen = try #require(ObjectStore.find("age-keygen"), "age-keygen is not installed (.ci/run installs age)")
        #expect(try Sandbox.exec(keygen, ["-y", key]).stdout.trimmingCharacters(in: .whitespacesAndNewlines) == publicKey)
        let before = try String(contentsOfFile: key, encoding: .utf8)
        let again = try box.deployctl(["keygen", "--output", key])
        #expect(again.status == 73 && again.code == "keygen.file_exists" && again.stderr.contains("never replaces"), "\(again.stderr)")
        #expect(try String(contentsOfFile: key, encoding: .utf8) == before)
        let unnamed = try box.deployctl(["keygen", "--output", ""])
        #expect(unnamed.status == 64 && unnamed.code == "keygen.no_file_name", "\(unnamed.stderr)")
        let missing = try box.deployctl(["keygen", "--output", box.path("no/such/folder/k")])
        #expect(missing.status == 73 && missing.code == "keygen.folder_missing" && missing.stderr.contains("does not exist"), "\(missing.stderr)")
    }

    @Test("a local encrypted snapshot opens with age -d to the manifest's plaintext sha256, and then gunzip, zstd -d or nothing gives a database that passes integrity_check", arguments: ["gzip", "zstd", "none"])
    func ageOpensOurSnapshot(compress: String) throws {
        let age = try #require(ObjectStore.find("age"), "age is not installed (.ci/run installs it)")
        let (box, key, publicKey) = try Self.sandbox(compress: compress)
        let before = try box.sha3(box.databasePath)
        let snapshot = try box.deployctl(["snapshot", "prod"])
        #expect(snapshot.status == 0, "\(snapshot.stderr)")
        let name = try #require(box.backupNames().first)
        let suffix = [".db.gz.age", ".db.zst.age", ".db.age"][["gzip", "zstd", "none"].firstIndex(of: compress)!]
        #expect(name.hasSuffix(suffix), "\(name)")
        let file = box.backupsFolder + "/" + name
        let manifest = try Self.manifest(file)
        #expect(manifest["sha256"] as? String == (try Self.sha256(file)))
        let encryption = try #require(manifest["encryption"] as? [String: Any])
        #expect(encryption["recipients"] as? [String] == [publicKey])
        #expect(encryption["format"] as? String == "age-encryption.org/v1")
        // The operator's emergency path: age alone, then the usual tools.
        let inner = box.path("inner")
        let decrypted = try Sandbox.exec(age, ["-d", "-i", key, "-o", inner, file])
        #expect(decrypted.status == 0, "\(decrypted.stderr)")
        #expect(try Self.sha256(inner) == encryption["plaintext_sha256"] as? String)
        let database = box.path("database.db")
        switch compress {
        case "gzip": #expect(try Sandbox.exec("/bin/sh", ["-c", "gunzip -c '\(inner)' > '\(database)'"]).status == 0)
        case "zstd": #expect(try Sandbox.exec("/bin/sh", ["-c", "zstd -q -d -c '\(inner)' > '\(database)'"]).status == 0)
        default: try FileManager.default.moveItem(atPath: inner, toPath: database)
        }
        #expect(try box.sqlite(database, "PRAGMA integrity_check") == "ok")
        #expect(try box.sha3(database) == before)
        // Nothing unencrypted was kept beside it.
        #expect(box.allBackupFiles() == [name, name + ".json"], "\(box.allBackupFiles())")
        if compress == "none" {
            // An encrypted database must decrypt to the database's size, as a plain one must be it.
            var edited = manifest
            edited["database_bytes"] = (manifest["database_bytes"] as! Int) + 4096
            try JSONSerialization.data(withJSONObject: edited).write(to: URL(fileURLWithPath: file + ".json"))
            let verify = try box.deployctl(["backups", "verify", "prod", name])
            #expect(verify.status == 65 && (verify.stdout + verify.stderr).contains("decrypts to"), "\(verify.stdout)\(verify.stderr)")
        }
    }

    @Test("backups verify checks only the ciphertext's sha256 without an identity, and decrypts and runs integrity_check with one; restore decrypts back to the snapshot's state")
    func verifyAndRestore() throws {
        let (box, _, _) = try Self.sandbox(identity: false)
        let before = try box.sha3(box.databasePath)
        let (name, _) = try box.takeSnapshot(gzip: true)
        #expect(name.hasSuffix(".db.gz.age"))
        let checksum = try box.deployctl(["backups", "verify", "prod"])
        #expect(checksum.status == 0 && checksum.stdout.contains("not decrypted"), "\(checksum.stdout)\(checksum.stderr)")
        #expect(try box.listedBackups().first?["status"] as? String == "checksum only")
        // A checksum is not a verification for status and its metrics.
        let status = try box.deployctl(["status", "prod", "--json"])
        #expect(!status.stdout.contains("\"last_verification\""), "\(status.stdout)")
        // With the identity configured: the full check, and a restore.
        var config = try String(contentsOfFile: box.path("instances/prod/instance.toml"), encoding: .utf8)
        config += "\nidentity_file = \"../../keys/prod.agekey\"\n"
        try config.write(toFile: box.path("instances/prod/instance.toml"), atomically: true, encoding: .utf8)
        let full = try box.deployctl(["backups", "verify", "prod"])
        #expect(full.status == 0 && full.stdout.contains("checksum, decryption and integrity_check good"), "\(full.stdout)\(full.stderr)")
        #expect(try box.listedBackups().first?["status"] as? String == "verified")
        // Without the key again: the checksum is checked, and the earlier full check is kept, not claimed anew.
        try config.replacingOccurrences(of: "identity_file = \"../../keys/prod.agekey\"", with: "")
            .write(toFile: box.path("instances/prod/instance.toml"), atomically: true, encoding: .utf8)
        let again = try box.deployctl(["backups", "verify", "prod"])
        #expect(again.status == 0 && again.stdout.contains("not decrypted") && !again.stdout.contains("decryption and"), "\(again.stdout)")
        #expect(try box.listedBackups().first?["status"] as? String == "verified")
        try config.write(toFile: box.path("instances/prod/instance.toml"), atomically: true, encoding: .utf8)
        _ = try box.sqlite(box.databasePath, "DELETE FROM payment WHERE id % 2 = 0")
        let restore = try box.deployctl(["restore", "prod", "--latest", "--yes"])
        #expect(restore.status == 0, "\(restore.stderr)")
        #expect(try box.sha3(box.databasePath) == before)
        Self.expectNoScratch(box)
        // restore --to a new file from the encrypted backup.
        let to = try box.deployctl(["restore", "prod", name, "--to", box.path("copy.db")])
        #expect(to.status == 0, "\(to.stderr)")
        #expect(try box.sha3(box.path("copy.db")) == before)
    }

    @Test("a wrong identity, a flipped or truncated ciphertext: 65 from verify and restore, the live database untouched and no plaintext left on disk", arguments: ["wrong-identity", "flipped", "truncated"])
    func badCiphertext(damage: String) throws {
        let (box, key, _) = try Self.sandbox()
        let (name, file) = try box.takeSnapshot(gzip: true)
        switch damage {
        case "wrong-identity":
            try FileManager.default.removeItem(atPath: key)
            #expect(try box.deployctl(["keygen", "--output", key]).status == 0)
        case "flipped":
            let handle = try FileHandle(forUpdating: URL(fileURLWithPath: file))
            let size = try handle.seekToEnd()
            try handle.seek(toOffset: size - 40)
            let byte = try #require(try handle.read(upToCount: 1)).first!
            try handle.seek(toOffset: size - 40)
            try handle.write(contentsOf: Data([byte ^ 0x01]))
            try handle.close()
            // The checksum would catch it first; the manifest is made to agree so decryption must.
            try Sandbox.rewriteManifestChecksum(of: file)
        default:
            let handle = try FileHandle(forUpdating: URL(fileURLWithPath: file))
            try handle.truncate(atOffset: try handle.seekToEnd() - 100)
            try handle.close()
            try Sandbox.rewriteManifestChecksum(of: file)
        }
        _ = try box.sqlite(box.databasePath, "INSERT INTO user VALUES (100000, 'After', 'after@example.com')")
        let live = try box.sha3(box.databasePath)
        let verify = try box.deployctl(["backups", "verify", "prod", name])
        #expect(verify.status == 65, "\(verify.stdout)\(verify.stderr)")
        if damage == "wrong-identity" {
            // The wrong key is not damage: nothing is recorded, so retention and --latest never count the backup as failed.
            #expect(try Self.manifest(file)["verification"] == nil, "a wrong key was recorded against the backup")
        }
        let expected = damage == "wrong-identity" ? "no identity matched" : damage == "flipped" ? "does not authenticate" : "truncated"
        #expect((verify.stdout + verify.stderr).contains(expected), "\(verify.stdout)\(verify.stderr)")
        Self.expectNoScratch(box)
        let restore = try box.deployctl(["restore", "prod", name, "--yes"])
        #expect(restore.status == 65 && restore.stderr.contains(expected), "\(restore.stderr)")
        #expect(try box.sha3(box.databasePath) == live)
        Self.expectNoScratch(box)
        #expect(!box.backupNames().contains { $0.contains("pre_restore") }, "\(box.backupNames())")
    }

    @Test("restore --latest with the wrong identity stops at the encrypted newest backup (65), never quietly restoring an older plain one; snapshot --verify does not mark an encrypted file verified")
    func wrongIdentityLatest() throws {
        let (box, key, publicKey) = try Self.sandbox()
        // An older plain backup, then (local = true) a newer encrypted one.
        let config = try String(contentsOfFile: box.path("instances/prod/instance.toml"), encoding: .utf8)
        try config.replacingOccurrences(of: "local = true", with: "local = false").write(toFile: box.path("instances/prod/instance.toml"), atomically: true, encoding: .utf8)
        #expect(try box.deployctl(["snapshot", "prod"]).status == 0)
        try config.write(toFile: box.path("instances/prod/instance.toml"), atomically: true, encoding: .utf8)
        _ = try box.sqlite(box.databasePath, "INSERT INTO user VALUES (100000, 'Newer', 'newer@example.com')")
        Thread.sleep(forTimeInterval: 1.1)
        #expect(try box.deployctl(["snapshot", "prod", "--verify"]).status == 0)
        let newest = try #require(try box.listedBackups().first)
        #expect((newest["name"] as? String)?.hasSuffix(".age") == true && newest["status"] as? String == "never verified", "\(newest)")
        try FileManager.default.removeItem(atPath: key)
        #expect(try box.deployctl(["keygen", "--output", key]).status == 0)
        _ = try box.sqlite(box.databasePath, "DELETE FROM tracker")
        let live = try box.sha3(box.databasePath)
        let restore = try box.deployctl(["restore", "prod", "--latest", "--yes"])
        #expect(restore.status == 65 && restore.code == "encryption.no_identity_matched" && restore.stderr.contains("no identity matched") && restore.stderr.contains(publicKey) == false, "\(restore.stdout)\(restore.stderr)")
        // verify --all goes on past the backup it cannot open, records nothing about it, and says so.
        let all = try box.deployctl(["backups", "verify", "prod", "--all"])
        #expect(all.status == 65 && all.stderr.contains("could not be opened with the configured key"), "\(all.stdout)\(all.stderr)")
        let listed = try box.listedBackups()
        #expect(listed.count == 2 && listed[0]["status"] as? String == "never verified" && listed[1]["status"] as? String == "verified", "\(listed)")
        #expect(try box.sha3(box.databasePath) == live)
        Self.expectNoScratch(box)
    }

    @Test("an identity file others can read is refused (64) and one not configured is named (64); the live database untouched")
    func identitySettings() throws {
        let (box, key, _) = try Self.sandbox()
        let (name, _) = try box.takeSnapshot(gzip: true)
        _ = try box.sqlite(box.databasePath, "DELETE FROM tracker")
        let live = try box.sha3(box.databasePath)
        chmod(key, 0o644)
        let open = try box.deployctl(["restore", "prod", name, "--yes"])
        #expect(open.status == 64 && open.code == "encryption.identity_file_exposed" && open.stderr.contains("mode 644") && open.stderr.contains("chmod 600"), "\(open.stderr)")
        let verify = try box.deployctl(["backups", "verify", "prod", name])
        #expect(verify.status == 64 && verify.code == "encryption.identity_file_exposed", "\(verify.stderr)")
        chmod(key, 0o600)
        // No identity_file: restore names the setting and the backup's recipients.
        let config = try String(contentsOfFile: box.path("instances/prod/instance.toml"), encoding: .utf8)
        try config.replacingOccurrences(of: "identity_file = \"../../keys/prod.agekey\"", with: "")
            .write(toFile: box.path("instances/prod/instance.toml"), atomically: true, encoding: .utf8)
        let missing = try box.deployctl(["restore", "prod", name, "--yes"])
        #expect(missing.status == 64 && missing.code == "backup.no_identity" && missing.stderr.contains("identity_file") && missing.stderr.contains("is not set"), "\(missing.stderr)")
        #expect(try box.sha3(box.databasePath) == live)
        Self.expectNoScratch(box)
        // A deploy that would encrypt its own snapshot without a key to read it back is refused before anything.
        try box.installCashbackMigration()
        let deploy = try box.deployctl(["deploy", "prod"])
        #expect(deploy.status == 64 && deploy.stderr.contains("must read back"), "\(deploy.stderr)")
        #expect(try box.sha3(box.databasePath) == live)
        #expect(box.backupNames() == [name])
    }

    @Test("a deploy with local encryption takes an encrypted pre_ snapshot, rehearses from it and, undone after its commit, restores it")
    func deployEncrypted() throws {
        let (box, _, _) = try Self.sandbox()
        try box.installCashbackMigration()
        let deploy = try box.deployctl(["deploy", "prod"])
        #expect(deploy.status == 0, "\(deploy.stdout)\(deploy.stderr)")
        #expect(box.backupNames().contains { $0.hasPrefix("lending_app_prod_pre_cashback_tables_") && $0.hasSuffix(".db.gz.age") }, "\(box.backupNames())")
        Self.expectNoScratch(box)
        // A deploy undone after its commit: its encrypted snapshot is decrypted and restored.
        let before = try box.sha3(box.databasePath)
        try box.write("instances/migrations/0002_add.sql", "INSERT INTO user (id, name, email) VALUES (900002, 'System', 'system@example.com');\n")
        let undone = try box.deployctl(["deploy", "prod"], environment: ["DEPLOYCTL_FAILPOINTS": "after-commit=error"])
        #expect(undone.status == 1 && undone.stderr.contains("was restored"), "\(undone.stdout)\(undone.stderr)")
        #expect(try box.sha3(box.databasePath) == before)
        Self.expectNoScratch(box)
    }

    @Test("config: a recipient that is not an age1 X25519 key and local = true without recipients are 64 with file and line")
    func configErrors() throws {
        let box = try Sandbox()
        let base = "[database]\npath = \"database/lending_app_prod.db\"\n[backups]\npath = \"backups\"\n[encryption]\n"
        try box.write("instances/prod/instance.toml", base + "recipients = [\"age1notakey\"]\n")
        let bad = try box.deployctl(["snapshot", "prod"])
        #expect(bad.status == 64 && bad.stderr.contains("instance.toml:6") && bad.stderr.contains("not an age X25519 recipient"), "\(bad.stderr)")
        try box.write("instances/prod/instance.toml", base + "local = true\n")
        let local = try box.deployctl(["snapshot", "prod"])
        #expect(local.status == 64 && local.stderr.contains("needs recipients"), "\(local.stderr)")
        // A private key pasted where a recipient or a path belongs is refused without being repeated.
        let secret = try box.deployctl(["keygen", "--output", box.path("k")])
        #expect(secret.status == 0)
        let key = try String(contentsOfFile: box.path("k"), encoding: .utf8).split(separator: "\n").last.map(String.init)!
        for line in ["recipients = [\"\(key)\"]\n", "identity_file = \"\(key)\"\n"] {
            try box.write("instances/prod/instance.toml", base + line)
            for command in [["snapshot", "prod"], ["status", "prod", "--json"]] {
                let result = try box.deployctl(command)
                #expect(result.status == 64 && !(result.stdout + result.stderr).contains(key) && (result.stdout + result.stderr).contains("private key"),
                        "\(result.stdout)\(result.stderr)")
            }
        }
        // A low-order point is no key.
        try box.write("instances/prod/instance.toml", base + "recipients = [\"age1qqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqq5cu47z\"]\n")
        let low = try box.deployctl(["snapshot", "prod"])
        #expect(low.status == 64 && low.stderr.contains("instance.toml:6"), "\(low.stderr)")
        #expect(box.backupNames().isEmpty)
    }
}
