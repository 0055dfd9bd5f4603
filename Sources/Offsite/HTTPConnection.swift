import CTLS
import Foundation
import Support

/// A connected TCP socket, with TLS on top for https (`HTTPConnection+TLS.swift`), reading one
/// response (`HTTPConnection+Response.swift`). Blocking, with 250 ms send and receive timeouts
/// so that every wait comes back to `Waiter.waited`.
final class HTTPConnection {
    let fd: Int32
    var ssl: OpaquePointer?
    let description: String
    let waiter: Waiter
    /// Response bytes read past what was consumed.
    var pending = [UInt8]()
    var pendingStart = 0

    /// Connects to `endpoint` (through `proxy` when given: a CONNECT tunnel for https), then,
    /// for https, runs the TLS handshake verifying the certificate against `caBundle` (or the
    /// system's roots) and the endpoint's host name or IP address.
    /// - Throws: `TransportError`; what `waiter`'s checkpoint throws.
    init(endpoint: Endpoint, proxy: Proxy?, connectTimeout: Duration, caBundle: String?, waiter: Waiter) throws {
        self.waiter = waiter
        let place = waiter.place + (proxy.map { " (through the proxy \($0.endpoint.hostHeader))" } ?? "")
        description = place
        let target = proxy?.endpoint ?? endpoint
        let addresses = try Self.resolve(target, proxy: proxy != nil)
        defer { freeaddrinfo(addresses) }
        let connectBy = min(ContinuousClock.now.advanced(by: connectTimeout), waiter.deadline)
        var lastError = "no address"
        var connected: Int32 = -1
        var entry: UnsafeMutablePointer<addrinfo>? = addresses
        while let info = entry, connected < 0 {
            entry = info.pointee.ai_next
            switch try Self.connect(info.pointee, by: connectBy, waiter: waiter,
                                    noAnswer: "cannot connect to \(place): no answer within \(Int(connectTimeout.seconds)) s") {
            case .success(let fd): connected = fd
            case .failure(let reason): lastError = reason
            }
        }
        guard connected >= 0 else {
            throw TransportError(.connection, "cannot connect to \(description): \(lastError)")
        }
        fd = connected
        waiter.progressed()
        if endpoint.secure {
            do {
                if let proxy { try tunnel(to: endpoint, through: proxy) }
                try startTLS(host: endpoint.bareHost, caBundle: caBundle)
            } catch {
                close(fd)
                throw error
            }
        }
    }

    /// The addresses of `target` (a list to free with `freeaddrinfo`).
    private static func resolve(_ target: Endpoint, proxy: Bool) throws -> UnsafeMutablePointer<addrinfo> {
        var hints = addrinfo()
        hints.ai_family = AF_UNSPEC
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        var list: UnsafeMutablePointer<addrinfo>?
        let rc = getaddrinfo(target.bareHost, String(target.port), &hints, &list)
        guard rc == 0, let first = list else {
            throw TransportError(.connection, "cannot resolve \(target.host)\(proxy ? " (the proxy)" : ""): \(String(cString: gai_strerror(rc)))")
        }
        return first
    }

    /// Why one address could not be connected to, when it could not.
    private enum Attempt {
        case success(Int32)
        case failure(String)
    }

    /// Connects to one address without blocking past `connectBy`, checking the waiter's
    /// checkpoint every slice; the socket is then made blocking with slice-long timeouts.
    /// - Throws: `TransportError` (`noAnswer`) when `connectBy` passes; what the checkpoint throws.
    private static func connect(_ info: addrinfo, by connectBy: ContinuousClock.Instant, waiter: Waiter,
                                noAnswer: String) throws -> Attempt {
        let s = socket(info.ai_family, info.ai_socktype | Int32(SOCK_CLOEXEC.rawValue) | Int32(SOCK_NONBLOCK.rawValue), info.ai_protocol)
        guard s >= 0 else { return .failure(String(cString: strerror(errno))) }
        var rc = Glibc.connect(s, info.ai_addr, info.ai_addrlen)
        if rc != 0 && errno == EINPROGRESS {
            var pfd = pollfd(fd: s, events: Int16(POLLOUT), revents: 0)
            while true {
                let n = poll(&pfd, 1, Int32(Waiter.slice.seconds * 1000))
                if n > 0 {
                    var error: Int32 = 0
                    var length = socklen_t(MemoryLayout<Int32>.size)
                    if getsockopt(s, SOL_SOCKET, SO_ERROR, &error, &length) != 0 { error = errno }
                    rc = error == 0 ? 0 : -1
                    errno = error
                    break
                }
                if n < 0 && errno != EINTR { rc = -1; break }
                do {
                    try waiter.checkpoint()
                    guard ContinuousClock.now < connectBy else { throw TransportError(.connection, noAnswer) }
                } catch {
                    close(s)
                    throw error
                }
            }
        }
        guard rc == 0 else {
            let reason = String(cString: strerror(errno))
            close(s)
            return .failure(reason)
        }
        guard configure(s) else {
            let reason = "cannot set the socket's options: " + String(cString: strerror(errno))
            close(s)
            return .failure(reason)
        }
        return .success(s)
    }

    /// Blocking again, with slice-long send and receive timeouts, and no Nagle delay.
    private static func configure(_ s: Int32) -> Bool {
        let flags = fcntl(s, F_GETFL)
        guard flags >= 0, fcntl(s, F_SETFL, flags & ~O_NONBLOCK) == 0 else { return false }
        var tv = timeval(tv_sec: 0, tv_usec: Int(Waiter.slice.seconds * 1_000_000))
        var one: Int32 = 1
        return setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size)) == 0
            && setsockopt(s, SOL_SOCKET, SO_SNDTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size)) == 0
            && setsockopt(s, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size)) == 0
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
            throw TransportError(.connection, "the proxy \(proxy.endpoint.hostHeader) refused a tunnel to \(endpoint.hostHeader): '\(Sanitized.text(status, limit: 80, secrets: proxy.secrets))'")
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
    func fill() throws -> Bool {
        if pendingStart < pending.count { return true }
        var block = [UInt8](repeating: 0, count: 16 << 10)
        let n = try block.withUnsafeMutableBytes { try read(into: $0.baseAddress!, count: $0.count) }
        guard n > 0 else { return false }
        pending = Array(block.prefix(n))
        pendingStart = 0
        return true
    }
}
