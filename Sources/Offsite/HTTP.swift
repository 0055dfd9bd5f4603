import CTLS
import Foundation
import Support

/// Where an object store listens: `http://127.0.0.1:8333` or `https://s3.eu-west-1.amazonaws.com`.
public struct Endpoint: Sendable, Equatable {
    public let secure: Bool
    public let host: String
    public let port: Int

    /// Parses `http(s)://host[:port]` (no path).
    /// - Throws: `Failure` `.usage`.
    public init(parsing text: String) throws {
        let lower = text.lowercased()
        guard lower.hasPrefix("http://") || lower.hasPrefix("https://") else {
            throw Failure(.usage, "endpoint '\(text)' must start with http:// or https://")
        }
        secure = lower.hasPrefix("https://")
        var rest = String(text.dropFirst(secure ? 8 : 7))
        if rest.hasSuffix("/") { rest.removeLast() }
        guard !rest.isEmpty, !rest.contains("/"), !rest.contains("@") else {
            throw Failure(.usage, "endpoint '\(text)' must be scheme, host and port only (no path, no user)")
        }
        if let colon = rest.lastIndex(of: ":"), !rest.hasSuffix("]"), let port = Int(rest[rest.index(after: colon)...]), (1...65535).contains(port) {
            host = String(rest[..<colon])
            self.port = port
        } else {
            guard !rest.contains(":") || rest.hasPrefix("[") else { throw Failure(.usage, "endpoint '\(text)': bad port") }
            host = rest
            port = secure ? 443 : 80
        }
    }

    public init(secure: Bool, host: String, port: Int) {
        self.secure = secure
        self.host = host
        self.port = port
    }

    /// The `Host` header: the port only when it is not the scheme's.
    public var hostHeader: String { port == (secure ? 443 : 80) ? host : "\(host):\(port)" }
}

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
        /// The certificate did not verify: another try gets the same answer.
        case certificate
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

/// An HTTP proxy to reach the store through: plain requests go to it in absolute form,
/// https is tunnelled with CONNECT (TLS still verified against the store's name).
public struct Proxy: Sendable, Equatable {
    public let endpoint: Endpoint
    /// `Basic …` when the proxy URL had `user:password@`.
    let authorization: String?

    /// Parses `http://[user:password@]host[:port]` (the scheme may be left out).
    /// - Throws: `Failure` `.usage`.
    public init(parsing text: String, variable: String) throws {
        var rest = text.contains("://") ? text : "http://" + text
        guard rest.lowercased().hasPrefix("http://") else {
            throw Failure(.usage, "\(variable) '\(Sanitized.text(text, limit: 80))': only http:// proxies are supported (https is tunnelled through them)")
        }
        rest = String(rest.dropFirst(7))
        if rest.hasSuffix("/") { rest.removeLast() }
        var authorization: String?
        if let at = rest.lastIndex(of: "@") {
            let user = String(rest[..<at]).removingPercentEncoding ?? String(rest[..<at])
            authorization = "Basic " + Data(user.utf8).base64EncodedString()
            rest = String(rest[rest.index(after: at)...])
        }
        do {
            endpoint = try Endpoint(parsing: "http://" + rest)
        } catch let failure as Failure {
            throw Failure(.usage, "\(variable): \(failure.message.replacingOccurrences(of: "endpoint", with: "proxy"))")
        }
        self.authorization = authorization
    }

    /// The proxy for `endpoint` from `HTTPS_PROXY`/`HTTP_PROXY` (or lower case; empty = unset),
    /// or nil when none is set or `NO_PROXY` lists the host.
    /// - Throws: `Failure` `.usage` for a proxy URL that cannot be used.
    public static func forEndpoint(_ endpoint: Endpoint, environment: [String: String]) throws -> Proxy? {
        let value = { (name: String) in [name.lowercased(), name].lazy.compactMap { environment[$0] }.first { !$0.isEmpty } }
        let variable = endpoint.secure ? "HTTPS_PROXY" : "HTTP_PROXY"
        guard let text = value(variable) else { return nil }
        if let list = value("NO_PROXY"), bypasses(endpoint, list) { return nil }
        return try Proxy(parsing: text, variable: variable)
    }

    /// Whether `NO_PROXY` (comma-separated: `*`, host names matching themselves and their
    /// subdomains, with or without a leading dot, IP addresses, each with an optional port)
    /// covers `endpoint`.
    static func bypasses(_ endpoint: Endpoint, _ list: String) -> Bool {
        let host = endpoint.host.trimmingCharacters(in: CharacterSet(charactersIn: "[]")).lowercased()
        for raw in list.split(separator: ",") {
            var entry = raw.trimmingCharacters(in: .whitespaces).lowercased()
            if entry == "*" { return true }
            if entry.hasPrefix("[") , let close = entry.firstIndex(of: "]") {
                let rest = entry[entry.index(after: close)...]
                if rest.hasPrefix(":"), Int(rest.dropFirst()) != endpoint.port { continue }
                entry = String(entry[entry.index(after: entry.startIndex)..<close])
            } else if entry.filter({ $0 == ":" }).count == 1, let colon = entry.lastIndex(of: ":") {
                guard Int(entry[entry.index(after: colon)...]) == endpoint.port else { continue }
                entry = String(entry[..<colon])
            }
            if entry.hasPrefix("*.") { entry.removeFirst() }
            if entry.hasPrefix(".") { entry.removeFirst() }
            guard !entry.isEmpty else { continue }
            if host == entry || host.hasSuffix("." + entry) { return true }
        }
        return false
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
        let connection = try Socket(endpoint: endpoint, proxy: proxy, connectTimeout: deadlines.connect, caBundle: caBundle, waiter: clock)
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

/// A connected TCP socket, with TLS on top for https. Blocking, with 250 ms send and receive
/// timeouts so that every wait comes back to `Waiter.waited`.
private final class Socket {
    let fd: Int32
    var ssl: OpaquePointer?
    let description: String
    let waiter: Waiter
    /// Response bytes read past what was consumed.
    var pending = [UInt8]()
    var pendingStart = 0

    init(endpoint: Endpoint, proxy: Proxy?, connectTimeout: Duration, caBundle: String?, waiter: Waiter) throws {
        self.waiter = waiter
        description = waiter.place + (proxy.map { " (through the proxy \($0.endpoint.hostHeader))" } ?? "")
        let bareHost = endpoint.host.trimmingCharacters(in: CharacterSet(charactersIn: "[]"))
        let target = proxy?.endpoint ?? endpoint
        let connectHost = target.host.trimmingCharacters(in: CharacterSet(charactersIn: "[]"))
        var hints = addrinfo()
        hints.ai_family = AF_UNSPEC
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        var list: UnsafeMutablePointer<addrinfo>?
        let rc = getaddrinfo(connectHost, String(target.port), &hints, &list)
        guard rc == 0, let first = list else {
            throw TransportError(.connection, "cannot resolve \(target.host)\(proxy == nil ? "" : " (the proxy)"): \(String(cString: gai_strerror(rc)))")
        }
        defer { freeaddrinfo(list) }
        var lastError = "no address"
        var connected: Int32 = -1
        var entry: UnsafeMutablePointer<addrinfo>? = first
        let connectBy = min(ContinuousClock.now.advanced(by: connectTimeout), waiter.deadline)
        while let info = entry, connected < 0 {
            entry = info.pointee.ai_next
            let s = socket(info.pointee.ai_family, info.pointee.ai_socktype | Int32(SOCK_CLOEXEC.rawValue) | Int32(SOCK_NONBLOCK.rawValue), info.pointee.ai_protocol)
            guard s >= 0 else { lastError = String(cString: strerror(errno)); continue }
            var rc = connect(s, info.pointee.ai_addr, info.pointee.ai_addrlen)
            if rc != 0 && errno == EINPROGRESS {
                var pfd = pollfd(fd: s, events: Int16(POLLOUT), revents: 0)
                while true {
                    let n = poll(&pfd, 1, Int32(Waiter.slice.seconds * 1000))
                    if n > 0 {
                        var error: Int32 = 0
                        var length = socklen_t(MemoryLayout<Int32>.size)
                        getsockopt(s, SOL_SOCKET, SO_ERROR, &error, &length)
                        rc = error == 0 ? 0 : -1
                        errno = error
                        break
                    }
                    if n < 0 && errno != EINTR { rc = -1; break }
                    do {
                        try waiter.checkpoint()
                        guard ContinuousClock.now < connectBy else {
                            throw TransportError(.connection, "cannot connect to \(description): no answer within \(Int(connectTimeout.seconds)) s")
                        }
                    } catch {
                        close(s)
                        throw error
                    }
                }
            }
            guard rc == 0 else { lastError = String(cString: strerror(errno)); close(s); continue }
            _ = fcntl(s, F_SETFL, fcntl(s, F_GETFL) & ~O_NONBLOCK)
            var tv = timeval(tv_sec: 0, tv_usec: Int(Waiter.slice.seconds * 1_000_000))
            setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
            setsockopt(s, SOL_SOCKET, SO_SNDTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
            var one: Int32 = 1
            setsockopt(s, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
            connected = s
        }
        guard connected >= 0 else {
            throw TransportError(.connection, "cannot connect to \(description): \(lastError)")
        }
        fd = connected
        waiter.progressed()
        if endpoint.secure {
            do {
                if let proxy { try tunnel(to: endpoint, through: proxy) }
                try startTLS(host: bareHost, caBundle: caBundle)
            } catch {
                close(fd)
                throw error
            }
        }
    }

    /// Asks the proxy for a tunnel to `endpoint` (CONNECT); TLS then runs through it.
    private func tunnel(to endpoint: Endpoint, through proxy: Proxy) throws {
        waiter.doing = "asking the proxy for a tunnel"
        var request = "CONNECT \(endpoint.host):\(endpoint.port) HTTP/1.1\r\nHost: \(endpoint.host):\(endpoint.port)\r\n"
        if let authorization = proxy.authorization { request += "Proxy-Authorization: \(authorization)\r\n" }
        try write(Array((request + "\r\n").utf8))
        var budget = HTTPLimits.headerBytes
        let status = try readLine(budget: &budget)
        while try !readLine(budget: &budget).isEmpty {}
        let parts = status.split(separator: " ", maxSplits: 2)
        guard parts.count >= 2, parts[0].hasPrefix("HTTP/1."), parts[1] == "200" else {
            throw TransportError(.connection, "the proxy \(proxy.endpoint.hostHeader) refused a tunnel to \(endpoint.hostHeader): '\(Sanitized.text(status, limit: 80))'")
        }
        guard pendingStart >= pending.count else {
            throw TransportError(.protocolViolation, "the proxy \(proxy.endpoint.hostHeader) sent data before the TLS handshake")
        }
    }

    deinit {
        if let ssl {
            SSL_free(ssl)
        }
        close(fd)
    }

    /// Client contexts, one per trust setting: the system's roots (or `SSL_CERT_FILE`), or a
    /// CA bundle file; TLS 1.2 or later.
    nonisolated(unsafe) private static var contexts = [String: OpaquePointer]()
    private static let contextsLock = NSLock()

    private static func context(caBundle: String?) throws -> OpaquePointer {
        contextsLock.lock(); defer { contextsLock.unlock() }
        if let ctx = contexts[caBundle ?? ""] { return ctx }
        guard let ctx = SSL_CTX_new(TLS_client_method()) else {
            throw TransportError(.certificate, "cannot set up TLS (OpenSSL)")
        }
        if let caBundle {
            guard SSL_CTX_load_verify_locations(ctx, caBundle, nil) == 1 else {
                SSL_CTX_free(ctx)
                throw TransportError(.certificate, "the CA bundle \(caBundle) cannot be read as PEM certificates: \(openSSLError())")
            }
        } else {
            SSL_CTX_set_default_verify_paths(ctx)
        }
        SSL_CTX_ctrl(ctx, SSL_CTRL_SET_MIN_PROTO_VERSION, Int(TLS1_2_VERSION), nil)
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, nil)
        contexts[caBundle ?? ""] = ctx
        return ctx
    }

    private func startTLS(host: String, caBundle: String?) throws {
        guard let ssl = SSL_new(try Self.context(caBundle: caBundle)) else {
            throw TransportError(.certificate, "cannot set up TLS (OpenSSL)")
        }
        self.ssl = ssl
        SSL_set_fd(ssl, fd)
        let literal = host.contains(":") || inet_addr(host) != INADDR_NONE
        if !literal {
            _ = host.withCString { name in
                // SSL_set_tlsext_host_name (a macro): the name the server's certificate must have.
                SSL_ctrl(ssl, SSL_CTRL_SET_TLSEXT_HOSTNAME, Int(TLSEXT_NAMETYPE_host_name), UnsafeMutableRawPointer(mutating: name))
            }
        }
        // The certificate must name the host, or the IP address (v4 or v6, without brackets).
        let pinned = literal ? X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), host) : SSL_set1_host(ssl, host)
        guard pinned == 1 else {
            throw TransportError(.certificate, "TLS with \(description): '\(host)' cannot be checked against a certificate")
        }
        waiter.doing = "the TLS handshake"
        while true {
            ERR_clear_error()
            let rc = SSL_connect(ssl)
            if rc == 1 { break }
            let error = SSL_get_error(ssl, rc)
            if error == SSL_ERROR_WANT_READ || error == SSL_ERROR_WANT_WRITE {
                try waiter.waited()
                continue
            }
            let verify = SSL_get_verify_result(ssl)
            if verify != X509_V_OK {
                throw TransportError(.certificate, "TLS with \(description) failed: the certificate does not verify: \(String(cString: X509_verify_cert_error_string(verify)))")
            }
            throw TransportError(.connection, "TLS with \(description) failed: \(Self.openSSLError())")
        }
        waiter.progressed()
    }

    static func openSSLError() -> String {
        let code = ERR_get_error()
        guard code != 0 else { return "the connection was closed during the handshake" }
        var buffer = [UInt8](repeating: 0, count: 256)
        buffer.withUnsafeMutableBufferPointer { ERR_error_string_n(code, UnsafeMutableRawPointer($0.baseAddress!).assumingMemoryBound(to: CChar.self), $0.count) }
        return String(decoding: buffer.prefix { $0 != 0 }, as: UTF8.self)
    }

    func write(_ bytes: [UInt8]) throws {
        try bytes.withUnsafeBytes { try write($0) }
    }

    func write(_ bytes: UnsafeRawBufferPointer) throws {
        var done = 0
        while done < bytes.count {
            let n: Int
            if let ssl {
                let chunk = Int32(min(bytes.count - done, 1 << 30))
                ERR_clear_error()
                let rc = SSL_write(ssl, bytes.baseAddress! + done, chunk)
                if rc <= 0 {
                    let error = SSL_get_error(ssl, rc)
                    if error == SSL_ERROR_WANT_WRITE || error == SSL_ERROR_WANT_READ { try waiter.waited(); continue }
                    throw TransportError(.connection, "sending to \(description) failed: \(Self.openSSLError())")
                }
                n = Int(rc)
            } else {
                n = send(fd, bytes.baseAddress! + done, bytes.count - done, Int32(MSG_NOSIGNAL))
                if n < 0 && (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK) { try waiter.waited(); continue }
                guard n > 0 else { throw TransportError(.connection, "sending to \(description) failed: \(String(cString: strerror(errno)))") }
            }
            done += n
            waiter.progressed()
        }
    }

    /// Reads up to `count` bytes; 0 at the end of the stream.
    func read(into buffer: UnsafeMutableRawPointer, count: Int) throws -> Int {
        if pendingStart < pending.count {
            let n = min(count, pending.count - pendingStart)
            pending.withUnsafeBytes { buffer.copyMemory(from: $0.baseAddress! + pendingStart, byteCount: n) }
            pendingStart += n
            return n
        }
        while true {
            if let ssl {
                ERR_clear_error()
                let n = SSL_read(ssl, buffer, Int32(count))
                if n > 0 { waiter.progressed(); return Int(n) }
                let error = SSL_get_error(ssl, n)
                if error == SSL_ERROR_WANT_READ || error == SSL_ERROR_WANT_WRITE { try waiter.waited(); continue }
                if error == SSL_ERROR_ZERO_RETURN || (error == SSL_ERROR_SYSCALL && ERR_peek_error() == 0) { return 0 }
                throw TransportError(.connection, "receiving from \(description) failed: \(Self.openSSLError())")
            }
            let n = recv(fd, buffer, count, 0)
            if n > 0 { waiter.progressed(); return n }
            if n == 0 { return 0 }
            if errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK { try waiter.waited(); continue }
            throw TransportError(.connection, "receiving from \(description) failed: \(String(cString: strerror(errno)))")
        }
    }

    /// Fills `pending` with what the socket has (the head is read in blocks, not byte by byte).
    private func fill() throws -> Bool {
        if pendingStart < pending.count { return true }
        var block = [UInt8](repeating: 0, count: 16 << 10)
        let n = try block.withUnsafeMutableBytes { try read(into: $0.baseAddress!, count: $0.count) }
        guard n > 0 else { return false }
        pending = Array(block.prefix(n))
        pendingStart = 0
        return true
    }

    /// Reads until `\r\n`, returning the line without it; `budget` is what the head may still use.
    func readLine(budget: inout Int) throws -> String {
        var line = [UInt8]()
        while true {
            guard try fill() else { throw TransportError(.connection, "\(description) closed the connection mid-response") }
            let available = pending[pendingStart...]
            if let newline = available.firstIndex(of: 10) {
                line.append(contentsOf: pending[pendingStart..<newline])
                pendingStart = newline + 1
                break
            }
            line.append(contentsOf: available)
            pendingStart = pending.count
            guard line.count <= budget else { break }
        }
        budget -= line.count + 1
        guard budget >= 0 else {
            throw TransportError(.protocolViolation, "\(description) sent a response head over \(HTTPLimits.headerBytes >> 10) KiB (headers are bounded)")
        }
        if line.last == 13 { line.removeLast() }
        return String(decoding: line, as: UTF8.self)
    }

    func readResponse(method: String, sink: ((UnsafeRawBufferPointer) throws -> Void)?) throws -> HTTPResponse {
        pending = []
        pendingStart = 0
        var budget = HTTPLimits.headerBytes
        let status = try readStatus(budget: &budget)
        var headers = [String: String]()
        var count = 0
        while true {
            let line = try readLine(budget: &budget)
            if line.isEmpty { break }
            count += 1
            guard count <= HTTPLimits.headerCount else {
                throw TransportError(.protocolViolation, "\(description) sent over \(HTTPLimits.headerCount) header lines (headers are bounded)")
            }
            guard let colon = line.firstIndex(of: ":") else { continue }
            let name = line[..<colon].lowercased()
            let value = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
            // A repeated Content-Length that disagrees is a smuggling attempt, not a response.
            if name == "content-length", let earlier = headers[name], earlier != value {
                throw TransportError(.protocolViolation, "\(description) sent two different Content-Length headers")
            }
            headers[name] = value
        }
        var response = HTTPResponse(status: status, headers: headers, body: [])
        if method == "HEAD" || status == 204 || status == 304 { return response }
        let success = (200..<300).contains(status)
        let streaming = success ? sink : nil
        let limit = success ? HTTPLimits.collectedBody : HTTPLimits.errorBody
        var collected = [UInt8]()
        var full = false
        let deliver: (UnsafeRawBufferPointer) throws -> Void = { chunk in
            if let streaming {
                try streaming(chunk)
            } else {
                guard collected.count + chunk.count <= limit else {
                    // An error document is cut; a 2xx body this large is not an S3 answer.
                    guard success else {
                        collected.append(contentsOf: chunk.prefix(limit - collected.count))
                        full = true
                        return
                    }
                    throw TransportError(.protocolViolation, "\(self.description) sent a response body over \(limit >> 20) MiB where a small document was expected")
                }
                collected.append(contentsOf: chunk)
            }
        }
        let buffer = UnsafeMutableRawPointer.allocate(byteCount: 1 << 20, alignment: 16)
        defer { buffer.deallocate() }
        waiter.doing = "reading the answer's body"
        if headers["transfer-encoding"]?.lowercased().contains("chunked") == true {
            while !full {
                var lineBudget = 4096
                let sizeLine = try readLine(budget: &lineBudget)
                let digits = sizeLine.split(separator: ";", maxSplits: 1, omittingEmptySubsequences: false).first.map { $0.trimmingCharacters(in: .whitespaces) } ?? ""
                guard !digits.isEmpty, digits.count <= 15, digits.allSatisfy(\.isHexDigit), let size = Int(digits, radix: 16) else {
                    throw TransportError(.protocolViolation, "\(description) sent a malformed chunk size '\(Sanitized.text(sizeLine, limit: 40))'")
                }
                if size == 0 {
                    var trailers = 8192
                    while try !readLine(budget: &trailers).isEmpty {}
                    break
                }
                try copy(size, buffer: buffer, into: deliver, stop: { full })
                var crlf = 16
                guard try readLine(budget: &crlf).isEmpty else {
                    throw TransportError(.protocolViolation, "\(description) sent a chunk longer than its size")
                }
            }
        } else if let text = headers["content-length"] {
            guard !text.isEmpty, text.count <= 18, text.allSatisfy(\.isASCII), text.allSatisfy(\.isNumber), let length = Int(text) else {
                throw TransportError(.protocolViolation, "\(description) sent a malformed Content-Length '\(Sanitized.text(text, limit: 40))'")
            }
            try copy(length, buffer: buffer, into: deliver, stop: { full })
        } else {
            while !full {
                let n = try read(into: buffer, count: 1 << 20)
                if n == 0 { break }
                try deliver(UnsafeRawBufferPointer(start: buffer, count: n))
            }
        }
        response.body = collected
        return response
    }

    private func readStatus(budget: inout Int) throws -> Int {
        var line = try readLine(budget: &budget)
        // A 100 Continue (never asked for, but allowed) precedes the real status.
        while true {
            let parts = line.split(separator: " ", maxSplits: 2)
            guard parts.count >= 2, parts[0] == "HTTP/1.1" || parts[0] == "HTTP/1.0", parts[1].count == 3,
                  let status = Int(parts[1]), (100...599).contains(status) else {
                throw TransportError(.protocolViolation, "\(description) did not answer in HTTP/1.1: '\(Sanitized.text(line, limit: 80))'")
            }
            guard status == 100 else { return status }
            while try !readLine(budget: &budget).isEmpty {}
            line = try readLine(budget: &budget)
        }
    }

    private func copy(_ count: Int, buffer: UnsafeMutableRawPointer, into deliver: (UnsafeRawBufferPointer) throws -> Void, stop: () -> Bool) throws {
        var left = count
        while left > 0, !stop() {
            let n = try read(into: buffer, count: min(left, 1 << 20))
            guard n > 0 else { throw TransportError(.connection, "\(description) closed the connection with \(left) bytes of the body unsent") }
            try deliver(UnsafeRawBufferPointer(start: buffer, count: n))
            left -= n
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
