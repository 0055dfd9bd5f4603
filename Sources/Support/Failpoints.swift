import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Test failpoints, read from `DEPLOYCTL_FAILPOINTS` (`name=action[,name=action]`).
///
/// Actions: `error` throws, `crash` sends SIGKILL to this process, `delay:<ms>` sleeps, `skip`
/// turns a check off (`free-space=skip`: the free-space preflight, so that tests reach the
/// out-of-space handling of the writes themselves). Only
/// active when the variable is set; a value is a plain value passed in, never a global.
public struct Failpoints: Sendable {
    /// What a failpoint does when reached.
    public enum Action: Sendable, Equatable {
        case error
        case crash
        case delay(milliseconds: Int)
        case skip
        /// `clock=shift:<seconds>`: the command's clock runs this far ahead (or behind): a host
        /// whose clock is wrong.
        case shift(seconds: Int)
    }

    private let actions: [String: Action]

    /// No failpoints.
    public static let none = Failpoints(actions: [:])

    init(actions: [String: Action]) { self.actions = actions }

    /// Parses `DEPLOYCTL_FAILPOINTS`.
    /// - Throws: `Failure` `.usage` for an unknown action.
    public init(environment: [String: String]) throws {
        guard let spec = environment["DEPLOYCTL_FAILPOINTS"], !spec.isEmpty else {
            self.actions = [:]
            return
        }
        var actions = [String: Action]()
        for item in spec.split(separator: ",") {
            let parts = item.split(separator: "=", maxSplits: 1).map(String.init)
            guard parts.count == 2 else {
                throw Failure(.usage, "DEPLOYCTL_FAILPOINTS: '\(item)' is not name=action")
            }
            switch parts[1] {
            case "error": actions[parts[0]] = .error
            case "crash": actions[parts[0]] = .crash
            case "skip": actions[parts[0]] = .skip
            case let value where value.hasPrefix("shift:"):
                guard let seconds = Int(value.dropFirst(6)) else {
                    throw Failure(.usage, "DEPLOYCTL_FAILPOINTS: bad shift in '\(item)'")
                }
                actions[parts[0]] = .shift(seconds: seconds)
            case let value where value.hasPrefix("delay:"):
                guard let ms = Int(value.dropFirst(6)), ms >= 0 else {
                    throw Failure(.usage, "DEPLOYCTL_FAILPOINTS: bad delay in '\(item)'")
                }
                actions[parts[0]] = .delay(milliseconds: ms)
            default:
                throw Failure(.usage, "DEPLOYCTL_FAILPOINTS: unknown action '\(parts[1])' (error, crash, delay:<ms>, skip, shift:<seconds>)")
            }
        }
        self.actions = actions
    }

    /// How far the `clock` failpoint shifts the command's clock, in seconds (0 without it).
    public var clockShift: TimeInterval {
        if case .shift(let seconds) = actions["clock"] { return TimeInterval(seconds) }
        return 0
    }

    /// Whether the check `name` is turned off (`name=skip`).
    public func skips(_ name: String) -> Bool { actions[name] == .skip }

    /// Runs the failpoint `name` if it is set.
    /// - Throws: `Failure` `.failed` for `error`.
    public func hit(_ name: String) throws {
        switch actions[name] {
        case nil, .skip, .shift: return
        case .error: throw Failure(.failed, "failpoint '\(name)' triggered an error")
        case .crash: kill(getpid(), SIGKILL)
        case .delay(let ms):
            // The whole delay, even when a signal interrupts the sleep.
            let end = ContinuousClock.now + .milliseconds(ms)
            while ContinuousClock.now < end { usleep(10_000) }
        }
    }
}
