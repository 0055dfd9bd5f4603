import ArgumentParser
import Backup
import Foundation
import Orchestrator

struct BackupsList: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "list",
        abstract: "List an instance's backups, newest first, with their last verification.",
        discussion: """
            STATUS is the last check of the stored bytes: 'verified <when>', 'FAILED <when>: <why>' \
            or 'never verified' ('deployctl backups verify' checks them); 'checksum only <when>' for an \
            encrypted backup checked without [encryption] identity_file. Backups dated in the future \
            (a wrong clock wrote them) are listed last and marked; retention keeps them and restore \
            --latest never takes them. Files in the folder that deployctl did not write are listed \
            apart and left alone.
            Examples:
              deployctl backups list prod --label nightly
              deployctl backups list prod --remote primary      # the copies in an [[offsite]] store
            """)

    @OptionGroup var global: GlobalOptions

    @OptionGroup var selection: DatabaseOption

    @Argument(help: "The instance whose backups to list.", completion: InstanceCompletion.instances)
    var instance: String

    @Option(help: "Only backups with this label.")
    var label: String?

    @Flag(help: "List the copies in an [[offsite]] remote instead (--remote NAME, default: the only one).")
    var offsite = false

    @OptionGroup var remote: RemoteOptions

    func run() throws {
        let console = Console(global, selection)
        if offsite || remote.remote != nil || remote.host != nil { return try listRemote(console) }
        try console.run { runtime in try console.eachDatabase(instance, runtime) { console, runtime in
            let entries = try BackupInventory(runtime).list(instance: instance, label: label)
            let others = try BackupInventory(runtime).otherFiles(instance: instance)
            let now = runtime.clock()
            if global.json {
                struct Other: Encodable { let name: String; let reason: String }
                struct Document: Encodable { let instance: String; let backups: [BackupDocument]; let not_backups: [Other] }
                return try console.json(Document(instance: instance, backups: entries.map { BackupDocument($0, now: now) },
                                                 not_backups: others.map { Other(name: $0.name, reason: $0.reason) }))
            }
            if entries.isEmpty {
                console.line("No backups for \(instance)\(label.map { " with label \($0)" } ?? "").")
            } else {
                console.line(Console.table(
                    ["NAME", "CREATED (UTC)", "SIZE", "COMPRESSED", "LABEL", "STATUS"],
                    entries.map {
                        [$0.name, Console.time($0.createdAt) + ($0.isFutureDated(now: now) ? " (future!)" : ""),
                         Console.size($0.bytes), ($0.compressed ? $0.compression.rawValue : "no") + ($0.encrypted ? " (age)" : ""), $0.label, Self.status($0)]
                    }))
            }
            for entry in entries where entry.isFutureDated(now: now) {
                console.line("warning: \(entry.name) is dated \(Console.time(entry.createdAt)), after the clock's now (\(Console.time(now))): "
                             + "written under a wrong clock? It is listed last, never taken as the newest, and retention keeps it; remove it by hand once checked.")
            }
            if !others.isEmpty {
                console.line("\nNot deployctl backups (left alone: never restored, verified or removed):")
                for other in others { console.line("  \(other.name): \(other.reason)") }
            }
        } }
    }

    /// The copies in a remote, with whether each is good and whether this host has it locally.
    func listRemote(_ console: Console) throws {
        try console.run { runtime in
            let (target, copies, others) = try RemoteBackups(runtime).list(instance: instance, remote: remote.remote, host: remote.host)
            let shown = copies.filter { label == nil || $0.label == label }
            if global.json {
                struct Item: Encodable {
                    let name: String; let key: String; let host: String; let bytes: Int64; let created_at: Date?; let label: String
                    let sha256: String?; let good: Bool; let problem: String?; let local: Bool
                }
                struct Other: Encodable { let name: String; let reason: String }
                struct Document: Encodable { let instance: String; let remote: String; let backups: [Item]; let not_backups: [Other] }
                return try console.json(Document(instance: instance, remote: target.name, backups: shown.map {
                    Item(name: $0.name, key: $0.key, host: $0.host, bytes: $0.bytes, created_at: $0.createdAt, label: $0.label,
                         sha256: $0.manifest?.sha256, good: $0.problem == nil, problem: $0.problem, local: $0.local)
                }, not_backups: others.map { Other(name: $0.name, reason: $0.reason) }))
            }
            // A database of a set keeps its copies under <prefix>/<database>/.
            let prefix = [target.prefix, runtime.database ?? ""].filter { !$0.isEmpty }.joined(separator: "/")
            let folder = "s3://\(target.bucket)/\(prefix.isEmpty ? "" : prefix + "/")\(remote.host ?? target.hostId)/"
            if shown.isEmpty {
                console.line("No copies of \(instance) in remote \(target.name) (\(folder)).")
            } else {
                console.line("Remote \(target.name): \(folder)")
                console.line(Console.table(["NAME", "CREATED (UTC)", "SIZE", "LABEL", "STATUS", "LOCAL"], shown.map {
                    [$0.name, $0.createdAt.map(Console.time) ?? "?", Console.size($0.bytes), $0.label, $0.problem.map { "NOT GOOD: " + $0 } ?? "good",
                     $0.local ? "yes" : "no"]
                }))
            }
            if !others.isEmpty {
                console.line("\nNot deployctl copies (left alone):")
                for other in others { console.line("  \(other.name): \(other.reason)") }
            }
        }
    }

    /// `verified 2026-11-25 03:00`, `FAILED 2026-11-25 03:00: sha256 mismatch`, `never verified`;
    /// `checksum only …` for an encrypted backup checked without its key.
    static func status(_ entry: BackupEntry) -> String {
        guard let manifest = entry.manifest else { return entry.status.rawValue }
        let minute = { (date: Date) in String(Console.time(date).dropLast(3)) }
        if let check = manifest.verification, check.sha256 == manifest.sha256 {
            guard check.result != .ok else { return check.check == .sha256 ? "checksum only \(minute(check.at))" : "verified \(minute(check.at))" }
            return "FAILED \(minute(check.at)): \(shortReason(check.reason ?? "see backups verify", name: entry.name))"
        }
        return manifest.verifiedAt.map { "verified \(minute($0))" } ?? "never verified"
    }

    /// A table-sized reason: `sha256 mismatch`, or the check's message without the backup's name.
    static func shortReason(_ reason: String, name: String) -> String {
        if reason.contains("SHA-256 is") { return "sha256 mismatch" }
        var text = reason
        if text.hasPrefix("backup \(name) ") { text = String(text.dropFirst("backup \(name) ".count)) }
        return text.count > 70 ? String(text.prefix(69)) + "…" : text
    }
}
