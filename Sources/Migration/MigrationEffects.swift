import Foundation
import SQLite
import Support

/// What each of several pending migrations did on its own (SPEC: each migration has its own
/// class, from its own effect): before a migration, a recorder whose existing tables and columns
/// are those that existed before the deploy (followed through earlier renames and drops), so a
/// table or column an earlier migration of the set created counts as new; after it, that
/// migration's evidence. Row counts are carried from one migration's evidence to the next, not
/// counted again.
struct MigrationEffects {
    /// Per current table name, its pre-deploy columns (lower-cased, current spelling).
    private var kept: [String: Set<String>]
    private var rowCounts: [String: Int]
    private var index = 0

    final class Own {
        let recorder: EvidenceRecorder
        var replaced = Set<String>()
        init(_ recorder: EvidenceRecorder) { self.recorder = recorder }
    }

    init(existing: [String: Set<String>], rowCounts: [String: Int]) {
        kept = existing
        self.rowCounts = rowCounts
    }

    /// A recorder for the migration about to run.
    mutating func begin(_ file: MigrationFile, on db: Connection) throws -> Own {
        index += 1
        let tables = try db.tableNames().filter { $0 != History.table }
        var newColumns = [String: Set<String>]()
        for table in tables {
            guard let old = kept[table] else { continue }
            newColumns[table] = Set(try EvidenceRecorder.columns(db, table).map { $0.lowercased() }).subtracting(old)
        }
        return Own(try EvidenceRecorder(db, prefix: "deployctl_before_m\(index)_", newTables: Set(tables).subtracting(kept.keys),
                                        newColumns: newColumns))
    }

    /// The migration's evidence; carries the pre-deploy tables and columns, and the row
    /// counts, through what it did.
    mutating func end(_ own: Own) throws -> [TableEvidence] {
        let evidence = try own.recorder.compare(rowCounts: rowCounts, replaced: own.replaced)
        for e in evidence {
            var columns = kept.removeValue(forKey: e.table) ?? []
            rowCounts[e.table] = nil
            guard let final = e.finalName else { continue }
            for column in e.columnsDropped.keys { columns.remove(column.lowercased()) }
            for (old, new) in e.columnsRenamed {
                columns.remove(old.lowercased())
                columns.insert(new.lowercased())
            }
            kept[final] = columns
            rowCounts[final] = e.rowsBefore - e.rowsDeleted + e.rowsAdded
        }
        return evidence
    }
}
