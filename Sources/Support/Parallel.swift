import Foundation

/// Runs two pieces of blocking work at once, one per core.
///
/// Returns when both have finished, even when one throws; then rethrows the first side's error
/// first. Meant for independent I/O- or CPU-bound work on separate files or connections (hash
/// one file while another is fsynced; fingerprint two databases).
public func bothAtOnce<A, B>(_ first: () throws -> A, _ second: () throws -> B) throws -> (A, B) {
    let results = PairOfResults<A, B>()
    withoutActuallyEscaping(first) { first in
        withoutActuallyEscaping(second) { second in
            nonisolated(unsafe) let work = (first, second)
            DispatchQueue.concurrentPerform(iterations: 2) { side in
                if side == 0 { results.first = Result { try work.0() } } else { results.second = Result { try work.1() } }
            }
        }
    }
    return (try results.first!.get(), try results.second!.get())
}

/// Each side is written by one thread only and read after both have joined.
private final class PairOfResults<A, B>: @unchecked Sendable {
    var first: Result<A, Error>?
    var second: Result<B, Error>?
}

/// Work started at once on a thread of its own; `wait` joins it.
///
/// Why: a compressed snapshot is compressed while the copy it reads is still being written by
/// SQLite on the calling thread.
public final class BackgroundWork<T>: @unchecked Sendable {
    private let condition = NSCondition()
    private var outcome: Result<T, Error>?
    private var reported: Int64 = 0

    /// Starts `work`, which may report how far it got through the function it is given.
    public init(_ work: @escaping (_ report: @escaping (Int64) -> Void) throws -> T) {
        nonisolated(unsafe) let work = work
        let thread = Thread { [self] in
            let result = Result { try work { done in self.condition.lock(); self.reported = done; self.condition.unlock() } }
            condition.lock(); outcome = result; condition.broadcast(); condition.unlock()
        }
        thread.stackSize = 4 << 20
        thread.start()
    }

    /// Waits for the work to end, calling `report` on this thread with how far it got every
    /// 0.1 s meanwhile and once at the end (even when it had ended before); returns its result
    /// or throws its error (again on each call).
    public func wait(report: (Int64) -> Void) throws -> T {
        condition.lock()
        while outcome == nil {
            if !condition.wait(until: Date(timeIntervalSinceNow: 0.1)) {
                let done = reported
                condition.unlock(); report(done); condition.lock()
            }
        }
        let (result, done) = (outcome!, reported)
        condition.unlock()
        report(done)
        return try result.get()
    }
}
