import Backup
import Foundation
import Locking
import SQLite
import Support

/// The result of `backups prune`.
public struct PruneOutcome: Sendable {
    /// Every backup considered, with the rules that keep it or none.
    public let decisions: [RetentionDecision]
    /// Whether anything was removed (false for `--dry-run`).
    public let removed: Bool
    public var doomed: [BackupEntry] { decisions.filter { !$0.kept }.map(\.entry) }
}

/// `deployctl backups prune`, first step: what `policy` would remove, decided without the
/// instance lock, so that a question to the operator blocks no snapshot. `emptied` names the
/// labels that would be left with no backup `restore --latest` could take (and how many each
/// loses): the CLI asks about them (on a terminal, or `--yes`) before `perform()`.
public struct PreparedPrune {
    let instance: InstanceContext
    let policy: RetentionPolicy
    let label: String?
    /// Every backup considered, with the rules that keep it or none (what `--dry-run` shows).
    public let decisions: [RetentionDecision]
    /// Labels this prune would leave without a usable backup, with how many backups each loses.
    public var emptied: [String: Int] { Self.emptied(decisions) }

    /// Decides what `policy` removes; reads only.
    /// - Throws: `Failure` for the instance or label; `.badData` when an unfinished deploy
    ///   journal cannot be read (which backup it needs is then unknown).
    public static func prepare(_ runtime: Runtime, instance name: String, policy: RetentionPolicy, label: String?, dryRun: Bool) throws -> PreparedPrune {
        if let label { try BackupStore.validate(label: label) }
        let instance = try runtime.instance(name, for: dryRun ? .listBackups : .manageBackups)
        return PreparedPrune(instance: instance, policy: policy, label: label, decisions: try decide(instance, policy: policy, label: label))
    }

    /// Restore copies follow keep_restore_copies, unless `label` names their label.
    static func decide(_ instance: InstanceContext, policy: RetentionPolicy, label: String?) throws -> [RetentionDecision] {
        let store = instance.store
        return Retention.decide(store.entries(), policy: policy, label: label, protected: try instance.protectedBackups(), now: store.now,
                                restoreCopies: label == nil ? instance.config.restoreCopies : nil)
    }

    /// Takes the instance lock, decides again, and removes what the policy does not keep;
    /// refused when the decision now empties a label the operator was not asked about, or,
    /// when the operator was asked (`emptied` is not empty), would remove a backup the question
    /// did not count (a snapshot taken while the question waited).
    /// - Throws: `Failure` `backup.changed_while_asked`; what removing throws.
    public func perform() throws -> PruneOutcome {
        let lock = try instance.lock()
        defer { lock.release() }
        let decisions = try Self.decide(instance, policy: policy, label: label)
        let confirmed = emptied
        if let label = Self.emptied(decisions).keys.sorted().first(where: { confirmed[$0] == nil }) {
            throw Failure(.backupsChangedWhileAsked, "the backups changed while deployctl asked: pruning now leaves label \(label) without a usable backup; nothing was removed",
                          hint: "run the prune again")
        }
        let asked = Set(Self.names(kept: false, in: self.decisions))
        if !confirmed.isEmpty, let unseen = Self.names(kept: false, in: decisions).first(where: { !asked.contains($0) }) {
            throw Failure(.backupsChangedWhileAsked, "the backups changed while deployctl asked: \(unseen) would be removed too, and it was not counted in the question; nothing was removed",
                          hint: "run the prune again")
        }
        let outcome = PruneOutcome(decisions: decisions, removed: true)
        let store = instance.store
        try store.remove(outcome.doomed)
        if label == nil { _ = RestoreCopies(instance).tidy(store: store, compress: true) }
        return outcome
    }

    /// The names of the backups `decisions` keep (or remove).
    private static func names(kept: Bool, in decisions: [RetentionDecision]) -> [String] {
        decisions.filter { $0.kept == kept }.map(\.entry.name)
    }

    /// Labels that would lose backups and keep none `restore --latest` could take, with how
    /// many they lose.
    static func emptied(_ decisions: [RetentionDecision]) -> [String: Int] {
        var emptied = [String: Int]()
        for (label, list) in Dictionary(grouping: decisions, by: \.entry.label) {
            let removed = list.filter { !$0.kept }.count
            if removed > 0 && !list.contains(where: { $0.kept && !$0.unusable }) { emptied[label] = removed }
        }
        return emptied
    }
}

extension InstanceContext {
    /// Backups an unfinished deploy journal refers to, with why: retention never removes them.
    /// - Throws: `Failure` `journal.unreadable` when a journal exists but cannot be read: which
    ///   backup it needs is then unknown, so nothing may be pruned.
    /// `retention`: also the newest complete set of each label (kept from automatic pruning;
    /// an operator may still remove one by name).
    func protectedBackups(retention: Bool = true) throws -> [String: String] {
        var protected = [String: String]()
        if let journal = try DeployJournal.read(path: config.journalPath), let snapshot = journal.snapshot {
            protected[snapshot] = "an unfinished deploy refers to it"
        }
        guard let database = config.databaseName else { return protected }
        // A database of a set: the copies an unfinished set restore needs, and this database's
        // member of the newest complete set of each label (retention per database must not
        // leave the instance without a set to restore).
        let store = self.store
        if let restore = try SetRestoreJournal.read(config) { protected.merge(restore.needs(database, in: store)) { a, _ in a } }
        if retention {
            for (name, reason) in newestCompleteSets(of: database) where protected[name] == nil { protected[name] = reason }
        }
        return protected
    }

    /// Per label, this database's member of the newest set that has a good member in every
    /// database of the instance.
    private func newestCompleteSets(of database: String) -> [String: String] {
        guard let all = try? setMembers, !all.isEmpty else { return [:] }
        let entries = all.map { member in member.store.entries().filter { $0.status != .failed } }
        let names = all.compactMap(\.config.databaseName)
        guard let mine = names.firstIndex(of: database) else { return [:] }
        var chosen = [String: String]()
        var labels = Set<String>()
        for entry in entries[mine] {  // newest first
            guard let id = entry.manifest?.set?.id, !labels.contains(entry.label),
                  entries.allSatisfy({ backups in backups.contains { $0.manifest?.set?.id == id } }) else { continue }
            labels.insert(entry.label)
            chosen[entry.name] = "the newest complete set of label \(entry.label) (\(names.count) databases)"
        }
        return chosen
    }
}
