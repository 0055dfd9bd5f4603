import CSQLite
import Foundation

/// Counts, per table, the rows SQLite inserts, updates or deletes through one connection, from
/// SQLite's preupdate hook (https://sqlite.org/c3ref/preupdate_blobwrite.html).
///
/// The hook fires for every row change to an ordinary table, including changes made by
/// triggers, foreign-key actions and REPLACE conflicts; while it is set SQLite also turns off
/// the truncate optimization, so `DELETE FROM t` reports each row. It does not see schema
/// changes (CREATE/ALTER/DROP): compare `sqlite_schema` for those. The hook exists only when
/// libsqlite3 was built with `SQLITE_ENABLE_PREUPDATE_HOOK` (Debian's and Ubuntu's are), so it
/// is looked up at run time: `isAvailable` says whether it was found.
///
/// Not `Sendable`: it belongs to its connection's thread. Remove it with `stop()` (deinit does).
public final class RowChangeRecorder {
    private typealias Callback = @convention(c) (UnsafeMutableRawPointer?, OpaquePointer?, Int32,
                                                 UnsafePointer<CChar>?, UnsafePointer<CChar>?, Int64, Int64) -> Void
    private typealias SetHook = @convention(c) (OpaquePointer?, Callback?, UnsafeMutableRawPointer?) -> UnsafeMutableRawPointer?

    private final class Counts { var byTable = [String: Int]() }

    private let connection: Connection
    private let counts = Counts()
    private var installed = false

    /// Whether this process's libsqlite3 has the preupdate hook.
    public static var isAvailable: Bool { setHook() != nil }

    private static func setHook() -> SetHook? {
        guard sqlite3_compileoption_used("ENABLE_PREUPDATE_HOOK") == 1, let program = dlopen(nil, RTLD_NOW) else { return nil }
        // The program's own handle: the symbol stays valid after dlclose.
        defer { dlclose(program) }
        guard let symbol = dlsym(program, "sqlite3_preupdate_hook") else { return nil }
        return unsafeBitCast(symbol, to: SetHook.self)
    }

    /// Starts recording on `connection`.
    /// - Throws: `SQLiteError` when the library has no preupdate hook.
    public init(_ connection: Connection) throws {
        guard let setHook = Self.setHook() else {
            throw SQLiteError(code: SQLITE_MISUSE, message: "this libsqlite3 was built without the preupdate hook", context: connection.path)
        }
        self.connection = connection
        _ = setHook(connection.handle, { context, _, _, database, table, _, _ in
            guard let context, let database, let table else { return }
            let counts = Unmanaged<Counts>.fromOpaque(context).takeUnretainedValue()
            counts.byTable[String(cString: database) + "." + String(cString: table), default: 0] += 1
        }, Unmanaged.passUnretained(counts).toOpaque())
        installed = true
    }

    /// Removes the hook and returns the rows changed per `schema.table` (e.g. `main.user`).
    @discardableResult
    public func stop() -> [String: Int] {
        if installed, let setHook = Self.setHook() { _ = setHook(connection.handle, nil, nil) }
        installed = false
        return counts.byTable
    }

    deinit { stop() }
}
