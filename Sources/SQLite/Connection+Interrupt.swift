import CSQLite

/// What `stopWhen` keeps alive for SQLite's progress handler.
final class StopBox {
    let stop: () -> Bool
    init(_ stop: @escaping () -> Bool) { self.stop = stop }
}

extension Connection {
    /// Makes long statements on this connection give up with `SQLITE_INTERRUPT` once `stop`
    /// returns true (asked every thousand virtual-machine steps, https://sqlite.org/c3ref/progress_handler.html):
    /// an `integrity_check` of a large backup stops at a Ctrl-C. A write statement stopped so
    /// fails with `SQLITE_INTERRUPT`, and SQLite rolls back its transaction (a deploy's
    /// migration stops within a second of SIGTERM, database as before). `nil` removes the handler.
    public func stopWhen(_ stop: (() -> Bool)?) {
        guard let stop else {
            sqlite3_progress_handler(handle, 0, nil, nil)
            stopBox = nil
            return
        }
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
    public var interrupted: Bool { primaryCode == SQLITE_INTERRUPT }
}
