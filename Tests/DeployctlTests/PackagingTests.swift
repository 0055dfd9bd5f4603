import Foundation
import Testing

/// What the package ships besides the binary: man pages generated from the built binary's own
/// definitions (scripts/manpages), and shell completions that complete instance names.
@Suite("packaging")
struct PackagingTests {
    @Test("scripts/manpages writes one page per command (deployctl-status.1, deployctl-backups-list.1) from the built binary, each with the real exit-code table, and man renders them")
    func manPages() throws {
        let box = try Sandbox()
        let folder = box.path("man1")
        let script = RunbookTests.repository.appendingPathComponent("scripts/manpages").path
        let result = try Sandbox.exec("/usr/bin/python3", [script, Sandbox.binary, folder, "9.9.9"])
        #expect(result.status == 0, "\(result.stderr)")
        let pages = try FileManager.default.contentsOfDirectory(atPath: folder).sorted()
        let commands = ["deploy", "plan", "snapshot", "backups", "backups-list", "backups-verify", "backups-prune", "backups-push", "backups-remove", "restore",
                        "verify", "status", "history", "baseline", "accept", "keygen", "init"]
        #expect(pages == (["deployctl.1"] + commands.map { "deployctl-\($0).1" }).sorted())
        let help = try Sandbox.exec(Sandbox.binary, ["--help"], environment: ["COLUMNS": "300", "NO_COLOR": "1"]).stdout
        let codes = help.split(separator: "\n").drop { $0 != "Exit codes:" }.dropFirst().prefix { $0.hasPrefix("  ") }
        #expect(codes.count == 11, "\(help)")
        for page in ["deployctl-status.1", "deployctl-backups-list.1", "deployctl-restore.1"] {
            let rendered = try Sandbox.exec("/usr/bin/man", ["-l", "-P", "cat", folder + "/" + page], environment: ["MANWIDTH": "300", "PATH": "/usr/bin:/bin"])
            #expect(rendered.status == 0, "\(rendered.stderr)")
            let text = rendered.stdout.replacingOccurrences(of: "‐", with: "-")
            #expect(text.contains(page.dropLast(2).uppercased() + "(1)"), "\(text.prefix(200))")
            #expect(text.contains("EXIT STATUS"))
            // Every row of the binary's own table, code and meaning.
            for row in codes {
                let parts = row.trimmingCharacters(in: .whitespaces).split(separator: " ", maxSplits: 1)
                #expect(text.contains(String(parts[0])) && text.contains(String(parts[1]).trimmingCharacters(in: .whitespaces)), "\(page) lacks \(row)")
            }
        }
        // The README's table and docs/contract.md's list the same codes as the binary.
        let binaryCodes = codes.map { String($0.trimmingCharacters(in: .whitespaces).prefix { $0.isNumber }) }
        for document in ["README.md", "docs/contract.md"] {
            let text = try String(contentsOf: RunbookTests.repository.appendingPathComponent(document), encoding: .utf8)
            let rows = text.split(separator: "\n").compactMap { line -> String? in
                guard line.hasPrefix("| "), let code = line.dropFirst(2).split(separator: " ").first, Int(code) != nil else { return nil }
                return String(code)
            }
            #expect(rows.sorted() == binaryCodes.sorted(), "\(document): \(rows) against \(binaryCodes)")
        }
        let list = try String(contentsOfFile: folder + "/deployctl-backups-list.1", encoding: .utf8)
        #expect(list.contains(".TH \"DEPLOYCTL-BACKUPS-LIST\" \"1\"") && list.contains("deployctl 9.9.9"))
        #expect(list.contains(".B \\-\\-label <label>"), "\(list)")
    }

    @Test("scripts/package refuses, naming them, when the runtime libraries (or the -dev packages to build) are not installed, and refuses a binary that still links the Swift runtime; nothing is written")
    func packageRefusals() throws {
        let box = try Sandbox()
        let script = RunbookTests.repository.appendingPathComponent("scripts/package").path
        // A dpkg database where nothing is installed: every package is missing.
        try FileManager.default.createDirectory(atPath: box.path("dpkg"), withIntermediateDirectories: true)
        try "".write(toFile: box.path("dpkg/status"), atomically: true, encoding: .utf8)
        var environment = ProcessInfo.processInfo.environment
        environment["OUT"] = box.path("dist")
        environment["DPKG_ADMINDIR"] = box.path("dpkg")
        let bare = try Sandbox.exec("/bin/bash", [script], environment: environment)
        #expect(bare.status == 69, "\(bare.stderr)")
        #expect(bare.stderr.contains("missing Debian packages: libsqlite3-0 zlib1g libdeflate0 libzstd1 libssl3 libsqlite3-dev zlib1g-dev libdeflate-dev libzstd-dev libssl-dev"), "\(bare.stderr)")
        #expect(bare.stderr.contains("Try: sudo apt-get install libsqlite3-0"), "\(bare.stderr)")
        // A prebuilt binary needs only the runtime libraries.
        environment["BINARY"] = Sandbox.binary
        let prebuilt = try Sandbox.exec("/bin/bash", [script], environment: environment)
        #expect(prebuilt.status == 69 && prebuilt.stderr.contains("missing Debian packages: libsqlite3-0 zlib1g libdeflate0 libzstd1 libssl3\n"), "\(prebuilt.stderr)")
        // The test build links the Swift runtime dynamically: not a binary to ship.
        environment["DPKG_ADMINDIR"] = nil
        let dynamic = try Sandbox.exec("/bin/bash", [script], environment: environment)
        #expect(dynamic.status == 65, "\(dynamic.stderr)")
        #expect(dynamic.stderr.contains("/usr/lib/swift/linux/libswift") && dynamic.stderr.contains(".so, which no Debian package provides (was it built with --static-swift-stdlib?)"), "\(dynamic.stderr)")
        #expect(!FileManager.default.fileExists(atPath: box.path("dist")))
    }

    /// What bash completes after `words` (the last one being typed), with the built binary first
    /// on PATH and the sandbox as the root.
    static func bashCompletions(_ words: [String], box: Sandbox) throws -> [String] {
        let script = box.path("deployctl.bash")
        try Sandbox.exec(Sandbox.binary, ["--generate-completion-script", "bash"]).stdout.write(toFile: script, atomically: true, encoding: .utf8)
        let array = words.map { "'\($0)'" }.joined(separator: " ")
        let line = words.joined(separator: " ")
        let program = """
            source '\(script)'
            COMP_WORDS=(\(array)); COMP_CWORD=\(words.count - 1); COMP_LINE='\(line)'; COMP_POINT=${#COMP_LINE}; COMPREPLY=()
            _deployctl
            printf '%s\\n' "${COMPREPLY[@]}"
            """
        let folder = URL(fileURLWithPath: Sandbox.binary).deletingLastPathComponent().path
        let result = try Sandbox.exec("/bin/bash", ["-c", program], environment: ["PATH": folder + ":/usr/bin:/bin", "DEPLOYCTL_ROOT": box.root])
        #expect(result.status == 0, "\(result.stderr)")
        return result.stdout.split(separator: "\n").map(String.init).sorted()
    }

    @Test("bash completes instance names from the root (its --root or DEPLOYCTL_ROOT), 'all' where a command takes it, and nothing for a new instance's name; zsh and fish ask the binary too")
    func instanceCompletion() throws {
        let box = try Sandbox()
        try box.addInstance("staging")
        try box.addInstance("dev")
        #expect(try Self.bashCompletions(["deployctl", "snapshot", ""], box: box) == ["dev", "prod", "staging"])
        #expect(try Self.bashCompletions(["deployctl", "status", ""], box: box) == ["all", "dev", "prod", "staging"])
        #expect(try Self.bashCompletions(["deployctl", "backups", "list", "s"], box: box) == ["staging"])
        #expect(try Self.bashCompletions(["deployctl", "restore", "p"], box: box) == ["prod"])
        // --root on the command line wins over DEPLOYCTL_ROOT.
        let other = try Sandbox()
        #expect(try Self.bashCompletions(["deployctl", "deploy", "--root", other.root, ""], box: box) == ["all", "prod"])
        // A new instance's name is not one of the existing ones.
        #expect(try Self.bashCompletions(["deployctl", "init", ""], box: box).allSatisfy { !["dev", "prod", "staging"].contains($0) })
        for shell in ["zsh", "fish"] {
            let script = try Sandbox.exec(Sandbox.binary, ["--generate-completion-script", shell]).stdout
            #expect(script.contains("---completion snapshot -- positional@0"), "\(shell) does not ask the binary for instance names")
        }
    }
}
