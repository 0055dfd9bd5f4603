import Foundation
import Testing

/// `deployctl … | head -1`: a reader that goes away must cost the output, never the command.
/// Each command runs with stdout a pipe whose read end is closed before the command starts
/// (its first write already meets EPIPE, so the old trap was certain) or after one line, as
/// `| head -1` does (a short output may by then sit whole in the pipe's buffer: that case
/// shows the first line still arrives; a deploy writes on long after it).
@Suite("closed pipe")
struct ClosedPipeTests {
    static let readingCommands = [["history", "prod"], ["plan", "prod"], ["status", "all"], ["restore", "prod", "--latest", "--dry-run"]]

    @Test("history, plan, status all and restore --dry-run with stdout's reader gone: no crash, the exit code they have when read",
          arguments: readingCommands, [0, 1])
    func readingCommand(arguments: [String], linesRead: Int) throws {
        let box = try Sandbox(rows: 20)
        try box.installCashbackMigration()
        let deploy = try box.deployctl(["deploy", "prod"])
        try #require(deploy.status == 0, "\(deploy.stderr)")
        let read = try box.deployctl(arguments)
        #expect(read.status == 0 && read.stdout.split(separator: "\n").count > 1, "\(read.stdout)\(read.stderr)")
        let closed = try box.deployctlWithClosedOutput(arguments, readingLines: linesRead)
        #expect(closed.status == read.status, "exit \(closed.status): \(closed.stderr)")
        #expect(!closed.stderr.contains("Fatal error"), "\(closed.stderr)")
        #expect(closed.stdout.split(separator: "\n").count == linesRead, "\(closed.stdout)")
    }

    @Test("deploy with stdout's reader gone finishes its pipeline: migration applied, report says success, start hook run, status 0",
          arguments: [0, 1])
    func deployFinishes(linesRead: Int) throws {
        let box = try Sandbox(rows: 20)
        try box.installCashbackMigration()
        try box.configureHooks("""
            stop = "echo stopped >> app.log"
            start = "echo started >> app.log"
            """)
        let deploy = try box.deployctlWithClosedOutput(["deploy", "prod"], readingLines: linesRead)
        #expect(deploy.status == 0 && !deploy.stderr.contains("Fatal error"), "exit \(deploy.status): \(deploy.stderr)")
        try expectDeployed(box)
        let log = try String(contentsOfFile: box.path("instances/prod/app.log"), encoding: .utf8)
        #expect(log == "stopped\nstarted\n", "app log: \(log)")
    }

    @Test("stderr's reader gone as well: a deploy with --log-level debug still finishes, a failing command still exits with its code")
    func stderrClosedToo() throws {
        let box = try Sandbox(rows: 20)
        try box.installCashbackMigration()
        let deploy = try box.deployctlWithClosedOutput(["deploy", "prod", "--log-level", "debug"], closingStderr: true)
        #expect(deploy.status == 0, "exit \(deploy.status)")
        try expectDeployed(box)
        let read = try box.deployctl(["history", "nosuch"])
        #expect(read.status == 66, "\(read.stderr)")
        #expect(try box.deployctlWithClosedOutput(["history", "nosuch"], closingStderr: true).status == read.status)
    }

    /// The cashback migration recorded as applied, the deploy's report a success, nothing unfinished.
    func expectDeployed(_ box: Sandbox) throws {
        let status = try box.deployctl(["status", "prod"])
        #expect(status.status == 0, "\(status.stdout)\(status.stderr)")
        #expect(try box.sqlite(box.databasePath, "SELECT count(*) FROM deployctl_migrations") == "1")
        let deploys = box.path("instances/prod/deploys")
        let reports = try FileManager.default.contentsOfDirectory(atPath: deploys).filter { $0.hasSuffix(".json") }
        try #require(reports.count == 1, "\(reports)")
        let report = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: deploys + "/" + reports[0]))) as? [String: Any]
        #expect(report?["outcome"] as? String == "success", "\(report ?? [:])")
        #expect(!FileManager.default.fileExists(atPath: box.path("instances/prod/.deployctl.journal")))
    }
}

extension Sandbox {
    /// Runs the built deployctl with stdout a pipe whose read end is closed after `readingLines`
    /// lines (0: before the command starts), as `| head -n` does; stderr is read whole, or with
    /// `closingStderr` a pipe closed before the start too. `status` is the shell's: 128 + the
    /// signal for a crash (132 for the trap's SIGILL).
    func deployctlWithClosedOutput(_ arguments: [String], readingLines: Int = 0, closingStderr: Bool = false) throws -> Sandbox.Result {
        var out: [Int32] = [0, 0], err: [Int32] = [0, 0]
        try #require(pipe(&out) == 0 && pipe(&err) == 0)
        // Close-on-exec: no other test's child may inherit a read end and keep its pipe open.
        for end in out + err { _ = fcntl(end, F_SETFD, FD_CLOEXEC) }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: Sandbox.binary)
        process.arguments = arguments + ["--root", root]
        var environment = ProcessInfo.processInfo.environment
        environment["NO_COLOR"] = "1"
        process.environment = environment
        process.standardInput = FileHandle.nullDevice
        process.standardOutput = FileHandle(fileDescriptor: out[1], closeOnDealloc: false)
        process.standardError = FileHandle(fileDescriptor: err[1], closeOnDealloc: false)
        if readingLines == 0 { close(out[0]) }
        if closingStderr { close(err[0]) }
        try process.run()
        // Process dups a FileHandle into the child and leaves the parent's copy to its owner.
        close(out[1])
        close(err[1])
        nonisolated(unsafe) var errData = Data()
        let group = DispatchGroup()
        if !closingStderr {
            let errors = FileHandle(fileDescriptor: err[0], closeOnDealloc: true)
            group.enter()
            DispatchQueue.global().async {
                errData = errors.readDataToEndOfFile()
                group.leave()
            }
        }
        var outData = Data()
        if readingLines > 0 {
            var byte: UInt8 = 0
            while outData.filter({ $0 == 0x0A }).count < readingLines, read(out[0], &byte, 1) == 1 { outData.append(byte) }
            close(out[0])
        }
        group.wait()
        process.waitUntilExit()
        let status = process.terminationReason == .uncaughtSignal ? 128 + process.terminationStatus : process.terminationStatus
        return Result(status: status, stdout: String(decoding: outData, as: UTF8.self), stderr: String(decoding: errData, as: UTF8.self))
    }
}
