import Foundation
import Support

/// None of the identities given opens an age file: the wrong key, not a damaged file (whose
/// checksum the caller compares first). Exit 65 like bad data, but never recorded against the
/// backup, never a reason to pass it over for an older one.
public struct NoIdentityMatched: DeployctlError, Sendable {
    public var code: FailureCode { .encryptionNoIdentityMatched }
    public let message: String
    public let hint: String?
}

/// The textual header of an age v1 file (age-encryption.org/v1): recipient stanzas and a MAC.
struct AgeHeader {
    /// One `-> type args…` stanza with its decoded body.
    struct Stanza {
        var arguments: [String]
        var body: [UInt8]
    }

    static let versionLine = "age-encryption.org/v1"
    static let x25519Label = "age-encryption.org/v1/X25519"
    /// A header longer than this is refused (it would take thousands of recipients).
    static let maximumSize = 1 << 20

    var stanzas: [Stanza]
    /// The header's bytes up to and including `---`: what the MAC covers.
    var macInput: [UInt8]
    var mac: [UInt8]
    /// The header's full length, through the MAC line's line feed.
    var length: Int

    // MARK: Writing

    /// A new header wrapping `fileKey` for each recipient, with its MAC: the bytes to write first.
    static func make(fileKey: [UInt8], recipients: [AgeRecipient]) throws -> [UInt8] {
        var text = versionLine + "\n"
        for recipient in recipients {
            let ephemeral = try Primitives.random(32)
            guard let share = Primitives.x25519Public(scalar: ephemeral),
                  let shared = Primitives.x25519(scalar: ephemeral, point: recipient.point) else {
                throw Failure(.encryptionInvalidRecipient, "the recipient \(recipient) is not a usable X25519 key")
            }
            let wrapKey = try Primitives.hkdf(ikm: shared, salt: share + recipient.point, info: x25519Label)
            let body = try ChaChaPoly.seal(key: wrapKey, nonce: [UInt8](repeating: 0, count: 12), fileKey)
            text += "-> X25519 \(base64(share))\n" + wrapped(base64(body))
        }
        text += "---"
        let mac = try SHA256.hmac(key: try Primitives.hkdf(ikm: fileKey, salt: [], info: "header"), Array(text.utf8))
        return Array((text + " " + base64(mac) + "\n").utf8)
    }

    /// A stanza body wrapped at 64 columns, ending with a line shorter than 64 (maybe empty).
    private static func wrapped(_ encoded: String) -> String {
        var out = ""
        var rest = Substring(encoded)
        while rest.count >= 64 {
            out += rest.prefix(64) + "\n"
            rest = rest.dropFirst(64)
        }
        return out + rest + "\n"
    }

    /// Standard base64 without padding.
    static func base64(_ bytes: [UInt8]) -> String {
        var text = Data(bytes).base64EncodedString()
        while text.hasSuffix("=") { text.removeLast() }
        return text
    }

    /// Decodes canonical unpadded base64; nil for anything else (padding, a stray character,
    /// non-zero trailing bits).
    static func unbase64(_ text: Substring) -> [UInt8]? {
        guard text.count % 4 != 1, text.utf8.allSatisfy({ isBase64($0) }) else { return nil }
        let padded = String(text) + String(repeating: "=", count: (4 - text.count % 4) % 4)
        guard let data = Data(base64Encoded: padded) else { return nil }
        let bytes = [UInt8](data)
        return base64(bytes) == text ? bytes : nil
    }

    private static func isBase64(_ c: UInt8) -> Bool {
        (c >= 65 && c <= 90) || (c >= 97 && c <= 122) || (c >= 48 && c <= 57) || c == 43 || c == 47
    }

    // MARK: Reading

    /// Parses the header at the start of `bytes`.
    /// - Throws: `Failure` `.badData` saying what is malformed, or that the file is not age v1.
    static func parse(_ bytes: UnsafeRawBufferPointer, file: String) throws -> AgeHeader {
        var position = 0
        func line() throws -> Substring {
            guard let end = bytes[position...].firstIndex(of: 0x0a) else {
                throw malformed(file, bytes.count >= maximumSize ? "its header is longer than 1 MiB" : "its header ends before its MAC line (truncated?)")
            }
            let text = String(decoding: UnsafeRawBufferPointer(rebasing: bytes[position..<end]), as: UTF8.self)
            position = end + 1
            return Substring(text)
        }
        guard try line() == versionLine else {
            throw Failure(.encryptionInvalidFile, "\(file) is not an age-encryption.org/v1 file (its first line is not \(versionLine))",
                          hint: "use another backup")
        }
        var stanzas = [Stanza]()
        while true {
            let start = position
            let text = try line()
            if text.hasPrefix("---") {
                guard text.hasPrefix("--- "), let mac = unbase64(text.dropFirst(4)), mac.count == 32 else {
                    throw malformed(file, "its MAC line is not '--- ' and 43 base64 characters")
                }
                guard !stanzas.isEmpty else { throw malformed(file, "its header has no recipient stanza") }
                return AgeHeader(stanzas: stanzas, macInput: Array(UnsafeRawBufferPointer(rebasing: bytes[0..<(start + 3)])),
                                 mac: mac, length: position)
            }
            guard text.hasPrefix("-> ") else { throw malformed(file, "a header line is neither a stanza ('-> ') nor the MAC ('---')") }
            let arguments = text.dropFirst(3).split(separator: " ", omittingEmptySubsequences: false)
            guard !arguments.isEmpty, arguments.allSatisfy({ !$0.isEmpty && $0.utf8.allSatisfy { $0 >= 33 && $0 <= 126 } }) else {
                throw malformed(file, "a stanza has an empty or invalid argument")
            }
            var body = ""
            while true {
                let chunk = try line()
                guard chunk.count <= 64 else { throw malformed(file, "a stanza body line is longer than 64 columns") }
                body += chunk
                if chunk.count < 64 { break }
            }
            guard let decoded = unbase64(Substring(body)) else { throw malformed(file, "a stanza body is not canonical base64") }
            stanzas.append(Stanza(arguments: arguments.map(String.init), body: decoded))
            guard stanzas.count <= 1000 else { throw malformed(file, "its header has more than 1000 stanzas") }
        }
    }

    /// Unwraps the file key with the first identity an X25519 stanza was made for, and checks
    /// the header's MAC with it.
    /// - Throws: `Failure` `.badData`: a malformed X25519 stanza, no identity matched (naming
    ///   the identities' recipients), or a MAC that does not match (the header was changed).
    func fileKey(identities: [AgeIdentity], file: String) throws -> [UInt8] {
        var key: [UInt8]?
        search: for stanza in stanzas where stanza.arguments.first == "X25519" {
            guard stanza.arguments.count == 2, let share = Self.unbase64(Substring(stanza.arguments[1])), share.count == 32,
                  stanza.body.count == 32 else {
                throw Self.malformed(file, "an X25519 stanza is not two arguments, a 32-byte share and a 32-byte body")
            }
            for identity in identities {
                guard let shared = Primitives.x25519(scalar: identity.scalar, point: share) else {
                    throw Self.malformed(file, "an X25519 stanza's share is a low-order point")
                }
                let wrapKey = try Primitives.hkdf(ikm: shared, salt: share + identity.recipient.point, info: Self.x25519Label)
                if let unwrapped = try ChaChaPoly.open(key: wrapKey, nonce: [UInt8](repeating: 0, count: 12), stanza.body), unwrapped.count == 16 {
                    key = unwrapped
                    break search
                }
            }
        }
        guard let key else {
            let x25519 = stanzas.filter { $0.arguments.first == "X25519" }.count
            throw NoIdentityMatched(message: "no identity matched \(file): it has \(counted(x25519, "X25519 recipient stanza")) and none opens with the key\(identities.count == 1 ? "" : "s") of \(identities.map(\.recipient.description).joined(separator: ", "))",
                                    hint: "point identity_file at the key whose public key was among [encryption] recipients when the backup was written (its manifest lists them); nothing was recorded about the backup")
        }
        let expected = try SHA256.hmac(key: try Primitives.hkdf(ikm: key, salt: [], info: "header"), macInput)
        guard Primitives.equal(expected, mac) else {
            throw Self.malformed(file, "its header MAC does not match: the header was changed")
        }
        return key
    }

    static func malformed(_ file: String, _ what: String) -> Failure {
        Failure(.encryptionInvalidFile, "\(file) is damaged or not a valid age file: \(what)", hint: "use another backup")
    }
}
