import Foundation
import Testing

/// docs/json.md names every member each command prints with `--json`, every manifest field and
/// every metric: the binary is run and its output compared with the page.
@Suite("--json contract")
struct JSONContractTests {
    static let page: String = {
        (try? String(contentsOf: RunbookTests.repository.appendingPathComponent("docs/json.md"), encoding: .utf8)) ?? ""
    }()

    /// The text of the page's section whose heading starts with `heading`.
    static func section(_ heading: String) -> String {
        let parts = page.components(separatedBy: "\n## ")
        return parts.first { $0.hasPrefix(heading) } ?? ""
    }

    /// Member names of `value` and of the objects directly inside it (or inside its arrays),
    /// but not the keys of data maps (`existing_tables`: table names).
    static func members(_ value: Any, depth: Int = 0) -> Set<String> {
        var names = Set<String>()
        if let object = value as? [String: Any] {
            for (key, inner) in object {
                names.insert(key)
                if depth == 0, key != "existing_tables" { names.formUnion(members(inner, depth: 1)) }
            }
        } else if let array = value as? [Any] {
            for element in array { names.formUnion(members(element, depth: depth)) }
        }
        return names
    }

    static func check(_ box: Sandbox, _ arguments: [String], section heading: String, status: Int32 = 0) throws {
        let result = try box.deployctl(arguments + ["--json"])
        #expect(result.status == status, "\(arguments): \(result.stderr)")
        let document = try JSONSerialization.jsonObject(with: Data(result.stdout.utf8), options: [.fragmentsAllowed])
        let section = Self.section(heading)
        #expect(!section.isEmpty, "docs/json.md has no section '\(heading)'")
        let missing = members(document).filter { !section.contains("`\($0)`") }.sorted()
        #expect(missing.isEmpty, "docs/json.md, \(heading): members not named: \(missing)")
    }

    @Test("every member of every command's --json document, every manifest field and every metric is named in docs/json.md")
    func documented() throws {
        let box = try Sandbox()
        try box.installCashbackMigration()
        try Self.check(box, ["plan", "prod"], section: "`deployctl plan`")
        try Self.check(box, ["deploy", "prod", "--yes", "--skip-promotion-check"], section: "`deployctl deploy`")
        try Self.check(box, ["snapshot", "prod", "--keep-last", "1"], section: "`deployctl snapshot`")
        try Self.check(box, ["snapshot", "prod", "--keep-last", "1"], section: "`deployctl snapshot`")
        try box.write("instances/prod/backups/notes.txt", "not a backup")
        try Self.check(box, ["backups", "list", "prod"], section: "`deployctl backups list`")
        try Self.check(box, ["backups", "verify", "prod"], section: "`deployctl backups verify`")
        try Self.check(box, ["status", "prod", "--metrics-file", box.path("metrics.prom")], section: "`deployctl status`")
        try Self.check(box, ["status", "all"], section: "`deployctl status`")
        try Self.check(box, ["history", "prod"], section: "`deployctl history`")
        try Self.check(box, ["restore", "prod", "--latest", "--dry-run"], section: "`deployctl restore`")
        _ = try box.sqlite(box.databasePath, "DELETE FROM payment WHERE id % 7 = 0")
        try Self.check(box, ["restore", "prod", "--latest", "--yes"], section: "`deployctl restore`")
        try Self.check(box, ["verify", "prod"], section: "`deployctl verify`")
        try Self.check(box, ["keygen", "--output", box.path("key.age")], section: "`deployctl keygen`")
        try Self.check(box, ["keygen", "--signing", "prod"], section: "`deployctl keygen`")
        try FileManager.default.createDirectory(atPath: box.path("app"), withIntermediateDirectories: true)
        try box.makeLendingDatabase(path: box.path("app/app.db"), journalMode: "wal", rows: 5)
        try Self.check(box, ["init", "app", "--database", box.path("app/app.db"), "--backups", box.path("app-backups")], section: "`deployctl init`")
        try Self.check(box, ["status", "nosuch"], section: "`deployctl` errors", status: 66)

        let manifest = try #require(box.allBackupFiles().first { $0.hasSuffix(".json") })
        let fields = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: box.backupsFolder + "/" + manifest)))
        let missing = Self.members(fields).filter { !Self.section("Manifest").contains("`\($0)`") }.sorted()
        #expect(missing.isEmpty, "docs/json.md, Manifest: fields not named: \(missing)")

        let metrics = try String(contentsOfFile: box.path("metrics.prom"), encoding: .utf8)
        let families = metrics.split(separator: "\n").filter { $0.hasPrefix("# TYPE ") }.map { String($0.split(separator: " ")[2]) }
        #expect(families.count >= 8)
        #expect(families.filter { !Self.section("Metrics").contains("`\($0)`") }.isEmpty, "\(families)")
    }
}
