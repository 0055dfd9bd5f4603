import Foundation
import Orchestrator
import Support
import Testing

/// `deployctl init`: adopting an existing database writes a working instance, or nothing.
@Suite("init")
struct InitTests {
    /// A sandbox whose `instances/` holds only the deploy.toml below, and an application's
    /// database outside the root (`app/data/app.db`).
    static func adoptionBox(journalMode: String) throws -> (Sandbox, String) {
        let box = try Sandbox(journalMode: journalMode)
        try FileManager.default.removeItem(atPath: box.path("instances/prod"))
        try box.write("instances/deploy.toml", "# order of promotion\norder = [\n  \"dev\",\n]\nmigrations = \"migrations\"\n")
        try FileManager.default.createDirectory(atPath: box.path("app/data"), withIntermediateDirectories: true)
        let database = box.path("app/data/app.db")
        try box.makeLendingDatabase(path: database, journalMode: journalMode, rows: 50)
        return (box, database)
    }

    /// Every file under the sandbox's `instances/`, with its bytes.
    static func tree(_ box: Sandbox) throws -> [String: Data] {
        var files = [String: Data]()
        let base = box.path("instances")
        for case let relative as String in FileManager.default.enumerator(atPath: base)! {
            var isDirectory: ObjCBool = false
            _ = FileManager.default.fileExists(atPath: base + "/" + relative, isDirectory: &isDirectory)
            files[relative] = isDirectory.boolValue ? Data() : try Data(contentsOf: URL(fileURLWithPath: base + "/" + relative))
        }
        return files
    }

    @Test("init adopts a database: instance.toml with journal mode and size, backups beside it, the order extended; the first snapshot, verify and status then work, and the database is unchanged",
          arguments: ["wal", "delete"])
    func adopts(journalMode: String) throws {
        let (box, database) = try Self.adoptionBox(journalMode: journalMode)
        let before = try box.sha3(database)
        let result = try box.deployctl(["init", "app", "--database", database, "--json"])
        #expect(result.status == 0, "\(result.stderr)")
        let document = try #require(try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any])
        #expect(document["journal_mode"] as? String == (journalMode == "wal" ? "wal" : "rollback"))
        #expect(document["bytes"] as? Int == (try FileManager.default.attributesOfItem(atPath: database)[.size] as? Int))
        #expect(document["backups"] as? String == box.path("instances/app/backups"))
        #expect(document["added_to_order"] as? Bool == true)
        let next = try #require(document["next"] as? [String])
        #expect(next.first == "deployctl --root \(box.root) snapshot app")
        #expect(next.last == "sudo systemctl enable --now deployctl-snapshot@app.timer deployctl-verify@app.timer deployctl-status@app.timer")
        // Not the package's root: the drop-in names this root (and a WAL database's folder).
        let dropIn = try #require(document["drop_in"] as? String)
        #expect(dropIn.contains("Environment=DEPLOYCTL_ROOT=\(box.root)\n"), "\(dropIn)")
        #expect(dropIn.contains("ReadWritePaths=\(box.path("app/data"))\n") == (journalMode == "wal"), "\(dropIn)")

        let config = try String(contentsOfFile: box.path("instances/app/instance.toml"), encoding: .utf8)
        for line in ["path = \"\(database)\"", "path = \"backups\"", "gzip = true", "keep_last = 24", "max_backup_age = \"3h\""] {
            #expect(config.contains("\n\(line)\n"), "\(line) missing:\n\(config)")
        }
        let deployToml = try String(contentsOfFile: box.path("instances/deploy.toml"), encoding: .utf8)
        #expect(deployToml == "# order of promotion\norder = [\"dev\", \"app\"]\nmigrations = \"migrations\"\n")

        for command in [["snapshot", "app"], ["backups", "verify", "app"], ["status", "app"]] {
            let run = try box.deployctl(command + ["--quiet"])
            #expect(run.status == 0, "\(command): \(run.stderr)")
        }
        #expect(try box.sha3(database) == before)
        #expect(try box.sqlite(database, "PRAGMA journal_mode") == journalMode)
    }

    @Test("bad input to init writes nothing: an existing instance (64), a missing path (66), a file that is not SQLite or a folder (65), a backups folder in, at or around the database's folder (64), an invalid name (64), a database another instance names (64)")
    func badInput() throws {
        let (box, database) = try Self.adoptionBox(journalMode: "wal")
        #expect(try box.deployctl(["init", "app", "--database", database, "--quiet"]).status == 0)
        try box.write("app/notes.txt", String(repeating: "not a database\n", count: 20))
        let cases: [([String], Int32, String)] = [
            (["init", "app", "--database", database], 64, "instance 'app' exists already"),
            (["init", "two", "--database", box.path("app/data/missing.db")], 66, "missing.db does not exist"),
            (["init", "two", "--database", box.path("app/notes.txt")], 65, "is not a SQLite database"),
            (["init", "two", "--database", box.path("app/data")], 65, "is a folder, not a SQLite database"),
            (["init", "two", "--database", database, "--backups", box.path("app/data/backups")], 64, "lies inside the database's folder"),
            (["init", "two", "--database", database, "--backups", box.path("app/data")], 64, "is the database's folder"),
            (["init", "two", "--database", database, "--backups", box.path("app")], 64, "contains the database's folder"),
            (["init", "../two", "--database", database], 64, "invalid instance name"),
            (["init", "two", "--database", database], 64, "is the database of instance 'app' already"),
        ]
        let before = try Self.tree(box)
        let databaseBefore = try box.sha3(database)
        for (arguments, status, message) in cases {
            let result = try box.deployctl(arguments)
            #expect(result.status == status, "\(arguments): \(result.stderr)")
            #expect(result.stderr.contains(message), "\(arguments): \(result.stderr)")
            #expect(result.stderr.contains("Try: "), "\(arguments): \(result.stderr)")
        }
        #expect(try Self.tree(box) == before, "init wrote something on bad input")
        #expect(!FileManager.default.fileExists(atPath: box.path("app/data/backups")))
        #expect(try box.sha3(database) == databaseBefore)
    }

    @Test("init into a root with no deploy.toml starts one holding the instance; with other instances and no order, deploy.toml is left alone")
    func deployTomlCreatedOrLeft() throws {
        let (box, database) = try Self.adoptionBox(journalMode: "delete")
        try FileManager.default.removeItem(atPath: box.path("instances/deploy.toml"))
        #expect(try box.deployctl(["init", "first", "--database", database, "--quiet"]).status == 0)
        let created = try String(contentsOfFile: box.path("instances/deploy.toml"), encoding: .utf8)
        #expect(created.contains("\norder = [\"first\"]\n"), "\(created)")

        try FileManager.default.removeItem(atPath: box.path("instances/deploy.toml"))
        try box.makeLendingDatabase(path: box.path("app/data/second.db"), journalMode: "delete", rows: 5)
        let second = try box.deployctl(["init", "second", "--database", box.path("app/data/second.db")])
        #expect(second.status == 0, "\(second.stderr)")
        #expect(second.stdout.contains("has no order: 'deploy all' takes every instance folder"), "\(second.stdout)")
        #expect(!FileManager.default.fileExists(atPath: box.path("instances/deploy.toml")))
    }

    @Test("the drop-in init prints: a WAL database of another user runs the units as that user with its folder writable; a rollback-journal database anyone can read needs no other user",
          .enabled(if: geteuid() == 0, "giving the database to another user needs root"))
    func dropIn() throws {
        for journalMode in ["wal", "delete"] {
            let (box, database) = try Self.adoptionBox(journalMode: journalMode)
            #expect(chown(database, 4321, 4322) == 0 && chmod(database, 0o644) == 0)
            let result = try box.deployctl(["init", "app", "--database", database, "--json"])
            #expect(result.status == 0, "\(result.stderr)")
            let document = try #require(try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any])
            let dropIn = try #require(document["drop_in"] as? String)
            let expected = journalMode == "wal"
                ? "[Service]\nUser=4321\nGroup=4322\nSupplementaryGroups=deployctl\nEnvironment=DEPLOYCTL_ROOT=\(box.root)\nReadWritePaths=\(box.path("instances/app"))\nReadWritePaths=\(box.path("app/data"))\n"
                : "[Service]\nEnvironment=DEPLOYCTL_ROOT=\(box.root)\nReadWritePaths=\(box.path("instances/app"))\n"
            #expect(dropIn == expected)
            let next = try #require(document["next"] as? [String])
            #expect(next.contains { $0.hasPrefix("for unit in snapshot verify status; do sudo mkdir -p /etc/systemd/system/deployctl-$unit@app.service.d && printf '%b' '[Service]\\n") })
        }
    }

    @Test("the drop-in command init prints writes exactly the drop-in, for paths with spaces, quotes, % and backslashes, and systemd-analyze verify accepts the unit with it")
    func dropInCommandRuns() throws {
        let box = try Sandbox(journalMode: "wal")
        let odd = box.path("it's 100% \\ app/data")
        try FileManager.default.createDirectory(atPath: odd, withIntermediateDirectories: true)
        let database = odd + "/app.db"
        try box.makeLendingDatabase(path: database, journalMode: "wal", rows: 10)
        let result = try box.deployctl(["init", "app", "--database", database, "--json"])
        #expect(result.status == 0, "\(result.stderr)")
        let document = try #require(try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any])
        let dropIn = try #require(document["drop_in"] as? String)
        #expect(dropIn.contains("ReadWritePaths=\"\(odd)\"\n"), "\(dropIn)")
        // instance.toml holds the path as it is: a snapshot finds the database.
        let snapshot = try box.deployctl(["snapshot", "app", "--quiet"])
        #expect(snapshot.status == 0, "\(snapshot.stderr)")
        let command = try #require((document["next"] as? [String])?.first { $0.hasPrefix("for unit in") })
        // Run as printed, with /etc/systemd/system moved into the sandbox and no sudo or systemctl.
        let etc = box.path("etc")
        let runnable = command.replacingOccurrences(of: "/etc/systemd/system", with: etc).replacingOccurrences(of: "sudo ", with: "")
            .replacingOccurrences(of: "; systemctl daemon-reload", with: "")
        let run = try Sandbox.exec("/bin/sh", ["-c", runnable])
        #expect(run.status == 0, "\(run.stderr)")
        for unit in SystemdUnitTests.units {
            let written = try String(contentsOfFile: etc + "/deployctl-\(unit)@app.service.d/instance.conf", encoding: .utf8)
            #expect(written == dropIn)
        }
        // The snapshot unit with the drop-in appended: systemd reads every setting of it.
        let paths = try SystemdUnitTests.instantiate("app", binary: Sandbox.binary, into: box.root)
        let service = try #require(paths.first { $0.hasSuffix("deployctl-snapshot@app.service") })
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: service))
        handle.seekToEndOfFile()
        handle.write(Data(dropIn.utf8))
        try handle.close()
        let verify = try Sandbox.exec("/usr/bin/systemd-analyze", ["verify", "--man=no", service])
        #expect(verify.status == 0 && verify.stderr.isEmpty, "\(verify.stderr)")
    }

    @Test("the root: --root, else DEPLOYCTL_ROOT (not when empty), else the current directory with instances/, else the installed root with instances/, else an error naming both")
    func rootRule() throws {
        let base = NSTemporaryDirectory() + "deployctl-root-" + UUID().uuidString
        defer { try? FileManager.default.removeItem(atPath: base) }
        for folder in ["here/instances", "installed/instances", "named/instances", "bare"] {
            try FileManager.default.createDirectory(atPath: base + "/" + folder, withIntermediateDirectories: true)
        }
        func root(_ option: String?, _ environment: [String: String], cwd: String, installed: String) throws -> String {
            try Workspace(root: option, environment: environment, currentDirectory: base + "/" + cwd, installedRoot: base + "/" + installed).root
        }
        #expect(try root("../named", [:], cwd: "here", installed: "installed") == base + "/named")
        #expect(try root(nil, ["DEPLOYCTL_ROOT": base + "/named"], cwd: "here", installed: "installed") == base + "/named")
        #expect(try root(nil, ["DEPLOYCTL_ROOT": ""], cwd: "here", installed: "installed") == base + "/here")
        #expect(try root(nil, [:], cwd: "here", installed: "installed") == base + "/here")
        #expect(try root(nil, [:], cwd: "bare", installed: "installed") == base + "/installed")
        do {
            _ = try root(nil, [:], cwd: "bare", installed: "missing")
            Issue.record("a root was found where there is none")
        } catch let failure as Failure {
            #expect(failure.kind == .usage)
            #expect(failure.message == "\(base)/bare is not a deployment root: it has no instances/ folder (nor has \(base)/missing, the installed package's root)")
        }
        // A root that is named is not second-guessed: an error, not the installed root.
        #expect(throws: Failure.self) { try root(base + "/bare", [:], cwd: "here", installed: "installed") }
    }
}
