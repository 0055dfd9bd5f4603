import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Durable file operations: temp file, fsync, rename without replacing, fsync of the folder.
///
/// Every backup, manifest, report and journal deployctl writes goes through here, so a crash at
/// any instant leaves either the old state or the complete new file, never a half-written one.
public enum DurableFile {
    /// Writes `data` to `path` atomically and durably.
    ///
    /// The bytes go to a hidden temp file in the same folder, are fsynced, renamed over `path`
    /// (`replace: true`) or linked into place only if `path` does not exist (`replace: false`),
    /// and the folder is fsynced. The temp file is removed on every failure path.
    /// - Throws: `Failure` `.io` (or `.cannotCreate` when the folder refuses new files);
    ///   `.io` with "exists" when `replace` is false and `path` exists.
    public static func write(_ data: Data, to path: String, mode: mode_t = 0o600, replace: Bool = true) throws {
        let temp = temporaryPath(for: path)
        let fd = open(temp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode)
        guard fd >= 0 else { throw posixFailure("cannot create \(temp)", errno, creating: true) }
        adoptFolderOwner(fd, path: temp)
        var ok = false
        defer { if !ok { unlink(temp) } }
        do {
            defer { close(fd) }
            try data.withUnsafeBytes { try writeAll(fd: fd, $0, path: temp) }
            guard fsync(fd) == 0 else { throw posixFailure("cannot fsync \(temp)", errno) }
        }
        if replace {
            guard rename(temp, path) == 0 else { throw posixFailure("cannot rename \(temp) to \(path)", errno) }
        } else {
            try publish(temp, as: path)
        }
        ok = true
        try syncDirectory(containing: path)
    }

    /// Moves a finished temp file to `path` without ever replacing an existing file, then
    /// removes the temp name. The caller fsyncs the file before and the folder after.
    /// - Throws: `Failure` `file.exists` when `path` is taken; else `.io`.
    public static func publish(_ temp: String, as path: String) throws {
        guard link(temp, path) == 0 else {
            let code = errno
            if code == EEXIST { throw Failure(.fileExists, "\(path) exists; refusing to replace it") }
            throw posixFailure("cannot link \(temp) to \(path)", code)
        }
        unlink(temp)
    }

    /// Creates a new file at `path` (0600) that must not exist, open for writing; run as root,
    /// it belongs to the folder's owner (`adoptFolderOwner`).
    /// - Throws: `Failure` (`.cannotCreate` for permissions, `.io` otherwise).
    public static func createNew(_ path: String) throws -> Int32 {
        let fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw posixFailure("cannot create \(path)", errno, creating: true) }
        adoptFolderOwner(fd, path: path)
        return fd
    }

    /// fsyncs the folder holding `path`, so a rename or unlink in it is durable.
    public static func syncDirectory(containing path: String) throws {
        try syncDirectory((path as NSString).deletingLastPathComponent)
    }

    /// fsyncs a folder.
    public static func syncDirectory(_ folder: String) throws {
        let fd = open(folder.isEmpty ? "." : folder, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard fd >= 0 else { throw posixFailure("cannot open folder \(folder)", errno) }
        defer { close(fd) }
        guard fsync(fd) == 0 else { throw posixFailure("cannot fsync folder \(folder)", errno) }
    }

    /// fsyncs a file by path.
    public static func syncFile(_ path: String) throws {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw posixFailure("cannot open \(path)", errno) }
        defer { close(fd) }
        guard fsync(fd) == 0 else { throw posixFailure("cannot fsync \(path)", errno) }
    }

    /// Temp files in `folder` (see `temporaryPath`; with `file`, only those for that file name)
    /// whose writer is gone: its PID names no
    /// running process (a PID reused by another process counts as alive: such a file is kept).
    /// Returns their paths and sizes.
    public static func leftovers(in folder: String, naming file: String? = nil) -> [(path: String, bytes: Int64)] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: folder)) ?? []
        return names.compactMap { name in
            guard name.hasPrefix(".tmp-"), file.map(name.contains) ?? true, let pid = Int32(name.dropFirst(5).prefix { $0.isNumber }), pid > 0, pid != getpid(),
                  kill(pid, 0) != 0, errno == ESRCH else { return nil }
            let path = folder + "/" + name
            let bytes = ((try? FileManager.default.attributesOfItem(atPath: path))?[.size] as? NSNumber)?.int64Value ?? 0
            return (path, bytes)
        }
    }

    /// A hidden temp name beside `path`, unique to this process and call.
    public static func temporaryPath(for path: String, suffix: String = "") -> String {
        let url = URL(fileURLWithPath: path)
        let unique = UInt32.random(in: 0...UInt32.max)
        return url.deletingLastPathComponent()
            .appendingPathComponent(".tmp-\(getpid())-\(String(unique, radix: 16))-\(url.lastPathComponent)\(suffix)").path
    }

    /// Reads from `fd` until `buffer` is full or the file ends, retrying short reads; returns
    /// the bytes read.
    /// - Throws: `Failure` `.io` naming `path`.
    public static func readFully(_ fd: Int32, into buffer: UnsafeMutableRawBufferPointer, path: String) throws -> Int {
        var filled = 0
        while filled < buffer.count {
            let n = Glibc.read(fd, buffer.baseAddress! + filled, buffer.count - filled)
            if n < 0 {
                if errno == EINTR { continue }
                throw posixFailure("cannot read \(path)", errno)
            }
            if n == 0 { break }
            filled += n
        }
        return filled
    }

    /// Writes every byte of `bytes` to `fd`, retrying short writes.
    /// - Throws: `Failure` `.io` naming `path` (disk full shows as ENOSPC).
    public static func writeAll(fd: Int32, _ bytes: UnsafeRawBufferPointer, path: String) throws {
        var offset = 0
        while offset < bytes.count {
            let n = Glibc.write(fd, bytes.baseAddress! + offset, bytes.count - offset)
            if n < 0 {
                if errno == EINTR { continue }
                throw posixFailure("cannot write \(path)", errno)
            }
            offset += n
        }
    }

    /// Writes every byte of `bytes` to `fd` at `offset` (`pwrite`), retrying short writes.
    /// - Throws: `Failure` `.io` naming `path` (disk full shows as ENOSPC).
    public static func writeAll(fd: Int32, _ bytes: UnsafeRawBufferPointer, at offset: Int64, path: String) throws(Failure) {
        var done = 0
        while done < bytes.count {
            let n = pwrite(fd, bytes.baseAddress! + done, bytes.count - done, off_t(offset) + off_t(done))
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else { throw posixFailure("cannot write \(path)", n < 0 ? errno : ENOSPC) }
            done += n
        }
    }

    /// A `Failure` for a failed system call: ENOSPC and EDQUOT are `file.no_space`; EACCES,
    /// EROFS and EPERM are `file.cannot_create` when creating, else `file.permission_denied`;
    /// anything else `file.io_error` (all 74 but `file.cannot_create`, 73).
    public static func posixFailure(_ what: String, _ code: Int32, creating: Bool = false) -> Failure {
        let reason = String(cString: strerror(code))
        switch code {
        case ENOSPC, EDQUOT:
            return Failure(.fileNoSpace, "\(what): \(reason)", hint: "free disk space, then run the command again")
        case EACCES, EROFS, EPERM:
            return Failure(creating ? .fileCannotCreate : .filePermissionDenied, "\(what): \(reason)", hint: "check the folder's owner and permissions")
        default:
            return Failure(.fileIOError, "\(what): \(reason)")
        }
    }
}
