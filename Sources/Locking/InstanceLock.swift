import Foundation
import Support
#if canImport(Glibc)
import Glibc
#endif

/// Who holds (or last held) an instance lock, as recorded in the lock file.
public struct LockHolder: Codable, Sendable, Equatable {
    public let pid: Int32
    public let host: String
    public let command: String
    public let startedAt: Date
    /// What the holder is doing, when it says (`restore`), and its current stage: `status`
    /// reports a live holder's work as in progress.
    public var operation: String?
    public var stage: String?

    /// A holder record; `operation` and `stage` only for work `status` reports as in progress.
    public init(pid: Int32, host: String, command: String, startedAt: Date, operation: String? = nil, stage: String? = nil) {
        self.pid = pid
        self.host = host
        self.command = command
        self.startedAt = startedAt
        self.operation = operation
        self.stage = stage
    }

    enum CodingKeys: String, CodingKey {
        case pid, host, command, operation, stage
        case startedAt = "started_at"
    }
}

/// The instance lock: `flock` on a lock file in the instance folder (SPEC.md, Conventions).
///
/// The file is opened close-on-exec (hooks never inherit it) and never deleted. While held it
/// records the holder; a clean release empties it, so a holder still recorded when the lock is
/// next taken was a run that died (the kernel freed its lock): `crashedHolder` names it.
public final class InstanceLock {
    /// The lock file.
    public let path: String
    /// The previous holder, when the last run ended without releasing the lock.
    public let crashedHolder: LockHolder?
    private var fd: Int32

    /// Takes the lock without waiting, recording this process as its holder (with what it
    /// does, when `operation` is given).
    /// - Throws: `Failure` `lock.held` (75) naming the PID and command of the holder when another
    ///   process has it; `.cannotCreate` when the lock file cannot be opened; `lock.record_failed`
    ///   (74) when the holder cannot be written and fsynced into it (the lock is then not taken:
    ///   without the record a crash could not be told from a clean end).
    public init(path: String, command: String, now: Date = Date(), operation: String? = nil, stage: String? = nil) throws {
        self.path = path
        fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw DurableFile.posixFailure("cannot open lock file \(path)", errno, creating: true) }
        // Never deleted: run as root, it must still be the instance owner's to open later.
        DurableFile.adoptFolderOwner(fd, path: path)
        guard flock(fd, LOCK_EX | LOCK_NB) == 0 else {
            // The holder writes its record just after taking the lock: give it a moment.
            var holder = Self.readHolder(fd)
            for _ in 0..<5 where holder == nil {
                usleep(50_000)
                holder = Self.readHolder(fd)
            }
            close(fd)
            let who = holder.map { "PID \($0.pid) (\($0.command)) on \($0.host) since \(ISO8601DateFormatter().string(from: $0.startedAt))" }
                ?? "another deployctl"
            throw Failure(.lockHeld, "instance is locked by \(who); lock file \(path)",
                          hint: "wait for that command to finish, then run again")
        }
        crashedHolder = Self.readHolder(fd)
        let holder = LockHolder(pid: getpid(), host: ProcessInfo.processInfo.hostName, command: command, startedAt: now,
                                operation: operation, stage: stage)
        let data = (try? JSON.encoder().encode(holder)) ?? Data()
        do {
            errno = 0
            try Self.check(ftruncate(fd, 0) == 0, "empty", path)
            try Self.check(data.withUnsafeBytes { pwrite(fd, $0.baseAddress, $0.count, 0) } == data.count, "write the holder into", path)
            try Self.check(fsync(fd) == 0, "fsync", path)
        } catch {
            close(fd)
            throw error
        }
    }

    /// Throws `lock.record_failed` for a failed call on the lock file (errno says why; a short
    /// write is reported as ENOSPC).
    private static func check(_ succeeded: Bool, _ what: String, _ path: String) throws(Failure) {
        guard !succeeded else { return }
        let code = errno == 0 ? ENOSPC : errno
        throw Failure(.lockRecordFailed, "cannot \(what) the lock file \(path): \(String(cString: strerror(code))); the lock was not taken",
                      hint: code == ENOSPC || code == EFBIG || code == EDQUOT ? "free disk space, then run the command again" : "check the disk and the file's permissions, then run again")
    }

    /// Records what this holder is doing in the lock file, for `status`. The new record is
    /// written over the old one padded with spaces (JSON allows them), then the file is cut to
    /// it, so a reader sees the old record or the new one, never an empty file.
    /// - Throws: `lock.record_failed` when the record cannot be written and fsynced (the lock
    ///   stays held; the file may hold the old record).
    public func record(operation: String, stage: String) throws {
        guard fd >= 0 else { return }
        var holder = Self.readHolder(fd) ?? LockHolder(pid: getpid(), host: ProcessInfo.processInfo.hostName, command: "", startedAt: Date())
        holder.operation = operation
        holder.stage = stage
        guard var data = try? JSON.encoder().encode(holder) else { return }
        let length = data.count
        var info = stat()
        if fstat(fd, &info) == 0, Int(info.st_size) > length { data.append(contentsOf: [UInt8](repeating: 0x20, count: Int(info.st_size) - length)) }
        errno = 0
        try Self.check(data.withUnsafeBytes { pwrite(fd, $0.baseAddress, $0.count, 0) } == data.count, "record the stage in", path)
        try Self.check(ftruncate(fd, off_t(length)) == 0, "cut", path)
        try Self.check(fsync(fd) == 0, "fsync", path)
    }

    /// Releases the lock, first emptying the file so the next holder knows this run finished.
    /// The lock is released whatever happens; when the file cannot be emptied and fsynced, the
    /// record stays and the next run reports this one as crashed: the safe mistake, since
    /// `release` runs on every way out (a `defer`) and has nobody to throw to.
    public func release() {
        guard fd >= 0 else { return }
        // Emptied and fsynced, or the record stays (see above): either way the lock is released.
        _ = ftruncate(fd, 0) == 0 && fsync(fd) == 0
        flock(fd, LOCK_UN)
        close(fd)
        fd = -1
    }

    deinit { release() }

    /// The holder recorded in the lock file at `path`, and whether its lock is still held.
    /// Reads only; used by `status`.
    public static func inspect(path: String) -> (holder: LockHolder?, held: Bool) {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return (nil, false) }
        defer { close(fd) }
        var holder = readHolder(fd)
        if flock(fd, LOCK_SH | LOCK_NB) == 0 {
            flock(fd, LOCK_UN)
            return (holder, false)
        }
        // A new holder writes its record just after taking the lock: give it a moment.
        for _ in 0..<5 where holder == nil {
            usleep(50_000)
            holder = readHolder(fd)
        }
        return (holder, true)
    }

    private static func readHolder(_ fd: Int32) -> LockHolder? {
        var bytes = [UInt8](repeating: 0, count: 4096)
        let n = pread(fd, &bytes, bytes.count, 0)
        guard n > 0 else { return nil }
        return try? JSON.decoder().decode(LockHolder.self, from: Data(bytes[0..<n]))
    }
}
