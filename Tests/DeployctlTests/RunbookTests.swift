import Foundation
import Testing

/// Every `sh` block of `Runbooks/` runs as written, in order, against a temporary root holding
/// the repository's instance configs and migrations and a generated lending database for dev,
/// testing and prod. A line ending in `# exit N` must exit with N, every other line with 0.
@Suite("runbooks")
struct RunbookTests {
    static let order = ["deploy-and-restore.md", "cron.md", "troubleshooting.md"]

    static let repository: URL = {
        var url = URL(fileURLWithPath: #filePath)
        while !FileManager.default.fileExists(atPath: url.appendingPathComponent("Package.swift").path) { url.deleteLastPathComponent() }
        return url
    }()

    /// The commands of a runbook's `sh` blocks, with the exit code each must give.
    static func commands(in text: String) -> [(line: String, exit: Int32)] {
        var commands = [(String, Int32)]()
        var inShell = false
        for raw in text.split(separator: "\n", omittingEmptySubsequences: false) {
            let line = raw.trimmingCharacters(in: .whitespaces)
            if line.hasPrefix("```") {
                inShell = !inShell && line == "```sh"
                continue
            }
            guard inShell, !line.isEmpty, !line.hasPrefix("#") else { continue }
            var exit: Int32 = 0
            if let range = line.range(of: #"#\s*exit\s+(\d+)\s*$"#, options: .regularExpression) {
                exit = Int32(line[range].filter(\.isNumber)) ?? 0
            }
            commands.append((line, exit))
        }
        return commands
    }

    @Test("every runbook is in the order above, and every sh block in it runs as written")
    func runbooksRun() throws {
        let folder = Self.repository.appendingPathComponent("Runbooks")
        let present = try FileManager.default.contentsOfDirectory(atPath: folder.path).filter { $0.hasSuffix(".md") }.sorted()
        #expect(present == Self.order.sorted(), "a runbook is not run by this test: \(present)")

        let root = NSTemporaryDirectory() + "deployctl-runbooks-" + UUID().uuidString
        defer { try? FileManager.default.removeItem(atPath: root) }
        let instances = Self.repository.appendingPathComponent("instances").path
        try FileManager.default.createDirectory(atPath: root + "/instances", withIntermediateDirectories: true)
        try FileManager.default.copyItem(atPath: instances + "/deploy.toml", toPath: root + "/instances/deploy.toml")
        try FileManager.default.copyItem(atPath: instances + "/migrations", toPath: root + "/instances/migrations")
        // As a fresh clone has it: configs and the example's seed, no database (the runbook makes them).
        for name in ["dev", "testing", "prod", "example"] {
            try FileManager.default.createDirectory(atPath: root + "/instances/\(name)", withIntermediateDirectories: true)
            try FileManager.default.copyItem(atPath: instances + "/\(name)/instance.toml", toPath: root + "/instances/\(name)/instance.toml")
        }
        try FileManager.default.copyItem(atPath: instances + "/example/seed.sql", toPath: root + "/instances/example/seed.sql")
        var environment = ProcessInfo.processInfo.environment
        environment["PATH"] = URL(fileURLWithPath: Sandbox.binary).deletingLastPathComponent().path + ":" + (environment["PATH"] ?? "/usr/bin:/bin")
        environment["DEPLOYCTL_ROOT"] = root
        environment["NO_COLOR"] = "1"
        for runbook in Self.order {
            let text = try String(contentsOf: folder.appendingPathComponent(runbook), encoding: .utf8)
            let commands = Self.commands(in: text)
            #expect(!commands.isEmpty, "\(runbook) has no sh block")
            for (line, exit) in commands {
                let result = try Sandbox.exec("/bin/sh", ["-c", "cd '\(root)' && " + line], environment: environment)
                #expect(result.status == exit, "\(runbook): `\(line)` exited \(result.status), not \(exit)\n\(result.stdout)\(result.stderr)")
            }
        }
    }
}
