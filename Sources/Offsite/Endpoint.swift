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

    /// Parses `http://[user:password@]host[:port]` (the scheme may be left out).
    /// - Throws: `Failure` `.usage`.
    public init(parsing text: String, variable: String) throws {
        var rest = text.contains("://") ? text : "http://" + text
        guard rest.lowercased().hasPrefix("http://") else {
            throw Failure(.offsiteProxyInvalid, "\(variable) '\(Sanitized.text(text, limit: 80))': only http:// proxies are supported (https is tunnelled through them)")
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
            throw Failure(.offsiteProxyInvalid, "\(variable): \(failure.message.replacingOccurrences(of: "endpoint", with: "proxy"))")
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
