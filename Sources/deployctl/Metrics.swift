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

/// The metrics file: every series deployctl knows, kept across runs. Each run re-reads the
/// state of its instances from their backup stores and deploy reports (never from what the run
/// itself did), keeps the previous file's values of whatever it cannot read now, and updates
/// its own `run_duration_seconds`/`run_success`. A run that cannot read an instance's config
/// (or the root) leaves that instance's series exactly as they were, so an alert on their age
/// keeps counting.
enum Metrics {
    /// One metric family: its name after `deployctl_`, its help, and whether it describes an
    /// instance's state (else a run: labelled with the command too).
    struct Family {
        let name: String
        let help: String
        let state: Bool
    }

    static let families = [
        Family(name: "last_backup_timestamp_seconds", help: "When the newest usable backup was taken (Unix time; 0: none ever; pre_* copies of deploys and restores do not count).", state: true),
        Family(name: "last_backup_bytes", help: "Stored size of the newest usable backup.", state: true),
        Family(name: "last_verification_timestamp_seconds", help: "When a backup was last checked (Unix time).", state: true),
        Family(name: "last_verification_ok", help: "1 when the last check of a backup found it good.", state: true),
        Family(name: "last_deploy_timestamp_seconds", help: "When the last deploy ended (Unix time).", state: true),
        Family(name: "last_deploy_success", help: "1 when the last deploy succeeded or had nothing to do.", state: true),
        Family(name: "last_deploy_writes_blocked_seconds", help: "How long the last deploy blocked the application's writes (its migrate-and-verify transaction).", state: true),
        Family(name: "max_backup_age_seconds", help: "The instance's max_backup_age (instance.toml), for an alert on the backup's age; absent when not set.", state: true),
        Family(name: "problems", help: "Problems status reports for the instance (0 when all is well).", state: true),
        Family(name: "leftover_bytes", help: "Bytes of temp files left by killed runs.", state: true),
        Family(name: "run_duration_seconds", help: "How long the last run of the command took.", state: false),
        Family(name: "run_success", help: "1 when the last run of the command succeeded.", state: false),
    ]

    /// Samples by family name, then by label set as written (`instance="prod"`,
    /// `instance="prod",command="status"`), each value as written.
    typealias Samples = [String: [String: String]]

    /// The samples of the metrics file at `path`: the families above, other lines ignored;
    /// empty when there is no file or it cannot be read.
    static func read(_ path: String) -> Samples {
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else { return [:] }
        let known = Set(families.map(\.name))
        var samples = Samples()
        for line in text.split(separator: "\n") where line.hasPrefix("deployctl_") {
            guard let open = line.firstIndex(of: "{"), let close = line.lastIndex(of: "}"), open < close else { continue }
            let name = String(line[line.index(line.startIndex, offsetBy: 10)..<open])
            let value = line[line.index(after: close)...].trimmingCharacters(in: .whitespaces)
            guard known.contains(name), Double(value) != nil else { continue }
            samples[name, default: [:]][String(line[line.index(after: open)..<close])] = value
        }
        return samples
    }

    /// The instance a label set names.
    static func instance(of labels: String) -> String? {
        guard labels.hasPrefix("instance=\""), let end = labels.dropFirst(10).firstIndex(of: "\"") else { return nil }
        return String(labels[labels.index(labels.startIndex, offsetBy: 10)..<end])
    }

    /// `previous` updated with the state of `instances` (as `status` reads it, when `runtime`
    /// can read it) and this run of `command`: how long it took and whether it succeeded.
    static func update(_ previous: Samples, runtime: Runtime?, instances: [String], command: String, seconds: Double, success: Bool) -> Samples {
        var samples = previous
        for name in instances {
            let label = "instance=\"\(escape(name))\""
            // Kept as it was when the config (or the root) cannot be read: last known values.
            // An instance of several databases has each one's series, labelled database="…".
            for (runtime, s) in runtime.map({ runtime in ((try? Inspection(runtime).statuses(instance: name)) ?? []).map { (runtime, $0) } }) ?? [] {
                let label = label + (s.databaseName.map { ",database=\"\(escape($0))\"" } ?? "")
                func set(_ family: String, _ value: Double?) {
                    if let value { samples[family, default: [:]][label] = format(value) }
                }
                let known = samples["last_backup_timestamp_seconds"]?[label] != nil
                // 0 (never) rather than no series, so that an age alert fires for an instance that
                // has never had a backup; not for the bundled example, which never alerts.
                set("last_backup_timestamp_seconds", s.lastBackupAt?.timeIntervalSince1970 ?? (known || s.example ? nil : 0))
                set("last_backup_bytes", s.lastBackupBytes.map(Double.init))
                set("last_verification_timestamp_seconds", s.lastVerification?.at.timeIntervalSince1970)
                set("last_verification_ok", s.lastVerification.map { $0.result == "ok" ? 1 : 0 })
                set("last_deploy_timestamp_seconds", s.lastDeployAt?.timeIntervalSince1970)
                set("last_deploy_success", s.lastDeployOutcome.map { [.success, .nothingToDo].contains($0) ? 1 : 0 })
                set("last_deploy_writes_blocked_seconds", s.lastDeployWriteLockMilliseconds.map { $0 / 1000 })
                let now = runtime.clock()
                set("max_backup_age_seconds", (try? runtime.workspace.instance(name))?.maxBackupAge.map { now.timeIntervalSince($0.cutoff(before: now)) })
                set("problems", Double(s.problems.count))
                set("leftover_bytes", Double(s.leftoverBytes))
            }
            let run = "\(label),command=\"\(escape(command))\""
            samples["run_duration_seconds", default: [:]][run] = format(seconds)
            samples["run_success", default: [:]][run] = success ? "1" : "0"
        }
        return samples
    }

    /// The Prometheus text of `samples`: each family once, with its help and type, its series
    /// sorted by labels.
    static func text(_ samples: Samples) -> String {
        var lines = [String]()
        for family in families {
            guard let series = samples[family.name], !series.isEmpty else { continue }
            lines.append("# HELP deployctl_\(family.name) \(family.help)")
            lines.append("# TYPE deployctl_\(family.name) gauge")
            for labels in series.keys.sorted() { lines.append("deployctl_\(family.name){\(labels)} \(series[labels]!)") }
        }
        return lines.joined(separator: "\n") + "\n"
    }

    static func format(_ value: Double) -> String {
        value == value.rounded() && abs(value) < 1e15 ? String(Int64(value)) : String(value)
    }

    static func escape(_ text: String) -> String {
        text.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"").replacingOccurrences(of: "\n", with: "\\n")
    }

    /// Runs `body` and writes the metrics file afterwards (when asked), whether it succeeded or
    /// not. `instance` is the command's argument; for `all`, `every` lists the instances (when
    /// it cannot, the instance folders and the previous file's instances stand in).
    static func around(_ option: MetricsOption, console: Console, instance: String, every: @escaping (Workspace) throws -> [String],
                       command: String, _ body: () throws -> Void) throws {
        let started = ContinuousClock.now
        var outcome: Error?
        do { try body() } catch { outcome = error }
        guard let path = option.metricsFile else {
            if let outcome { throw outcome }
            return
        }
        let seconds = (ContinuousClock.now - started).seconds
        do {
            // One writer at a time: commands sharing the file (a snapshot, status, verify run by
            // timers at once) each read, merge and write; unlocked, the last would drop the rest.
            // The lock is the folder's own (flock on it), so no other file appears beside it.
            let lock = open((path as NSString).deletingLastPathComponent.isEmpty ? "." : (path as NSString).deletingLastPathComponent,
                            O_RDONLY | O_DIRECTORY | O_CLOEXEC)
            if lock >= 0 { flock(lock, LOCK_EX) }
            defer { if lock >= 0 { close(lock) } }
            let previous = read(path)
            let runtime = try? console.runtime()
            var names = [instance]
            if instance == "all" {
                let remembered = previous.values.flatMap(\.keys).compactMap(Self.instance(of:))
                if let runtime, let every = try? every(runtime.workspace) {
                    names = every
                } else {
                    let folders = runtime.flatMap { try? $0.workspace.allInstanceFolders() } ?? []
                    names = Array(Set(folders + remembered)).sorted()
                }
            }
            let samples = update(previous, runtime: runtime, instances: names, command: command, seconds: seconds, success: outcome == nil)
            try DurableFile.write(Data(text(samples).utf8), to: path, mode: 0o644, replace: true)
        } catch {
            // A monitor reading a file that stopped changing sees old values: the run says so by
            // its exit code (73), or, when it failed anyway, keeps its own code and warns.
            if let outcome {
                console.note("warning: the metrics file \(path) could not be written: \(error)")
                throw outcome
            }
            let failure = Failure(.metricsWriteFailed, "the metrics file \(path) could not be written: \(error); the command itself succeeded, but a monitor would read old values",
                                  hint: "make \((path as NSString).deletingLastPathComponent) writable for \(getpwuid(getuid()).map { String(cString: $0.pointee.pw_name) } ?? "uid \(getuid())"), or point --metrics-file elsewhere")
            try console.guarded { throw failure }
        }
        if let outcome { throw outcome }
    }
}
