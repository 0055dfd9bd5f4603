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

    @Test("a dashboard query finds the instance chosen in its variable, and only it, whether Prometheus kept the series' instance label or renamed it exported_instance (the default)")
    func dashboardInstances() throws {
        let url = Self.contrib.appendingPathComponent("grafana/deployctl.json")
        let dashboard = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: url)) as? [String: Any])
        let panels = try #require(dashboard["panels"] as? [[String: Any]])
        let size = try #require(panels.first { $0["title"] as? String == "Backup size" })
        let expression = try #require((size["targets"] as? [[String: Any]])?.first?["expr"] as? String)
        func test(_ chosen: String, expect: [(String, String)]) -> String {
            let concrete = expression.replacingOccurrences(of: "$instance", with: chosen).replacingOccurrences(of: "'", with: "''")
            var text = "      - expr: '\(concrete)'\n        eval_time: 1m\n        exp_samples:\n"
            for (labels, value) in expect { text += "          - labels: '\(labels)'\n            value: \(value)\n" }
            return text
        }
        let prod = ("deployctl_last_backup_bytes{deployctl_instance=\"prod\", exported_instance=\"prod\", instance=\"db1:9100\", job=\"node\"}", "1000")
        let dev = ("deployctl_last_backup_bytes{deployctl_instance=\"dev\", exported_instance=\"dev\", instance=\"db1:9100\", job=\"node\"}", "2000")
        let staging = ("deployctl_last_backup_bytes{deployctl_instance=\"staging\", instance=\"staging\", job=\"node2\"}", "3000")
        let yaml = """
            tests:
              - interval: 1m
                input_series:
                  - series: 'deployctl_last_backup_bytes{job="node", instance="db1:9100", exported_instance="prod"}'
                    values: '1000x5'
                  - series: 'deployctl_last_backup_bytes{job="node", instance="db1:9100", exported_instance="dev"}'
                    values: '2000x5'
                  - series: 'deployctl_last_backup_bytes{job="node2", instance="staging"}'
                    values: '3000x5'
                promql_expr_test:

            """ + test(".*", expect: [prod, dev, staging]) + test("prod", expect: [prod]) + test("staging", expect: [staging])
        let box = try Sandbox()
        try yaml.write(toFile: box.path("dashboard.test.yml"), atomically: true, encoding: .utf8)
        let result = try Sandbox.exec(Self.promtool, ["test", "rules", box.path("dashboard.test.yml")])
        #expect(result.status == 0 && result.stdout.contains("SUCCESS"), "\(yaml)\n\(result.stdout)\(result.stderr)")
    }

    @Test("every query of the Grafana dashboard parses (promtool check rules over them), and dashboard and rules name only series deployctl writes")
    func dashboardQueries() throws {
        let url = Self.contrib.appendingPathComponent("grafana/deployctl.json")
        let dashboard = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: url)) as? [String: Any])
        let panels = try #require(dashboard["panels"] as? [[String: Any]])
        let expressions = panels.flatMap { ($0["targets"] as? [[String: Any]] ?? []).compactMap { $0["expr"] as? String } }
        #expect(expressions.count == panels.count && panels.count >= 10)
        // Each query as a recording rule (the dashboard's variable given its "All" value), the
        // instance variable's query_result() argument among them.
        var rules = "groups:\n  - name: dashboard\n    rules:\n"
        let templating = try #require((dashboard["templating"] as? [String: Any])?["list"] as? [[String: Any]])
        let variable = try #require(templating.first { $0["name"] as? String == "instance" }?["definition"] as? String)
        #expect(variable.hasPrefix("query_result(") && variable.hasSuffix(")"))
        for (index, expression) in (expressions + [String(variable.dropFirst(13).dropLast())]).enumerated() {
            let concrete = expression.replacingOccurrences(of: "$instance", with: ".*")
            rules += "      - record: deployctl_dashboard:panel\(index)\n        expr: '\(concrete.replacingOccurrences(of: "'", with: "''"))'\n"
        }
        let box = try Sandbox()
        let file = box.path("dashboard-rules.yml")
        try rules.write(toFile: file, atomically: true, encoding: .utf8)
        let check = try Sandbox.exec(Self.promtool, ["check", "rules", file])
        #expect(check.status == 0 && check.stdout.contains("SUCCESS: \(expressions.count + 1) rules found"), "\(check.stdout)\(check.stderr)")
        // The check can fail: a broken query is refused.
        try rules.replacingOccurrences(of: "time() -", with: "time( -").write(toFile: file, atomically: true, encoding: .utf8)
        #expect(try Sandbox.exec(Self.promtool, ["check", "rules", file]).status != 0)

        let written = try Self.writtenFamilies()
        let alertRules = try String(contentsOf: Self.contrib.appendingPathComponent("prometheus/deployctl-rules.yml"), encoding: .utf8)
        // deployctl_instance is the label the queries make, not a series.
        let used = Self.seriesNames(expressions.joined(separator: "\n")).union(Self.seriesNames(alertRules)).subtracting(["deployctl_instance"])
        #expect(used.subtracting(written).isEmpty, "series deployctl never writes: \(used.subtracting(written).sorted())")
        for needed in ["deployctl_last_backup_timestamp_seconds", "deployctl_last_backup_bytes", "deployctl_last_verification_ok",
                       "deployctl_last_deploy_success", "deployctl_run_duration_seconds", "deployctl_max_backup_age_seconds",
                       "deployctl_last_deploy_writes_blocked_seconds"] {
            #expect(Self.seriesNames(expressions.joined(separator: "\n")).contains(needed), "the dashboard does not show \(needed)")
        }
    }
}
