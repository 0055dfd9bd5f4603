import Dispatch
import Foundation
import Synchronization

/// The one way deployctl runs work at once on several cores: independent items on every core
/// (`map`), a piece of work beside the calling thread's (`both`), and work started now and
/// joined later (`Background`).
///
/// The work that leaves the calling thread is `@Sendable`, so the compiler checks what it
/// captures: never a `Connection` (which is not `Sendable`) or a raw buffer. Work that needs a
/// connection opens its own on the thread that uses it, or stays on the calling thread (the
/// `here` side of `both`). Results come back through a `Mutex`; nothing is shared unchecked.
public enum Parallel {
    /// Cores this process may use.
    public static var cores: Int { max(1, ProcessInfo.processInfo.activeProcessorCount) }

    /// Runs `body` for every index in `0..<count`, at most `width` at once (one per core by
    /// default), and returns the results in index order.
    ///
    /// Once an item fails no further item starts; the items already running finish, and then
    /// the failure of the lowest index is thrown. Returns only when no item is running.
    public static func map<T: Sendable, E: Error>(_ count: Int, width: Int = Parallel.cores,
                                                  _ body: @Sendable (Int) throws(E) -> T) throws(E) -> [T] {
        guard count > 0 else { return [] }
        let results = Mutex<[Result<T, E>?]>(Array(repeating: nil, count: count))
        let next = Atomic<Int>(0)
        let failed = Atomic<Bool>(false)
        DispatchQueue.concurrentPerform(iterations: max(1, min(width, count))) { _ in
            while !failed.load(ordering: .relaxed) {
                let index = next.wrappingAdd(1, ordering: .relaxed).oldValue
                guard index < count else { return }
                let result = Result { () throws(E) in try body(index) }
                if case .failure = result { failed.store(true, ordering: .relaxed) }
                results.withLock { $0[index] = result }
            }
        }
        let all = results.withLock { $0 }
        var values = [T]()
        values.reserveCapacity(count)
        // Items are taken in index order, so an item never started (nil) comes after the
        // failure that stopped the rest.
        for case let result? in all {
            values.append(try result.get())
        }
        return values
    }

    /// Which error `both` throws when both sides fail.
    public enum Side: Sendable {
        case here, elsewhere
    }

    /// Runs `elsewhere` on a thread of its own while `here` runs on the calling thread (so
    /// `here` may use the caller's connection); returns both results once both have ended, even
    /// when one throws. When both throw, `reportingFirst` says whose error is thrown.
    public static func both<Here, Elsewhere: Sendable>(_ here: () throws -> Here, elsewhere: @escaping @Sendable () throws -> Elsewhere,
                                                       reportingFirst first: Side = .here) throws -> (Here, Elsewhere) {
        let other = Background { _ in try elsewhere() }
        let mine = Result { try here() }
        let theirs = Result { try other.wait(report: { _ in }) }
        switch (mine, theirs, first) {
        case (.success(let a), .success(let b), _): return (a, b)
        case (.failure(let error), .failure, .here), (.failure(let error), .success, _): throw error
        case (_, .failure(let error), _): throw error
        }
    }

    /// Values (buffers) that parallel work borrows and gives back, so that batch after batch
    /// reuses them instead of allocating: each is made on first need, at most one per worker.
    /// Items are `Sendable` values handed out and back under a lock; a borrowed array is the
    /// borrower's alone, so writing it copies nothing.
    public final class Pool<Item: Sendable>: Sendable {
        private let free = Mutex<[Item]>([])
        private let make: @Sendable () -> Item

        public init(_ make: @escaping @Sendable () -> Item) { self.make = make }

        /// Runs `body` with an item of the pool (made when none is free), then puts it back.
        public func borrow<R, E: Error>(_ body: (inout Item) throws(E) -> R) throws(E) -> R {
            var item = free.withLock { $0.popLast() } ?? make()
            let result = Result { () throws(E) in try body(&item) }
            free.withLock { [item] in $0.append(item) }
            return try result.get()
        }
    }

    /// Work started at once on a thread of its own; `wait` joins it.
    ///
    /// Why: a compressed snapshot is compressed while the copy it reads is still being written by
    /// SQLite on the calling thread; a migration's "before" fingerprints are taken on a second
    /// connection while the first migrates.
    public final class Background<T: Sendable>: Sendable {
        private let outcome = Mutex<Result<T, any Error>?>(nil)
        private let reported = Atomic<Int64>(0)
        private let ended = DispatchSemaphore(value: 0)

        /// Starts `work`, which may report how far it got through the function it is given.
        public init(_ work: @escaping @Sendable (_ report: @escaping @Sendable (Int64) -> Void) throws -> T) {
            let thread = Thread { [self] in
                let result = Result { try work { done in self.reported.store(done, ordering: .relaxed) } }
                outcome.withLock { $0 = result }
                ended.signal()
            }
            // SQLite and the compressors want more than a secondary thread's default stack.
            thread.stackSize = 4 << 20
            thread.start()
        }

        /// Waits for the work to end, calling `report` on this thread with how far it got every
        /// 0.1 s meanwhile and once at the end (even when it had ended before); returns its
        /// result or throws its error (again on each call).
        public func wait(report: (Int64) -> Void) throws -> T {
            while true {
                if let result = outcome.withLock({ $0 }) {
                    report(reported.load(ordering: .relaxed))
                    return try result.get()
                }
                if ended.wait(timeout: .now() + .milliseconds(100)) == .timedOut {
                    report(reported.load(ordering: .relaxed))
                }
            }
        }
    }
}
