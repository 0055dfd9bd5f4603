import CSQLite

/// What `stopWhen` keeps alive for SQLite's progress handler.
final class StopBox {
    let stop: () -> Bool
    init(_ stop: @escaping () -> Bool) { self.stop = stop }
}

extension Connection {
    /// Makes long statements on this connection give up with `SQLITE_INTERRUPT` once `stop`
    /// returns true (asked every thousand virtual-machine steps, https://sqlite.org/c3ref/progress_handler.html):
    /// an `integrity_check` of a large backup stops at a Ctrl-C. Only for reading: an interrupted
    /// write transaction is rolled back by SQLite.
    public func stopWhen(_ stop: @escaping () -> Bool) {
        let box = StopBox(stop)
        stopBox = box
        sqlite3_progress_handler(handle, 1_000, { context in
            guard let context else { return 0 }
            return Unmanaged<StopBox>.fromOpaque(context).takeUnretainedValue().stop() ? 1 : 0
        }, Unmanaged.passUnretained(box).toOpaque())
    }
}

extension SQLiteError {
    /// Whether a statement was stopped by `Connection.stopWhen` (or `sqlite3_interrupt`).
    public var interrupted: Bool { code & 0xff == SQLITE_INTERRUPT }
}
