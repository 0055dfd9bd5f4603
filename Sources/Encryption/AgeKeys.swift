import Foundation
import Support

/// An age X25519 recipient: a public key, `age1…` (what `age-keygen` prints as "public key").
public struct AgeRecipient: Sendable, Hashable, CustomStringConvertible {
    /// The 32-byte Curve25519 point.
    let point: [UInt8]

    /// Parses `age1…`.
    /// - Throws: `Failure` `.usage` saying what the text is not.
    public init(parsing text: String) throws {
        let trimmed = text.trimmingCharacters(in: .whitespaces)
        guard !AgeIdentity.looksSecret(trimmed) else {
            throw Failure(.encryptionInvalidRecipient, "a private key (AGE-SECRET-KEY-1…) was given where a recipient (public key, age1…) belongs; it is not repeated here",
                          hint: "put the public key instead ('age-keygen -y KEYFILE' prints it), and treat that private key as exposed if this file is shared")
        }
        guard let (hrp, data) = Bech32.decode(trimmed), hrp == "age", data.count == 32, trimmed == trimmed.lowercased() else {
            throw Failure(.encryptionInvalidRecipient, "'\(trimmed.prefix(80))' is not an age X25519 recipient (age1… as age-keygen prints it)")
        }
        // A low-order point would make every shared secret zero: no file could be opened.
        guard Primitives.x25519(scalar: [UInt8](repeating: 0x42, count: 32), point: data) != nil else {
            throw Failure(.encryptionInvalidRecipient, "'\(trimmed)' is not a usable X25519 public key (a low-order point)")
        }
        point = data
    }

    init(point: [UInt8]) { self.point = point }

    /// `age1…`.
    public var description: String { Bech32.encode(hrp: "age", point) }
}

/// An age X25519 identity: a private key, `AGE-SECRET-KEY-1…`.
public struct AgeIdentity: Sendable {
    let scalar: [UInt8]
    /// The recipient this identity opens files for.
    public let recipient: AgeRecipient

    /// Parses `AGE-SECRET-KEY-1…`.
    /// - Throws: `Failure` `.usage` (never echoing the text: it is a secret).
    public init(parsing text: String) throws {
        guard let (hrp, data) = Bech32.decode(text), hrp == "age-secret-key-", data.count == 32, text == text.uppercased(),
              let point = Primitives.x25519Public(scalar: data) else {
            throw Failure(.encryptionInvalidIdentity, "not an age X25519 identity (AGE-SECRET-KEY-1…)")
        }
        scalar = data
        recipient = AgeRecipient(point: point)
    }

    private init(scalar: [UInt8]) throws {
        guard let point = Primitives.x25519Public(scalar: scalar) else {
            throw Failure(.encryptionLibraryFailed, "libcrypto could not derive an X25519 public key")
        }
        self.scalar = scalar
        recipient = AgeRecipient(point: point)
    }

    /// Whether `text` holds a private key (to keep it out of messages).
    public static func looksSecret(_ text: String) -> Bool {
        text.uppercased().contains("AGE-SECRET-KEY-")
    }

    /// A new identity from the system's CSPRNG.
    public static func generate() throws -> AgeIdentity { try AgeIdentity(scalar: try Primitives.random(32)) }

    /// `AGE-SECRET-KEY-1…`.
    public var secretText: String { Bech32.encode(hrp: "age-secret-key-", scalar).uppercased() }

    /// The text of an identity file as `age-keygen` writes it: two comment lines (creation time,
    /// public key) and the key.
    public func fileText(created: Date) -> String {
        let formatter = ISO8601DateFormatter()
        return "# created: \(formatter.string(from: created))\n# public key: \(recipient)\n\(secretText)\n"
    }

    /// The identities in an identity file's text: one `AGE-SECRET-KEY-1…` per line; blank lines
    /// and `#` comments skipped, as `age -i` reads them.
    /// - Throws: `Failure` `.usage` naming the line that is not an identity (never its text), or
    ///   when the file holds none.
    public static func parseFile(_ text: String, path: String) throws -> [AgeIdentity] {
        var identities = [AgeIdentity]()
        // "\r\n" is one Character in Swift: split on scalars so CRLF files read as age reads them.
        let lines = text.unicodeScalars.split(separator: "\n", omittingEmptySubsequences: false).map { String(String.UnicodeScalarView($0)) }
        for (index, raw) in lines.enumerated() {
            let line = raw.trimmingCharacters(in: .whitespacesAndNewlines)
            if line.isEmpty || line.hasPrefix("#") { continue }
            do {
                identities.append(try AgeIdentity(parsing: line))
            } catch {
                throw Failure(.encryptionInvalidIdentity, "\(path):\(index + 1): not an age X25519 identity (AGE-SECRET-KEY-1…); plugin and passphrase identities are not supported",
                              hint: "make one with 'deployctl keygen --output FILE' or 'age-keygen -o FILE'")
            }
        }
        guard !identities.isEmpty else {
            throw Failure(.encryptionInvalidIdentity, "\(path) holds no age identity (AGE-SECRET-KEY-1…)",
                          hint: "make one with 'deployctl keygen --output FILE' or 'age-keygen -o FILE'")
        }
        return identities
    }

    /// Reads an identity file, refusing one that others could read.
    /// - Throws: `Failure` `.missingInput` when it does not exist, `.usage` when its mode lets
    ///   group or others in (more than 0600), when it cannot be read, or holds no identity.
    public static func load(file path: String, setting: String) throws -> [AgeIdentity] {
        var info = stat()
        guard stat(path, &info) == 0 else {
            let code = errno
            if code == ENOENT {
                throw Failure(.encryptionIdentityFileMissing, "the identity file \(path) (\(setting)) does not exist",
                              hint: "restore it from where the key is kept, or point \(setting) at it")
            }
            throw Failure(.encryptionIdentityFileUnreadable, "cannot read the identity file \(path) (\(setting)): \(String(cString: strerror(code)))")
        }
        let mode = info.st_mode & 0o777
        guard mode & 0o077 == 0 else {
            throw Failure(.encryptionIdentityFileExposed, "the identity file \(path) (\(setting)) has mode \(String(mode, radix: 8)): group or others can read the private key, so it is not used",
                          hint: "chmod 600 \(path)")
        }
        guard let data = FileManager.default.contents(atPath: path), let text = String(data: data, encoding: .utf8) else {
            throw Failure(.encryptionIdentityFileUnreadable, "cannot read the identity file \(path) (\(setting))", hint: "check its owner and permissions")
        }
        return try parseFile(text, path: path)
    }
}
