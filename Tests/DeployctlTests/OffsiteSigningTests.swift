import Foundation
import Testing

/// Manifests a bucket cannot forge: every pushed manifest carries an HMAC under the instance's
/// offsite signing key, and restores refuse copies without it. The forger is an outsider with
/// write access to the bucket, using the aws CLI against SeaweedFS.
@Suite("offsite manifests are signed with the instance's key; forged copies are refused", .enabled(if: ObjectStore.available))
struct OffsiteSigningTests {
    static func date(_ text: String) -> Date? {
        let plain = ISO8601DateFormatter()
        let fractional = ISO8601DateFormatter()
        fractional.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        return plain.date(from: text) ?? fractional.date(from: text)
    }

    @Test("a signing key file that is not a key (damaged, or another file put there) is refused with 64 naming it, by push and by restore --remote; nothing is pushed and the file is never replaced")
    func damagedKeyFile() throws {
        let store = try ObjectStore.get(.seaweedfs)
        let (box, bucket) = try OffsiteTests.sandbox(store)
        _ = try box.takeSnapshot(gzip: true)
        let keyPath = box.path("instances/prod/offsite-signing.key")
        try "deployctl-offsite-signing-key-v1 not-hex\n".write(toFile: keyPath, atomically: true, encoding: .utf8)
        #expect(chmod(keyPath, 0o600) == 0, "a key file others can read is refused before it is read (OffsiteLeftoverTests)")
        let push = try OffsiteTests.run(box, store, ["backups", "push", "prod"])
        #expect(push.status == 64 && push.code == "offsite.signing_key_invalid" && push.stderr.contains(keyPath), "\(push.status) \(push.stderr)")
        #expect(try store.aws(["s3", "ls", "s3://\(bucket)/", "--recursive"]).stdout.isEmpty)
        let restore = try OffsiteTests.run(box, store, ["restore", "prod", "--remote", "primary", "--latest", "--yes"])
        #expect(restore.status == 64 && restore.code == "offsite.signing_key_invalid", "\(restore.status) \(restore.stderr)")
        #expect(try String(contentsOfFile: keyPath, encoding: .utf8) == "deployctl-offsite-signing-key-v1 not-hex\n")
    }

    @Test("the first push makes the signing key (0600, announced once); a forged newer copy (database + matching manifest written by someone with bucket access) is refused by restore --remote --latest (65, naming it, never stepping back) and by verify --download; a signed manifest edited in place is refused; --allow-unsigned accepts; the genuine copy restores by name")
    func forgedCopies() throws {
        let store = try ObjectStore.get(.seaweedfs)
        let (box, bucket) = try OffsiteTests.sandbox(store)
        let (name, _) = try box.takeSnapshot(gzip: false)
        let first = try OffsiteTests.run(box, store, ["backups", "push", "prod"])
        let keyPath = box.path("instances/prod/offsite-signing.key")
        let said = first.stdout + first.stderr
        #expect(first.status == 0 && said.contains("made this instance's offsite signing key \(keyPath)") && said.contains("Back the file up"), "\(said)")
        let attributes = try FileManager.default.attributesOfItem(atPath: keyPath)
        #expect((attributes[.posixPermissions] as? NSNumber)?.intValue == 0o600)
        let keyText = try String(contentsOfFile: keyPath, encoding: .utf8)
        // A second snapshot pushed: the key is neither made again nor announced.
        Thread.sleep(forTimeInterval: 1.1)
        _ = try box.deployctl(["snapshot", "prod", "--no-gzip"])
        let second = try OffsiteTests.run(box, store, ["backups", "push", "prod", "--all"])
        #expect(second.status == 0 && !(second.stdout + second.stderr).contains("signing key"), "\(second.stdout)\(second.stderr)")
        #expect(try String(contentsOfFile: keyPath, encoding: .utf8) == keyText)
        let newestGenuine = try #require(box.backupNames().sorted().last)

        // The forger: a database of their own and a manifest that matches it, newer than every genuine copy.
        let folder = "s3://\(bucket)/lending/prod/hosta/"
        let work = box.path("forge")
        try FileManager.default.createDirectory(atPath: work, withIntermediateDirectories: true)
        #expect(try store.aws(["s3", "cp", folder + newestGenuine + ".json", work + "/genuine.json"]).status == 0)
        var manifest = try #require(JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: work + "/genuine.json"))) as? [String: Any])
        let forgedDB = work + "/forged.db"
        _ = try box.sqlite(forgedDB, "PRAGMA page_size=4096; CREATE TABLE loan(id INTEGER PRIMARY KEY, owner TEXT); INSERT INTO loan(owner) VALUES ('attacker');")
        let forgedBytes = try Data(contentsOf: URL(fileURLWithPath: forgedDB))
        let sha = try Sandbox.exec("/usr/bin/env", ["sha256sum", forgedDB]).stdout.split(separator: " ")[0]
        let forgedName = String(newestGenuine.dropLast(9)) + "235959.db"
        let created = try #require(Self.date(manifest["created_at"] as? String ?? ""))
        manifest["name"] = forgedName
        manifest["sha256"] = String(sha)
        manifest["bytes"] = forgedBytes.count
        manifest["database_bytes"] = forgedBytes.count
        manifest["page_size"] = 4096
        manifest["page_count"] = forgedBytes.count / 4096
        manifest["created_at"] = ISO8601DateFormatter().string(from: created.addingTimeInterval(30))
        manifest.removeValue(forKey: "compression")
        manifest.removeValue(forKey: "remote")
        manifest["compressed"] = false
        try JSONSerialization.data(withJSONObject: manifest).write(to: URL(fileURLWithPath: work + "/forged.json"))
        #expect(try store.aws(["s3", "cp", forgedDB, folder + forgedName]).status == 0)
        #expect(try store.aws(["s3", "cp", work + "/forged.json", folder + forgedName + ".json"]).status == 0)

        let before = try box.sha3(box.databasePath)
        let localBefore = box.allBackupFiles()
        let latest = try OffsiteTests.run(box, store, ["restore", "prod", "--remote", "primary", "--latest", "--yes"])
        #expect(latest.status == 65 && latest.code == "offsite.manifest_unsigned" && latest.stderr.contains(forgedName) && latest.stderr.contains("not made by a holder of this instance's key"),
                "\(latest.status) \(latest.stderr)")
        #expect(try box.sha3(box.databasePath) == before)
        #expect(box.allBackupFiles() == localBefore)
        let verify = try OffsiteTests.run(box, store, ["backups", "verify", "prod", "--remote", "primary", "--download", forgedName])
        #expect(verify.status == 65 && verify.stdout.contains("not made by a holder of this instance's key"), "\(verify.status) \(verify.stdout) \(verify.stderr)")
        let listed = try OffsiteTests.run(box, store, ["backups", "list", "prod", "--remote", "primary"])
        #expect(listed.stdout.contains("not made by a holder"), "\(listed.stdout)")
        let allowed = try OffsiteTests.run(box, store, ["backups", "verify", "prod", "--remote", "primary", "--download", forgedName, "--allow-unsigned"])
        #expect(allowed.status == 0, "--allow-unsigned checks it like any copy: \(allowed.stdout) \(allowed.stderr)")

        // A genuine manifest edited in place, its authenticator copied along: refused too.
        let head = try store.aws(["s3api", "head-object", "--bucket", bucket, "--key", "lending/prod/hosta/\(name).json"])
        let metadata = try #require((try JSONSerialization.jsonObject(with: Data(head.stdout.utf8)) as? [String: Any])?["Metadata"] as? [String: String])
        let authenticator = try #require(metadata["deployctl-authenticator"], "\(head.stdout)")
        #expect(try store.aws(["s3", "cp", folder + name + ".json", work + "/edited.json"]).status == 0)
        let edited = try String(contentsOfFile: work + "/edited.json", encoding: .utf8).replacingOccurrences(of: "\"label\" : \"snapshot\"", with: "\"label\" : \"golden\"")
            .replacingOccurrences(of: "\"label\":\"snapshot\"", with: "\"label\":\"golden\"")
        try edited.write(toFile: work + "/edited.json", atomically: true, encoding: .utf8)
        #expect(try store.aws(["s3api", "put-object", "--bucket", bucket, "--key", "lending/prod/hosta/\(name).json", "--body", work + "/edited.json",
                               "--metadata", "deployctl-authenticator=\(authenticator)"]).status == 0)
        let byName = try OffsiteTests.run(box, store, ["restore", "prod", "--remote", "primary", name, "--yes"])
        #expect(byName.status == 65 && byName.code == "offsite.manifest_forged" && byName.stderr.contains("does not match"), "\(byName.status) \(byName.stderr)")
        // The newest genuine copy, untouched, restores by name.
        try FileManager.default.removeItem(atPath: box.backupsFolder + "/" + newestGenuine)
        try FileManager.default.removeItem(atPath: box.backupsFolder + "/" + newestGenuine + ".json")
        let genuine = try OffsiteTests.run(box, store, ["restore", "prod", "--remote", "primary", newestGenuine, "--yes"])
        #expect(genuine.status == 0, "\(genuine.stderr)")
    }
}
