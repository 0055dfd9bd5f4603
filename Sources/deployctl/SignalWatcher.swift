import Dispatch
import Foundation
import Synchronization

/// Catches SIGINT and SIGTERM so that a command stops at a safe point (the next stage
/// boundary) instead of dying mid-write; the deploy then handles it like an error.
final class SignalWatcher: Sendable {
    private let signal = Atomic<Int32>(0)
    // Only kept alive after init, never touched again.
    nonisolated(unsafe) private let sources: [any DispatchSourceSignal]

    init() {
        var made = [any DispatchSourceSignal]()
        for number in [SIGINT, SIGTERM] {
            Foundation.signal(number, SIG_IGN)
            made.append(DispatchSource.makeSignalSource(signal: number, queue: .global()))
        }
        sources = made
        for (source, number) in zip(sources, [SIGINT, SIGTERM]) {
            source.setEventHandler { [weak self] in
                self?.signal.store(number, ordering: .relaxed)
                FileHandle.standardError.write(Data("\ndeployctl: received \(number == SIGINT ? "SIGINT" : "SIGTERM"); stopping at the next safe point\n".utf8))
            }
            source.resume()
        }
    }

    /// The signal received, if any.
    var received: Int32? {
        let value = signal.load(ordering: .relaxed)
        return value == 0 ? nil : value
    }
}
