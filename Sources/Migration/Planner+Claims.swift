import Foundation
import Support

extension Planner {
    /// The guide's safety claims, each proven only by a check that would fail were it false:
    /// SQLite's authorizer for what the statements may do, the rehearsal copy's evidence for
    /// what they did.
    static func claims(statements: [StatementPlan], evidence: [TableEvidence], createTables: Int, originalTables: [String],
                       untouched: [String], unchanged: Bool, fingerprintCopy: Bool, rerunClean: Bool) -> [SafetyClaim] {
        let nonAdditive = statements.flatMap(\.reasons)
        // What the statements may do that no copy can rule out: deleting (a DELETE, a trigger
        // that deletes, rows that cannot be followed, SQL not understood) or changing values.
        let risky = statements.filter { $0.classification == .destructive }.flatMap(\.reasons)
        let deletes = risky.filter(\.mayDelete).map(\.description)
        let updates = risky.filter { !$0.mayDelete }.map(\.description)
        let facts = evidence.flatMap(\.findings)
        let lost = facts.filter(\.losesData).map(\.description)
        let changed = facts.filter(\.changesValues).map(\.description)
        let nonAdditiveText = nonAdditive.map(\.description)
        let list = { (items: [String]) in items.prefix(6).joined(separator: "; ") + (items.count > 6 ? "; …" : "") }
        let onCopy = "on the rehearsal copy, every existing row matched by primary key or rowid"
        // Claim 5 names the tables it is about; with none left untouched it says so.
        let untouchedClaim = untouched.isEmpty ? "No other existing table is changed (the migrations write every existing table)"
            : "All other existing tables (\(untouched.prefix(8).joined(separator: ", "))\(untouched.count > 8 ? ", …" : "")) remain untouched"
        return [
            SafetyClaim(claim: "It only ADDS new objects (\(counted(createTables, "new table")))", proven: nonAdditive.isEmpty && evidence.isEmpty,
                        how: nonAdditive.isEmpty && evidence.isEmpty ? "no statement touches an existing table, by SQLite's authorizer and the rehearsal copy"
                                                                    : list(nonAdditiveText + evidence.flatMap(\.facts))),
            SafetyClaim(claim: "It does NOT modify any existing tables", proven: nonAdditive.isEmpty && evidence.isEmpty,
                        how: evidence.isEmpty && nonAdditive.isEmpty ? "no ALTER, DROP, index, trigger or write on existing objects, by SQLite's authorizer; every existing table's definition and row count equal on the rehearsal copy"
                                                                    : "changed: " + list(evidence.map(\.table) + nonAdditiveText)),
            SafetyClaim(claim: "It does NOT delete any data", proven: deletes.isEmpty && lost.isEmpty,
                        how: deletes.isEmpty && lost.isEmpty ? "no DELETE on existing tables (SQLite's authorizer); 0 rows deleted, no column or table dropped, \(onCopy)"
                                                             : list(lost + deletes)),
            SafetyClaim(claim: "It does NOT change any existing data", proven: updates.isEmpty && changed.isEmpty && deletes.isEmpty && lost.isEmpty,
                        how: updates.isEmpty && changed.isEmpty && deletes.isEmpty && lost.isEmpty
                            ? "no UPDATE of an existing column (SQLite's authorizer); every existing value equal, \(onCopy)"
                            : list(changed + updates + lost + deletes)),
            fingerprintCopy
                ? SafetyClaim(claim: untouchedClaim, proven: unchanged,
                              how: "content fingerprints of \(counted(untouched.count, "existing table")) equal before and after, on a rehearsal copy")
                : SafetyClaim(claim: untouchedClaim, proven: false,
                              how: "proven by the deploy: on a rehearsal copy the \(originalTables.count) existing tables' pages are identical to the snapshot's (or their content fingerprints equal), then SQLite's record of row changes inside the migrating transaction",
                              deferred: true),
            SafetyClaim(claim: "Safe to run multiple times (idempotent)", proven: rerunClean,
                        how: rerunClean ? "running the migrations again on the rehearsed copy succeeds and changes no schema object and no row; deployctl_migrations also records them"
                                        : "running the migrations again on the rehearsed copy fails or changes content; deployctl_migrations still prevents a second run"),
        ]
    }

}
