import Foundation
import SQLite
import Support

/// What every library entry point needs from the outside world, passed in (no globals): the
/// deployment root, the clock, failpoints, the command line for lock records, and the sink for
/// events (progress, stages, findings) that the CLI renders.
public struct Runtime: Sendable {
    public let workspace: Workspace
    public let failpoints: Failpoints
    /// The command line recorded in the instance lock.
    public let commandLine: String
    /// Returns the current time.
    public let clock: @Sendable () -> Date
    /// Receives what the library reports as it works (see `Event`).
    public let events: @Sendable (Event) -> Void
    /// Returns the signal (SIGINT, SIGTERM) received since the command started, if any; a
    /// deploy treats it as an error at the current stage.
    public internal(set) var interruption: @Sendable () -> Int32?
    /// The process environment (object store credentials are read from it, nothing else).
    public let environment: [String: String]
    /// `--database NAME`: with an instance of several `[[database]]` tables, only that database.
    public var database: String?

    public init(workspace: Workspace, failpoints: Failpoints, commandLine: String,
                clock: @escaping @Sendable () -> Date = { Date() },
                events: @escaping @Sendable (Event) -> Void = { _ in },
                interruption: @escaping @Sendable () -> Int32? = { nil },
                environment: [String: String] = [:]) {
        self.environment = environment
        self.workspace = workspace
        self.failpoints = failpoints
        self.commandLine = commandLine
        self.clock = clock
        self.events = events
        self.interruption = interruption
    }

    /// The same environment with signals ignored: for work that must finish once begun (putting
    /// back what a set restore had already restored, when a signal stopped it).
    var uninterruptible: Runtime {
        var runtime = self
        runtime.interruption = { nil }
        return runtime
    }

    /// The events sink as a `ProgressHandler`, for the modules below.
    var progress: ProgressHandler {
        let events = events
        return { events(.progress($0)) }
    }

    /// The events sink for `--log-level debug` detail, for the modules below.
    var trace: @Sendable (String) -> Void {
        let events = events
        return { events(.debug($0)) }
    }

    /// Throws `.failed` when SIGINT, SIGTERM or SIGHUP arrived, saying what state things are in.
    public func checkInterruption(_ state: String?) throws {
        if let signal = interruption() {
            throw Failure(.interrupted, "interrupted by signal \(Self.signalName(signal))" + (state.map { "; \($0)" } ?? ""))
        }
    }

    /// SIGINT, SIGTERM, SIGHUP by name, others by number.
    static func signalName(_ signal: Int32) -> String {
        signal == SIGINT ? "SIGINT" : signal == SIGTERM ? "SIGTERM" : signal == SIGHUP ? "SIGHUP" : String(signal)
    }

    /// A time as `2026-11-24 17:30 UTC`, for messages.
    static func day(_ date: Date) -> String {
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = TimeZone(identifier: "UTC")
        formatter.dateFormat = "yyyy-MM-dd HH:mm"
        return formatter.string(from: date) + " UTC"
    }

    /// A deploy's id (also the folder of a restore's hook output): the UTC time to the
    /// millisecond and four random hex digits, so that ids sort by time and never collide.
    static func deployId(_ date: Date) -> String {
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = TimeZone(identifier: "UTC")
        formatter.dateFormat = "yyyyMMdd'T'HHmmss.SSS'Z'"
        return formatter.string(from: date) + "-" + String(UInt32.random(in: 0...0xffff), radix: 16)
    }

    /// The version of the libsqlite3 this process uses.
    public static var sqliteVersion: String { Connection.libraryVersion }
}
