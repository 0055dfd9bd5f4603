import ArgumentParser
import Foundation
import Orchestrator
import Support

/// `--metrics-file PATH`: Prometheus text-format metrics for node_exporter's textfile
/// collector, written atomically (temp file, fsync, rename) after the command, failed or not.
struct MetricsOption: ParsableArguments {
    @Option(help: ArgumentHelp("Write Prometheus text-format metrics here after the command (atomically, for node_exporter's textfile collector).", valueName: "path"))
    var metricsFile: String?
}

enum Metrics {
    /// The metrics of `instances` (their state, as `status` reads it) and of this run of
    /// `command`: how long it took and whether it succeeded.
    static func text(runtime: Runtime, instances: [String], command: String, seconds: Double, success: Bool) -> String {
        var lines = [String]()
        func metric(_ name: String, _ help: String, _ type: String, _ values: [(labels: String, value: Double)]) {
            guard !values.isEmpty else { return }
            lines.append("# HELP deployctl_\(name) \(help)")
            lines.append("# TYPE deployctl_\(name) \(type)")
            for (labels, value) in values { lines.append("deployctl_\(name){\(labels)} \(format(value))") }
        }
        let statuses = instances.compactMap { name in (try? runtime.status(instance: name)).map { (name, $0) } }
        let label = { (name: String) in "instance=\"\(escape(name))\"" }
        metric("last_backup_timestamp_seconds", "When the newest usable backup was taken (Unix time).", "gauge",
               statuses.compactMap { name, s in s.lastBackupAt.map { (label(name), $0.timeIntervalSince1970) } })
        metric("last_backup_bytes", "Stored size of the newest usable backup.", "gauge",
               statuses.compactMap { name, s in s.lastBackupBytes.map { (label(name), Double($0)) } })
        metric("last_verification_timestamp_seconds", "When a backup was last checked (Unix time).", "gauge",
               statuses.compactMap { name, s in s.lastVerification.map { (label(name), $0.at.timeIntervalSince1970) } })
        metric("last_verification_ok", "1 when the last check of a backup found it good.", "gauge",
               statuses.compactMap { name, s in s.lastVerification.map { (label(name), $0.result == "ok" ? 1 : 0) } })
        metric("last_deploy_timestamp_seconds", "When the last deploy ended (Unix time).", "gauge",
               statuses.compactMap { name, s in s.lastDeployAt.map { (label(name), $0.timeIntervalSince1970) } })
        metric("last_deploy_success", "1 when the last deploy succeeded or had nothing to do.", "gauge",
               statuses.compactMap { name, s in s.lastDeployOutcome.map { (label(name), [.success, .nothingToDo].contains($0) ? 1 : 0) } })
        metric("problems", "Problems status reports for the instance (0 when all is well).", "gauge",
               statuses.map { name, s in (label(name), Double(s.problems.count)) })
        metric("leftover_bytes", "Bytes of temp files left by killed runs.", "gauge",
               statuses.map { name, s in (label(name), Double(s.leftoverBytes)) })
        let run = instances.map { "\(label($0)),command=\"\(escape(command))\"" }
        metric("run_duration_seconds", "How long this command took.", "gauge", run.map { ($0, seconds) })
        metric("run_success", "1 when this command succeeded.", "gauge", run.map { ($0, success ? 1 : 0) })
        return lines.joined(separator: "\n") + "\n"
    }

    static func format(_ value: Double) -> String {
        value == value.rounded() && abs(value) < 1e15 ? String(Int64(value)) : String(value)
    }

    static func escape(_ text: String) -> String {
        text.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"").replacingOccurrences(of: "\n", with: "\\n")
    }

    /// Runs `body` and writes the metrics file afterwards (when asked), whether it succeeded or not.
    static func around(_ option: MetricsOption, console: Console, instances: @escaping () -> [String], command: String,
                       _ body: () throws -> Void) throws {
        let started = ContinuousClock.now
        var success = false
        defer {
            if let path = option.metricsFile, let runtime = try? console.runtime() {
                let elapsed = ContinuousClock.now - started
                let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
                let text = Metrics.text(runtime: runtime, instances: instances(), command: command, seconds: seconds, success: success)
                do {
                    try DurableFile.write(Data(text.utf8), to: path, mode: 0o644, replace: true)
                } catch {
                    console.note("warning: the metrics file \(path) could not be written: \(error)")
                }
            }
        }
        try body()
        success = true
    }
}
