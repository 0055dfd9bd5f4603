import Foundation
import Testing

/// Monitoring that cannot go silent: `status all` watches every instance folder, a deploy's
/// own copies never pass for backups, a running deploy is not an alert, and a metrics file
/// keeps its series through a failed run.
@Suite("monitoring")
struct MonitoringTests {
    @Test("status all covers an instance folder left out of deploy.toml: a broken database (65) or no backup under max_backup_age (1) fails it, naming the instance; nothing changes",
          arguments: ["broken database", "no backup"])
    func instanceOutsideOrder(problem: String) throws {
        let box = try Sandbox(rows: 20)
        try box.write("instances/deploy.toml", "order = [\"prod\"]\nmigrations = \"migrations\"\n")
        try box.addInstance("stray")
        if problem == "broken database" {
            try Data(repeating: 0x41, count: 8192).write(to: URL(fileURLWithPath: box.path("instances/stray/database/lending_app_stray.db")))
        } else {
            try box.write("instances/stray/instance.toml", "[database]\npath = \"database/lending_app_stray.db\"\n[backups]\npath = \"backups\"\nmax_backup_age = \"26h\"\n")
        }
        let before = box.tree()
        let quiet = try box.deployctl(["status", "all", "--quiet"])
        #expect(quiet.status == (problem == "broken database" ? 65 : 1), "\(quiet.stderr)")
        #expect(quiet.stdout.isEmpty && quiet.stderr.split(separator: "\n").count == 1, "\(quiet.stdout)\(quiet.stderr)")
        #expect(quiet.stderr.hasPrefix("deployctl: stray: "), "\(quiet.stderr)")
        #expect(quiet.stderr.contains(problem == "broken database" ? "lending_app_stray.db" : "no usable backup, and max_backup_age is 26h"), "\(quiet.stderr)")
        let human = try box.deployctl(["status", "all"])
        #expect(human.status == quiet.status)
        #expect(human.stdout.contains("prod: ") && human.stdout.contains("stray: "), "\(human.stdout)")
        #expect(human.stdout.contains("! not in deploy.toml's order: 'deploy all' and promotion checks leave it out"), "\(human.stdout)")
        // prod alone is fine: the failure is the stray instance's.
        #expect(try box.deployctl(["status", "prod"]).status == 0)
        #expect(box.tree() == before, "status changed files")
    }

    @Test("the bundled example (seed SQL, no database yet) is listed by status all but never fails it, with or without deploy.toml's order; status example alone still exits 66; nothing is built",
          arguments: [true, false])
    func exampleNeverFails(withOrder: Bool) throws {
        let box = try Sandbox(rows: 20)
        if withOrder { try box.write("instances/deploy.toml", "order = [\"prod\"]\nmigrations = \"migrations\"\n") }
        try box.write("instances/example/seed.sql", "CREATE TABLE t (x INTEGER);\n")
        try box.write("instances/example/instance.toml", """
            [database]
            path = "database/lending_app_example.db"
            seed_sql = "seed.sql"
            [backups]
            path = "backups"
            max_backup_age = "26h"
            """)
        let before = box.tree()
        let human = try box.deployctl(["status", "all"])
        #expect(human.status == 0, "\(human.stderr)")
        #expect(human.stdout.contains("example: ") && human.stdout.contains("(missing) (the bundled example: 'status all' lists it, its problems never fail it)"), "\(human.stdout)")
        #expect(human.stdout.contains("✗ database ") && human.stdout.contains("lending_app_example.db does not exist"), "\(human.stdout)")
        #expect(!human.stdout.contains("not in deploy.toml's order"), "the example is not meant to be in the order: \(human.stdout)")
        let json = try box.deployctl(["status", "all", "--json"])
        #expect(json.status == 0 && json.stderr.isEmpty, "\(json.stderr)")
        let rows = try #require(try JSONSerialization.jsonObject(with: Data(json.stdout.utf8)) as? [[String: Any]], "\(json.stdout)")
        let example = try #require(rows.first { $0["instance"] as? String == "example" }, "\(json.stdout)")
        #expect(example["example"] as? Bool == true && (example["problems"] as? [Any])?.count == 2, "\(example)")
        let alone = try box.deployctl(["status", "example", "--quiet"])
        #expect(alone.status == 66 && alone.stderr.contains("lending_app_example.db does not exist"), "\(alone.stderr)")
        #expect(box.tree() == before, "status changed files")
    }

    @Test("the shipped configs set max_backup_age: on a fresh clone with databases and no backup, status all exits 1 naming dev, testing and prod, never the example")
    func shippedConfigs() throws {
        let box = try Sandbox(rows: 20)
        let instances = URL(fileURLWithPath: Sandbox.repositoryMigrations).deletingLastPathComponent().path
        try FileManager.default.removeItem(atPath: box.path("instances"))
        try FileManager.default.createDirectory(atPath: box.path("instances"), withIntermediateDirectories: true)
        try FileManager.default.copyItem(atPath: instances + "/deploy.toml", toPath: box.path("instances/deploy.toml"))
        for name in ["dev", "testing", "prod", "example"] {
            let config = try String(contentsOfFile: instances + "/\(name)/instance.toml", encoding: .utf8)
            #expect(config.range(of: #"(?m)^max_backup_age = "\d+[hd]""#, options: .regularExpression) != nil, "\(name) sets no max_backup_age")
            try box.write("instances/\(name)/instance.toml", config)
            if name != "example" {
                try FileManager.default.createDirectory(atPath: box.path("instances/\(name)/database"), withIntermediateDirectories: true)
                try box.makeLendingDatabase(path: box.path("instances/\(name)/database/lending_app_\(name).db"), journalMode: "wal", rows: 10)
            }
        }
        try FileManager.default.copyItem(atPath: instances + "/example/seed.sql", toPath: box.path("instances/example/seed.sql"))
        let before = box.tree()
        let result = try box.deployctl(["status", "all", "--quiet"])
        #expect(result.status == 1, "\(result.stderr)")
        #expect(result.stderr.contains("deployctl: dev: no usable backup, and max_backup_age is 8d: take one with 'deployctl snapshot dev'") && result.stderr.contains("(and 2 more problems)"), "\(result.stderr)")
        let json = try box.deployctl(["status", "all", "--json"])
        let rows = try #require(try JSONSerialization.jsonObject(with: Data(json.stdout.utf8)) as? [[String: Any]], "\(json.stdout)")
        #expect(rows.map { $0["instance"] as? String ?? "?" } == ["dev", "testing", "prod", "example"])
        for row in rows where row["instance"] as? String != "example" {
            #expect((row["problems"] as? [[String: Any]])?.map { $0["kind"] as? String } == ["failed"], "\(row)")
        }
        #expect(box.tree() == before, "status changed files")
    }

    @Test("a pre_* copy alone does not satisfy max_backup_age: after a deploy's pre_ snapshot, or a restore's pre_restore copy of a fresh state, status still exits 1",
          arguments: ["deploy", "restore"])
    func ownCopiesAreNotBackups(maker: String) throws {
        let box = try Sandbox(rows: 20)
        try box.write("instances/prod/instance.toml", "[database]\npath = \"database/lending_app_prod.db\"\n[backups]\npath = \"backups\"\nmax_backup_age = \"26h\"\n")
        var taken: String?
        if maker == "deploy" {
            try box.installCashbackMigration()
            let deploy = try box.deployctl(["deploy", "prod"])
            #expect(deploy.status == 0, "\(deploy.stderr)")
        } else {
            let (name, file) = try box.takeSnapshot(gzip: false)
            try Sandbox.redate(file, to: Date().addingTimeInterval(-30 * 3600))
            // A change for the restore to replace (a restore of what is already there saves nothing).
            _ = try box.sqlite(box.databasePath, "INSERT INTO tracker VALUES (900001, 1, 'after the backup')")
            let restore = try box.deployctl(["restore", "prod", "--latest", "--yes"])
            #expect(restore.status == 0, "\(restore.stderr)")
            taken = name
        }
        let copies = box.backupNames().filter { $0.contains(maker == "deploy" ? "_pre_cashback_tables_" : "_pre_restore_") }
        #expect(copies.count == 1, "\(box.backupNames())")
        let before = box.tree()
        let result = try box.deployctl(["status", "prod", "--quiet"])
        #expect(result.status == 1, "\(result.stderr)")
        if maker == "deploy" {
            #expect(result.stderr.contains("no usable backup (not counting 1 pre_* copy made by deploys or restores), and max_backup_age is 26h: take one with 'deployctl snapshot prod'"), "\(result.stderr)")
        } else {
            #expect(result.stderr.contains("the newest backup, \(taken ?? "?"), is 30 h old: older than max_backup_age 26h"), "\(result.stderr)")
        }
        let document = try Sandbox.document(try box.deployctl(["status", "prod", "--json"]))
        #expect(document["last_backup"] as? String == taken, "\(document)")
        #expect(box.tree() == before, "status changed files")
    }

    @Test("an instance never backed up and without max_backup_age: status warns (exit 0) and the metrics file says last backup 0, so the age alert fires")
    func noBackupWarning() throws {
        let box = try Sandbox(rows: 20)
        let metrics = box.path("metrics.prom")
        let before = box.tree()
        let result = try box.deployctl(["status", "prod", "--metrics-file", metrics])
        #expect(result.status == 0 && result.stderr.isEmpty, "\(result.stderr)")
        #expect(result.stdout.contains("  last backup: none\n"), "\(result.stdout)")
        #expect(result.stdout.contains("  ! no backup, and no max_backup_age to say how old one may be: set [backups] max_backup_age in \(box.path("instances/prod/instance.toml"))"), "\(result.stdout)")
        let document = try Sandbox.document(try box.deployctl(["status", "prod", "--json"]))
        #expect((document["warnings"] as? [String])?.count == 1 && (document["problems"] as? [Any])?.isEmpty == true, "\(document)")
        let values = try Self.metrics(metrics)
        #expect(values["deployctl_last_backup_timestamp_seconds{instance=\"prod\"}"] == "0", "\(values)")
        var after = box.tree()
        after.removeValue(forKey: "metrics.prom")
        #expect(after == before, "status changed files")
    }

    @Test("a metrics file that cannot be written fails the run with 73 naming it, even under --quiet; several commands writing one file at once keep every series")
    func metricsWrite() throws {
        let box = try Sandbox(rows: 20)
        // A folder where the file should be: the write cannot replace it.
        let blocked = box.path("blocked.prom")
        try FileManager.default.createDirectory(atPath: blocked, withIntermediateDirectories: true)
        let result = try box.deployctl(["status", "prod", "--quiet", "--metrics-file", blocked])
        #expect(result.status == 73, "\(result.stderr)")
        #expect(result.stderr.contains("the metrics file \(blocked) could not be written"), "\(result.stderr)")

        try box.addInstance("dev")
        let metrics = box.path("metrics.prom")
        let runs = try (0..<6).map { i in
            try box.spawnDeployctl(["status", i % 2 == 0 ? "prod" : "dev", "--quiet", "--metrics-file", metrics], environment: [:])
        }
        for run in runs { run.waitUntilExit() }
        let values = try Self.metrics(metrics)
        for instance in ["prod", "dev"] {
            #expect(values["deployctl_last_backup_timestamp_seconds{instance=\"\(instance)\"}"] != nil, "\(instance) lost: \(values)")
        }
    }

    @Test("a run that fails with 64 on a config error keeps the metrics file's series (the last backup's time and size as they were) and updates only run_success and run_duration_seconds",
          arguments: ["instance.toml", "deploy.toml"])
    func metricsSurviveConfigError(broken: String) throws {
        let box = try Sandbox(rows: 20)
        let path = box.path("metrics.prom")
        let command = broken == "instance.toml" ? ["snapshot", "prod"] : ["status", "all"]
        #expect(try box.deployctl(["snapshot", "prod", "--metrics-file", path]).status == 0)
        #expect(try box.deployctl(command + ["--metrics-file", path]).status == 0)
        let good = try Self.metrics(path)
        let taken = try #require(good["deployctl_last_backup_timestamp_seconds{instance=\"prod\"}"])
        #expect(abs((Double(taken) ?? 0) - Date().timeIntervalSince1970) < 120)
        #expect(good["deployctl_last_backup_bytes{instance=\"prod\"}"] != nil)
        if broken == "instance.toml" {
            try box.write("instances/prod/instance.toml", "[database]\npath = \"database/lending_app_prod.db\"\n[backups]\npath = \"backups\"\nbogus = 1\n")
        } else {
            try box.write("instances/deploy.toml", "order = [\"Prod\"]\n")
        }
        var before = box.tree()
        let failed = try box.deployctl(command + ["--metrics-file", path])
        #expect(failed.status == 64, "\(failed.stderr)")
        #expect(failed.stderr.contains(broken == "instance.toml" ? "unknown key 'backups.bogus'" : "key 'order': 'Prod' is not a valid instance name"), "\(failed.stderr)")
        let after = try Self.metrics(path)
        let run = "{instance=\"prod\",command=\"\(command[0])\"}"
        #expect(after["deployctl_run_success" + run] == "0")
        #expect(after["deployctl_run_duration_seconds" + run] != nil)
        // Every other series exactly as it was.
        #expect(after.filter { !$0.key.hasPrefix("deployctl_run_") } == good.filter { !$0.key.hasPrefix("deployctl_run_") }, "\(good)\n\(after)")
        #expect(Set(after.keys) == Set(good.keys))
        // Nothing else changed: no backup taken, no file touched but the metrics file.
        var now = box.tree()
        now.removeValue(forKey: "metrics.prom")
        before.removeValue(forKey: "metrics.prom")
        #expect(now == before, "the failed run changed files")
    }

    @Test("a deploy held at a failpoint delay is in progress: status exits 0 with its PID and stage; once SIGKILLed, its journal is unfinished (2); nothing else changes")
    func deployInProgress() throws {
        let box = try Sandbox(rows: 50)
        try box.installCashbackMigration()
        let deploy = try box.spawnDeployctl(["deploy", "prod"], environment: ["DEPLOYCTL_FAILPOINTS": "after-snapshot=delay:3000"])
        box.waitForJournal("\"snapshot\" : \"lending_app_prod_pre_cashback_tables_")
        let pid = deploy.processIdentifier
        let running = try box.deployctl(["status", "prod"])
        #expect(running.status == 0, "\(running.stdout)\(running.stderr)")
        #expect(running.stdout.range(of: #"  deploy \S+ in progress: PID \#(pid), stage snapshot, since "#, options: .regularExpression) != nil, "\(running.stdout)")
        #expect(!running.stdout.contains("unfinished") && running.stderr.isEmpty, "\(running.stdout)\(running.stderr)")
        let document = try Sandbox.document(try box.deployctl(["status", "prod", "--json"]))
        let work = try #require(document["in_progress"] as? [String: Any], "\(document)")
        #expect(work["operation"] as? String == "deploy" && work["pid"] as? Int == Int(pid) && work["stage"] as? String == "snapshot", "\(work)")
        #expect(document["unfinished_deploy"] == nil)
        let id = try #require(work["deploy_id"] as? String)

        kill(pid, SIGKILL)
        deploy.waitUntilExit()
        let before = box.tree()
        let dead = try box.deployctl(["status", "prod"])
        #expect(dead.status == 2, "\(dead.stdout)\(dead.stderr)")
        #expect(dead.stdout.contains("✗ deploy \(id) is unfinished: the next deploy or restore finishes or undoes it (it stopped at stage snapshot, and no live process holds the instance lock)"), "\(dead.stdout)")
        #expect(!dead.stdout.contains("in progress"), "\(dead.stdout)")
        #expect(box.tree() == before, "status changed files")
        // The next deploy finishes it, as before.
        let next = try box.deployctl(["deploy", "prod"])
        #expect(next.status == 0 && next.stdout.contains("recovered:"), "\(next.stderr)")
    }

    @Test("a restore held at a failpoint delay in its critical section is in progress: status exits 0 with its PID and stage")
    func restoreInProgress() throws {
        let box = try Sandbox(rows: 50)
        _ = try box.takeSnapshot(gzip: false)
        _ = try box.sqlite(box.databasePath, "INSERT INTO tracker VALUES (900001, 1, 'after the backup')")
        let restore = try box.spawnDeployctl(["restore", "prod", "--latest", "--yes"], environment: ["DEPLOYCTL_FAILPOINTS": "restore=delay:3000"])
        let lockFile = box.path("instances/prod/.deployctl.lock")
        let deadline = Date().addingTimeInterval(20)
        while Date() < deadline, (try? String(contentsOfFile: lockFile, encoding: .utf8))?.contains("\"stage\" : \"restore\"") != true { usleep(20_000) }
        // The pre_restore copy is written just before the failpoint.
        while Date() < deadline, !box.backupNames().contains(where: { $0.contains("_pre_restore_") }) { usleep(20_000) }
        let running = try box.deployctl(["status", "prod"])
        #expect(running.status == 0, "\(running.stdout)\(running.stderr)")
        #expect(running.stdout.contains("  restore in progress: PID \(restore.processIdentifier), stage restore, since "), "\(running.stdout)")
        restore.waitUntilExit()
        #expect(restore.terminationStatus == 0)
        let after = try box.deployctl(["status", "prod"])
        #expect(after.status == 0 && !after.stdout.contains("in progress"), "\(after.stdout)")
    }

    /// The samples of a metrics file (series → value as written), after checking it is valid
    /// Prometheus text: with `promtool check metrics` when installed, else by its grammar (each
    /// family once, HELP and TYPE first, no series twice).
    static func metrics(_ path: String) throws -> [String: String] {
        let text = try String(contentsOfFile: path, encoding: .utf8)
        if let promtool = ["/usr/local/bin/promtool", "/usr/bin/promtool"].first(where: FileManager.default.isExecutableFile(atPath:)) {
            let check = try Sandbox.exec("/bin/sh", ["-c", "'\(promtool)' check metrics < '\(path)'"])
            #expect(check.status == 0, "promtool: \(check.stdout)\(check.stderr)")
        }
        var values = [String: String]()
        var families = [String]()
        for line in text.split(separator: "\n") {
            if line.hasPrefix("# HELP ") || line.hasPrefix("# TYPE ") {
                let family = String(line.split(separator: " ")[2])
                if line.hasPrefix("# HELP ") {
                    #expect(!families.contains(family), "family \(family) twice")
                    families.append(family)
                } else {
                    #expect(families.last == family && line.hasSuffix(" gauge"), "\(line)")
                }
                continue
            }
            #expect(line.range(of: #"^deployctl_[a-z_]+\{instance="[a-z0-9_-]+"(,command="[a-z ]+")?\} -?[0-9.e+]+$"#, options: .regularExpression) != nil, "not Prometheus text: \(line)")
            let parts = line.split(separator: " ", maxSplits: 1)
            #expect(families.last.map { parts[0].hasPrefix($0 + "{") } == true, "\(line) outside its family")
            #expect(values[String(parts[0])] == nil, "\(parts[0]) twice")
            values[String(parts[0])] = String(parts[1])
        }
        return values
    }
}

extension Sandbox {
    /// Every file under the root with its bytes, but SQLite's `-shm` index (a reader may
    /// rewrite it): what "nothing else changed" compares.
    func tree() -> [String: Data] {
        var files = [String: Data]()
        let enumerator = FileManager.default.enumerator(atPath: root)
        while let relative = enumerator?.nextObject() as? String {
            var isDirectory: ObjCBool = false
            guard !relative.hasSuffix("-shm"), FileManager.default.fileExists(atPath: path(relative), isDirectory: &isDirectory), !isDirectory.boolValue else { continue }
            files[relative] = FileManager.default.contents(atPath: path(relative)) ?? Data()
        }
        #expect(files.keys.contains("instances/prod/instance.toml"), "the sandbox's files could not be listed")
        return files
    }
}
