import Foundation
import Support

/// How long `--keep-within` keeps backups: a sum of `<n>y`, `<n>m` (months), `<n>w`, `<n>d`,
/// `<n>h`, as restic and borg write it (`30d`, `1y6m`, `36h`). Calendar arithmetic in UTC.
public struct RetentionDuration: Sendable, Equatable, CustomStringConvertible {
    public let description: String
    let years: Int, months: Int, days: Int, hours: Int

    /// - Throws: `Failure` `.usage` saying what a duration looks like.
    public init(parsing text: String) throws {
        var (years, months, days, hours) = (0, 0, 0, 0)
        var number = ""
        var sawUnit = false
        let bad = Failure(.retentionInvalidDuration, "invalid duration '\(text)': write a number and a unit, e.g. 36h, 14d, 8w, 6m (months), 1y, or a sum such as 1y6m")
        for character in text {
            if character.isASCII && character.isNumber {
                number.append(character)
                continue
            }
            guard let n = Int(number), n <= 100_000 else { throw bad }
            switch character {
            case "y": years += n
            case "m": months += n
            case "w": days += 7 * n
            case "d": days += n
            case "h": hours += n
            default: throw bad
            }
            number = ""
            sawUnit = true
        }
        guard sawUnit, number.isEmpty, years + months + days + hours > 0 else { throw bad }
        self.description = text
        (self.years, self.months, self.days, self.hours) = (years, months, days, hours)
    }

    /// The oldest moment this duration keeps, counted back from `now`.
    public func cutoff(before now: Date) -> Date {
        var components = DateComponents()
        (components.year, components.month, components.day, components.hour) = (-years, -months, -days, -hours)
        return Retention.calendar.date(byAdding: components, to: now) ?? .distantPast
    }
}

/// Retention rules for one label's backups, as restic and borg users know them: a backup is
/// kept when any rule keeps it.
public struct RetentionPolicy: Sendable, Equatable {
    /// The newest N.
    public var keepLast: Int?
    /// Every backup created within this long before now.
    public var keepWithin: RetentionDuration?
    /// The newest backup of each of the last N days (UTC) that have one.
    public var keepDaily: Int?
    /// The newest backup of each of the last N ISO weeks that have one.
    public var keepWeekly: Int?
    /// The newest backup of each of the last N months that have one.
    public var keepMonthly: Int?

    public init(keepLast: Int? = nil, keepWithin: RetentionDuration? = nil, keepDaily: Int? = nil,
                keepWeekly: Int? = nil, keepMonthly: Int? = nil) {
        (self.keepLast, self.keepWithin, self.keepDaily, self.keepWeekly, self.keepMonthly) = (keepLast, keepWithin, keepDaily, keepWeekly, keepMonthly)
    }

    /// No rule given: retention keeps everything and is not run.
    public var isEmpty: Bool { self == RetentionPolicy() }

    /// The rules as the command line writes them, e.g. `--keep-last 3 --keep-daily 7`.
    public var description: String {
        [keepLast.map { "--keep-last \($0)" }, keepWithin.map { "--keep-within \($0)" }, keepDaily.map { "--keep-daily \($0)" },
         keepWeekly.map { "--keep-weekly \($0)" }, keepMonthly.map { "--keep-monthly \($0)" }].compactMap { $0 }.joined(separator: " ")
    }
}

/// What retention decided for one backup: the rules that keep it, or none (removed).
public struct RetentionDecision: Sendable {
    public let entry: BackupEntry
    /// Why it is kept, e.g. `last 3`, `daily 2026-11-24`, `newest pre_* backup`; empty when it is removed.
    public let reasons: [String]
    /// Whether it is kept but could not be restored by `--latest` (dated in the future, or its
    /// last check failed): it does not count as a survivor of its label.
    public let unusable: Bool
    public var kept: Bool { !reasons.isEmpty }
}

/// Applies a `RetentionPolicy` to a backups folder.
public enum Retention {
    /// The labels of the copies a restore makes of the state it replaces: kept by count
    /// (`restoreCopies`), not by a command's rules.
    public static let restoreCopyLabels: Set<String> = ["pre_restore", "pre_putback"]

    static let calendar: Calendar = {
        var calendar = Calendar(identifier: .iso8601)
        calendar.timeZone = TimeZone(identifier: "UTC")!
        return calendar
    }()

    /// Decides, per label, which backups `policy` keeps. Whatever the rules say, these are kept
    /// and say why: the newest backup of every `pre_*` label, the names in `protected` (the
    /// backup the command has just written, one an unfinished deploy refers to), and backups
    /// dated in the future (their age is unknown; they are reported, never counted as newest).
    /// A backup whose last check failed takes no place in the count rules (last, daily, weekly,
    /// monthly), so it never pushes a good one out; only `keep-within` keeps it.
    /// With `restoreCopies`, the labels in `restoreCopyLabels` follow only that rule (the newest
    /// N good copies of each), whatever `policy` says.
    /// `entries` are newest first, as `BackupStore.entries` gives them.
    public static func decide(_ entries: [BackupEntry], policy: RetentionPolicy, label: String? = nil,
                              protected: [String: String] = [:], now: Date, restoreCopies: Int? = nil) -> [RetentionDecision] {
        var byLabel = [String: [BackupEntry]]()
        var order = [String]()
        for entry in entries where label == nil || entry.label == label {
            if byLabel[entry.label] == nil { order.append(entry.label) }
            byLabel[entry.label, default: []].append(entry)
        }
        var decisions = [RetentionDecision]()
        for label in order.sorted() {
            let list = byLabel[label]!
            let dated = list.filter { !$0.isFutureDated(now: now) }
            let good = dated.filter { $0.status != .failed }
            var reasons = [String: [String]]()
            func keep(_ entry: BackupEntry, _ reason: String) { reasons[entry.name, default: []].append(reason) }
            var policy = policy
            if let restoreCopies, restoreCopyLabels.contains(label) {
                policy = RetentionPolicy()
                for (index, entry) in good.prefix(restoreCopies).enumerated() { keep(entry, "keep_restore_copies \(restoreCopies) (#\(index + 1))") }
            }
            if let n = policy.keepLast {
                for (index, entry) in good.prefix(n).enumerated() { keep(entry, "last \(n) (#\(index + 1))") }
            }
            if let within = policy.keepWithin {
                let cutoff = within.cutoff(before: now)
                for entry in dated where entry.createdAt >= cutoff { keep(entry, "within \(within)") }
            }
            let buckets: [(Int?, String, (Date) -> String)] = [
                (policy.keepDaily, "daily", { day($0) }),
                (policy.keepWeekly, "weekly", { week($0) }),
                (policy.keepMonthly, "monthly", { String(day($0).prefix(7)) }),
            ]
            for (count, rule, bucket) in buckets {
                guard let count else { continue }
                var seen = Set<String>()
                for entry in good where seen.count < count {
                    let key = bucket(entry.createdAt)
                    if seen.insert(key).inserted { keep(entry, "\(rule) \(key)") }
                }
            }
            if label.hasPrefix(BackupEntry.ownCopyPrefix), let newest = good.first ?? dated.first ?? list.first { keep(newest, "newest \(label) backup (pre_* labels always keep one)") }
            for entry in list {
                if let why = protected[entry.name] { keep(entry, why) }
                if entry.isFutureDated(now: now) { keep(entry, "dated in the future (\(day(entry.createdAt))): its age is unknown; check the clock, then remove it by hand") }
            }
            decisions += list.map {
                RetentionDecision(entry: $0, reasons: reasons[$0.name] ?? [], unusable: $0.isFutureDated(now: now) || $0.status == .failed)
            }
        }
        return decisions
    }

    static func day(_ date: Date) -> String {
        let c = calendar.dateComponents([.year, .month, .day], from: date)
        return String(format: "%04d-%02d-%02d", c.year!, c.month!, c.day!)
    }

    static func week(_ date: Date) -> String {
        let c = calendar.dateComponents([.yearForWeekOfYear, .weekOfYear], from: date)
        return String(format: "%04d-W%02d", c.yearForWeekOfYear!, c.weekOfYear!)
    }
}
