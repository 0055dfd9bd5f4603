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
            or 'never verified' ('deployctl backups verify' checks them). Backups dated in the future \
            (a wrong clock wrote them) are listed last and marked; retention keeps them and restore \
            --latest never takes them. Files in the folder that deployctl did not write are listed \
            apart and left alone.
            """)

    @OptionGroup var global: GlobalOptions

    @Argument(help: "The instance whose backups to list.")
    var instance: String

    @Option(help: "Only backups with this label.")
    var label: String?

    func run() throws {
        let console = Console(global)
        try console.run { runtime in
            let entries = try runtime.listBackups(instance: instance, label: label)
            let others = try runtime.otherBackupFiles(instance: instance)
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
                         Console.size($0.bytes), $0.compressed ? $0.compression.rawValue : "no", $0.label, Self.status($0)]
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
        }
    }

    /// `verified 2026-11-25 03:00`, `FAILED 2026-11-25 03:00: sha256 mismatch`, `never verified`.
    static func status(_ entry: BackupEntry) -> String {
        guard let manifest = entry.manifest else { return entry.status }
        let minute = { (date: Date) in String(Console.time(date).dropLast(3)) }
        if let check = manifest.verification, check.sha256 == manifest.sha256 {
            guard check.result != "ok" else { return "verified \(minute(check.at))" }
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
