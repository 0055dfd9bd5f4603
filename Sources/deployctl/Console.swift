import ArgumentParser
import Foundation
import Synchronization
import Orchestrator
import Support

/// Everything the CLI prints: human lines, tables and progress on stdout/stderr, or one JSON
/// document with `--json`; nothing on success with `--quiet`.
struct Console: Sendable {
    let options: GlobalOptions
    let isTerminal: Bool
    let colors: Bool
    /// The progress line, when stderr is a terminal and output is for people.
    let progress: ProgressLine?
    /// stdout and stderr: every byte the CLI prints goes through these (a closed pipe drops
    /// the rest of the output; the command carries on).
    let standardOutput: StandardStream
    let standardError: StandardStream
    /// Inside `eachDatabase` with `--json`: where `json(_:)` keeps the run's document.
    var collected: Collected?

    /// `--database`, for the commands that have it.
    let database: String?

    init(_ options: GlobalOptions, _ selection: DatabaseOption? = nil) {
        self.options = options
        database = selection?.database
        isTerminal = isatty(1) == 1
        colors = isTerminal && ProcessInfo.processInfo.environment["NO_COLOR"] == nil
        standardError = StandardStream(descriptor: 2, name: "stderr")
        standardOutput = StandardStream(descriptor: 1, name: "stdout", complaints: standardError)
        progress = isatty(2) == 1 && !options.json && !options.quiet ? ProgressLine(standardError) : nil
    }

    /// `text` wrapped at word boundaries to the terminal's width, continuation lines indented
    /// under the text, when stdout is a terminal; one line otherwise (and in `--json`, whole).
    func fit(_ text: String) -> String {
        guard isTerminal else { return text }
        var size = winsize()
        let columns = ioctl(1, UInt(TIOCGWINSZ), &size) == 0 && size.ws_col > 40 ? Int(size.ws_col) : 100
        guard text.count > columns else { return text }
        let indent = String(repeating: " ", count: text.prefix { $0 == " " }.count + 4)
        var lines = [String]()
        var current = ""
        for word in text.split(separator: " ", omittingEmptySubsequences: false) {
            let candidate = current.isEmpty ? (lines.isEmpty ? String(text.prefix { $0 == " " }) : indent) + word : current + " " + word
            if candidate.count > columns, !current.trimmingCharacters(in: .whitespaces).isEmpty {
                lines.append(current)
                current = indent + word
            } else {
                current = candidate
            }
        }
        lines.append(current)
        return lines.joined(separator: "\n")
    }

    /// Whether human output is printed at all.
    var human: Bool { !options.json && !options.quiet }

    /// Prints a human line on stdout (not with --json or --quiet).
    func line(_ text: String = "") {
        guard human else { return }
        progress?.clearForOutput()
        standardOutput.write(text + "\n")
    }

    /// A library log line: printed at `--log-level info` (the default) and `debug`; `warning`
    /// and `error` are quieter.
    func info(_ text: String) {
        guard options.logLevel == .info || options.logLevel == .debug else { return }
        line(text)
    }

    /// Detail for `--log-level debug` only, on stderr (SQL run on the live database, hook
    /// commands, timings).
    func debug(_ text: String) {
        guard options.logLevel == .debug, !options.quiet else { return }
        progress?.clearForOutput()
        standardError.write("debug: \(text)\n")
    }

    /// A warning from the library: printed unless `--log-level error` (or `--quiet`).
    func warning(_ text: String) {
        guard options.logLevel != .error else { return }
        line(text)
    }

    /// Prints a line on stderr unless --quiet.
    func note(_ text: String) {
        guard !options.quiet, options.logLevel != .error else { return }
        progress?.clearForOutput()
        standardError.write(text + "\n")
    }

    /// Asks `question` with `[y/N]` on the terminal, unless `yes`. Without a terminal on stdin
    /// it throws `notTerminal` (the command needs `--yes`); any answer but yes throws `declined`.
    func confirm(_ question: String, yes: Bool, notTerminal: @autoclosure () -> Failure, declined: @autoclosure () -> Failure) throws {
        if yes { return }
        guard isatty(0) == 1 else { throw notTerminal() }
        standardError.write(question + " [y/N] ")
        guard readLine()?.lowercased().hasPrefix("y") == true else { throw declined() }
    }

    /// Prints `value` as the one JSON document of the command (kept for the set's document
    /// inside `eachDatabase`).
    func json<T: Encodable>(_ value: T) throws {
        let data = try JSON.encoder().encode(value)
        if let collected { return collected.value.withLock { $0 = data } }
        standardOutput.write(String(decoding: data, as: UTF8.self) + "\n")
    }

    /// Runs `body` for each database of an instance of several (no `--database`), with a
    /// `Database NAME:` line before each; with `--json`, one document
    /// `{"databases": [{"database": NAME, "result": …}]}` holding each run's document. A
    /// database that fails does not stop the others; the first failure is thrown at the end.
    /// One database: `body` once, as it is.
    /// With `backup`, only the database holding a backup of that name.
    func eachDatabase(_ instance: String, _ runtime: Runtime, naming backup: String? = nil, _ body: (Console, Runtime) throws -> Void) throws {
        let runtimes = try runtime.eachDatabase(of: instance, naming: backup)
        guard runtimes.count > 1 else { return try body(self, runtimes[0]) }
        var documents = [[String: Any]]()
        var failure: Error?
        for each in runtimes {
            let name = each.database ?? ""
            if human { line("Database \(name):") }
            var console = self
            console.collected = Collected()
            do {
                try body(console, each)
            } catch {
                // The first is thrown at the end; the others are said now.
                if failure == nil { failure = error } else if !options.json { try? guarded { throw error } }
            }
            if options.json, let data = console.collected?.value.withLock({ $0 }), let document = try? JSONSerialization.jsonObject(with: data) {
                documents.append(["database": name, "result": document])
            }
        }
        if options.json {
            let data = try JSONSerialization.data(withJSONObject: ["databases": documents], options: [.sortedKeys])
            standardOutput.write(String(decoding: data, as: UTF8.self) + "\n")
        }
        if let failure { throw failure }
    }

    /// The JSON document of one database's run, inside `eachDatabase`.
    final class Collected: Sendable {
        let value = Mutex<Data?>(nil)
    }

    func green(_ s: String) -> String { colors ? "\u{1b}[32m\(s)\u{1b}[0m" : s }
    func red(_ s: String) -> String { colors ? "\u{1b}[31m\(s)\u{1b}[0m" : s }

    /// Builds the runtime for a command.
    func runtime() throws -> Runtime {
        let environment = ProcessInfo.processInfo.environment
        let workspace = try Workspace(root: options.root, environment: environment)
        let printer = self
        let signals = SignalWatcher(acknowledge: isatty(2) == 1 && !options.quiet && !options.json)
        let failpoints = try Failpoints(environment: environment)
        let shift = failpoints.clockShift
        var runtime = Runtime(workspace: workspace, failpoints: failpoints,
                              commandLine: CommandLine.arguments.joined(separator: " "), clock: { Date().addingTimeInterval(shift) },
                              events: { printer.render($0) },
                              interruption: { signals.received }, environment: environment)
        runtime.database = database
        return runtime
    }

    /// Runs a command body, turning every error into its message and exit code (SPEC.md):
    /// the one place where failure kinds become exit codes.
    func run(_ body: (Runtime) throws -> Void) throws {
        try guarded { try body(try runtime()) }
    }

    /// Runs a command body that needs no deployment root (keygen), with the same error handling.
    func guarded(_ body: () throws -> Void) throws {
        defer { progress?.finish() }
        do {
            try body()
        } catch let error as DeployctlError {
            report(error.code, error.kind, error.message, error.hint, cause: (error as? Failure)?.cause ?? (error as? DeployFailure)?.cause)
            throw ExitCode(Self.exitCode(error.kind))
        } catch let error as ExitCode {
            throw error
        } catch {
            report(.internalError, .failed, "\(error)", nil)
            throw ExitCode(1)
        }
    }

    static func exitCode(_ kind: FailureKind) -> Int32 { ExitStatus.code(kind) }

    private func report(_ code: FailureCode, _ kind: FailureKind, _ message: String, _ hint: String?, cause: FailureCode? = nil) {
        progress?.abandon()
        if let hint { Self.logHint(hint) }
        if options.quiet {
            // One line with all of it: what, where, and what to do next.
            var whole = ""
            for line in message.split(separator: "\n").map({ $0.trimmingCharacters(in: .whitespaces) }) where !line.isEmpty {
                // Joined with "; ", each later line starting in lower case.
                let next = whole.isEmpty ? line : line.prefix(1).lowercased() + line.dropFirst()
                if whole.hasSuffix(".") { whole.removeLast() }  // "kept.; the" reads as "kept; the"
                whole += whole.isEmpty ? next : (whole.hasSuffix(":") ? " " : "; ") + next
            }
            standardError.write("deployctl: \(whole)\(hint.map { " (try: \($0))" } ?? "") [\(code)]\n")
            return
        }
        var text = red("error[\(code)]:") + " " + message + "\n"
        if let hint { text += "Try: \(hint)\n" }
        standardError.write(text)
        // A command that printed its result document (verify, backups verify) has said what
        // failed in it: a second document would make stdout no longer one JSON value.
        if options.json && !standardOutput.hasWritten {
            struct ErrorDocument: Encodable { let error: String; let code: String; let cause: String?; let kind: String; let hint: String?; let exit_code: Int32 }
            try? json(ErrorDocument(error: message, code: code.rawValue, cause: cause?.rawValue, kind: kind.rawValue, hint: hint,
                                    exit_code: Self.exitCode(kind)))
        }
    }

    /// Appends `hint` as one line to the file `$DEPLOYCTL_HINT_LOG` names, when set: the tests
    /// collect every hint they trigger and check that each command in it parses.
    static func logHint(_ hint: String) {
        guard let path = ProcessInfo.processInfo.environment["DEPLOYCTL_HINT_LOG"], !path.isEmpty else { return }
        let fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o600)
        guard fd >= 0 else { return }
        defer { close(fd) }
        let line = Array((hint.replacingOccurrences(of: "\n", with: " ") + "\n").utf8)
        _ = line.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
    }

    /// Formats rows as an aligned table with a header.
    static func table(_ header: [String], _ rows: [[String]]) -> String {
        var widths = header.map(\.count)
        for row in rows { for (i, cell) in row.enumerated() { widths[i] = max(widths[i], cell.count) } }
        func format(_ row: [String]) -> String {
            row.enumerated().map { i, cell in i == row.count - 1 ? cell : cell.padding(toLength: widths[i], withPad: " ", startingAt: 0) }
                .joined(separator: "  ")
        }
        return ([format(header)] + rows.map(format)).joined(separator: "\n")
    }

    /// Bytes in a human unit.
    static func size(_ bytes: Int64) -> String { SpaceNeeds.format(bytes) }

    /// A UTC timestamp as `2026-11-24 17:30:00`.
    static func time(_ date: Date) -> String {
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = TimeZone(identifier: "UTC")
        formatter.dateFormat = "yyyy-MM-dd HH:mm:ss"
        return formatter.string(from: date)
    }
}
