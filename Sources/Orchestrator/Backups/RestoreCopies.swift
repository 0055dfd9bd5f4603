import Backup
import Foundation
import Locking
import SQLite
import Support

/// What tidying the copies restores made did.
struct RestoreCopiesTidied {
    /// Copies beyond `keep_restore_copies`, removed.
    var removed = [BackupEntry]()
    /// Plain copies stored again compressed: (old name, new backup).
    var compressed = [(from: String, to: BackupEntry)]()
    /// What could not be done, for a warning (the command itself succeeded).
    var problems = [String]()
}

/// The copies restores make of the state they replace (`pre_restore`, `pre_putback`): kept as
/// `keep_restore_copies` says, and stored compressed once they are not needed back at once.
struct RestoreCopies: Sendable {
    let instance: InstanceContext

    init(_ instance: InstanceContext) { self.instance = instance }

    /// Keeps the newest `keep_restore_copies` good `pre_restore` and `pre_putback` copies of
    /// each label and removes the older ones (never one in `protected`, one an unfinished
    /// deploy refers to, or one dated in the future); with `compress`, stores the kept plain
    /// ones again compressed as the config says (`Snapshotter.recompress`). Runs under the
    /// instance lock the caller holds, after the caller's own work succeeded: what fails here
    /// is reported as a problem and warned about, never turned into the command's failure.
    func tidy(store: BackupStore, protected: [String: String] = [:], compress: Bool) -> RestoreCopiesTidied {
        let config = instance.config
        var tidied = RestoreCopiesTidied()
        do {
            var copies = store.entries().filter { Retention.restoreCopyLabels.contains($0.label) }
            guard !copies.isEmpty else { return tidied }
            // One state kept once: a plain copy and the compressed copies made from it (a crash
            // between making one and removing the plain, then another run compressing it again)
            // would each count as a state, and push an older, different state out.
            var made = [String: [BackupEntry]]()
            for copy in copies where copy.compressed { if let from = copy.manifest?.compressedFrom { made[from, default: []].append(copy) } }
            var duplicates = [BackupEntry]()
            for (from, compressedCopies) in made {
                let plain = copies.filter { $0.name == from && !$0.compressed }
                if let good = compressedCopies.first(where: { $0.status == .verified }) {
                    duplicates += compressedCopies.filter { $0.name != good.name } + plain
                } else if !plain.isEmpty {
                    duplicates += compressedCopies  // not checked good: the plain one stays, to be compressed again
                } else {
                    duplicates += compressedCopies.dropFirst()
                }
            }
            try store.remove(duplicates)
            tidied.removed += duplicates
            let gone = Set(duplicates.map(\.name))
            copies.removeAll { gone.contains($0.name) }
            let guarded = try instance.protectedBackups().merging(protected) { a, _ in a }
            let decisions = Retention.decide(copies, policy: RetentionPolicy(), protected: guarded, now: store.now, restoreCopies: config.restoreCopies)
            let doomed = decisions.filter { !$0.kept }.map(\.entry)
            try store.remove(doomed)
            tidied.removed += doomed
            guard compress, config.compression != .none else { return tidied }
            // A copy something still needs by name (an unfinished set restore) keeps its name.
            for decision in decisions where decision.kept && !decision.entry.compressed && !decision.entry.encrypted && decision.entry.status != .failed
                && guarded[decision.entry.name] == nil {
                try instance.runtime.checkInterruption("the restore copies not yet compressed stay as they are")
                do {
                    let made = try Snapshotter(store: store).recompress(decision.entry, as: config.compression, now: instance.runtime.clock())
                    tidied.compressed.append((decision.entry.name, made))
                } catch let error as DeployctlError {
                    tidied.problems.append("\(decision.entry.name) was not compressed: \(error.message)")
                }
            }
        } catch let error as DeployctlError {
            tidied.problems.append(error.message)
        } catch {
            tidied.problems.append("\(error)")
        }
        for problem in tidied.problems { instance.runtime.events(.warning("restore copies: \(problem)")) }
        for (from, to) in tidied.compressed { instance.runtime.events(.fact("stored \(from) \(config.compression.rawValue)-compressed as \(to.name) (\(SpaceNeeds.format(to.bytes)))")) }
        return tidied
    }
}
