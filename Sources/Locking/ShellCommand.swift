import Foundation
import Support
#if canImport(Glibc)
import Glibc
#endif

/// How one run of a framework's command (`migrate_command`, `pending_command`) ended.
public struct ShellCommandResult: Codable, Sendable {
    public let command: String
    /// The exit status; nil when it was killed (its timeout, an interrupt, a signal).
    public let exitCode: Int32?
    public let timedOut: Bool
    /// Stopped because deployctl was interrupted (SIGINT, SIGTERM, SIGHUP).
    public let interrupted: Bool
    public let seconds: Double
    public let stdoutPath: String
    public let stderrPath: String

    public var succeeded: Bool { exitCode == 0 && !timedOut && !interrupted }

    enum CodingKeys: String, CodingKey {
        case command, seconds, interrupted
        case exitCode = "exit_code"
        case timedOut = "timed_out"
        case stdoutPath = "stdout_path"
        case stderrPath = "stderr_path"
    }

    /// The last `count` non-empty lines of its stderr (stdout when stderr is empty), for a
    /// failure message.
    public func tail(_ count: Int = 8) -> [String] {
        for path in [stderrPath, stdoutPath] {
            let text = (try? String(contentsOfFile: path, encoding: .utf8)) ?? ""
            let lines = text.split(separator: "\n").map { String($0.prefix(300)) }.filter { !$0.trimmingCharacters(in: .whitespaces).isEmpty }
            if !lines.isEmpty { return Array(lines.suffix(count)) }
        }
        return []
    }

    /// How it ended, in words: "exited 3", "timed out after 600 s", "was interrupted".
    public var ending: String {
        if interrupted { return "was stopped by an interrupt" }
        if timedOut { return "timed out after \(Int(seconds.rounded())) s" }
        return exitCode.map { "exited \($0)" } ?? "was killed by a signal"
    }
}

/// Runs a framework's command as `/bin/sh -c COMMAND` in a folder, in its own process group,
/// stdin from /dev/null, stdout and stderr to files of their own; killed as a group on its
/// timeout or when `stop` says so (checked every 10 ms).
public struct ShellCommand: Sendable {
    public let command: String
    public let workingDirectory: String
    public let environment: [String: String]

    public init(command: String, workingDirectory: String, environment: [String: String]) {
        self.command = command
        self.workingDirectory = workingDirectory
        self.environment = environment
    }

    /// The program the command starts (its first word), when it can be named without running
    /// a shell: nil for a command starting with a variable assignment, a quote or shell syntax.
    public var program: String? {
        guard let first = command.split(whereSeparator: { $0 == " " || $0 == "\t" || $0 == "\n" }).first.map(String.init),
              !first.contains("="), first.allSatisfy({ !"'\"$`;&|<>(){}*?".contains($0) }) else { return nil }
        return first
    }

    /// Whether the command's program exists and may be executed: a path (relative to the
    /// working directory) or a name found in `PATH`; true for commands whose program cannot be
    /// named (`program` nil) and shell builtins.
    public func programFound() -> Bool {
        guard let program else { return true }
        if ["cd", "exec", "env", "true", "false", ".", "test", "[", "echo", "printf", "set", "export", "eval"].contains(program) { return true }
        if program.contains("/") {
            let path = program.hasPrefix("/") ? program : workingDirectory + "/" + program
            return access(path, X_OK) == 0
        }
        let searchPath = environment["PATH"] ?? ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin"
        return searchPath.split(separator: ":").contains { access("\($0)/\(program)", X_OK) == 0 }
    }

    /// Runs it; output to `stdoutPath` and `stderrPath` (created 0600, appended).
    /// - Throws: `Failure` `hook.cannot_start` only when the shell cannot be started.
    public func run(stdoutPath: String, stderrPath: String, timeout: Duration, stop: @Sendable () -> Bool = { false },
                    started: (pid_t) -> Void = { _ in }) throws -> ShellCommandResult {
        var env = ProcessInfo.processInfo.environment
        for (key, value) in environment { env[key] = value }
        let argv = ["/bin/sh", "-c", "cd -- \"$1\" || exit 126; eval \"$2\"", "deployctl-command", workingDirectory, command]
        let start = ContinuousClock.now
        let (pid, rc) = Self.spawnShell(argv, environment: env, stdoutPath: stdoutPath, stderrPath: stderrPath)
        guard rc == 0 else {
            throw Failure(.hookCannotStart, "cannot start '\(command)': \(String(cString: strerror(rc)))")
        }
        started(pid)
        let deadline = start + timeout
        var status: Int32 = 0
        var timedOut = false, interrupted = false
        while true {
            let done = waitpid(pid, &status, WNOHANG)
            if done == pid || (done < 0 && errno != EINTR) { break }
            let late = ContinuousClock.now >= deadline
            if late || stop() {
                timedOut = late
                interrupted = !late
                Self.killGroup(pid)
                while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
                break
            }
            usleep(10_000)
        }
        // The group may have children left (a server the command started): they go too.
        Self.killGroup(pid)
        let exited = (status & 0x7f) == 0
        return ShellCommandResult(command: command, exitCode: (!timedOut && !interrupted && exited) ? (status >> 8) & 0xff : nil,
                                  timedOut: timedOut, interrupted: interrupted, seconds: (ContinuousClock.now - start).seconds,
                                  stdoutPath: stdoutPath, stderrPath: stderrPath)
    }

    /// Starts `/bin/sh` with `argv` in a process group of its own, stdin from /dev/null, stdout
    /// to `stdoutPath` and stderr to `stderrPath` (nil: to stdout's file), created 0600 and
    /// appended; the signals deployctl handles back to their defaults. Returns the pid and
    /// posix_spawn's result (0 when started).
    static func spawnShell(_ argv: [String], environment: [String: String], stdoutPath: String, stderrPath: String?) -> (pid: pid_t, rc: Int32) {
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, stdoutPath, O_WRONLY | O_CREAT | O_APPEND, 0o600)
        if let stderrPath {
            posix_spawn_file_actions_addopen(&actions, 2, stderrPath, O_WRONLY | O_CREAT | O_APPEND, 0o600)
        } else {
            posix_spawn_file_actions_adddup2(&actions, 1, 2)
        }
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))
        posix_spawnattr_setpgroup(&attributes, 0)
        var noSignals = sigset_t()
        sigemptyset(&noSignals)
        posix_spawnattr_setsigmask(&attributes, &noSignals)
        var defaults = sigset_t()
        sigemptyset(&defaults)
        for signal in [SIGINT, SIGTERM, SIGPIPE, SIGHUP] { sigaddset(&defaults, signal) }
        posix_spawnattr_setsigdefault(&attributes, &defaults)
        let envp = environment.map { "\($0.key)=\($0.value)" }
        var pid: pid_t = 0
        let rc = withCStrings(argv) { cArgv in
            withCStrings(envp) { cEnv in posix_spawn(&pid, "/bin/sh", &actions, &attributes, cArgv, cEnv) }
        }
        return (pid, rc)
    }

    /// SIGTERM to a process group, then SIGKILL 0.2 s later when any of it is left.
    public static func killGroup(_ group: pid_t) {
        guard group > 1, kill(-group, 0) == 0 else { return }
        kill(-group, SIGTERM)
        for _ in 0..<20 where kill(-group, 0) == 0 { usleep(10_000) }
        kill(-group, SIGKILL)
    }
}
