import Foundation
import Testing

@Suite("bad input")
struct BadInputTests {
    @Test("unknown instance is 66, a name with / or .. is 64")
    func instanceNames() throws {
        let box = try Sandbox(rows: 5)
        let unknown = try box.deployctl(["snapshot", "staging"])
        #expect(unknown.status == 66)
        #expect(unknown.stderr.contains("no instance 'staging'"))
        for bad in ["../prod", "prod/x", "..", "Prod"] {
            let result = try box.deployctl(["snapshot", bad])
            #expect(result.status == 64, "\(bad): \(result.stderr)")
            #expect(result.stderr.contains("invalid instance name"))
        }
        #expect(box.backupNames().isEmpty)
    }

    @Test("a malformed config names file, line and key", arguments: [
        ("[database]\npath = database/x.db\n", 2, "database.path"),
        ("[database]\npath = \"database/x.db\"\nbusy_timeout_ms = \"soon\"\n", 3, "database.busy_timeout_ms"),
        ("[database]\npath = \"database/x.db\"\n[backups]\nkeep = 3\n", 4, "backups.keep"),
    ])
    func malformedConfig(text: String, line: Int, key: String) throws {
        let box = try Sandbox(rows: 5)
        try box.write("instances/prod/instance.toml", text)
        let result = try box.deployctl(["snapshot", "prod"])
        #expect(result.status == 64)
        #expect(result.stderr.contains("instances/prod/instance.toml:\(line):"), "\(result.stderr)")
        #expect(result.stderr.contains(key), "\(result.stderr)")
    }

    @Test("a missing database is 66 and no empty database appears")
    func missingDatabase() throws {
        let box = try Sandbox(rows: 5)
        try FileManager.default.removeItem(atPath: box.databasePath)
        for command in [["snapshot", "prod"], ["restore", "prod", "--latest", "--yes"]] {
            let result = try box.deployctl(command)
            #expect(result.status == 66, "\(command): \(result.stderr)")
            #expect(!FileManager.default.fileExists(atPath: box.databasePath))
        }
        #expect(try box.deployctl(["snapshot", "prod"]).stderr.contains("does not exist"))
    }

    @Test("a file that is not SQLite is 65 and stays as it was")
    func notSQLite() throws {
        let box = try Sandbox(rows: 5)
        try Data(repeating: 0x41, count: 5000).write(to: URL(fileURLWithPath: box.databasePath))
        let result = try box.deployctl(["snapshot", "prod"])
        #expect(result.status == 65 && result.code == "sqlite.not_a_database")
        #expect(result.stderr.contains("not a SQLite database"))
        #expect(try Data(contentsOf: URL(fileURLWithPath: box.databasePath)) == Data(repeating: 0x41, count: 5000))
    }

    @Test("a backups folder that cannot be created or written is 73")
    func unwritableBackups() throws {
        let box = try Sandbox(rows: 5)
        // Tests run as root, which ignores permission bits: a file where the folder should be
        // is what stops root too.
        try Data("in the way".utf8).write(to: URL(fileURLWithPath: box.backupsFolder))
        let result = try box.deployctl(["snapshot", "prod"])
        #expect(result.status == 73 && result.code == "access.write_denied", "\(result.stderr)")
        #expect(result.stderr.contains(box.backupsFolder))
        try Data("x".utf8).write(to: URL(fileURLWithPath: box.path("blocker")))
        try box.write("instances/prod/instance.toml", "[database]\npath = \"database/lending_app_prod.db\"\n[backups]\npath = \"../../blocker/backups\"\n")
        #expect(try box.deployctl(["snapshot", "prod"]).status == 73)
    }

    @Test("a backup argument holding a path or .. is 64; an unknown one 66")
    func backupNames() throws {
        let box = try Sandbox(rows: 5)
        #expect(try box.deployctl(["snapshot", "prod"]).status == 0)
        for bad in ["../prod/database/lending_app_prod.db", "/etc/passwd", "x/../y.db", ".."] {
            let restore = try box.deployctl(["restore", "prod", bad, "--yes"])
            #expect(restore.status == 64 && restore.code == "backup.invalid_name", "\(bad)")
            let verify = try box.deployctl(["backups", "verify", "prod", bad])
            #expect(verify.status == 64 && verify.code == "backup.invalid_name", "\(bad)")
        }
        let missing = try box.deployctl(["backups", "verify", "prod", "lending_app_prod_x_20200101_000000.db"])
        #expect(missing.status == 66 && missing.code == "backup.not_found")
    }

    @Test("verifying a backup leaves no file beside it and records verified_at")
    func verifyLeavesNothing() throws {
        let box = try Sandbox(rows: 50)
        #expect(try box.deployctl(["snapshot", "prod", "--no-gzip"]).status == 0)
        #expect(try box.deployctl(["snapshot", "prod", "--gzip"]).status == 0)
        let before = box.allBackupFiles()
        let result = try box.deployctl(["backups", "verify", "prod", "--all"])
        #expect(result.status == 0, "\(result.stderr)")
        #expect(box.allBackupFiles() == before)
        let entries = try box.listedBackups()
        #expect(entries.allSatisfy { $0["status"] as? String == "verified" && $0["verified_at"] != nil })
    }
}
