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
            case let value where value.hasPrefix("delay:"):
                guard let ms = Int(value.dropFirst(6)), ms >= 0 else {
                    throw Failure(.usage, "DEPLOYCTL_FAILPOINTS: bad delay in '\(item)'")
                }
                actions[parts[0]] = .delay(milliseconds: ms)
            default:
                throw Failure(.usage, "DEPLOYCTL_FAILPOINTS: unknown action '\(parts[1])' (error, crash, delay:<ms>, skip)")
            }
        }
        self.actions = actions
    }

    /// Whether the check `name` is turned off (`name=skip`).
    public func skips(_ name: String) -> Bool { actions[name] == .skip }

    /// Runs the failpoint `name` if it is set.
    /// - Throws: `Failure` `.failed` for `error`.
    public func hit(_ name: String) throws {
        switch actions[name] {
        case nil, .skip: return
        case .error: throw Failure(.failed, "failpoint '\(name)' triggered an error")
        case .crash: kill(getpid(), SIGKILL)
        case .delay(let ms):
            // The whole delay, even when a signal interrupts the sleep.
            let end = ContinuousClock.now + .milliseconds(ms)
            while ContinuousClock.now < end { usleep(10_000) }
        }
    }
}
