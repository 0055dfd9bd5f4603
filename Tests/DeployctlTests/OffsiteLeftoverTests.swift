import Foundation
import Testing

/// What an outside tester found left over after issue 26 (offsite transport, credentials and
/// signed manifests), each against the loopback hostile store or real SeaweedFS.
@Suite("offsite leftovers: keygen --signing, the signing key's mode, proxy passwords, NO_PROXY forms, expired credentials")
struct OffsiteLeftoverTests {
    static func keyMode(_ path: String) throws -> Int {
        try #require((try FileManager.default.attributesOfItem(atPath: path)[.posixPermissions] as? NSNumber)?.intValue)
    }

    @Test("keygen --signing makes the instance's signing key (0600, path and key id printed, JSON too), refuses a second time (73, the file unchanged); the next push signs with it and makes none; without --output or --signing, or with both: 64; an unknown instance: 66")
    func keygenSigning() throws {
        let store = try HostileStore()
        let box = try Sandbox(rows: 50, config: store.config())
        let keyPath = box.path("instances/prod/offsite-signing.key")
        let made = try box.deployctl(["keygen", "--signing", "prod"])
        #expect(made.status == 0 && made.stdout.contains(keyPath) && made.stderr.contains("Back the file up"), "\(made.stdout) \(made.stderr)")
        #expect(try Self.keyMode(keyPath) == 0o600)
        let text = try String(contentsOfFile: keyPath, encoding: .utf8)
        #expect(text.hasPrefix("deployctl-offsite-signing-key-v1 ") && text.count == 98, "\(text)")

        let again = try box.deployctl(["keygen", "--signing", "prod", "--json"])
        #expect(again.status == 73 && again.code == "keygen.file_exists" && again.stderr.contains(keyPath) && again.stderr.contains("never replaced"), "\(again.status) \(again.stderr)")
        #expect(try String(contentsOfFile: keyPath, encoding: .utf8) == text)
        let unknown = try box.deployctl(["keygen", "--signing", "nosuch"])
        #expect(unknown.status == 66 && unknown.code == "instance.unknown", "\(unknown.status) \(unknown.stderr)")
        #expect(try box.deployctl(["keygen"]).status == 64)
        #expect(try box.deployctl(["keygen", "--signing", "prod", "--output", box.path("x.age")]).status == 64)
        #expect(!FileManager.default.fileExists(atPath: box.path("x.age")))

        // The push uses the key made on purpose: no new key, no announcement; the manifest is signed with its id.
        _ = try box.takeSnapshot(gzip: true)
        let push = try box.deployctl(["backups", "push", "prod"], environment: store.environment)
        #expect(push.status == 0 && !(push.stdout + push.stderr).contains("made this instance's offsite signing key"), "\(push.stdout) \(push.stderr)")
        #expect(try String(contentsOfFile: keyPath, encoding: .utf8) == text)

        // --json: the path and the key id, in a new instance folder.
        try FileManager.default.removeItem(atPath: keyPath)
        let json = try box.deployctl(["keygen", "--signing", "prod", "--json"])
        let document = try #require(JSONSerialization.jsonObject(with: Data(json.stdout.utf8)) as? [String: Any], "\(json.stdout) \(json.stderr)")
        #expect(document["signing_key"] as? String == keyPath && (document["key_id"] as? String)?.count == 16, "\(document)")
    }

    @Test("a signing key file group or others can read is refused like the age identity file: 64 naming chmod 600, by push (nothing sent to the store) and restore --remote; the file is left as it is", arguments: [0o640, 0o604, 0o644])
    func exposedSigningKey(mode: Int) throws {
        let store = try HostileStore()
        let box = try Sandbox(rows: 50, config: store.config())
        #expect(try box.deployctl(["keygen", "--signing", "prod"]).status == 0)
        let keyPath = box.path("instances/prod/offsite-signing.key")
        let text = try String(contentsOfFile: keyPath, encoding: .utf8)
        #expect(chmod(keyPath, mode_t(mode)) == 0)
        _ = try box.takeSnapshot(gzip: true)
        let push = try box.deployctl(["backups", "push", "prod"], environment: store.environment)
        #expect(push.status == 64 && push.code == "offsite.signing_key_exposed" && push.stderr.contains("chmod 600 \(keyPath)")
                && push.stderr.contains("mode \(String(mode, radix: 8))"), "\(push.status) \(push.stderr)")
        #expect(!store.requests.contains { $0.contains("/hostile/") }, "nothing was sent: \(store.requests)")
        let restore = try box.deployctl(["restore", "prod", "--remote", "primary", "--latest", "--yes"], environment: store.environment)
        #expect(restore.status == 64 && restore.code == "offsite.signing_key_exposed", "\(restore.status) \(restore.stderr)")
        #expect(try Self.keyMode(keyPath) == mode && (try String(contentsOfFile: keyPath, encoding: .utf8)) == text)
        // Once fixed as the hint says, the push goes through with the same key.
        #expect(chmod(keyPath, 0o600) == 0)
        let fixed = try box.deployctl(["backups", "push", "prod"], environment: store.environment)
        #expect(fixed.status == 0 && !(fixed.stdout + fixed.stderr).contains("made this instance's"), "\(fixed.stderr)")
    }

    @Test("a proxy URL's password is never printed: an unsupported scheme (64), a refusing proxy (69), with and without --json")
    func proxyPassword() throws {
        let store = try HostileStore()
        let box = try Sandbox(rows: 50, config: store.config())
        _ = try box.takeSnapshot(gzip: true)
        for (variable, value) in [("HTTP_PROXY", "https://ops:Sup3r-s3cret@127.0.0.1:3128"), ("HTTP_PROXY", "socks5://ops:Sup3r-s3cret@proxy.example:1080"),
                                  ("HTTP_PROXY", "https://Sup3r-s3cret@proxy.example:1080")] {
            var environment = store.environment
            environment[variable] = value
            for json in [false, true] {
                let result = try box.deployctl(["backups", "list", "prod", "--remote", "primary"] + (json ? ["--json"] : []), environment: environment)
                let said = result.stdout + result.stderr
                #expect(result.status == 64 && result.code == "offsite.proxy_invalid" && said.contains("***@") && !said.contains("Sup3r-s3cret"), "\(value): \(said)")
            }
        }
        // A proxy that refuses the credentials: 69, its answer quoted, the password never.
        let proxy = try OffsiteProxyTests.ProxyProcess(credentials: "ops:right-one")
        var environment = store.environment
        environment["HTTP_PROXY"] = "http://ops:Sup3r-s3cret@127.0.0.1:\(proxy.port)"
        let refused = try box.deployctl(["backups", "push", "prod", "--json"], environment: environment)
        #expect(refused.status == 69 && !(refused.stdout + refused.stderr).contains("Sup3r-s3cret"), "\(refused.status) \(refused.stderr)")
    }

    /// NO_PROXY values and whether each covers a store on 127.0.0.1 (true: the dead proxy is never asked).
    static let noProxyCases: [(value: String, bypass: Bool)] = [
        ("127.0.0.0/8", true), ("10.0.0.0/8, 127.0.0.1/32", true), ("127.0.0.0/24", true), ("*", true), (" * ", true),
        ("example.com,*", true), ("127.0.0.1", true), ("::1/128,127.0.0.1", true),
        ("10.0.0.0/8", false), ("127.0.1.0/24", false), (".0.0.1", false), ("0.0.1", false), ("127.0.0.0/33", false),
        ("::/0", false), (".example.com", false), ("", false),
    ]

    @Test("NO_PROXY in CIDR form (v4 and v6), * and .suffix forms: a covered store is reached directly, an uncovered one through the proxy (down: 69 naming it)", arguments: noProxyCases.map(\.value))
    func noProxy(value: String) throws {
        let bypass = try #require(Self.noProxyCases.first { $0.value == value }).bypass
        let store = try HostileStore()
        let box = try Sandbox(rows: 50, config: store.config())
        var environment = store.environment
        environment["HTTP_PROXY"] = "http://127.0.0.1:\(ObjectStore.freePort())"
        environment["NO_PROXY"] = value
        let result = try box.deployctl(["backups", "list", "prod", "--remote", "primary"], environment: environment)
        if bypass {
            #expect(result.status == 0, "NO_PROXY='\(value)': \(result.stderr)")
        } else {
            #expect(result.status == 69 && result.stderr.contains("through the proxy 127.0.0.1:"), "NO_PROXY='\(value)': \(result.status) \(result.stderr)")
        }
    }

    @Test("NO_PROXY with IPv6 forms covers a store on [::1]: ::1/128, [::1], ::1, ::/0; not 127.0.0.0/8 or fe80::/10")
    func noProxyIPv6() throws {
        let store = try HostileStore(host: "::1")
        let box = try Sandbox(rows: 50, config: store.config())
        for (value, bypass) in [("::1/128", true), ("[::1]", true), ("::1", true), ("::/0", true), ("[::1]:\(store.port)", true),
                                ("127.0.0.0/8", false), ("fe80::/10", false), ("[::1]:1", false)] {
            var environment = store.environment
            environment["HTTP_PROXY"] = "http://127.0.0.1:\(ObjectStore.freePort())"
            environment["NO_PROXY"] = value
            let result = try box.deployctl(["backups", "list", "prod", "--remote", "primary"], environment: environment)
            #expect(result.status == (bypass ? 0 : 69), "NO_PROXY='\(value)': \(result.status) \(result.stderr)")
        }
    }

    @Test("temporary credentials whose Expiration has passed (credential_process, container, IMDSv2, web identity) are refused: 77 naming the source and the time, no request signed with them, no secret printed", arguments: ["credential_process", "container", "IMDSv2", "web identity"])
    func expiredCredentials(source: String) throws {
        let store = try HostileStore()
        let box = try Sandbox(rows: 50, config: store.config())
        _ = try box.takeSnapshot(gzip: true)
        var environment = store.environment
        environment.merge(OffsiteCredentialTests.noKeys) { $1 }
        // The stand-ins hand out credentials that expired a minute ago.
        try "-60".write(toFile: store.folder + "/expiry", atomically: true, encoding: .utf8)
        var says = ""
        switch source {
        case "credential_process":
            try #"[profile proc]\#ncredential_process = printf '{"Version": 1, "AccessKeyId": "PROCKEY", "SecretAccessKey": "proc-secret", "SessionToken": "proc-token", "Expiration": "2020-01-01T00:00:00Z"}'\#n"#
                .write(toFile: store.folder + "/config", atomically: true, encoding: .utf8)
            environment["AWS_CONFIG_FILE"] = store.folder + "/config"
            environment["AWS_PROFILE"] = "proc"
            says = "credential_process of profile [proc] gave temporary credentials that expired at 2020-01-01T00:00:00Z"
        case "container":
            environment["AWS_CONTAINER_CREDENTIALS_FULL_URI"] = store.endpoint + "/ecs-credentials"
            environment["AWS_CONTAINER_AUTHORIZATION_TOKEN"] = "ecs-authorization-token"
            says = "container credentials gave temporary credentials that expired at "
        case "IMDSv2":
            environment["AWS_EC2_METADATA_DISABLED"] = ""
            environment["AWS_EC2_METADATA_SERVICE_ENDPOINT"] = store.endpoint
            says = "instance metadata (role"
        default:
            try "web-identity-jwt\n".write(toFile: store.folder + "/jwt", atomically: true, encoding: .utf8)
            environment["AWS_WEB_IDENTITY_TOKEN_FILE"] = store.folder + "/jwt"
            environment["AWS_ROLE_ARN"] = "arn:aws:iam::123456789012:role/deployctl"
            environment["AWS_ENDPOINT_URL_STS"] = store.endpoint
            says = "web identity (role arn:aws:iam::123456789012:role/deployctl) gave temporary credentials that expired at "
        }
        let push = try box.deployctl(["backups", "push", "prod"], environment: environment)
        #expect(push.status == 77 && push.code == "offsite.credentials_expired" && push.stderr.contains(says) && push.stderr.contains("this host's clock says")
                && push.stderr.contains("timedatectl"), "\(source): \(push.status) \(push.stderr)")
        #expect(!store.requests.contains { $0.contains("/hostile/") }, "\(source): a request reached the store: \(store.requests)")
        OffsiteCredentialTests.expectNoSecrets(push, environment)
        let list = try box.deployctl(["backups", "list", "prod", "--remote", "primary", "--json"], environment: environment)
        #expect(list.status == 77 && list.code == "offsite.credentials_expired", "\(list.stderr)")
        // Fresh ones again (an hour ahead): the same push goes through.
        try FileManager.default.removeItem(atPath: store.folder + "/expiry")
        if source != "credential_process" {
            #expect(try box.deployctl(["backups", "push", "prod"], environment: environment).status == 0)
        }
    }
}

/// A manifest this instance's key did not sign must not block re-pushing the backup it
/// describes, nor be blamed on a shared host_id (SeaweedFS, the aws CLI as the outsider).
@Suite("offsite: unsigned or foreign-signed manifests and re-push", .enabled(if: ObjectStore.available))
struct OffsiteUnsignedRepushTests {
    @Test("a copy whose manifest is unsigned (pushed before signing, even claiming another instance) is pushed again and signed; an unsigned manifest of other bytes under the name is left alone (1) with a hint that fits, not the host_id one")
    func unsignedManifest() throws {
        let store = try ObjectStore.get(.seaweedfs)
        let (box, bucket) = try OffsiteTests.sandbox(store)
        let (name, _) = try box.takeSnapshot(gzip: true)
        #expect(try OffsiteTests.run(box, store, ["backups", "push", "prod"]).status == 0)
        let key = "lending/prod/hosta/\(name).json"
        let work = box.path("outsider")
        try FileManager.default.createDirectory(atPath: work, withIntermediateDirectories: true)
        #expect(try store.aws(["s3", "cp", "s3://\(bucket)/\(key)", work + "/m.json"]).status == 0)
        // As a push from before signing left it (no authenticator), here claiming another instance too.
        let old = try String(contentsOfFile: work + "/m.json", encoding: .utf8)
            .replacingOccurrences(of: "\"instance\" : \"prod\"", with: "\"instance\" : \"staging\"")
        #expect(old.contains("\"staging\""))
        try old.write(toFile: work + "/old.json", atomically: true, encoding: .utf8)
        #expect(try store.aws(["s3", "cp", work + "/old.json", "s3://\(bucket)/\(key)"]).status == 0)
        let listed = try OffsiteTests.run(box, store, ["backups", "list", "prod", "--remote", "primary"])
        #expect(listed.status == 0, "\(listed.stderr)")

        let again = try OffsiteTests.run(box, store, ["backups", "push", "prod", name])
        #expect(again.status == 0 && again.stdout.contains("→ primary"), "\(again.status) \(again.stdout) \(again.stderr)")
        let head = try store.aws(["s3api", "head-object", "--bucket", bucket, "--key", key])
        #expect(head.stdout.contains("deployctl-authenticator"), "\(head.stdout)")
        let after = try OffsiteTests.run(box, store, ["backups", "list", "prod", "--remote", "primary"])
        #expect(after.status == 0 && after.stdout.contains(name) && !after.stdout.contains("NOT GOOD"), "\(after.stdout)")

        // Another backup's name holds an unsigned manifest of other bytes: neither overwritten nor blamed on host_id.
        Thread.sleep(forTimeInterval: 1.1)
        let (second, _) = try box.takeSnapshot(gzip: true)
        let otherKey = "lending/prod/hosta/\(second)"
        let foreign = old.replacingOccurrences(of: name, with: second)
        let sha = try #require(foreign.range(of: #""sha256" : "[0-9a-f]{64}""#, options: .regularExpression))
        let edited = foreign.replacingCharacters(in: sha, with: "\"sha256\" : \"" + String(repeating: "ab", count: 32) + "\"")
        try edited.write(toFile: work + "/foreign.json", atomically: true, encoding: .utf8)
        try "not this backup".write(toFile: work + "/foreign.bin", atomically: true, encoding: .utf8)
        #expect(try store.aws(["s3", "cp", work + "/foreign.bin", "s3://\(bucket)/\(otherKey)"]).status == 0)
        #expect(try store.aws(["s3", "cp", work + "/foreign.json", "s3://\(bucket)/\(otherKey).json"]).status == 0)
        let before = try store.aws(["s3api", "head-object", "--bucket", bucket, "--key", otherKey]).stdout
        let blocked = try OffsiteTests.run(box, store, ["backups", "push", "prod", second])
        #expect(blocked.status == 1 && blocked.code == "offsite.copy_foreign" && blocked.stderr.contains("this instance's key did not sign")
                && blocked.stderr.contains("--allow-unsigned") && !blocked.stderr.contains("host_id"), "\(blocked.status) \(blocked.stderr)")
        let stillThere = try store.aws(["s3api", "head-object", "--bucket", bucket, "--key", otherKey]).stdout
        #expect(Self.etag(stillThere) == Self.etag(before) && Self.etag(before) != nil, "\(before) \(stillThere)")
    }

    static func etag(_ headObject: String) -> String? {
        ((try? JSONSerialization.jsonObject(with: Data(headObject.utf8))) as? [String: Any])?["ETag"] as? String
    }
}
