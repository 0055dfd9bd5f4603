import Foundation
import Testing

/// A restore into a large live WAL database rewrites only the rows that differ
/// (`Restorer.restoreByRows`). The tests turn the size threshold off (`row-restore-size=skip`)
/// so that small databases take that path, and check the result as an outsider: `sqlite3`'s
/// `.sha3sum` of every table's content and the schema text, of the live database against the
/// backup, and of the `pre_restore` copy against the live database as it stood before.
@Suite("restore by rows")
struct RowRestoreTests {
    static let byRows = ["DEPLOYCTL_FAILPOINTS": "row-restore-size=skip"]

    /// The content hash of every table (`.sha3sum`, internal tables included) and the schema.
    static func content(_ box: Sandbox, _ db: String) throws -> String {
        try box.sqlite(db, ".sha3sum --schema") + "\n" + box.sqlite(db, "SELECT type, name, tbl_name, sql FROM sqlite_schema ORDER BY type, name; PRAGMA user_version; PRAGMA application_id;")
    }

    @Test("scattered edits, inserts, deletes, a trigger and AUTOINCREMENT: only those rows are rewritten, triggers do not fire, the content and pre_restore are exact",
          arguments: ["scattered", "in place", "freeing", "overflow", "vacuum"])
    func exactContent(change: String) throws {
        let box = try Sandbox(journalMode: "wal", rows: 3000)
        _ = try box.sqlite(box.databasePath, """
            UPDATE payment SET note = zeroblob(9000) || 'a' WHERE id % 40 = 0;
            CREATE TABLE audit (id INTEGER PRIMARY KEY AUTOINCREMENT, what TEXT);
            CREATE TRIGGER loan_audit AFTER UPDATE ON loan BEGIN INSERT INTO audit (what) VALUES ('loan ' || new.id); END;
            CREATE TRIGGER payment_audit AFTER DELETE ON payment BEGIN INSERT INTO audit (what) VALUES ('payment ' || old.id); END;
            CREATE TRIGGER loan_insert AFTER INSERT ON loan BEGIN INSERT INTO audit (what) VALUES ('loan added ' || new.id); END;
            INSERT INTO audit (what) VALUES ('start');
            ANALYZE; PRAGMA user_version = 7;
            """)
        let (_, file) = try box.takeSnapshot(gzip: false)
        let edits = [
            "scattered": "DELETE FROM payment WHERE id % 97 = 0; UPDATE loan SET rate = 5.0 WHERE id % 53 = 0; INSERT INTO tracker VALUES (50000, 1, 'new'); UPDATE user SET name = 'X' WHERE id = 7",
            "in place": "DELETE FROM payment WHERE id % 97 = 1 AND id % 40 != 0; UPDATE loan SET rate = 5.0 WHERE id % 53 = 0; UPDATE user SET name = 'Y' || name WHERE id % 61 = 0; INSERT INTO tracker VALUES (50000, 1, 'new')",
            "freeing": "DELETE FROM payment WHERE id BETWEEN 100 AND 6000",
            "overflow": "UPDATE payment SET note = zeroblob(9000) || 'b' WHERE id % 80 = 0",
            "vacuum": "DELETE FROM payment WHERE id % 5 = 0; VACUUM",
        ]
        _ = try box.sqlite(box.databasePath, edits[change]! + "; INSERT INTO audit (what) VALUES ('after'); PRAGMA user_version = 8; ANALYZE;")
        let before = try Self.content(box, box.databasePath)
        let backup = try Self.content(box, file)
        #expect(before != backup)

        let result = try box.deployctl(["restore", "prod", "--latest", "--yes", "--json"], environment: Self.byRows)
        #expect(result.status == 0, "\(result.stderr)")
        let document = try Sandbox.document(result)
        #expect(try Self.content(box, box.databasePath) == backup)
        #expect(try box.sqlite(box.databasePath, "PRAGMA integrity_check") == "ok")
        let saved = try #require(document["pre_restore_backup"] as? String)
        #expect(try Self.content(box, box.backupsFolder + "/" + saved) == before)
        // The row path is taken where the page comparison names every differing row: when every
        // differing page is a b-tree page or on either side's freelist (deletes free pages). Where
        // an overflow page in use differs (rewritten in place, or VACUUM moving everything), the
        // page copy runs and proves the pages.
        if ["in place", "freeing", "scattered"].contains(change) {
            #expect((document["proven_rows"] as? Int ?? 0) > 150, "\(document)")
            #expect(document["proven_pages"] == nil)
        } else {
            #expect((document["proven_rows"] as? Int != nil) != (document["proven_pages"] as? Int != nil), "\(document)")
        }
    }

    @Test("below the size threshold, in rollback-journal mode and with row-restore=skip, the pages are copied and proven")
    func pageCopyOtherwise() throws {
        for (journal, failpoints) in [("wal", ""), ("delete", "row-restore-size=skip"), ("wal", "row-restore=skip")] {
            let box = try Sandbox(journalMode: journal, rows: 300)
            let (_, file) = try box.takeSnapshot(gzip: false)
            _ = try box.sqlite(box.databasePath, "UPDATE loan SET rate = 9.0 WHERE id % 7 = 0")
            let result = try box.deployctl(["restore", "prod", "--latest", "--yes", "--json"], environment: ["DEPLOYCTL_FAILPOINTS": failpoints])
            #expect(result.status == 0, "\(result.stderr)")
            let document = try Sandbox.document(result)
            #expect(document["proven_pages"] as? Int != nil, "\(journal) \(failpoints): \(document)")
            #expect(document["proven_rows"] as? Int == nil)
            #expect(try Self.content(box, box.databasePath) == Self.content(box, file))
        }
    }

    @Test("a schema that differs from the backup's (a migration since) is restored by the page copy")
    func schemaChange() throws {
        let box = try Sandbox(journalMode: "wal", rows: 300)
        let (_, file) = try box.takeSnapshot(gzip: false)
        _ = try box.sqlite(box.databasePath, "ALTER TABLE loan ADD COLUMN currency TEXT; UPDATE loan SET currency = 'EUR' WHERE id < 10")
        let result = try box.deployctl(["restore", "prod", "--latest", "--yes", "--json"], environment: Self.byRows)
        #expect(result.status == 0, "\(result.stderr)")
        let document = try Sandbox.document(result)
        #expect(document["proven_pages"] as? Int != nil, "\(document)")
        #expect(try Self.content(box, box.databasePath) == Self.content(box, file))
    }

    @Test("the restore failpoint (after the pre_restore copy, under the write lock) and after-restore: nothing changed, or put back, nothing left")
    func failures() throws {
        let box = try Sandbox(journalMode: "wal", rows: 300)
        _ = try box.takeSnapshot(gzip: false)
        _ = try box.sqlite(box.databasePath, "UPDATE loan SET rate = 9.0 WHERE id % 7 = 0; DELETE FROM payment WHERE id % 11 = 0")
        let before = try Self.content(box, box.databasePath)
        let backups = box.backupNames()
        for failpoint in ["restore=error", "after-restore=error"] {
            let result = try box.deployctl(["restore", "prod", "--latest", "--yes", "--json"],
                                           environment: ["DEPLOYCTL_FAILPOINTS": "row-restore-size=skip,\(failpoint)"])
            #expect(result.status == 1, "\(failpoint): \(result.stderr)")
            #expect(try Self.content(box, box.databasePath) == before, "\(failpoint)")
            #expect(try box.sqlite(box.databasePath, "PRAGMA integrity_check") == "ok")
            if failpoint == "restore=error" {
                #expect(result.stderr.contains("the restore was not committed") || result.stderr.contains("failpoint"), "\(result.stderr)")
                #expect(box.backupNames() == backups, "the pre_restore copy is removed")
            }
        }
    }

    @Test("an application committing between the preview and the restore: the page copy runs, and no write it saw committed is lost")
    func commitAfterPreview() throws {
        let box = try Sandbox(journalMode: "wal", rows: 300)
        _ = try box.takeSnapshot(gzip: false)
        _ = try box.sqlite(box.databasePath, "UPDATE loan SET rate = 9.0 WHERE id % 7 = 0")
        // The restore holds at the `restore-preview` failpoint (after the preview, before the
        // restore) for 3 s; the application commits there, once the lock says stage "restore".
        let process = try box.spawnDeployctl(["restore", "prod", "--latest", "--yes"],
                                             environment: ["DEPLOYCTL_FAILPOINTS": "row-restore-size=skip,restore-preview=delay:3000"])
        let deadline = Date().addingTimeInterval(20)
        while Date() < deadline, (try? String(contentsOfFile: box.path("instances/prod/.deployctl.lock"), encoding: .utf8))?
                .contains("\"restore\"") != true || (try? String(contentsOfFile: box.path("instances/prod/.deployctl.lock"), encoding: .utf8))?
                .contains("preview") == true {
            usleep(20_000)
        }
        _ = try box.sqlite(box.databasePath, "INSERT INTO tracker VALUES (90001, 1, 'written during the restore')")
        process.waitUntilExit()
        #expect(process.terminationStatus == 0)
        let saved = try #require(box.backupNames().first { $0.contains("_pre_restore_") })
        #expect(try box.sqlite(box.backupsFolder + "/" + saved, "SELECT name FROM tracker WHERE id = 90001") == "written during the restore")
        #expect(try box.sqlite(box.databasePath, "SELECT count(*) FROM tracker WHERE id = 90001") == "0")
    }
}
