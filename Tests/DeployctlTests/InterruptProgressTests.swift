import Foundation
import Testing

/// Interrupts that take effect in the middle of long work, and progress lines that fit 80
/// columns, on a database of 128 MiB (large enough that each phase takes a second or more).
/// No timing is asserted: what shows an interrupt took effect at once is how little of the
/// work's temp file was written before it was removed.
@Suite("interrupts and progress", .serialized)
struct InterruptProgressTests {
    /// A sandbox whose database holds about `megabytes` MiB of random blobs.
    static func largeSandbox(megabytes: Int) throws -> Sandbox {
        let box = try Sandbox(rows: 20)
        _ = try box.sqlite(box.databasePath, """
            CREATE TABLE attachment (id INTEGER PRIMARY KEY, body BLOB);
            WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n WHERE i < \(megabytes * 256))
              INSERT INTO attachment SELECT i, randomblob(4000) FROM n;
            """)
        return box
    }

    /// Runs deployctl in the background, sends SIGINT as soon as a temp file in the backups
    /// folder holds bytes (the work is under way), and returns the exit status, stderr and the largest
    /// size any temp file reached before the process ended.
    static func interruptOnceStarted(_ box: Sandbox, _ arguments: [String], environment: [String: String] = [:]) throws -> (status: Int32, stderr: String, largestTemp: Int64) {
        let err = Pipe()
        let process = try box.spawnDeployctl(arguments, environment: environment, stderr: err)
        var largest: Int64 = 0
        var sent = false
        while process.isRunning {
            let temps = ((try? FileManager.default.contentsOfDirectory(atPath: box.backupsFolder)) ?? []).filter { $0.hasPrefix(".tmp-") }
            for temp in temps {
                let size = ((try? FileManager.default.attributesOfItem(atPath: box.backupsFolder + "/" + temp))?[.size] as? NSNumber)?.int64Value ?? 0
                largest = max(largest, size)
            }
            if !sent && largest > 0 {
                kill(process.processIdentifier, SIGINT)
                sent = true
            }
            usleep(2_000)
        }
        process.waitUntilExit()
        let stderr = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        #expect(sent, "no temp file was written to: the work never began")
        return (process.terminationStatus, stderr, largest)
    }

    @Test("SIGINT during a restore's pre_restore copy (restore by rows, before the write lock; page copy, under it): exit 1, the live database as it was, no copy left",
          arguments: ["row-restore-size=skip", "row-restore=skip"])
    func interruptRestoreCopy(path: String) throws {
        let box = try Self.largeSandbox(megabytes: 64)
        _ = try box.takeSnapshot(gzip: false)
        _ = try box.sqlite(box.databasePath, "UPDATE attachment SET body = zeroblob(10) WHERE id % 1000 = 0")
        let before = try box.sha3(box.databasePath)
        let backups = box.backupNames()
        let restore = try Self.interruptOnceStarted(box, ["restore", "prod", "--latest", "--yes"], environment: ["DEPLOYCTL_FAILPOINTS": path])
        #expect(restore.status == 1, "\(restore.stderr)")
        #expect(restore.stderr.contains("interrupted by signal SIGINT") && restore.stderr.contains("the restore was not committed"), "\(restore.stderr)")
        // Stopped between steps of the copy, not at its end.
        let databaseBytes = (try FileManager.default.attributesOfItem(atPath: box.databasePath)[.size] as? NSNumber)?.int64Value ?? 0
        #expect(restore.largestTemp < databaseBytes / 2, "the copy ran on to \(restore.largestTemp) of \(databaseBytes) bytes after the signal")
        #expect(try box.sha3(box.databasePath) == before)
        #expect(box.backupNames() == backups, "\(box.backupNames())")
        #expect(box.allBackupFiles().filter { $0.hasPrefix(".tmp-") }.isEmpty, "\(box.allBackupFiles())")
    }

    @Test("SIGINT during a snapshot's copy and during backups verify's inflation stops the work where it is: exit 1, temp files removed, nothing recorded; the progress of backups verify at 80 columns keeps percent, bytes, rate and time left")
    func interruptsAndProgress() throws {
        let box = try Self.largeSandbox(megabytes: 128)
        let databaseBytes = (try FileManager.default.attributesOfItem(atPath: box.databasePath)[.size] as? NSNumber)?.int64Value ?? 0
        #expect(databaseBytes > 100 << 20)

        let copy = try Self.interruptOnceStarted(box, ["snapshot", "prod", "--no-gzip"])
        #expect(copy.status == 1, "\(copy.stderr)")
        #expect(copy.stderr.contains("interrupted by signal SIGINT; no backup was written, and its temp files were removed"), "\(copy.stderr)")
        // Stopped between steps of the copy, not at its end.
        #expect(copy.largestTemp < databaseBytes / 2, "the copy ran on to \(copy.largestTemp) of \(databaseBytes) bytes after the signal")
        #expect(box.allBackupFiles().isEmpty, "\(box.allBackupFiles())")

        #expect(try box.deployctl(["snapshot", "prod", "--gzip"]).status == 0)
        let name = try #require(box.backupNames().first)
        let manifest = try Data(contentsOf: URL(fileURLWithPath: box.backupsFolder + "/" + name + ".json"))
        let verify = try Self.interruptOnceStarted(box, ["backups", "verify", "prod", name])
        #expect(verify.status == 1, "\(verify.stderr)")
        #expect(verify.stderr.contains("interrupted by signal SIGINT") && verify.stderr.contains("nothing was recorded for it"), "\(verify.stderr)")
        #expect(verify.largestTemp < databaseBytes / 2, "the inflation ran on to \(verify.largestTemp) of \(databaseBytes) bytes after the signal")
        #expect(try Data(contentsOf: URL(fileURLWithPath: box.backupsFolder + "/" + name + ".json")) == manifest, "a stopped check recorded something")
        #expect(box.allBackupFiles().filter { $0.hasPrefix(".tmp-") }.isEmpty)

        // A real terminal 80 columns wide.
        let command = "stty cols 80 rows 24; '\(Sandbox.binary)' backups verify prod '\(name)' --root '\(box.root)'"
        var environment = ProcessInfo.processInfo.environment
        environment["NO_COLOR"] = "1"
        let screen = try Sandbox.exec("/usr/bin/script", ["-qfec", command, "/dev/null"], environment: environment)
        #expect(screen.status == 0, "\(screen.stdout)")
        let lines = screen.stdout.replacingOccurrences(of: "\u{1b}[K", with: "").split(whereSeparator: { $0 == "\r" || $0 == "\n" }).map(String.init)
        let progress = lines.filter { $0.hasPrefix("  checking ") }
        #expect(!progress.isEmpty, "no progress line: \(screen.stdout)")
        #expect(progress.first.map { !$0.contains("%") } == true, "the first line waits for bytes: \(progress.first ?? "")")
        for line in progress { #expect(line.count < 80, "wider than 79 columns: \(line)") }
        // Rate and time left are shown from half a second into a phase; a phase that took a second
        // or more ends with its ✓ line (a fast machine may check the whole file sooner).
        if lines.contains(where: { $0.hasPrefix("  ✓ checking ") }) {
            #expect(progress.contains { $0.range(of: #"[0-9]+% [0-9.]+ [KMG]?i?B of [0-9.]+ [KMG]i?B, [0-9.]+ [KMG]?i?B/s, [0-9]+ s left$"#, options: .regularExpression) != nil },
                    "no line with percent, bytes, rate and time left: \(progress.suffix(5))")
        }
    }
}
