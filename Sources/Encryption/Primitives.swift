import CCrypto
import Foundation
import Support

/// The libcrypto calls the age format needs (X25519, HKDF-SHA-256 over Support's HMAC-SHA-256,
/// ChaCha20-Poly1305, the system random generator): the one place this module calls them.
enum Primitives {
    /// `count` bytes from the system's CSPRNG.
    /// - Throws: `Failure` `.io` when the generator fails.
    static func random(_ count: Int) throws -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: count)
        guard RAND_bytes(&bytes, Int32(count)) == 1 else {
            throw Failure(.encryptionLibraryFailed, "the system random generator (libcrypto RAND_bytes) failed; nothing was encrypted")
        }
        return bytes
    }

    /// HKDF-SHA-256 (RFC 5869): Extract with `salt` (an empty salt is 32 zero bytes, as the RFC
    /// says), then Expand with `info` to 32 bytes, the one length age uses.
    /// HMAC is `SHA256.hmac`, the project's one.
    /// - Throws: `Failure` `crypto.library_failed` when libcrypto fails.
    static func hkdf(ikm: [UInt8], salt: [UInt8], info: String) throws(Failure) -> [UInt8] {
        let prk = try SHA256.hmac(key: salt.isEmpty ? [UInt8](repeating: 0, count: 32) : salt, ikm)
        return try SHA256.hmac(key: prk, Array(info.utf8) + [1])
    }

    /// X25519 (RFC 7748) of `scalar` and `point`; nil when libcrypto refuses the key or the
    /// shared secret is all zeros (a low-order point).
    static func x25519(scalar: [UInt8], point: [UInt8]) -> [UInt8]? {
        guard scalar.count == 32, point.count == 32,
              let key = EVP_PKEY_new_raw_private_key(EVP_PKEY_X25519, nil, scalar, 32) else { return nil }
        defer { EVP_PKEY_free(key) }
        guard let peer = EVP_PKEY_new_raw_public_key(EVP_PKEY_X25519, nil, point, 32) else { return nil }
        defer { EVP_PKEY_free(peer) }
        guard let context = EVP_PKEY_CTX_new(key, nil) else { return nil }
        defer { EVP_PKEY_CTX_free(context) }
        var secret = [UInt8](repeating: 0, count: 32)
        var length = 32
        guard EVP_PKEY_derive_init(context) == 1, EVP_PKEY_derive_set_peer(context, peer) == 1,
              EVP_PKEY_derive(context, &secret, &length) == 1, length == 32,
              secret.contains(where: { $0 != 0 }) else { return nil }
        return secret
    }

    /// The X25519 public key of `scalar` (its product with the base point).
    static func x25519Public(scalar: [UInt8]) -> [UInt8]? {
        guard scalar.count == 32, let key = EVP_PKEY_new_raw_private_key(EVP_PKEY_X25519, nil, scalar, 32) else { return nil }
        defer { EVP_PKEY_free(key) }
        var point = [UInt8](repeating: 0, count: 32)
        var length = 32
        guard EVP_PKEY_get_raw_public_key(key, &point, &length) == 1, length == 32 else { return nil }
        return point
    }

    /// Whether two byte strings are equal, in time that does not depend on where they differ.
    static func equal(_ a: [UInt8], _ b: [UInt8]) -> Bool {
        a.count == b.count && CRYPTO_memcmp(a, b, a.count) == 0
    }
}

/// ChaCha20-Poly1305 (RFC 7539) with one key, in one direction, for many messages: one
/// libcrypto context reused, so each 64 KiB chunk costs only the cipher.
final class ChaChaPoly {
    static let tagSize = 16
    private let context: OpaquePointer
    private let sealing: Bool

    /// - Throws: `Failure` `.io` when libcrypto cannot set the cipher up.
    init(key: [UInt8], sealing: Bool) throws {
        guard key.count == 32, let context = EVP_CIPHER_CTX_new() else {
            throw Failure(.encryptionLibraryFailed, "libcrypto could not allocate a ChaCha20-Poly1305 context")
        }
        self.context = context
        self.sealing = sealing
        guard EVP_CipherInit_ex(context, EVP_chacha20_poly1305(), nil, key, nil, sealing ? 1 : 0) == 1 else {
            EVP_CIPHER_CTX_free(context)
            throw Failure(.encryptionLibraryFailed, "libcrypto could not set up ChaCha20-Poly1305")
        }
    }

    deinit { EVP_CIPHER_CTX_free(context) }

    /// Encrypts `input` under `nonce` (12 bytes) into `output`, which has room for
    /// `input.count + tagSize` bytes: the ciphertext, then the tag.
    func seal(nonce: [UInt8], _ input: UnsafeRawBufferPointer, into output: UnsafeMutableRawPointer) throws {
        precondition(sealing && nonce.count == 12)
        var length: Int32 = 0
        var final: Int32 = 0
        let out = output.assumingMemoryBound(to: UInt8.self)
        guard EVP_CipherInit_ex(context, nil, nil, nil, nonce, 1) == 1,
              input.count == 0 || EVP_CipherUpdate(context, out, &length, input.baseAddress!.assumingMemoryBound(to: UInt8.self), Int32(input.count)) == 1,
              EVP_CipherFinal_ex(context, out + Int(length), &final) == 1,
              EVP_CIPHER_CTX_ctrl(context, EVP_CTRL_AEAD_GET_TAG, Int32(Self.tagSize), out + input.count) == 1 else {
            throw Failure(.encryptionLibraryFailed, "libcrypto failed to encrypt with ChaCha20-Poly1305")
        }
    }

    /// Decrypts `input` (ciphertext then tag) under `nonce` into `output`, which has room for
    /// `input.count - tagSize` bytes; false when the tag does not authenticate (the output is
    /// then garbage and must not be used).
    func open(nonce: [UInt8], _ input: UnsafeRawBufferPointer, into output: UnsafeMutableRawPointer) -> Bool {
        precondition(!sealing && nonce.count == 12)
        guard input.count >= Self.tagSize else { return false }
        let count = input.count - Self.tagSize
        var length: Int32 = 0
        var final: Int32 = 0
        let out = output.assumingMemoryBound(to: UInt8.self)
        var tag = Array(UnsafeRawBufferPointer(rebasing: input[count...]))
        return EVP_CipherInit_ex(context, nil, nil, nil, nonce, 0) == 1
            && (count == 0 || EVP_CipherUpdate(context, out, &length, input.baseAddress!.assumingMemoryBound(to: UInt8.self), Int32(count)) == 1)
            && EVP_CIPHER_CTX_ctrl(context, EVP_CTRL_AEAD_SET_TAG, Int32(Self.tagSize), &tag) == 1
            && EVP_CipherFinal_ex(context, out + Int(length), &final) == 1
    }

    /// `seal` of a small message, returned whole.
    static func seal(key: [UInt8], nonce: [UInt8], _ message: [UInt8]) throws -> [UInt8] {
        let cipher = try ChaChaPoly(key: key, sealing: true)
        var out = [UInt8](repeating: 0, count: message.count + tagSize)
        try message.withUnsafeBytes { input in try out.withUnsafeMutableBytes { try cipher.seal(nonce: nonce, input, into: $0.baseAddress!) } }
        return out
    }

    /// `open` of a small message; nil when it does not authenticate.
    static func open(key: [UInt8], nonce: [UInt8], _ sealed: [UInt8]) throws -> [UInt8]? {
        guard sealed.count >= tagSize else { return nil }
        let cipher = try ChaChaPoly(key: key, sealing: false)
        var out = [UInt8](repeating: 0, count: sealed.count - tagSize + 1)
        let ok = sealed.withUnsafeBytes { input in out.withUnsafeMutableBytes { cipher.open(nonce: nonce, input, into: $0.baseAddress!) } }
        return ok ? Array(out.dropLast()) : nil
    }
}
