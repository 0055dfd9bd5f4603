import Foundation
import Testing

/// deployctl against a deliberately hostile S3 server on 127.0.0.1 (`HostileStore`): every
/// misbehaviour ends in bounded time with the right exit code, nothing corrupt is accepted, no
/// secret or control character reaches the terminal, and no partial file is left.
@Suite("offsite against a hostile store (truncated, stalled, endless, looping, redirecting, lying)")
struct HostileStoreTests {
    /// A sandbox whose one backup was pushed to a new hostile store in good mode, then removed
    /// locally (so a restore must download it).
    static func pushed(rows: Int = 300, deadlines: String? = nil) throws -> (Sandbox, HostileStore, String) {
        let store = try HostileStore()
        let box = try Sandbox(rows: rows, config: deadlines.map { store.config(deadlines: $0) } ?? store.config())
        let (name, file) = try box.takeSnapshot(gzip: true)
        let push = try box.deployctl(["backups", "push", "prod"], environment: store.environment)
        try #require(push.status == 0, "\(push.stderr)")
        try FileManager.default.removeItem(atPath: file)
        try FileManager.default.removeItem(atPath: file + ".json")
        return (box, store, name)
    }

    static func expectClean(_ result: Sandbox.Result, _ context: String, sourceLocation: SourceLocation = #_sourceLocation) {
        #expect(HostileStore.unsafe(result.stderr) == nil, "\(context): stderr shows \(HostileStore.unsafe(result.stderr) ?? ""): \(result.stderr.debugDescription)", sourceLocation: sourceLocation)
        #expect(HostileStore.unsafe(result.stdout) == nil, "\(context): stdout shows \(HostileStore.unsafe(result.stdout) ?? "")", sourceLocation: sourceLocation)
    }

    /// Misbehaviours of a listing, and the exit code and words each must give.
    static let listingCases: [(mode: String, status: Int32, says: String, code: String)] = [
        ("list-html", 69, "not a valid S3 listing", "offsite.listing_malformed"),
        ("list-garbage", 69, "not a valid S3 listing", "offsite.listing_malformed"),
        ("list-truncated-xml", 69, "not well-formed XML", "offsite.listing_malformed"),
        ("list-empty-200", 69, "not a valid S3 listing", "offsite.listing_malformed"),
        ("list-loop", 69, "came twice", "offsite.listing_malformed"),
        ("list-bad-size", 69, "no valid size", "offsite.listing_malformed"),
        ("list-foreign-prefix", 69, "which is outside", "offsite.listing_malformed"),
        ("list-endless-pages", 69, "more than 100000 objects", "offsite.listing_malformed"),
        ("negative-chunk", 69, "malformed chunk size", "offsite.protocol_violation"),
        ("bad-status", 69, "did not answer in HTTP/1.1", "offsite.protocol_violation"),
        ("huge-headers", 69, "over 64 KiB", "offsite.protocol_violation"),
        ("many-headers", 69, "header", "offsite.protocol_violation"),
        ("redirect", 69, "redirects are never followed", "offsite.redirected"),
        ("wrong-region", 64, "region eu-west-3", "offsite.wrong_region"),
        ("endless-500", 69, "after 2 attempts", "offsite.unreachable"),
        ("storm-500", 69, "after 2 attempts: 500 InternalError", "offsite.unreachable"),
        ("storm-503", 69, "after 2 attempts: 503 SlowDown", "offsite.unreachable"),
        ("stall-after-headers", 69, "sent nothing for 3 s", "offsite.unreachable"),
        ("drip", 69, "within the request's deadline", "offsite.unreachable"),
        ("esc-message", 69, "Invalid?[1mArgument", "offsite.request_failed"),
    ]

    @Test("a listing that is malformed, loops, breaks HTTP, redirects, storms, stalls, drips or echoes secrets in ESC sequences: list --remote and restore --remote --latest exit with the code for it (never 'No copies', never 66), print no control character or secret, and leave nothing in the backups folder",
          arguments: listingCases.map(\.mode))
    func listing(mode: String) throws {
        let expected = try #require(Self.listingCases.first { $0.mode == mode })
        let (box, store, _) = try Self.pushed()
        try store.set(mode)
        let list = try box.deployctl(["backups", "list", "prod", "--remote", "primary"], environment: store.environment)
        #expect(list.status == expected.status && list.code == expected.code && list.stderr.contains(expected.says) && !list.stdout.contains("No copies"),
                "\(mode): \(list.status) \(list.stdout) \(list.stderr)")
        Self.expectClean(list, mode)
        let json = try box.deployctl(["backups", "list", "prod", "--remote", "primary", "--json"], environment: store.environment)
        #expect(json.status == expected.status && json.code == expected.code, "\(mode) --json: \(json.status) \(json.stdout) \(json.stderr)")
        Self.expectClean(json, mode + " --json")
        let before = try box.sha3(box.databasePath)
        let restore = try box.deployctl(["restore", "prod", "--remote", "primary", "--latest", "--yes"], environment: store.environment)
        #expect(restore.status == expected.status && restore.code == expected.code, "\(mode) restore: \(restore.status) \(restore.stderr)")
        Self.expectClean(restore, mode + " restore")
        #expect(box.allBackupFiles().isEmpty, "\(mode): \(box.allBackupFiles())")
        #expect(try box.sha3(box.databasePath) == before)
    }

    /// Misbehaviours of the download of a good copy.
    static let downloadCases: [(mode: String, status: Int32, says: String, code: String)] = [
        ("truncated-object", 69, "bytes of the body unsent", "offsite.unreachable"),
        ("short-length-object", 65, "is not what its manifest says", "offsite.copy_damaged"),
        ("overlong-object", 65, "longer than its manifest says", "offsite.copy_damaged"),
        ("endless-object", 65, "longer than its manifest says", "offsite.copy_damaged"),
        ("flip-object", 65, "is not what its manifest says", "offsite.copy_damaged"),
    ]

    @Test("a download that is truncated, shorter or longer than it says, endless or altered: restore --remote and verify --remote --download refuse it (65 for data, 69 for transport), the live database untouched and no partial file left",
          arguments: downloadCases.map(\.mode))
    func download(mode: String) throws {
        let expected = try #require(Self.downloadCases.first { $0.mode == mode })
        let (box, store, _) = try Self.pushed()
        try store.set(mode)
        let before = try box.sha3(box.databasePath)
        let restore = try box.deployctl(["restore", "prod", "--remote", "primary", "--latest", "--yes"], environment: store.environment)
        #expect(restore.status == expected.status && restore.code == expected.code && restore.stderr.contains(expected.says), "\(mode): \(restore.status) \(restore.stderr)")
        Self.expectClean(restore, mode)
        #expect(box.allBackupFiles().isEmpty, "\(mode): \(box.allBackupFiles())")
        #expect(try box.sha3(box.databasePath) == before)
        let verify = try box.deployctl(["backups", "verify", "prod", "--remote", "primary", "--download"], environment: store.environment)
        #expect(verify.status == expected.status, "\(mode) verify: \(verify.status) \(verify.stdout) \(verify.stderr)")
        #expect(box.allBackupFiles().filter { !$0.hasPrefix(".remote-check") }.isEmpty && !box.allBackupFiles().contains { $0.hasPrefix(".remote-check") },
                "\(mode): \(box.allBackupFiles())")
        try store.set("good")
        let good = try box.deployctl(["restore", "prod", "--remote", "primary", "--latest", "--yes"], environment: store.environment)
        #expect(good.status == 0, "the good copy restores once the store behaves: \(good.stderr)")
    }

    @Test("ETags that are not the MD5 (as under SSE-KMS or SSE-C) are accepted: push exits 0 with Content-MD5 on every request, the copy stays, and verify --download and restore --remote check it by its sha256")
    func opaqueETags() throws {
        let store = try HostileStore(mode: "opaque-etag")
        let box = try Sandbox(rows: 300, config: store.config())
        let (name, file) = try box.takeSnapshot(gzip: true)
        let push = try box.deployctl(["backups", "push", "prod"], environment: store.environment)
        #expect(push.status == 0, "\(push.stderr)")
        let puts = store.requests.filter { $0.contains(" PUT ") }
        #expect(puts.count >= 2 && puts.allSatisfy { $0.contains("content-md5") }, "\(puts)")
        let verify = try box.deployctl(["backups", "verify", "prod", "--remote", "primary", "--download"], environment: store.environment)
        #expect(verify.status == 0 && verify.stdout.contains("good"), "\(verify.stdout) \(verify.stderr)")
        try FileManager.default.removeItem(atPath: file)
        try FileManager.default.removeItem(atPath: file + ".json")
        let restore = try box.deployctl(["restore", "prod", "--remote", "primary", "--latest", "--yes"], environment: store.environment)
        #expect(restore.status == 0 && box.backupNames().contains(name), "\(restore.stderr)")
    }

    @Test("a push to a store that resets every write, storms 503 SlowDown, or echoes secrets in an error: 69 (or the store's refusal), no manifest written, no secret or control character printed")
    func hostilePush() throws {
        for mode in ["reset-writes", "storm-503", "esc-message", "drip"] {
            let store = try HostileStore()
            let box = try Sandbox(rows: 50, config: store.config())
            _ = try box.takeSnapshot(gzip: true)
            try store.set(mode)
            let push = try box.deployctl(["backups", "push", "prod"], environment: store.environment)
            #expect(push.status == 69, "\(mode): \(push.status) \(push.stderr)")
            Self.expectClean(push, mode)
            try store.set("good")
            let list = try box.deployctl(["backups", "list", "prod", "--remote", "primary", "--json"], environment: store.environment)
            #expect(list.status == 0 && !list.stdout.contains("\"good\" : true") && !list.stdout.contains("\"good\": true"), "\(mode): \(list.stdout)")
        }
    }

    @Test("push_timeout bounds a whole push: against a store that answers one byte every 2 s, the push exits 69 naming what it was doing and the setting")
    func pushDeadline() throws {
        let store = try HostileStore()
        let box = try Sandbox(rows: 50, config: store.config(deadlines: "read_timeout = 30\nrequest_timeout = 600\npush_timeout = 4"))
        _ = try box.takeSnapshot(gzip: true)
        try store.set("drip")
        let push = try box.deployctl(["backups", "push", "prod"], environment: store.environment)
        #expect(push.status == 69 && push.code == "offsite.timeout" && push.stderr.contains("gave up pushing") && push.stderr.contains("push_timeout = 4 s"), "\(push.stderr)")
    }

    @Test("SIGINT or SIGTERM during a network wait (a stalled listing, a stalled download, default deadlines of minutes) stops the command: exit 1 naming the signal, nothing left", arguments: ["SIGINT", "SIGTERM"])
    func signalDuringWait(signal: String) throws {
        let (box, store, _) = try Self.pushed(deadlines: "")
        try store.set("stall-after-headers")
        for command in [["backups", "list", "prod", "--remote", "primary"], ["restore", "prod", "--remote", "primary", "--latest", "--yes"]] {
            let seen = store.requests.count
            let stderr = Pipe()
            let process = try box.spawnDeployctl(command, environment: store.environment, stderr: stderr)
            // Wait until the store has the request (and is stalling it), then signal.
            var waited = 0
            while store.requests.count == seen && waited < 200 { Thread.sleep(forTimeInterval: 0.05); waited += 1 }
            Thread.sleep(forTimeInterval: 0.3)
            kill(process.processIdentifier, signal == "SIGINT" ? SIGINT : SIGTERM)
            // A bound far below the 30 s read deadline, not a timing assertion: it must have stopped.
            var polls = 0
            while process.isRunning && polls < 100 { Thread.sleep(forTimeInterval: 0.1); polls += 1 }
            if process.isRunning { kill(process.processIdentifier, SIGKILL) }
            process.waitUntilExit()
            let text = String(decoding: stderr.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            #expect(process.terminationReason == .exit && process.terminationStatus == 1 && text.contains("interrupted by signal \(signal)"),
                    "\(command): \(process.terminationStatus) \(text)")
            #expect(box.allBackupFiles().isEmpty, "\(box.allBackupFiles())")
        }
    }
}

/// TLS to the store: the certificate must chain to a trusted root (system, `SSL_CERT_FILE`,
/// `AWS_CA_BUNDLE` or `ca_bundle`) and name the host or IP address (v4 or v6) connected to.
@Suite("offsite over TLS: trust roots from ca_bundle and AWS_CA_BUNDLE; self-signed, wrong name, wrong IPv4 or IPv6 literal and expired certificates refused")
struct OffsiteTLSTests {
    static let folder: String = {
        let folder = NSTemporaryDirectory() + "deployctl-tls-" + UUID().uuidString
        try? FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        return folder
    }()

    /// (case, SANs, validity, listen on, endpoint host, trust through, exit, words, code)
    static let cases: [(name: String, names: [String], from: Int, to: Int, host: String, endpointHost: String, trust: String, status: Int32, says: String, code: String?)] = [
        ("trusted via ca_bundle", ["IP:127.0.0.1"], -1, 2, "127.0.0.1", "127.0.0.1", "ca_bundle", 0, "", nil),
        ("trusted via AWS_CA_BUNDLE", ["IP:127.0.0.1"], -1, 2, "127.0.0.1", "127.0.0.1", "env", 0, "", nil),
        ("IPv6 literal that matches", ["IP:::1"], -1, 2, "::1", "[::1]", "ca_bundle", 0, "", nil),
        ("host name that matches", ["DNS:localhost"], -1, 2, "127.0.0.1", "localhost", "ca_bundle", 0, "", nil),
        ("self-signed, not trusted", ["IP:127.0.0.1"], -1, 2, "127.0.0.1", "127.0.0.1", "none", 69, "self-signed certificate", "offsite.tls_untrusted"),
        ("wrong host name", ["DNS:other.example"], -1, 2, "127.0.0.1", "localhost", "ca_bundle", 69, "host name mismatch", "offsite.tls_host_mismatch"),
        ("wrong IPv4 literal", ["IP:127.0.0.2"], -1, 2, "127.0.0.1", "127.0.0.1", "ca_bundle", 69, "IP address mismatch", "offsite.tls_host_mismatch"),
        ("wrong IPv6 literal", ["IP:127.0.0.1"], -1, 2, "::1", "[::1]", "ca_bundle", 69, "IP address mismatch", "offsite.tls_host_mismatch"),
        ("IPv6 literal, certificate for another IPv6 address", ["IP:::2"], -1, 2, "::1", "[::1]", "ca_bundle", 69, "IP address mismatch", "offsite.tls_host_mismatch"),
        ("IPv6 literal, certificate for a host name only", ["DNS:localhost"], -1, 2, "::1", "[::1]", "ca_bundle", 69, "IP address mismatch", "offsite.tls_host_mismatch"),
        ("expired", ["IP:127.0.0.1"], -10, -1, "127.0.0.1", "127.0.0.1", "ca_bundle", 69, "certificate has expired", "offsite.tls_expired"),
        ("not valid yet", ["IP:127.0.0.1"], 5, 10, "127.0.0.1", "127.0.0.1", "ca_bundle", 69, "certificate is not yet valid", "offsite.tls_expired"),
    ]

    @Test("each certificate case gives 0, or 69 with OpenSSL's reason in the message", arguments: cases.map(\.name))
    func certificate(name: String) throws {
        let c = try #require(Self.cases.first { $0.name == name })
        let cert = try HostileStore.makeCertificate(in: Self.folder, name.replacingOccurrences(of: " ", with: "-"), names: c.names, from: c.from, to: c.to)
        let store = try HostileStore(tls: cert, host: c.host)
        let endpoint = "https://\(c.endpointHost):\(store.port)"
        let deadlines = "connect_timeout = 2\nread_timeout = 3\nrequest_timeout = 8\nmax_attempts = 2" + (c.trust == "ca_bundle" ? "\nca_bundle = \"\(cert).pem\"" : "")
        let box = try Sandbox(rows: 20, config: store.config(deadlines: deadlines, endpoint: endpoint))
        var environment = store.environment
        if c.trust == "env" { environment["AWS_CA_BUNDLE"] = cert + ".pem" }
        let list = try box.deployctl(["backups", "list", "prod", "--remote", "primary"], environment: environment)
        #expect(list.status == c.status && (c.says.isEmpty || list.stderr.contains(c.says)) && list.code == c.code, "\(name): \(list.status) \(list.stdout) \(list.stderr)")
        if c.status != 0 {
            #expect(list.stderr.contains("certificate does not verify") && !list.stderr.contains("after 2 attempts"), "not retried: \(list.stderr)")
        }
    }
}

extension OffsiteTLSTests {
    @Test("a credentials endpoint over TLS is held to the same checks: STS at an IPv4 literal its certificate does not name gives 69, the TLS code and 'IP address mismatch'")
    func credentialsEndpoint() throws {
        let cert = try HostileStore.makeCertificate(in: Self.folder, "sts-wrong-ip", names: ["IP:127.0.0.2"])
        let sts = try HostileStore(tls: cert)
        let store = try HostileStore()
        let box = try Sandbox(rows: 20, config: store.config())
        _ = try box.takeSnapshot(gzip: true)
        try "web-identity-jwt\n".write(toFile: store.folder + "/jwt", atomically: true, encoding: .utf8)
        var environment = store.environment.merging(OffsiteCredentialTests.noKeys) { $1 }
        environment["AWS_WEB_IDENTITY_TOKEN_FILE"] = store.folder + "/jwt"
        environment["AWS_ROLE_ARN"] = "arn:aws:iam::123456789012:role/deployctl"
        environment["AWS_ENDPOINT_URL_STS"] = sts.endpoint
        environment["AWS_CA_BUNDLE"] = cert + ".pem"
        let push = try box.deployctl(["backups", "push", "prod"], environment: environment)
        #expect(push.status == 69 && push.code == "offsite.tls_host_mismatch" && push.stderr.contains("IP address mismatch"), "\(push.status) \(push.stderr)")
        #expect(store.requests.isEmpty, "nothing was sent to the store: \(store.requests)")
    }
}

/// Every credential source of the SDKs' chain, each against a loopback stand-in served by the
/// hostile store in good mode (STS, ECS container credentials, EC2 IMDSv2): a push must sign
/// every request with the credentials that source gave.
@Suite("offsite credentials: environment, web identity, profiles, credential_process, container, IMDSv2, refresh, region and endpoint from the environment")
struct OffsiteCredentialTests {
    /// No static keys: empty variables count as unset.
    static let noKeys = ["AWS_ACCESS_KEY_ID": "", "AWS_SECRET_ACCESS_KEY": "", "AWS_SESSION_TOKEN": ""]

    static let sources = ["environment", "web identity", "AWS_PROFILE", "AWS_DEFAULT_PROFILE [profile x]", "credential_process",
                          "container", "IMDSv2", "IMDSv2 refresh", "region and endpoint from the environment", "STS refuses", "AWS_PROFILE not found"]

    @Test("a push signs with the credentials of the source", arguments: sources)
    func source(name: String) throws {
        let store = try HostileStore()
        var config = store.config()
        var environment = store.environment
        let files = store.folder
        var expected = [String]()
        switch name {
        case "environment":
            expected = ["credential=HOSTILEKEYID/", "token=\(HostileStore.sessionToken)"]
        case "web identity":
            try "web-identity-jwt\n".write(toFile: files + "/jwt", atomically: true, encoding: .utf8)
            environment.merge(Self.noKeys) { $1 }
            environment["AWS_WEB_IDENTITY_TOKEN_FILE"] = files + "/jwt"
            environment["AWS_ROLE_ARN"] = "arn:aws:iam::123456789012:role/deployctl"
            environment["AWS_ENDPOINT_URL_STS"] = store.endpoint
            expected = ["credential=STS1/", "token=sts-token-1"]
        case "AWS_PROFILE":
            try "[default]\naws_access_key_id = WRONGDEFAULT\naws_secret_access_key = x\n\n[ops]\naws_access_key_id = PROFILEKEY\naws_secret_access_key = profile-secret\n"
                .write(toFile: files + "/credentials", atomically: true, encoding: .utf8)
            environment.merge(Self.noKeys) { $1 }
            environment["AWS_SHARED_CREDENTIALS_FILE"] = files + "/credentials"
            environment["AWS_PROFILE"] = "ops"
            expected = ["credential=PROFILEKEY/", "token=-"]
        case "AWS_DEFAULT_PROFILE [profile x]":
            try "[default]\nregion = us-east-1\n[profile ops]\naws_access_key_id = CONFIGKEY\naws_secret_access_key = config-secret\naws_session_token = config-token\n"
                .write(toFile: files + "/config", atomically: true, encoding: .utf8)
            environment.merge(Self.noKeys) { $1 }
            environment["AWS_CONFIG_FILE"] = files + "/config"
            environment["AWS_PROFILE"] = ""
            environment["AWS_DEFAULT_PROFILE"] = "ops"
            expected = ["credential=CONFIGKEY/", "token=config-token"]
        case "credential_process":
            try #"[profile proc]\#ncredential_process = printf '{"Version": 1, "AccessKeyId": "PROCKEY", "SecretAccessKey": "proc-secret", "SessionToken": "proc-token", "Expiration": "2099-01-01T00:00:00Z"}'\#n"#
                .write(toFile: files + "/config", atomically: true, encoding: .utf8)
            environment.merge(Self.noKeys) { $1 }
            environment["AWS_CONFIG_FILE"] = files + "/config"
            environment["AWS_PROFILE"] = "proc"
            expected = ["credential=PROCKEY/", "token=proc-token"]
        case "container":
            environment.merge(Self.noKeys) { $1 }
            environment["AWS_CONTAINER_CREDENTIALS_FULL_URI"] = store.endpoint + "/ecs-credentials"
            environment["AWS_CONTAINER_AUTHORIZATION_TOKEN"] = "ecs-authorization-token"
            expected = ["credential=ECS1/", "token=ecs-token-1"]
        case "IMDSv2", "IMDSv2 refresh":
            environment.merge(Self.noKeys) { $1 }
            environment["AWS_EC2_METADATA_DISABLED"] = ""
            environment["AWS_EC2_METADATA_SERVICE_ENDPOINT"] = store.endpoint
            expected = ["credential=IMDS1/", "token=imds-token-1"]
            if name == "IMDSv2 refresh" {
                // Credentials that expire within the refresh window: each request gets fresh ones.
                try "120".write(toFile: files + "/expiry", atomically: true, encoding: .utf8)
                expected = ["credential=IMDS2/", "credential=IMDS3/", "credential=IMDS4/"]
            }
        case "region and endpoint from the environment":
            config = config.replacingOccurrences(of: "endpoint = \"\(store.endpoint)\"\n", with: "").replacingOccurrences(of: "region = \"us-east-1\"\n", with: "")
            environment["AWS_ENDPOINT_URL_S3"] = store.endpoint
            environment["AWS_REGION"] = "eu-west-3"
            expected = ["/eu-west-3/s3/aws4_request"]
        case "STS refuses":
            try "not-the-token\n".write(toFile: files + "/jwt", atomically: true, encoding: .utf8)
            environment.merge(Self.noKeys) { $1 }
            environment["AWS_WEB_IDENTITY_TOKEN_FILE"] = files + "/jwt"
            environment["AWS_ROLE_ARN"] = "arn:aws:iam::123456789012:role/deployctl"
            environment["AWS_ENDPOINT_URL_STS"] = store.endpoint
        case "AWS_PROFILE not found":
            // A typo'd profile on a machine with instance metadata: refused, never the machine's role.
            try "[default]\naws_access_key_id = WRONGDEFAULT\naws_secret_access_key = x\n".write(toFile: files + "/credentials", atomically: true, encoding: .utf8)
            environment.merge(Self.noKeys) { $1 }
            environment["AWS_SHARED_CREDENTIALS_FILE"] = files + "/credentials"
            environment["AWS_PROFILE"] = "nosuch"
            environment["AWS_EC2_METADATA_DISABLED"] = ""
            environment["AWS_EC2_METADATA_SERVICE_ENDPOINT"] = store.endpoint
        default:
            Issue.record("no case \(name)")
        }
        let box = try Sandbox(rows: 50, config: config)
        _ = try box.takeSnapshot(gzip: true)
        let push = try box.deployctl(["backups", "push", "prod"], environment: environment)
        if name == "STS refuses" {
            #expect(push.status == 77 && push.code == "offsite.web_identity_refused" && push.stderr.contains("STS") && push.stderr.contains("InvalidIdentityToken"), "\(push.stderr)")
            return
        }
        if name == "AWS_PROFILE not found" {
            #expect(push.status == 77 && push.code == "offsite.profile_missing" && push.stderr.contains("the profile [nosuch] named by AWS_PROFILE/AWS_DEFAULT_PROFILE is in neither"), "\(push.stderr)")
            #expect(!store.requests.contains { $0.contains("IMDS1") }, "signed with the machine's role")
            return
        }
        #expect(push.status == 0, "\(name): \(push.stderr)")
        let s3Requests = store.requests.filter { $0.contains("/hostile/") }
        #expect(!s3Requests.isEmpty)
        for word in expected {
            #expect(s3Requests.contains { $0.contains(word) }, "\(name): no request signed with \(word): \(s3Requests.joined(separator: "\n"))")
        }
        if name != "IMDSv2 refresh" && !expected.isEmpty && expected[0].hasPrefix("credential=") {
            #expect(s3Requests.allSatisfy { $0.contains(expected[0]) }, "\(name): every request signed alike")
        }
        Self.expectNoSecrets(push, environment)
    }

    static func expectNoSecrets(_ result: Sandbox.Result, _ environment: [String: String]) {
        for secret in ["proc-secret", "config-secret", "profile-secret", "sts-secret-1", "ecs-secret-1", "imds-secret-1", HostileStore.secretKey] {
            #expect(!result.stdout.contains(secret) && !result.stderr.contains(secret))
        }
    }
}

/// Proxies from the environment: plain http in absolute form through `HTTP_PROXY`, https
/// tunnelled with CONNECT through `HTTPS_PROXY` (the store's certificate still verified),
/// `NO_PROXY` bypassing them, a proxy that is down or refuses: 69 naming it.
@Suite("offsite through HTTP_PROXY / HTTPS_PROXY (CONNECT), NO_PROXY")
struct OffsiteProxyTests {
    final class ProxyProcess {
        let process: Process
        let port: Int
        let log: String
        init(credentials: String? = nil) throws {
            log = NSTemporaryDirectory() + "deployctl-proxy-" + UUID().uuidString + ".log"
            (process, port) = try HostileStore.launch("proxy.py", [log, String(getpid())] + (credentials.map { [$0] } ?? []))
        }
        deinit {
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
            unlink(log)
        }
        var lines: [String] { ((try? String(contentsOfFile: log, encoding: .utf8)) ?? "").split(separator: "\n").map(String.init) }
    }

    @Test("HTTP_PROXY carries a push and restore to a plain http store (with proxy credentials); HTTPS_PROXY tunnels to a TLS store; NO_PROXY bypasses; a proxy that is down or refuses gives 69 naming it")
    func proxies() throws {
        let proxy = try ProxyProcess(credentials: "ops:pa ss")
        let store = try HostileStore()
        let box = try Sandbox(rows: 50, config: store.config())
        let (name, file) = try box.takeSnapshot(gzip: true)
        var environment = store.environment
        environment["HTTP_PROXY"] = "http://ops:pa%20ss@127.0.0.1:\(proxy.port)"
        let push = try box.deployctl(["backups", "push", "prod"], environment: environment)
        #expect(push.status == 0, "\(push.stderr)")
        #expect(proxy.lines.contains { $0.hasPrefix("PUT \(store.endpoint)/hostile/") && $0.hasSuffix("auth=ok") }, "\(proxy.lines)")
        try FileManager.default.removeItem(atPath: file)
        try FileManager.default.removeItem(atPath: file + ".json")
        let restore = try box.deployctl(["restore", "prod", "--remote", "primary", "--latest", "--yes"], environment: environment)
        #expect(restore.status == 0 && box.backupNames().contains(name), "\(restore.stderr)")
        #expect(!(push.stdout + push.stderr + restore.stdout + restore.stderr).contains("pa ss"))

        // Wrong proxy credentials: 407, 69 naming the proxy's answer.
        environment["HTTP_PROXY"] = "http://ops:wrong@127.0.0.1:\(proxy.port)"
        let refused = try box.deployctl(["backups", "list", "prod", "--remote", "primary"], environment: environment)
        #expect(refused.status == 69 && refused.code == "offsite.request_failed" && refused.stderr.contains("407") && !refused.stderr.contains("wrong"), "\(refused.stderr)")

        // NO_PROXY: a dead proxy is never asked.
        environment["HTTP_PROXY"] = "http://127.0.0.1:\(ObjectStore.freePort())"
        environment["NO_PROXY"] = "example.com, 127.0.0.1"
        #expect(try box.deployctl(["backups", "list", "prod", "--remote", "primary"], environment: environment).status == 0)
        environment["NO_PROXY"] = ""
        let down = try box.deployctl(["backups", "list", "prod", "--remote", "primary"], environment: environment)
        #expect(down.status == 69 && down.code == "offsite.unreachable" && down.stderr.contains("through the proxy 127.0.0.1:"), "\(down.stderr)")

        // HTTPS_PROXY: a CONNECT tunnel to a TLS store, whose certificate is still checked.
        let tlsProxy = try ProxyProcess()
        let folder = NSTemporaryDirectory() + "deployctl-proxy-tls-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let cert = try HostileStore.makeCertificate(in: folder, "store", names: ["IP:127.0.0.1"])
        let tlsStore = try HostileStore(tls: cert)
        let tlsBox = try Sandbox(rows: 50, config: tlsStore.config(deadlines: "connect_timeout = 2\nread_timeout = 3\nrequest_timeout = 8\nmax_attempts = 2\nca_bundle = \"\(cert).pem\""))
        _ = try tlsBox.takeSnapshot(gzip: true)
        var tlsEnvironment = tlsStore.environment
        tlsEnvironment["HTTPS_PROXY"] = "127.0.0.1:\(tlsProxy.port)"
        let tunnelled = try tlsBox.deployctl(["backups", "push", "prod"], environment: tlsEnvironment)
        #expect(tunnelled.status == 0, "\(tunnelled.stderr)")
        #expect(tlsProxy.lines.contains { $0.hasPrefix("CONNECT 127.0.0.1:\(tlsStore.port)") }, "\(tlsProxy.lines)")
        let wrongTrust = try tlsBox.deployctl(["backups", "list", "prod", "--remote", "primary"],
                                              environment: tlsEnvironment.merging(["AWS_CA_BUNDLE": "/etc/ssl/certs/ca-certificates.crt"]) { $1 })
        _ = wrongTrust  // ca_bundle in the table wins over AWS_CA_BUNDLE: still trusted.
        #expect(wrongTrust.status == 0, "\(wrongTrust.stderr)")
    }
}

extension HostileStoreTests {
    @Test("a store that answers once with 400 RequestTimeout, 503 SlowDown or a connection reset is asked again: the listing succeeds on the next attempt", arguments: ["request-timeout-once", "slowdown-once", "reset-once"])
    func transientOnce(mode: String) throws {
        let (box, store, name) = try Self.pushed()
        try store.set(mode)
        let list = try box.deployctl(["backups", "list", "prod", "--remote", "primary"], environment: store.environment)
        #expect(list.status == 0 && list.stdout.contains(name), "\(mode): \(list.status) \(list.stdout) \(list.stderr)")
        #expect(store.requests.filter { $0.hasPrefix(mode + " GET") && $0.contains("list-type=2") }.count == 2, "\(store.requests)")
    }
}
