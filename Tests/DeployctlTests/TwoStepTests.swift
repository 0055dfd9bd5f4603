import Foundation
import Testing

/// Two-step commands (prune, remove, accept) ask without the instance lock and work under it:
/// what changed while the question waited is refused with backup.changed_while_asked or
/// accept.changed_while_asked, and nothing is removed or recorded. The failpoint `confirm`
/// (`delay`) is an operator who takes a while to answer.
@Suite("two-step commands")
struct TwoStepTests {
    /// Runs `arguments` in the background with the answer delayed, runs `meanwhile`, and
    /// returns the first command's exit status and stderr.
    static func whileAsking(_ box: Sandbox, _ arguments: [String], meanwhile: () throws -> Void) throws -> (Int32, String) {
        let stderr = Pipe()
        let asking = try box.spawnDeployctl(arguments + ["--yes"], environment: ["DEPLOYCTL_FAILPOINTS": "confirm=delay:2500"], stderr: stderr)
        Thread.sleep(forTimeInterval: 0.8)
        try meanwhile()
        asking.waitUntilExit()
        return (asking.terminationStatus, String(decoding: stderr.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self))
    }

    @Test("a snapshot taken while a prune's question waits is not removed: the prune is refused, nothing removed")
    func pruneSeesNewSnapshot() throws {
        let box = try Sandbox(rows: 10)
        for _ in 0..<2 { #expect(try box.deployctl(["snapshot", "prod", "--label", "x"]).status == 0) }
        let (status, stderr) = try Self.whileAsking(box, ["backups", "prune", "prod", "--label", "x", "--keep-last", "0"]) {
            Thread.sleep(forTimeInterval: 1.1)  // a new second: a new backup name
            let snapshot = try box.deployctl(["snapshot", "prod", "--label", "x"])
            #expect(snapshot.status == 0)
        }
        #expect(status == 64 && stderr.contains("error[backup.changed_while_asked]") && stderr.contains("not counted in the question"), "\(stderr)")
        #expect(box.backupNames().count == 3, "\(box.backupNames())")
        // Without the change, the same prune removes what it asked about.
        #expect(try box.deployctl(["backups", "prune", "prod", "--label", "x", "--keep-last", "0", "--yes"]).status == 0)
        #expect(box.backupNames().isEmpty)
    }

    @Test("a backup removed by another run while remove's question waits: changed_while_asked, not 'no such backup'")
    func removeSeesRemoval() throws {
        let box = try Sandbox(rows: 10)
        #expect(try box.deployctl(["snapshot", "prod"]).status == 0)
        let name = try #require(box.backupNames().first { !$0.hasSuffix(".json") })
        let (status, stderr) = try Self.whileAsking(box, ["backups", "remove", "prod", name]) {
            let removed = try box.deployctl(["backups", "remove", "prod", name, "--yes"])
            #expect(removed.status == 0)
        }
        #expect(status == 64 && stderr.contains("error[backup.changed_while_asked]"), "\(stderr)")
    }

    @Test("an accept recorded by another run while the question waits: changed_while_asked, the row as the other run left it")
    func acceptSeesOtherAccept() throws {
        let box = try Sandbox(rows: 10)
        try box.deployThenEditCashbackMigration()
        let (status, stderr) = try Self.whileAsking(box, ["accept", "prod", "0001_cashback_tables"]) {
            let accepted = try box.deployctl(["accept", "prod", "0001_cashback_tables", "--yes"])
            #expect(accepted.status == 0)
        }
        #expect(status == 64 && stderr.contains("error[accept.changed_while_asked]"), "\(stderr)")
        #expect(try box.deployctl(["verify", "prod"]).status == 0)
    }

    @Test("a failpoint action the point does nothing with is refused (64), as a misspelt name is", arguments: ["migrate=skip", "clock=error", "free-space=crash", "migrate=shift:5"])
    func failpointActions(spec: String) throws {
        let box = try Sandbox(rows: 10)
        let result = try box.deployctl(["snapshot", "prod"], environment: ["DEPLOYCTL_FAILPOINTS": spec])
        #expect(result.status == 64 && result.code == "failpoint.invalid", "\(spec): \(result.stderr)")
        #expect(box.backupNames().isEmpty)
    }
}

extension TwoStepTests {
    @Test("a live file that is no database is the live database's problem: restore --latest is 65 database.unreadable naming --replace, not 'no good backup'; --replace restores it")
    func liveNotADatabase() throws {
        let box = try Sandbox(rows: 10)
        #expect(try box.deployctl(["snapshot", "prod"]).status == 0)
        let backups = box.allBackupFiles()
        try Data("garbage\n".utf8).write(to: URL(fileURLWithPath: box.databasePath))
        let refused = try box.deployctl(["restore", "prod", "--latest", "--yes"])
        #expect(refused.status == 65 && refused.code == "database.unreadable" && refused.stderr.contains("--replace"), "\(refused.stderr)")
        #expect(!refused.stderr.contains("passed over") && box.allBackupFiles() == backups)
        #expect(try box.deployctl(["restore", "prod", "--latest", "--replace", "--yes"]).status == 0)
        #expect(try box.sqlite(box.databasePath, "SELECT count(*) FROM user") != "")
    }

    @Test("the remove question names the backup's last check as backups list does (never verified), not an internal name")
    func removeQuestionWords() throws {
        let box = try Sandbox(rows: 10)
        #expect(try box.deployctl(["snapshot", "prod"]).status == 0)
        let name = try #require(box.backupNames().first { !$0.hasSuffix(".json") })
        let refused = try box.deployctl(["backups", "remove", "prod", name])
        #expect(refused.status == 64 && refused.stderr.contains("never verified)"), "\(refused.stderr)")
    }
}
