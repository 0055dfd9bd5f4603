import Backup
import Foundation
import Support

/// `instances/deploy.toml`: instance order and the migrations folder.
public struct DeployConfig: Sendable {
    /// Instances in promotion order (dev, testing, prod).
    public let order: [String]
    /// The migrations folder (absolute).
    public let migrationsFolder: String

    static let keys: Set<String> = ["order", "migrations"]

    /// Loads `deploy.toml` from `instancesFolder`; a missing file means no order and the
    /// `migrations` folder beside it.
    /// - Throws: `Failure` `.usage` naming file, line and key.
    static func load(instancesFolder: String) throws -> DeployConfig {
        let path = instancesFolder + "/deploy.toml"
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else {
            return DeployConfig(order: [], migrationsFolder: instancesFolder + "/migrations")
        }
        let toml = try TOMLSubset(text: text, file: path)
        try toml.rejectUnknownKeys(allowed: keys)
        let order = try toml.strings("order") ?? []
        for name in order {
            guard Workspace.isValidName(name) else {
                throw TOMLSubset.error(path, toml.line(of: "order") ?? 1, "key 'order': '\(name)' is not a valid instance name")
            }
        }
        let migrations = try toml.string("migrations") ?? "migrations"
        return DeployConfig(order: order, migrationsFolder: resolve(migrations, against: instancesFolder))
    }
}

/// `instances/<name>/instance.toml`.
public struct InstanceConfig: Sendable {
    public let name: String
    /// The instance folder.
    public let folder: String
    /// The config file.
    public let file: String
    /// The live database (absolute).
    public let databasePath: String
    /// The backups folder (absolute).
    public let backupsFolder: String
    /// The deploy reports folder (absolute).
    public let deploysFolder: String
    public let busyTimeout: Duration
    /// How snapshots are stored unless the command line says otherwise: `[backups] compress`
    /// (`gzip`, `zstd`, `none`), else `gzip = true` for gzip.
    public let compression: Compression
    /// Whether snapshots are compressed by default.
    public var gzip: Bool { compression != .none }
    /// Retention `snapshot` applies (per label) when its command line gives no rule; empty
    /// keeps everything.
    public let retention: RetentionPolicy
    /// `status` fails (exit 1) when the newest usable backup is older than this.
    public let maxBackupAge: RetentionDuration?
    /// SQL file that builds the database the first time it is needed (the example instance).
    public let seedSQL: String?
    public let hooks: Hooks

    /// App hooks: shell commands run in the instance folder.
    public struct Hooks: Sendable {
        public let stop: String?
        public let start: String?
        public let health: String?
        public let timeout: Duration
        /// How many times the health check is tried, a second apart, before it counts as failed.
        public let healthAttempts: Int
    }

    static let keys: Set<String> = [
        "database.path", "database.busy_timeout_ms", "database.seed_sql",
        "backups.path", "backups.gzip", "backups.compress", "backups.keep_last", "backups.keep_within",
        "backups.keep_daily", "backups.keep_weekly", "backups.keep_monthly", "backups.max_backup_age",
        "deploys.path",
        "hooks.stop", "hooks.start", "hooks.health", "hooks.timeout_seconds", "hooks.health_attempts",
    ]

    /// Loads and checks `instance.toml`. Relative paths resolve against the instance folder.
    /// - Throws: `Failure` `.usage` naming file, line and key; `.missingInput` when the file is absent.
    static func load(name: String, folder: String) throws -> InstanceConfig {
        let file = folder + "/instance.toml"
        guard FileManager.default.fileExists(atPath: file) else {
            throw Failure(.missingInput, "no instance '\(name)': \(file) does not exist",
                          hint: "check the name, or create the instance's config (see instances/prod/instance.toml)")
        }
        guard let text = try? String(contentsOfFile: file, encoding: .utf8) else {
            throw Failure(.usage, "\(file): cannot be read as UTF-8 text", hint: "fix the config file")
        }
        let toml = try TOMLSubset(text: text, file: file)
        try toml.rejectUnknownKeys(allowed: keys)
        guard let database = try toml.string("database.path"), !database.isEmpty else {
            throw TOMLSubset.error(file, 1, "key 'database.path' is required (the live database file)")
        }
        let timeoutMS = try toml.int("database.busy_timeout_ms", range: 0...600_000) ?? 5000
        let databasePath = resolve(database, against: folder)
        let backupsFolder = resolve(try toml.string("backups.path") ?? "backups", against: folder)
        // Backups beside the live database would let retention or a restore reach it.
        let databaseFolder = fileIdentity((databasePath as NSString).deletingLastPathComponent).path
        let backupsReal = fileIdentity(backupsFolder).path
        if backupsReal == databaseFolder || backupsReal.hasPrefix(databaseFolder + "/") || databaseFolder.hasPrefix(backupsReal + "/") {
            let relation = backupsReal == databaseFolder ? "is" : backupsReal.hasPrefix(databaseFolder + "/") ? "lies inside" : "contains"
            throw TOMLSubset.error(file, toml.line(of: "backups.path") ?? 1,
                                   "key 'backups.path': the backups folder \(backupsFolder) \(relation) the database's folder \(databaseFolder); give backups a folder of their own (e.g. \"backups\")")
        }
        return InstanceConfig(
            name: name, folder: folder, file: file,
            databasePath: databasePath,
            backupsFolder: backupsFolder,
            deploysFolder: resolve(try toml.string("deploys.path") ?? "deploys", against: folder),
            busyTimeout: .milliseconds(timeoutMS),
            compression: try compression(toml, file: file),
            retention: try retention(toml, file: file),
            maxBackupAge: try duration(toml, "backups.max_backup_age", file: file),
            seedSQL: try toml.string("database.seed_sql").map { resolve($0, against: folder) },
            hooks: Hooks(
                stop: try toml.string("hooks.stop"), start: try toml.string("hooks.start"),
                health: try toml.string("hooks.health"),
                timeout: .seconds(try toml.int("hooks.timeout_seconds", range: 1...3600) ?? 30),
                healthAttempts: try toml.int("hooks.health_attempts", range: 1...600) ?? 5))
    }

    /// `[backups]` keep_last, keep_within, keep_daily, keep_weekly, keep_monthly.
    private static func retention(_ toml: TOMLSubset, file: String) throws -> RetentionPolicy {
        RetentionPolicy(
            keepLast: try toml.int("backups.keep_last", range: 1...100_000), keepWithin: try duration(toml, "backups.keep_within", file: file),
            keepDaily: try toml.int("backups.keep_daily", range: 1...100_000),
            keepWeekly: try toml.int("backups.keep_weekly", range: 1...100_000),
            keepMonthly: try toml.int("backups.keep_monthly", range: 1...100_000))
    }

    /// `compress = "gzip" | "zstd" | "none"`, else `gzip = true` (gzip) or false.
    private static func compression(_ toml: TOMLSubset, file: String) throws -> Compression {
        let gzip = try toml.bool("backups.gzip")
        guard let text = try toml.string("backups.compress") else { return gzip == true ? .gzip : .none }
        guard let value = Compression(rawValue: text) else {
            throw TOMLSubset.error(file, toml.line(of: "backups.compress") ?? 1, "key 'backups.compress': '\(text)' is not gzip, zstd or none")
        }
        if let gzip, gzip != (value == .gzip) {
            throw TOMLSubset.error(file, toml.line(of: "backups.compress") ?? 1,
                                   "keys 'backups.gzip' (line \(toml.line(of: "backups.gzip") ?? 1): \(gzip)) and 'backups.compress' (\"\(text)\") disagree; keep compress and remove gzip")
        }
        return value
    }

    /// A duration key (`"30d"`, `"26h"`), nil when absent.
    private static func duration(_ toml: TOMLSubset, _ key: String, file: String) throws -> RetentionDuration? {
        guard let text = try toml.string(key) else { return nil }
        do {
            return try RetentionDuration(parsing: text)
        } catch let failure as Failure {
            throw TOMLSubset.error(file, toml.line(of: key) ?? 1, "key '\(key)': \(failure.message)")
        }
    }

    /// The instance lock file.
    public var lockPath: String { folder + "/.deployctl.lock" }
    /// The deploy journal (present only while a deploy is unfinished).
    public var journalPath: String { folder + "/.deployctl.journal" }
}

/// Resolves a config path against the config's folder (never the current directory).
func resolve(_ path: String, against folder: String) -> String {
    let joined = path.hasPrefix("/") ? path : folder + "/" + path
    return URL(fileURLWithPath: joined).standardizedFileURL.path
}

/// A file's real path (links resolved) and device and inode, when it exists.
func fileIdentity(_ path: String) -> (path: String, inode: [UInt64]?) {
    var info = stat()
    guard stat(path, &info) == 0 else { return (URL(fileURLWithPath: path).resolvingSymlinksInPath().path, nil) }
    var real = path
    if let resolved = realpath(path, nil) {
        real = String(cString: resolved)
        free(resolved)
    }
    return (real, [UInt64(info.st_dev), UInt64(info.st_ino)])
}
