import Foundation
import Testing

/// The application, played by a separate process: it commits one row into `user` every 2 ms
/// through its own connection (30 s busy timeout, as an application waits for a lock) and logs
/// the id of every commit it saw succeed.
final class ApplicationWriter {
    let process = Process()
    let logPath: String
    let stopPath: String

    init(_ box: Sandbox, firstId: Int = 1_000_000) throws {
        logPath = box.path("writer.log")
        stopPath = box.path("writer.stop")
        process.executableURL = URL(fileURLWithPath: "/usr/bin/python3")
        process.arguments = ["-c", """
            import os, sqlite3, time
            db = sqlite3.connect('\(box.databasePath)', timeout=30, isolation_level=None)
            log = open('\(logPath)', 'w', buffering=1)
            i = \(firstId)
            end = time.time() + 60
            while not os.path.exists('\(stopPath)') and time.time() < end:
                db.execute("INSERT INTO user VALUES (?, 'App', ?)", (i, 'app%d@example.com' % i))
                log.write('%d\\n' % i)
                i += 1
                time.sleep(0.002)
            """]
        try process.run()
    }

    /// The ids logged so far.
    var committed: [Int] {
        ((try? String(contentsOfFile: logPath, encoding: .utf8)) ?? "").split(separator: "\n").compactMap { Int($0) }
    }

    /// Waits until at least `count` commits are logged (at most 20 s).
    func waitFor(commits count: Int) {
        let end = Date().addingTimeInterval(20)
        while committed.count < count && Date() < end { Thread.sleep(forTimeInterval: 0.01) }
    }

    /// Stops the writer and returns every id it saw committed.
    func stop() -> [Int] {
        _ = FileManager.default.createFile(atPath: stopPath, contents: nil)
        process.waitUntilExit()
        return committed
    }
}

extension Sandbox {
    /// The ids of `user` rows the application wrote (id ≥ 1,000,000) in a database.
    func applicationIds(_ db: String) throws -> Set<Int> {
        Set(try sqlite(db, "SELECT id FROM user WHERE id >= 1000000").split(separator: "\n").compactMap { Int($0) })
    }

    /// The restore's `--json` document.
    static func document(_ result: Sandbox.Result) throws -> [String: Any] {
        try #require(JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any], "not JSON: \(result.stdout)")
    }

    /// Rows of `db` that `reference` does not hold, over the lending tables: what an outsider
    /// counts as discarded when `reference` replaces `db`.
    func rowsNotIn(_ db: String, reference: String) throws -> Int {
        let sum = ["user", "loan", "payment", "tracker"].map {
            "(SELECT count(*) FROM (SELECT * FROM main.\($0) EXCEPT SELECT * FROM ref.\($0)))"
        }.joined(separator: " + ")
        return Int(try sqlite(db, "ATTACH '\(reference)' AS ref; SELECT \(sum);")) ?? -1
    }
}
