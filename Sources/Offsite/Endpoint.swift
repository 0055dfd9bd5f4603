import Foundation
import Support

/// Where an object store listens: `http://127.0.0.1:8333` or `https://s3.eu-west-1.amazonaws.com`.
public struct Endpoint: Sendable, Equatable {
    public let secure: Bool
    public let host: String
    public let port: Int

    /// Parses `http(s)://host[:port]` (no path).
    /// - Throws: `Failure` `offsite.endpoint_invalid`.
    public init(parsing text: String) throws {
        let lower = text.lowercased()
        guard lower.hasPrefix("http://") || lower.hasPrefix("https://") else {
            throw Failure(.offsiteEndpointInvalid, "endpoint '\(text)' must start with http:// or https://")
        }
        secure = lower.hasPrefix("https://")
        var rest = String(text.dropFirst(secure ? 8 : 7))
        if rest.hasSuffix("/") { rest.removeLast() }
        guard !rest.isEmpty, !rest.contains("/"), !rest.contains("@") else {
            throw Failure(.offsiteEndpointInvalid, "endpoint '\(text)' must be scheme, host and port only (no path, no user)")
        }
        if let colon = rest.lastIndex(of: ":"), !rest.hasSuffix("]"), let port = Int(rest[rest.index(after: colon)...]), (1...65535).contains(port) {
            host = String(rest[..<colon])
            self.port = port
        } else {
            guard !rest.contains(":") || rest.hasPrefix("[") else { throw Failure(.offsiteEndpointInvalid, "endpoint '\(text)': bad port") }
            host = rest
            port = secure ? 443 : 80
        }
    }

    public init(secure: Bool, host: String, port: Int) {
        self.secure = secure
        self.host = host
        self.port = port
    }

    /// The host without the brackets of an IPv6 literal: what to resolve, and what the
    /// certificate must name.
    public var bareHost: String { host.trimmingCharacters(in: CharacterSet(charactersIn: "[]")) }

    /// The `Host` header: the port only when it is not the scheme's.
    public var hostHeader: String { port == (secure ? 443 : 80) ? host : "\(host):\(port)" }
}
/// An HTTP proxy to reach the store through: plain requests go to it in absolute form,
/// https is tunnelled with CONNECT (TLS still verified against the store's name).
public struct Proxy: Sendable, Equatable {
    public let endpoint: Endpoint
    /// `Basic …` when the proxy URL had `user:password@`.
    let authorization: String?
    /// What must never be printed, even when a proxy or store echoes it back: the password
    /// and the encoded credentials.
    let secrets: [String]

    /// Parses `http://[user:password@]host[:port]` (the scheme may be left out).
    /// - Throws: `Failure` `.usage`.
    public init(parsing text: String, variable: String) throws {
        var rest = text.contains("://") ? text : "http://" + text
        guard rest.lowercased().hasPrefix("http://") else {
            throw Failure(.offsiteProxyInvalid, "\(variable) '\(Sanitized.text(Self.redacted(text), limit: 80))': only http:// proxies are supported (https is tunnelled through them)")
        }
        rest = String(rest.dropFirst(7))
        if rest.hasSuffix("/") { rest.removeLast() }
        var authorization: String?
        var secrets = [String]()
        if let at = rest.lastIndex(of: "@") {
            let user = String(rest[..<at]).removingPercentEncoding ?? String(rest[..<at])
            let encoded = Data(user.utf8).base64EncodedString()
            authorization = "Basic " + encoded
            let password = user.firstIndex(of: ":").map { String(user[user.index(after: $0)...]) } ?? user
            let rawPassword = rest[..<at].firstIndex(of: ":").map { String(rest[rest.index(after: $0)..<at]) } ?? String(rest[..<at])
            secrets = [encoded, password, rawPassword].filter { $0.count >= 3 }
            rest = String(rest[rest.index(after: at)...])
        }
        do {
            endpoint = try Endpoint(parsing: "http://" + rest)
        } catch let failure as Failure {
            throw Failure(.offsiteProxyInvalid, "\(variable): \(failure.message.replacingOccurrences(of: "endpoint", with: "proxy"))")
        }
        self.authorization = authorization
        self.secrets = secrets
    }

    /// A proxy URL as it may be printed: the password in `user:password@` (or a lone token
    /// `token@`) replaced by `***`.
    public static func redacted(_ text: String) -> String {
        guard let at = text.lastIndex(of: "@") else { return text }
        let start = text.range(of: "://").map { $0.upperBound } ?? text.startIndex
        guard start <= at else { return text }
        let userinfo = text[start..<at]
        let shown = userinfo.firstIndex(of: ":").map { userinfo[..<$0] + ":***" } ?? "***"
        return text[..<start] + shown + text[at...]
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

    /// Whether `NO_PROXY` covers `endpoint`. Comma-separated entries, as curl and the AWS SDKs
    /// read them: `*` (everything); a host name, matching itself and its subdomains, with or
    /// without a leading `.` or `*.`; an IP address (v4, or v6 with or without brackets),
    /// matching only itself; a CIDR block (`10.0.0.0/8`, `::1/128`, `fd00::/8`); each name or
    /// address with an optional `:port`. An address is never matched as a name suffix
    /// (`.0.0.1` does not cover 127.0.0.1).
    static func bypasses(_ endpoint: Endpoint, _ list: String) -> Bool {
        let host = endpoint.bareHost.lowercased()
        let hostAddress = Self.address(host)
        for raw in list.split(separator: ",") {
            var entry = raw.trimmingCharacters(in: .whitespaces).lowercased()
            if entry == "*" { return true }
            if let slash = entry.firstIndex(of: "/") {
                let network = entry[..<slash].trimmingCharacters(in: CharacterSet(charactersIn: "[]"))
                guard let hostAddress, let bits = Int(entry[entry.index(after: slash)...]),
                      let block = Self.address(network), block.count == hostAddress.count, (0...block.count * 8).contains(bits) else { continue }
                if Self.prefix(hostAddress, block, bits) { return true }
                continue
            }
            if entry.hasPrefix("["), let close = entry.firstIndex(of: "]") {
                let rest = entry[entry.index(after: close)...]
                if rest.hasPrefix(":"), Int(rest.dropFirst()) != endpoint.port { continue }
                entry = String(entry[entry.index(after: entry.startIndex)..<close])
            } else if entry.filter({ $0 == ":" }).count == 1, let colon = entry.lastIndex(of: ":") {
                guard Int(entry[entry.index(after: colon)...]) == endpoint.port else { continue }
                entry = String(entry[..<colon])
            }
            if let address = Self.address(entry) {
                if address == hostAddress { return true }
                continue
            }
            if hostAddress != nil { continue }
            if entry.hasPrefix("*.") { entry.removeFirst() }
            if entry.hasPrefix(".") { entry.removeFirst() }
            guard !entry.isEmpty else { continue }
            if host == entry || host.hasSuffix("." + entry) { return true }
        }
        return false
    }

    /// The bytes of an IPv4 (4) or IPv6 (16) address literal; nil for a name.
    static func address(_ text: String) -> [UInt8]? {
        var v4 = in_addr()
        if inet_pton(AF_INET, text, &v4) == 1 { return withUnsafeBytes(of: &v4) { Array($0) } }
        var v6 = in6_addr()
        if inet_pton(AF_INET6, text, &v6) == 1 { return withUnsafeBytes(of: &v6) { Array($0) } }
        return nil
    }

    /// Whether the first `bits` bits of `address` and `block` agree.
    static func prefix(_ address: [UInt8], _ block: [UInt8], _ bits: Int) -> Bool {
        for index in 0..<address.count {
            let take = min(8, max(0, bits - index * 8))
            if take == 0 { return true }
            let mask = UInt8(truncatingIfNeeded: 0xFF << (8 - take))
            if address[index] & mask != block[index] & mask { return false }
        }
        return true
    }
}
