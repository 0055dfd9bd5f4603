import Foundation
import Testing

/// The deliberately hostile S3 server (`Tests/HostileStore/hostile_s3.py`) on 127.0.0.1, one
/// per test: a real HTTP server that, in mode "good", stores what deployctl pushes and, in every
/// other mode, misbehaves on purpose (see the script). It stops by itself when the test process
/// is gone, and when this object is released.
final class HostileStore {
    let folder: String
    let port: Int
    let process: Process
    let secure: Bool
    let host: String
    var endpoint: String { "\(secure ? "https" : "http")://\(host.contains(":") ? "[\(host)]" : host):\(port)" }
    /// Credentials the server never checks; the session token is the secret that must never be printed.
    static let sessionToken = "HOSTILE-SESSION-TOKEN-" + String(UInt32.random(in: 0...UInt32.max), radix: 16)
    static let secretKey = "hostile-secret-" + String(UInt32.random(in: 0...UInt32.max), radix: 16)

    static let script: String = {
        var url = URL(fileURLWithPath: #filePath)
        while !FileManager.default.fileExists(atPath: url.appendingPathComponent("Package.swift").path) { url.deleteLastPathComponent() }
        return url.appendingPathComponent("Tests/HostileStore/hostile_s3.py").path
    }()

    /// `tls`: the prefix of a certificate and key made by `makeCertificate`; `host`: the
    /// address to listen on (127.0.0.1, or ::1).
    init(mode: String = "good", tls: String? = nil, host: String = "127.0.0.1") throws {
        secure = tls != nil
        self.host = host
        folder = NSTemporaryDirectory() + "deployctl-hostile-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        try mode.write(toFile: folder + "/mode", atomically: true, encoding: .utf8)
        (process, port) = try Self.launch("hostile_s3.py", [folder + "/mode", folder + "/log", String(getpid()), "--host", host]
                                            + (tls.map { ["--tls", $0 + ".pem", $0 + ".key"] } ?? []))
    }

    deinit {
        // SIGKILL: the test process blocks SIGTERM on its threads, and a child inherits that mask.
        kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
        try? FileManager.default.removeItem(atPath: folder)
    }

    /// Starts `Tests/HostileStore/<script>` with `arguments`, returning it and the port it prints.
    static func launch(_ script: String, _ arguments: [String]) throws -> (Process, Int) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["python3", (Self.script as NSString).deletingLastPathComponent + "/" + script] + arguments
        let out = Pipe()
        process.standardOutput = out
        process.standardError = FileHandle(forWritingAtPath: "/dev/null")
        try process.run()
        var line = Data()
        while !line.contains(10) {
            let chunk = out.fileHandleForReading.availableData
            guard !chunk.isEmpty else { throw StoreError("\(script) did not start") }
            line.append(chunk)
        }
        guard let port = Int(String(decoding: line, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)) else {
            throw StoreError("\(script) printed no port")
        }
        return (process, port)
    }

    /// A self-signed certificate (its own CA) for `names` (`IP:127.0.0.1`, `DNS:x`), valid
    /// between `from` and `to` days from now; returns the prefix of its .pem and .key.
    static func makeCertificate(in folder: String, _ name: String, names: [String], from: Int = -1, to: Int = 2) throws -> String {
        let prefix = folder + "/" + name
        let script = (Self.script as NSString).deletingLastPathComponent + "/make_cert.py"
        let made = try Sandbox.exec("/usr/bin/env", ["python3", script, prefix, String(from), String(to)] + names)
        guard made.status == 0 else { throw StoreError("make_cert.py failed: \(made.stderr)") }
        return prefix
    }

    func set(_ mode: String) throws {
        try mode.write(toFile: folder + "/mode", atomically: true, encoding: .utf8)
    }

    /// The requests seen so far, one line each: `mode METHOD path | header names`.
    var requests: [String] {
        ((try? String(contentsOfFile: folder + "/log", encoding: .utf8)) ?? "").split(separator: "\n").map(String.init)
    }

    /// The environment for deployctl: fake keys with a session token, no credentials files.
    var environment: [String: String] {
        ["AWS_ACCESS_KEY_ID": "HOSTILEKEYID", "AWS_SECRET_ACCESS_KEY": Self.secretKey, "AWS_SESSION_TOKEN": Self.sessionToken,
         "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent", "AWS_CONFIG_FILE": "/nonexistent", "NO_COLOR": "1",
         // No trust but what a test gives: the system's roots (an empty variable counts as unset).
         "AWS_CA_BUNDLE": "", "SSL_CERT_FILE": "/nonexistent", "AWS_EC2_METADATA_DISABLED": "true",
         "HTTP_PROXY": "", "http_proxy": "", "HTTPS_PROXY": "", "https_proxy": ""]
    }

    /// An instance config whose `[[offsite]]` points here, with short deadlines so every
    /// misbehaviour ends in seconds (`extra` overrides them).
    func config(deadlines: String = "connect_timeout = 2\nread_timeout = 3\nrequest_timeout = 8\nmax_attempts = 2", endpoint: String? = nil) -> String {
        """
        [database]
        path = "database/lending_app_prod.db"
        busy_timeout_ms = 2000
        [backups]
        path = "backups"

        [[offsite]]
        name = "primary"
        url = "s3://hostile/lending/prod"
        endpoint = "\(endpoint ?? self.endpoint)"
        region = "us-east-1"
        path_style = true
        host_id = "hosta"
        \(deadlines)
        """
    }

    /// What a person must never see on their terminal: a control character other than a
    /// newline, or a secret.
    static func unsafe(_ text: String) -> String? {
        if text.contains(sessionToken) { return "the session token" }
        if text.contains(secretKey) { return "the secret key" }
        if let bad = text.unicodeScalars.first(where: { ($0.value < 0x20 && $0 != "\n" && $0 != "\t") || (0x7f...0x9f).contains($0.value) }) {
            return "control character U+\(String(bad.value, radix: 16))"
        }
        return nil
    }
}
