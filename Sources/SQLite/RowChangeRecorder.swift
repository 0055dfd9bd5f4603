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

    /// What happened to one table's rows, for a proof that no existing row or value was lost.
    public struct TableChanges: Sendable, Equatable {
        /// Rows deleted that this connection had not inserted itself.
        public var existingRowsDeleted = 0
        /// Per column position, existing rows whose value there changed (a changed rowid counts
        /// under position -1).
        public var existingValuesChanged = [Int: Int]()
        /// Rows this connection inserted (and did not delete again).
        public var inserted = RowidSet()
        /// Existing rows deleted, with their values: a REPLACE deletes a row and inserts one with
        /// the same rowid, which then counts as that row kept or changed, not as a deletion.
        var deletedRows = [Int64: [Value]]()

        public init() {}
    }

    private final class Counts {
        var byTable = [String: Int]()
        var details = [String: TableChanges]()
        var detailed = false
        /// With `detailed`, the `schema.table` names to record in detail (nil: all).
        var detailedTables: Set<String>?
        /// The last change's schema and table names (C strings) and its `schema.table` name:
        /// consecutive changes hit the same table, so the name is built once per run of them.
        var lastDatabase: [CChar] = [0]
        var lastTable: [CChar] = [0]
        var lastName = ""
        var lastDetailed = false
        var old: ValueAccessor?
        var new: ValueAccessor?
        var count: CountAccessor?

        /// The `schema.table` name of a change, and whether it is recorded in detail.
        func name(_ database: UnsafePointer<CChar>, _ table: UnsafePointer<CChar>) -> String {
            if strcmp(table, lastTable) == 0 && strcmp(database, lastDatabase) == 0 { return lastName }
            lastDatabase = Array(UnsafeBufferPointer(start: database, count: strlen(database) + 1))
            lastTable = Array(UnsafeBufferPointer(start: table, count: strlen(table) + 1))
            lastName = String(cString: database) + "." + String(cString: table)
            lastDetailed = detailed && (detailedTables?.contains(lastName) ?? true)
            return lastName
        }
    }

    private typealias ValueAccessor = @convention(c) (OpaquePointer?, Int32, UnsafeMutablePointer<OpaquePointer?>?) -> Int32
    private typealias CountAccessor = @convention(c) (OpaquePointer?) -> Int32

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

    private static func symbol<T>(_ name: String, as _: T.Type) -> T? {
        guard let program = dlopen(nil, RTLD_NOW) else { return nil }
        defer { dlclose(program) }
        return dlsym(program, name).map { unsafeBitCast($0, to: T.self) }
    }

    /// Starts recording on `connection`. With `detailed`, also records which existing rows were
    /// deleted and which of their values changed (old and new values compared column by column;
    /// `details`), telling rows this connection inserted apart by rowid; `only` limits that to
    /// some `schema.table` names (a table the migration creates needs only its count).
    ///
    /// Cost: constant per row change (amortized), so a statement writing n rows costs O(n);
    /// memory is per detailed table: one range per run of ascending inserted rowids, plus the
    /// values of existing rows deleted.
    /// - Throws: `SQLiteError` when the library has no preupdate hook.
    public init(_ connection: Connection, detailed: Bool = false, only: Set<String>? = nil) throws {
        guard let setHook = Self.setHook() else {
            throw SQLiteError(code: SQLITE_MISUSE, message: "this libsqlite3 was built without the preupdate hook", context: connection.path)
        }
        self.connection = connection
        if detailed {
            counts.old = Self.symbol("sqlite3_preupdate_old", as: ValueAccessor.self)
            counts.new = Self.symbol("sqlite3_preupdate_new", as: ValueAccessor.self)
            counts.count = Self.symbol("sqlite3_preupdate_count", as: CountAccessor.self)
            guard counts.old != nil, counts.new != nil, counts.count != nil else {
                throw SQLiteError(code: SQLITE_MISUSE, message: "this libsqlite3 lacks sqlite3_preupdate_old/new", context: connection.path)
            }
            counts.detailed = true
            counts.detailedTables = only
        }
        _ = setHook(connection.handle, { context, db, op, database, table, key1, key2 in
            guard let context, let database, let table else { return }
            let counts = Unmanaged<Counts>.fromOpaque(context).takeUnretainedValue()
            let name = counts.name(database, table)
            counts.byTable[name, default: 0] += 1
            guard counts.lastDetailed else { return }
            // Changed in place through the dictionary's accessor: copying the value out and back
            // would copy its sets on every row (quadratic in the rows written).
            RowChangeRecorder.record(op, db, key1, key2, counts, into: &counts.details[name, default: TableChanges()])
        }, Unmanaged.passUnretained(counts).toOpaque())
        installed = true
    }

    private static func record(_ op: Int32, _ db: OpaquePointer?, _ key1: Int64, _ key2: Int64, _ counts: Counts,
                               into changes: inout TableChanges) {
        switch op {
        case SQLITE_INSERT:
            if let old = changes.deletedRows.removeValue(forKey: key2) {
                // The existing row back under its rowid: compare it column by column.
                changes.existingRowsDeleted -= 1
                let columns = counts.count!(db)
                for column in 0..<columns {
                    var new: OpaquePointer?
                    guard counts.new!(db, column, &new) == SQLITE_OK, Int(column) < old.count,
                          RowChangeRecorder.value(new) == old[Int(column)] else {
                        changes.existingValuesChanged[Int(column), default: 0] += 1
                        continue
                    }
                }
            } else {
                changes.inserted.insert(key2)
            }
        case SQLITE_DELETE:
            if !changes.inserted.remove(key1) {
                changes.existingRowsDeleted += 1
                var values = [Value]()
                for column in 0..<counts.count!(db) {
                    var old: OpaquePointer?
                    values.append(counts.old!(db, column, &old) == SQLITE_OK ? RowChangeRecorder.value(old) : .null)
                }
                changes.deletedRows[key1] = values
            }
        case SQLITE_UPDATE:
            if changes.inserted.contains(key1) {
                changes.inserted.remove(key1)
                changes.inserted.insert(key2)
                break
            }
            if key1 != key2 { changes.existingValuesChanged[-1, default: 0] += 1 }
            let columns = counts.count!(db)
            for column in 0..<columns {
                var old: OpaquePointer?
                var new: OpaquePointer?
                guard counts.old!(db, column, &old) == SQLITE_OK, counts.new!(db, column, &new) == SQLITE_OK,
                      RowChangeRecorder.same(old, new) else {
                    changes.existingValuesChanged[Int(column), default: 0] += 1
                    continue
                }
            }
        default:
            break
        }
    }

    /// A copy of an `sqlite3_value` (valid only during the callback).
    static func value(_ v: OpaquePointer?) -> Value {
        switch sqlite3_value_type(v) {
        case SQLITE_NULL: return .null
        case SQLITE_INTEGER: return .integer(sqlite3_value_int64(v))
        case SQLITE_FLOAT: return .real(sqlite3_value_double(v))
        case SQLITE_TEXT:
            return .text(sqlite3_value_text(v).map { String(cString: $0) } ?? "")
        default:
            let count = Int(sqlite3_value_bytes(v))
            guard count > 0, let bytes = sqlite3_value_blob(v) else { return .blob([]) }
            return .blob(Array(UnsafeRawBufferPointer(start: bytes, count: count)))
        }
    }

    /// Whether two values are the same: type and content.
    static func same(_ a: OpaquePointer?, _ b: OpaquePointer?) -> Bool {
        let type = sqlite3_value_type(a)
        guard type == sqlite3_value_type(b) else { return false }
        switch type {
        case SQLITE_NULL: return true
        case SQLITE_INTEGER: return sqlite3_value_int64(a) == sqlite3_value_int64(b)
        case SQLITE_FLOAT: return sqlite3_value_double(a).bitPattern == sqlite3_value_double(b).bitPattern
        default:
            let (pa, pb) = (sqlite3_value_blob(a), sqlite3_value_blob(b))
            let (na, nb) = (sqlite3_value_bytes(a), sqlite3_value_bytes(b))
            guard na == nb else { return false }
            if na == 0 { return true }
            guard let pa, let pb else { return false }
            return memcmp(pa, pb, Int(na)) == 0
        }
    }

    /// Per `schema.table`, the existing rows deleted and values changed (with `detailed`).
    public var details: [String: TableChanges] { counts.details }

    /// Removes the hook and returns the rows changed per `schema.table` (e.g. `main.user`).
    @discardableResult
    public func stop() -> [String: Int] {
        if installed, let setHook = Self.setHook() { _ = setHook(connection.handle, nil, nil) }
        installed = false
        return counts.byTable
    }

    deinit { stop() }
}
