import Backup
import Foundation
import Offsite
import Support

/// `deployctl backups prune --remote`, first step: under the remote's prune lease
/// (`RemoteLease`, not taken for a dry run), what `policy` would remove of this host's copies.
/// `emptied` names the labels that would be left with no copy (and how many each loses): the
/// CLI asks about them (on a terminal, or `--yes`) before `perform()`. Copies without a
/// manifest, or whose manifest this instance's key did not sign, are neither counted nor
/// removed (the next push replaces them); other hosts' folders are never touched. The lease is
/// held until `perform()` or `release()`.
public final class PreparedRemotePrune {
    let runtime: Runtime
    let store: RemoteStore
    private var lease: RemoteLease?
    /// Every copy considered, with the rules that keep it or none (what `--dry-run` shows).
    public let decisions: [RetentionDecision]

    /// Labels this prune would leave without any copy, with how many copies each loses.
    public var emptied: [String: Int] {
        var emptied = [String: Int]()
        for (label, group) in Dictionary(grouping: decisions, by: \.entry.label) where group.allSatisfy({ !$0.kept }) {
            emptied[label] = group.count
        }
        return emptied
    }

    private init(runtime: Runtime, store: RemoteStore, lease: RemoteLease?, decisions: [RetentionDecision]) {
        self.runtime = runtime
        self.store = store
        self.lease = lease
        self.decisions = decisions
    }

    deinit { release() }

    /// Takes the lease (unless `dryRun`), lists this host's copies and decides what `policy`
    /// (or else the remote's own rules) removes.
    /// - Throws: `Failure` `offsite.no_retention_rule`, `offsite.lease_held`, store failures.
    public static func prepare(_ runtime: Runtime, instance name: String, remote: String?, policy: RetentionPolicy, label: String?,
                               dryRun: Bool) throws -> PreparedRemotePrune {
        let instance = try runtime.instance(name, for: nil)
        let target = try instance.config.remote(remote)
        let rules = policy.isEmpty ? target.retention : policy
        guard !rules.isEmpty else {
            throw Failure(.offsiteNoRetentionRule, "no retention rule for remote '\(target.name)'",
                          hint: "pass --keep-last N (or another rule), or set keep_last in its [[offsite]] table")
        }
        let store = try instance.remoteStore(target, signingKey: try instance.signingKey(create: false))
        let lease = dryRun ? nil : try store.takeLease(now: runtime.clock())
        do {
            let entries = try RemoteBackups(runtime).listing(instance, store, host: nil, allowUnsigned: false).backups.compactMap { copy -> BackupEntry? in
                guard let manifest = copy.manifest, copy.issue == nil else { return nil }
                return BackupEntry(name: copy.name, path: copy.key, manifest: manifest, label: manifest.label, createdAt: manifest.createdAt, bytes: copy.bytes)
            }
            let decisions = Retention.decide(entries, policy: rules, label: label, now: runtime.clock())
            return PreparedRemotePrune(runtime: runtime, store: store, lease: lease, decisions: decisions)
        } catch {
            lease?.release()
            throw error
        }
    }

    /// Removes each copy the decision does not keep, its manifest first, then releases the lease.
    /// - Returns: the decisions.
    /// - Throws: `Failure` `command.interrupted` between copies; store failures.
    public func perform() throws -> [RetentionDecision] {
        defer { release() }
        for decision in decisions where !decision.kept {
            try runtime.checkInterruption("the prune stopped; every copy removed so far lost its manifest first")
            try store.remove(key: decision.entry.path)
        }
        return decisions
    }

    /// Releases the lease (nothing removed unless `perform()` ran).
    public func release() {
        lease?.release()
        lease = nil
    }
}
