import Foundation
import Testing

/// The instance lock's holder record is written and fsynced, or the lock is not taken (issue 24:
/// the lock record's `ftruncate`/`pwrite`/`fsync` results are checked).
@Suite("lock record")
struct LockRecordTests {
    @Test("a lock file that cannot take the holder's record (no file size allowed): the lock is not taken, 74 lock.record_failed, nothing written; with room again the same snapshot works")
    func recordCannotBeWritten() throws {
        let box = try Sandbox(rows: 20)
        // RLIMIT_FSIZE 0 makes every write that would grow a file fail with EFBIG (the signal
        // that would kill the process ignored, as the shell passes it on to deployctl).
        let limited = try Sandbox.exec("/bin/sh", ["-c", "trap '' XFSZ; ulimit -f 0; exec \"$@\"", "sh",
                                                   Sandbox.binary, "snapshot", "prod", "--root", box.root],
                                       environment: ProcessInfo.processInfo.environment.merging(["NO_COLOR": "1"]) { $1 })
        #expect(limited.status == 74 && limited.code == "lock.record_failed", "\(limited.stderr)")
        #expect(limited.stderr.contains("lock file") && limited.stderr.contains("the lock was not taken"), "\(limited.stderr)")
        #expect(box.backupNames().isEmpty)
        // The lock was not left held: the next run takes it and reports no crashed holder.
        let again = try box.deployctl(["snapshot", "prod"])
        #expect(again.status == 0 && !again.stderr.contains("crash") && !again.stdout.contains("crash"), "\(again.stdout)\(again.stderr)")
        #expect(box.backupNames().count == 1)
    }
}
