import Foundation
import Support

/// Follows the writes of a backup copy into a new file, to hash the copy as it is written (a
/// kept plain copy) or to let another thread read it behind the writer (`CopyFollower`: a
/// compressed snapshot is compressed while its scratch copy is still being written).
///
/// Why: the backup API writes page 1 last (at its commit), after every other page, and both a
/// file's SHA-256 and its first compressed member start with page 1: either could otherwise
/// begin only once the copy is done. Hashing the finished file was 0.7 s of a 1.9 s plain
/// snapshot of 1 GiB (measured).
/// How: the page 1 the copy will end with is predicted (`Connection.predictedBackupFirstPage`);
/// the hash starts with it and takes each later write, in file order, from
/// `BufferedPageWriter`'s buffers as they are written (a ring of buffers, so the copy goes on
/// while earlier ones are hashed); a follower reads the file up to the end written so far.
///
/// Guarantees: the copy counts as followed only when the file holds exactly the bytes followed:
/// page 1 was written once and equals the prediction byte for byte; every later byte was
/// written once, in order, from the end of page 1 to the end of the file, except the page
/// holding SQLite's pending byte (offset 1 GiB), which SQLite never writes, a hole that reads
/// as zeros and is hashed as zeros; nothing was written after the end or truncated away; the
/// file's size is where the writes ended. Otherwise (a wrong prediction, a write out of order,
/// a failed write) `result` is nil and a follower is told to stop: the caller then hashes or
/// compresses the finished file itself. A wrong prediction costs time, never a wrong checksum
/// or a wrong backup.
package final class WrittenFileDigest: @unchecked Sendable {
    let expectedFirstPage: [UInt8]
    private let pageSize: Int64
    /// The offset of the page holding SQLite's pending byte (https://sqlite.org/fileformat.html#pending_byte_page).
    private let pendingPageOffset: Int64
    let hashing: Bool

    // Written by the copying thread, under `state` (a follower reads them).
    private var nextOffset: Int64
    private var sawFirstPage = false
    private var valid = true
    private var finished = false

    // Touched only on `queue`; taken when the digest is finalized.
    private var hasher: SHA256? = SHA256()
    private let queue = DispatchQueue(label: "deployctl.copy-digest")
    /// Guards the fields above; signalled when a buffer is hashed or the written end moves.
    private let state = NSCondition()
    /// Buffers handed to `queue` and not hashed yet.
    private var outstanding = 0

    /// With `hashing` false, only follows (for `CopyFollower`): nothing is hashed.
    init(expectedFirstPage: [UInt8], hashing: Bool = true) {
        self.expectedFirstPage = expectedFirstPage
        self.hashing = hashing
        pageSize = Int64(expectedFirstPage.count)
        pendingPageOffset = (0x4000_0000 / pageSize) * pageSize
        nextOffset = pageSize
        let first = expectedFirstPage
        if hashing { queue.async { self.hasher?.update(first) } }
    }

    /// The copy wrote `count` bytes of `buffer` at `offset`. Returns whether the buffer was
    /// handed to the hashing thread: the writer must then not touch it until `waitForBuffers`
    /// says fewer than its ring's size are out.
    func wrote(_ buffer: UnsafeRawPointer, count: Int, at offset: Int64) -> Bool {
        state.lock()
        defer { state.broadcast(); state.unlock() }
        guard valid else { return false }
        var start = 0
        if offset == 0 {
            guard !sawFirstPage, Int64(count) >= pageSize,
                  memcmp(buffer, expectedFirstPage, Int(pageSize)) == 0 else { valid = false; return false }
            sawFirstPage = true
            start = Int(pageSize)
            if start == count { return false }
        }
        let bodyOffset = offset + Int64(start)
        if nextOffset == pendingPageOffset && bodyOffset == pendingPageOffset + pageSize {
            if hashing {
                let zeros = [UInt8](repeating: 0, count: Int(pageSize))
                queue.async { self.hasher?.update(zeros) }
            }
            nextOffset += pageSize
        }
        guard bodyOffset == nextOffset else { valid = false; return false }
        nextOffset += Int64(count - start)
        guard hashing else { return false }
        outstanding += 1
        nonisolated(unsafe) let bytes = UnsafeRawBufferPointer(start: buffer + start, count: count - start)
        queue.async {
            self.hasher?.update(bytes)
            self.state.lock(); self.outstanding -= 1; self.state.broadcast(); self.state.unlock()
        }
        return true
    }

    /// Waits until fewer than `limit` handed buffers are still being hashed.
    func waitForBuffers(below limit: Int) {
        state.lock(); defer { state.unlock() }
        while outstanding >= limit { state.wait() }
    }

    /// The copy did something that cannot be followed (a truncation, an oversized or failed
    /// write): `result` will be nil and a follower stops.
    func abandon() {
        state.lock(); defer { state.broadcast(); state.unlock() }
        valid = false
    }

    /// Waits for the hashing thread; afterwards no buffer is in its hands.
    func drain() {
        queue.sync {}
    }

    /// Once every write is done (the copy's file is closed): the file's digest when hashing and
    /// the file is what was followed; nil otherwise (see the type). A follower waiting is
    /// released either way, told whether the copy was followed.
    func result(fileSize: Int64) -> WrittenDigest? {
        drain()
        state.lock()
        let followed = valid && sawFirstPage && fileSize == nextOffset
        valid = followed
        finished = true
        state.broadcast()
        state.unlock()
        guard followed, hashing else { return nil }
        // A libcrypto failure gives no digest: the caller then hashes the file itself, which
        // reports it.
        let sha256 = queue.sync { try? self.hasher.take()?.finalizeHex() }
        return sha256.map { WrittenDigest(bytes: fileSize, sha256: $0) }
    }

    /// Ends following when the copy ended without its file being closed through the VFS (it
    /// failed first): a follower waiting is told to stop.
    func endUnlessFinished() {
        state.lock(); defer { state.broadcast(); state.unlock() }
        if !finished {
            valid = false
            finished = true
        }
    }

    /// For a follower: waits until the bytes from the end of page 1 to `end` are written and
    /// final (true), or, after the copy's end, returns whether it was followed whole (every
    /// byte of the file is then final).
    func waitUntilWritten(below end: Int64) -> Bool {
        state.lock(); defer { state.unlock() }
        while valid && !finished && nextOffset < end { state.wait() }
        return valid
    }
}

/// Lets another thread read a new copy while `Connection.copy(following:)` writes it.
///
/// The file's first page is all zeros until the copy's commit writes page 1, last: read it as
/// `firstPage`, the page 1 predicted. What was read may be kept only if `waitUntilWritten`
/// returned true for it and the copy then ended with `waitUntilWritten` true for the whole file
/// (the prediction and the order of the writes held); otherwise read the finished file again.
public final class CopyFollower: @unchecked Sendable {
    private let tracker: WrittenFileDigest

    init(_ tracker: WrittenFileDigest) { self.tracker = tracker }

    /// The page 1 predicted: what the file will hold at offset 0.
    public var firstPage: [UInt8] { tracker.expectedFirstPage }

    /// Puts the predicted page 1 over the first bytes of `buffer`, which holds the first
    /// `count` bytes read from the file (zeros there until the copy's commit).
    public func patchFirstPage(of buffer: UnsafeMutableRawBufferPointer, count: Int) {
        let page = tracker.expectedFirstPage
        page.withUnsafeBytes { buffer.baseAddress!.copyMemory(from: $0.baseAddress!, byteCount: min(page.count, count, buffer.count)) }
    }

    /// Makes the copy count as not followed: a reader waiting stops at once (an interrupt, or
    /// the snapshot failed).
    public func stop() { tracker.abandon() }

    /// Blocks until the file's bytes from the end of page 1 up to `end` are written and will
    /// not change (true); false as soon as the copy cannot be followed. Once the copy has ended,
    /// true for any `end` if it was followed whole: the file is complete.
    public func waitUntilWritten(below end: Int64) -> Bool {
        tracker.waitUntilWritten(below: end)
    }
}
