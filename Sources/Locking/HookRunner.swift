import Foundation
import Support
#if canImport(Glibc)
import Glibc
#endif

/// The result of running one app hook.
public struct HookResult: Codable, Sendable {
    public let name: String
    public let command: String
    /// The exit status, nil when the hook was killed for its timeout or by a signal.
    public let exitCode: Int32?
    public let timedOut: Bool
    public let seconds: Double
    /// The file holding the hook's stdout and stderr.
    public let outputPath: String

    public var succeeded: Bool { exitCode == 0 && !timedOut }

    enum CodingKeys: String, CodingKey {
        case name, command, seconds
        case exitCode = "exit_code"
        case timedOut = "timed_out"
        case outputPath = "output_path"
    }
}

/// Runs app hooks (`stop`, `start`, `health`): `/bin/sh -c COMMAND` in its own process group,
/// stdin from /dev/null, stdout and stderr to a file, killed as a group on timeout.
///
/// Output goes to a file, not a pipe, so a hook that starts the app in the background returns
/// as soon as the shell exits: the app keeps the file open, not our pipe.
public struct HookRunner: Sendable {
    /// The folder for output files.
    public let outputFolder: String
    /// The working directory of hooks (the instance folder).
    public let workingDirectory: String
    /// Extra environment for hooks.
    public let environment: [String: String]
    /// Receives each hook's command line and how it ended (`--log-level debug`).
    public let trace: @Sendable (String) -> Void

    public init(outputFolder: String, workingDirectory: String, environment: [String: String] = [:],
                trace: @escaping @Sendable (String) -> Void = { _ in }) {
        self.outputFolder = outputFolder
        self.workingDirectory = workingDirectory
        self.environment = environment
        self.trace = trace
    }

    /// Runs `command` as hook `name` with `timeout`.
    /// - Throws: `Failure` `.failed` only when the hook cannot be started; a failing hook is a
    ///   result, not an error.
    public func run(name: String, command: String, timeout: Duration, tag: String) throws -> HookResult {
        try DurableFile.createFolder(outputFolder)
        let outputPath = outputFolder + "/\(tag)-\(name).log"
        trace("hook \(name): /bin/sh -c \(command)  (in \(workingDirectory), output to \(outputPath))")
        var env = ProcessInfo.processInfo.environment
        for (key, value) in environment { env[key] = value }
        env["DEPLOYCTL_HOOK"] = name
        // The shell changes to the instance folder itself: posix_spawn's chdir action is a GNU
        // extension that Swift's Glibc module does not expose.
        let argv = ["/bin/sh", "-c", "cd -- \"$1\" || exit 126; eval \"$2\"", "deployctl-hook", workingDirectory, command]
        let start = ContinuousClock.now
        let (pid, rc) = ShellCommand.spawnShell(argv, environment: env, stdoutPath: outputPath, stderrPath: nil)
        guard rc == 0 else {
            throw Failure(.hookCannotStart, "cannot start the \(name) hook '\(command)': \(String(cString: strerror(rc)))")
        }
        let (status, timedOut) = Self.wait(for: pid, until: start + timeout)
        let elapsed = ContinuousClock.now - start
        let exited = (status & 0x7f) == 0
        let code: Int32? = (!timedOut && exited) ? (status >> 8) & 0xff : nil
        trace("hook \(name) \(timedOut ? "timed out" : code.map { "exited \($0)" } ?? "was killed by a signal") after \(String(format: "%.2f", elapsed.seconds)) s")
        return HookResult(name: name, command: command, exitCode: code, timedOut: timedOut,
                          seconds: elapsed.seconds,
                          outputPath: outputPath)
    }

    /// Waits for the hook's shell to end; past `deadline` its process group gets SIGTERM, then
    /// SIGKILL 0.2 s later. Returns its wait status and whether it timed out.
    private static func wait(for pid: pid_t, until deadline: ContinuousClock.Instant) -> (status: Int32, timedOut: Bool) {
        var status: Int32 = 0
        while true {
            let done = waitpid(pid, &status, WNOHANG)
            if done == pid || (done < 0 && errno != EINTR) { return (status, false) }
            if ContinuousClock.now >= deadline {
                kill(-pid, SIGTERM)
                usleep(200_000)
                kill(-pid, SIGKILL)
                while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
                return (status, true)
            }
            usleep(10_000)
        }
    }

    /// Runs the health check up to `attempts` times, a second apart, until it succeeds.
    /// Returns the last result.
    /// - Throws: as `run`.
    public func runHealthCheck(command: String, attempts: Int, timeout: Duration) throws -> HookResult {
        var last: HookResult
        var attempt = 1
        while true {
            last = try run(name: "health", command: command, timeout: timeout, tag: "health-\(attempt)")
            if last.succeeded || attempt >= attempts { return last }
            attempt += 1
            usleep(1_000_000)
        }
    }
}

func withCStrings<R>(_ strings: [String], _ body: ([UnsafeMutablePointer<CChar>?]) -> R) -> R {
    var pointers: [UnsafeMutablePointer<CChar>?] = strings.map { strdup($0) }
    pointers.append(nil)
    defer { for p in pointers { free(p) } }
    return body(pointers)
}
