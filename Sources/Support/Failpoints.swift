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
    /// Every failpoint a command reaches. A name not here is refused (64): a misspelt failpoint
    /// would otherwise turn a test of a failure into a test of success.
    public enum Point: String, CaseIterable, Sendable {
        case snapshot, preflight, rehearse, migrate, verify, restart, restore, cutOver = "cut-over"
        case afterSnapshot = "after-snapshot", afterCommit = "after-commit", afterRestore = "after-restore"
        case backupVerify = "backup-verify", restorePreview = "restore-preview"
        case onlineCopy = "online-copy", onlineProven = "online-proven"
        /// In a deploy of several databases: after one database's migration committed, before the next one's.
        case betweenDatabases = "between-databases"
        /// A framework's migrate command has run on the live database, before the proof.
        case migrateCommand = "migrate-command"
        case pushPart = "push-part", beforeRemoteManifest = "before-remote-manifest"
        /// After the operator answered a two-step command's question (prune, remove, accept),
        /// before its work: a test's `delay` here is an operator who takes a while.
        case confirm
        /// Checks `skip` turns off.
        case freeSpace = "free-space", rowDigests = "row-digests", rowRestore = "row-restore", rowRestoreSize = "row-restore-size"
        /// `clock=shift:<seconds>`.
        case clock

        /// Whether this point is a check that `skip` turns off (and nothing else does anything to).
        var isCheck: Bool { [.freeSpace, .rowDigests, .rowRestore, .rowRestoreSize].contains(self) }
    }

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

    private let actions: [Point: Action]

    /// No failpoints.
    public static let none = Failpoints(actions: [:])

    init(actions: [Point: Action]) { self.actions = actions }

    /// Parses `DEPLOYCTL_FAILPOINTS`.
    /// - Throws: `Failure` `.usage` for an unknown action.
    public init(environment: [String: String]) throws {
        guard let spec = environment["DEPLOYCTL_FAILPOINTS"], !spec.isEmpty else {
            self.actions = [:]
            return
        }
        var actions = [Point: Action]()
        for item in spec.split(separator: ",") {
            let parts = item.split(separator: "=", maxSplits: 1).map(String.init)
            guard parts.count == 2 else {
                throw Failure(.failpointInvalid, "DEPLOYCTL_FAILPOINTS: '\(item)' is not name=action")
            }
            guard let point = Point(rawValue: parts[0]) else {
                throw Failure(.failpointInvalid, "DEPLOYCTL_FAILPOINTS: no failpoint is named '\(parts[0])'",
                              hint: "use one of " + Point.allCases.map(\.rawValue).joined(separator: ", "))
            }
            switch parts[1] {
            case "error": actions[point] = .error
            case "crash": actions[point] = .crash
            case "skip": actions[point] = .skip
            case let value where value.hasPrefix("shift:"):
                guard let seconds = Int(value.dropFirst(6)) else {
                    throw Failure(.failpointInvalid, "DEPLOYCTL_FAILPOINTS: bad shift in '\(item)'")
                }
                actions[point] = .shift(seconds: seconds)
            case let value where value.hasPrefix("delay:"):
                guard let ms = Int(value.dropFirst(6)), ms >= 0 else {
                    throw Failure(.failpointInvalid, "DEPLOYCTL_FAILPOINTS: bad delay in '\(item)'")
                }
                actions[point] = .delay(milliseconds: ms)
            default:
                throw Failure(.failpointInvalid, "DEPLOYCTL_FAILPOINTS: unknown action '\(parts[1])' (error, crash, delay:<ms>, skip, shift:<seconds>)")
            }
        }
        for (point, action) in actions {
            // An action a point does not act on would make a test of a failure pass as a test of success.
            let fits: Bool
            switch action {
            case .skip: fits = point.isCheck
            case .shift: fits = point == .clock
            case .error, .crash, .delay: fits = !point.isCheck && point != .clock
            }
            guard fits else {
                throw Failure(.failpointInvalid, "DEPLOYCTL_FAILPOINTS: \(point.rawValue) does nothing with that action",
                              hint: point == .clock ? "clock=shift:<seconds>" : point.isCheck ? "\(point.rawValue)=skip" : "\(point.rawValue)=error, crash or delay:<ms>")
            }
        }
        self.actions = actions
    }

    /// How far the `clock` failpoint shifts the command's clock, in seconds (0 without it).
    public var clockShift: TimeInterval {
        if case .shift(let seconds) = actions[.clock] { return TimeInterval(seconds) }
        return 0
    }

    /// Whether the check `point` is turned off (`name=skip`).
    public func skips(_ point: Point) -> Bool { actions[point] == .skip }

    /// Runs the failpoint `point` if it is set.
    /// - Throws: `Failure` `.failed` for `error`.
    public func hit(_ point: Point) throws {
        switch actions[point] {
        case nil, .skip, .shift: return
        case .error: throw Failure(.failpointTriggered, "failpoint '\(point.rawValue)' triggered an error")
        case .crash: kill(getpid(), SIGKILL)
        case .delay(let ms):
            // The whole delay, even when a signal interrupts the sleep.
            let end = ContinuousClock.now + .milliseconds(ms)
            while ContinuousClock.now < end { usleep(10_000) }
        }
    }
}
