import Foundation
import SQLite
import Support

/// A deploy's rehearsal: the pending migrations applied to a scratch copy of the pre-deploy
/// snapshot by the same code as the live run, while no lock on the live database is held.
/// What it proves, on the copy: that the down parts give the snapshot's schema and rows back
/// (an undo may then run them instead of restoring the snapshot), and that every existing table
/// the migrations do not touch still holds what the snapshot holds.
public struct Rehearser: Sendable {
    /// What the down parts proved on the copy.
    public enum DownProof: Sendable {
        /// Up then down gives the snapshot back: the schema before and the down parts as they were.
        case proven(schemaBefore: [String], downSQL: [String])
        /// They do not, and why.
        case refused(String)
    }

    /// What the rehearsal found.
    public struct Outcome: Sendable {
        public let rehearsal: Rehearsal
        public let tablesCreated: Int
        /// Nil when not tried (additive plans, plans an undo undoes by dropping added columns,
        /// migrations without down parts).
        public let down: DownProof?
        /// Existing tables proven unchanged, and how many of them page by page; nil for a
        /// destructive plan (the plan compared its tables row by row).
        public let unchanged: (proven: Int, byPages: Int)?
    }

    public let busyTimeout: Duration
    /// Asked between statements: true stops the rehearsal (a signal).
    public let stop: @Sendable () -> Bool

    public init(busyTimeout: Duration, stop: @escaping @Sendable () -> Bool) {
        self.busyTimeout = busyTimeout
        self.stop = stop
    }

    /// Copies `snapshot` (a checked, plain database file) into a temp file in `scratchFolder`,
    /// runs `afterCopy` (a failpoint), applies `pending` there and proves what it can.
    /// - Throws: `Failure` `rehearsal.changed_existing_tables` naming the tables; what applying throws.
    public func rehearse(snapshot: String, in scratchFolder: String, pending: [MigrationFile], plan: MigrationPlan,
                         deployId: String, tryDown: Bool, afterCopy: () throws -> Void) throws -> Outcome {
        let scratchPath = DurableFile.temporaryPath(for: scratchFolder + "/rehearsal.db")
        defer { unlink(scratchPath); unlink(scratchPath + "-journal") }
        close(try DurableFile.createNew(scratchPath))
        try Connection(path: snapshot, mode: .immutable).copy(into: scratchPath, timeout: busyTimeout)
        let scratch = try Connection(path: scratchPath, mode: .readWrite)
        try afterCopy()
        let result = try Applier(failpoints: .none, proveUnchanged: false, stop: stop)
            .apply(pending, plan: plan, to: scratch, deployId: deployId, appliedAt: "rehearsal", rehearsal: nil)
        var down: DownProof?
        if tryDown && pending.contains(where: { $0.downSQL != nil }) {
            let reference = try Connection(path: snapshot, mode: .immutable)
            if let reason = try Undo.proveDown(pending, on: scratch, reference: reference) {
                down = .refused(reason)
            } else {
                down = .proven(schemaBefore: try Undo.schemaLines(reference), downSQL: pending.map { $0.downSQL ?? "" })
            }
        }
        var unchanged: (Int, Int)?
        if plan.classification != .destructive {
            // Tables a preserving migration touches were compared row by row by the plan.
            unchanged = try proveUnchanged(rehearsed: scratch, snapshot: snapshot, except: Set(plan.evidence.map(\.table)))
        }
        return Outcome(rehearsal: result.result, tablesCreated: result.tablesCreated.count, down: down, unchanged: unchanged)
    }

    /// Proves every existing table of the rehearsed copy holds what the snapshot holds. Tables
    /// none of whose pages differ from the snapshot's, at the same root page with the same
    /// definition, are byte-identical; the rest (pages an auto-vacuum database moved, say) get
    /// content fingerprints on both sides, two cores at once. Returns the tables proven and how
    /// many by their pages.
    /// - Throws: `Failure` `rehearsal.changed_existing_tables` naming the tables that changed.
    func proveUnchanged(rehearsed scratch: Connection, snapshot: String, except touched: Set<String>) throws -> (Int, Int) {
        let original = try Connection(path: snapshot, mode: .immutable)
        let before = try original.tableRoots().filter { $0.key != History.table && !touched.contains($0.key) }
        let identical = try scratch.tablesWithIdenticalPages(as: snapshot, referenceRoots: before, timeout: busyTimeout)
        let suspects = before.keys.filter { !identical.contains($0) }.sorted()
        // The snapshot's side on a connection of its own, on the other core.
        let (new, old) = try Parallel.both({ try suspects.map { try scratch.fingerprint(table: $0) } }, elsewhere: {
            let original = try Connection(path: snapshot, mode: .immutable)
            return try suspects.map { try original.fingerprint(table: $0) }
        }, reportingFirst: .elsewhere)
        let changed = zip(old, new).filter { $0 != $1 }.map(\.0.table)
        guard changed.isEmpty else {
            throw Failure(.rehearsalChangedTables, "the rehearsal changed existing tables on the copy: \(changed.joined(separator: ", "))",
                          hint: "the migration changes tables the plan did not see it change; fix it, the live database was not touched")
        }
        return (before.count, before.count - suspects.count)
    }
}
