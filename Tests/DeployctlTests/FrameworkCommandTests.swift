import Foundation
import Testing

/// Databases migrated by their framework's own command (`migrate_command`,
/// docs/framework-commands.md): real Django and Alembic projects (installed by `.ci/run`), and
/// a small framework of shell and sqlite3 for the failures a real one makes hard to stage.
/// Every result is checked with the sqlite3 CLI.
@Suite("framework commands")
struct FrameworkCommandTests {
    static let fixtures: String = {
        var url = URL(fileURLWithPath: #filePath)
        url.deleteLastPathComponent()
        return url.appendingPathComponent("Fixtures").path
    }()

    /// An instance config with the commands; `max_write_lock_ms` large unless `extra` sets it, so
    /// that no test depends on how fast a framework starts on a loaded machine.
    static func config(migrate: String, pending: String, extra: String = "") -> String {
        """
        [database]
        path = "database/lending_app_prod.db"
        busy_timeout_ms = 2000
        \(extra.contains("max_write_lock_ms") ? "" : "max_write_lock_ms = 600000")
        migrate_command = "\(migrate)"
        pending_command = "\(pending)"
        \(extra)
        [backups]
        path = "backups"
        """
    }

    /// Copies a fixture project into the sandbox's instance folder as `app/`, without the files
    /// `leaving` names (migrations a later step adds).
    static func copyProject(_ name: String, into box: Sandbox, leaving: [String]) throws {
        let target = box.path("instances/prod/app")
        try FileManager.default.copyItem(atPath: fixtures + "/" + name, toPath: target)
        for file in leaving { try FileManager.default.removeItem(atPath: target + "/" + file) }
    }

    static func add(_ file: String, of project: String, to box: Sandbox) throws {
        try FileManager.default.copyItem(atPath: fixtures + "/\(project)/" + file, toPath: box.path("instances/prod/app/" + file))
    }

    /// The class `plan --json` gives the same database when the migration is SQL in a file (the
    /// `.sql` route), on a second instance over a copy of the database.
    static func sqlRouteClass(_ box: Sandbox, sql: String) throws -> String? {
        let folder = box.path("instances/sqlroute")
        try? FileManager.default.removeItem(atPath: folder)
        try FileManager.default.createDirectory(atPath: folder + "/database", withIntermediateDirectories: true)
        _ = try box.sqlite(box.databasePath, "VACUUM INTO '\(folder)/database/copy.db'")
        try box.write("instances/sqlroute/instance.toml", "[database]\npath = \"database/copy.db\"\n[backups]\npath = \"backups\"\n")
        try? FileManager.default.removeItem(atPath: box.path("instances/migrations"))
        try box.write("instances/migrations/0001_framework.sql", sql)
        let plan = try box.deployctl(["plan", "sqlroute", "--json", "--allow-destructive"])
        return (try? Sandbox.document(plan))?["class"] as? String
    }

    @Test("Django through manage.py migrate: additive, preserving (rebuild, add column, backfill) and destructive migrations deploy with the classes the .sql route gives; destructive refused without the flag; nothing pending exits 0 without a snapshot; a failing migration leaves the database as it was")
    func django() throws {
        let box = try Sandbox(config: Self.config(migrate: "python3 app/manage.py migrate --noinput", pending: "python3 app/manage.py showmigrations --plan"))
        try Self.copyProject("django", into: box, leaving: ["shop/migrations/0002_category.py", "shop/migrations/0003_product_sku.py",
                                                            "shop/migrations/0004_remove_price.py", "shop/migrations/0005_broken.py"])
        // The application's database as Django made it, with rows.
        try FileManager.default.removeItem(atPath: box.databasePath)
        let manage = box.path("instances/prod/app/manage.py")
        var env = ProcessInfo.processInfo.environment
        env["DEPLOYCTL_DATABASE"] = box.databasePath
        let made = try Sandbox.exec("/usr/bin/env", ["python3", manage, "migrate", "-v0"], environment: env)
        try #require(made.status == 0, "\(made.stderr)")
        _ = try box.sqlite(box.databasePath, "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 200) INSERT INTO shop_product (name, price) SELECT 'product ' || i, i * 100 FROM n")
        let sqlmigrate = { (name: String) in try Sandbox.exec("/usr/bin/env", ["python3", manage, "sqlmigrate", "shop", name], environment: env).stdout }

        // Additive.
        try Self.add("shop/migrations/0002_category.py", of: "django", to: box)
        let untouched = try box.sha3(box.databasePath)
        let modified = try FileManager.default.attributesOfItem(atPath: box.databasePath)[.modificationDate] as? Date
        let plan = try Sandbox.document(try box.deployctl(["plan", "prod", "--json"]))
        #expect(plan["class"] as? String == "additive" && (plan["pending"] as? [String]) == ["shop.0002_category"], "\(plan)")
        #expect((plan["deploy"] as? [String: Any])?["mode"] as? String == "command", "\(plan)")
        let dryRun = try box.deployctl(["deploy", "prod", "--dry-run"])
        #expect(dryRun.status == 0 && dryRun.stdout.contains("Class: additive") && dryRun.stdout.contains("Dry run"), "\(dryRun.stdout)\(dryRun.stderr)")
        // plan and the dry run ran the command on copies only.
        #expect(try box.sha3(box.databasePath) == untouched && box.backupNames().isEmpty)
        #expect(try FileManager.default.attributesOfItem(atPath: box.databasePath)[.modificationDate] as? Date == modified)
        #expect(try box.sqlite(box.databasePath, "SELECT count(*) FROM sqlite_schema WHERE name = 'shop_category'") == "0")
        let additiveSQL = try sqlmigrate("0002")
        #expect(try Self.sqlRouteClass(box, sql: additiveSQL) == "additive")
        var deploy = try box.deployctl(["deploy", "prod"])
        #expect(deploy.status == 0 && deploy.stdout.contains("Class: additive"), "\(deploy.stdout)\(deploy.stderr)")
        #expect(try box.sqlite(box.databasePath, "SELECT count(*) FROM sqlite_schema WHERE name = 'shop_category'") == "1")
        #expect(try box.sqlite(box.databasePath, "SELECT count(*) FROM django_migrations") == "2")

        // Nothing pending: exit 0, no snapshot.
        let backups = box.backupNames()
        let again = try box.deployctl(["deploy", "prod"])
        #expect(again.status == 0 && again.stdout.contains("Nothing to do"), "\(again.stdout)\(again.stderr)")
        #expect(box.backupNames() == backups)

        // Preserving: a rebuild that keeps every row, a new column, its backfill.
        try Self.add("shop/migrations/0003_product_sku.py", of: "django", to: box)
        let preservingSQL = try sqlmigrate("0003")
        #expect(try Self.sqlRouteClass(box, sql: preservingSQL) == "preserving")
        let names = try box.sqlite(box.databasePath, "SELECT group_concat(name) FROM (SELECT name FROM shop_product ORDER BY id)")
        deploy = try box.deployctl(["deploy", "prod"])
        #expect(deploy.status == 0 && deploy.stdout.contains("Class: preserving"), "\(deploy.stdout)\(deploy.stderr)")
        #expect(deploy.stdout.contains("shop_product: rebuilt (matched by id)") && deploy.stdout.contains("shop_product: gains column sku"), "\(deploy.stdout)")
        #expect(try box.sqlite(box.databasePath, "SELECT count(*) FROM shop_product WHERE sku = 'SKU-' || id") == "200")
        #expect(try box.sqlite(box.databasePath, "SELECT group_concat(name) FROM (SELECT name FROM shop_product ORDER BY id)") == names)

        // Destructive: refused without the flag (64), the database as it was, no snapshot left.
        try Self.add("shop/migrations/0004_remove_price.py", of: "django", to: box)
        let destructiveSQL = try sqlmigrate("0004")
        #expect(try Self.sqlRouteClass(box, sql: destructiveSQL) == "destructive")
        let before = try box.sha3(box.databasePath)
        let kept = box.backupNames()
        let refused = try box.deployctl(["deploy", "prod"])
        #expect(refused.status == 64 && refused.code == "migration.destructive_refused", "\(refused.stdout)\(refused.stderr)")
        #expect(refused.stderr.contains("shop_product.price: column dropped, 200 non-NULL values lost"), "\(refused.stderr)")
        #expect(try box.sha3(box.databasePath) == before && box.backupNames() == kept)
        deploy = try box.deployctl(["deploy", "prod", "--allow-destructive"])
        #expect(deploy.status == 0 && deploy.stdout.contains("Class: destructive"), "\(deploy.stdout)\(deploy.stderr)")
        #expect(try box.sqlite(box.databasePath, "SELECT count(*) FROM pragma_table_info('shop_product') WHERE name = 'price'") == "0")

        // A failing migration: exit 1, Django's error in the message, the database as it was.
        try Self.add("shop/migrations/0005_broken.py", of: "django", to: box)
        let migrated = try box.sha3(box.databasePath)
        let failed = try box.deployctl(["deploy", "prod"])
        #expect(failed.status == 1 && failed.code == "command.failed", "\(failed.stdout)\(failed.stderr)")
        #expect(failed.stderr.contains("exited 1") && failed.stderr.contains("no such table: no_such_table"), "\(failed.stderr)")
        #expect(try box.sha3(box.databasePath) == migrated)
        #expect(try box.sqlite(box.databasePath, "PRAGMA integrity_check") == "ok")
    }

    @Test("Alembic through alembic upgrade head: additive, preserving (batch rebuild with a new column, then filled) and destructive revisions deploy with their classes; destructive refused without the flag; a failing revision leaves the database as it was; nothing pending exits 0")
    func alembic() throws {
        let box = try Sandbox(config: Self.config(migrate: "alembic -c app/alembic.ini upgrade head", pending: "alembic -c app/alembic.ini current"))
        let versions = "migrations/versions/"
        try Self.copyProject("alembic", into: box, leaving: ["a2_tag.py", "a3_item_note.py", "a4_drop_qty.py", "a5_broken.py"].map { versions + $0 })
        try FileManager.default.removeItem(atPath: box.databasePath)
        var env = ProcessInfo.processInfo.environment
        env["DATABASE_URL"] = "sqlite:///" + box.databasePath
        let made = try Sandbox.exec("/usr/bin/env", ["alembic", "-c", box.path("instances/prod/app/alembic.ini"), "upgrade", "head"], environment: env)
        try #require(made.status == 0, "\(made.stderr)")
        _ = try box.sqlite(box.databasePath, "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 150) INSERT INTO item (name, qty) SELECT 'item ' || i, i FROM n")

        let nothing = try box.deployctl(["deploy", "prod"])
        #expect(nothing.status == 0 && nothing.stdout.contains("Nothing to do") && box.backupNames().isEmpty, "\(nothing.stdout)\(nothing.stderr)")

        try Self.add(versions + "a2_tag.py", of: "alembic", to: box)
        var deploy = try box.deployctl(["deploy", "prod"])
        #expect(deploy.status == 0 && deploy.stdout.contains("Class: additive"), "\(deploy.stdout)\(deploy.stderr)")
        #expect(try box.sqlite(box.databasePath, "SELECT version_num FROM alembic_version") == "a2")

        try Self.add(versions + "a3_item_note.py", of: "alembic", to: box)
        deploy = try box.deployctl(["deploy", "prod"])
        #expect(deploy.status == 0 && deploy.stdout.contains("Class: preserving") && deploy.stdout.contains("item: gains column note"), "\(deploy.stdout)\(deploy.stderr)")
        #expect(try box.sqlite(box.databasePath, "SELECT count(*) FROM item WHERE note = 'item ' || id AND qty = id") == "150")

        try Self.add(versions + "a4_drop_qty.py", of: "alembic", to: box)
        let before = try box.sha3(box.databasePath)
        let refused = try box.deployctl(["deploy", "prod"])
        #expect(refused.status == 64 && refused.code == "migration.destructive_refused" && refused.stderr.contains("item.qty: column dropped, 150 non-NULL values lost"),
                "\(refused.stdout)\(refused.stderr)")
        #expect(try box.sha3(box.databasePath) == before)
        deploy = try box.deployctl(["deploy", "prod", "--allow-destructive"])
        #expect(deploy.status == 0 && deploy.stdout.contains("Class: destructive"), "\(deploy.stdout)\(deploy.stderr)")

        try Self.add(versions + "a5_broken.py", of: "alembic", to: box)
        let migrated = try box.sha3(box.databasePath)
        let failed = try box.deployctl(["deploy", "prod"])
        #expect(failed.status == 1 && failed.code == "command.failed" && failed.stderr.contains("no such table: no_such_table"), "\(failed.stderr)")
        #expect(try box.sha3(box.databasePath) == migrated && box.sqlite(box.databasePath, "SELECT version_num FROM alembic_version") == "a4")
    }
}

/// A framework made of two shell scripts and the sqlite3 CLI: `app/m/<name>.sql` migrations,
/// applied ones recorded in `schema_migrations`, each in its own transaction (as frameworks
/// commit). Files in `app/` make it misbehave on the live database only (its path holds
/// `database/`): `live-fails`, `live-hangs`, `live-extra.sql`; `wrong-file` makes it migrate the
/// live database whatever it is given.
extension FrameworkCommandTests {
    static let pendingScript = """
        db="$DEPLOYCTL_DATABASE"
        applied=$(sqlite3 "$db" "SELECT version FROM schema_migrations" 2>/dev/null)
        for f in app/m/*.sql; do
          [ -e "$f" ] || continue
          v=$(basename "$f" .sql)
          echo "$applied" | grep -qx "$v" || echo "$v"
        done
        """
    static let migrateScript = """
        set -e
        db="${1:-$DEPLOYCTL_DATABASE}"
        [ -e app/wrong-file ] && db=database/lending_app_prod.db
        live=no
        case "$db" in *database/*) live=yes ;; esac
        sqlite3 "$db" "CREATE TABLE IF NOT EXISTS schema_migrations (version TEXT PRIMARY KEY)"
        for v in $(sh app/pending.sh); do
          { echo "BEGIN;"; cat "app/m/$v.sql"; echo "INSERT INTO schema_migrations VALUES ('$v'); COMMIT;"; } | sqlite3 -bail "$db"
          echo "applied $v"
          if [ $live = yes ] && [ -e app/live-fails ]; then echo "boom: the migration broke on the live database" >&2; exit 3; fi
          if [ $live = yes ] && [ -e app/live-hangs ]; then sleep 600; fi
        done
        if [ $live = yes ] && [ -e app/live-extra.sql ]; then sqlite3 "$db" < app/live-extra.sql; fi
        """

    /// A lending database with two pending migrations of the shell framework.
    static func shellBox(extra: String = "", migrate: String = "sh app/migrate.sh") throws -> Sandbox {
        let box = try Sandbox(rows: 80, config: Self.config(migrate: migrate, pending: "sh app/pending.sh", extra: extra))
        try box.write("instances/prod/app/pending.sh", Self.pendingScript + "\n")
        try box.write("instances/prod/app/migrate.sh", Self.migrateScript + "\n")
        try box.write("instances/prod/app/m/0001_tier.sql", "ALTER TABLE loan ADD COLUMN tier TEXT NOT NULL DEFAULT 'basic';\n")
        try box.write("instances/prod/app/m/0002_note.sql", "CREATE TABLE note (id INTEGER PRIMARY KEY, body TEXT);\nINSERT INTO note (body) VALUES ('hello');\n")
        return box
    }

    /// Every table's content as the sqlite3 CLI sees it, for "as before" checks.
    static func assertUndone(_ box: Sandbox, before: String, _ result: Sandbox.Result) throws {
        #expect(try box.sha3(box.databasePath) == before, "\(result.stdout)\(result.stderr)")
        #expect(try box.sqlite(box.databasePath, "SELECT count(*) FROM sqlite_schema WHERE name IN ('note', 'schema_migrations')") == "0")
        #expect(try box.sqlite(box.databasePath, "PRAGMA integrity_check") == "ok")
        #expect(!FileManager.default.fileExists(atPath: box.path("instances/prod/.deployctl.journal")))
    }

    @Test("the shell framework deploys, given its database by {database}: preserving, its output in the deploy's folder, the report lists the command runs")
    func shellDeploys() throws {
        let box = try Self.shellBox(migrate: "sh app/migrate.sh {database}")
        let deploy = try box.deployctl(["deploy", "prod"])
        #expect(deploy.status == 0 && deploy.stdout.contains("Class: preserving") && deploy.stdout.contains("loan: gains column tier"), "\(deploy.stdout)\(deploy.stderr)")
        #expect(try box.sqlite(box.databasePath, "SELECT count(*) FROM loan WHERE tier = 'basic'") == "80")
        #expect(try box.sqlite(box.databasePath, "SELECT body FROM note") == "hello")
        let deploys = box.path("instances/prod/deploys")
        let id = try #require(try FileManager.default.contentsOfDirectory(atPath: deploys).first { !$0.hasSuffix(".json") })
        #expect(try String(contentsOfFile: "\(deploys)/\(id)/migrate.stdout", encoding: .utf8).contains("applied 0002_note"))
        let report = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: "\(deploys)/\(id).json"))) as! [String: Any]
        let commands = try #require(report["commands"] as? [[String: Any]])
        #expect(commands.contains { ($0["stdout_path"] as? String)?.hasSuffix("/migrate.stdout") == true && $0["exit_code"] as? Int == 0 }, "\(commands)")
        // The root's .sql folder is other instances' business: not pending here.
        try box.write("instances/migrations/0001_other.sql", "CREATE TABLE other (x);\n")
        for command in [["status", "prod", "--json"], ["verify", "prod", "--json"]] {
            let shown = try box.deployctl(command)
            #expect(shown.stdout.contains("\"pending\"") && !shown.stdout.contains("0001_other"), "\(command): \(shown.stdout)\(shown.stderr)")
        }
        let again = try box.deployctl(["deploy", "prod"])
        #expect(again.status == 0 && again.stdout.contains("Nothing to do"), "\(again.stdout)\(again.stderr)")
    }

    @Test("a command that fails on the live database after committing one of its migrations: undone from the snapshot, exit 1, its stderr tail in the message")
    func liveFailureUndone() throws {
        let box = try Self.shellBox()
        try box.write("instances/prod/app/live-fails", "")
        let before = try box.sha3(box.databasePath)
        let result = try box.deployctl(["deploy", "prod"])
        #expect(result.status == 1 && result.code == "deploy.undone", "\(result.stdout)\(result.stderr)")
        #expect(result.stderr.contains("exited 3 on the live database") && result.stderr.contains("boom: the migration broke on the live database"), "\(result.stderr)")
        #expect(result.stderr.contains("was restored"), "\(result.stderr)")
        try Self.assertUndone(box, before: before, result)
    }

    @Test("a command that hangs on the live database: killed at command_timeout_seconds, undone, exit 1")
    func liveHangUndone() throws {
        let box = try Self.shellBox(extra: "command_timeout_seconds = 3")
        try box.write("instances/prod/app/live-hangs", "")
        let before = try box.sha3(box.databasePath)
        let result = try box.deployctl(["deploy", "prod"])
        #expect(result.status == 1 && result.code == "deploy.undone" && result.stderr.contains("timed out after"), "\(result.stdout)\(result.stderr)")
        try Self.assertUndone(box, before: before, result)
    }

    @Test("SIGINT while the command runs on the live database: its process group is killed, the deploy undone from the snapshot, exit 1")
    func interruptUndone() throws {
        let box = try Self.shellBox()
        try box.write("instances/prod/app/live-hangs", "")
        let before = try box.sha3(box.databasePath)
        let stderr = Pipe()
        let deploy = try box.spawnDeployctl(["deploy", "prod"], environment: [:], stderr: stderr)
        box.waitForJournal("\"command_group\"")
        usleep(300_000)
        deploy.interrupt()
        deploy.waitUntilExit()
        let text = String(decoding: stderr.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        #expect(deploy.terminationStatus == 1 && text.contains("was stopped by an interrupt on the live database") && text.contains("was restored"), "\(text)")
        try Self.assertUndone(box, before: before, Sandbox.Result(status: deploy.terminationStatus, stdout: "", stderr: text))
        let left = try Sandbox.exec("/usr/bin/pgrep", ["-f", box.path("instances/prod")])
        #expect(left.stdout.isEmpty, "the command's processes are gone: \(left.stdout)")
    }

    @Test("a command that changes another table on the live database than on the copy: the proof finds it, undone, exit 1")
    func differentTableUndone() throws {
        let box = try Self.shellBox()
        try box.write("instances/prod/app/live-extra.sql", "DELETE FROM tracker WHERE id = 1;\n")
        let before = try box.sha3(box.databasePath)
        let result = try box.deployctl(["deploy", "prod"])
        #expect(result.status == 1 && result.code == "deploy.undone", "\(result.stdout)\(result.stderr)")
        #expect(result.stderr.contains("tracker: changed by the command, which left it alone on the rehearsal copy"), "\(result.stderr)")
        try Self.assertUndone(box, before: before, result)
    }

    @Test("a command that migrates another file than the one it is given (the live database, during the rehearsal): detected, undone, exit 1")
    func wrongFileUndone() throws {
        let box = try Self.shellBox()
        try box.write("instances/prod/app/wrong-file", "")
        let before = try box.sha3(box.databasePath)
        let result = try box.deployctl(["deploy", "prod"])
        #expect(result.status == 1 && result.code == "deploy.undone", "\(result.stdout)\(result.stderr)")
        #expect(result.stderr.contains("the command did not migrate the database it was given") && result.stderr.contains("wrote the live database instead of its copy"), "\(result.stderr)")
        try Self.assertUndone(box, before: before, result)
        // A plan cannot undo it (no snapshot): it says so, exit 1.
        let plan = try box.deployctl(["plan", "prod"])
        #expect(plan.status == 1 && plan.stderr.contains("a plan has no snapshot to undo that with"), "\(plan.stdout)\(plan.stderr)")
    }

    @Test("a migrate command that is not found: 66 before any snapshot, nothing changed")
    func commandNotFound() throws {
        let box = try Self.shellBox(migrate: "no-such-framework migrate")
        let before = try box.sha3(box.databasePath)
        let result = try box.deployctl(["deploy", "prod"])
        #expect(result.status == 66 && result.code == "command.not_found" && result.stderr.contains("'no-such-framework'"), "\(result.stderr)")
        #expect(try box.sha3(box.databasePath) == before && box.backupNames().isEmpty)
    }

    @Test("pending output that cannot be read in its format: 64 naming the command and the line, nothing changed; a config with migrate_command and no pending_command: 64")
    func pendingUnreadable() throws {
        let box = try Self.shellBox(extra: "pending_format = \"django\"")
        let before = try box.sha3(box.databasePath)
        let result = try box.deployctl(["deploy", "prod"])
        #expect(result.status == 64 && result.code == "command.pending_unreadable", "\(result.stderr)")
        #expect(result.stderr.contains("pending_command 'sh app/pending.sh'") && result.stderr.contains("line 1: '0001_tier'"), "\(result.stderr)")
        #expect(try box.sha3(box.databasePath) == before && box.backupNames().isEmpty)
        try box.write("instances/prod/instance.toml", "[database]\npath = \"database/lending_app_prod.db\"\nmigrate_command = \"sh app/migrate.sh\"\n")
        let config = try box.deployctl(["deploy", "prod"])
        #expect(config.status == 64 && config.stderr.contains("needs 'database.pending_command'"), "\(config.stderr)")
    }

    @Test("an additive command deploy whose health check fails after its proof: what it created is dropped, the framework's records put back from the snapshot, the application's writes kept")
    func additiveUndoneInPlace() throws {
        let box = try Self.shellBox()
        try FileManager.default.removeItem(atPath: box.path("instances/prod/app/m/0002_note.sql"))
        let first = try box.deployctl(["deploy", "prod"])
        try #require(first.status == 0, "\(first.stdout)\(first.stderr)")
        // The application writes when it starts; its health check then fails.
        try box.write("instances/prod/app/start.sh", "sqlite3 database/lending_app_prod.db \"UPDATE loan SET status = 'closed' WHERE id = 1\"\n")
        try box.write("instances/prod/instance.toml", Self.config(migrate: "sh app/migrate.sh", pending: "sh app/pending.sh")
                      + "\n[hooks]\nstart = \"sh app/start.sh\"\nhealth = \"exit 1\"\nhealth_attempts = 1\n")
        try box.write("instances/prod/app/m/0002_note.sql", "CREATE TABLE note (id INTEGER PRIMARY KEY, body TEXT);\nINSERT INTO note (body) VALUES ('hello');\n")
        let backups = box.backupNames().count
        let result = try box.deployctl(["deploy", "prod"])
        #expect(result.status == 1 && result.code == "deploy.undone", "\(result.stdout)\(result.stderr)")
        #expect(result.stderr.contains("the objects the framework's command created were dropped and its records (schema_migrations) put back"), "\(result.stderr)")
        #expect(try box.sqlite(box.databasePath, "SELECT count(*) FROM sqlite_schema WHERE name = 'note'") == "0")
        #expect(try box.sqlite(box.databasePath, "SELECT group_concat(version) FROM schema_migrations") == "0001_tier")
        #expect(try box.sqlite(box.databasePath, "SELECT status FROM loan WHERE id = 1") == "closed")
        #expect(try box.sqlite(box.databasePath, "PRAGMA integrity_check") == "ok")
        // In place: the new snapshot, and no pre_restore copy.
        #expect(box.backupNames().count == backups + 1 && !box.backupNames().contains { $0.contains("pre_restore") }, "\(box.backupNames())")
        let pending = try Sandbox.exec("/bin/sh", ["-c", "cd \(box.path("instances/prod")) && DEPLOYCTL_DATABASE=\(box.databasePath) sh app/pending.sh"])
        #expect(pending.stdout == "0002_note\n", "the framework counts it pending again: \(pending.stdout)")
    }

    @Test("a command slower on the rehearsal copy than max_write_lock, with no stop hook: refused with 64 before the live run, nothing changed, no snapshot left")
    func writeLockBudget() throws {
        let box = try Self.shellBox(extra: "max_write_lock_ms = 1")
        let before = try box.sha3(box.databasePath)
        let result = try box.deployctl(["deploy", "prod"])
        #expect(result.status == 64 && result.code == "migration.write_lock_over_budget" && result.stderr.contains("on the rehearsal copy (its start-up included)"),
                "\(result.stdout)\(result.stderr)")
        #expect(try box.sha3(box.databasePath) == before && box.backupNames().isEmpty)
    }

    @Test("a config the commands cannot run from is refused with 64 naming the key, before anything is done", arguments: [
        ("pending_format = \"yaml\"", "'yaml' is not one of plain, django, rails, alembic"),
        ("command_timeout_seconds = 0", "command_timeout_seconds"),
        ("seed_sql = \"seed.sql\"", "cannot be used together"),
    ])
    func configRefused(extra: String, words: String) throws {
        let box = try Self.shellBox(extra: extra)
        let result = try box.deployctl(["deploy", "prod"])
        #expect(result.status == 64 && result.code == "config.invalid" && result.stderr.contains(words), "\(result.stderr)")
        #expect(box.backupNames().isEmpty)
    }

    @Test("a deploy killed after the command changed the live database (failpoint migrate-command): the next run's recovery restores the snapshot")
    func crashRecovered() throws {
        let box = try Self.shellBox()
        let before = try box.sha3(box.databasePath)
        let crashed = try box.deployctl(["deploy", "prod"], environment: ["DEPLOYCTL_FAILPOINTS": "migrate-command=crash"])
        #expect(crashed.status == 9, "expected SIGKILL, got \(crashed.status): \(crashed.stderr)")
        #expect(try box.sqlite(box.databasePath, "SELECT count(*) FROM note") == "1", "the command had migrated the live database")
        let journal = try String(contentsOfFile: box.path("instances/prod/.deployctl.journal"), encoding: .utf8)
        #expect(journal.contains("\"command\" : true") && journal.contains("\"committed\" : true"), "\(journal)")
        // The next deploy recovers first, then stops at its own preflight.
        let next = try box.deployctl(["deploy", "prod"], environment: ["DEPLOYCTL_FAILPOINTS": "preflight=error"])
        #expect(next.status == 1 && next.stdout.contains("undone from the snapshot"), "\(next.stdout)\(next.stderr)")
        try Self.assertUndone(box, before: before, next)
    }
}
