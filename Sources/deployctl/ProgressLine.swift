import Foundation
import Orchestrator
import Support

/// The one self-overwriting progress line on a terminal's stderr: what is being done, in words,
/// with bytes done and total, rate and time left when the total is known, and the time spent
/// (refreshed twice a second) when it is not. A finished phase that took a second or more is
/// replaced by its `✓` line. Used only when stderr is a terminal and output is for people.
final class ProgressLine: @unchecked Sendable {
    // Guarded by `lock`: written by the command's threads and the refresh timer.
    private let lock = NSLock()
    private var phase: String?
    private var done: Int64 = 0
    private var total: Int64 = 0
    /// Whether done and total count rows (an online copy) rather than bytes.
    private var rows = false
    private var started = ContinuousClock.now
    private var drawn = false
    private var timer: DispatchSourceTimer?
    private let output: StandardStream

    /// Draws on `output` (stderr).
    init(_ output: StandardStream) {
        self.output = output
    }

    /// The words shown for a phase the library reports.
    static func words(_ phase: Phase) -> String {
        switch phase {
        case .copying: return "copying the database"
        case .compressing(let algorithm): return "compressing (\(algorithm))"
        case .encrypting: return "encrypting (age)"
        case .planning: return "planning on a copy"
        case .checkingBackup(let name, let number, let count):
            return "checking \(name)\(count > 1 ? " (\(number) of \(count))" : "")"
        case .comparingWithLive: return "comparing with the live database"
        case .savingPreRestore: return "saving the live database as pre_restore"
        case .restoringPages: return "restoring the backup's pages"
        case .provingRestore: return "proving each page equals the backup's"
        case .uploading(let name, let remote): return "copying \(name) to remote \(remote)"
        case .downloading(let name, let remote): return "fetching \(name) from remote \(remote)"
        case .copyingRows(let table): return "copying \(table) online"
        }
    }

    /// What a deploy stage is doing, in words.
    static func words(_ stage: Stage) -> String {
        switch stage {
        case .preflight: return "checking the config, locks and free space"
        case .plan: return "planning on a copy"
        case .snapshot: return "taking the snapshot"
        case .rehearse: return "rehearsing on a copy of the snapshot"
        case .migrateAndVerify: return "migrating and verifying (writes wait)"
        case .restart: return "starting the application and checking its health"
        case .report: return "writing the report"
        }
    }

    /// Shows progress the library reported: a phase starts or goes on; its end prints its `✓`
    /// line (when `announce` and it took a second or more) or nothing.
    func report(_ progress: WorkProgress) {
        switch progress {
        case .working(let phase, let done, let total): update(Self.words(phase), done, total, rows: phase.countsRows)
        case .ended(let announce): announce ? finish() : abandon()
        }
    }

    /// Starts or updates the phase shown as `phase`, with bytes `done` of `total` (0: unknown).
    func update(_ phase: String, _ done: Int64, _ total: Int64, rows: Bool = false) {
        lock.lock()
        defer { lock.unlock() }
        self.rows = rows
        if phase != self.phase {
            finishLocked()
            self.phase = phase
            started = .now
            startTimerLocked()
        }
        self.done = done
        self.total = total
        drawLocked()
    }

    /// Ends the current phase: its `✓` line when it took a second or more, else nothing.
    func finish() {
        lock.lock()
        defer { lock.unlock() }
        finishLocked()
    }

    /// Clears the line before other output is written, so the two never mix; the next
    /// refresh draws it again.
    func clearForOutput() {
        lock.lock()
        defer { lock.unlock() }
        if drawn { write("\r\u{1b}[K") }
        drawn = false
    }

    /// Ends the current phase without a `✓` line (it failed, or its caller reports it).
    func abandon() {
        lock.lock()
        defer { lock.unlock() }
        abandonLocked()
    }

    private func abandonLocked() {
        timer?.cancel()
        timer = nil
        if drawn { write("\r\u{1b}[K") }
        drawn = false
        phase = nil
    }

    private func finishLocked() {
        timer?.cancel()
        timer = nil
        guard let phase else { return }
        let seconds = Self.seconds(since: started)
        write("\r\u{1b}[K" + (seconds >= 1 ? "  ✓ \(phase) (\(String(format: "%.1f", seconds)) s)\n" : ""))
        drawn = false
        self.phase = nil
    }

    private func startTimerLocked() {
        let timer = DispatchSource.makeTimerSource(queue: .global())
        timer.schedule(deadline: .now() + .milliseconds(500), repeating: .milliseconds(500))
        timer.setEventHandler { [weak self] in
            guard let self else { return }
            self.lock.lock()
            defer { self.lock.unlock() }
            self.drawLocked()
        }
        timer.resume()
        self.timer = timer
    }

    private func drawLocked() {
        guard let phase else { return }
        let seconds = Self.seconds(since: started)
        var numbers = ""
        var fraction: Double?
        if total > 0 {
            fraction = min(1, Double(done) / Double(total))
            let rows = self.rows
            let format = { (amount: Int64) -> String in rows ? "\(amount) rows" : SpaceNeeds.format(amount) }
            numbers = "\(Int(fraction! * 100))% \(format(done)) of \(format(total))"
            if seconds > 0.5, done > 0, done < total {
                let rate = Double(done) / seconds
                numbers += ", \(format(Int64(rate)))/s, \(Int((Double(total - done) / rate).rounded(.up))) s left"
            }
        } else if seconds >= 1 {
            numbers = "\(Int(seconds)) s"
        }
        var size = winsize()
        let columns = ioctl(2, UInt(TIOCGWINSZ), &size) == 0 && size.ws_col > 10 ? Int(size.ws_col) : 80
        write("\r\u{1b}[K" + Self.layout(phase: phase, numbers: numbers, fraction: fraction, columns: columns))
        drawn = true
    }

    /// One progress line no wider than `columns` - 1 (a wrapped line would not be overwritten by
    /// the next): the numbers (percent, bytes, rate, time left) are kept whole; the bar shrinks,
    /// then goes, then the phase's words are cut.
    static func layout(phase: String, numbers: String, fraction: Double?, columns: Int) -> String {
        let budget = columns - 1
        let tail = { (width: Int) -> String in
            guard let fraction, width > 0 else { return numbers }
            let full = Int(fraction * Double(width))
            return String(repeating: "█", count: full) + String(repeating: "░", count: width - full) + " " + numbers
        }
        // Indent, at least 16 letters of the phase, "… ", then the tail.
        var width = fraction == nil ? 0 : 20
        while width > 0, 2 + 16 + 2 + tail(width).count > budget { width -= 1 }
        if width < 6 { width = 0 }
        let end = tail(width)
        let room = max(0, budget - 2 - 2 - end.count)
        let words = phase.count <= room ? phase : String(phase.prefix(room))
        let text = "  " + words + "…" + (end.isEmpty ? "" : " " + end)
        return text.count > budget ? String(text.prefix(budget)) : text
    }

    private func write(_ text: String) {
        output.write(text)
    }

    static func seconds(since start: ContinuousClock.Instant) -> Double {
        let d = ContinuousClock.now - start
        return d.seconds
    }
}
