import Foundation
import Testing

/// What cron, monitoring and a person at 2 a.m. rely on: exit codes, signals, one-line errors.
@Suite("operator experience")
struct OperatorTests {
    @Test("status exits non-zero when something needs a person, with the documented code: missing 66, not SQLite 65, unfinished deploy 2, stale backup 1")
    func statusExitCodes() throws {
        let box = try Sandbox(rows: 20)
        #expect(try box.deployctl(["status", "prod"]).status == 0)
        // A backup older than max_backup_age.
        try box.write("instances/prod/instance.toml", "[database]\npath = \"database/lending_app_prod.db\"\n[backups]\npath = \"backups\"\nmax_backup_age = \"26h\"\n")
        let none = try box.deployctl(["status", "prod"])
        #expect(none.status == 1 && none.stderr.contains("no usable backup"), "\(none.stderr)")
        let (_, file) = try box.takeSnapshot(gzip: false)
        #expect(try box.deployctl(["status", "prod"]).status == 0)
        try Sandbox.redate(file, to: Date().addingTimeInterval(-30 * 3600))
        let stale = try box.deployctl(["status", "prod"])
        #expect(stale.status == 1 && stale.stderr.contains("30 h old") && stale.stderr.contains("max_backup_age 26h"), "\(stale.stderr)")
        // An unfinished deploy.
        try box.installCashbackMigration()
        #expect(try box.deployctl(["deploy", "prod", "--skip-promotion-check"], environment: ["DEPLOYCTL_FAILPOINTS": "rehearse=crash"]).status != 0)
        let unfinished = try box.deployctl(["status", "prod", "--json"])
        #expect(unfinished.status == 2, "\(unfinished.stderr)")
        let document = try Sandbox.document(unfinished)
        #expect((document["problems"] as? [[String: Any]])?.contains { $0["kind"] as? String == "unproven" } == true)
        // Empty, a folder, not SQLite, then missing.
        try FileManager.default.removeItem(atPath: box.path("instances/prod/.deployctl.journal"))
        try Data().write(to: URL(fileURLWithPath: box.databasePath))
        let empty = try box.deployctl(["status", "prod"])
        #expect(empty.status == 65 && empty.stderr.contains("is empty (0 bytes)"), "\(empty.stderr)")
        #expect(try box.deployctl(["deploy", "prod", "--skip-promotion-check"]).status == 65)
        #expect(try Data(contentsOf: URL(fileURLWithPath: box.databasePath)).isEmpty, "a deploy wrote into an empty file")
        try Data(repeating: 0x41, count: 8192).write(to: URL(fileURLWithPath: box.databasePath))
        #expect(try box.deployctl(["status", "prod"]).status == 65)
        try FileManager.default.removeItem(atPath: box.databasePath)
        let missing = try box.deployctl(["status", "prod", "--quiet"])
        #expect(missing.status == 66 && missing.stdout.isEmpty && missing.stderr.contains("does not exist"), "\(missing.stderr)")
    }

    @Test("status all reports every instance when one config is broken, exits 64, and --json is one document with the error in that instance's row")
    func statusAllWithBrokenInstance() throws {
        let box = try Sandbox(rows: 20)
        try box.addInstance("dev")
        try box.write("instances/deploy.toml", "order = [\"dev\", \"prod\"]\nmigrations = \"migrations\"\n")
        try box.write("instances/dev/instance.toml", "[database]\npath = \"database/lending_app_dev.db\"\nbusy_timeout = 5\n")
        let human = try box.deployctl(["status", "all"])
        #expect(human.status == 64, "\(human.stderr)")
        #expect(human.stdout.contains("dev: ✗") && human.stdout.contains("prod: "), "\(human.stdout)")
        let json = try box.deployctl(["status", "all", "--json"])
        #expect(json.status == 64)
        let rows = try #require(try JSONSerialization.jsonObject(with: Data(json.stdout.utf8)) as? [[String: Any]], "\(json.stdout)")
        #expect(rows.count == 2)
        #expect(rows[0]["instance"] as? String == "dev" && rows[0]["error"] != nil)
        #expect(rows[1]["instance"] as? String == "prod" && (rows[1]["problems"] as? [Any])?.isEmpty == true)
    }

    @Test("Ctrl-C during a snapshot (plain or gzip) or backups verify stops it: exit 1, one line saying what state things are in, no file left behind",
          arguments: ["plain", "gzip", "verify"])
    func interrupt(command: String) throws {
        let box = try Sandbox(rows: 200)
        if command == "verify" { for _ in 0..<3 { #expect(try box.deployctl(["snapshot", "prod"]).status == 0) } }
        let before = box.allBackupFiles()
        let arguments = command == "verify" ? ["backups", "verify", "prod", "--all"] : ["snapshot", "prod", command == "gzip" ? "--gzip" : "--no-gzip"]
        let stderr = Pipe()
        let process = try box.spawnDeployctl(arguments, environment: ["DEPLOYCTL_FAILPOINTS": command == "verify" ? "backup-verify=delay:1500" : "snapshot=delay:1500"],
                                             stderr: stderr)
        Thread.sleep(forTimeInterval: 0.7)
        kill(process.processIdentifier, SIGINT)
        Thread.sleep(forTimeInterval: 0.1)
        kill(process.processIdentifier, SIGINT)
        process.waitUntilExit()
        let text = String(decoding: stderr.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        #expect(process.terminationStatus == 1, "\(text)")
        #expect(text.contains("interrupted by signal SIGINT"), "\(text)")
        // verify: the signal lands in the first backup's check, which SQLite's progress handler stops.
        #expect(text.contains(command == "verify" ? "0 of 3 backups checked (results recorded); the check of " : "no backup was written"), "\(text)")
        #expect(command != "verify" || text.contains("was stopped and nothing was recorded for it"), "\(text)")
        #expect(box.allBackupFiles() == before, "left behind: \(Set(box.allBackupFiles()).subtracting(before))")
    }

    @Test("--quiet prints the whole error on one line: what, where and the next step")
    func quietWholeError() throws {
        let box = try Sandbox(rows: 20)
        try box.write("instances/migrations/0001_close.sql", "UPDATE loan SET status = 'closed' WHERE id <= 3;\n")
        let result = try box.deployctl(["deploy", "prod", "--quiet"])
        #expect(result.status == 64 && result.stdout.isEmpty)
        let lines = result.stderr.split(separator: "\n")
        #expect(lines.count == 1, "\(result.stderr)")
        #expect(result.stderr.contains("0001_close is destructive") && result.stderr.contains("loan.status: 3 existing values changed")
                && result.stderr.contains("try: add '-- allow-destructive'"), "\(result.stderr)")
    }

    @Test("--version names deployctl, the SQLite library and the build; history shows migrations and why a deploy failed; verify tells a changed file from a damaged database")
    func versionHistoryVerify() throws {
        let box = try Sandbox(rows: 20)
        let version = try box.deployctl(["--version"])
        #expect(version.status == 0 && version.stdout.hasPrefix("deployctl ") && version.stdout.contains("SQLite 3."), "\(version.stdout)")
        try box.installCashbackMigration()
        #expect(try box.deployctl(["deploy", "prod", "--skip-promotion-check"], environment: ["DEPLOYCTL_FAILPOINTS": "verify=error"]).status == 1)
        let history = try box.deployctl(["history", "prod"])
        #expect(history.stdout.contains("0001_cashback_tables") && history.stdout.contains("failpoint 'verify' triggered an error"), "\(history.stdout)")
        #expect(try box.deployctl(["deploy", "prod", "--skip-promotion-check"]).status == 0)
        try box.write("instances/migrations/0001_cashback_tables.sql", (try String(contentsOfFile: box.path("instances/migrations/0001_cashback_tables.sql"), encoding: .utf8)) + "\n-- edited\n")
        let verify = try box.deployctl(["verify", "prod"])
        #expect(verify.status == 65)
        #expect(verify.stderr.contains("is sound, but") && verify.stderr.contains("changed after it was applied") && !verify.stderr.contains("restore from a backup"), "\(verify.stderr)")
    }

    /// Runs the built deployctl under a pseudo-terminal (`script`), returning what the screen got.
    static func onTerminal(_ box: Sandbox, _ arguments: [String], failpoints: String) throws -> String {
        let command = ([Sandbox.binary] + arguments + ["--root", box.root]).map { "'\($0)'" }.joined(separator: " ")
        var environment = ProcessInfo.processInfo.environment
        environment["DEPLOYCTL_FAILPOINTS"] = failpoints
        environment["NO_COLOR"] = "1"
        let result = try Sandbox.exec("/usr/bin/script", ["-qfec", command, "/dev/null"], environment: environment)
        #expect(result.status == 0, "\(result.stdout)")
        return result.stdout
    }

    @Test("on a terminal, long phases show what they do in words, with time spent or bytes, rate and time left, then a ✓ line; nothing of it without a terminal")
    func progressOnTerminal() throws {
        let box = try Sandbox(rows: 300)
        let screen = try Self.onTerminal(box, ["snapshot", "prod", "--gzip"], failpoints: "snapshot=delay:1300")
        // The copy's bytes come from its writes (pages arrive in order), out of page_count × page_size.
        #expect(screen.contains("copying the database… ") && screen.contains("% 128.0 KiB of 128.0 KiB"), "\(screen)")
        #expect(screen.contains("✓ copying the database (1."), "\(screen)")
        #expect(screen.contains("compressing (gzip)… ") && screen.contains(" of "), "\(screen)")
        #expect(screen.contains("✓ Snapshot "), "\(screen)")
        try box.installCashbackMigration()
        let deploy = try Self.onTerminal(box, ["deploy", "prod", "--skip-promotion-check"], failpoints: "rehearse=delay:1300")
        #expect(deploy.contains("rehearsing on a copy of the snapshot… 1 s"), "\(deploy)")
        // Not a terminal: no progress at all.
        let plain = try box.deployctl(["snapshot", "prod", "--gzip"], environment: ["DEPLOYCTL_FAILPOINTS": "snapshot=delay:1300"])
        #expect(plain.status == 0 && !plain.stderr.contains("copying") && !plain.stderr.contains("\r"), "\(plain.stderr)")
    }

    @Test("the root help and backups prune's help read as written in Tests/DeployctlTests/Golden (common jobs, exit codes, an example per rule)",
          arguments: [(["--help"], "root-help.txt"), (["backups", "prune", "--help"], "prune-help.txt")])
    func helpText(arguments: [String], golden: String) throws {
        var url = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        url.appendPathComponent("Golden/" + golden)
        let expected = try String(contentsOf: url, encoding: .utf8)
        var environment = ProcessInfo.processInfo.environment
        environment["NO_COLOR"] = "1"
        environment["COLUMNS"] = "100"
        let result = try Sandbox.exec(Sandbox.binary, arguments, environment: environment)
        #expect(result.status == 0)
        #expect(result.stdout == expected, "help changed; if on purpose, regenerate \(golden): deployctl \(arguments.joined(separator: " ")) > Tests/DeployctlTests/Golden/\(golden)")
    }

    @Test("--metrics-file writes Prometheus text atomically after snapshot, backups verify, deploy and status, failed or not")
    func metricsFile() throws {
        let box = try Sandbox(rows: 20)
        let path = box.path("metrics/deployctl.prom")
        try FileManager.default.createDirectory(atPath: box.path("metrics"), withIntermediateDirectories: true)
        func metrics() throws -> [String: Double] {
            let text = try String(contentsOfFile: path, encoding: .utf8)
            var values = [String: Double]()
            for line in text.split(separator: "\n") where !line.hasPrefix("#") {
                #expect(line.range(of: #"^deployctl_[a-z_]+\{[^}]*\} -?[0-9.e+]+$"#, options: .regularExpression) != nil, "not Prometheus text: \(line)")
                let parts = line.split(separator: " ")
                values[String(parts[0])] = Double(parts[1])
            }
            return values
        }
        #expect(try box.deployctl(["snapshot", "prod", "--metrics-file", path]).status == 0)
        var values = try metrics()
        #expect(values["deployctl_run_success{instance=\"prod\",command=\"snapshot\"}"] == 1)
        let taken = try #require(values["deployctl_last_backup_timestamp_seconds{instance=\"prod\"}"])
        #expect(abs(taken - Date().timeIntervalSince1970) < 120)
        #expect((values["deployctl_last_backup_bytes{instance=\"prod\"}"] ?? 0) > 0)
        #expect(try box.deployctl(["backups", "verify", "prod", "--all", "--metrics-file", path]).status == 0)
        #expect(try metrics()["deployctl_last_verification_ok{instance=\"prod\"}"] == 1)
        try box.installCashbackMigration()
        #expect(try box.deployctl(["deploy", "prod", "--metrics-file", path]).status == 0)
        #expect(try metrics()["deployctl_last_deploy_success{instance=\"prod\"}"] == 1)
        try FileManager.default.removeItem(atPath: box.databasePath)
        #expect(try box.deployctl(["status", "prod", "--metrics-file", path]).status == 66)
        values = try metrics()
        #expect(values["deployctl_run_success{instance=\"prod\",command=\"status\"}"] == 0)
        #expect(values["deployctl_problems{instance=\"prod\"}"] == 1)
        let mode = try #require(FileManager.default.attributesOfItem(atPath: path)[.posixPermissions] as? Int)
        #expect(mode == 0o644)
        #expect(try FileManager.default.contentsOfDirectory(atPath: box.path("metrics")) == ["deployctl.prom"])
    }

    @Test("--log-level debug shows each SQL statement run on the live database, each hook command and each stage's time; warning is quieter than info")
    func logLevels() throws {
        let box = try Sandbox(rows: 20)
        try box.installCashbackMigration()
        try box.configureHooks("stop = \"true\"\nstart = \"true\"\nhealth = \"true\"")
        let debug = try box.deployctl(["deploy", "prod", "--skip-promotion-check", "--log-level", "debug"])
        #expect(debug.status == 0, "\(debug.stderr)")
        #expect(debug.stderr.contains("debug: SQL (0001_cashback_tables.sql #1, ") && debug.stderr.contains("CREATE TABLE IF NOT EXISTS cashback_transaction"), "\(debug.stderr)")
        #expect(debug.stderr.contains("debug: hook stop: /bin/sh -c true") && debug.stderr.contains("debug: hook health exited 0"), "\(debug.stderr)")
        #expect(debug.stderr.contains("debug: stage migrate and verify took "), "\(debug.stderr)")
        let quiet = try box.deployctl(["deploy", "prod", "--skip-promotion-check", "--log-level", "warning"])
        #expect(quiet.status == 0 && quiet.stdout.isEmpty && !quiet.stderr.contains("debug:"), "\(quiet.stdout)")
    }

    @Test("plan and deploy --dry-run show the same plan, line for line (one renderer); the report names the stages as the journal does")
    func onePlanRenderer() throws {
        let box = try Sandbox(rows: 20)
        try box.installCashbackMigration()
        let plan = try box.deployctl(["plan", "prod"])
        let dryRun = try box.deployctl(["deploy", "prod", "--dry-run", "--skip-promotion-check"])
        #expect(plan.status == 0 && dryRun.status == 0, "\(plan.stderr)\(dryRun.stderr)")
        // Everything but the closing line, the measured statement time (it differs between runs)
        // and plan's forecast of how the deploy runs (the deploy says it as it decides).
        let planLines = plan.stdout.split(separator: "\n").filter { $0 != "Nothing was changed." && !$0.hasPrefix("Writes blocked") && !$0.hasPrefix("Deploy: ") }
        #expect(planLines.count > 10 && planLines.contains { $0.contains("Safety claims:") }, "\(plan.stdout)")
        for line in planLines { #expect(dryRun.stdout.contains("  " + line), "\(line) missing from:\n\(dryRun.stdout)") }
        let deploy = try box.deployctl(["deploy", "prod", "--skip-promotion-check", "--json"])
        let report = try JSONSerialization.jsonObject(with: Data(deploy.stdout.utf8)) as? [String: Any]
        let stages = (report?["stages"] as? [[String: Any]])?.compactMap { $0["name"] as? String }
        #expect(stages == ["preflight", "plan", "snapshot", "rehearse", "migrate and verify", "restart", "report"], "\(deploy.stdout)")
        #expect(report?["outcome"] as? String == "success", "\(deploy.stdout)")
    }

    @Test("deploys in the same second are ordered by when they started; a refused dry run shows the plan with no tick in a destructive migration; status --json leaves out pending when it is unknown")
    func reviewFindings() throws {
        let box = try Sandbox(rows: 20)
        try box.installCashbackMigration()
        #expect(try box.deployctl(["deploy", "prod", "--skip-promotion-check"]).status == 0)
        #expect(try box.deployctl(["deploy", "prod", "--skip-promotion-check"]).status == 0)
        try box.write("instances/migrations/0002_drop_note.sql", "ALTER TABLE payment DROP COLUMN note;\n")
        let refused = try box.deployctl(["deploy", "prod", "--skip-promotion-check"])
        #expect(refused.status == 64, "\(refused.stderr)")
        let history = try box.deployctl(["history", "prod", "--json"])
        let reports = try JSONSerialization.jsonObject(with: Data(history.stdout.utf8)) as? [[String: Any]] ?? []
        #expect(reports.map { $0["outcome"] as? String ?? "?" } == ["failed", "nothing to do", "success"], "\(history.stdout)")
        let dryRun = try box.deployctl(["deploy", "prod", "--dry-run", "--skip-promotion-check"])
        #expect(dryRun.status == 64 && dryRun.stdout.contains("Safety claims:"), "\(dryRun.stdout)")
        #expect(dryRun.stdout.contains("· #1 preserving: ALTER TABLE payment") && !dryRun.stdout.contains("✓ #1"), "\(dryRun.stdout)")
        try FileManager.default.removeItem(atPath: box.databasePath)
        let status = try box.deployctl(["status", "prod", "--json"])
        let document = try JSONSerialization.jsonObject(with: Data(status.stdout.utf8)) as? [String: Any]
        // Absent, not []: unknown is not "nothing pending".
        #expect(status.status == 66 && document?["exists"] as? Bool == false && document?["pending"] == nil && document?["applied"] == nil, "\(status.stdout)")
    }
}
