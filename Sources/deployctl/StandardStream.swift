import Foundation

/// stdout or stderr, written with write(2): each text whole (partial writes and EINTR retried),
/// texts from several threads never mixed, and never a trap (Foundation's
/// `FileHandle.write(_: Data)` traps on EPIPE).
///
/// Once the stream cannot be written (its reader is gone: `deployctl history prod | head -1`;
/// or the disk is full) the rest of its output is dropped and the command carries on to its
/// end: a deploy finishes its pipeline exactly as if its output were read. The exit code is
/// then the work's own (0 for a finished deploy, `status`'s code for what it found), never
/// 141 or an "output lost" code: the exit code says what happened to the databases, a script
/// with `set -o pipefail` must not take a finished deploy for a failed one, and the reader
/// chose to stop reading. SIGPIPE is ignored (`Deployctl.main`), so a closed pipe is EPIPE here.
final class StandardStream: @unchecked Sendable {
    // Guarded by `lock`: the command's threads and the progress line's timer write.
    private let lock = NSLock()
    private let descriptor: Int32
    private let name: String
    private let complaints: StandardStream?
    private var lost = false
    private var wrote = false

    /// `complaints`: where to say, once, that this stream failed for a reason other than its
    /// reader leaving (EPIPE is expected and silent).
    init(descriptor: Int32, name: String, complaints: StandardStream? = nil) {
        self.descriptor = descriptor
        self.name = name
        self.complaints = complaints
    }

    /// Writes all of `text`, or nothing more of this stream's output once a write has failed.
    func write(_ text: String) {
        lock.lock()
        var failure: Int32?
        wrote = wrote || !text.isEmpty
        if !lost {
            var text = text
            failure = text.withUTF8 { writeAll($0) }
            lost = failure != nil
        }
        lock.unlock()
        if let failure, failure != EPIPE {
            complaints?.write("deployctl: writing to \(name) failed (\(String(cString: strerror(failure)))); the rest of its output is dropped\n")
        }
    }

    /// Whether anything was written (or tried) to this stream.
    var hasWritten: Bool {
        lock.lock()
        defer { lock.unlock() }
        return wrote
    }

    /// The errno that stopped the write, or nil when every byte was written.
    private func writeAll(_ bytes: UnsafeBufferPointer<UInt8>) -> Int32? {
        guard let base = bytes.baseAddress else { return nil }
        var offset = 0
        while offset < bytes.count {
            let written = Glibc.write(descriptor, base + offset, bytes.count - offset)
            if written >= 0 {
                offset += written
                continue
            }
            switch errno {
            case EINTR:
                continue
            case EAGAIN, EWOULDBLOCK:
                // A non-blocking descriptor (shared with the parent): wait until it takes more.
                var ready = pollfd(fd: descriptor, events: Int16(POLLOUT), revents: 0)
                _ = Glibc.poll(&ready, 1, -1)
            case let error:
                return error
            }
        }
        return nil
    }
}
