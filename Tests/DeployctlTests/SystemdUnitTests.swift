import Foundation
import Testing

/// The shipped systemd template units (`contrib/systemd/`): accepted by `systemd-analyze
/// verify`, hardened to an exposure of 2.5 or less, and their commands doing what they claim
/// when run by the built deployctl as the unit would run them.
@Suite("systemd units")
struct SystemdUnitTests {
    static let units = ["snapshot", "verify", "status"]

    static var folder: String { RunbookTests.repository.appendingPathComponent("contrib/systemd").path }

    /// The units copied to a temp folder as instance `instance` (`deployctl-snapshot@app.service`),
    /// with the installed binary's path replaced by `binary`.
    static func instantiate(_ instance: String, binary: String, into temp: String) throws -> [String] {
        var paths = [String]()
        for unit in units {
            for kind in ["service", "timer"] {
                let text = try String(contentsOfFile: folder + "/deployctl-\(unit)@.\(kind)", encoding: .utf8)
                let path = temp + "/deployctl-\(unit)@\(instance).\(kind)"
                try text.replacingOccurrences(of: "/usr/bin/deployctl", with: binary).write(toFile: path, atomically: true, encoding: .utf8)
                paths.append(path)
            }
        }
        return paths
    }

    /// The value of `key=` in a unit's text (the first, or every one).
    static func values(_ key: String, in text: String) -> [String] {
        text.split(separator: "\n").filter { $0.hasPrefix(key + "=") }.map { String($0.dropFirst(key.count + 1)) }
    }

    @Test("every shipped unit is a service and timer pair that systemd-analyze verify accepts")
    func unitsVerify() throws {
        let present = try FileManager.default.contentsOfDirectory(atPath: Self.folder).filter { $0.hasSuffix(".service") || $0.hasSuffix(".timer") }.sorted()
        #expect(present == Self.units.flatMap { ["deployctl-\($0)@.service", "deployctl-\($0)@.timer"] }.sorted())
        let box = try Sandbox()
        let paths = try Self.instantiate("app", binary: Sandbox.binary, into: box.root)
        let result = try Sandbox.exec("/usr/bin/systemd-analyze", ["verify", "--man=no"] + paths)
        #expect(result.status == 0, "\(result.stdout)\(result.stderr)")
        #expect(result.stderr.isEmpty, "systemd-analyze verify complained: \(result.stderr)")

        // The check itself: a unit holding [Service], [Timer] and [Install] in one file (the old
        // runbook's block) is refused, so the pass above means something.
        let bad = box.path("deployctl-bad@app.service")
        try "[Unit]\nDescription=x\n[Service]\nType=oneshot\nExecStart=/bin/true\n[Timer]\nOnCalendar=hourly\n".write(toFile: bad, atomically: true, encoding: .utf8)
        let refused = try Sandbox.exec("/usr/bin/systemd-analyze", ["verify", "--man=no", bad])
        #expect(refused.stderr.contains("Unknown section 'Timer'"), "\(refused.stderr)")
    }

    @Test("every service's systemd-analyze security exposure is 2.5 or less, as the deployctl user, with no capabilities", arguments: units)
    func exposure(unit: String) throws {
        let box = try Sandbox()
        _ = try Self.instantiate("app", binary: Sandbox.binary, into: box.root)
        let service = box.path("deployctl-\(unit)@app.service")
        let result = try Sandbox.exec("/usr/bin/systemd-analyze", ["security", "--offline=yes", "--threshold=25", service])
        #expect(result.status == 0, "exposure over 2.5:\n\(result.stdout)\(result.stderr)")
        let line = try #require(result.stdout.split(separator: "\n").last { $0.contains("Overall exposure level") }, "\(result.stdout)")
        let score = try #require(line.split(separator: " ").compactMap { Double($0) }.first, "\(line)")
        #expect(score <= 2.5, "\(line)")
        let text = try String(contentsOfFile: service, encoding: .utf8)
        #expect(Self.values("User", in: text) == ["deployctl"])
        #expect(Self.values("ProtectSystem", in: text) == ["strict"])
        #expect(Self.values("NoNewPrivileges", in: text) == ["yes"])
        #expect(Self.values("PrivateTmp", in: text) == ["yes"])
        #expect(Self.values("ReadWritePaths", in: text) == ["-/var/lib/deployctl/instances/%i", "-/var/lib/deployctl/metrics"])
        // Settings that would hide the processes holding the database stay out.
        #expect(Self.values("ProtectProc", in: text).isEmpty && Self.values("ProcSubset", in: text).isEmpty)
    }

    /// Runs a unit's `ExecStart=` as systemd would for `instance` (with `%i` replaced and the
    /// unit's environment), against the sandbox's root and with `metrics` as the metrics file.
    static func runExecStart(_ unit: String, instance: String, box: Sandbox, metrics: String) throws -> Sandbox.Result {
        let text = try String(contentsOfFile: folder + "/deployctl-\(unit)@.service", encoding: .utf8)
        let command = try #require(values("ExecStart", in: text).first)
        var words = command.replacingOccurrences(of: "%i", with: instance).split(separator: " ").map(String.init)
        #expect(words.removeFirst() == "/usr/bin/deployctl")
        let index = try #require(words.firstIndex(of: "--metrics-file"))
        #expect(words[index + 1] == "/var/lib/deployctl/metrics/deployctl-\(instance).prom")
        words[index + 1] = metrics
        return try box.deployctl(words)
    }

    @Test("the units' commands work: snapshot (retention from the config), the newest backup verified, status; metrics written for each")
    func commandsRun() throws {
        let box = try Sandbox(config: """
            [database]
            path = "database/lending_app_prod.db"
            [backups]
            path = "backups"
            keep_last = 2
            max_backup_age = "3h"
            """)
        let metrics = box.path("deployctl-prod.prom")
        for _ in 0..<3 {
            let snapshot = try Self.runExecStart("snapshot", instance: "prod", box: box, metrics: metrics)
            #expect(snapshot.status == 0 && snapshot.stdout.isEmpty && snapshot.stderr.isEmpty, "\(snapshot.stderr)")
        }
        #expect(box.backupNames().count == 2, "keep_last = 2 from instance.toml: \(box.backupNames())")
        #expect(box.backupNames().allSatisfy { $0.contains("_hourly_") })
        let verify = try Self.runExecStart("verify", instance: "prod", box: box, metrics: metrics)
        #expect(verify.status == 0, "\(verify.stderr)")
        let status = try Self.runExecStart("status", instance: "prod", box: box, metrics: metrics)
        #expect(status.status == 0, "\(status.stderr)")
        let text = try String(contentsOfFile: metrics, encoding: .utf8)
        for series in ["deployctl_last_backup_timestamp_seconds{instance=\"prod\"}", "deployctl_last_verification_ok{instance=\"prod\"} 1",
                       "deployctl_run_success{instance=\"prod\",command=\"snapshot\"} 1", "deployctl_run_success{instance=\"prod\",command=\"status\"} 1"] {
            #expect(text.contains(series), "\(series) missing from:\n\(text)")
        }
    }

    @Test("a unit enabled for an instance that does not exist fails naming it, with exit 66 (no such instance), writing nothing", arguments: units)
    func missingInstance(unit: String) throws {
        let box = try Sandbox()
        let metrics = box.path("deployctl-ghost.prom")
        let result = try Self.runExecStart(unit, instance: "ghost", box: box, metrics: metrics)
        #expect(result.status == 66, "\(result.stderr)")
        #expect(result.stderr.contains("no instance 'ghost'"), "\(result.stderr)")
        #expect(!FileManager.default.fileExists(atPath: box.path("instances/ghost")))
    }

    @Test("a folder deployctl makes takes its parent's owner and mode: root's snapshot under an application user's instance folder leaves backups/, its files and the lock file to that user, whose own snapshot then works",
          .enabled(if: geteuid() == 0, "giving a folder to another user needs root"))
    func createdFoldersInheritOwner() throws {
        let box = try Sandbox(journalMode: "wal")
        let user: uid_t = 4321, group: gid_t = 4322
        let instance = box.path("instances/prod")
        for path in [instance, instance + "/database", box.databasePath] {
            #expect(chown(path, user, group) == 0)
        }
        #expect(chmod(instance, 0o2750) == 0)
        let asRoot = try box.deployctl(["snapshot", "prod", "--label", "byroot"])
        #expect(asRoot.status == 0, "\(asRoot.stderr)")
        var info = stat()
        #expect(stat(box.backupsFolder, &info) == 0)
        #expect(info.st_uid == user && info.st_gid == group, "backups/ owned by \(info.st_uid):\(info.st_gid)")
        #expect(info.st_mode & 0o7777 == 0o2750, "backups/ mode \(String(info.st_mode & 0o7777, radix: 8))")
        for file in box.allBackupFiles().map({ box.backupsFolder + "/" + $0 }) + [instance + "/.deployctl.lock"] {
            #expect(stat(file, &info) == 0 && info.st_uid == user && info.st_gid == group, "\(file) owned by \(info.st_uid):\(info.st_gid)")
        }

        // The application's user takes its own snapshot in that folder (it was exit 73 when root
        // had made backups/ root-owned 0700).
        let asUser = try Sandbox.exec("/usr/bin/setpriv", ["--reuid=\(user)", "--regid=\(group)", "--clear-groups", Sandbox.binary,
                                                           "snapshot", "prod", "--label", "byuser", "--root", box.root])
        #expect(asUser.status == 0, "\(asUser.stderr)")
        #expect(box.backupNames().contains { $0.contains("_byuser_") }, "\(box.backupNames())")
    }
}
