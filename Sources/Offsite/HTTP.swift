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

/// Why a request did not get a response: the connection failed (refused, unreachable, reset,
/// timed out) or TLS did not verify. Retried by the caller; never an HTTP status.
public struct TransportError: Error, Sendable, CustomStringConvertible {
    public let message: String
    /// A certificate that does not verify is not retried.
    public let permanent: Bool
    public var description: String { message }
}

/// One HTTP/1.1 exchange per connection (`Connection: close`), over TCP or TLS (OpenSSL,
/// verifying the certificate chain against the system's roots, or `SSL_CERT_FILE`, and the host
/// name). Blocking sockets with a timeout on every read and write. Bodies are streamed: a
/// request body from a file range, a response body into a sink, so memory stays flat.
public struct HTTPClient: Sendable {
    public let endpoint: Endpoint
    public let timeout: Duration

    public init(endpoint: Endpoint, timeout: Duration = .seconds(30)) {
        self.endpoint = endpoint
        self.timeout = timeout
    }

    /// Sends one request. A 2xx response's body goes to `sink` when given (else it is
    /// collected); other responses' bodies are always collected (error documents), up to 1 MiB.
    /// - Throws: `TransportError`; what `sink` throws.
    public func send(method: String, target: String, headers: [(String, String)], body: HTTPBody,
                     sink: ((UnsafeRawBufferPointer) throws -> Void)? = nil) throws -> HTTPResponse {
        let connection = try Socket(endpoint: endpoint, timeout: timeout)
        var head = "\(method) \(target) HTTP/1.1\r\nHost: \(endpoint.hostHeader)\r\nConnection: close\r\n"
        for (name, value) in headers { head += "\(name): \(value)\r\n" }
        if method == "PUT" || method == "POST" || body.length > 0 { head += "Content-Length: \(body.length)\r\n" }
        head += "\r\n"
        try connection.write(Array(head.utf8))
        switch body {
        case .empty: break
        case .bytes(let bytes): try connection.write(bytes)
        case .file(let fd, let offset, let length):
            // A local read error is a Failure (.io), not a transport problem: never retried.
            try FileRange.read(fd: fd, offset: offset, length: length, path: "the file being sent") { try connection.write($0) }
        }
        return try connection.readResponse(method: method, sink: sink)
    }
}

/// A connected TCP socket, with TLS on top for https.
private final class Socket {
    let fd: Int32
    var ssl: OpaquePointer?
    let description: String
    /// Response bytes read past what was consumed.
    var pending = [UInt8]()
    var pendingStart = 0

    init(endpoint: Endpoint, timeout: Duration) throws {
        description = "\(endpoint.secure ? "https" : "http")://\(endpoint.hostHeader)"
        var hints = addrinfo()
        hints.ai_family = AF_UNSPEC
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        var list: UnsafeMutablePointer<addrinfo>?
        let rc = getaddrinfo(endpoint.host.trimmingCharacters(in: CharacterSet(charactersIn: "[]")), String(endpoint.port), &hints, &list)
        guard rc == 0, let first = list else {
            throw TransportError(message: "cannot resolve \(endpoint.host): \(String(cString: gai_strerror(rc)))", permanent: false)
        }
        defer { freeaddrinfo(list) }
        var lastError: Int32 = 0
        var connected: Int32 = -1
        var entry: UnsafeMutablePointer<addrinfo>? = first
        while let info = entry {
            let s = socket(info.pointee.ai_family, info.pointee.ai_socktype | Int32(SOCK_CLOEXEC.rawValue), info.pointee.ai_protocol)
            if s >= 0 {
                var tv = timeval(tv_sec: Int(timeout.components.seconds), tv_usec: 0)
                setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
                setsockopt(s, SOL_SOCKET, SO_SNDTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
                var one: Int32 = 1
                setsockopt(s, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
                if connect(s, info.pointee.ai_addr, info.pointee.ai_addrlen) == 0 {
                    connected = s
                    break
                }
                lastError = errno
                close(s)
            } else {
                lastError = errno
            }
            entry = info.pointee.ai_next
        }
        guard connected >= 0 else {
            throw TransportError(message: "cannot connect to \(description): \(String(cString: strerror(lastError)))", permanent: false)
        }
        fd = connected
        if endpoint.secure {
            do {
                try startTLS(host: endpoint.host)
            } catch {
                close(fd)
                throw error
            }
        }
    }

    deinit {
        if let ssl {
            SSL_shutdown(ssl)
            SSL_free(ssl)
        }
        close(fd)
    }

    /// One client context for the process: system roots (or `SSL_CERT_FILE`), TLS 1.2 or later.
    nonisolated(unsafe) static let context: OpaquePointer? = {
        guard let ctx = SSL_CTX_new(TLS_client_method()) else { return nil }
        SSL_CTX_set_default_verify_paths(ctx)
        SSL_CTX_ctrl(ctx, SSL_CTRL_SET_MIN_PROTO_VERSION, Int(TLS1_2_VERSION), nil)
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, nil)
        return ctx
    }()

    private func startTLS(host: String) throws {
        guard let context = Self.context, let ssl = SSL_new(context) else {
            throw TransportError(message: "cannot set up TLS (OpenSSL)", permanent: true)
        }
        self.ssl = ssl
        SSL_set_fd(ssl, fd)
        _ = host.withCString { name in
            // SSL_set_tlsext_host_name (a macro): the name the server's certificate must have.
            SSL_ctrl(ssl, SSL_CTRL_SET_TLSEXT_HOSTNAME, Int(TLSEXT_NAMETYPE_host_name), UnsafeMutableRawPointer(mutating: name))
        }
        if inet_addr(host) == INADDR_NONE && !host.contains(":") {
            SSL_set1_host(ssl, host)
        } else {
            X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), host)
        }
        guard SSL_connect(ssl) == 1 else {
            let verify = SSL_get_verify_result(ssl)
            let reason = verify != X509_V_OK ? String(cString: X509_verify_cert_error_string(verify)) : Self.openSSLError()
            throw TransportError(message: "TLS with \(description) failed: \(reason)", permanent: verify != X509_V_OK)
        }
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
                n = Int(SSL_write(ssl, bytes.baseAddress! + done, Int32(min(bytes.count - done, 1 << 30))))
            } else {
                n = send(fd, bytes.baseAddress! + done, bytes.count - done, Int32(MSG_NOSIGNAL))
                if n < 0 && errno == EINTR { continue }
            }
            guard n > 0 else { throw TransportError(message: "sending to \(description) failed: \(ssl == nil ? String(cString: strerror(errno)) : Self.openSSLError())", permanent: false) }
            done += n
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
                let n = SSL_read(ssl, buffer, Int32(count))
                if n > 0 { return Int(n) }
                let error = SSL_get_error(ssl, n)
                if error == SSL_ERROR_ZERO_RETURN || (error == SSL_ERROR_SYSCALL && ERR_peek_error() == 0) { return 0 }
                throw TransportError(message: "receiving from \(description) failed: \(Self.openSSLError())", permanent: false)
            }
            let n = recv(fd, buffer, count, 0)
            if n >= 0 { return n }
            if errno == EINTR { continue }
            throw TransportError(message: "receiving from \(description) failed: \(errno == EAGAIN ? "no answer within the timeout" : String(cString: strerror(errno)))", permanent: false)
        }
    }

    /// Reads until `\r\n`, returning the line without it.
    func readLine(limit: Int = 64 << 10) throws -> String {
        var line = [UInt8]()
        var byte: UInt8 = 0
        while true {
            let n = try withUnsafeMutableBytes(of: &byte) { try read(into: $0.baseAddress!, count: 1) }
            guard n == 1 else { throw TransportError(message: "\(description) closed the connection mid-response", permanent: false) }
            if byte == 10 { break }
            line.append(byte)
            guard line.count < limit else { throw TransportError(message: "\(description) sent a header line over \(limit) bytes", permanent: false) }
        }
        if line.last == 13 { line.removeLast() }
        return String(decoding: line, as: UTF8.self)
    }

    func readResponse(method: String, sink: ((UnsafeRawBufferPointer) throws -> Void)?) throws -> HTTPResponse {
        // Buffered reads for the head: fill `pending` in blocks.
        pending = []
        pendingStart = 0
        let status = try readStatus()
        var headers = [String: String]()
        while true {
            let line = try readLine()
            if line.isEmpty { break }
            guard let colon = line.firstIndex(of: ":") else { continue }
            headers[line[..<colon].lowercased()] = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
        }
        var response = HTTPResponse(status: status, headers: headers, body: [])
        if method == "HEAD" || status == 204 || status == 304 { return response }
        let streaming = (200..<300).contains(status) ? sink : nil
        var collected = [UInt8]()
        let deliver: (UnsafeRawBufferPointer) throws -> Void = { chunk in
            if let streaming {
                try streaming(chunk)
            } else if collected.count < 1 << 20 {
                collected.append(contentsOf: chunk.prefix((1 << 20) - collected.count))
            }
        }
        let buffer = UnsafeMutableRawPointer.allocate(byteCount: 1 << 20, alignment: 16)
        defer { buffer.deallocate() }
        if headers["transfer-encoding"]?.lowercased().contains("chunked") == true {
            while true {
                let sizeLine = try readLine()
                guard let size = Int(sizeLine.split(separator: ";").first?.trimmingCharacters(in: .whitespaces) ?? "", radix: 16) else {
                    throw TransportError(message: "\(description) sent a malformed chunk size '\(sizeLine)'", permanent: false)
                }
                if size == 0 {
                    while try !readLine().isEmpty {}
                    break
                }
                try copy(size, buffer: buffer, into: deliver)
                _ = try readLine()
            }
        } else if let length = headers["content-length"].flatMap({ Int64($0) }) {
            try copy(Int(length), buffer: buffer, into: deliver)
        } else {
            while true {
                let n = try read(into: buffer, count: 1 << 20)
                if n == 0 { break }
                try deliver(UnsafeRawBufferPointer(start: buffer, count: n))
            }
        }
        response.body = collected
        return response
    }

    private func readStatus() throws -> Int {
        var line = try readLine()
        // A 100 Continue (never asked for, but allowed) precedes the real status.
        while true {
            let parts = line.split(separator: " ", maxSplits: 2)
            guard parts.count >= 2, parts[0].hasPrefix("HTTP/1."), let status = Int(parts[1]) else {
                throw TransportError(message: "\(description) did not answer in HTTP/1.1: '\(line.prefix(80))'", permanent: false)
            }
            guard status == 100 else { return status }
            while try !readLine().isEmpty {}
            line = try readLine()
        }
    }

    private func copy(_ count: Int, buffer: UnsafeMutableRawPointer, into deliver: (UnsafeRawBufferPointer) throws -> Void) throws {
        var left = count
        while left > 0 {
            let n = try read(into: buffer, count: min(left, 1 << 20))
            guard n > 0 else { throw TransportError(message: "\(description) closed the connection with \(left) bytes of the body unsent", permanent: false) }
            try deliver(UnsafeRawBufferPointer(start: buffer, count: n))
            left -= n
        }
    }
}
