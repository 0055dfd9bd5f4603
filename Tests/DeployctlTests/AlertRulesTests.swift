import Foundation
import Testing

/// `contrib/prometheus` and `contrib/grafana`: alert rules tested with promtool against series
/// that should and should not fire them, a dashboard whose every query promtool parses, and
/// both naming only series deployctl really writes.
@Suite("alert rules and dashboard")
struct AlertRulesTests {
    static let promtool = ["/usr/bin/promtool", "/usr/local/bin/promtool"].first { FileManager.default.isExecutableFile(atPath: $0) } ?? "promtool"
    static var contrib: URL { RunbookTests.repository.appendingPathComponent("contrib") }

    /// The `deployctl_*` series names in `text`.
    static func seriesNames(_ text: String) -> Set<String> {
        let regex = try! NSRegularExpression(pattern: "deployctl_[a-z_]+[a-z]")
        return Set(regex.matches(in: text, range: NSRange(text.startIndex..., in: text)).map { String(text[Range($0.range, in: text)!]) })
    }

    /// The families the built deployctl writes to a metrics file after a snapshot, a check, a
    /// deploy and a status run.
    static func writtenFamilies() throws -> Set<String> {
        let box = try Sandbox(config: "[database]\npath = \"database/lending_app_prod.db\"\n[backups]\npath = \"backups\"\nmax_backup_age = \"26h\"\n")
        try box.installCashbackMigration()
        let metrics = box.path("deployctl.prom")
        for command in [["snapshot", "prod"], ["backups", "verify", "prod"], ["deploy", "prod", "--yes", "--skip-promotion-check"], ["status", "prod"]] {
            let result = try box.deployctl(command + ["--quiet", "--metrics-file", metrics])
            #expect(result.status == 0, "\(command): \(result.stderr)")
        }
        let text = try String(contentsOfFile: metrics, encoding: .utf8)
        return Set(text.split(separator: "\n").filter { $0.hasPrefix("# TYPE ") }.map { String($0.split(separator: " ")[2]) })
    }

    @Test("promtool test rules: each alert fires on the series that should fire it and stays silent on the others")
    func rulesFire() throws {
        let folder = Self.contrib.appendingPathComponent("prometheus").path
        let check = try Sandbox.exec(Self.promtool, ["check", "rules", folder + "/deployctl-rules.yml"])
        #expect(check.status == 0, "\(check.stdout)\(check.stderr)")
        let result = try Sandbox.exec(Self.promtool, ["test", "rules", folder + "/deployctl-rules.test.yml"])
        #expect(result.status == 0 && result.stdout.contains("SUCCESS"), "\(result.stdout)\(result.stderr)")
        // Every alert has a test that expects it to fire.
        let rules = try String(contentsOfFile: folder + "/deployctl-rules.yml", encoding: .utf8)
        let tests = try String(contentsOfFile: folder + "/deployctl-rules.test.yml", encoding: .utf8)
        let alerts = rules.split(separator: "\n").compactMap { line in line.range(of: "- alert: ").map { String(line[$0.upperBound...]) } }
        #expect(alerts.count == 7)
        for alert in alerts {
            #expect(tests.contains("alertname: \(alert)\n        exp_alerts:\n          - exp_labels"), "no test fires \(alert)")
        }
    }

    @Test("every query of the Grafana dashboard parses (promtool check rules over them), and dashboard and rules name only series deployctl writes")
    func dashboardQueries() throws {
        let url = Self.contrib.appendingPathComponent("grafana/deployctl.json")
        let dashboard = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: url)) as? [String: Any])
        let panels = try #require(dashboard["panels"] as? [[String: Any]])
        let expressions = panels.flatMap { ($0["targets"] as? [[String: Any]] ?? []).compactMap { $0["expr"] as? String } }
        #expect(expressions.count == panels.count && panels.count >= 10)
        // Each query as a recording rule (the dashboard's variable given its "All" value).
        var rules = "groups:\n  - name: dashboard\n    rules:\n"
        for (index, expression) in expressions.enumerated() {
            let concrete = expression.replacingOccurrences(of: "$instance", with: ".*")
            rules += "      - record: deployctl_dashboard:panel\(index)\n        expr: '\(concrete.replacingOccurrences(of: "'", with: "''"))'\n"
        }
        let box = try Sandbox()
        let file = box.path("dashboard-rules.yml")
        try rules.write(toFile: file, atomically: true, encoding: .utf8)
        let check = try Sandbox.exec(Self.promtool, ["check", "rules", file])
        #expect(check.status == 0 && check.stdout.contains("SUCCESS: \(expressions.count) rules found"), "\(check.stdout)\(check.stderr)")
        // The check can fail: a broken query is refused.
        try rules.replacingOccurrences(of: "time() -", with: "time( -").write(toFile: file, atomically: true, encoding: .utf8)
        #expect(try Sandbox.exec(Self.promtool, ["check", "rules", file]).status != 0)

        let written = try Self.writtenFamilies()
        let alertRules = try String(contentsOf: Self.contrib.appendingPathComponent("prometheus/deployctl-rules.yml"), encoding: .utf8)
        let used = Self.seriesNames(expressions.joined(separator: "\n")).union(Self.seriesNames(alertRules))
        #expect(used.subtracting(written).isEmpty, "series deployctl never writes: \(used.subtracting(written).sorted())")
        for needed in ["deployctl_last_backup_timestamp_seconds", "deployctl_last_backup_bytes", "deployctl_last_verification_ok",
                       "deployctl_last_deploy_success", "deployctl_run_duration_seconds", "deployctl_max_backup_age_seconds",
                       "deployctl_last_deploy_writes_blocked_seconds"] {
            #expect(Self.seriesNames(expressions.joined(separator: "\n")).contains(needed), "the dashboard does not show \(needed)")
        }
    }
}
