import Foundation
import Testing

/// docs/errors.md and the sources agree on every failure code (issue 24, item 4).
@Suite("error codes")
struct ErrorCodeTests {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path
    /// FailureKind → exit code, as SPEC.md's table (the CLI's `ExitStatus`).
    static let exitCodes = ["failed": 1, "unproven": 2, "usage": 64, "badData": 65, "missingInput": 66, "unavailable": 69,
                            "cannotCreate": 73, "io": 74, "temporary": 75, "permission": 77]

    /// Every `FailureCode("text", .kind)` declared under Sources/, with its exit code.
    static func declared() throws -> [String: Int] {
        var codes = [String: Int]()
        let pattern = try NSRegularExpression(pattern: #"FailureCode\("([^"]+)", \.(\w+)\)"#)
        let files = FileManager.default.enumerator(atPath: root + "/Sources")!.compactMap { $0 as? String }.filter { $0.hasSuffix(".swift") }
        for file in files {
            let text = try String(contentsOfFile: root + "/Sources/" + file, encoding: .utf8)
            for match in pattern.matches(in: text, range: NSRange(text.startIndex..., in: text)) {
                let code = String(text[Range(match.range(at: 1), in: text)!])
                let kind = String(text[Range(match.range(at: 2), in: text)!])
                #expect(codes[code] == nil, "\(code) is declared twice")
                codes[code] = exitCodes[kind] ?? -1
            }
        }
        return codes
    }

    /// Every `| \`code\` | exit |` row of docs/errors.md.
    static func documented() throws -> [String: Int] {
        let text = try String(contentsOfFile: root + "/docs/errors.md", encoding: .utf8)
        var codes = [String: Int]()
        let pattern = try NSRegularExpression(pattern: #"^\| `([a-z0-9_.]+)` \| (\d+) \|"#, options: .anchorsMatchLines)
        for match in pattern.matches(in: text, range: NSRange(text.startIndex..., in: text)) {
            let code = String(text[Range(match.range(at: 1), in: text)!])
            #expect(codes[code] == nil, "\(code) is listed twice in docs/errors.md")
            codes[code] = Int(text[Range(match.range(at: 2), in: text)!])
        }
        return codes
    }

    @Test("every code declared in the sources is in docs/errors.md with its exit code, and every listed code exists")
    func documentedCodes() throws {
        let declared = try Self.declared()
        let documented = try Self.documented()
        #expect(declared.count > 10)
        for (code, exit) in declared.sorted(by: { $0.key < $1.key }) {
            #expect(documented[code] == exit, "\(code) (exit \(exit)) is \(documented[code].map { "listed with exit \($0)" } ?? "missing") in docs/errors.md")
        }
        for code in documented.keys.sorted() where declared[code] == nil {
            Issue.record("docs/errors.md lists \(code), which no source declares")
        }
        let shape = try NSRegularExpression(pattern: #"^[a-z0-9]+(_[a-z0-9]+)*\.[a-z0-9]+(_[a-z0-9]+)*$"#)
        for code in declared.keys {
            #expect(shape.firstMatch(in: code, range: NSRange(code.startIndex..., in: code)) != nil, "\(code) is not area.what_happened")
        }
    }
}

extension ErrorCodeTests {
    @Test("the code is printed on a terminal, in --quiet lines and in --json; a misspelt failpoint is refused with 64")
    func printedForms() throws {
        let box = try Sandbox(rows: 5)
        let plain = try box.deployctl(["snapshot", "prod"], environment: ["DEPLOYCTL_FAILPOINTS": "snapshots=error"])
        #expect(plain.status == 64 && plain.code == "failpoint.invalid", "\(plain.stderr)")
        #expect(plain.stderr.contains("no failpoint is named 'snapshots'") && plain.stderr.contains("snapshot, "), "\(plain.stderr)")
        let quiet = try box.deployctl(["snapshot", "prod", "--quiet"], environment: ["DEPLOYCTL_FAILPOINTS": "snapshot=error"])
        #expect(quiet.status == 1 && quiet.stderr.hasSuffix(" [failpoint.triggered]\n"), "\(quiet.stderr)")
        let json = try box.deployctl(["snapshot", "prod", "--json"], environment: ["DEPLOYCTL_FAILPOINTS": "snapshot=error"])
        let document = try JSONSerialization.jsonObject(with: Data(json.stdout.utf8)) as? [String: Any]
        #expect(document?["code"] as? String == "failpoint.triggered" && json.code == "failpoint.triggered", "\(json.stdout)")
        #expect(box.backupNames().isEmpty)
        let unknown = try box.deployctl(["deplyo", "prod"])
        #expect(unknown.status == 64 && unknown.code == "usage.unknown_command", "\(unknown.stderr)")
    }
}

extension ErrorCodeTests {
    @Test("a command line the parser refuses is usage.invalid_arguments in all three forms, exit 64")
    func parserRefusals() throws {
        let box = try Sandbox(rows: 5)
        let plain = try box.deployctl(["snapshot", "prod", "--compress", "lz4"])
        #expect(plain.status == 64 && plain.code == "usage.invalid_arguments" && plain.stderr.contains("--compress"), "\(plain.stderr)")
        let quiet = try box.deployctl(["snapshot", "prod", "--keep-within", "3x", "--quiet"])
        #expect(quiet.status == 64 && quiet.stderr.hasSuffix(" [usage.invalid_arguments]\n") && quiet.stderr.split(separator: "\n").count == 1, "\(quiet.stderr)")
        let json = try box.deployctl(["status", "prod", "--bogus", "--json"])
        let document = try JSONSerialization.jsonObject(with: Data(json.stdout.utf8)) as? [String: Any]
        #expect(json.status == 64 && document?["code"] as? String == "usage.invalid_arguments" && document?["exit_code"] as? Int == 64, "\(json.stdout)")
        #expect(box.backupNames().isEmpty)
    }

    @Test("a command whose --json result names its failure prints that one document, not a second error document")
    func oneDocument() throws {
        let box = try Sandbox(rows: 10)
        try box.deployThenEditCashbackMigration()
        let verify = try box.deployctl(["verify", "prod", "--json"])
        #expect(verify.status == 65 && verify.code == "migration.changed", "\(verify.stderr)")
        let document = try JSONSerialization.jsonObject(with: Data(verify.stdout.utf8)) as? [String: Any]
        #expect(document?["damaged"] as? Bool == false && (document?["problems"] as? [String])?.isEmpty == false, "\(verify.stdout)")
    }
}
