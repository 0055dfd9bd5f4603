import Foundation
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
    private var started = ContinuousClock.now
    private var drawn = false
    private var timer: DispatchSourceTimer?

    /// The words shown for the library's short phase names.
    static let words: [String: String] = [
        "copy": "copying the database (SQLite's backup API)",
        "gzip": "compressing (gzip)",
        "zstd": "compressing (zstd)",
    ]

    /// An empty `name` ends the current phase (its `✓` line when it took a second or more);
    /// `-` ends it quietly (its caller prints its own `✓` line).
    func update(_ name: String, _ done: Int64, _ total: Int64) {
        lock.lock()
        defer { lock.unlock() }
        if name.isEmpty || name == "-" {
            name.isEmpty ? finishLocked() : abandonLocked()
            return
        }
        let phase = Self.words[name] ?? name
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
        var text = "  \(phase)…"
        if total > 0 {
            let fraction = min(1, Double(done) / Double(total))
            let bar = String(repeating: "█", count: Int(fraction * 20)) + String(repeating: "░", count: 20 - Int(fraction * 20))
            text += " \(bar) \(Int(fraction * 100))% \(SpaceNeeds.format(done)) of \(SpaceNeeds.format(total))"
            if seconds > 0.5, done > 0, done < total {
                let rate = Double(done) / seconds
                text += ", \(SpaceNeeds.format(Int64(rate)))/s, \(Int((Double(total - done) / rate).rounded(.up))) s left"
            }
        } else if seconds >= 1 {
            text += " \(Int(seconds)) s"
        }
        write("\r\u{1b}[K" + text)
        drawn = true
    }

    private func write(_ text: String) {
        FileHandle.standardError.write(Data(text.utf8))
    }

    static func seconds(since start: ContinuousClock.Instant) -> Double {
        let d = ContinuousClock.now - start
        return Double(d.components.seconds) + Double(d.components.attoseconds) / 1e18
    }
}
