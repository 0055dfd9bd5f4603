import Foundation
import SQLite
import Support

/// A process that has the database (or its `-wal`/`-journal`) open or locked.
public struct DatabaseHolder: Codable, Sendable, Hashable, CustomStringConvertible {
    public let pid: Int32
    public let command: String
    /// Whether the process holds an fcntl lock on the file (SQLite's locks), not only an open fd.
    public let locking: Bool
    /// Whether the lock it holds is SQLite's write lock (RESERVED or stronger on the database
    /// file in rollback-journal mode; the WAL write lock, byte 120 of `-shm`, in WAL mode),
    /// as opposed to a reader's.
    public var writing = false

    public var description: String { "PID \(pid) (\(command))\(writing ? " holding the write lock" : locking ? " reading" : "")" }
}

/// Finds who holds a database file, from `/proc/locks` and `/proc/*/fd`.
public enum DatabaseHolders {
    /// Every other process with `path` (or its `-wal`, `-shm`, `-journal`) open, sorted by PID;
    /// those with a POSIX lock on it are marked. Processes of other users are seen through
    /// `/proc/locks` even when their fds are not readable. Locks are matched by inode number
    /// (the device field's encoding differs between filesystems), so a lock on a same-numbered
    /// file on another device would be counted too: a false alarm, never a missed holder.
    public static func find(path: String) -> [DatabaseHolder] {
        let me = getpid()
        var inodes = [UInt64: String]()
        for suffix in ["", "-wal", "-shm", "-journal"] {
            var info = stat()
            if stat(path + suffix, &info) == 0 {
                inodes[UInt64(info.st_ino)] = path + suffix
            }
        }
        var locking = Set<Int32>()
        var writing = Set<Int32>()
        if let locks = try? String(contentsOfFile: "/proc/locks", encoding: .utf8) {
            for line in locks.split(separator: "\n") {
                // "1: POSIX  ADVISORY  WRITE 1234 08:01:5678 0 EOF"
                let fields = line.split(separator: " ", omittingEmptySubsequences: true)
                guard fields.count >= 8, fields[1] == "POSIX" || fields[1] == "OFDLCK",
                      let pid = Int32(fields[4]) else { continue }
                let id = fields[5].split(separator: ":")
                guard id.count == 3, let inode = UInt64(id[2]), let file = inodes[inode] else { continue }
                guard pid != me && pid > 0 else { continue }
                locking.insert(pid)
                let start = UInt64(fields[6]) ?? 0
                let end = fields[7] == "EOF" ? UInt64.max : UInt64(fields[7]) ?? 0
                let covers = { (byte: UInt64) in start <= byte && byte <= end }
                // SQLite's os_unix.c: RESERVED is byte 0x40000001 of the database; in WAL mode the
                // write lock is byte 120 of the -shm file (WAL_WRITE_LOCK).
                if fields[3] == "WRITE", (file == path && covers(0x4000_0001)) || (file == path + "-shm" && covers(120)) {
                    writing.insert(pid)
                }
            }
        }
        var holders = Set<Int32>(locking)
        let targets = Set(inodes.values)
        if let pids = try? FileManager.default.contentsOfDirectory(atPath: "/proc") {
            for entry in pids {
                guard let pid = Int32(entry), pid != me else { continue }
                guard let fds = try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/fd") else { continue }
                for fd in fds {
                    if let target = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/\(pid)/fd/\(fd)"),
                       targets.contains(target) {
                        holders.insert(pid)
                        break
                    }
                }
            }
        }
        return holders.sorted().map { pid in
            DatabaseHolder(pid: pid, command: commandLine(pid), locking: locking.contains(pid), writing: writing.contains(pid))
        }
    }

    /// A process's command line, or its name, or "?".
    static func commandLine(_ pid: Int32) -> String {
        if let data = FileManager.default.contents(atPath: "/proc/\(pid)/cmdline"), !data.isEmpty {
            let parts = data.split(separator: 0).map { String(decoding: $0, as: UTF8.self) }
            let line = parts.joined(separator: " ")
            return line.count > 120 ? String(line.prefix(120)) + "…" : line
        }
        return (try? String(contentsOfFile: "/proc/\(pid)/comm", encoding: .utf8))?
            .trimmingCharacters(in: .whitespacesAndNewlines) ?? "?"
    }

    /// Whether SQLite's write lock on the database can be had within `timeout`: opens it,
    /// runs `BEGIN IMMEDIATE` and rolls back at once. Changes nothing.
    /// - Throws: `Failure` `.temporary` naming the holders when the lock is not had in time.
    public static func probeWriteLock(path: String, timeout: Duration) throws {
        let db = try Connection(path: path, mode: .readWrite, busyTimeout: timeout)
        do {
            try db.execute("BEGIN IMMEDIATE")
            try db.execute("ROLLBACK")
        } catch let error as SQLiteError where error.kind == .temporary {
            throw busy(path: path, timeout: timeout)
        }
    }

    /// The `lock.database_busy` (75) failure for a database whose write lock is held, naming the holders.
    public static func busy(path: String, timeout: Duration) -> Failure {
        let holders = find(path: path)
        let writers = holders.filter(\.writing)
        let others = holders.filter { !$0.writing }
        var who = writers.isEmpty ? "another process" : writers.map { "PID \($0.pid) (\($0.command))" }.joined(separator: ", ")
        if writers.isEmpty && !others.isEmpty { who += " (open in \(others.map(\.description).joined(separator: ", ")))" }
        let also = !writers.isEmpty && !others.isEmpty ? "; also open in \(others.map(\.description).joined(separator: ", "))" : ""
        return Failure(.lockDatabaseBusy, "the database \(path) is locked for writing by \(who)\(also); waited \(timeout)",
                       hint: "stop the application (or configure the instance's stop hook), then run again")
    }
}
