import Foundation
import Locking
import Support

/// The application's hooks around a change to its live database — the one lifecycle deploy,
/// restore and recovery share: stop before the change, start and health check after it, stop
/// again before the change is undone or put back, and start again after a failure that left the
/// application stopped. Each hook that ran is in `results`, in order (deploy reports keep them).
///
/// Hooks run as `/bin/sh -c` with `DEPLOYCTL_INSTANCE` and `DEPLOYCTL_DATABASE` set, their
/// output in `<outputFolder>/<tag>-<hook>.log` (`HookRunner`).
final class AppHooks {
    /// The hooks a config can name; the raw value is the name reports and logs use.
    enum Name: String { case stop, start, health }

    let config: InstanceConfig
    let runtime: Runtime
    /// False for `--no-hooks`: nothing runs.
    let enabled: Bool
    let runner: HookRunner
    private(set) var results: [HookResult]
    /// How failure messages name the change (` after the restore`), and what a failed stop hook
    /// left undone (`nothing was restored; `).
    let after: String
    let notDone: String

    init(_ instance: InstanceContext, outputFolder: String, enabled: Bool = true, after: String = "", notDone: String = "",
         results: [HookResult] = []) {
        config = instance.config
        runtime = instance.runtime
        self.enabled = enabled
        self.after = after
        self.notDone = notDone
        self.results = results
        runner = HookRunner(outputFolder: outputFolder, workingDirectory: config.folder,
                            environment: ["DEPLOYCTL_INSTANCE": config.name, "DEPLOYCTL_DATABASE": config.databasePath,
                                          // With several databases: every path, ':' between them (the first is DEPLOYCTL_DATABASE).
                                          "DEPLOYCTL_DATABASES": (config.databases.isEmpty ? [config.databasePath] : config.databases.map(\.databasePath)).joined(separator: ":")],
                            trace: runtime.trace)
    }

    /// Whether the last hook that stops or starts the application stopped it.
    var leftStopped: Bool { results.last { $0.name == Name.stop.rawValue || $0.name == Name.start.rawValue }?.name == Name.stop.rawValue }

    /// What to tell the operator when the application is left down: the last hook that stops or
    /// starts it stopped it, or was a start that failed; nil when it runs (or no hook ran).
    var applicationDown: String? {
        guard let last = results.last(where: { $0.name == Name.stop.rawValue || $0.name == Name.start.rawValue }) else { return nil }
        if last.name == Name.start.rawValue {
            return last.succeeded ? nil : "The application is not running: its start hook failed (output in \(last.outputPath)); start it by hand."
        }
        return "The application is not running: it was stopped and not started again\(config.hooks.start == nil ? " (no start hook is set)" : ""); start it by hand."
    }

    /// `error` with a last line saying the application is left down, when it is: the operator
    /// must hear it from the error, not only from the report's hook list.
    func sayingIfDown(_ error: DeployctlError) -> DeployctlError {
        guard let down = applicationDown else { return error }
        return Failure(error.code, error.message + "\n" + down, hint: error.hint, cause: (error as? Failure)?.cause)
    }

    /// Whether a stop hook ran.
    var stoppedOnce: Bool { results.contains { $0.name == Name.stop.rawValue } }

    private func run(_ name: Name, _ command: String, tag: String) throws -> HookResult {
        let result = try runner.run(name: name.rawValue, command: command, timeout: config.hooks.timeout, tag: tag)
        results.append(result)
        return result
    }

    /// Runs the stop hook, if any, before the change.
    /// - Throws: `Failure` `hook.stop_failed` when it fails or times out.
    func stop(tag: String, hint: String? = nil) throws {
        guard enabled, let command = config.hooks.stop else { return }
        runtime.events(.stepStarted("stopping the application (stop hook)"))
        let result = try run(.stop, command, tag: tag)
        guard result.succeeded else {
            throw Failure(.hookStopFailed, "the stop hook failed (\(result.timedOut ? "timed out" : "exit \(result.exitCode.map(String.init) ?? "signal")")); \(notDone)output in \(result.outputPath)",
                          hint: hint ?? "check the hook's command in \(config.file)")
        }
    }

    /// Runs the start hook, then (after `between`, a failpoint) the health check, if configured.
    /// - Throws: `Failure` `hook.start_failed` or `hook.health_failed`.
    func start(tag: String, between: () throws -> Void = {}) throws {
        guard enabled else { return }
        if let command = config.hooks.start {
            runtime.events(.stepStarted("starting the application (start hook)"))
            let result = try run(.start, command, tag: tag)
            guard result.succeeded else { throw Failure(.hookStartFailed, "the start hook failed\(after); output in \(result.outputPath)") }
        }
        try between()
        if let command = config.hooks.health {
            let result = try runner.runHealthCheck(command: command, attempts: config.hooks.healthAttempts, timeout: config.hooks.timeout)
            results.append(result)
            guard result.succeeded else {
                throw Failure(.hookHealthFailed, "the health check failed \(counted(config.hooks.healthAttempts, "time"))\(after); output in \(result.outputPath)")
            }
        }
    }

    /// Stops the application again before the change is undone or put back, when a start hook
    /// ran (even one that failed may have left processes up); a failure here is recorded, never
    /// thrown (the undo matters more).
    func stopBeforeUndo(tag: String) {
        guard enabled, !leftStopped, results.contains(where: { $0.name == Name.start.rawValue }),
              let command = config.hooks.stop else { return }
        _ = try? run(.stop, command, tag: tag)
    }

    /// Starts the application again when the last thing done to it was a stop; recorded, never thrown.
    func startIfStopped(tag: String) {
        guard enabled, leftStopped, let command = config.hooks.start else { return }
        _ = try? run(.start, command, tag: tag)
    }

    /// Starts an application a killed deploy left stopped (recovery); the result says whether it came up.
    func startAfterRecovery() throws -> HookResult? {
        guard let command = config.hooks.start else { return nil }
        return try run(.start, command, tag: "recovery")
    }
}
