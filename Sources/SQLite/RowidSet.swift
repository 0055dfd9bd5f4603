/// A set of rowids, small when they come in ascending runs (as SQLite assigns new rowids): each
/// run of consecutive rowids is one range, and rowids out of order go to a hash set.
///
/// Inserting the next rowid of the last run, `contains` and `remove` cost O(1) or O(log runs);
/// removing from the middle of a run splits it (O(runs) for the array insert). A table that
/// gains 4M rows in rowid order costs one range, not 4M hash-set entries (~64 MiB).
public struct RowidSet: Sendable, Equatable {
    /// Ascending, disjoint, non-adjacent closed ranges.
    private var runs = [ClosedRange<Int64>]()
    /// Rowids that did not extend the last run (none of them inside a run).
    private var others = Set<Int64>()

    public init() {}

    /// Whether the set is empty.
    public var isEmpty: Bool { runs.isEmpty && others.isEmpty }

    /// The number of rowids in the set.
    public var count: Int { runs.reduce(others.count) { $0 + Int($1.upperBound - $1.lowerBound) + 1 } }

    /// Whether `rowid` is in the set.
    public func contains(_ rowid: Int64) -> Bool {
        run(holding: rowid) != nil || others.contains(rowid)
    }

    /// Adds `rowid`.
    public mutating func insert(_ rowid: Int64) {
        // A removal may have shortened the last run below a rowid kept in `others`.
        if !others.isEmpty && others.contains(rowid) { return }
        if let last = runs.last {
            if rowid == last.upperBound &+ 1 && rowid > last.upperBound {
                runs[runs.count - 1] = last.lowerBound...rowid
                return
            }
            if rowid > last.upperBound &+ 1 && rowid > last.upperBound {
                runs.append(rowid...rowid)
                return
            }
            if run(holding: rowid) != nil { return }
            others.insert(rowid)
        } else {
            runs.append(rowid...rowid)
        }
    }

    /// Removes `rowid`; returns whether it was there.
    @discardableResult
    public mutating func remove(_ rowid: Int64) -> Bool {
        if others.remove(rowid) != nil { return true }
        guard let index = run(holding: rowid) else { return false }
        let range = runs[index]
        switch (rowid == range.lowerBound, rowid == range.upperBound) {
        case (true, true): runs.remove(at: index)
        case (true, false): runs[index] = (rowid + 1)...range.upperBound
        case (false, true): runs[index] = range.lowerBound...(rowid - 1)
        case (false, false):
            runs[index] = range.lowerBound...(rowid - 1)
            runs.insert((rowid + 1)...range.upperBound, at: index + 1)
        }
        return true
    }

    /// The index of the run holding `rowid` (binary search).
    private func run(holding rowid: Int64) -> Int? {
        var low = 0
        var high = runs.count
        while low < high {
            let middle = (low + high) / 2
            if runs[middle].upperBound < rowid { low = middle + 1 } else { high = middle }
        }
        return low < runs.count && runs[low].contains(rowid) ? low : nil
    }
}
