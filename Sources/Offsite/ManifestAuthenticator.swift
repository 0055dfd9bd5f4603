import CTLS
import Foundation
import Support

/// An instance's offsite signing key: 32 random bytes that only the instance's hosts hold.
/// Each manifest pushed offsite carries an authenticator, HMAC-SHA256 under this key over the
/// object's key and the manifest's exact bytes, in the manifest object's metadata
/// (`x-amz-meta-deployctl-authenticator`). Anyone who can write to the bucket but does not hold
/// the key cannot make a manifest (nor move one to another name) that a restore accepts.
public struct SigningKey: Sendable {
    let secret: [UInt8]
    /// A short public name for the key (not secret): 16 hex digits of a hash of it.
    public let id: String

    /// The object metadata header that carries the authenticator.
    public static let header = "x-amz-meta-deployctl-authenticator"
    static let fileTag = "deployctl-offsite-signing-key-v1"

    init(secret: [UInt8]) throws(Failure) {
        self.secret = secret
        id = String(try SHA256.hex(of: Array("deployctl key id\n".utf8) + secret).prefix(16))
    }

    /// A new key from the system's CSPRNG.
    /// - Throws: `Failure` `.io` when the generator fails.
    public static func generate() throws -> SigningKey {
        var bytes = [UInt8](repeating: 0, count: 32)
        guard RAND_bytes(&bytes, 32) == 1 else {
            throw Failure(.offsiteRandomFailed, "the system random generator (libcrypto RAND_bytes) failed; no signing key was made")
        }
        return try SigningKey(secret: bytes)
    }

    /// What the key file holds: a tag and 64 hex digits, one line.
    public var fileText: String { "\(Self.fileTag) \(SHA256.hex(secret))\n" }

    /// Reads a key file's text.
    /// - Throws: `Failure` `.usage` when it is not a signing key file.
    public init(fileText text: String, path: String) throws {
        let parts = text.split(whereSeparator: \.isWhitespace)
        guard parts.count == 2, parts[0] == Self.fileTag, parts[1].count == 64, parts[1].allSatisfy(\.isHexDigit) else {
            throw Failure(.offsiteSigningKeyInvalid, "\(path) is not a deployctl offsite signing key (one line: '\(Self.fileTag) <64 hex digits>')",
                          hint: "restore the file from your backup of it (docs/offsite.md, 'Signing key')")
        }
        var bytes = [UInt8]()
        var index = parts[1].startIndex
        while index < parts[1].endIndex {
            let next = parts[1].index(index, offsetBy: 2)
            bytes.append(UInt8(parts[1][index..<next], radix: 16)!)
            index = next
        }
        try self.init(secret: bytes)
    }

    /// The authenticator of `manifest` stored under `key`: `v1:<key id>:<hex HMAC>`.
    /// - Throws: `Failure` `crypto.library_failed` when libcrypto fails.
    public func authenticator(key: String, manifest: [UInt8]) throws(Failure) -> String {
        "v1:\(id):" + SHA256.hex(try SHA256.hmac(key: secret, Array("deployctl manifest v1\n\(key)\n".utf8) + manifest))
    }

    /// How an authenticator found on a manifest compares.
    public enum Verdict: Sendable, Equatable {
        case valid
        /// None at all (pushed before manifests were signed, or not by deployctl).
        case missing
        /// Made with another key (its id).
        case otherKey(String)
        /// Made with this key's id, but it does not match: the manifest or its name was changed.
        case wrong
    }

    /// - Throws: `Failure` `crypto.library_failed` when libcrypto fails.
    public func check(_ value: String?, key: String, manifest: [UInt8]) throws(Failure) -> Verdict {
        guard let value, !value.isEmpty else { return .missing }
        let parts = value.split(separator: ":", omittingEmptySubsequences: false)
        guard parts.count == 3, parts[0] == "v1" else { return .wrong }
        guard parts[1] == id else {
            let other = String(parts[1])
            return other.count == 16 && other.allSatisfy(\.isHexDigit) ? .otherKey(other) : .wrong
        }
        let expected = Array(try authenticator(key: key, manifest: manifest).utf8)
        let given = Array(value.utf8)
        guard expected.count == given.count else { return .wrong }
        // Compared in constant time.
        var difference: UInt8 = 0
        for (a, b) in zip(expected, given) { difference |= a ^ b }
        return difference == 0 ? .valid : .wrong
    }
}
