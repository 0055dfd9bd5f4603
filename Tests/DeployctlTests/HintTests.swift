import Foundation
import Testing

/// Hints run as printed: every "Try:" the suite triggers (the built deployctl appends each to
/// `Sandbox.hintLog`) names complete commands, which the real argument parser accepts.
@Suite("hints")
struct HintTests {
    @Test("every hint the tests triggered names commands that parse (DEPLOYCTL_PARSE_ONLY), with no placeholder for the instance")
    func hintsParse() throws {
        try triggerCommonHints()
        let log = try String(contentsOfFile: Sandbox.hintLog, encoding: .utf8)
        let hints = Set(log.split(separator: "\n").map(String.init))
        #expect(hints.count >= 8, "too few hints collected: \(hints)")
        var commands = Set<String>()
        for hint in hints {
            #expect(!hint.contains("<instance>") && !hint.contains("INSTANCE"), "a placeholder for the instance: \(hint)")
            commands.formUnion(Self.commands(in: hint))
        }
        for command in commands {
            #expect(!command.split(separator: " ").contains { $0.hasPrefix("<") }, "a placeholder in a hint's command: \(command)")
        }
        #expect(commands.count >= 6, "too few commands in the hints: \(commands)")
        var environment = ProcessInfo.processInfo.environment
        environment["DEPLOYCTL_PARSE_ONLY"] = "1"
        environment.removeValue(forKey: "DEPLOYCTL_HINT_LOG")
        for command in commands.sorted() {
            let arguments = command.split(separator: " ").dropFirst().map(String.init)
            let parsed = try Sandbox.exec(Sandbox.binary, arguments, environment: environment)
            #expect(parsed.status == 0, "the hint's command does not parse: \(command)\n\(parsed.stderr)")
            #expect(parsed.stdout.isEmpty, "parsing ran the command: \(command)")
        }
    }

    @Test("the parse-only check can fail: a command the parser refuses exits non-zero")
    func parseOnlyRefuses() throws {
        var environment = ProcessInfo.processInfo.environment
        environment["DEPLOYCTL_PARSE_ONLY"] = "1"
        for bad in [["backups", "list"], ["backups", "prune", "prod", "--dry-run"], ["restore", "prod"], ["snapshot", "prod", "--keep-last"]] {
            #expect(try Sandbox.exec(Sandbox.binary, bad, environment: environment).status == 64, "\(bad)")
        }
        #expect(Self.commands(in: "list them with 'deployctl backups list prod --remote r'; or (deployctl snapshot prod)")
                == ["deployctl backups list prod --remote r", "deployctl snapshot prod"])
        #expect(Self.commands(in: "e.g. deployctl keygen --output /etc/deployctl/prod.agekey") == ["deployctl keygen --output /etc/deployctl/prod.agekey"])
    }

    /// The `deployctl …` commands in a hint: from the word `deployctl` to a quote, bracket,
    /// `;`, `,` or the end.
    static func commands(in hint: String) -> [String] {
        let pattern = try! NSRegularExpression(pattern: "(?:^|[\\s'(])(deployctl(?: [^\\s'();,]+)+)")
        let range = NSRange(hint.startIndex..., in: hint)
        return pattern.matches(in: hint, range: range).compactMap { Range($0.range(at: 1), in: hint).map { String(hint[$0]) } }
    }

    /// Failures a new user meets, so their hints are in the log whatever else ran.
    func triggerCommonHints() throws {
        let box = try Sandbox(rows: 10)
        #expect(try box.deployctl(["backups", "verify", "prod"]).status == 66)
        #expect(try box.deployctl(["restore", "prod", "--latest", "--yes"]).status == 66)
        #expect(try box.deployctl(["restore", "prod", "lending_app_prod_snapshot_20200101_000000.db", "--yes"]).status == 66)
        #expect(try box.deployctl(["snapshpt", "prod"]).status == 64)
        #expect(try box.deployctl(["backups", "lsit", "prod"]).status == 64)
        #expect(try box.deployctl(["status", "prdo"]).status == 66)
        #expect(try box.deployctl(["snapshot", "prod"]).status == 0)
        let name = try #require(box.backupNames().first)
        #expect(try box.deployctl(["backups", "remove", "prod", name]).status == 64)
        var bytes = try Data(contentsOf: URL(fileURLWithPath: box.backupsFolder + "/" + name))
        bytes[bytes.count / 2] ^= 0x40
        try bytes.write(to: URL(fileURLWithPath: box.backupsFolder + "/" + name))
        let restore = try box.deployctl(["restore", "prod", name, "--yes"])
        #expect(restore.status == 65 && restore.code == "backup.checksum_mismatch", "\(restore.stderr)")
        let verify = try box.deployctl(["backups", "verify", "prod", name])
        #expect(verify.status == 65 && verify.code == "backup.verification_failed", "\(verify.stderr)")
        #expect(try box.deployctl(["status", "prod", "--quiet"]).status == 65)
    }
}

/// One exit code (65) for a changed migration file across deploy, verify and status; accept
/// takes the name with or without `.sql`; unknown names suggest the nearest.
@Suite("changed migrations and names")
struct ChangedMigrationTests {
    @Test("an applied migration file edited afterwards: deploy, plan, verify and status exit 65 and name it with the accept command; accept takes the .sql name; then all is well")
    func changedMigration() throws {
        let box = try Sandbox(rows: 10)
        try box.installCashbackMigration()
        let deployed = try box.deployctl(["deploy", "prod", "--yes"])
        try #require(deployed.status == 0, "\(deployed.stderr)")
        let file = box.path("instances/migrations/0001_cashback_tables.sql")
        try (try String(contentsOfFile: file, encoding: .utf8) + "\n-- a comment added later\n").write(toFile: file, atomically: true, encoding: .utf8)
        let before = try box.sha3(box.databasePath)
        let backups = box.backupNames()
        for command in [["deploy", "prod", "--yes"], ["plan", "prod"], ["verify", "prod"], ["status", "prod"]] {
            let result = try box.deployctl(command)
            #expect(result.status == 65, "\(command): \(result.stdout)\(result.stderr)")
            let output = result.stdout + result.stderr
            #expect(output.contains("migration file \(file) changed after it was applied"), "\(command): \(output)")
            #expect(output.contains("'deployctl accept prod 0001_cashback_tables'"), "\(command): \(output)")
        }
        #expect(try box.sha3(box.databasePath) == before)
        #expect(box.backupNames() == backups, "a refused deploy left a snapshot")

        let typo = try box.deployctl(["accept", "prod", "0001_cashbak_tables", "--yes"])
        #expect(typo.status == 64 && typo.code == "migration.not_found" && typo.stderr.contains("migrations: 0001_cashback_tables"), "\(typo.stderr)")
        #expect(typo.stderr.contains("Try: deployctl accept prod 0001_cashback_tables"), "\(typo.stderr)")
        let accepted = try box.deployctl(["accept", "prod", "0001_cashback_tables.sql", "--yes"])
        #expect(accepted.status == 0, "\(accepted.stderr)")
        #expect(try box.deployctl(["verify", "prod"]).status == 0)
        #expect(try box.deployctl(["status", "prod"]).status == 0)
    }

    @Test("unknown commands and instances suggest the nearest; nothing is run")
    func didYouMean() throws {
        let box = try Sandbox(rows: 5)
        try box.addInstance("dev")
        let snapshot = try box.deployctl(["snapshpt", "prod"])
        #expect(snapshot.status == 64)
        #expect(snapshot.stderr.contains("unknown command 'snapshpt': did you mean 'snapshot'?"), "\(snapshot.stderr)")
        #expect(snapshot.stderr.contains("Try: deployctl snapshot prod --root \(box.root)"), "\(snapshot.stderr)")
        let group = try box.deployctl(["backups", "lsit", "prod"])
        #expect(group.status == 64 && group.stderr.contains("did you mean 'backups list'?"), "\(group.stderr)")
        let none = try box.deployctl(["frobnicate"])
        #expect(none.status == 64 && none.stderr.contains("unknown command 'frobnicate'. Commands: deploy, plan, snapshot"), "\(none.stderr)")
        let instance = try box.deployctl(["status", "prdo"])
        #expect(instance.status == 66, "\(instance.stderr)")
        #expect(instance.stderr.contains("instances: dev, prod") && instance.stderr.contains("did you mean the instance 'prod'?"), "\(instance.stderr)")
        #expect(box.backupNames().isEmpty)
        // A pre_* label is the copies' own: the snapshot says what that means.
        let reserved = try box.deployctl(["snapshot", "prod", "--label", "pre_restore"])
        #expect(reserved.status == 0 && (reserved.stdout + reserved.stderr).contains("will never count as a backup for max_backup_age"), "\(reserved.stdout)\(reserved.stderr)")
    }
}
