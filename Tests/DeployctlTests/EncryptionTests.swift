import Encryption
import Foundation
import Support
import Testing

/// The age format against the published specification's key example and the real `age` tool,
/// both ways, and against damaged files.
@Suite("age format")
struct EncryptionTests {
    static let age = ObjectStore.find("age")
    static let ageKeygen = ObjectStore.find("age-keygen")

    /// A temp folder removed after the test.
    final class Folder {
        let path = NSTemporaryDirectory() + "deployctl-age-" + UUID().uuidString
        init() throws { try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true) }
        deinit { try? FileManager.default.removeItem(atPath: path) }
        func file(_ name: String) -> String { path + "/" + name }
    }

    /// Encrypts `data` with deployctl's encryptor into a file.
    static func encrypt(_ data: [UInt8], to recipients: [AgeRecipient], into path: String) throws {
        let encryptor = try AgeEncryptor(recipients: recipients)
        var out = encryptor.prologue
        // Uneven pieces, so chunk boundaries fall inside writes.
        var offset = 0
        var step = 1
        while offset < data.count {
            let n = min(step, data.count - offset)
            try data[offset..<(offset + n)].withUnsafeBytes { try encryptor.write($0) { out += $0 } }
            offset += n
            step = step * 7 % 100_003 + 1
        }
        try encryptor.finish { out += $0 }
        try Data(out).write(to: URL(fileURLWithPath: path))
    }

    /// Decrypts a file with deployctl's decryptor.
    static func decrypt(_ path: String, _ identities: [AgeIdentity]) throws -> [UInt8] {
        var out = [UInt8]()
        try AgeFile.decrypt(path, identities: identities, name: (path as NSString).lastPathComponent) { out += $0 }
        return out
    }

    static func payload(_ count: Int) -> [UInt8] {
        var state: UInt64 = 0x9e3779b97f4a7c15
        return (0..<count).map { _ in
            state = state &* 6364136223846793005 &+ 1442695040888963407
            return UInt8(truncatingIfNeeded: state >> 33)
        }
    }

    @Test("the specification's example identity gives its example recipient; keys round-trip through Bech32")
    func specificationKeys() throws {
        let identity = try AgeIdentity(parsing: "AGE-SECRET-KEY-1GFPYYSJZGFPYYSJZGFPYYSJZGFPYYSJZGFPYYSJZGFPYYSJZGFPQ4EGAEX")
        #expect(identity.recipient.description == "age1zvkyg2lqzraa2lnjvqej32nkuu0ues2s82hzrye869xeexvn73equnujwj")
        #expect(identity.secretText == "AGE-SECRET-KEY-1GFPYYSJZGFPYYSJZGFPYYSJZGFPYYSJZGFPYYSJZGFPYYSJZGFPQ4EGAEX")
        #expect(try AgeRecipient(parsing: "age1zvkyg2lqzraa2lnjvqej32nkuu0ues2s82hzrye869xeexvn73equnujwj") == identity.recipient)
        // One changed character breaks the checksum; mixed case and other kinds are refused.
        #expect(throws: Failure.self) { try AgeRecipient(parsing: "age1zvkyg2lqzraa2lnjvqej32nkuu0ues2s82hzrye869xeexvn73equnujwk") }
        #expect(throws: Failure.self) { try AgeRecipient(parsing: "AGE1ZVKYG2LQZRAA2LNJVQEJ32NKUU0UES2S82HZRYE869XEEXVN73EQUNUJWJ") }
        #expect(throws: Failure.self) { try AgeIdentity(parsing: "AGE-SECRET-KEY-1GFPYYSJZGFPYYSJZGFPYYSJZGFPYYSJZGFPYYSJZGFPYYSJZGFPQ4EGAEx") }
        #expect(throws: Failure.self) { try AgeRecipient(parsing: "age1pq1x34nzsvr0rxjsgdn8zgyhfe8j7ceq5r9rdelkjuh3y235jzxshfg87pzf5zrqtzdxz95paef6caq5aapdmwjjq") }
        let fresh = try AgeIdentity.generate()
        #expect(try AgeIdentity(parsing: fresh.secretText).recipient == fresh.recipient)
    }

    @Test("what deployctl encrypts, age -d opens, for every chunk boundary case", arguments: [0, 1, 65_535, 65_536, 65_537, 3 * 65_536, 1_000_003])
    func ageDecryptsOurs(size: Int) throws {
        let age = try #require(Self.age, "age is not installed (.ci/run installs it)")
        let folder = try Folder()
        let identity = try AgeIdentity.generate()
        let other = try AgeIdentity.generate()
        try identity.fileText(created: Date()).write(toFile: folder.file("key"), atomically: true, encoding: .utf8)
        let data = Self.payload(size)
        try Self.encrypt(data, to: [other.recipient, identity.recipient], into: folder.file("data.age"))
        let result = try Sandbox.exec(age, ["-d", "-i", folder.file("key"), "-o", folder.file("data"), folder.file("data.age")])
        #expect(result.status == 0, "age -d: \(result.stderr)")
        // age writes no file for an empty plaintext.
        #expect(((try? [UInt8](Data(contentsOf: URL(fileURLWithPath: folder.file("data"))))) ?? []) == data)
        #expect(try Self.decrypt(folder.file("data.age"), [identity]) == data)
        let size = try FileManager.default.attributesOfItem(atPath: folder.file("data.age"))[.size] as! NSNumber
        let header = try Data(contentsOf: URL(fileURLWithPath: folder.file("data.age"))).firstRange(of: Data("---".utf8))!.lowerBound + 48
        #expect(size.int64Value == Int64(header) + Self.payloadSize(data.count))
    }

    static func payloadSize(_ plaintext: Int) -> Int64 {
        Int64(16 + plaintext + max(1, (plaintext + 65_535) / 65_536) * 16)
    }

    @Test("what age -r encrypts, deployctl opens, with the key age-keygen wrote")
    func weDecryptAges() throws {
        let age = try #require(Self.age, "age is not installed (.ci/run installs it)")
        let keygen = try #require(Self.ageKeygen, "age-keygen is not installed")
        let folder = try Folder()
        #expect(try Sandbox.exec(keygen, ["-o", folder.file("key")]).status == 0)
        let text = try String(contentsOfFile: folder.file("key"), encoding: .utf8)
        let identities = try AgeIdentity.parseFile(text, path: folder.file("key"))
        let recipient = try Sandbox.exec(keygen, ["-y", folder.file("key")]).stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(identities.first?.recipient.description == recipient)
        for size in [0, 65_536, 200_000] {
            let data = Self.payload(size)
            try Data(data).write(to: URL(fileURLWithPath: folder.file("plain")))
            let result = try Sandbox.exec(age, ["-r", recipient, "-o", folder.file("plain.age"), folder.file("plain")])
            #expect(result.status == 0, "age -r: \(result.stderr)")
            #expect(try Self.decrypt(folder.file("plain.age"), identities) == data)
        }
        // Our identity file as age-keygen's -y reads it.
        let ours = try AgeIdentity.generate()
        try ours.fileText(created: Date()).write(toFile: folder.file("ours"), atomically: true, encoding: .utf8)
        #expect(try Sandbox.exec(keygen, ["-y", folder.file("ours")]).stdout.trimmingCharacters(in: .whitespacesAndNewlines) == ours.recipient.description)
    }

    @Test("a wrong identity, a flipped byte anywhere, a truncation or trailing bytes are refused as bad data")
    func damagedFilesAreRefused() throws {
        let folder = try Folder()
        let identity = try AgeIdentity.generate()
        let data = Self.payload(200_000)
        let path = folder.file("data.age")
        try Self.encrypt(data, to: [identity.recipient], into: path)
        let good = try [UInt8](Data(contentsOf: URL(fileURLWithPath: path)))
        #expect(try Self.decrypt(path, [identity]) == data)

        func refused(_ bytes: [UInt8], _ identities: [AgeIdentity], containing text: String? = nil) throws {
            try Data(bytes).write(to: URL(fileURLWithPath: path))
            var emitted = 0
            // A flipped stanza type or share reads as no identity matching: both are 65.
            let error = #expect(throws: (any Error).self) {
                try AgeFile.decrypt(path, identities: identities, name: "data.age") { emitted += $0.count }
            } as? any DeployctlError
            #expect(error?.kind == .badData)
            if let text { #expect(error?.message.contains(text) == true, "\(error?.message ?? "")") }
            #expect(emitted < data.count, "every chunk was handed on although the file is damaged")
        }
        let wrong = #expect(throws: NoIdentityMatched.self) {
            try AgeFile.decrypt(path, identities: [try AgeIdentity.generate()], name: "data.age") { _ in }
        }
        #expect(wrong?.kind == .badData && wrong?.message.contains("no identity matched") == true)
        let headerEnd = good.firstRange(of: Array("---".utf8))!.lowerBound
        for offset in [30, headerEnd + 10, headerEnd + 60, headerEnd + 70_000, good.count - 1] {
            var flipped = good
            flipped[offset] ^= 0x01
            try refused(flipped, [identity])
        }
        try refused(Array(good.prefix(good.count - 1)), [identity], containing: "truncated or changed")
        try refused(Array(good.prefix(headerEnd + 48 + 16 + 65_536 + 16)), [identity], containing: "truncated")
        try refused(Array(good.prefix(headerEnd + 20)), [identity], containing: "truncated")
        try refused(good + [0], [identity])
        try refused(Array("age-encryption.org/v2\n".utf8) + good.dropFirst(22), [identity], containing: "not an age-encryption.org/v1 file")
    }

    @Test("an identity file is read as age -i reads it: comments skipped, other lines refused without echoing them")
    func identityFiles() throws {
        let identity = try AgeIdentity.generate()
        let parsed = try AgeIdentity.parseFile("# a comment\n\n" + identity.secretText + "\n", path: "k")
        #expect(parsed.map(\.recipient) == [identity.recipient])
        // CRLF line endings (a key file edited on Windows), and several keys: age -i reads both.
        let second = try AgeIdentity.generate()
        let crlf = try AgeIdentity.parseFile("# created\r\n" + identity.secretText + "\r\n" + second.secretText + "\r\n", path: "k")
        #expect(crlf.map(\.recipient) == [identity.recipient, second.recipient])
        let error = #expect(throws: Failure.self) { try AgeIdentity.parseFile("# c\nsecret-looking text\n", path: "k") }
        #expect(error?.kind == .usage && error?.message.contains("k:2") == true && error?.message.contains("secret-looking") == false)
        #expect(throws: Failure.self) { try AgeIdentity.parseFile("# only comments\n", path: "k") }
    }
}
