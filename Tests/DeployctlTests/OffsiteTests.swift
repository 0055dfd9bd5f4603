import Foundation
import Testing

/// Offsite copies against a real S3-compatible store (SeaweedFS on 127.0.0.1, signatures
/// checked), each result checked by an outsider: the aws CLI, gunzip, sqlite3.
@Suite("offsite copies in an S3-compatible store (SeaweedFS over HTTP, rclone serve s3 over TLS)", .enabled(if: ObjectStore.available))
struct OffsiteTests {
    static let baseConfig = """
        [database]
        path = "database/lending_app_prod.db"
        busy_timeout_ms = 2000
        [backups]
        path = "backups"
        """

    /// A sandbox whose prod instance has one `[[offsite]]` remote in a new bucket.
    static func sandbox(_ store: ObjectStore, rows: Int = 300, hostId: String = "hosta", extra: String = "") throws -> (Sandbox, String) {
        let bucket = try store.makeBucket()
        let box = try Sandbox(rows: rows, config: baseConfig + store.offsiteTable(bucket: bucket, hostId: hostId, extra: extra))
        return (box, bucket)
    }

    static func run(_ box: Sandbox, _ store: ObjectStore, _ arguments: [String], failpoints: String = "") throws -> Sandbox.Result {
        var environment = store.environment
        if !failpoints.isEmpty { environment["DEPLOYCTL_FAILPOINTS"] = failpoints }
        return try box.deployctl(arguments, environment: environment)
    }

    /// Makes prod's database larger than the multipart threshold: `count` random 4 KiB blobs.
    static func addBlobs(_ box: Sandbox, _ count: Int) throws {
        _ = try box.sqlite(box.databasePath, "CREATE TABLE blob(b); WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n WHERE i < \(count)) INSERT INTO blob SELECT randomblob(4096) FROM n")
    }

    static func json(_ result: Sandbox.Result) throws -> [String: Any] {
        try #require(JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any], "\(result.stdout)\(result.stderr)")
    }

    @Test("snapshot --offsite pushes a gzip backup that aws s3 cp fetches and gunzip + integrity_check accept with the manifest's sha256; a second push skips it; restore --remote brings it back", arguments: StoreKind.available)
    func pushFetchRestore(kind: StoreKind) throws {
        let store = try ObjectStore.get(kind)
        let (box, bucket) = try Self.sandbox(store)
        let snapshot = try Self.run(box, store, ["snapshot", "prod", "--gzip", "--offsite"])
        #expect(snapshot.status == 0, "\(snapshot.stderr)")
        let name = try #require(box.backupNames().first)
        #expect(snapshot.stdout.contains("copied to remote primary: lending/prod/hosta/\(name)"), "\(snapshot.stdout)")
        // The outsider's view: object and manifest under <prefix>/<host>/, the object as the manifest says.
        let folder = NSTemporaryDirectory() + "deployctl-fetch-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: folder) }
        #expect(try store.aws(["s3", "cp", "s3://\(bucket)/lending/prod/hosta/\(name)", folder + "/b.db.gz"]).status == 0)
        #expect(try store.aws(["s3", "cp", "s3://\(bucket)/lending/prod/hosta/\(name).json", folder + "/m.json"]).status == 0)
        let manifest = try #require(JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: folder + "/m.json"))) as? [String: Any])
        let sha = try Sandbox.exec("/usr/bin/sha256sum", [folder + "/b.db.gz"]).stdout.prefix(64)
        #expect(manifest["sha256"] as? String == String(sha))
        #expect((manifest["remote"] as? [String: Any])?["host"] as? String == "hosta")
        #expect(try Sandbox.exec("/bin/gzip", ["-t", folder + "/b.db.gz"]).status == 0)
        #expect(try Sandbox.exec("/bin/sh", ["-c", "gunzip -c '\(folder)/b.db.gz' > '\(folder)/b.db'"]).status == 0)
        #expect(try box.sqlite(folder + "/b.db", "PRAGMA integrity_check") == "ok")
        // A second push finds it there.
        let again = try Self.run(box, store, ["backups", "push", "prod", "--json"])
        #expect(again.status == 0 && again.stdout.contains("\"uploaded\" : false"), "\(again.stdout)\(again.stderr)")
        let listed = try Self.json(try Self.run(box, store, ["backups", "list", "prod", "--remote", "primary", "--json"]))
        let copies = try #require(listed["backups"] as? [[String: Any]])
        #expect(copies.count == 1 && copies[0]["good"] as? Bool == true && copies[0]["local"] as? Bool == true, "\(listed)")
        let status = try Self.run(box, store, ["status", "prod"])
        #expect(status.stdout.contains("remote primary: newest copy \(name), 0.0 hours old"), "\(status.stdout)")
        // Restore from the remote on a "new host": local backups gone.
        let before = try box.sha3(box.databasePath)
        _ = try box.sqlite(box.databasePath, "DELETE FROM payment WHERE id % 3 = 0")
        try FileManager.default.removeItem(atPath: box.backupsFolder)
        let restore = try Self.run(box, store, ["restore", "prod", "--remote", "primary", "--latest", "--yes"])
        #expect(restore.status == 0, "\(restore.stderr)")
        #expect(try box.sha3(box.databasePath) == before)
        #expect(box.backupNames().contains(name))
        // A dry run from the remote leaves no download behind.
        try FileManager.default.removeItem(atPath: box.backupsFolder)
        let dry = try Self.run(box, store, ["restore", "prod", "--remote", "primary", "--latest", "--dry-run"])
        #expect(dry.status == 0 && box.allBackupFiles().isEmpty, "\(dry.stderr) \(box.allBackupFiles())")
        // Nor does a restore refused at the question (no --yes, stdin not a terminal).
        let unanswered = try Self.run(box, store, ["restore", "prod", "--remote", "primary", "--latest"])
        #expect(unanswered.status == 64 && unanswered.code == "confirm.needs_yes" && box.allBackupFiles().isEmpty, "\(unanswered.stderr) \(box.allBackupFiles())")
        #expect(try box.sha3(box.databasePath) == before)
    }

    @Test("two instances (or hosts) writing under one prefix and host_id: a push never overwrites the other's copy of the same name, and list and prune see only their own instance's copies", arguments: StoreKind.available)
    func sharedFolder(kind: StoreKind) throws {
        let store = try ObjectStore.get(kind)
        let (box, bucket) = try Self.sandbox(store)
        // A second instance, same database file name, same remote folder.
        try box.write("instances/other/instance.toml", Self.baseConfig + store.offsiteTable(bucket: bucket, extra: "keep_last = 1"))
        try FileManager.default.createDirectory(atPath: box.path("instances/other/database"), withIntermediateDirectories: true)
        try box.makeLendingDatabase(path: box.path("instances/other/database/lending_app_prod.db"), journalMode: "wal", rows: 50)
        let (name, _) = try box.takeSnapshot(gzip: true)
        #expect(try Self.run(box, store, ["backups", "push", "prod"]).status == 0)
        // The other instance's backup of the same name and a different content.
        try FileManager.default.createDirectory(atPath: box.path("instances/other/backups"), withIntermediateDirectories: true)
        let otherFolder = box.path("instances/other/backups/")
        #expect(try Self.run(box, store, ["snapshot", "other", "--gzip"]).status == 0)
        let otherName = try #require(try FileManager.default.contentsOfDirectory(atPath: otherFolder).first { $0.hasSuffix(".gz") })
        if otherName != name {  // taken in another second: give it prod's name
            try FileManager.default.moveItem(atPath: otherFolder + otherName, toPath: otherFolder + name)
            var manifest = try String(contentsOfFile: otherFolder + otherName + ".json", encoding: .utf8)
            manifest = manifest.replacingOccurrences(of: otherName, with: name)
            try manifest.write(toFile: otherFolder + name + ".json", atomically: true, encoding: .utf8)
            try FileManager.default.removeItem(atPath: otherFolder + otherName + ".json")
        }
        let clash = try Self.run(box, store, ["backups", "push", "other"])
        #expect(clash.status == 1 && clash.code == "offsite.copy_foreign" && clash.stderr.contains("already holds a different backup"), "\(clash.stderr)")
        let ours = try Self.run(box, store, ["backups", "verify", "prod", "--remote", "primary", "--download"])
        #expect(ours.status == 0, "prod's copy was overwritten: \(ours.stdout)\(ours.stderr)")
        // The other instance lists prod's copy apart and its prune (keep_last = 1) removes nothing of prod's.
        let listed = try Self.run(box, store, ["backups", "list", "other", "--remote", "primary"])
        #expect(listed.stdout.contains("a copy of instance 'prod'"), "\(listed.stdout)")
        #expect(try Self.run(box, store, ["backups", "prune", "other", "--remote", "primary", "--yes"]).status == 0)
        #expect(try Self.run(box, store, ["backups", "verify", "prod", "--remote", "primary"]).status == 0)
    }

    @Test("a backup above 64 MiB goes up in 16 MiB parts: the store's ETag is the parts' (-5), a download matches the manifest, and verify --download runs integrity_check", arguments: StoreKind.available)
    func multipart(kind: StoreKind) throws {
        let store = try ObjectStore.get(kind)
        let (box, bucket) = try Self.sandbox(store, rows: 20)
        try Self.addBlobs(box, 17000)
        let (name, file) = try box.takeSnapshot(gzip: false)
        let push = try Self.run(box, store, ["backups", "push", "prod"])
        #expect(push.status == 0, "\(push.stderr)")
        let head = try store.aws(["s3api", "head-object", "--bucket", bucket, "--key", "lending/prod/hosta/\(name)"])
        let size = try FileManager.default.attributesOfItem(atPath: file)[.size] as? Int ?? 0
        let parts = (size + (16 << 20) - 1) / (16 << 20)
        // SeaweedFS gives the multipart ETag (-N); rclone the whole object's MD5, also accepted.
        #expect(size > 64 << 20 && (kind == .rclone || head.stdout.contains("-\(parts)\\\"")), "\(head.stdout)")
        let verify = try Self.run(box, store, ["backups", "verify", "prod", "--remote", "primary", "--download"])
        #expect(verify.status == 0 && verify.stdout.contains("download, sha256, integrity_check good"), "\(verify.stdout)\(verify.stderr)")
        #expect(box.allBackupFiles().filter { $0.contains(".remote-check") }.isEmpty)
    }

    @Test("a copy damaged or truncated in the store is refused: verify 65 (ETag, or the download's sha256), restore --remote 65 with the live database untouched and nothing left behind", arguments: StoreKind.available)
    func damagedInStore(kind: StoreKind) throws {
        let store = try ObjectStore.get(kind)
        let (box, bucket) = try Self.sandbox(store)
        let (name, file) = try box.takeSnapshot(gzip: true)
        #expect(try Self.run(box, store, ["backups", "push", "prod"]).status == 0)
        let key = "lending/prod/hosta/\(name)"
        // Same size, one byte flipped, put back by an outsider (the manifest is left as it was).
        var bytes = try Data(contentsOf: URL(fileURLWithPath: file))
        bytes[bytes.count / 2] ^= 0x40
        let damaged = box.root + "/damaged.gz"
        try bytes.write(to: URL(fileURLWithPath: damaged))
        #expect(try store.aws(["s3", "cp", damaged, "s3://\(bucket)/\(key)"]).status == 0)
        let quick = try Self.run(box, store, ["backups", "verify", "prod", "--remote", "primary"])
        #expect(quick.status == 65 && quick.stdout.contains("ETag"), "\(quick.stdout)\(quick.stderr)")
        let full = try Self.run(box, store, ["backups", "verify", "prod", "--remote", "primary", "--download"])
        #expect(full.status == 65, "\(full.stdout)\(full.stderr)")
        try FileManager.default.removeItem(atPath: box.backupsFolder)
        let before = try box.sha3(box.databasePath)
        let restore = try Self.run(box, store, ["restore", "prod", "--remote", "primary", name, "--yes"])
        #expect(restore.status == 65 && restore.code == "offsite.copy_damaged" && restore.stderr.contains("nothing was restored"), "\(restore.stderr)")
        #expect(try box.sha3(box.databasePath) == before)
        #expect(box.allBackupFiles().isEmpty, "\(box.allBackupFiles())")
        // Truncated: the listing already says it is not good, and --latest has nothing to take.
        try bytes.prefix(bytes.count / 2).write(to: URL(fileURLWithPath: damaged))
        #expect(try store.aws(["s3", "cp", damaged, "s3://\(bucket)/\(key)"]).status == 0)
        let listed = try Self.run(box, store, ["backups", "list", "prod", "--remote", "primary"])
        #expect(listed.stdout.contains("NOT GOOD"), "\(listed.stdout)")
        // --latest refuses the damaged newest copy rather than quietly taking an older one.
        let latest = try Self.run(box, store, ["restore", "prod", "--remote", "primary", "--latest", "--yes"])
        #expect(latest.status == 65 && latest.code == "offsite.copy_damaged" && latest.stderr.contains("not a good copy"), "\(latest.stderr)")
        #expect(box.allBackupFiles().isEmpty, "\(box.allBackupFiles())")
        #expect(try box.sha3(box.databasePath) == before)
    }

    @Test("wrong secret or unknown key: 77 naming the remote, nothing written; store down: 69 after retries; no such bucket: 66; clock off by two hours: the message says so; a name or host with / or ..: 64", arguments: StoreKind.available)
    func badInputs(kind: StoreKind) throws {
        let store = try ObjectStore.get(kind)
        let (box, bucket) = try Self.sandbox(store)
        _ = try box.takeSnapshot(gzip: true)
        var environment = store.environment
        environment["AWS_SECRET_ACCESS_KEY"] = "wrong"
        let wrong = try box.deployctl(["backups", "push", "prod"], environment: environment)
        #expect(wrong.status == 77 && wrong.code == "offsite.credentials_refused" && wrong.stderr.contains("remote 'primary' refused the credentials") && !wrong.stderr.contains("wrong"), "\(wrong.stderr)")
        environment = store.environment
        environment["AWS_ACCESS_KEY_ID"] = "NOSUCHKEY"
        let unknownKey = try box.deployctl(["backups", "push", "prod"], environment: environment)
        #expect(unknownKey.status == 77 && unknownKey.code == "offsite.credentials_refused", "\(unknownKey.stderr)")
        #expect(try store.aws(["s3", "ls", "s3://\(bucket)/", "--recursive"]).stdout.isEmpty)
        // Nothing listens on this port.
        let down = try Sandbox(rows: 10, config: Self.baseConfig + store.offsiteTable(bucket: bucket, endpoint: "http://127.0.0.1:\(ObjectStore.freePort())"))
        _ = try down.takeSnapshot(gzip: false)
        let refused = try Self.run(down, store, ["backups", "push", "prod"])
        #expect(refused.status == 69 && refused.code == "offsite.unreachable" && refused.stderr.contains("after 5 attempts") && refused.stderr.contains("Connection refused"), "\(refused.stderr)")
        let missing = try Sandbox(rows: 10, config: Self.baseConfig + store.offsiteTable(bucket: "nosuchbucket" + String(UInt32.random(in: 0...99999))))
        _ = try missing.takeSnapshot(gzip: false)
        // Listing (some stores create a bucket on the first PUT).
        let noBucket = try Self.run(missing, store, ["backups", "list", "prod", "--remote", "primary"])
        #expect(noBucket.status == 66 && noBucket.code == "offsite.bucket_missing" && noBucket.stderr.contains("does not exist"), "\(noBucket.status) \(noBucket.stderr)")
        let skewed = try Self.run(box, store, ["backups", "list", "prod", "--remote", "primary"], failpoints: "clock=shift:7200")
        #expect(skewed.status == 77 && skewed.code == "offsite.clock_skewed" && skewed.stderr.contains("clock"), "\(skewed.stderr)")
        #expect(try Self.run(box, store, ["restore", "prod", "--remote", "primary", "../x.db", "--yes"]).status == 64)
        let badHost = try Self.run(box, store, ["backups", "list", "prod", "--remote", "primary", "--host", "../other"])
        #expect(badHost.status == 64 && badHost.code == "offsite.host_invalid", "\(badHost.stderr)")
        let noCredentials = try box.deployctl(["backups", "push", "prod"], environment: ["AWS_ACCESS_KEY_ID": "", "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent",
                                                                                  "AWS_CONFIG_FILE": "/nonexistent", "AWS_EC2_METADATA_DISABLED": "true"])
        #expect(noCredentials.status == 77 && noCredentials.code == "offsite.credentials_missing" && noCredentials.stderr.contains("no credentials found"), "\(noCredentials.stderr)")
    }

    @Test("a push killed mid-upload (SIGKILL between parts, or before the manifest) leaves nothing listed as good; the next push completes it and no multipart upload is left", arguments: StoreKind.available)
    func killedPush(kind: StoreKind) throws {
        let store = try ObjectStore.get(kind)
        let (box, bucket) = try Self.sandbox(store, rows: 20)
        try Self.addBlobs(box, 20000)
        let (name, _) = try box.takeSnapshot(gzip: false)
        let killed = try Self.run(box, store, ["backups", "push", "prod"], failpoints: "push-part=crash")
        #expect(killed.status != 0)
        if kind == .seaweedfs {
            let uploads = try store.aws(["s3api", "list-multipart-uploads", "--bucket", bucket])
            #expect(uploads.stdout.contains(name), "an unfinished upload is expected: \(uploads.stdout)")
        }
        let during = try Self.json(try Self.run(box, store, ["backups", "list", "prod", "--remote", "primary", "--json"]))
        #expect((during["backups"] as? [[String: Any]])?.contains { $0["good"] as? Bool == true } == false, "\(during)")
        let resumed = try Self.run(box, store, ["backups", "push", "prod"])
        #expect(resumed.status == 0, "\(resumed.stderr)")
        #expect(!(try store.aws(["s3api", "list-multipart-uploads", "--bucket", bucket]).stdout.contains(name)))
        // Killed after the object, before its manifest: listed, not good, never restored; the next push fixes it.
        let (box2, _) = try Self.sandbox(store)
        let (name2, _) = try box2.takeSnapshot(gzip: true)
        #expect(try Self.run(box2, store, ["backups", "push", "prod"], failpoints: "before-remote-manifest=crash").status != 0)
        let listed = try Self.run(box2, store, ["backups", "list", "prod", "--remote", "primary"])
        #expect(listed.stdout.contains("NOT GOOD: no manifest"), "\(listed.stdout)")
        let none = try Self.run(box2, store, ["restore", "prod", "--remote", "primary", "--latest", "--yes"])
        #expect(none.status == 66 && none.code == "offsite.copy_not_found", "\(none.stderr)")
        #expect(try Self.run(box2, store, ["backups", "push", "prod"]).status == 0)
        let good = try Self.json(try Self.run(box2, store, ["backups", "list", "prod", "--remote", "primary", "--json"]))
        #expect((good["backups"] as? [[String: Any]])?.first { $0["name"] as? String == name2 }?["good"] as? Bool == true, "\(good)")
    }

    @Test("two deployment roots share one bucket and prefix under their own host_id: pushing and pruning at the same time, neither removes the other's copies; remote retention keeps what its rules say", arguments: StoreKind.available)
    func twoHosts(kind: StoreKind) throws {
        let store = try ObjectStore.get(kind)
        let bucket = try store.makeBucket()
        let a = try Sandbox(rows: 20, config: Self.baseConfig + store.offsiteTable(bucket: bucket, hostId: "hosta", extra: "keep_last = 2"))
        let b = try Sandbox(rows: 20, config: Self.baseConfig + store.offsiteTable(bucket: bucket, hostId: "hostb", extra: "keep_last = 2"))
        for box in [a, b] {
            for _ in 0..<3 {
                #expect(try Self.run(box, store, ["snapshot", "prod", "--label", "nightly", "--offsite"]).status == 0)
            }
        }
        // At the same time: a prunes its folder to 1, b pushes another label and prunes its folder to 2.
        let errors = [Pipe(), Pipe(), Pipe()]
        let processes = [
            try a.spawnDeployctl(["backups", "prune", "prod", "--remote", "primary", "--keep-last", "1"], environment: store.environment, stderr: errors[0]),
            try b.spawnDeployctl(["snapshot", "prod", "--label", "extra", "--offsite"], environment: store.environment, stderr: errors[1]),
            try b.spawnDeployctl(["backups", "prune", "prod", "--remote", "primary", "--keep-last", "2", "--label", "nightly"], environment: store.environment, stderr: errors[2]),
        ]
        for process in processes { process.waitUntilExit() }
        let messages = errors.map { String(decoding: $0.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self) }
        #expect(processes.allSatisfy { $0.terminationStatus == 0 }, "\(processes.map(\.terminationStatus)) \(messages)")
        let manifests = { (host: String) in
            try store.aws(["s3", "ls", "s3://\(bucket)/lending/prod/\(host)/"]).stdout.split(separator: "\n").filter { $0.hasSuffix(".json") }.count
        }
        #expect(try manifests("hosta") == 1)
        #expect(try manifests("hostb") == 3)
        // A second prune on the same host while a lease is held waits its turn: 75 naming the lease.
        try b.write("lease.json", "{\"holder\": \"another run\"}\n")
        #expect(try store.aws(["s3api", "put-object", "--bucket", bucket, "--key", "lending/prod/hostb/.prune-lease", "--body", b.path("lease.json")]).status == 0)
        let held = try Self.run(b, store, ["backups", "prune", "prod", "--remote", "primary", "--keep-last", "1", "--yes"])
        // rclone ignores If-None-Match: the lease is best effort there (README), the prune goes on.
        #expect(kind == .rclone ? held.status == 0 : held.status == 75 && held.code == "offsite.lease_held" && held.stderr.contains("lease"), "\(held.stderr)")
        // A lease left by a killed run more than an hour ago (in the form every release writes) is taken over.
        let stale = ISO8601DateFormatter().string(from: Date().addingTimeInterval(-7200))
        try b.write("lease.json", "{\"holder\": \"hostb pid 1\", \"token\": \"0F9C3E2A-killed\", \"at\": \"\(stale)\"}\n")
        #expect(try store.aws(["s3api", "put-object", "--bucket", bucket, "--key", "lending/prod/hostb/.prune-lease", "--body", b.path("lease.json")]).status == 0)
        let takenOver = try Self.run(b, store, ["backups", "prune", "prod", "--remote", "primary", "--keep-last", "1", "--yes"])
        #expect(takenOver.status == 0, "\(takenOver.stderr)")
        #expect(try manifests("hostb") == 2, "the newest of each label (nightly, extra)")
        #expect(try manifests("hosta") == 1)
        #expect(!(try store.aws(["s3", "ls", "s3://\(bucket)/lending/prod/hostb/"]).stdout.contains(".prune-lease")), "the lease is released")
    }

    @Test("with [encryption] recipients a push sends <name>.age, which aws s3 cp and age -d open to the local backup's bytes; a second push skips it; verify --download and restore --remote decrypt it with the identity, and without one refuse (64) leaving no download", arguments: StoreKind.available)
    func encryptedPush(kind: StoreKind) throws {
        let age = try #require(ObjectStore.find("age"), "age is not installed (.ci/run installs it)")
        let store = try ObjectStore.get(kind)
        let bucket = try store.makeBucket()
        let box = try Sandbox(rows: 300)
        let key = box.path("prod.agekey")
        let made = try box.deployctl(["keygen", "--output", key])
        let publicKey = made.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        let encryption = "\n[encryption]\nrecipients = [\"\(publicKey)\"]\n"
        let config = Self.baseConfig + encryption + "identity_file = \"../../prod.agekey\"\n" + store.offsiteTable(bucket: bucket)
        try box.write("instances/prod/instance.toml", config)
        let (name, file) = try box.takeSnapshot(gzip: true)
        #expect(name.hasSuffix(".db.gz"), "local backups stay plain without local = true: \(name)")
        let push = try Self.run(box, store, ["backups", "push", "prod"])
        #expect(push.status == 0, "\(push.stderr)")
        #expect(box.allBackupFiles().allSatisfy { !$0.hasPrefix(".") }, "the encrypted temp copy was left: \(box.allBackupFiles())")
        // The outsider: the object is an age file that opens, with the key alone, to the local backup's bytes.
        let folder = NSTemporaryDirectory() + "deployctl-age-fetch-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: folder) }
        #expect(try store.aws(["s3", "cp", "s3://\(bucket)/lending/prod/hosta/\(name).age", folder + "/b.age"]).status == 0)
        #expect(try store.aws(["s3", "ls", "s3://\(bucket)/lending/prod/hosta/\(name)"]).stdout.contains("\(name).age"))
        let plainKey = try store.aws(["s3api", "head-object", "--bucket", bucket, "--key", "lending/prod/hosta/\(name)"])
        #expect(plainKey.status != 0, "the plain backup went offsite too")
        let opened = try Sandbox.exec(age, ["-d", "-i", key, "-o", folder + "/b.db.gz", folder + "/b.age"])
        #expect(opened.status == 0, "\(opened.stderr)")
        #expect(try Sandbox.exec("/usr/bin/cmp", [folder + "/b.db.gz", file]).status == 0)
        #expect(try store.aws(["s3", "cp", "s3://\(bucket)/lending/prod/hosta/\(name).age.json", folder + "/m.json"]).status == 0)
        let manifest = try #require(JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: folder + "/m.json"))) as? [String: Any])
        #expect(manifest["sha256"] as? String == String(try Sandbox.exec("/usr/bin/sha256sum", [folder + "/b.age"]).stdout.prefix(64)))
        #expect((manifest["encryption"] as? [String: Any])?["recipients"] as? [String] == [publicKey])
        // Idempotent, though each encryption differs.
        let again = try Self.run(box, store, ["backups", "push", "prod", "--json"])
        #expect(again.status == 0 && again.stdout.contains("\"uploaded\" : false"), "\(again.stdout)\(again.stderr)")
        let verify = try Self.run(box, store, ["backups", "verify", "prod", "--remote", "primary", "--download"])
        #expect(verify.status == 0 && verify.stdout.contains("integrity_check"), "\(verify.stdout)\(verify.stderr)")
        // A damaged local copy is not used for the restore: the remote one is downloaded.
        let original = try box.sha3(box.databasePath)
        let handle = try FileHandle(forUpdating: URL(fileURLWithPath: file))
        try handle.seek(toOffset: 3000)
        try handle.write(contentsOf: Data([0x55, 0xAA]))
        try handle.close()
        _ = try box.sqlite(box.databasePath, "DELETE FROM tracker")
        let fromRemote = try Self.run(box, store, ["restore", "prod", "--remote", "primary", "--latest", "--yes"])
        #expect(fromRemote.status == 0, "\(fromRemote.stdout)\(fromRemote.stderr)")
        #expect(try box.sha3(box.databasePath) == original)
        // A new host: no local backups. Without the identity the restore is refused and leaves nothing.
        let before = try box.sha3(box.databasePath)
        _ = try box.sqlite(box.databasePath, "DELETE FROM payment WHERE id % 3 = 0")
        let changed = try box.sha3(box.databasePath)
        try FileManager.default.removeItem(atPath: box.backupsFolder)
        try box.write("instances/prod/instance.toml", Self.baseConfig + encryption + store.offsiteTable(bucket: bucket))
        let checksumOnly = try Self.run(box, store, ["backups", "verify", "prod", "--remote", "primary", "--download"])
        #expect(checksumOnly.status == 0 && checksumOnly.stdout.contains("not decrypted") && !checksumOnly.stdout.contains("integrity_check good"),
                "\(checksumOnly.stdout)\(checksumOnly.stderr)")
        let refused = try Self.run(box, store, ["restore", "prod", "--remote", "primary", "--latest", "--yes"])
        #expect(refused.status == 64 && refused.stderr.contains("identity_file"), "\(refused.stderr)")
        #expect(try box.sha3(box.databasePath) == changed)
        #expect(box.allBackupFiles().isEmpty, "\(box.allBackupFiles())")
        try box.write("instances/prod/instance.toml", config)
        let restore = try Self.run(box, store, ["restore", "prod", "--remote", "primary", "--latest", "--yes"])
        #expect(restore.status == 0, "\(restore.stderr)")
        #expect(try box.sha3(box.databasePath) == before)
    }
}
