import Foundation
#if canImport(Glibc)
import Glibc
#endif

extension DurableFile {
    /// Creates `folder` and any missing parents, each new folder taking the owner, group and
    /// permission bits of the folder it is made in, and fsyncs that parent so the new entry is
    /// durable. An existing folder is left exactly as it is.
    ///
    /// Why: deployctl runs as root (a timer, `sudo`) and as the application's user on the same
    /// tree. A root run that made `backups/` root-owned 0700 under the application user's
    /// instance folder locked that user out of every later snapshot (exit 73). Inheriting the
    /// parent's owner and mode keeps whoever owns the tree in charge of it. Taking another
    /// user's ownership needs root; without it the new folder stays the caller's (the kernel
    /// refuses, and nothing is wrong with that), still with the parent's mode. Under a
    /// world-writable parent (`/tmp`) the folder is the caller's, 0700: never world-writable.
    /// Files in these folders keep their own modes (backups 0600).
    /// `what` names the folder in messages ("backups folder").
    /// - Throws: `Failure` `.cannotCreate` naming the folder when it cannot be made (permissions,
    ///   read-only file system, a file in the way), `.io` for other errors.
    public static func createFolder(_ folder: String, called what: String = "folder") throws {
        let path = folder.count > 1 && folder.hasSuffix("/") ? String(folder.dropLast()) : folder
        var info = stat()
        if stat(path, &info) == 0 {
            guard (info.st_mode & S_IFMT) == S_IFDIR else {
                throw Failure(.fileCannotCreate, "cannot create \(what) \(path): a file of that name is in the way",
                              hint: "move the file away, or choose another folder")
            }
            return
        }
        let parent = (path as NSString).deletingLastPathComponent
        if !parent.isEmpty, parent != path { try createFolder(parent, called: what) }
        var parentInfo = stat()
        guard stat(parent.isEmpty ? "." : parent, &parentInfo) == 0 else {
            throw posixFailure("cannot create \(what) \(path): its parent \(parent) cannot be read", errno, creating: true)
        }
        // Under a world-writable parent (/tmp, 1777) the parent's owner and mode mean nothing
        // about who should own deployctl's files: the folder stays its creator's, 0700.
        let shared = parentInfo.st_mode & S_IWOTH != 0
        let mode = shared ? 0o700 : parentInfo.st_mode & 0o7777
        guard mkdir(path, 0o700) == 0 else {
            let code = errno
            // Made by another process in the meantime: theirs stands.
            if code == EEXIST, stat(path, &info) == 0, (info.st_mode & S_IFMT) == S_IFDIR { return }
            throw posixFailure("cannot create \(what) \(path)", code, creating: true)
        }
        // Owner first: chown clears set-id bits, chmod then sets the parent's exact bits.
        if !shared, parentInfo.st_uid != geteuid() || parentInfo.st_gid != getegid() {
            if chown(path, parentInfo.st_uid, parentInfo.st_gid) != 0 { _ = chown(path, uid_t.max, parentInfo.st_gid) }
        }
        guard chmod(path, mode) == 0 else { throw posixFailure("cannot set the mode of \(what) \(path)", errno, creating: true) }
        try syncDirectory(parent.isEmpty ? "." : parent)
    }
}

extension DurableFile {
    /// Gives the file open as `fd` at `path` the owner and group of its folder, when deployctl
    /// runs as root and the folder belongs to someone else (and is not world-writable, as
    /// `/tmp` is); otherwise does nothing.
    ///
    /// Why: a root run (`sudo`, a unit without `User=`) would otherwise leave root-owned 0600
    /// backups, manifests and lock files in the application user's tree, which that user's own
    /// next run could not open (a lock file is never deleted). Best effort: a refused `fchown`
    /// leaves the file as it was.
    public static func adoptFolderOwner(_ fd: Int32, path: String) {
        guard geteuid() == 0 else { return }
        let folder = (path as NSString).deletingLastPathComponent
        var info = stat()
        guard stat(folder.isEmpty ? "." : folder, &info) == 0, info.st_uid != 0 || info.st_gid != 0, info.st_mode & S_IWOTH == 0 else { return }
        _ = fchown(fd, info.st_uid, info.st_gid)
    }
}
