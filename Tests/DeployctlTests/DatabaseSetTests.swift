import Foundation
import Testing

/// An instance of several databases (`[[database]]`), as the bundled Rails-8-shaped `rails`
/// example has them: deployed, undone, recovered, snapshotted and restored as one set, each
/// database checked with sqlite3 as an outsider would.
@Suite("several databases per instance")
struct DatabaseSetTests {
    static let repository = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path
    static let databases = ["primary": "production", "cache": "production_cache", "queue": "production_queue", "cable": "production_cable"]
    static let order = ["primary", "cache", "queue", "cable"]

    /// A sandbox holding a copy of the shipped `rails` example (config, seeds, migrations;
    /// its databases are built from seed SQL on first use).
    static func railsBox() throws -> Sandbox {
        let box = try Sandbox(rows: 10)
        let source = repository + "/instances/rails"
        try FileManager.default.createDirectory(atPath: box.path("instances/rails"), withIntermediateDirectories: true)
        for relative in ["instance.toml", "seed", "db"] {
            try FileManager.default.copyItem(atPath: source + "/" + relative, toPath: box.path("instances/rails/" + relative))
        }
        return box
    }

    static func database(_ box: Sandbox, _ name: String) -> String { box.path("instances/rails/storage/\(databases[name]!).sqlite3") }

    static func backups(_ box: Sandbox, _ name: String) -> [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: box.path("instances/rails/backups/\(name)"))) ?? [])
            .filter { !$0.hasSuffix(".json") && !$0.hasPrefix(".") }.sorted()
    }

    static func manifest(_ box: Sandbox, _ name: String, _ backup: String) throws -> [String: Any] {
        let data = try Data(contentsOf: URL(fileURLWithPath: box.path("instances/rails/backups/\(name)/\(backup).json")))
        return try #require(JSONSerialization.jsonObject(with: data) as? [String: Any])
    }

    /// The migrations the database's history table records, in order ("" when it has none).
    static func applied(_ box: Sandbox, _ name: String) throws -> String {
        guard try box.sqlite(database(box, name), "SELECT count(*) FROM sqlite_master WHERE name = 'deployctl_migrations'") == "1" else { return "" }
        return try box.sqlite(database(box, name), "SELECT group_concat(name, ',') FROM (SELECT name FROM deployctl_migrations ORDER BY id)")
    }

    /// Schema and rows of each database, as sqlite3 sees them.
    static func state(_ box: Sandbox) throws -> [String: String] {
        var state = [String: String]()
        for name in order { state[name] = try box.sha3(database(box, name)) }
        return state
    }

    @Test("the rails example plans each database on its own, deploys all four as one set (one deploy id in every snapshot's manifest), and a second deploy has nothing to do")
    func deploysAsASet() throws {
        let box = try Self.railsBox()
        let plan = try box.deployctl(["plan", "rails", "--json"])
        #expect(plan.status == 0, "\(plan.stderr)")
        let document = try #require(JSONSerialization.jsonObject(with: Data(plan.stdout.utf8)) as? [String: Any])
        let members = try #require(document["databases"] as? [[String: Any]])
        #expect(members.map { $0["database"] as? String } == Self.order)
        #expect(members.map { $0["class"] as? String } == ["preserving", "preserving", "additive", "preserving"])
        #expect(document["class"] as? String == "preserving")
        #expect((document["pending"] as? [String])?.first == "primary/0001_add_products_sku")

        let deploy = try box.deployctl(["deploy", "rails"])
        #expect(deploy.status == 0, "\(deploy.stderr)")
        #expect(try Self.applied(box, "primary") == "add_products_sku,create_reviews")
        #expect(try Self.applied(box, "cable") == "add_channel_hash")
        #expect(try box.sqlite(Self.database(box, "queue"), "SELECT count(*) FROM solid_queue_recurring_tasks") == "0")
        #expect(try box.sqlite(Self.database(box, "cache"), "SELECT count(*) FROM solid_cache_entries WHERE byte_size = 0") == "1000")
        var sets = Set<String>()
        for name in Self.order {
            let backups = Self.backups(box, name)
            #expect(backups.count == 1, "\(name): \(backups)")
            let set = try #require(try Self.manifest(box, name, backups[0])["set"] as? [String: Any])
            #expect(set["database"] as? String == name)
            #expect(set["databases"] as? [String] == Self.order)
            sets.insert(set["id"] as? String ?? "")
            #expect(try box.sqlite(Self.database(box, name), "PRAGMA quick_check") == "ok")
        }
        #expect(sets.count == 1, "one set id across the databases: \(sets)")
        let reports = try FileManager.default.contentsOfDirectory(atPath: box.path("instances/rails/deploys")).filter { $0.hasSuffix(".json") }
        #expect(reports == ["\(sets.first!).json"], "one report, named by the deploy id the manifests carry")

        let again = try box.deployctl(["deploy", "rails", "--json"])
        let second = try #require(JSONSerialization.jsonObject(with: Data(again.stdout.utf8)) as? [String: Any])
        #expect(again.status == 0 && second["outcome"] as? String == "nothing to do", "\(again.stdout)\(again.stderr)")
        for name in Self.order { #expect(Self.backups(box, name).count == 1, "no new snapshot of \(name)") }
    }

    @Test("a migration that fails on the third database's live file undoes the two already migrated and leaves the fourth untouched: exit 1, every schema as before, the application's row kept")
    func failureInTheThirdDatabase() throws {
        let box = try Self.railsBox()
        #expect(try box.deployctl(["snapshot", "rails", "--quiet"]).status == 0)
        // Passes on the snapshot's copy, fails on the live file once the application has written a duplicate after it.
        try box.write("instances/rails/db/queue_migrate/0002_unique_active_job_id.sql",
                      "CREATE UNIQUE INDEX index_solid_queue_jobs_on_active_job_id ON solid_queue_jobs(active_job_id);\n")
        let schemas = try Dictionary(uniqueKeysWithValues: Self.order.map { ($0, try box.sqlite(Self.database(box, $0), ".schema")) })
        let queueBackups = box.path("instances/rails/backups/queue")
        let deploy = try box.spawnDeployctl(["deploy", "rails", "--quiet"], environment: ["DEPLOYCTL_FAILPOINTS": "after-snapshot=delay:1500"], stderr: Pipe())
        // The application writes once the queue's snapshot is taken: the rehearsal never sees the duplicate.
        let deadline = Date().addingTimeInterval(60)
        while Date() < deadline, ((try? FileManager.default.contentsOfDirectory(atPath: queueBackups)) ?? []).filter({ $0.contains("_pre_") && $0.hasSuffix(".json") }).isEmpty {
            usleep(20_000)
        }
        _ = try box.sqlite(Self.database(box, "queue"), "INSERT INTO solid_queue_jobs (queue_name, class_name, active_job_id, created_at, updated_at) VALUES ('default', 'Dup', 'job-1', 't', 't')")
        deploy.waitUntilExit()
        #expect(deploy.terminationStatus == 1)
        for name in Self.order {
            #expect(try box.sqlite(Self.database(box, name), ".schema") == schemas[name], "\(name)'s schema is as before (no history table either)")
        }
        #expect(try box.sqlite(Self.database(box, "queue"), "SELECT count(*) FROM solid_queue_jobs WHERE class_name = 'Dup'") == "1", "the application's write is kept")
        let report = try #require(try FileManager.default.contentsOfDirectory(atPath: box.path("instances/rails/deploys")).first { $0.hasSuffix(".json") })
        let text = try String(contentsOfFile: box.path("instances/rails/deploys/" + report), encoding: .utf8)
        #expect(text.contains("\"outcome\" : \"undone\"") || text.contains("\"outcome\":\"undone\""), "\(text)")
        #expect(!FileManager.default.fileExists(atPath: box.path("instances/rails/.deployctl.queue.journal")))
    }

    @Test("killed between two databases' commits: status says unfinished (2); the next deploy undoes the database that committed, then deploys the set")
    func crashBetweenCommits() throws {
        let box = try Self.railsBox()
        #expect(try box.deployctl(["plan", "rails", "--quiet"]).status == 0)
        try Self.withoutSeeds(box)
        let crashed = try box.deployctl(["deploy", "rails", "--quiet"], environment: ["DEPLOYCTL_FAILPOINTS": "between-databases=crash"])
        #expect(crashed.status == 9, "SIGKILL")
        #expect(try Self.applied(box, "primary") == "add_products_sku,create_reviews", "primary committed before the crash")
        #expect(try Self.applied(box, "cache").isEmpty)
        let status = try box.deployctl(["status", "rails", "--quiet"])
        #expect(status.status == 2 && status.code == "deploy.unfinished", "\(status.stderr)")
        let recovered = try box.deployctl(["deploy", "rails", "--json"])
        #expect(recovered.status == 0, "\(recovered.stderr)")
        #expect(recovered.stdout.contains("interrupted before every database of its set was migrated and proven"), "\(recovered.stdout)")
        for name in Self.order { #expect(try !Self.applied(box, name).isEmpty, "\(name)") }
        let history = try box.deployctl(["history", "rails"])
        #expect(history.stdout.contains("recovered: undone"), "\(history.stdout)")
    }

    @Test("restore --latest restores the newest complete set; a set missing a member is passed over and named; --database restores one database only")
    func restoresASet() throws {
        let box = try Self.railsBox()
        #expect(try box.deployctl(["deploy", "rails", "--quiet"]).status == 0)
        #expect(try box.deployctl(["snapshot", "rails", "--quiet"]).status == 0)
        let snapshotState = try Self.state(box)
        _ = try box.sqlite(Self.database(box, "primary"), "DELETE FROM orders WHERE id <= 100")
        _ = try box.sqlite(Self.database(box, "cable"), "UPDATE solid_cable_messages SET payload = 'x'")
        let restore = try box.deployctl(["restore", "rails", "--latest", "--yes"])
        #expect(restore.status == 0, "\(restore.stderr)")
        #expect(try Self.state(box) == snapshotState)
        #expect(restore.stdout.contains("no stop hook ran"), "\(restore.stdout)")

        // The newest set loses its cable member: --latest steps back to the deploy's set, and says why.
        let cable = try #require(Self.backups(box, "cable").first { $0.contains("_snapshot_") })
        #expect(try box.deployctl(["backups", "remove", "rails", cable, "--yes", "--quiet"]).status == 0, "a backup named without --database is found in its database")
        let older = try box.deployctl(["restore", "rails", "--latest", "--dry-run"])
        #expect(older.status == 0, "\(older.stderr)")
        #expect(older.stderr.contains("passed over") && older.stderr.contains("no backup of cable"), "\(older.stderr)")
        #expect(older.stdout.contains("_pre_add_products_sku"), "\(older.stdout)")

        _ = try box.sqlite(Self.database(box, "cache"), "DELETE FROM solid_cache_entries")
        let primaryBefore = try box.sha3(Self.database(box, "primary"))
        let one = try box.deployctl(["restore", "rails", "--latest", "--database", "cache", "--yes"])
        #expect(one.status == 0, "\(one.stderr)")
        #expect(try box.sqlite(Self.database(box, "cache"), "SELECT count(*) FROM solid_cache_entries") == "1000")
        #expect(try box.sha3(Self.database(box, "primary")) == primaryBefore, "only cache was restored")
    }

    @Test("per database: status rows and metrics labelled database=…, backups list and verify over every database, one JSON document")
    func perDatabaseSurface() throws {
        let box = try Self.railsBox()
        #expect(try box.deployctl(["snapshot", "rails", "--quiet"]).status == 0)
        let metrics = box.path("metrics.prom")
        let status = try box.deployctl(["status", "rails", "--json", "--metrics-file", metrics])
        let rows = try #require(JSONSerialization.jsonObject(with: Data(status.stdout.utf8)) as? [[String: Any]])
        #expect(rows.map { $0["database_name"] as? String } == Self.order)
        let text = try String(contentsOfFile: metrics, encoding: .utf8)
        for name in Self.order { #expect(text.contains("deployctl_last_backup_timestamp_seconds{instance=\"rails\",database=\"\(name)\"}"), "\(name): \(text)") }
        let check = try Sandbox.exec("/usr/bin/env", ["promtool", "check", "metrics"], input: text)
        #expect(check.status == 0 || check.status == 127, "promtool: \(check.stdout)\(check.stderr)")

        let verify = try box.deployctl(["backups", "verify", "rails", "--json"])
        #expect(verify.status == 0, "\(verify.stderr)")
        let document = try #require(JSONSerialization.jsonObject(with: Data(verify.stdout.utf8)) as? [String: Any])
        #expect((document["databases"] as? [[String: Any]])?.compactMap { $0["database"] as? String } == Self.order)
        let list = try box.deployctl(["backups", "list", "rails"])
        for name in Self.order { #expect(list.stdout.contains("Database \(name):")) }
        // A damaged backup of one database fails verify for the set, naming it; the others are still checked.
        let queue = try #require(Self.backups(box, "queue").first)
        let path = box.path("instances/rails/backups/queue/" + queue)
        var bytes = try Data(contentsOf: URL(fileURLWithPath: path))
        bytes[bytes.count / 2] ^= 0x40
        try bytes.write(to: URL(fileURLWithPath: path))
        let bad = try box.deployctl(["backups", "verify", "rails"])
        #expect(bad.status == 65 && bad.stdout.contains("Database cable:"), "\(bad.stdout)\(bad.stderr)")
    }

    @Test("bad configs and commands: one file named twice (64), [database] beside [[database]] (64), a missing migrations folder (66 naming it), an unknown --database (64 with the names), a one-database command without --database (64); nothing written")
    func badInput() throws {
        let box = try Self.railsBox()
        let config = box.path("instances/rails/instance.toml")
        let original = try String(contentsOfFile: config, encoding: .utf8)

        try original.replacingOccurrences(of: "storage/production_cable.sqlite3", with: "storage/production_cache.sqlite3").write(toFile: config, atomically: true, encoding: .utf8)
        let twice = try box.deployctl(["deploy", "rails"])
        #expect(twice.status == 64 && twice.code == "config.shared_database", "\(twice.stderr)")

        try ("[database]\npath = \"x.db\"\n" + original).write(toFile: config, atomically: true, encoding: .utf8)
        let both = try box.deployctl(["plan", "rails"])
        #expect(both.status == 64 && both.code == "config.invalid" && both.stderr.contains("cannot both be given"), "\(both.stderr)")
        #expect(!FileManager.default.fileExists(atPath: box.path("instances/rails/storage")), "nothing was built")

        try original.write(toFile: config, atomically: true, encoding: .utf8)
        try FileManager.default.removeItem(atPath: box.path("instances/rails/db/cable_migrate"))
        let missing = try box.deployctl(["deploy", "rails"])
        #expect(missing.status == 66 && missing.code == "config.migrations_missing" && missing.stderr.contains("cable"), "\(missing.stderr)")
        for name in Self.order {
            #expect(Self.backups(box, name).isEmpty, "no snapshot of \(name)")
            #expect(try box.sqlite(Self.database(box, name), "SELECT count(*) FROM sqlite_master WHERE name = 'deployctl_migrations'") == "0")
        }

        let unknown = try box.deployctl(["status", "rails", "--database", "cach"])
        #expect(unknown.status == 64 && unknown.code == "config.database_unknown" && unknown.stderr.contains("--database cache"), "\(unknown.stderr)")
        let unnamed = try box.deployctl(["baseline", "rails", "--through", "1"])
        #expect(unnamed.status == 64 && unnamed.code == "config.database_not_named" && unnamed.stderr.contains("primary, cache, queue, cable"), "\(unnamed.stderr)")
        let single = try box.deployctl(["status", "prod", "--database", "primary"])
        #expect(single.status == 64 && single.code == "config.database_unknown", "\(single.stderr)")
    }

    @Test("offsite: snapshot --offsite pushes each database's backup under <prefix>/<database>/<host>/ (aws s3 ls shows them), backups push goes over the set, and restore --remote --database brings one database back", .enabled(if: ObjectStore.available))
    func offsiteSet() throws {
        let store = try ObjectStore.get(.seaweedfs)
        let bucket = try store.makeBucket()
        let box = try Self.railsBox()
        let config = box.path("instances/rails/instance.toml")
        try (String(contentsOfFile: config, encoding: .utf8) + store.offsiteTable(bucket: bucket, prefix: "app")).write(toFile: config, atomically: true, encoding: .utf8)
        let snapshot = try box.deployctl(["snapshot", "rails", "--offsite"], environment: store.environment)
        #expect(snapshot.status == 0, "\(snapshot.stderr)")
        for name in Self.order {
            let backup = try #require(Self.backups(box, name).first)
            let listed = try store.aws(["s3", "ls", "s3://\(bucket)/app/\(name)/hosta/"])
            #expect(listed.stdout.contains(backup) && listed.stdout.contains(backup + ".json"), "\(name): \(listed.stdout)")
        }
        let again = try box.deployctl(["backups", "push", "rails", "--json"], environment: store.environment)
        let pushed = try #require(JSONSerialization.jsonObject(with: Data(again.stdout.utf8)) as? [String: Any])
        #expect((pushed["databases"] as? [[String: Any]])?.count == 4, "\(again.stdout)\(again.stderr)")
        let unnamed = try box.deployctl(["backups", "list", "rails", "--remote", "primary"], environment: store.environment)
        #expect(unnamed.status == 64 && unnamed.code == "config.database_not_named", "\(unnamed.stderr)")
        let before = try box.sha3(Self.database(box, "queue"))
        _ = try box.sqlite(Self.database(box, "queue"), "DELETE FROM solid_queue_jobs")
        try FileManager.default.removeItem(atPath: box.path("instances/rails/backups/queue"))
        let restore = try box.deployctl(["restore", "rails", "--remote", "primary", "--latest", "--database", "queue", "--yes"], environment: store.environment)
        #expect(restore.status == 0, "\(restore.stderr)")
        #expect(try box.sha3(Self.database(box, "queue")) == before)
    }

    /// Removes the seed_sql lines once the databases are built: an application's instance, whose problems fail status.
    static func withoutSeeds(_ box: Sandbox) throws {
        let config = box.path("instances/rails/instance.toml")
        try String(contentsOfFile: config, encoding: .utf8).split(separator: "\n", omittingEmptySubsequences: false)
            .filter { !$0.hasPrefix("seed_sql") }.joined(separator: "\n").write(toFile: config, atomically: true, encoding: .utf8)
    }

    /// Adds a `[[database]]` table (its keys as TOML lines) after the four, before `[backups]`.
    static func addDatabase(_ box: Sandbox, _ keys: String) throws {
        let config = box.path("instances/rails/instance.toml")
        let table = "\n[[database]]\n" + keys + "\nmax_write_lock_ms = 600000\n"
        try String(contentsOfFile: config, encoding: .utf8).replacingOccurrences(of: "\n[backups]", with: table + "\n[backups]").write(toFile: config, atomically: true, encoding: .utf8)
    }

    /// A fifth database, `jobs`, migrated by a tiny shell framework: one migration (`0001_tag`),
    /// listed by `app/pending.sh` until `app/migrate.sh` applied it; `also` is shell run after
    /// it (what the command does besides). Returns the database's path.
    static func addJobsDatabase(_ box: Sandbox, also: String = "") throws -> String {
        let jobs = box.path("instances/rails/storage/jobs.sqlite3")
        _ = try box.sqlite(jobs, "CREATE TABLE job (id INTEGER PRIMARY KEY, name TEXT); INSERT INTO job (name) VALUES ('a'), ('b')")
        try writeJobsMigration(box, also: also)
        try box.write("instances/rails/app/pending.sh", """
            sqlite3 "$DEPLOYCTL_DATABASE" "SELECT '0001_tag' WHERE NOT EXISTS (SELECT 1 FROM sqlite_master WHERE name = 'applied')"

            """)
        try addDatabase(box, "name = \"jobs\"\npath = \"storage/jobs.sqlite3\"\nmigrate_command = \"sh app/migrate.sh\"\npending_command = \"sh app/pending.sh\"")
        return jobs
    }

    static func writeJobsMigration(_ box: Sandbox, also: String) throws {
        try box.write("instances/rails/app/migrate.sh", """
            sqlite3 "$DEPLOYCTL_DATABASE" "CREATE TABLE IF NOT EXISTS applied (name TEXT); CREATE TABLE tag (id INTEGER PRIMARY KEY); INSERT INTO applied VALUES ('0001_tag');"
            \(also)

            """)
    }

    @Test("a deploy with migrations for one database still snapshots every database, so restore --latest goes back one deploy, not two")
    func partialDeployKeepsSetsComplete() throws {
        let box = try Self.railsBox()
        #expect(try box.deployctl(["deploy", "rails", "--quiet"]).status == 0)
        _ = try box.sqlite(Self.database(box, "cache"), "INSERT INTO solid_cache_entries (key, value, created_at, key_hash) VALUES (x'00', x'00', 't', -1)")
        try box.write("instances/rails/db/migrate/0003_create_tags.sql", "CREATE TABLE tags (id INTEGER PRIMARY KEY, name TEXT NOT NULL);\n")
        let deploy = try box.deployctl(["deploy", "rails", "--json"])
        #expect(deploy.status == 0, "\(deploy.stderr)")
        for name in Self.order { #expect(Self.backups(box, name).count == 2, "\(name): \(Self.backups(box, name))") }
        let state = try Self.state(box)
        _ = try box.sqlite(Self.database(box, "primary"), "DROP TABLE tags")
        let restore = try box.deployctl(["restore", "rails", "--latest", "--yes"])
        #expect(restore.status == 0 && !restore.stderr.contains("passed over"), "\(restore.stderr)")
        #expect(try box.sqlite(Self.database(box, "primary"), "SELECT count(*) FROM sqlite_master WHERE name = 'tags'") == "0",
                "the snapshot before the second deploy has no tags table")
        #expect(try box.sha3(Self.database(box, "cache")) == state["cache"], "cache keeps the row written between the deploys")
    }

    @Test("a set restore killed between two databases: status says restore.unfinished (2), the next deploy puts the restored database back; SIGTERM instead puts it back at once (exit 1)")
    func interruptedSetRestore() throws {
        let box = try Self.railsBox()
        #expect(try box.deployctl(["deploy", "rails", "--quiet"]).status == 0)
        #expect(try box.deployctl(["snapshot", "rails", "--quiet"]).status == 0)
        try Self.withoutSeeds(box)
        _ = try box.sqlite(Self.database(box, "primary"), "DELETE FROM orders WHERE id <= 10")
        _ = try box.sqlite(Self.database(box, "cable"), "DELETE FROM solid_cable_messages WHERE id <= 10")
        let before = try Self.state(box)
        let killed = try box.deployctl(["restore", "rails", "--latest", "--yes", "--quiet"], environment: ["DEPLOYCTL_FAILPOINTS": "between-databases=crash"])
        #expect(killed.status == 9)
        #expect(try box.sha3(Self.database(box, "primary")) != before["primary"], "primary was restored before the kill")
        let status = try box.deployctl(["status", "rails", "--quiet"])
        #expect(status.status == 2 && status.code == "restore.unfinished", "\(status.stderr)")
        let next = try box.deployctl(["deploy", "rails"])
        #expect(next.status == 0 && next.stdout.contains("put back as they were: primary"), "\(next.stdout)\(next.stderr)")
        #expect(try Self.state(box) == before)
        #expect(try box.deployctl(["status", "rails", "--quiet"]).status == 0)

        let restore = try box.spawnDeployctl(["restore", "rails", "--latest", "--yes"], environment: ["DEPLOYCTL_FAILPOINTS": "between-databases=delay:4000"], stderr: Pipe())
        let deadline = Date().addingTimeInterval(60)
        while Date() < deadline, try box.sha3(Self.database(box, "primary")) == before["primary"] { usleep(50_000) }
        kill(restore.processIdentifier, SIGTERM)
        restore.waitUntilExit()
        #expect(restore.terminationStatus == 1)
        #expect(try Self.state(box) == before, "every database as it was")
        #expect(!FileManager.default.fileExists(atPath: box.path("instances/rails/.deployctl.restore.journal")))
    }

    @Test("a fifth database migrated by Django's own command deploys with the four .sql ones as one set; when its migration fails (it goes last), the four already migrated are undone: exit 1, every database as before")
    func frameworkCommandInASet() throws {
        let box = try Self.railsBox()
        let fixtures = Self.repository + "/Tests/DeployctlTests/Fixtures/django"
        let app = box.path("instances/rails/app")
        try FileManager.default.copyItem(atPath: fixtures, toPath: app)
        for later in ["0002_category.py", "0003_product_sku.py", "0004_remove_price.py", "0005_broken.py"] {
            try FileManager.default.removeItem(atPath: app + "/shop/migrations/" + later)
        }
        let django = box.path("instances/rails/storage/django.sqlite3")
        try FileManager.default.createDirectory(atPath: box.path("instances/rails/storage"), withIntermediateDirectories: true)
        var env = ProcessInfo.processInfo.environment
        env["DEPLOYCTL_DATABASE"] = django
        let made = try Sandbox.exec("/usr/bin/env", ["python3", app + "/manage.py", "migrate", "-v0"], environment: env)
        try #require(made.status == 0, "Django is installed by .ci/run: \(made.stderr)")
        try Self.addDatabase(box, """
            name = "django"
            path = "storage/django.sqlite3"
            migrate_command = "python3 app/manage.py migrate --noinput"
            pending_command = "python3 app/manage.py showmigrations --plan"
            """)
        try FileManager.default.copyItem(atPath: fixtures + "/shop/migrations/0002_category.py", toPath: app + "/shop/migrations/0002_category.py")
        let plan = try box.deployctl(["plan", "rails", "--json"])
        let members = try #require((try JSONSerialization.jsonObject(with: Data(plan.stdout.utf8)) as? [String: Any])?["databases"] as? [[String: Any]], "\(plan.stdout)\(plan.stderr)")
        #expect(members.last?["database"] as? String == "django" && members.last?["class"] as? String == "additive", "\(members.last ?? [:])")
        let deploy = try box.deployctl(["deploy", "rails"])
        #expect(deploy.status == 0, "\(deploy.stdout)\(deploy.stderr)")
        #expect(try box.sqlite(django, "SELECT count(*) FROM django_migrations WHERE app = 'shop'") == "2")
        for name in Self.order { #expect(try !Self.applied(box, name).isEmpty, "\(name)") }
        #expect(Self.backups(box, "django").count == 1)

        // A broken Django migration with new .sql migrations for primary: primary is undone.
        try FileManager.default.copyItem(atPath: fixtures + "/shop/migrations/0003_product_sku.py", toPath: app + "/shop/migrations/0003_product_sku.py")
        try FileManager.default.copyItem(atPath: fixtures + "/shop/migrations/0004_remove_price.py", toPath: app + "/shop/migrations/0004_remove_price.py")
        try FileManager.default.copyItem(atPath: fixtures + "/shop/migrations/0005_broken.py", toPath: app + "/shop/migrations/0005_broken.py")
        try box.write("instances/rails/db/migrate/0003_create_tags.sql", "CREATE TABLE tags (id INTEGER PRIMARY KEY, name TEXT NOT NULL);\n")
        let before = try Self.state(box).merging(["django": try box.sha3(django)]) { $1 }
        let failed = try box.deployctl(["deploy", "rails", "--allow-destructive"])
        #expect(failed.status == 1 || failed.status == 64, "\(failed.stderr)")
        #expect(try Self.state(box).merging(["django": try box.sha3(django)]) { $1 } == before, "every database as before")
        #expect(!FileManager.default.fileExists(atPath: box.path("instances/rails/.deployctl.django.journal")))
    }

    @Test("a framework command that also changes another database of the set (not the one it was pointed at) is caught by that database's fingerprints: exit 1, the other database restored from its snapshot, every database as before")
    func commandTouchingAnotherDatabase() throws {
        let box = try Self.railsBox()
        #expect(try box.deployctl(["deploy", "rails", "--quiet"]).status == 0)
        // A tiny framework that also deletes rows of cache.
        let jobs = try Self.addJobsDatabase(box, also: "sqlite3 storage/production_cache.sqlite3 \"DELETE FROM solid_cache_entries WHERE id <= 10\"")
        let before = try Self.state(box).merging(["jobs": try box.sha3(jobs)]) { $1 }
        let deploy = try box.deployctl(["deploy", "rails"])
        // Caught at the rehearsal already (the command reached the live cache while pointed at a copy): nothing committed.
        #expect(deploy.status == 1 && deploy.code == "command.result_differs", "\(deploy.stdout)\(deploy.stderr)")
        #expect(deploy.stderr.contains("changed database cache") && deploy.stderr.contains("which it was not pointed at")
                && deploy.stderr.contains("Restored from their snapshots"), "\(deploy.stderr)")
        #expect(try Self.state(box).merging(["jobs": try box.sha3(jobs)]) { $1 } == before, "every database as before")

        // Only when pointed at the live file: caught after the live run, which is undone too.
        try Self.writeJobsMigration(box, also: """
            case "$DEPLOYCTL_DATABASE" in */storage/jobs.sqlite3) sqlite3 storage/production_cache.sqlite3 "DELETE FROM solid_cache_entries WHERE id <= 10";; esac
            """)
        let live = try box.deployctl(["deploy", "rails"])
        #expect(live.status == 1 && live.code == "deploy.undone" && live.stderr.contains("changed database cache"), "\(live.stdout)\(live.stderr)")
        #expect(try Self.state(box).merging(["jobs": try box.sha3(jobs)]) { $1 } == before, "every database as before")

        // Only the header of another database (no row, no schema): caught too, and put back.
        try Self.writeJobsMigration(box, also: "sqlite3 storage/production_cache.sqlite3 \"PRAGMA user_version = 42\"")
        let header = try box.deployctl(["deploy", "rails"])
        #expect(header.status == 1 && header.stderr.contains("changed database cache") && header.stderr.contains("user_version"), "\(header.stdout)\(header.stderr)")
        #expect(try box.sqlite(Self.database(box, "cache"), "PRAGMA user_version") == "0")
    }

    @Test("a set restore killed just after a database's live file was replaced: recovery still puts it back; meanwhile snapshot refuses (2) and prune keeps the copy the recovery needs; retention per database keeps the newest complete set")
    func killedAfterReplaceAndRetention() throws {
        let box = try Self.railsBox()
        #expect(try box.deployctl(["deploy", "rails", "--quiet"]).status == 0)
        #expect(try box.deployctl(["snapshot", "rails", "--quiet"]).status == 0)
        try Self.withoutSeeds(box)
        _ = try box.sqlite(Self.database(box, "primary"), "DELETE FROM orders WHERE id <= 10")
        let before = try Self.state(box)
        // after-restore: the first database is replaced and proven, its restore not yet returned.
        let killed = try box.deployctl(["restore", "rails", "--latest", "--yes", "--quiet"], environment: ["DEPLOYCTL_FAILPOINTS": "after-restore=crash"])
        #expect(killed.status == 9)
        #expect(try box.sha3(Self.database(box, "primary")) != before["primary"])
        let snapshot = try box.deployctl(["snapshot", "rails"])
        #expect(snapshot.status == 2 && snapshot.code == "restore.unfinished", "\(snapshot.stderr)")
        #expect(try box.deployctl(["backups", "prune", "rails", "--keep-last", "1", "--yes", "--quiet"]).status == 0)
        let next = try box.deployctl(["deploy", "rails"])
        #expect(next.status == 0 && next.stdout.contains("put back as they were: primary"), "\(next.stdout)\(next.stderr)")
        #expect(try Self.state(box) == before)

        // One-database snapshots and a prune to one backup per label leave a complete set to restore.
        for _ in 0..<3 { #expect(try box.deployctl(["snapshot", "rails", "--database", "primary", "--quiet"]).status == 0) }
        #expect(try box.deployctl(["backups", "prune", "rails", "--keep-last", "1", "--yes", "--quiet"]).status == 0)
        let dry = try box.deployctl(["restore", "rails", "--latest", "--dry-run"])
        #expect(dry.status == 0, "\(dry.stderr)")
    }

    @Test("killed while a framework command ran on its live database, after another database of the set committed: the next deploy undoes both (none was proven for the whole set), then deploys the set")
    func killedDuringCommandInASet() throws {
        let box = try Self.railsBox()
        #expect(try box.deployctl(["deploy", "rails", "--quiet"]).status == 0)
        try Self.withoutSeeds(box)
        let jobs = try Self.addJobsDatabase(box)
        try box.write("instances/rails/db/cable_migrate/0002_add_kind.sql", "ALTER TABLE solid_cable_messages ADD COLUMN kind TEXT;\n")
        let killed = try box.deployctl(["deploy", "rails", "--quiet"], environment: ["DEPLOYCTL_FAILPOINTS": "migrate-command=crash"])
        #expect(killed.status == 9)
        #expect(try Self.applied(box, "cable").contains("add_kind"), "cable committed before the command ran")
        let status = try box.deployctl(["status", "rails", "--quiet"])
        #expect(status.status == 2 && status.code == "deploy.unfinished", "\(status.stderr)")
        let deploy = try box.deployctl(["deploy", "rails", "--json"])
        #expect(deploy.status == 0, "\(deploy.stderr)")
        let reports = box.path("instances/rails/deploys")
        let crashed = try #require(try FileManager.default.contentsOfDirectory(atPath: reports).filter { $0.hasSuffix(".json") }.compactMap { name -> [String: Any]? in
            let report = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: reports + "/" + name))) as? [String: Any]
            return report?["outcome"] as? String == "recovered: undone" ? report : nil
        }.first, "the crashed deploy's report says it was undone")
        let members = try #require(crashed["databases"] as? [[String: Any]])
        #expect(members.map { $0["outcome"] as? String } == ["recovered: undone", "recovered: undone"], "cable and jobs both undone: \(members)")
        #expect(try Self.applied(box, "cable").contains("add_kind"), "then deployed again")
        #expect(try box.sqlite(jobs, "SELECT count(*) FROM applied") == "1")
    }
}
