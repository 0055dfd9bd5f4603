import Support

/// The exit codes (SPEC's table): the one map from failure kinds to codes, and the text that
/// `--help`, the man pages (`scripts/manpages` reads it from the root command's help) and
/// docs/exit-codes.md show.
enum ExitStatus {
    /// One exit code: the failure kind it stands for (none for success) and what it means.
    struct Row {
        let code: Int32
        let kind: FailureKind?
        let meaning: String
    }

    static let table: [Row] = [
        Row(code: 0, kind: nil, meaning: "success"),
        Row(code: 1, kind: .failed, meaning: "failed; the live database is as it was before the command"),
        Row(code: 2, kind: .unproven, meaning: "failed and the live database could not be proven back: operator action needed (the message says what)"),
        Row(code: 64, kind: .usage, meaning: "usage or configuration error, including an invalid instance or backup name"),
        Row(code: 65, kind: .badData, meaning: "bad data: corrupt or truncated backup, checksum mismatch, not a SQLite database"),
        Row(code: 66, kind: .missingInput, meaning: "missing input: no such instance, database file or backup"),
        Row(code: 69, kind: .unavailable, meaning: "offsite storage unavailable (connection refused, timeouts after retries)"),
        Row(code: 73, kind: .cannotCreate, meaning: "cannot create output: the backups folder cannot be created or written"),
        Row(code: 74, kind: .io, meaning: "I/O error: disk full, short write"),
        Row(code: 75, kind: .temporary, meaning: "temporary: the write lock held by the application, or the instance lock by another deployctl"),
        Row(code: 77, kind: .permission, meaning: "permission denied by offsite storage (credentials refused)"),
    ]

    /// The exit code of a failure kind.
    static func code(_ kind: FailureKind) -> Int32 {
        table.first { $0.kind == kind }!.code
    }

    /// The table as help text: a heading, then one `  <code>  <meaning>` line per code.
    static var help: String {
        "Exit codes:\n" + table.map { "  " + String($0.code).padding(toLength: 4, withPad: " ", startingAt: 0) + $0.meaning }.joined(separator: "\n")
    }
}
