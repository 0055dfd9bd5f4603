import CTLS
import Foundation
import Support

/// Why a TLS connection was refused: what the operator fixes differs for each.
public enum CertificateProblem: Sendable, Equatable {
    /// The chain does not reach a trusted root (self-signed, an unknown CA).
    case untrusted
    /// The certificate names neither the host name connected to…
    case hostNameMismatch
    /// …nor the IP address (v4 or v6) connected to.
    case ipAddressMismatch
    /// Expired, or not valid yet.
    case expired
    /// Any other reason the certificate does not verify.
    case other
    /// TLS could not be set up on this side (OpenSSL, the CA bundle file).
    case setup

    /// The problem OpenSSL's verify result names.
    init(verifyResult: Int) {
        switch Int32(verifyResult) {
        case X509_V_ERR_HOSTNAME_MISMATCH: self = .hostNameMismatch
        case X509_V_ERR_IP_ADDRESS_MISMATCH: self = .ipAddressMismatch
        case X509_V_ERR_CERT_HAS_EXPIRED, X509_V_ERR_CERT_NOT_YET_VALID: self = .expired
        case X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT, X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN, X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY,
             X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT, X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE, X509_V_ERR_CERT_UNTRUSTED:
            self = .untrusted
        default: self = .other
        }
    }
}

extension HTTPConnection {
    /// Client contexts, one per trust setting: the system's roots (or `SSL_CERT_FILE`), or a
    /// CA bundle file; TLS 1.2 or later. Made once per process and never freed.
    nonisolated(unsafe) private static var contexts = [String: OpaquePointer]()
    private static let contextsLock = NSLock()

    private static func context(caBundle: String?) throws -> OpaquePointer {
        contextsLock.lock(); defer { contextsLock.unlock() }
        if let ctx = contexts[caBundle ?? ""] { return ctx }
        guard let ctx = SSL_CTX_new(TLS_client_method()) else {
            throw TransportError(.certificate(.setup), "cannot set up TLS (OpenSSL): \(openSSLError())")
        }
        let roots = caBundle.map { SSL_CTX_load_verify_locations(ctx, $0, nil) } ?? SSL_CTX_set_default_verify_paths(ctx)
        guard roots == 1 else {
            let reason = openSSLError()
            SSL_CTX_free(ctx)
            throw TransportError(.certificate(.setup), caBundle.map { "the CA bundle \($0) cannot be read as PEM certificates: \(reason)" }
                                 ?? "the system's trusted roots cannot be loaded (OpenSSL): \(reason)")
        }
        guard SSL_CTX_ctrl(ctx, SSL_CTRL_SET_MIN_PROTO_VERSION, Int(TLS1_2_VERSION), nil) == 1 else {
            SSL_CTX_free(ctx)
            throw TransportError(.certificate(.setup), "cannot require TLS 1.2 or later (OpenSSL): \(openSSLError())")
        }
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, nil)
        contexts[caBundle ?? ""] = ctx
        return ctx
    }

    /// Runs the TLS handshake on the connected socket: the certificate must chain to a trusted
    /// root and name `host` (a name: SNI and host check; an IP literal, v4 or v6 without
    /// brackets: the address check). Every OpenSSL set-up result is checked.
    /// - Throws: `TransportError` `.certificate` (with the problem) when it does not verify or
    ///   cannot be set up, `.connection` when the handshake fails otherwise.
    func startTLS(host: String, caBundle: String?) throws {
        guard let ssl = SSL_new(try Self.context(caBundle: caBundle)) else {
            throw TransportError(.certificate(.setup), "cannot set up TLS (OpenSSL): \(Self.openSSLError())")
        }
        self.ssl = ssl
        guard SSL_set_fd(ssl, fd) == 1 else {
            throw TransportError(.certificate(.setup), "TLS with \(description): cannot attach the socket (OpenSSL): \(Self.openSSLError())")
        }
        try pinIdentity(ssl, host: host)
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
                let problem = CertificateProblem(verifyResult: verify)
                throw TransportError(.certificate(problem), "TLS with \(description) failed: the certificate does not verify: \(Self.reason(problem, verify, host: host))")
            }
            throw TransportError(.connection, "TLS with \(description) failed: \(Self.openSSLError())")
        }
        waiter.progressed()
    }

    /// The identity the certificate must prove: the host name (also sent as SNI) or the IP
    /// address. A literal that OpenSSL cannot parse is refused, never left unchecked.
    private func pinIdentity(_ ssl: OpaquePointer, host: String) throws {
        if Self.isAddressLiteral(host) {
            guard X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), host) == 1 else {
                throw TransportError(.certificate(.setup), "TLS with \(description): '\(host)' is not an IP address a certificate can be checked against")
            }
            return
        }
        // SSL_set_tlsext_host_name (a macro): the name the server's certificate must have.
        let sni = host.withCString { name in
            SSL_ctrl(ssl, SSL_CTRL_SET_TLSEXT_HOSTNAME, Int(TLSEXT_NAMETYPE_host_name), UnsafeMutableRawPointer(mutating: name))
        }
        guard sni == 1, SSL_set1_host(ssl, host) == 1 else {
            throw TransportError(.certificate(.setup), "TLS with \(description): '\(host)' cannot be checked against a certificate (OpenSSL): \(Self.openSSLError())")
        }
    }

    /// An IPv4 or IPv6 literal (no brackets), as the certificate's IP address entries hold.
    static func isAddressLiteral(_ host: String) -> Bool {
        var v4 = in_addr()
        var v6 = in6_addr()
        return inet_pton(AF_INET, host, &v4) == 1 || inet_pton(AF_INET6, host, &v6) == 1
    }

    /// The words for a refused certificate: ours for a mismatch (with OpenSSL's), OpenSSL's otherwise.
    private static func reason(_ problem: CertificateProblem, _ verify: Int, host: String) -> String {
        let openSSL = String(cString: X509_verify_cert_error_string(verify))
        switch problem {
        case .hostNameMismatch: return "host name mismatch: it does not name \(host) (OpenSSL: \(openSSL))"
        case .ipAddressMismatch: return "IP address mismatch: it does not name the address \(host) (OpenSSL: \(openSSL))"
        default: return openSSL
        }
    }

    static func openSSLError() -> String {
        let code = ERR_get_error()
        guard code != 0 else { return "the connection was closed during the handshake" }
        var buffer = [UInt8](repeating: 0, count: 256)
        buffer.withUnsafeMutableBufferPointer { ERR_error_string_n(code, UnsafeMutableRawPointer($0.baseAddress!).assumingMemoryBound(to: CChar.self), $0.count) }
        return String(decoding: buffer.prefix { $0 != 0 }, as: UTF8.self)
    }
}
