import Foundation
import Testing

/// Files the previous release (0.4.0) wrote read unchanged (issue 24, item 8): the fixture
/// Fixtures/release-0.4.0.tgz.base64 (a gzip tar as base64 text, so that no database or backup
/// file is tracked in the tree) is a deployment root that release made — a deploy and its report, a
/// plain and a gzip backup with their manifests, and a deploy killed after its commit
/// (`after-commit=crash`), which left its journal (stage `restart`, committed) and its lock file.
@Suite("files of the previous release")
struct PreviousReleaseTests {
    static let fixture = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures/release-0.4.0.tgz.base64").path

    /// The fixture root unpacked in a temp folder (with the real `tar`).
    static func copy() throws -> String {
        let folder = NSTemporaryDirectory() + "deployctl-previous-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        let text = try String(contentsOfFile: fixture, encoding: .utf8)
        let archive = try #require(Data(base64Encoded: text, options: .ignoreUnknownCharacters))
        try archive.write(to: URL(fileURLWithPath: folder + "/fixture.tgz"))
        let unpacked = try Sandbox.exec("/usr/bin/tar", ["-xzf", folder + "/fixture.tgz", "-C", folder])
        try #require(unpacked.status == 0, "tar: \(unpacked.stderr)")
        return folder + "/release-0.4.0"
    }

    static func run(_ root: String, _ arguments: [String]) throws -> Sandbox.Result {
        try Sandbox.exec(Sandbox.binary, ["--root", root] + arguments, environment: ProcessInfo.processInfo.environment)
    }

    static func document(_ result: Sandbox.Result) throws -> Any {
        try JSONSerialization.jsonObject(with: Data(result.stdout.utf8))
    }

    @Test("its journal, manifests and deploy report are read: status, history, backups list and verify, and the next deploy recovers the journal")
    func readsPreviousRelease() throws {
        let root = try Self.copy()
        defer { try? FileManager.default.removeItem(atPath: (root as NSString).deletingLastPathComponent) }
        let status = try Self.run(root, ["status", "prod", "--json"])
        let state = try #require(try Self.document(status) as? [String: Any])
        #expect(status.status == 2 && state["unfinished_deploy"] as? String == "20261206T184117.640Z-dd0c", "\(status.stdout)")
        #expect((state["problems"] as? [[String: Any]])?.first?["message"] as? String ?? "" != "" && status.stdout.contains("stopped at stage restart"))
        #expect(state["last_deploy"] as? String == "20261206T184117.497Z-408f" && state["last_deploy_outcome"] as? String == "success")

        let history = try #require(try Self.document(try Self.run(root, ["history", "prod", "--json"])) as? [[String: Any]])
        let stages = try #require(history.first?["stages"] as? [[String: Any]])
        #expect(stages.map { $0["name"] as? String } == ["preflight", "plan", "snapshot", "rehearse", "migrate and verify", "restart"]
                && stages.allSatisfy { $0["status"] as? String == "ok" }, "\(stages)")

        let one = try #require(try Self.document(try Self.run(root, ["history", "prod", "20261206T184117.497Z-408f", "--json"])) as? [String: Any])
        #expect(one["outcome"] as? String == "success" && one["class"] as? String == "additive", "\(one)")
        let unknown = try Self.run(root, ["history", "prod", "20260101T000000.000Z-0000"])
        #expect(unknown.status == 66 && unknown.code == "deploy.not_found", "\(unknown.stderr)")

        let listed = try #require(try Self.document(try Self.run(root, ["backups", "list", "prod", "--json"])) as? [String: Any])
        let backups = try #require(listed["backups"] as? [[String: Any]])
        #expect(Set(backups.compactMap { $0["name"] as? String }) == ["app_pre_note_20261206_184117.db", "app_pre_cashback_20261206_184117.db",
                                                                     "app_daily_20261206_184117.db.gz"])
        #expect(backups.first { $0["name"] as? String == "app_pre_cashback_20261206_184117.db" }?["status"] as? String == "verified")
        let verify = try Self.run(root, ["backups", "verify", "prod", "--all"])
        #expect(verify.status == 0, "\(verify.stderr)")

        let deploy = try Self.run(root, ["deploy", "prod"])
        #expect(deploy.status == 0 && deploy.stdout.contains("interrupted after its commit at stage restart"), "\(deploy.stdout)\(deploy.stderr)")
        let after = try #require(try Self.document(try Self.run(root, ["history", "prod", "--json"])) as? [[String: Any]])
        #expect(after.map { $0["outcome"] as? String } == ["nothing to do", "recovered: kept", "success"], "\(after)")
        let columns = try Sandbox.exec("/usr/bin/sqlite3", [root + "/instances/prod/database/app.db", "SELECT name FROM pragma_table_info('loans')"])
        #expect(columns.stdout == "id\namount\nnote\n")
        #expect(!FileManager.default.fileExists(atPath: root + "/instances/prod/.deployctl.journal"))
    }
}
