import Backup
import Encryption
import Foundation
import Migration
import Offsite
import Support

/// The `[encryption]` table of `instance.toml`: age recipients that backups leaving the host
/// (and, with `local`, every snapshot) are encrypted to, and the identity file that opens them.
public struct EncryptionConfig: Sendable {
    /// The public keys (`age1…`) new backups are encrypted to; empty: no encryption.
    public let recipients: [AgeRecipient]
    /// The private key file (absolute), needed only to decrypt: verify, restore, a deploy's
    /// rehearsal and rollback of an encrypted snapshot.
    public let identityFile: String?
    /// Encrypt local snapshots too, not only copies pushed offsite.
    public let local: Bool
    /// Where `identity_file` is set (or would be), for messages.
    public let setting: String

    static let keys: Set<String> = ["encryption.recipients", "encryption.identity_file", "encryption.local"]

    /// The identities in `identity_file`; nil when none is configured.
    /// - Throws: `Failure` `.usage` for a file others can read or that holds no identity,
    ///   `.missingInput` when it does not exist.
    public func identities() throws -> [AgeIdentity]? {
        guard let identityFile else { return nil }
        return try AgeIdentity.load(file: identityFile, setting: setting)
    }
}

/// One `[[offsite]]` table of `instance.toml`: an S3-compatible bucket and prefix that backups
/// are copied to. Credentials are never here (see `Credentials`).
public struct OffsiteConfig: Sendable {
    public let name: String
    public let bucket: String
    /// The key prefix inside the bucket, without leading or trailing `/` (may be empty).
    public let prefix: String
    public let endpoint: Endpoint
    public let region: String
    public let pathStyle: Bool
    /// This host's folder under the prefix: `host_id`, else the host name.
    public let hostId: String
    /// Remote retention (`backups prune --remote`), same rules as local.
    public let retention: RetentionPolicy
    /// `connect_timeout`, `read_timeout`, `request_timeout` (seconds): each request's deadlines.
    public var deadlines = Deadlines()
    /// `push_timeout` (seconds): a whole push of one backup to this remote.
    public var pushTimeout = Duration.seconds(900)
    /// `max_attempts`: tries per request, the first included.
    public var attempts = RetryPolicy().attempts
    /// `ca_bundle`: a PEM file of trusted roots for this remote (else `AWS_CA_BUNDLE`, else the system's).
    public var caBundle: String?
    /// Whether `region` and `endpoint` were written in the table (else the environment's
    /// `AWS_REGION`/`AWS_DEFAULT_REGION`/the profile's region and `AWS_ENDPOINT_URL_S3` apply).
    public var regionSet = true
    public var endpointSet = true

    static let keys: Set<String> = ["name", "url", "endpoint", "region", "path_style", "host_id",
                                    "keep_last", "keep_within", "keep_daily", "keep_weekly", "keep_monthly",
                                    "connect_timeout", "read_timeout", "request_timeout", "push_timeout", "max_attempts", "ca_bundle"]

    /// Whether `text` can be one segment of an object key deployctl writes: no `/`, no `..`.
    static func isSafeSegment(_ text: String) -> Bool {
        !text.isEmpty && text != "." && text != ".." && !text.contains("/") && !text.contains("\\")
            && text.unicodeScalars.allSatisfy { $0.value > 0x20 && $0.value < 0x7f }
    }
}

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
        try FileAccess.require(.read, on: path, what: "deploy config", purpose: "read the instance order and migrations folder", kind: .missingInput)
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
    /// The longest a deploy may block the application's writes (`database.max_write_lock_ms`,
    /// default half the busy timeout, so that an estimate 2x off still stays inside the
    /// application's own wait): a deploy whose plan estimates more is refused before its
    /// snapshot, unless the stop hook stops the application first.
    public let maxWriteLock: Duration
    /// How long an online rebuild waits for a gap in the application's writes before it gives
    /// up with nothing changed (`database.online_lock_wait_seconds`, default 60).
    public let onlineLockWait: Duration
    /// How snapshots are stored unless the command line says otherwise: `[backups] compress`
    /// (`gzip`, `zstd`, `none`), else `gzip = true` for gzip.
    public let compression: Compression
    /// Whether snapshots are compressed by default.
    public var gzip: Bool { compression != .none }
    /// Retention `snapshot` applies (per label) when its command line gives no rule; empty
    /// keeps everything.
    public let retention: RetentionPolicy
    /// How many `pre_restore` and `pre_putback` copies (the states restores replaced) are kept,
    /// per label, newest first (`[backups] keep_restore_copies`, default 2): applied by a
    /// restore after it succeeds and by every snapshot and prune.
    public let restoreCopies: Int
    /// `status` fails (exit 1) when the newest usable backup is older than this.
    public let maxBackupAge: RetentionDuration?
    /// SQL file that builds the database the first time it is needed (the example instance).
    public let seedSQL: String?
    public let hooks: Hooks
    /// `[[offsite]]` remotes, in file order.
    public let offsite: [OffsiteConfig]
    /// `[encryption]`.
    public let encryption: EncryptionConfig
    /// The database's name within its instance (`[[database]] name`); nil for an instance with
    /// one `[database]` table.
    public var databaseName: String? = nil
    /// The database's migrations folder when the instance names databases (`[[database]]
    /// migrations`, else deploy.toml's folder + `/<name>`); nil: deploy.toml's folder.
    public var migrationsFolder: String? = nil
    /// Each `[[database]]` as a config of its own: its database, seed, migrations, journal and
    /// the backups sub-folder `<backups>/<name>`; hooks, offsite and encryption the instance's.
    /// Empty for an instance with one `[database]`.
    public var databases: [InstanceConfig] = []
    /// `instance` or `instance/database`, for messages.
    public var label: String { databaseName.map { "\(name)/\($0)" } ?? name }
    /// `migrate_command` and `pending_command`: the framework's own migrations instead of
    /// `.sql` files (docs/framework-commands.md); nil for `.sql` migrations.
    public internal(set) var command: MigrationCommand?

    /// The remote called `name`, or the only one when `name` is nil.
    /// - Throws: `Failure` `.usage` naming the remotes there are.
    public func remote(_ name: String?) throws -> OffsiteConfig {
        if let name, let remote = offsite.first(where: { $0.name == name }) { return remote }
        if name == nil, offsite.count == 1 { return offsite[0] }
        let known = offsite.map(\.name)
        throw Failure(.remoteUnknown, name.map { "instance '\(self.name)' has no remote '\($0)'" } ?? "instance '\(self.name)' has \(known.isEmpty ? "no" : "several") [[offsite]] remotes",
                      hint: known.isEmpty ? "add an [[offsite]] table to \(file) (see docs/offsite.md)" : "pass --remote with one of: \(known.joined(separator: ", "))")
    }

    /// App hooks: shell commands run in the instance folder.
    public struct Hooks: Sendable {
        public let stop: String?
        public let start: String?
        public let health: String?
        public let timeout: Duration
        /// How many times the health check is tried, a second apart, before it counts as failed.
        public let healthAttempts: Int
    }

    static let keys: Set<String> = Set([
        "database.path", "database.busy_timeout_ms", "database.max_write_lock_ms", "database.online_lock_wait_seconds", "database.seed_sql",
        "database.migrate_command", "database.pending_command", "database.pending_format", "database.command_timeout_seconds",
        "backups.path", "backups.gzip", "backups.compress", "backups.keep_last", "backups.keep_within",
        "backups.keep_daily", "backups.keep_weekly", "backups.keep_monthly", "backups.max_backup_age", "backups.keep_restore_copies",
        "deploys.path",
        "hooks.stop", "hooks.start", "hooks.health", "hooks.timeout_seconds", "hooks.health_attempts",
    ]).union(EncryptionConfig.keys)

    /// Why `backups` cannot hold the backups of the database at `database`, if it cannot: it is
    /// the database's folder, lies inside it or contains it (retention or a restore could then
    /// reach the live database). Symlinks are resolved.
    public static func backupsConflict(backups: String, database: String) -> String? {
        let databaseFolder = fileIdentity((database as NSString).deletingLastPathComponent).path
        let backupsReal = fileIdentity(backups).path
        guard backupsReal == databaseFolder || backupsReal.hasPrefix(databaseFolder + "/") || databaseFolder.hasPrefix(backupsReal + "/") else { return nil }
        let relation = backupsReal == databaseFolder ? "is" : backupsReal.hasPrefix(databaseFolder + "/") ? "lies inside" : "contains"
        return "the backups folder \(backups) \(relation) the database's folder \(databaseFolder); give backups a folder of their own"
    }

    /// Loads and checks `instance.toml`. Relative paths resolve against the instance folder.
    /// - Throws: `Failure` `.usage` naming file, line and key; `.missingInput` when the file is absent.
    static func load(name: String, folder: String) throws -> InstanceConfig {
        let file = folder + "/instance.toml"
        guard FileManager.default.fileExists(atPath: file) else {
            throw Failure(.instanceUnknown, "no instance '\(name)': \(file) does not exist",
                          hint: "check the name, or create the instance's config (see instances/prod/instance.toml)")
        }
        try FileAccess.require(.read, on: file, what: "instance config", purpose: "read the instance's config", kind: .missingInput)
        guard let text = try? String(contentsOfFile: file, encoding: .utf8) else {
            throw Failure(.configInvalid, "\(file): cannot be read as UTF-8 text", hint: "fix the config file")
        }
        let toml = try TOMLSubset(text: text, file: file)
        let remotes = toml.arrayCount("offsite")
        let databaseTables = toml.arrayCount("database")
        try toml.rejectUnknownKeys(allowed: keys.union((0..<max(remotes, 1)).flatMap { n in OffsiteConfig.keys.map { "offsite.\(n).\($0)" } })
            .union((0..<databaseTables).flatMap { n in DatabaseEntry.keys.map { "database.\(n).\($0)" } }))
        if databaseTables > 0, let single = toml.values.keys.filter({ $0.hasPrefix("database.") && !($0.dropFirst(9).first?.isNumber ?? false) }).min() {
            throw TOMLSubset.error(file, toml.line(of: single) ?? 1, "key '\(single)': a [database] table and [[database]] tables cannot both be given; with several databases, each [[database]] has its own path, name and settings")
        }
        let entries = try DatabaseEntry.all(toml, count: databaseTables, folder: folder, file: file)
        guard let database = try entries.first.map({ $0.path }) ?? toml.string("database.path"), !database.isEmpty else {
            throw TOMLSubset.error(file, 1, "key 'database.path' is required (the live database file)")
        }
        let timeoutMS = try toml.int("database.busy_timeout_ms", range: 0...600_000) ?? 5000
        let databasePath = resolve(database, against: folder)
        let backupsFolder = resolve(try toml.string("backups.path") ?? "backups", against: folder)
        if let conflict = backupsConflict(backups: backupsFolder, database: databasePath) {
            throw TOMLSubset.error(file, toml.line(of: "backups.path") ?? 1, "key 'backups.path': \(conflict) (e.g. \"backups\")")
        }
        var config = InstanceConfig(
            name: name, folder: folder, file: file,
            databasePath: databasePath,
            backupsFolder: backupsFolder,
            deploysFolder: resolve(try toml.string("deploys.path") ?? "deploys", against: folder),
            busyTimeout: .milliseconds(timeoutMS),
            maxWriteLock: .milliseconds(try toml.int("database.max_write_lock_ms", range: 1...3_600_000) ?? timeoutMS / 2),
            onlineLockWait: .seconds(try toml.int("database.online_lock_wait_seconds", range: 1...86_400) ?? 60),
            compression: try compression(toml, file: file),
            retention: try retention(toml, file: file),
            restoreCopies: try toml.int("backups.keep_restore_copies", range: 1...1000) ?? 2,
            maxBackupAge: try duration(toml, "backups.max_backup_age", file: file),
            seedSQL: try toml.string("database.seed_sql").map { resolve($0, against: folder) },
            hooks: Hooks(
                stop: try toml.string("hooks.stop"), start: try toml.string("hooks.start"),
                health: try toml.string("hooks.health"),
                timeout: .seconds(try toml.int("hooks.timeout_seconds", range: 1...3600) ?? 30),
                healthAttempts: try toml.int("hooks.health_attempts", range: 1...600) ?? 5),
            offsite: try offsiteRemotes(toml, count: remotes, file: file),
            encryption: try encryption(toml, folder: folder, file: file))
        config.command = try migrationCommand(toml, file: file)
        config.databases = entries.map { config.view(of: $0) }
        return config
    }

    /// `[encryption]`: recipients parsed (each must be an X25519 `age1…` key), the identity
    /// file's path resolved (it is read only when needed), `local = true` only with recipients.
    private static func encryption(_ toml: TOMLSubset, folder: String, file: String) throws -> EncryptionConfig {
        var recipients = [AgeRecipient]()
        for text in try toml.strings("encryption.recipients") ?? [] {
            do {
                recipients.append(try AgeRecipient(parsing: text))
            } catch let failure as Failure {
                throw TOMLSubset.error(file, toml.line(of: "encryption.recipients") ?? 1, "key 'encryption.recipients': \(failure.message)")
            }
        }
        let local = try toml.bool("encryption.local") ?? false
        if local && recipients.isEmpty {
            throw TOMLSubset.error(file, toml.line(of: "encryption.local") ?? 1,
                                   "key 'encryption.local': local = true needs recipients = [\"age1…\"] (the public keys to encrypt to)")
        }
        let identityLine = toml.line(of: "encryption.identity_file")
        let identityText = try toml.string("encryption.identity_file")
        if let identityText, AgeIdentity.looksSecret(identityText) {
            throw TOMLSubset.error(file, identityLine ?? 1, "key 'encryption.identity_file': it holds a private key itself (not repeated here); it must be the path of a file holding the key, mode 0600 — and treat that key as exposed if this file is shared")
        }
        let identity = identityText.map { resolve($0, against: folder) }
        return EncryptionConfig(recipients: recipients, identityFile: identity, local: local,
                                setting: "[encryption] identity_file in \(file)\(identityLine.map { ":\($0)" } ?? "")")
    }

    /// Every `[[offsite]]` table; two with one name are refused (`--remote` could not tell them apart).
    private static func offsiteRemotes(_ toml: TOMLSubset, count: Int, file: String) throws -> [OffsiteConfig] {
        var remotes = [OffsiteConfig]()
        for index in 0..<count {
            let remote = try offsite(toml, index: index, file: file)
            if remotes.contains(where: { $0.name == remote.name }) {
                throw TOMLSubset.error(file, toml.line(of: "offsite.\(index).name") ?? 1, "two [[offsite]] remotes are named '\(remote.name)'; give each its own name")
            }
            remotes.append(remote)
        }
        return remotes
    }

    /// `[[offsite]]` number `index`.
    private static func offsite(_ toml: TOMLSubset, index: Int, file: String) throws -> OffsiteConfig {
        let key = { (name: String) in "offsite.\(index).\(name)" }
        let line = { (name: String) in toml.line(of: key(name)) ?? toml.line(of: key("url")) ?? 1 }
        guard let name = try toml.string(key("name")), OffsiteConfig.isSafeSegment(name) else {
            throw TOMLSubset.error(file, line("name"), "[[offsite]] number \(index + 1) needs name = \"…\" (letters, digits, - and _)")
        }
        guard let url = try toml.string(key("url")), url.hasPrefix("s3://") else {
            throw TOMLSubset.error(file, line("url"), "[[offsite]] '\(name)': url must be s3://bucket/prefix")
        }
        let path = url.dropFirst(5).split(separator: "/", omittingEmptySubsequences: true).map(String.init)
        guard let bucket = path.first, path.allSatisfy(OffsiteConfig.isSafeSegment) else {
            throw TOMLSubset.error(file, line("url"), "[[offsite]] '\(name)': url '\(url)' must be s3://bucket/prefix with no empty, '.' or '..' parts")
        }
        let endpoint: Endpoint
        do {
            endpoint = try Endpoint(parsing: try toml.string(key("endpoint")) ?? "https://s3.amazonaws.com")
        } catch let failure as Failure {
            throw TOMLSubset.error(file, line("endpoint"), "[[offsite]] '\(name)': \(failure.message)")
        }
        let hostId = try toml.string(key("host_id")) ?? ProcessInfo.processInfo.hostName.split(separator: ".").first.map(String.init) ?? "host"
        guard OffsiteConfig.isSafeSegment(hostId) else {
            throw TOMLSubset.error(file, line("host_id"), "[[offsite]] '\(name)': host_id '\(hostId)' cannot be part of an object key (no '/', no '..')")
        }
        let keep = { (rule: String) in try toml.int(key(rule), range: 1...100_000) }
        var remote = OffsiteConfig(
            name: name, bucket: bucket, prefix: path.dropFirst().joined(separator: "/"), endpoint: endpoint,
            region: try toml.string(key("region")) ?? "us-east-1", pathStyle: try toml.bool(key("path_style")) ?? false, hostId: hostId,
            retention: RetentionPolicy(keepLast: try keep("keep_last"), keepWithin: try duration(toml, key("keep_within"), file: file),
                                       keepDaily: try keep("keep_daily"), keepWeekly: try keep("keep_weekly"), keepMonthly: try keep("keep_monthly")))
        let seconds = { (name: String, range: ClosedRange<Int>) in try toml.int(key(name), range: range).map { Duration.seconds($0) } }
        if let value = try seconds("connect_timeout", 1...600) { remote.deadlines.connect = value }
        if let value = try seconds("read_timeout", 1...3600) { remote.deadlines.idle = value }
        if let value = try seconds("request_timeout", 1...86_400) { remote.deadlines.request = value }
        if let value = try seconds("push_timeout", 1...604_800) { remote.pushTimeout = value }
        if let value = try toml.int(key("max_attempts"), range: 1...20) { remote.attempts = value }
        remote.regionSet = try toml.string(key("region")) != nil
        remote.endpointSet = try toml.string(key("endpoint")) != nil
        if let bundle = try toml.string(key("ca_bundle")), !bundle.isEmpty { remote.caBundle = resolve(bundle, against: (file as NSString).deletingLastPathComponent) }
        return remote
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
    /// The deploy journal (present only while a deploy is unfinished); one per database of an
    /// instance with several.
    public var journalPath: String { folder + "/.deployctl" + (databaseName.map { ".\($0)" } ?? "") + ".journal" }
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
