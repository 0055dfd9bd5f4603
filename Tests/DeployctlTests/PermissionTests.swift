import Foundation
import Testing

/// Another user's permissions: run as `nobody` through `setpriv` (the tests run as root, which
/// ignores permission bits), every folder or file that user may not use is an error naming
/// the path, the user and the missing permission, before any work: never "no backups".
@Suite("permissions")
struct PermissionTests {
    /// `setpriv`, when it can drop to `nobody` here; nil (the tests skip, saying why) otherwise.
    static let setpriv: String? = {
        guard FileManager.default.isExecutableFile(atPath: "/usr/bin/setpriv"), geteuid() == 0,
              let probe = try? Sandbox.exec("/usr/bin/setpriv", unprivileged + ["/usr/bin/id", "-u"]), probe.status == 0,
              probe.stdout.trimmingCharacters(in: .whitespacesAndNewlines) == "65534" else { return nil }
        return "/usr/bin/setpriv"
    }()

    static let unprivileged = ["--reuid=65534", "--regid=65534", "--clear-groups"]

    /// `setpriv`, or nil after printing why the test is skipped.
    static func runner() -> String? {
        if setpriv == nil { print("skipped: setpriv cannot run commands as nobody (uid 65534) here (needs /usr/bin/setpriv and root)") }
        return setpriv
    }

    /// A sandbox whose files belong to `nobody`, with one root-owned snapshot (backups folder 0700).
    static func sandbox() throws -> Sandbox {
        let box = try Sandbox(rows: 30)
        let snapshot = try box.deployctl(["snapshot", "prod"])
        try #require(snapshot.status == 0, "\(snapshot.stderr)")
        try Sandbox.exec("/usr/bin/chown", ["-R", "65534:65534", box.path("instances")]).expectSuccess()
        return box
    }

    @Test("an unreadable backups folder: list, status, verify, snapshot, prune and restore exit 66/73 naming folder, user and permission; never 'no backups'; nothing changes")
    func unreadableBackupsFolder() throws {
        guard let setpriv = Self.runner() else { return }
        let box = try Self.sandbox()
        try Sandbox.exec("/usr/bin/chown", ["0:0", box.backupsFolder]).expectSuccess()
        chmod(box.backupsFolder, 0o700)
        let before = box.tree()
        let database = try box.sha3(box.databasePath)
        for (command, status, permission) in [
            (["backups", "list", "prod"], Int32(66), "read and search (rx)"),
            (["status", "prod"], 66, "read and search (rx)"),
            (["backups", "verify", "prod"], 73, "read, write and search (rwx)"),
            (["snapshot", "prod"], 73, "read, write and search (rwx)"),
            (["backups", "prune", "prod", "--keep-last", "1", "--yes"], 73, "read, write and search (rwx)"),
            (["restore", "prod", "--latest", "--yes"], 73, "read, write and search (rwx)"),
        ] {
            let result = try box.deployctl(as: setpriv, command)
            #expect(result.status == status, "\(command): \(result.stderr)")
            #expect(result.stderr.contains("permission denied: user nobody (uid 65534) lacks \(permission) permission on the backups folder \(box.backupsFolder) (owner root, mode 700)"), "\(command): \(result.stderr)")
            #expect(result.stderr.contains("nothing was done"), "\(command): \(result.stderr)")
            #expect(!result.stdout.contains("No backups") && !result.stdout.contains("last backup: none"), "\(command): \(result.stdout)")
        }
        let all = try box.deployctl(as: setpriv, ["status", "all", "--quiet"])
        #expect(all.status == 66 && all.stderr.contains("prod: permission denied"), "\(all.stderr)")
        #expect(box.tree() == before, "a refused command changed files")
        #expect(try box.sha3(box.databasePath) == database)
    }

    @Test("backup manifests this user cannot read (a root snapshot's 0600 files): list, status and restore exit 66 naming the manifest, never 'no backups'")
    func unreadableManifests() throws {
        guard let setpriv = Self.runner() else { return }
        let box = try Self.sandbox()
        // The folder open to all, its backups root's own 0600 files (a root snapshot).
        #expect(try box.deployctl(["snapshot", "prod"]).status == 0)
        chmod(box.backupsFolder, 0o755)
        let manifest = try #require(box.allBackupFiles().first { $0.hasSuffix(".json") && !$0.hasPrefix(".") })
        try Sandbox.exec("/usr/bin/chown", ["0:0", box.backupsFolder + "/" + manifest]).expectSuccess()
        chmod(box.backupsFolder + "/" + manifest, 0o600)
        for command in [["backups", "list", "prod"], ["status", "prod"], ["restore", "prod", "--latest", "--dry-run"]] {
            let result = try box.deployctl(as: setpriv, command)
            #expect(result.status == 66, "\(command): \(result.stdout)\(result.stderr)")
            #expect(result.stderr.contains("lacks read (r) permission on the backup manifest \(box.backupsFolder)/\(manifest)"), "\(command): \(result.stderr)")
            #expect(!result.stdout.contains("No backups") && !result.stdout.contains("last backup: none"), "\(command): \(result.stdout)")
        }
    }

    @Test("a database the user may read but not write: restore and deploy exit 73 naming the database, the user and 'write' before any work; snapshot still works")
    func unwritableDatabase() throws {
        guard let setpriv = Self.runner() else { return }
        let box = try Self.sandbox()
        try box.installCashbackMigration()
        try Sandbox.exec("/usr/bin/chown", ["0:0", box.databasePath]).expectSuccess()
        chmod(box.databasePath, 0o644)
        let before = box.tree()
        let database = try box.sha3(box.databasePath)
        for command in [["restore", "prod", "--latest", "--yes"], ["deploy", "prod", "--yes"]] {
            let result = try box.deployctl(as: setpriv, command)
            #expect(result.status == 73, "\(command): \(result.stderr)")
            #expect(result.stderr.contains("user nobody (uid 65534) lacks write (w) permission on the database \(box.databasePath) (owner root, mode 644), needed to change the live database"), "\(command): \(result.stderr)")
            #expect(!result.stderr.contains("SQLite error"), "\(result.stderr)")
        }
        #expect(box.tree() == before, "a refused command changed files")
        #expect(try box.sha3(box.databasePath) == database)
        #expect(try box.tables().filter { $0.hasPrefix("cashback") }.isEmpty)
        // Reading it is allowed: a snapshot needs no write to the database.
        let snapshot = try box.deployctl(as: setpriv, ["snapshot", "prod"])
        #expect(snapshot.status == 0, "\(snapshot.stderr)")
    }

    @Test("a database folder the user cannot write: restore is 73 naming the folder (SQLite's journal files); verify of a WAL database is 66 naming the -shm file's folder, not a raw SQLite error")
    func unwritableDatabaseFolder() throws {
        guard let setpriv = Self.runner() else { return }
        let box = try Self.sandbox()
        let folder = (box.databasePath as NSString).deletingLastPathComponent
        try Sandbox.exec("/usr/bin/chown", ["0:0", folder]).expectSuccess()
        chmod(folder, 0o755)
        let before = box.tree()
        let restore = try box.deployctl(as: setpriv, ["restore", "prod", "--latest", "--yes"])
        #expect(restore.status == 73, "\(restore.stderr)")
        #expect(restore.stderr.contains("lacks write (w) permission on the database's folder \(folder) (owner root, mode 755), needed to create SQLite's journal files"), "\(restore.stderr)")
        let verify = try box.deployctl(as: setpriv, ["verify", "prod"])
        #expect(verify.status == 66, "\(verify.stderr)")
        #expect(verify.stderr.contains("database's folder \(folder)") && verify.stderr.contains("-shm"), "\(verify.stderr)")
        #expect(!verify.stderr.contains("SQLite error"), "\(verify.stderr)")
        #expect(box.tree() == before)
    }

    @Test("an unreadable instance config or a folder on the way that cannot be searched: 66 naming it, not a config syntax error")
    func unreadableConfig() throws {
        guard let setpriv = Self.runner() else { return }
        let box = try Self.sandbox()
        let config = box.path("instances/prod/instance.toml")
        try Sandbox.exec("/usr/bin/chown", ["0:0", config]).expectSuccess()
        chmod(config, 0o600)
        let result = try box.deployctl(as: setpriv, ["backups", "list", "prod"])
        #expect(result.status == 66, "\(result.stderr)")
        #expect(result.stderr.contains("lacks read (r) permission on the instance config \(config)"), "\(result.stderr)")
        chmod(config, 0o644)
        let backups = box.backupsFolder
        try Sandbox.exec("/usr/bin/chown", ["0:0", backups]).expectSuccess()
        chmod(backups, 0o744)  // readable, not searchable
        let list = try box.deployctl(as: setpriv, ["backups", "list", "prod"])
        #expect(list.status == 66 && list.stderr.contains("lacks search (x) permission on the backups folder"), "\(list.stderr)")
    }
}

extension Sandbox {
    /// Runs the built deployctl as `nobody` through `setpriv`.
    func deployctl(as setpriv: String, _ arguments: [String]) throws -> Result {
        var env = ProcessInfo.processInfo.environment
        env["NO_COLOR"] = "1"
        env["DEPLOYCTL_HINT_LOG"] = Sandbox.hintLog
        return try Sandbox.exec(setpriv, PermissionTests.unprivileged + [Sandbox.binary] + arguments + ["--root", root], environment: env)
    }
}

extension Sandbox.Result {
    func expectSuccess(sourceLocation: SourceLocation = #_sourceLocation) {
        #expect(status == 0, "\(stderr)", sourceLocation: sourceLocation)
    }
}
