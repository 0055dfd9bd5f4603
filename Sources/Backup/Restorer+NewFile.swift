import Dispatch
import Foundation
import SQLite
import Support

/// Restores into a new file (`restore --to`) and over a missing or unreadable live database
/// (`restore --replace`): written beside the target, proven page by page, then linked or renamed.
extension Restorer {
    /// Restores `backup` into `target`, a file that must not exist: temp file, fsync, link
    /// without replacing, folder fsync. Returns the number of pages proven identical.
    /// - Throws: `Failure` `.cannotCreate` when `target` exists or cannot be created.
    public func restore(_ backup: OpenedBackup, toNewFile target: String) throws -> Int {
        guard !FileManager.default.fileExists(atPath: target) else {
            throw Failure(.restoreTargetExists, "\(target) exists; --to only writes a new file",
                          hint: "choose a path that does not exist")
        }
        // A compressed backup was inflated to a checked temp file: on the same filesystem that
        // very file becomes the new one (fsync, link without replacing), with no second copy.
        if backup.temporary, try linkChecked(backup.databasePath, as: target) {
            return Int(try Connection(path: target, mode: .immutable).scalar("PRAGMA page_count").int ?? 0)
        }
        let temp = DurableFile.temporaryPath(for: target)
        defer { unlink(temp); unlink(temp + "-journal") }
        let pages = try writeCopy(of: backup, to: temp)
        guard link(temp, target) == 0 else {
            let code = errno
            if code == EEXIST { throw Failure(.restoreTargetExists, "\(target) appeared meanwhile; --to only writes a new file, and it was left as it is", hint: "choose a path that does not exist") }
            throw DurableFile.posixFailure("cannot create \(target)", code, creating: true)
        }
        try DurableFile.syncDirectory(containing: target)
        return pages
    }

    /// fsyncs `checked` and links it as `target` (never replacing); false when they are on
    /// different filesystems.
    /// - Throws: `Failure` for any other error.
    private func linkChecked(_ checked: String, as target: String) throws -> Bool {
        try DurableFile.syncFile(checked)
        guard link(checked, target) == 0 else {
            let code = errno
            if code == EXDEV { return false }
            if code == EEXIST { throw Failure(.restoreTargetExists, "\(target) exists; --to only writes a new file", hint: "choose a path that does not exist") }
            throw DurableFile.posixFailure("cannot create \(target)", code, creating: true)
        }
        try DurableFile.syncDirectory(containing: target)
        return true
    }

    /// Replaces a missing or unreadable live database with `backup`: a temp copy beside it,
    /// fsynced, renamed over it, stale `-wal`/`-shm`/`-journal` files moved aside, folder fsynced.
    /// The caller has checked that no process holds the file. Whatever was there is kept: the
    /// unreadable file and its side files are moved to `aside` + suffix (or, on another
    /// filesystem, beside the database under the same name), never deleted. When `livePath` is
    /// a symbolic link, the file it points to is replaced and the link stays. The new file gets
    /// the old one's owner and mode. Returns the number of pages proven identical and where the
    /// old file went (nil when there was none).
    /// - Throws: `Failure` `.io`.
    public func replace(livePath: String, with backup: OpenedBackup, aside: String) throws -> (pages: Int, movedTo: String?) {
        let target = Self.linkTarget(livePath)
        let temp = DurableFile.temporaryPath(for: target)
        defer { unlink(temp); unlink(temp + "-journal") }
        let pages = try writeCopy(of: backup, to: temp)
        var old = stat()
        if stat(target, &old) == 0 {
            chown(temp, old.st_uid, old.st_gid)
            chmod(temp, old.st_mode & 0o7777)
        } else {
            // No file to take them from: the mode SQLite gives a database it creates (0644 under
            // the usual umask), not a temp file's 0600, and the folder's owner (an application
            // reading through its group keeps reading).
            let mask = umask(0)
            umask(mask)
            chmod(temp, 0o666 & ~mask)
            var folder = stat()
            if stat((target as NSString).deletingLastPathComponent, &folder) == 0, getuid() == 0 { chown(temp, folder.st_uid, folder.st_gid) }
        }
        var movedTo: String?
        for suffix in ["", "-wal", "-shm", "-journal"] where FileManager.default.fileExists(atPath: target + suffix) {
            var destination = aside + suffix
            if rename(target + suffix, destination) != 0 {
                guard errno == EXDEV else { throw DurableFile.posixFailure("cannot move \(target + suffix) aside to \(destination)", errno) }
                destination = (target as NSString).deletingLastPathComponent + "/" + (aside as NSString).lastPathComponent + suffix
                guard !FileManager.default.fileExists(atPath: destination), rename(target + suffix, destination) == 0 else {
                    throw DurableFile.posixFailure("cannot move \(target + suffix) aside to \(destination)", errno)
                }
            }
            if suffix.isEmpty { movedTo = destination }
        }
        guard rename(temp, target) == 0 else { throw DurableFile.posixFailure("cannot rename \(temp) to \(target)", errno) }
        try DurableFile.syncDirectory(containing: target)
        if let movedTo { try DurableFile.syncDirectory(containing: movedTo) }
        return (pages, movedTo)
    }

    /// The file a path names after following symbolic links, even a dangling last one.
    static func linkTarget(_ path: String) -> String {
        var current = path
        for _ in 0..<40 {
            guard let destination = try? FileManager.default.destinationOfSymbolicLink(atPath: current) else { return current }
            current = destination.hasPrefix("/") ? destination
                : URL(fileURLWithPath: (current as NSString).deletingLastPathComponent).appendingPathComponent(destination).standardizedFileURL.path
        }
        return current
    }

    private func writeCopy(of backup: OpenedBackup, to temp: String) throws -> Int {
        let fd = try DurableFile.createNew(temp)
        close(fd)
        do {
            let destination = try Connection(path: temp, mode: .create)
            try copy(backup, into: destination)
        }
        let pages = try prove(Connection(path: temp, mode: .inspect), equals: backup, what: temp)
        try DurableFile.syncFile(temp)
        return pages
    }

    /// The backup API from the backup file, read through `mmap` (it is immutable), into `destination`.
    private func copy(_ backup: OpenedBackup, into destination: Connection) throws {
        let source = try Connection(path: backup.databasePath, mode: .immutable)
        try source.useMemoryMappedReads()
        try source.backup(into: destination, timeout: busyTimeout)
    }

    private func prove(_ restored: Connection, equals backup: OpenedBackup, what: String) throws -> Int {
        let differences = try restored.comparePages(with: backup.databasePath, timeout: busyTimeout)
        guard differences.identical else {
            throw Failure(.restoreUnproven, "after the restore, \(what) does not hold the backup's pages (\(differences.pages.count) of \(differences.referencePageCount) differ)",
                          hint: "do not start the application; check the database with verify, and restore again with --replace")
        }
        return differences.pageCount
    }
}

/// A SQL string literal.
func sqlLiteral(_ text: String) -> String {
    "'" + text.replacingOccurrences(of: "'", with: "''") + "'"
}
