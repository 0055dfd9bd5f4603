import Foundation
import Support

/// The age v1 payload: a 16-byte nonce, then the plaintext in 64 KiB chunks, each sealed with
/// ChaCha20-Poly1305 under the payload key and a nonce of an 11-byte big-endian counter and a
/// last-chunk flag (the STREAM construction).
enum AgeStream {
    static let chunkSize = 64 << 10
    static let sealedChunkSize = chunkSize + ChaChaPoly.tagSize
    /// Chunks gathered before handing output on: one write or one callback per 1 MiB.
    static let batchChunks = 16

    static func nonce(_ counter: UInt64, last: Bool) -> [UInt8] {
        var nonce = [UInt8](repeating: 0, count: 12)
        for i in 0..<8 { nonce[10 - i] = UInt8(truncatingIfNeeded: counter >> (8 * UInt64(i))) }
        nonce[11] = last ? 1 : 0
        return nonce
    }

    static func payloadKey(fileKey: [UInt8], nonce: [UInt8]) throws(Failure) -> [UInt8] {
        try Primitives.hkdf(ikm: fileKey, salt: nonce, info: "payload")
    }

    /// The size of the payload after the header for `plaintext` bytes.
    static func payloadSize(plaintext: Int64) -> Int64 {
        let chunks = max(1, (plaintext + Int64(chunkSize) - 1) / Int64(chunkSize))
        return 16 + plaintext + chunks * Int64(ChaChaPoly.tagSize)
    }
}

/// Encrypts one stream into the age v1 format for a set of recipients, with flat memory
/// (about 1 MiB): `begin` gives the header and payload nonce, `write` and `finish` hand on
/// the sealed chunks. A transform only; the caller does the I/O.
public final class AgeEncryptor {
    private let cipher: ChaChaPoly
    private var counter: UInt64 = 0
    /// Plaintext waiting to be sealed: a full chunk is held until more follows, since only
    /// then is it known not to be the last.
    private let pending: UnsafeMutableRawBufferPointer
    private var pendingCount = 0
    private let output: UnsafeMutableRawBufferPointer
    private var outputCount = 0
    private var finished = false
    /// The header and the payload nonce: the file's first bytes.
    public let prologue: [UInt8]

    /// - Throws: `Failure` `.usage` for no recipients; `.io` when libcrypto fails.
    public init(recipients: [AgeRecipient]) throws {
        guard !recipients.isEmpty else { throw Failure(.encryptionNoRecipient, "no age recipient to encrypt to") }
        let fileKey = try Primitives.random(16)
        let nonce = try Primitives.random(16)
        prologue = try AgeHeader.make(fileKey: fileKey, recipients: recipients) + nonce
        cipher = try ChaChaPoly(key: AgeStream.payloadKey(fileKey: fileKey, nonce: nonce), sealing: true)
        pending = .allocate(byteCount: AgeStream.chunkSize, alignment: 16)
        output = .allocate(byteCount: AgeStream.sealedChunkSize * AgeStream.batchChunks, alignment: 16)
    }

    deinit {
        pending.deallocate()
        output.deallocate()
    }

    /// Adds plaintext; `emit` is handed sealed output as it fills (never more than 1 MiB at once).
    public func write(_ bytes: UnsafeRawBufferPointer, emit: (UnsafeRawBufferPointer) throws -> Void) throws {
        precondition(!finished)
        var offset = 0
        while offset < bytes.count {
            if pendingCount == AgeStream.chunkSize { try seal(last: false, emit: emit) }
            let n = min(AgeStream.chunkSize - pendingCount, bytes.count - offset)
            (pending.baseAddress! + pendingCount).copyMemory(from: bytes.baseAddress! + offset, byteCount: n)
            pendingCount += n
            offset += n
        }
    }

    /// Seals the last chunk (empty only for an empty stream) and hands on the rest.
    public func finish(emit: (UnsafeRawBufferPointer) throws -> Void) throws {
        precondition(!finished)
        try seal(last: true, emit: emit)
        finished = true
        try emit(UnsafeRawBufferPointer(rebasing: output[0..<outputCount]))
        outputCount = 0
    }

    private func seal(last: Bool, emit: (UnsafeRawBufferPointer) throws -> Void) throws {
        if outputCount + AgeStream.sealedChunkSize > output.count {
            try emit(UnsafeRawBufferPointer(rebasing: output[0..<outputCount]))
            outputCount = 0
        }
        try cipher.seal(nonce: AgeStream.nonce(counter, last: last), UnsafeRawBufferPointer(rebasing: pending[0..<pendingCount]),
                        into: output.baseAddress! + outputCount)
        outputCount += pendingCount + ChaChaPoly.tagSize
        pendingCount = 0
        counter += 1
    }
}

/// Decrypts an age v1 stream with flat memory: the header is given to `init`, which finds the
/// file key with the identities; `write` takes the payload in pieces of any size and hands on
/// plaintext only from chunks that authenticated; `finish` requires a valid last chunk.
public final class AgeDecryptor {
    private let fileKey: [UInt8]
    private var cipher: ChaChaPoly?
    private var nonce = [UInt8]()
    private var counter: UInt64 = 0
    private let pending: UnsafeMutableRawBufferPointer
    private var pendingCount = 0
    private let plaintext: UnsafeMutableRawBufferPointer
    private var sawLast = false
    private let file: String
    /// The header's length: where the payload starts.
    public let headerLength: Int

    /// Parses the header at the start of `bytes` (at least the whole header) and unwraps the
    /// file key with one of `identities`.
    /// - Throws: `Failure` `.badData` (not age v1, malformed, no identity matched, header MAC).
    public init(header bytes: UnsafeRawBufferPointer, identities: [AgeIdentity], file: String) throws {
        let header = try AgeHeader.parse(bytes, file: file)
        fileKey = try header.fileKey(identities: identities, file: file)
        headerLength = header.length
        self.file = file
        pending = .allocate(byteCount: AgeStream.sealedChunkSize, alignment: 16)
        plaintext = .allocate(byteCount: AgeStream.chunkSize, alignment: 16)
    }

    deinit {
        pending.deallocate()
        plaintext.deallocate()
    }

    /// Takes payload bytes (the 16-byte nonce first); `emit` gets each authenticated chunk's plaintext.
    /// - Throws: `Failure` `.badData` for a chunk that does not authenticate or data after the last chunk.
    public func write(_ bytes: UnsafeRawBufferPointer, emit: (UnsafeRawBufferPointer) throws -> Void) throws {
        var offset = 0
        if cipher == nil {
            let n = min(16 - nonce.count, bytes.count)
            nonce += UnsafeRawBufferPointer(rebasing: bytes[0..<n])
            offset = n
            if nonce.count == 16 { cipher = try ChaChaPoly(key: AgeStream.payloadKey(fileKey: fileKey, nonce: nonce), sealing: false) }
        }
        while offset < bytes.count {
            guard !sawLast else { throw AgeHeader.malformed(file, "it has data after its last chunk") }
            if pendingCount == AgeStream.sealedChunkSize { try open(last: false, emit: emit) }
            let n = min(AgeStream.sealedChunkSize - pendingCount, bytes.count - offset)
            (pending.baseAddress! + pendingCount).copyMemory(from: bytes.baseAddress! + offset, byteCount: n)
            pendingCount += n
            offset += n
        }
    }

    /// Opens the last chunk.
    /// - Throws: `Failure` `.badData` when the stream ends without a valid last chunk (truncated
    ///   or changed).
    public func finish(emit: (UnsafeRawBufferPointer) throws -> Void) throws {
        guard cipher != nil else { throw AgeHeader.malformed(file, "it ends before its payload nonce (truncated)") }
        guard pendingCount > ChaChaPoly.tagSize || (pendingCount == ChaChaPoly.tagSize && counter == 0) else {
            throw AgeHeader.malformed(file, "it ends without a complete last chunk (truncated)")
        }
        try open(last: true, emit: emit)
        sawLast = true
    }

    private func open(last: Bool, emit: (UnsafeRawBufferPointer) throws -> Void) throws {
        guard let cipher, cipher.open(nonce: AgeStream.nonce(counter, last: last), UnsafeRawBufferPointer(rebasing: pending[0..<pendingCount]),
                                      into: plaintext.baseAddress!) else {
            throw AgeHeader.malformed(file, last ? "its last chunk (number \(counter + 1)) does not authenticate: truncated or changed"
                                                 : "chunk number \(counter + 1) does not authenticate: changed in storage")
        }
        let count = pendingCount - ChaChaPoly.tagSize
        pendingCount = 0
        counter += 1
        try emit(UnsafeRawBufferPointer(rebasing: plaintext[0..<count]))
    }
}
