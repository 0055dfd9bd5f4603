import Foundation

/// Permission checks made before a command does any work, so that a folder or file this user
/// may not use is an error naming the path, the user and the missing permission, never an
/// empty listing or a raw SQLite error halfway through.
public enum FileAccess {
    /// What a command needs of a path.
    public struct Need: OptionSet, Sendable {
        public let rawValue: Int32
        public init(rawValue: Int32) { self.rawValue = rawValue }
        /// List a folder, read a file.
        public static let read = Need(rawValue: R_OK)
        /// Create and remove files in a folder, change a file.
        public static let write = Need(rawValue: W_OK)
        /// Reach the entries of a folder (the `x` bit).
        public static let search = Need(rawValue: X_OK)

        /// `read, write and search (rwx)`.
        var words: String {
            let names = [(Need.read, "read", "r"), (.write, "write", "w"), (.search, "search", "x")].filter { contains($0.0) }
            let list = names.map(\.1)
            let joined = list.count > 1 ? list.dropLast().joined(separator: ", ") + " and " + list.last! : list.joined()
            return "\(joined) (\(names.map(\.2).joined()))"
        }
    }

    /// The user this process acts as, for messages: `nobody (uid 65534)`.
    public static var user: String {
        let uid = geteuid()
        guard let entry = getpwuid(uid), let name = entry.pointee.pw_name else { return "uid \(uid)" }
        return "\(String(cString: name)) (uid \(uid))"
    }

    /// Checks that this process may use `path` as `need` says; a missing path passes (whether
    /// it must exist is the caller's check), except when a parent folder cannot be searched.
    /// `kind` is the failure's kind: `.missingInput` for what is read, `.cannotCreate` for
    /// what is written.
    /// - Throws: `Failure` of `kind` naming the path (or the parent folder that blocks it), the
    ///   user, the owner and mode, the missing permission and `purpose`.
    public static func require(_ need: Need, on path: String, what: String, purpose: String, kind: FailureKind) throws {
        if let blocker = unsearchableAncestor(of: path) {
            throw failure(kind, path: blocker, what: "folder \(blocker) (on the way to the \(what) \(path))",
                          missing: .search, purpose: purpose)
        }
        var info = stat()
        guard stat(path, &info) == 0 else { return }
        var missing = Need()
        for permission in [Need.read, .write, .search] where need.contains(permission) {
            if faccessat(AT_FDCWD, path, permission.rawValue, AT_EACCESS) != 0 && errno == EACCES { missing.insert(permission) }
        }
        guard !missing.isEmpty else { return }
        throw failure(kind, path: path, what: "\(what) \(path)", missing: missing, purpose: purpose)
    }

    /// The first folder on the way to `path` that this process cannot search, if any.
    static func unsearchableAncestor(of path: String) -> String? {
        var folder = ""
        for component in path.split(separator: "/").dropLast() {
            folder += "/" + component
            var info = stat()
            guard stat(folder, &info) == 0 else { return nil }
            if faccessat(AT_FDCWD, folder, X_OK, AT_EACCESS) != 0 && errno == EACCES { return folder }
        }
        return nil
    }

    static func failure(_ kind: FailureKind, path: String, what: String, missing: Need, purpose: String) -> Failure {
        var info = stat()
        var owner = ""
        if stat(path, &info) == 0 {
            let name = getpwuid(info.st_uid).flatMap { $0.pointee.pw_name.map { String(cString: $0) } } ?? "uid \(info.st_uid)"
            owner = " (owner \(name), mode \(String(info.st_mode & 0o7777, radix: 8)))"
        }
        return Failure(kind == .cannotCreate ? .accessWriteDenied : .accessReadDenied, "permission denied: user \(user) lacks \(missing.words) permission on the \(what)\(owner), needed to \(purpose); nothing was done",
                       hint: "run the command as the user that owns it, or grant that user access (chown or chmod) to \(path)")
    }
}
