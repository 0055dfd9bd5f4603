/// One SQLite value, as stored (https://sqlite.org/datatype3.html).
public enum Value: Sendable, Hashable {
    case null
    case integer(Int64)
    case real(Double)
    case text(String)
    case blob([UInt8])

    /// The value as an integer, when it is one.
    public var int: Int64? {
        if case .integer(let v) = self { return v }
        return nil
    }

    /// The value as text, when it is text.
    public var string: String? {
        if case .text(let v) = self { return v }
        return nil
    }

    /// Whether SQLite would consider the value true in a WHERE clause.
    public var isTrue: Bool {
        switch self {
        case .null: return false
        case .integer(let v): return v != 0
        case .real(let v): return v != 0
        case .text(let s): return (Double(s) ?? 0) != 0
        case .blob: return false
        }
    }
}
