import Foundation
import Support

/// A request body: nothing, bytes in memory, or a range of an open file (streamed, never
/// loaded whole).
public enum HTTPBody {
    case empty
    case bytes([UInt8])
    case file(fd: Int32, offset: Int64, length: Int64)

    var length: Int64 {
        switch self {
        case .empty: return 0
        case .bytes(let b): return Int64(b.count)
        case .file(_, _, let length): return length
        }
    }
}

/// A response: status, headers (lower-cased names) and, unless streamed, the body.
public struct HTTPResponse: Sendable {
    public let status: Int
    public let headers: [String: String]
    public var body: [UInt8]
    public var text: String { String(decoding: body, as: UTF8.self) }
}

/// Why a request did not get a whole response: the connection failed (refused, unreachable,
/// reset, a deadline passed), TLS did not verify, or the server broke HTTP. Retried by the
/// caller when `retryable`; never an HTTP status.
public struct TransportError: Error, Sendable, CustomStringConvertible {
    public enum Kind: Sendable, Equatable {
        /// Refused, reset, closed early, nothing heard within the idle deadline: worth another try.
        case connection
        /// The request's total deadline passed.
        case timeout
        /// The certificate did not verify (or TLS could not be set up): another try gets the same answer.
        case certificate(CertificateProblem)
        /// The server broke HTTP (malformed status, headers over the limit, a bad chunk size, a
        /// body over the limit): a hostile or broken server, not retried.
        case protocolViolation
    }

    public let kind: Kind
    public let message: String

    public init(_ kind: Kind, _ message: String) {
        self.kind = kind
        self.message = message
    }

    public var retryable: Bool { kind == .connection || kind == .timeout }
    public var description: String { message }
}

/// How long a request may take: to connect, without any byte moving, and in all. The CLI's
/// defaults are these; `[[offsite]]` keys override them (docs/offsite.md).
public struct Deadlines: Sendable, Equatable {
    public var connect: Duration
    public var idle: Duration
    public var request: Duration

    public init(connect: Duration = .seconds(10), idle: Duration = .seconds(30), request: Duration = .seconds(120)) {
        self.connect = connect
        self.idle = idle
        self.request = request
    }
}
/// Bounds on what a server may send, so a hostile one cannot grow memory.
public enum HTTPLimits {
    /// All header lines of one response together.
    public static let headerBytes = 64 << 10
    public static let headerCount = 200
    /// An error document (or any non-2xx body) is read up to this and the rest dropped.
    public static let errorBody = 64 << 10
    /// A 2xx body collected in memory (listings, manifests, multipart answers).
    public static let collectedBody = 16 << 20
}

/// One HTTP/1.1 exchange per connection (`Connection: close`), over TCP or TLS (OpenSSL,
/// verifying the certificate chain against the system's roots, `SSL_CERT_FILE`, or a CA bundle
/// given, and the host name or IP address). Every wait is sliced into 250 ms: between slices
/// `checkpoint` runs (it throws when the command was interrupted, so a signal stops a request
/// within a second) and the deadlines are checked. Bodies are streamed: a request body from a
/// file range, a 2xx response body into a sink, so memory stays flat.
public struct HTTPClient: Sendable {
    public let endpoint: Endpoint
    public let deadlines: Deadlines
    /// A PEM file of trusted roots instead of the system's (`AWS_CA_BUNDLE`, `ca_bundle`).
    public let caBundle: String?
    public let proxy: Proxy?
    public let checkpoint: @Sendable () throws -> Void

    public init(endpoint: Endpoint, deadlines: Deadlines = Deadlines(), caBundle: String? = nil, proxy: Proxy? = nil,
                checkpoint: @escaping @Sendable () throws -> Void = {}) {
        self.endpoint = endpoint
        self.proxy = proxy
        self.deadlines = deadlines
        self.caBundle = caBundle
        self.checkpoint = checkpoint
    }

    /// Sends one request, to be answered by `deadline` at the latest (else by the request
    /// deadline from now). A 2xx response's body goes to `sink` when given (else it is
    /// collected, up to `HTTPLimits.collectedBody`); other responses' bodies are collected up
    /// to `HTTPLimits.errorBody`, the rest never read.
    /// - Throws: `TransportError`; what `sink` or `checkpoint` throw.
    public func send(method: String, target: String, headers: [(String, String)], body: HTTPBody,
                     deadline: ContinuousClock.Instant? = nil,
                     sink: ((UnsafeRawBufferPointer) throws -> Void)? = nil) throws -> HTTPResponse {
        let total = ContinuousClock.now.advanced(by: deadlines.request)
        let clock = Waiter(deadline: deadline.map { min($0, total) } ?? total, idle: deadlines.idle, checkpoint: checkpoint,
                           place: "\(endpoint.secure ? "https" : "http")://\(endpoint.hostHeader)")
        let connection = try HTTPConnection(endpoint: endpoint, proxy: proxy, connectTimeout: deadlines.connect, caBundle: caBundle, waiter: clock)
        // Through a proxy, plain http names the whole URL; https went through a CONNECT tunnel.
        let plainProxy = proxy != nil && !endpoint.secure
        var head = "\(method) \(plainProxy ? "http://\(endpoint.hostHeader)" : "")\(target) HTTP/1.1\r\nHost: \(endpoint.hostHeader)\r\nConnection: close\r\n"
        if plainProxy, let authorization = proxy?.authorization { head += "Proxy-Authorization: \(authorization)\r\n" }
        for (name, value) in headers { head += "\(name): \(value)\r\n" }
        if method == "PUT" || method == "POST" || body.length > 0 { head += "Content-Length: \(body.length)\r\n" }
        head += "\r\n"
        clock.doing = "sending the request"
        try connection.write(Array(head.utf8))
        switch body {
        case .empty: break
        case .bytes(let bytes): try connection.write(bytes)
        case .file(let fd, let offset, let length):
            // A local read error is a Failure (.io), not a transport problem: never retried.
            try FileRange.read(fd: fd, offset: offset, length: length, path: "the file being sent") { try connection.write($0) }
        }
        clock.doing = "waiting for the answer"
        return try connection.readResponse(method: method, sink: sink)
    }
}

/// The deadlines of one request and what it is doing, checked whenever a wait times out.
final class Waiter {
    let deadline: ContinuousClock.Instant
    let idle: Duration
    let checkpoint: @Sendable () throws -> Void
    let place: String
    var lastProgress = ContinuousClock.now
    var doing = "connecting"

    init(deadline: ContinuousClock.Instant, idle: Duration, checkpoint: @escaping @Sendable () throws -> Void, place: String) {
        self.deadline = deadline
        self.idle = idle
        self.checkpoint = checkpoint
        self.place = place
    }

    static let slice = Duration.milliseconds(250)

    func progressed() { lastProgress = ContinuousClock.now }

    /// Called after a wait of at most one slice that moved nothing.
    /// - Throws: what `checkpoint` throws; `TransportError` when a deadline passed.
    func waited() throws {
        try checkpoint()
        let now = ContinuousClock.now
        if now >= deadline {
            throw TransportError(.timeout, "\(place) did not finish answering within the request's deadline (\(doing))")
        }
        if now - lastProgress >= idle {
            throw TransportError(.connection, "\(place) sent nothing for \(Int(idle.seconds)) s (\(doing))")
        }
    }
}
/// Text a server supplied (messages, codes, header values), made safe to print: control
/// characters (ESC, CR, C1, bidi overrides) shown as `?`, secrets the client knows replaced,
/// and cut to `limit` characters.
public enum Sanitized {
    public static func text(_ raw: String, limit: Int = 200, secrets: [String] = []) -> String {
        var text = raw
        for secret in secrets where secret.count >= 8 {
            text = text.replacingOccurrences(of: secret, with: "[redacted]")
        }
        var out = ""
        var count = 0
        for scalar in text.unicodeScalars {
            guard count < limit else { out += "…"; break }
            let v = scalar.value
            let control = v < 0x20 || v == 0x7f || (0x80...0x9f).contains(v) || (0x200e...0x200f).contains(v)
                || (0x202a...0x202e).contains(v) || (0x2066...0x2069).contains(v)
            out.unicodeScalars.append(control ? "?" : scalar)
            count += 1
        }
        return out
    }
}
