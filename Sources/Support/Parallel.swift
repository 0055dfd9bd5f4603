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
