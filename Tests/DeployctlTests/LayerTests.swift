import Foundation
import Offsite
import SQLite
import Support
import Synchronization
import Testing

@Suite("building blocks")
struct LayerTests {
    @Test("SHA-256 matches the FIPS test vectors")
    func sha256Vectors() throws {
        #expect(try SHA256.hex(of: Data()) == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
        #expect(try SHA256.hex(of: Data("abc".utf8)) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        let million = Data(repeating: UInt8(ascii: "a"), count: 1_000_000)
        #expect(try SHA256.hex(of: million) == "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0")
        let text = Data("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq".utf8)
        #expect(try SHA256.hex(of: text) == "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1")
        // Fed in pieces, the same digest as in one go.
        var pieces = SHA256()
        for chunk in stride(from: 0, to: million.count, by: 333_333) { pieces.update(million[chunk..<min(chunk + 333_333, million.count)]) }
        #expect(try pieces.finalizeHex() == "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0")
    }

    @Test("the one HMAC-SHA-256 matches RFC 4231 (test cases 1, 2, 6: a key longer than a block), and an empty key and message")
    func hmacVectors() throws {
        let hex = { (bytes: [UInt8]) in bytes.map { String(format: "%02x", $0) }.joined() }
        #expect(hex(try SHA256.hmac(key: [UInt8](repeating: 0x0b, count: 20), Array("Hi There".utf8)))
                == "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7")
        #expect(hex(try SHA256.hmac(key: Array("Jefe".utf8), Array("what do ya want for nothing?".utf8)))
                == "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843")
        #expect(hex(try SHA256.hmac(key: [UInt8](repeating: 0xaa, count: 131), Array("Test Using Larger Than Block-Size Key - Hash Key First".utf8)))
                == "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54")
        #expect(hex(try SHA256.hmac(key: [], [])) == "b613679a0814d9ec772f95d778c35fc5ff1697c493715653c6c712144292c5ad")
    }

    @Test("SigV4 signs AWS's published example (GET /test.txt with a Range, examplebucket, 2013-05-24); MD5 matches RFC 1321")
    func sigV4Vector() throws {
        let signer = SigV4(credentials: Credentials(accessKeyId: "AKIAIOSFODNN7EXAMPLE", secretAccessKey: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
                                                    source: "test"), region: "us-east-1")
        let headers = try signer.sign(method: "GET", host: "examplebucket.s3.amazonaws.com", path: "/test.txt", query: [],
                                  headers: [("Range", "bytes=0-9")], payloadSHA256: try SigV4.sha256Hex([]),
                                  date: Date(timeIntervalSince1970: 1_369_353_600))
        let authorization = headers.first { $0.0 == "Authorization" }?.1
        #expect(authorization == "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, "
                + "SignedHeaders=host;range;x-amz-content-sha256;x-amz-date, Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41")
        #expect(SigV4.uriEncode("a b/c~d", slash: false) == "a%20b/c~d" && SigV4.uriEncode("a/b", slash: true) == "a%2Fb")
        #expect(MD5.digest(UnsafeRawBufferPointer(start: nil, count: 0)).map { String(format: "%02x", $0) }.joined() == "d41d8cd98f00b204e9800998ecf8427e")
        #expect(Array("abc".utf8).withUnsafeBytes { MD5.digest($0) }.map { String(format: "%02x", $0) }.joined() == "900150983cd24fb0d6963f7d28e17f72")
    }

    @Test("fingerprints ignore row order and rowids but see every changed value")
    func fingerprints() throws {
        let folder = NSTemporaryDirectory() + "fp-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let a = try Connection(path: folder + "/a.db", mode: .create)
        let b = try Connection(path: folder + "/b.db", mode: .create)
        try a.execute("CREATE TABLE t(x, y); INSERT INTO t VALUES (1, 'one'), (2, 'two'), (3, x'00ff');")
        try b.execute("CREATE TABLE t(x, y); INSERT INTO t VALUES (3, x'00ff'), (1, 'one'), (2, 'two');")
        #expect(try a.fingerprint(table: "t") == b.fingerprint(table: "t"))
        try b.execute("UPDATE t SET y = 'One' WHERE x = 1")
        #expect(try a.fingerprint(table: "t") != b.fingerprint(table: "t"))
        try b.execute("UPDATE t SET y = 'one' WHERE x = 1")
        try b.execute("INSERT INTO t VALUES (1, 'one')")
        #expect(try a.fingerprint(table: "t").sha256 != b.fingerprint(table: "t").sha256)
    }

    @Test("page comparison: a copy is identical, one changed row or one more page is found", arguments: ["wal", "delete"])
    func comparePages(journalMode: String) throws {
        let folder = NSTemporaryDirectory() + "pages-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let live = try Connection(path: folder + "/live.db", mode: .create)
        _ = try live.scalar("PRAGMA journal_mode = \(journalMode)")
        try live.execute("""
            CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT);
            WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 5000)
              INSERT INTO t SELECT i, printf('row %d', i) FROM n;
            """)
        let copy = folder + "/copy.db"
        #expect(try Sandbox.exec("/usr/bin/sqlite3", [folder + "/live.db", ".backup '\(copy)'"]).status == 0)
        let same = try live.comparePages(with: copy, timeout: .seconds(1))
        #expect(same.identical, "\(same.pages.sorted())")
        #expect(same.pageCount > 10 && same.pageCount == same.referencePageCount)

        try live.execute("UPDATE t SET v = 'changed' WHERE id = 2500")
        let changed = try live.comparePages(with: copy, timeout: .seconds(1))
        #expect(!changed.identical)
        #expect(changed.pages.count == 1 && changed.pageCount == same.pageCount)

        try live.execute("INSERT INTO t(v) SELECT v FROM t WHERE id <= 400")
        let grown = try live.comparePages(with: copy, timeout: .seconds(1))
        #expect(!grown.identical && grown.pageCount > grown.referencePageCount)
        #expect(try Sandbox.exec("/bin/ls", [folder]).stdout.split(separator: "\n").filter { $0.hasPrefix("copy") } == ["copy.db"],
                "the comparison creates no file beside the reference")
    }

    @Test("RowidSet answers as a Set<Int64> does, under ascending runs, gaps, removals that split or shorten runs, and re-inserts")
    func rowidSet() {
        var set = RowidSet()
        var reference = Set<Int64>()
        var generator = SystemRandomNumberGenerator()
        func check() {
            #expect(set.count == reference.count && set.isEmpty == reference.isEmpty)
            for probe in Int64(-2)...Int64(620) { #expect(set.contains(probe) == reference.contains(probe), "rowid \(probe)") }
        }
        for rowid in Int64(1)...300 { set.insert(rowid); reference.insert(rowid) }       // one run
        for rowid in stride(from: Int64(400), through: 600, by: 3) { set.insert(rowid); reference.insert(rowid) }  // gaps
        for rowid: Int64 in [0, -1, 350, 350, 5] { set.insert(rowid); reference.insert(rowid) }  // out of order, again, inside a run
        check()
        for rowid: Int64 in [150, 1, 300, 600, 350, 7777] { #expect(set.remove(rowid) == (reference.remove(rowid) != nil)) }
        check()
        // The last run shortened below a rowid held apart, then that rowid and the next inserted.
        for rowid: Int64 in [599, 598, 597] { set.remove(rowid); reference.remove(rowid) }
        for rowid: Int64 in [597, 598, 599, 600, 601] { set.insert(rowid); reference.insert(rowid) }
        check()
        for _ in 0..<2000 {
            let rowid = Int64.random(in: -5...620, using: &generator)
            if Bool.random(using: &generator) { set.insert(rowid); reference.insert(rowid) } else { #expect(set.remove(rowid) == (reference.remove(rowid) != nil)) }
        }
        check()
    }

    @Test("the detailed recorder tells inserted rows from existing ones at 200k rows: an insert, updates and deletes of them leave existing rows untouched; one existing row deleted and one changed are seen")
    func rowChangesAtScale() throws {
        let db = try Connection(path: ":memory:", mode: .create)
        try db.execute("""
            CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT);
            WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n WHERE i < 1000) INSERT INTO t SELECT i, 'old ' || i FROM n;
            CREATE TABLE created(id INTEGER PRIMARY KEY, v TEXT);
            """)
        let recorder = try RowChangeRecorder(db, detailed: true, only: ["main.t"])
        try db.execute("""
            WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n WHERE i < 200000) INSERT INTO t(v) SELECT 'new ' || i FROM n;
            WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n WHERE i < 200000) INSERT INTO created(v) SELECT 'new ' || i FROM n;
            UPDATE t SET v = 'newer' WHERE id > 1000 AND id % 7 = 0;
            DELETE FROM t WHERE id > 1000 AND id % 5 = 0;
            UPDATE t SET id = id + 1000000 WHERE id BETWEEN 5000 AND 5010;
            """)
        var changes = try #require(recorder.details["main.t"])
        #expect(changes.existingRowsDeleted == 0 && changes.existingValuesChanged.isEmpty, "\(changes.existingRowsDeleted) \(changes.existingValuesChanged)")
        #expect(changes.inserted.count == 200_000 - 200_000 / 5)
        #expect(recorder.details["main.created"] == nil, "a table outside `only` is counted, not detailed")
        try db.execute("DELETE FROM t WHERE id = 10; UPDATE t SET v = 'changed' WHERE id = 20")
        changes = try #require(recorder.details["main.t"])
        #expect(changes.existingRowsDeleted == 1 && changes.existingValuesChanged == [1: 1], "\(changes.existingRowsDeleted) \(changes.existingValuesChanged)")
        let counts = recorder.stop()
        #expect(counts["main.created"] == 200_000)
    }

    @Test("the row change recorder sees DML, triggers, cascades, REPLACE and DELETE without WHERE")
    func rowChanges() throws {
        #expect(RowChangeRecorder.isAvailable, "Debian's libsqlite3 has the preupdate hook")
        let db = try Connection(path: ":memory:", mode: .create)
        try db.execute("""
            PRAGMA foreign_keys = ON;
            CREATE TABLE parent(id INTEGER PRIMARY KEY);
            CREATE TABLE child(id INTEGER PRIMARY KEY, parent_id REFERENCES parent(id) ON DELETE CASCADE);
            CREATE TABLE audit(n);
            CREATE TABLE keyed(k TEXT PRIMARY KEY, v) WITHOUT ROWID;
            CREATE TRIGGER log_parent AFTER INSERT ON parent BEGIN INSERT INTO audit VALUES (new.id); END;
            INSERT INTO child VALUES (99, NULL);
            INSERT INTO keyed VALUES ('a', 1);
            """)
        let recorder = try RowChangeRecorder(db)
        try db.execute("""
            INSERT INTO parent VALUES (1), (2);
            INSERT INTO child VALUES (10, 1), (11, 1);
            DELETE FROM parent WHERE id = 1;
            INSERT OR REPLACE INTO keyed VALUES ('a', 2);
            DELETE FROM child;
            """)
        let counts = recorder.stop()
        #expect(counts["main.parent"] == 3)            // 2 inserts, 1 delete
        #expect(counts["main.audit"] == 2)             // by the trigger
        #expect(counts["main.child"] == 2 + 2 + 1)     // 2 inserts, 2 cascaded deletes, the last row by DELETE without WHERE
        #expect((counts["main.keyed"] ?? 0) >= 2)      // REPLACE: the old row's delete and the insert
        try db.execute("INSERT INTO audit VALUES (0)")
        #expect(recorder.stop() == counts, "nothing is recorded after stop")
    }

    @Test("SQL splitting follows SQLite's tokenizer")
    func splitting() throws {
        let parts = try Connection.split("""
            -- comment; with a semicolon
            CREATE TABLE a(x TEXT DEFAULT 'a;b');
            CREATE TRIGGER t AFTER INSERT ON a BEGIN SELECT 1; SELECT 2; END;
            /* trailing */
            """)
        #expect(parts.count == 2)
        #expect(parts[1].hasSuffix("END;"))
    }
}

@Suite("connection locks")
struct ConnectionLockTests {
    /// The POSIX locks this process holds on `path`, from /proc/locks.
    func myLocks(on path: String) throws -> Int {
        var info = stat()
        try #require(stat(path, &info) == 0)
        let locks = try String(contentsOfFile: "/proc/locks", encoding: .utf8)
        return locks.split(separator: "\n").filter { line in
            let fields = line.split(separator: " ", omittingEmptySubsequences: true)
            return fields.count >= 6 && fields[4] == "\(getpid())" && fields[5].hasSuffix(":\(info.st_ino)")
        }.count
    }

    @Test("opening and closing another connection keeps the locks this process holds on a live WAL database")
    func locksSurviveAnotherOpen() throws {
        let box = try Sandbox(journalMode: "wal")
        let live = try Connection(path: box.databasePath, mode: .readWrite)
        try live.execute("BEGIN")
        _ = try live.scalar("SELECT count(*) FROM user")
        let held = try myLocks(on: box.databasePath)
        try #require(held > 0, "a WAL connection holds a lock on the database file")
        for mode in [Connection.Mode.inspect, .readOnly, .immutable] {
            _ = try Connection(path: box.databasePath, mode: mode)
            #expect(try myLocks(on: box.databasePath) == held, "opening a \(mode) connection dropped this process's locks")
        }
        try Connection.checkIsDatabase(box.databasePath)
        #expect(try myLocks(on: box.databasePath) == held, "checkIsDatabase dropped this process's locks")
        try live.execute("COMMIT")
    }
}

extension LayerTests {
    struct Numbered: Error, Equatable { let number: Int }

    @Test("Parallel.map gives results in index order, throws the failure of the lowest index and starts no item after a failure; Parallel.both returns both sides and throws the side asked for; Background reports and returns its result on every wait; a Pool reuses what was given back")
    func parallelHelper() throws {
        #expect(Parallel.map(100, width: 3) { $0 * $0 } == (0..<100).map { $0 * $0 })
        #expect(Parallel.map(0) { $0 }.isEmpty)
        let started = Atomic<Int>(0)
        #expect(throws: Numbered(number: 7)) {
            _ = try Parallel.map(1000, width: 2) { (i: Int) throws(Numbered) -> Int in
                started.add(1, ordering: .relaxed)
                if i >= 7 { throw Numbered(number: i) }
                return i
            }
        }
        // Item 7 fails; at most the other worker's item in flight and one more start after it.
        #expect(started.load(ordering: .relaxed) < 20)

        let (here, elsewhere) = try Parallel.both({ "here" }, elsewhere: { 42 })
        #expect(here == "here" && elsewhere == 42)
        #expect(throws: Numbered(number: 1)) {
            _ = try Parallel.both({ () throws -> Int in throw Numbered(number: 1) }, elsewhere: { () throws -> Int in throw Numbered(number: 2) })
        }
        #expect(throws: Numbered(number: 2)) {
            _ = try Parallel.both({ () throws -> Int in throw Numbered(number: 1) }, elsewhere: { () throws -> Int in throw Numbered(number: 2) },
                                  reportingFirst: .elsewhere)
        }
        #expect(throws: Numbered(number: 2)) {
            _ = try Parallel.both({ 1 }, elsewhere: { () throws -> Int in throw Numbered(number: 2) })
        }

        let work = Parallel.Background { report in
            report(5)
            return "done"
        }
        var last: Int64 = -1
        #expect(try work.wait { last = $0 } == "done")
        #expect(last == 5)
        #expect(try work.wait { _ in } == "done")

        // A pool gives back what was put back (the buffer written is the one borrowed next),
        // to one thread after another.
        let pool = Parallel.Pool { [UInt8](repeating: 0, count: 1) }
        pool.borrow { $0[0] = 7 }
        #expect(pool.borrow { $0[0] } == 7)
        let seen = Parallel.map(50, width: 2) { _ in pool.borrow { buffer -> UInt8 in buffer[0] = 7; return buffer[0] } }
        #expect(seen.allSatisfy { $0 == 7 })
    }
}
