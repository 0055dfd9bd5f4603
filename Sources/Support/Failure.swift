/// What kind of failure an error is; the CLI maps each kind to one exit code (SPEC.md, Exit codes).
public enum FailureKind: String, Sendable, Codable {
    /// The command failed; the live database is as it was before it.
    case failed
    /// The command failed and the live database could not be proven back.
    case unproven
    /// Usage or configuration error, including an invalid instance or backup name.
    case usage
    /// Corrupt or truncated backup, checksum mismatch, not a SQLite database.
    case badData
    /// No such instance, database file or backup.
    case missingInput
    /// The backups folder cannot be created or written.
    case cannotCreate
    /// Disk full, short write, other I/O errors.
    case io
    /// A lock is held by the application or another deployctl.
    case temporary
    /// An object store cannot be reached (refused, unreachable, timed out, 5xx), after retries.
    case unavailable
    /// An object store refused the credentials (unknown key, wrong secret, no permission,
    /// the request's time too far from the store's).
    case permission
}

/// An error every deployctl module throws: a kind (for the exit code), a message saying what
/// happened and where, and a hint saying what to do next.
public protocol DeployctlError: Error, CustomStringConvertible {
    /// The failure kind, mapped to an exit code by the CLI.
    var kind: FailureKind { get }
    /// What happened, and where.
    var message: String { get }
    /// What the operator should do next, if anything useful can be said.
    var hint: String? { get }
}

extension DeployctlError {
    public var description: String {
        if let hint { return "\(message)\nTry: \(hint)" }
        return message
    }
}

/// A plain error with a kind, message and hint, for failures that need no richer type.
public struct Failure: DeployctlError, Sendable {
    public let kind: FailureKind
    public let message: String
    public let hint: String?

    public init(_ kind: FailureKind, _ message: String, hint: String? = nil) {
        self.kind = kind
        self.message = message
        self.hint = hint
    }
}

/// `1 row`, `2 rows`: a count with its noun in the right number (`plural` when not just `s`).
public func counted(_ count: Int, _ singular: String, _ plural: String? = nil) -> String {
    "\(count) \(count == 1 ? singular : plural ?? singular + "s")"
}
