import CCrypto
import Foundation

/// SHA-256 through the system libcrypto's EVP interface: the one place deployctl calls it
/// (HMAC-SHA-256 too, `hmac`).
///
/// libcrypto uses the CPU's SHA extensions where present (1.8 GB/s measured here, against about
/// 0.2 GB/s for a portable Swift implementation), and hashing backups and rows is on every
/// snapshot, verify and deploy.
///
/// Not copyable: a hasher owns its libcrypto context, and a copy could only share it. Every
/// libcrypto result is checked; a failed set-up or update is kept and thrown by `finalize`
/// (so `update` stays cheap and never throws), a digest is never returned after one.
public struct SHA256: ~Copyable {
    private let context: OpaquePointer?
    /// The first libcrypto call that failed.
    private var failed: String?

    public init() {
        context = EVP_MD_CTX_new()
        if context == nil {
            failed = "EVP_MD_CTX_new"
        } else if EVP_DigestInit_ex(context, EVP_sha256(), nil) != 1 {
            failed = "EVP_DigestInit_ex"
        }
    }

    deinit { EVP_MD_CTX_free(context) }

    /// Feeds bytes into the digest.
    public mutating func update(_ bytes: UnsafeRawBufferPointer) {
        guard failed == nil, let base = bytes.baseAddress, bytes.count > 0 else { return }
        if EVP_DigestUpdate(context, base, bytes.count) != 1 { failed = "EVP_DigestUpdate" }
    }

    /// Feeds bytes into the digest.
    public mutating func update<C: ContiguousBytes>(_ data: C) {
        data.withUnsafeBytes { update($0) }
    }

    /// Feeds a string's UTF-8 bytes into the digest.
    public mutating func update(_ string: String) {
        var copy = string
        copy.withUTF8 { update(UnsafeRawBufferPointer($0)) }
    }

    /// Finishes and returns the 32-byte digest.
    /// - Throws: `Failure` `crypto.library_failed` when any libcrypto call of this hasher failed.
    public consuming func finalize() throws(Failure) -> [UInt8] {
        var digest = [UInt8](repeating: 0, count: 32)
        var length: UInt32 = 0
        if failed == nil, EVP_DigestFinal_ex(context, &digest, &length) != 1 || length != 32 { failed = "EVP_DigestFinal_ex" }
        if let failed { throw Self.failure(failed) }
        return digest
    }

    /// Finishes and returns the digest as lowercase hex.
    /// - Throws: as `finalize`.
    public consuming func finalizeHex() throws(Failure) -> String { Self.hex(try finalize()) }

    /// The lowercase hex digest of `bytes`.
    /// - Throws: as `finalize`.
    public static func hex<C: ContiguousBytes>(of bytes: C) throws(Failure) -> String {
        var hasher = SHA256()
        hasher.update(bytes)
        return try hasher.finalizeHex()
    }

    /// HMAC-SHA-256 (RFC 2104) of `message` under `key`, through libcrypto's `HMAC`: the one
    /// HMAC deployctl has (SigV4 signing, manifest authenticators, the age header's MAC and HKDF).
    /// - Throws: `Failure` `crypto.library_failed` when libcrypto fails.
    public static func hmac(key: [UInt8], _ message: [UInt8]) throws(Failure) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: 32)
        var length: UInt32 = 32
        // An empty key or message still needs a valid pointer (its length stays 0).
        let (keyBytes, messageBytes) = (key.isEmpty ? [0] : key, message.isEmpty ? [0] : message)
        let result = HMAC(EVP_sha256(), keyBytes, Int32(key.count), messageBytes, message.count, &out, &length)
        guard result != nil, length == 32 else { throw failure("HMAC") }
        return out
    }

    /// The failure of a libcrypto call, by name.
    static func failure(_ call: String) -> Failure {
        Failure(.cryptoLibraryFailed, "libcrypto failed (\(call) for SHA-256): nothing was hashed", hint: "check that libssl/libcrypto is installed intact; then run the command again")
    }

    /// Hashes many small inputs one after another with one fetched algorithm and one context,
    /// so each digest costs only the hashing (a one-shot `EVP_Digest` looks the algorithm up
    /// and allocates a context every call: 40% of a fingerprint's time, measured with perf).
    public final class Repeated {
        private let md: OpaquePointer
        private let context: OpaquePointer

        /// - Throws: `Failure` `crypto.library_failed` when libcrypto cannot set up SHA-256.
        public init() throws(Failure) {
            guard let md = EVP_MD_fetch(nil, "SHA256", nil) else { throw SHA256.failure("EVP_MD_fetch") }
            guard let context = EVP_MD_CTX_new() else {
                EVP_MD_free(md)
                throw SHA256.failure("EVP_MD_CTX_new")
            }
            self.md = md
            self.context = context
        }

        deinit {
            EVP_MD_CTX_free(context)
            EVP_MD_free(md)
        }

        /// The digest of `bytes` as four big-endian 64-bit words.
        /// - Throws: `Failure` `crypto.library_failed` when a libcrypto call fails.
        public func digestWords(of bytes: UnsafeRawBufferPointer) throws(Failure) -> (UInt64, UInt64, UInt64, UInt64) {
            var words: (UInt64, UInt64, UInt64, UInt64) = (0, 0, 0, 0)
            let failed = withUnsafeMutableBytes(of: &words) { out -> String? in
                var length: UInt32 = 0
                guard EVP_DigestInit_ex(context, md, nil) == 1 else { return "EVP_DigestInit_ex" }
                if let base = bytes.baseAddress, bytes.count > 0, EVP_DigestUpdate(context, base, bytes.count) != 1 { return "EVP_DigestUpdate" }
                guard EVP_DigestFinal_ex(context, out.baseAddress!.assumingMemoryBound(to: UInt8.self), &length) == 1, length == 32 else {
                    return "EVP_DigestFinal_ex"
                }
                return nil
            }
            if let failed { throw SHA256.failure(failed) }
            return (UInt64(bigEndian: words.0), UInt64(bigEndian: words.1), UInt64(bigEndian: words.2), UInt64(bigEndian: words.3))
        }
    }

    /// Lowercase hex of a byte array.
    public static func hex(_ bytes: [UInt8]) -> String {
        let digits = Array("0123456789abcdef".utf8)
        var out = [UInt8]()
        out.reserveCapacity(bytes.count * 2)
        for b in bytes { out.append(digits[Int(b >> 4)]); out.append(digits[Int(b & 15)]) }
        return String(decoding: out, as: UTF8.self)
    }
}

/// A file's size and lowercase-hex SHA-256, computed by the code that wrote it.
public struct WrittenDigest: Sendable, Equatable {
    public let bytes: Int64
    public let sha256: String

    public init(bytes: Int64, sha256: String) {
        self.bytes = bytes
        self.sha256 = sha256
    }
}
