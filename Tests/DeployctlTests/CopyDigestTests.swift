@testable import Backup
import Foundation
@testable import SQLite
import Support
import Testing

/// A copy followed as it is written: the SHA-256 a kept copy gets (`Connection.copy(durable:)`),
/// checked against `sha256sum` of the file, and compressed snapshots compressed behind the
/// writer, checked by decompressing them; and the cases where the page-1 prediction both rest
/// on is wrong.
@Suite("copy digest")
struct CopyDigestTests {
    static func sha256sum(_ file: String) throws -> String {
        String(try Sandbox.exec("/usr/bin/sha256sum", [file]).stdout.prefix(64))
    }

    static func fileSize(_ file: String) throws -> Int64 {
        (try FileManager.default.attributesOfItem(atPath: file)[.size] as? NSNumber)?.int64Value ?? -1
    }

    /// Copies `source` into a new file as a kept snapshot does; returns the digest and the file.
    static func copy(_ source: Connection, in box: Sandbox) throws -> (WrittenDigest?, String) {
        let out = box.path("copy-\(UUID().uuidString).db")
        #expect(FileManager.default.createFile(atPath: out, contents: nil, attributes: [.posixPermissions: 0o600]))
        return (try source.copy(into: out, timeout: .seconds(5), durable: true), out)
    }

    @Test("a kept copy's digest, computed while writing, is sha256sum's of the file: WAL (page 1 in the file, page 1 in the WAL), rollback journal, page sizes 512 and 65536, one page, larger than the buffer ring",
          arguments: ["wal", "wal-page1-in-wal", "delete", "page512", "page65536", "one-page", "ring"])
    func digestIsTheFiles(kind: String) throws {
        let box = try Sandbox(journalMode: kind == "delete" ? "delete" : "wal", rows: 400)
        let db = box.path("source.db")
        var setup: String
        switch kind {
        case "page512": setup = "PRAGMA page_size = 512; PRAGMA journal_mode = WAL; CREATE TABLE t(x); INSERT INTO t SELECT randomblob(300) FROM generate_series(1, 3000);"
        case "page65536": setup = "PRAGMA page_size = 65536; PRAGMA journal_mode = WAL; CREATE TABLE t(x); INSERT INTO t SELECT randomblob(3000) FROM generate_series(1, 3000);"
        case "one-page": setup = "PRAGMA journal_mode = DELETE; PRAGMA user_version = 7;"
        case "ring": setup = "PRAGMA journal_mode = WAL; CREATE TABLE t(x); INSERT INTO t SELECT randomblob(4000) FROM generate_series(1, 9000);"
        default: setup = ""
        }
        if setup.isEmpty {
            try FileManager.default.copyItem(atPath: box.databasePath, toPath: db)
        } else {
            #expect(try Sandbox.exec("/usr/bin/sqlite3", [db], input: setup).status == 0)
        }
        var writer: Connection?
        if kind == "wal-page1-in-wal" {
            // An application's connection that keeps its commits in the WAL: page 1 (the file
            // grows, the schema changes) is newest there, not in the database file.
            writer = try Connection(path: db, mode: .readWrite)
            try writer?.execute("PRAGMA wal_autocheckpoint = 0")
            try writer?.execute("CREATE TABLE late (x); WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n WHERE i < 2000) INSERT INTO late SELECT randomblob(900) FROM n")
            try writer?.execute("INSERT INTO late VALUES ('last')")
            #expect(try Self.fileSize(db + "-wal") > 0)
        }
        let expected = try box.sha3(db)
        let source = try Connection(path: db, mode: .inspect)
        let (digest, out) = try Self.copy(source, in: box)
        let written = try #require(digest, "no digest was computed while writing")
        #expect(written.sha256 == (try Self.sha256sum(out)))
        #expect(written.bytes == (try Self.fileSize(out)))
        #expect(try box.sqlite(out, "PRAGMA integrity_check") == "ok")
        #expect(try box.sha3(out) == expected)
        withExtendedLifetime(writer) {}
    }

    /// A connection inside a read transaction on the box's WAL database, the database's
    /// `.sha3sum` then, and an application's connection that (when asked) has since committed a
    /// new page 1 (a new table) to the WAL, which is not checkpointed.
    static func openSnapshot(_ box: Sandbox, page1CommittedAfter: Bool) throws -> (source: Connection, writer: Connection, sha3: String) {
        let before = try box.sha3(box.databasePath)
        let source = try Connection(path: box.databasePath, mode: .inspect)
        try source.execute("BEGIN")
        #expect(try source.scalar("SELECT count(*) FROM user").int == 400)
        let writer = try Connection(path: box.databasePath, mode: .readWrite)
        try writer.execute("PRAGMA wal_autocheckpoint = 0")
        if page1CommittedAfter { try writer.execute("CREATE TABLE late (x); INSERT INTO late VALUES (1)") }
        return (source, writer, before)
    }

    @Test("a page 1 committed after the copy's snapshot (the WAL's newest page 1 is not the snapshot's) gives no digest, and the copy is of the snapshot")
    func predictionWrong() throws {
        let box = try Sandbox(journalMode: "wal", rows: 400)
        let (source, writer, before) = try Self.openSnapshot(box, page1CommittedAfter: true)
        let (digest, out) = try Self.copy(source, in: box)
        withExtendedLifetime(writer) {}
        #expect(digest == nil, "the prediction was wrong, yet a digest was given")
        try source.execute("COMMIT")
        #expect(try box.sqlite(out, "PRAGMA integrity_check") == "ok")
        #expect(try box.sha3(out) == before)
        #expect(try box.sqlite(out, "SELECT count(*) FROM sqlite_schema WHERE name = 'late'") == "0")
    }

    /// Feeds `writes` to a digest predicting `first` as page 1, each buffer kept alive until hashed.
    static func digest(first: [UInt8], _ writes: [(Int64, [UInt8])], fileSize: Int64) -> WrittenDigest? {
        let digest = WrittenFileDigest(expectedFirstPage: first)
        for (offset, bytes) in writes {
            bytes.withUnsafeBytes { buffer in
                if digest.wrote(buffer.baseAddress!, count: buffer.count, at: offset) { digest.waitForBuffers(below: 1) }
            }
        }
        return digest.result(fileSize: fileSize)
    }

    @Test("the digest is given only for writes it can follow: page 1 as predicted and written once, the rest in order without gaps, the size where the writes ended")
    func digestRules() throws {
        let page = 4096
        let first = (0..<page).map { UInt8(truncatingIfNeeded: $0 * 7) }
        let a = (0..<2 * page).map { UInt8(truncatingIfNeeded: $0 * 13 + 1) }
        let b = (0..<page).map { UInt8(truncatingIfNeeded: $0 * 31 + 5) }
        let size = Int64(4 * page)
        var whole = SHA256()
        whole.update(first); whole.update(a); whole.update(b)
        let expected = WrittenDigest(bytes: size, sha256: try whole.finalizeHex())
        // As the backup API writes: the body in order, page 1 at the commit, or page 1 first.
        #expect(Self.digest(first: first, [(4096, a), (0, first), (12288, b)], fileSize: size) == expected)
        #expect(Self.digest(first: first, [(0, first + a), (12288, b)], fileSize: size) == expected)
        // Each of these would make the digest not the file's.
        var other = first
        other[100] ^= 1
        #expect(Self.digest(first: other, [(4096, a), (0, first), (12288, b)], fileSize: size) == nil, "page 1 not as predicted")
        #expect(Self.digest(first: first, [(4096, a), (12288, b)], fileSize: size) == nil, "page 1 never written")
        #expect(Self.digest(first: first, [(0, first), (4096, a), (0, first), (12288, b)], fileSize: size) == nil, "page 1 written twice")
        #expect(Self.digest(first: first, [(12288, b), (4096, a), (0, first)], fileSize: size) == nil, "out of order")
        #expect(Self.digest(first: first, [(4096, a), (0, first), (16384, b)], fileSize: size + 4096) == nil, "a gap")
        #expect(Self.digest(first: first, [(4096, a), (0, first), (8192, b), (12288, b)], fileSize: size) == nil, "a page written twice")
        #expect(Self.digest(first: first, [(4096, a), (0, first), (12288, b)], fileSize: size + 1) == nil, "the file is longer")
        #expect(Self.digest(first: first, [(4096, a), (0, first), (12288, b)], fileSize: size - 4096) == nil, "the file is shorter")
    }

    @Test("the page holding SQLite's pending byte (at 1 GiB), never written, is a hole hashed as the zeros it reads as: the digest is sha256sum's of the same sparse file")
    func pendingBytePage() throws {
        let box = try Sandbox(rows: 1)
        let page = 4096
        let first = [UInt8](repeating: 0x5a, count: page)
        let zeros = [UInt8](repeating: 0, count: 8 << 20)
        let last = [UInt8](repeating: 0xa5, count: page)
        let pending: Int64 = 0x4000_0000
        var writes: [(Int64, [UInt8])] = [(Int64(page), Array(zeros[page...]))]
        var offset = Int64(zeros.count)
        while offset < pending { writes.append((offset, zeros)); offset += Int64(zeros.count) }
        writes.append((pending + Int64(page), last))
        writes.append((0, first))
        let size = pending + 2 * Int64(page)
        let digest = try #require(Self.digest(first: first, writes, fileSize: size))
        // The same file, sparse: page 1, holes, the last page.
        let file = box.path("sparse.db")
        let fd = open(file, O_CREAT | O_EXCL | O_WRONLY, 0o600)
        #expect(fd >= 0)
        #expect(pwrite(fd, first, page, 0) == page)
        #expect(pwrite(fd, last, page, off_t(pending) + off_t(page)) == page)
        close(fd)
        #expect(digest == WrittenDigest(bytes: size, sha256: try Self.sha256sum(file)))
        // Skipping any other page is a gap.
        writes.removeLast(2)
        writes.append((pending + Int64(2 * page), last))
        writes.append((0, first))
        #expect(Self.digest(first: first, writes, fileSize: size + Int64(page)) == nil)
    }

    @Test("a compressed snapshot is compressed while its copy is written: a 36 MiB database (several reads behind the writer) stored as .gz and .zst gives the database back exactly",
          arguments: ["--gzip", "--compress=zstd"])
    func compressedWhileCopied(option: String) throws {
        let box = try Sandbox(journalMode: "wal", rows: 50)
        #expect(try Sandbox.exec("/usr/bin/sqlite3", [box.databasePath], input: """
            CREATE TABLE big (x); INSERT INTO big SELECT randomblob(4000) FROM generate_series(1, 9000);
            """).status == 0)
        let before = try box.sha3(box.databasePath)
        let arguments = option.split(separator: "=").map(String.init)
        let result = try box.deployctl(["snapshot", "prod"] + arguments)
        #expect(result.status == 0, "\(result.stderr)")
        let name = try #require(box.backupNames().first)
        let file = box.backupsFolder + "/" + name
        let plain = box.path("plain.db")
        let tool = option == "--gzip" ? "gunzip -c" : "zstd -q -d -c"
        #expect(try Sandbox.exec("/bin/sh", ["-c", "\(tool) '\(file)' > '\(plain)'"]).status == 0)
        #expect(try box.sqlite(plain, "PRAGMA integrity_check") == "ok")
        #expect(try box.sha3(plain) == before)
        let manifest = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: file + ".json"))) as! [String: Any]
        #expect(manifest["sha256"] as? String == (try Self.sha256sum(file)))
        #expect(box.allBackupFiles().allSatisfy { !$0.hasPrefix(".") }, "temp files left: \(box.allBackupFiles())")
    }

    @Test("a compressed snapshot whose copy cannot be followed (page 1 committed after its snapshot) is compressed from the finished copy: the backup is the snapshot's, nothing left behind",
          arguments: [Compression.gzip, .zstd], [false, true])
    func compressedFallback(compression: Compression, wrongPrediction: Bool) throws {
        let box = try Sandbox(journalMode: "wal", rows: 400)
        let (source, writer, before) = try Self.openSnapshot(box, page1CommittedAfter: wrongPrediction)
        defer { withExtendedLifetime(writer) {} }
        let store = BackupStore(folder: box.backupsFolder, databasePath: box.databasePath)
        let request = SnapshotRequest(databasePath: box.databasePath, label: "snapshot", compression: compression)
        let entry = try Snapshotter(store: store).publish(request, progress: { _ in }) { path, following in
            try source.copy(into: path, timeout: .seconds(5), following: following)
        }
        try source.execute("COMMIT")
        let plain = box.path("plain.db")
        let tool = compression == .gzip ? "gunzip -c" : "zstd -q -d -c"
        #expect(try Sandbox.exec("/bin/sh", ["-c", "\(tool) '\(entry.path)' > '\(plain)'"]).status == 0)
        #expect(try box.sqlite(plain, "PRAGMA integrity_check") == "ok")
        #expect(try box.sha3(plain) == before)
        #expect(entry.manifest?.sha256 == (try Self.sha256sum(entry.path)))
        #expect(box.allBackupFiles().allSatisfy { !$0.hasPrefix(".") }, "temp files left: \(box.allBackupFiles())")
    }
}
