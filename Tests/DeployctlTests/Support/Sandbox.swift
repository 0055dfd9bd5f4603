import Foundation
import Testing

/// A deployment root in a fresh temp folder, with real SQLite files, and helpers to run the
/// built `deployctl`, `sqlite3` and `gzip` as a user would.
final class Sandbox {
    let root: String

    init(journalMode: String = "wal", rows: Int = 300, config: String? = nil) throws {
        root = NSTemporaryDirectory() + "deployctl-test-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: root + "/instances/prod/database", withIntermediateDirectories: true)
        try write("instances/prod/instance.toml", config ?? """
            [database]
            path = "database/lending_app_prod.db"
            busy_timeout_ms = 2000
            [backups]
            path = "backups"
            """)
        try makeLendingDatabase(path: databasePath, journalMode: journalMode, rows: rows)
    }

    deinit { try? FileManager.default.removeItem(atPath: root) }

    var databasePath: String { root + "/instances/prod/database/lending_app_prod.db" }
    var backupsFolder: String { root + "/instances/prod/backups" }

    func path(_ relative: String) -> String { root + "/" + relative }

    func write(_ relative: String, _ text: String) throws {
        let full = path(relative)
        try FileManager.default.createDirectory(atPath: (full as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        try text.write(toFile: full, atomically: true, encoding: .utf8)
    }

    /// Builds a lending database with the sqlite3 CLI.
    func makeLendingDatabase(path: String, journalMode: String, rows: Int) throws {
        let sql = """
            PRAGMA journal_mode=\(journalMode);
            CREATE TABLE user (id INTEGER PRIMARY KEY, name TEXT NOT NULL, email TEXT NOT NULL UNIQUE);
            CREATE TABLE loan (id INTEGER PRIMARY KEY, user_id INTEGER NOT NULL REFERENCES user(id), principal_cents INTEGER, rate REAL, status TEXT);
            CREATE TABLE payment (id INTEGER PRIMARY KEY, loan_id INTEGER NOT NULL REFERENCES loan(id), amount_cents INTEGER, note BLOB);
            CREATE TABLE tracker (id INTEGER PRIMARY KEY, user_id INTEGER REFERENCES user(id), name TEXT);
            WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n WHERE i < \(rows))
              INSERT INTO user SELECT i, 'User ' || i, 'u' || i || '@example.com' FROM n;
            WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n WHERE i < \(rows))
              INSERT INTO loan SELECT i, 1 + i % \(rows), i * 1000, 4.5, 'active' FROM n;
            WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n WHERE i < \(rows * 3))
              INSERT INTO payment SELECT i, 1 + i % \(rows), i * 10, randomblob(64) FROM n;
            WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n WHERE i < \(rows / 3))
              INSERT INTO tracker SELECT i, 1 + i % \(rows), 'Goal ' || i FROM n;
            """
        let result = try Sandbox.exec("/usr/bin/sqlite3", [path], input: sql)
        #expect(result.status == 0, "sqlite3 failed: \(result.stderr)")
    }

    /// Runs the built deployctl with `--root` set to this sandbox.
    @discardableResult
    func deployctl(_ arguments: [String], environment: [String: String] = [:], input: String? = nil) throws -> Sandbox.Result {
        var env = ProcessInfo.processInfo.environment
        env["NO_COLOR"] = "1"
        env["DEPLOYCTL_HINT_LOG"] = Sandbox.hintLog
        for (k, v) in environment { env[k] = v }
        return try Sandbox.exec(Sandbox.binary, arguments + ["--root", root], environment: env, input: input)
    }

    /// Starts the built deployctl in the background (stdout discarded, stderr to `stderr`).
    func spawnDeployctl(_ arguments: [String], environment: [String: String], stderr: Pipe? = nil) throws -> Process {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: Sandbox.binary)
        process.arguments = arguments + ["--root", root]
        var env = ProcessInfo.processInfo.environment
        env["DEPLOYCTL_HINT_LOG"] = Sandbox.hintLog
        for (k, v) in environment { env[k] = v }
        process.environment = env
        process.standardOutput = FileHandle.nullDevice
        if let stderr { process.standardError = stderr }
        try process.run()
        return process
    }

    /// `sqlite3 DB SQL` output, trimmed; with a 5 s busy timeout, as an application has (on a
    /// loaded machine a write can meet the end of deployctl's own write transaction).
    func sqlite(_ db: String, _ sql: String) throws -> String {
        let result = try Sandbox.exec("/usr/bin/sqlite3", ["-cmd", ".timeout 5000", db, sql])
        #expect(result.status == 0, "sqlite3 \(sql): \(result.stderr)")
        return result.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// `sqlite3 DB .sha3sum` — the outsider's logical hash of a database.
    func sha3(_ db: String) throws -> String { try sqlite(db, ".sha3sum") }

    /// Backup file names in the backups folder (no manifests, no temp files).
    func backupNames() -> [String] {
        allBackupFiles().filter { !$0.hasSuffix(".json") && !$0.hasPrefix(".") }
    }

    /// Every file in the backups folder, manifests and hidden (temp) files included, but for
    /// the record of issued names (`.deployctl-names`).
    func allBackupFiles() -> [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: backupsFolder)) ?? []).filter { $0 != ".deployctl-names" }.sorted()
    }

    struct Result {
        let status: Int32
        let stdout: String
        let stderr: String

        /// The failure's stable code (docs/errors.md), from whichever form the command printed:
        /// `error[code]:` on a terminal or plain stderr, `[code]` ending a `--quiet` line, or
        /// `"code"` in a `--json` error object. Nil when the command printed none.
        var code: String? {
            let forms = [#"error\[([a-z0-9_.]+)\]:"#, #"^deployctl: .* \[([a-z0-9_.]+)\]$"#, #""code" ?: ?"([a-z0-9_.]+)""#]
            for (form, text) in zip(forms, [stderr, stderr, stdout]) {
                let pattern = try! NSRegularExpression(pattern: form, options: .anchorsMatchLines)
                if let match = pattern.firstMatch(in: text, range: NSRange(text.startIndex..., in: text)) {
                    return String(text[Range(match.range(at: 1), in: text)!])
                }
            }
            return nil
        }
    }

    /// Where every "Try:" hint the built deployctl prints in this test run is appended
    /// (`DEPLOYCTL_HINT_LOG`): `HintTests` checks that each command in them parses.
    static let hintLog = NSTemporaryDirectory() + "deployctl-hints-\(getpid()).log"

    static let binary: String = {
        // The test bundle lives in the build products folder beside the deployctl executable.
        var url = Bundle(for: Sandbox.self).bundleURL
        while !FileManager.default.fileExists(atPath: url.appendingPathComponent("deployctl").path), url.path != "/" {
            url.deleteLastPathComponent()
        }
        return url.appendingPathComponent("deployctl").path
    }()

    static func exec(_ tool: String, _ arguments: [String], environment: [String: String]? = nil, input: String? = nil) throws -> Result {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: tool)
        process.arguments = arguments
        if let environment { process.environment = environment }
        let out = Pipe(), err = Pipe(), inPipe = Pipe()
        process.standardOutput = out
        process.standardError = err
        process.standardInput = inPipe
        try process.run()
        if let input { inPipe.fileHandleForWriting.write(Data(input.utf8)) }
        try inPipe.fileHandleForWriting.close()
        nonisolated(unsafe) var errData = Data()
        let group = DispatchGroup()
        group.enter()
        DispatchQueue.global().async { errData = err.fileHandleForReading.readDataToEndOfFile(); group.leave() }
        let outData = out.fileHandleForReading.readDataToEndOfFile()
        group.wait()
        process.waitUntilExit()
        return Result(status: process.terminationStatus, stdout: String(decoding: outData, as: UTF8.self),
                      stderr: String(decoding: errData, as: UTF8.self))
    }
}

extension Sandbox {
    /// The repository's own migrations folder.
    static let repositoryMigrations: String = {
        var url = URL(fileURLWithPath: #filePath)
        while !FileManager.default.fileExists(atPath: url.appendingPathComponent("Package.swift").path) { url.deleteLastPathComponent() }
        return url.appendingPathComponent("instances/migrations").path
    }()

    /// Copies the shipped cashback migration into this sandbox's migrations folder.
    /// Takes the sandbox's first snapshot with the built deployctl and returns its name and path.
    /// Takes the sandbox's first snapshot with the built deployctl and returns its name and path.
    func takeSnapshot(gzip: Bool) throws -> (name: String, file: String) {
        let result = try deployctl(["snapshot", "prod", gzip ? "--gzip" : "--no-gzip"])
        try #require(result.status == 0, "snapshot failed: \(result.stderr)")
        let name = try #require(backupNames().first)
        return (name, backupsFolder + "/" + name)
    }

    /// Records a backup file's current sha256 and size in its manifest, as if it had been
    /// written so: for damage the checksum must not be what catches.
    static func rewriteManifestChecksum(of file: String) throws {
        let manifestURL = URL(fileURLWithPath: file + ".json")
        var manifest = try JSONSerialization.jsonObject(with: Data(contentsOf: manifestURL)) as! [String: Any]
        manifest["sha256"] = try exec("/usr/bin/sha256sum", [file]).stdout.split(separator: " ").first.map(String.init)
        manifest["bytes"] = try FileManager.default.attributesOfItem(atPath: file)[.size] as? Int
        // A plain backup's database is the file itself: its size too, as a manifest written for it would say.
        if file.hasSuffix(".db") { manifest["database_bytes"] = manifest["bytes"] }
        try JSONSerialization.data(withJSONObject: manifest).write(to: manifestURL)
    }

    /// Waits (at most 20 s) until the prod deploy journal holds `text` (a stage name, or
    /// `"committed" : true`): a deploy running in the background has reached that point.
    func waitForJournal(_ text: String) {
        let journal = path("instances/prod/.deployctl.journal")
        let deadline = Date().addingTimeInterval(20)
        while Date() < deadline, (try? String(contentsOfFile: journal, encoding: .utf8))?.contains(text) != true { usleep(20_000) }
    }

    /// Sets a backup's manifest `created_at`, as a host with another clock would have written it.
    static func redate(_ file: String, to date: Date) throws {
        let manifestURL = URL(fileURLWithPath: file + ".json")
        var manifest = try JSONSerialization.jsonObject(with: Data(contentsOf: manifestURL)) as! [String: Any]
        manifest["created_at"] = ISO8601DateFormatter().string(from: date)
        try JSONSerialization.data(withJSONObject: manifest).write(to: manifestURL)
    }

    /// `backups list --json`'s backups, newest first.
    func listedBackups() throws -> [[String: Any]] {
        let result = try deployctl(["backups", "list", "prod", "--json"])
        try #require(result.status == 0, "backups list failed: \(result.stderr)")
        return try #require(Sandbox.document(result)["backups"] as? [[String: Any]])
    }

    /// Starts a process playing the application inside a write transaction (`BEGIN IMMEDIATE`
    /// and one uncommitted insert) for `seconds`, and returns once it holds the lock.
    func holdWriteLock(seconds: Int = 8) throws -> Process {
        let holder = Process()
        holder.executableURL = URL(fileURLWithPath: "/usr/bin/python3")
        holder.arguments = ["-c", """
            import sqlite3, time
            db = sqlite3.connect('\(databasePath)', isolation_level=None)
            db.execute('BEGIN IMMEDIATE')
            db.execute("INSERT INTO user VALUES (999999, 'x', 'x@x')")
            print('locked', flush=True)
            time.sleep(\(seconds))
            """]
        let out = Pipe()
        holder.standardOutput = out
        try holder.run()
        _ = out.fileHandleForReading.availableData  // wait for "locked"
        return holder
    }

    /// Deploys the shipped cashback migration, then edits its file (a comment added): an
    /// applied migration changed afterwards, for `accept` and the checksum checks. Returns the file.
    @discardableResult
    func deployThenEditCashbackMigration() throws -> String {
        try installCashbackMigration()
        let deployed = try deployctl(["deploy", "prod", "--yes"])
        try #require(deployed.status == 0, "\(deployed.stderr)")
        let file = path("instances/migrations/0001_cashback_tables.sql")
        try (try String(contentsOfFile: file, encoding: .utf8) + "\n-- a comment added later\n").write(toFile: file, atomically: true, encoding: .utf8)
        return file
    }

    /// Copies the shipped cashback migration into this sandbox's migrations folder.
    func installCashbackMigration() throws {
        try FileManager.default.createDirectory(atPath: path("instances/migrations"), withIntermediateDirectories: true)
        try FileManager.default.copyItem(atPath: Sandbox.repositoryMigrations + "/0001_cashback_tables.sql",
                                         toPath: path("instances/migrations/0001_cashback_tables.sql"))
    }

    /// Adds an instance `name` with its own lending database, after the ones in deploy.toml.
    func addInstance(_ name: String, hooks: String = "", journalMode: String = "wal") throws {
        try write("instances/\(name)/instance.toml", """
            [database]
            path = "database/lending_app_\(name).db"
            busy_timeout_ms = 1000
            [backups]
            path = "backups"
            [hooks]
            timeout_seconds = 10
            health_attempts = 2
            \(hooks)
            """)
        try FileManager.default.createDirectory(atPath: path("instances/\(name)/database"), withIntermediateDirectories: true)
        try makeLendingDatabase(path: path("instances/\(name)/database/lending_app_\(name).db"), journalMode: journalMode, rows: 200)
    }

    /// Rewrites prod's config with app hooks (`key = value` lines of the `[hooks]` table).
    func configureHooks(_ hooks: String) throws {
        try write("instances/prod/instance.toml", "[database]\npath = \"database/lending_app_prod.db\"\n[hooks]\n\(hooks)\n")
    }

    /// sha3 of each pre-existing lending table, for "unchanged" checks from outside.
    func oldTableHashes(_ db: String? = nil) throws -> [String] {
        try ["user", "loan", "payment", "tracker"].map { try sqlite(db ?? databasePath, ".sha3sum \($0)") }
    }

    /// Tables in a database, per the sqlite3 CLI.
    func tables(_ db: String? = nil) throws -> [String] {
        try sqlite(db ?? databasePath, "SELECT name FROM sqlite_schema WHERE type='table' ORDER BY name").split(separator: "\n").map(String.init)
    }

    static let cashbackTables = ["cashback_redemption", "cashback_transaction", "loan_cashback_config",
                                 "tracker_cashback_config", "tracker_entry", "user_payment_method"]
}
