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

/// A failure's stable machine code (`backup.checksum_mismatch`, `lock.held`): what scripts,
/// monitoring and tests match on, never the prose. Each code belongs to one failure kind, so one
/// exit code. `--json` prints it as `code`, `--quiet` lines end with it in brackets, and
/// docs/errors.md lists every one (a test compares that page with the sources).
///
/// Codes are declared once, as static members in the `FailureCodes.swift` of the module that
/// throws them. A code's text never changes once released.
public struct FailureCode: Hashable, Sendable, CustomStringConvertible {
    /// `area.what_happened`: lower case, one dot, words joined by `_`.
    public let rawValue: String
    /// The failure kind, so the exit code, every failure with this code has.
    public let kind: FailureKind

    public init(_ rawValue: String, _ kind: FailureKind) {
        self.rawValue = rawValue
        self.kind = kind
    }

    public var description: String { rawValue }

    /// Equal codes have equal text: the kind is part of the declaration, not of the identity.
    public static func == (a: FailureCode, b: FailureCode) -> Bool { a.rawValue == b.rawValue }
    public func hash(into hasher: inout Hasher) { hasher.combine(rawValue) }
}

/// An error every deployctl module throws: a stable code (and through it the kind, so the exit
/// code), a message saying what happened and where, and a hint saying what to do next.
public protocol DeployctlError: Error, CustomStringConvertible {
    /// The stable machine code.
    var code: FailureCode { get }
    /// The failure kind, mapped to an exit code by the CLI; the code's kind unless a type says
    /// otherwise.
    var kind: FailureKind { get }
    /// What happened, and where.
    var message: String { get }
    /// What the operator should do next, if anything useful can be said.
    var hint: String? { get }
}

extension DeployctlError {
    public var kind: FailureKind { code.kind }

    public var description: String {
        if let hint { return "\(message)\nTry: \(hint)" }
        return message
    }
}

/// A plain error with a code, message and hint, for failures that need no richer type.
public struct Failure: DeployctlError, Sendable {
    public let code: FailureCode
    public let message: String
    public let hint: String?
    /// The code of the failure this one follows from, when it reports the aftermath of another
    /// (`deploy.undone` after `migration.failed`): `--json` prints it as `cause`.
    public let cause: FailureCode?

    public init(_ code: FailureCode, _ message: String, hint: String? = nil, cause: FailureCode? = nil) {
        self.code = code
        self.message = message
        self.hint = hint
        self.cause = cause
    }
}

/// `1 row`, `2 rows`: a count with its noun in the right number (`plural` when not just `s`).
public func counted(_ count: Int, _ singular: String, _ plural: String? = nil) -> String {
    "\(count) \(count == 1 ? singular : plural ?? singular + "s")"
}
