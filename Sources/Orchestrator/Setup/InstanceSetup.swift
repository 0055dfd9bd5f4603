import Foundation
import SQLite
import Support

/// `deployctl init`: adopt an existing database as a new instance.
public struct InitRequest: Sendable {
    /// The new instance's name.
    public let name: String
    /// The existing live database, as given (relative to `currentDirectory`).
    public let database: String
    /// The backups folder, as given; nil for `backups` in the instance folder.
    public let backups: String?
    /// Where relative paths on the command line resolve.
    public let currentDirectory: String

    public init(name: String, database: String, backups: String?, currentDirectory: String) {
        self.name = name
        self.database = database
        self.backups = backups
        self.currentDirectory = currentDirectory
    }
}

/// What `init` wrote and what the operator does next.
public struct InitResult: Encodable, Sendable {
    /// The new instance's name.
    public let instance: String
    /// The `instance.toml` written.
    public let config: String
    /// The adopted database (absolute).
    public let database: String
    /// "wal" or "rollback" (from the database header's format versions).
    public let journalMode: String
    /// The database file's size when adopted.
    public let bytes: Int64
    /// The user owning the database file (a name when the system knows one, else the uid).
    public let owner: String
    /// The backups folder (absolute).
    public let backups: String
    /// `deploy.toml`, and whether `instance` was added to its `order` (false when the file has
    /// no order: `deploy all` then covers every instance folder already).
    public let deployConfig: String
    public let addedToOrder: Bool
    /// Drop-in for the instance's systemd units, when the units' defaults (user `deployctl`,
    /// root `/var/lib/deployctl`, backups inside the instance folder) do not fit; else nil.
    public let dropIn: String?
    /// The commands to run next, in order.
    public let next: [String]

    enum CodingKeys: String, CodingKey {
        case instance, config, database, bytes, owner, backups, next
        case journalMode = "journal_mode"
        case deployConfig = "deploy_config"
        case addedToOrder = "added_to_order"
        case dropIn = "drop_in"
    }
}

/// `deployctl init`: adopts an existing database as a new instance.
public struct InstanceSetup: Sendable {
    let runtime: Runtime
    var workspace: Workspace { runtime.workspace }

    public init(_ runtime: Runtime) { self.runtime = runtime }

    /// Writes `instances/<name>/instance.toml` for an existing database and adds the instance
    /// to `deploy.toml`'s order.
    ///
    /// Guarantees: every check runs before anything is written; the config is written durably
    /// and never over an existing one (temp file, fsync, link, fsync of the folder); the
    /// instance folder takes its parent's owner and mode; the database is only read (its header
    /// and size: no connection that could leave `-wal`/`-shm` files).
    /// - Throws: `Failure` `.usage` for an invalid name, an instance that exists, a database
    ///   another instance names, or a backups folder that is, lies inside or contains the
    ///   database's folder; `.missingInput` when the
    ///   database does not exist; `.badData` when it is not a SQLite database; `.cannotCreate`
    ///   or `.io` when the config cannot be written.
    public func create(_ request: InitRequest) throws -> InitResult {
        let name = request.name
        guard Workspace.isValidName(name) else {
            throw Failure(.instanceInvalidName, "invalid instance name '\(name)': names match [a-z0-9][a-z0-9_-]*, never a path",
                          hint: "pick a name such as 'prod' or 'app-1'")
        }
        let folder = workspace.instancesFolder + "/" + name
        let file = folder + "/instance.toml"
        guard !FileManager.default.fileExists(atPath: file) else {
            throw Failure(.instanceExists, "instance '\(name)' exists already: \(file); nothing was written",
                          hint: "edit that file, or choose another name")
        }
        let database = resolve(request.database, against: request.currentDirectory)
        guard FileManager.default.fileExists(atPath: database) else {
            throw Failure(.databaseMissing, "database file \(database) does not exist; nothing was written",
                          hint: "give the path of the application's existing SQLite database (init never creates one)")
        }
        try Connection.checkIsDatabase(database)
        var info = stat()
        guard stat(database, &info) == 0 else { throw DurableFile.posixFailure("cannot read \(database)", errno) }
        let header = try Self.header(of: database)
        let journalMode = header.count >= 20 && header[18] == 2 && header[19] == 2 ? "wal" : "rollback"
        let backups = request.backups.map { resolve($0, against: request.currentDirectory) } ?? folder + "/backups"
        if let conflict = InstanceConfig.backupsConflict(backups: backups, database: database) {
            throw Failure(.backupsFolderConflict, "\(conflict); nothing was written",
                          hint: request.backups == nil ? "pass --backups DIR outside \((database as NSString).deletingLastPathComponent)"
                                                       : "pass --backups with a folder outside \((database as NSString).deletingLastPathComponent)")
        }
        if let (other, otherConfig) = workspace.instance(naming: database, except: name) {
            throw Failure(.sharedDatabase, "\(database) is the database of instance '\(other)' already (\(otherConfig.file)); nothing was written",
                          hint: "use instance '\(other)', or give another database")
        }
        // A deploy.toml that cannot be read would fail after the config is written: refuse first.
        _ = try workspace.deployConfig()
        let owner = getpwuid(info.st_uid).map { String(cString: $0.pointee.pw_name) } ?? String(info.st_uid)
        let group = getgrgid(info.st_gid).map { String(cString: $0.pointee.gr_name) } ?? String(info.st_gid)

        let text = Self.instanceConfig(name: name, database: database, journalMode: journalMode, bytes: Int64(info.st_size),
                                       backups: request.backups == nil ? "backups" : backups, now: runtime.clock())
        try DurableFile.createFolder(folder, called: "instance folder")
        try DurableFile.write(Data(text.utf8), to: file, mode: 0o644, replace: false)
        let added = try addToOrder(name)

        let (dropIn, next) = nextSteps(name: name, folder: folder, database: database, backups: backups, journalMode: journalMode,
                                       owner: owner, group: group, worldReadable: info.st_mode & S_IROTH != 0)
        return InitResult(instance: name, config: file, database: database, journalMode: journalMode, bytes: Int64(info.st_size),
                          owner: owner, backups: backups, deployConfig: workspace.instancesFolder + "/deploy.toml", addedToOrder: added,
                          dropIn: dropIn, next: next)
    }

    /// The commands to run next (the first snapshot, status, the timers) and the systemd drop-in
    /// the units need when their defaults do not fit this database: the units run as deployctl
    /// with the root and the instance folder writable. A WAL database is read through its -shm,
    /// which must be writable: the units then run as the database's owner with its folder
    /// writable. A rollback-journal database only has to be readable: by anyone, or by
    /// deployctl as its owner.
    private func nextSteps(name: String, folder: String, database: String, backups: String, journalMode: String,
                           owner: String, group: String, worldReadable: Bool) -> (dropIn: String?, next: [String]) {
        let root = workspace.root
        let rootOption = root == Workspace.installedRoot ? "" : " --root \(root)"
        var writable = [String]()
        let readable = owner == "deployctl" || worldReadable
        let asOwner = owner != "deployctl" && (journalMode == "wal" || !readable)
        if journalMode == "wal" { writable.append((database as NSString).deletingLastPathComponent) }
        if !backups.hasPrefix(folder + "/") { writable.append(backups) }
        var lines = [String]()
        if asOwner { lines += ["User=\(owner)", "Group=\(group)", "SupplementaryGroups=deployctl"] }
        // systemd splits these settings at spaces unless the value is quoted.
        func quoted(_ value: String) -> String { value.contains(" ") ? "\"\(value)\"" : value }
        if root != Workspace.installedRoot { lines += ["Environment=\(quoted("DEPLOYCTL_ROOT=" + root))", "ReadWritePaths=\(quoted(folder))"] }
        lines += writable.map { "ReadWritePaths=\(quoted($0))" }
        let dropIn = lines.isEmpty ? nil : (["[Service]"] + lines).joined(separator: "\n") + "\n"
        let units = ["snapshot", "verify", "status"].map { "deployctl-\($0)@\(name).timer" }
        var next = ["deployctl\(rootOption) snapshot \(name)", "deployctl\(rootOption) status \(name)"]
        if let dropIn {
            // printf %b reads the \n escapes and nothing else (a % or \ in a path stays as it is).
            let escaped = dropIn.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\n", with: "\\n")
                .replacingOccurrences(of: "'", with: "'\\''")
            next.append("for unit in snapshot verify status; do sudo mkdir -p /etc/systemd/system/deployctl-$unit@\(name).service.d && printf '%b' '\(escaped)' | sudo tee /etc/systemd/system/deployctl-$unit@\(name).service.d/instance.conf; done; sudo systemctl daemon-reload")
        }
        next.append("sudo systemctl enable --now \(units.joined(separator: " "))")
        return (dropIn, next)
    }

    /// The first 100 bytes of the database (its header), read without SQLite.
    private static func header(of path: String) throws -> [UInt8] {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw DurableFile.posixFailure("cannot read \(path)", errno) }
        defer { close(fd) }
        var bytes = [UInt8](repeating: 0, count: 100)
        let count = try bytes.withUnsafeMutableBytes { try DurableFile.readFully(fd, into: $0, path: path) }
        return Array(bytes.prefix(count))
    }

    /// Adds `name` to `deploy.toml`'s order: appended to an existing `order`, or a new file
    /// holding only it when there is no file and no other instance (but the bundled example).
    /// Returns whether it is in the order now; the file is left alone when it has no order, or
    /// when it is missing while other instances exist (`all` covers every folder then).
    private func addToOrder(_ name: String) throws -> Bool {
        let path = workspace.instancesFolder + "/deploy.toml"
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else {
            let others = try workspace.allInstanceFolders().filter { $0 != name && $0 != "example" }
            guard others.isEmpty else { return false }
            let fresh = """
                # deployctl deployment order and migrations (written by 'deployctl init').
                # A deploy to an instance checks that every instance before it in this order already has the
                # pending migrations applied and verified (promotion); `deployctl deploy all` walks this order.
                order = ["\(name)"]

                # Folder of NNNN_name.sql migration files, relative to this file's folder.
                migrations = "migrations"

                """
            try DurableFile.write(Data(fresh.utf8), to: path, mode: 0o644, replace: false)
            return true
        }
        let order = try workspace.deployConfig().order
        let toml = try TOMLSubset(text: text, file: path)
        guard let line = toml.line(of: "order") else { return false }
        if order.contains(name) { return true }
        var lines = text.components(separatedBy: "\n")
        var end = line - 1
        while end < lines.count - 1, !lines[end].contains("]") { end += 1 }
        let indent = String(lines[line - 1].prefix { $0 == " " })
        lines.replaceSubrange((line - 1)...end, with: [indent + "order = [" + (order + [name]).map { "\"\($0)\"" }.joined(separator: ", ") + "]"])
        var mode: mode_t = 0o644
        var info = stat()
        if stat(path, &info) == 0 { mode = info.st_mode & 0o777 }
        try DurableFile.write(Data(lines.joined(separator: "\n").utf8), to: path, mode: mode)
        return true
    }

    /// The text of a new `instance.toml`: the database, backups with the shipped retention (the
    /// hourly timer's), and commented hooks.
    static func instanceConfig(name: String, database: String, journalMode: String, bytes: Int64, backups: String, now: Date) -> String {
        let formatter = ISO8601DateFormatter()
        return """
            # deployctl config for instance '\(name)', written by 'deployctl init' on \(formatter.string(from: now))
            # for \(database) (journal mode \(journalMode), \(SpaceNeeds.format(bytes)) then).
            # Relative paths resolve against this folder.

            [database]
            # The live SQLite database (never created by deployctl).
            path = "\(Self.tomlEscaped(database))"
            # How long to wait for the application's locks, in milliseconds.
            busy_timeout_ms = 5000

            [backups]
            # Snapshots and their manifests, never in the database's folder (created if missing, with
            # the owner and mode of the folder they are made in).
            path = "\(Self.tomlEscaped(backups))"
            # Store snapshots gzip-compressed (snapshot --gzip/--no-gzip overrides).
            gzip = true
            # Retention per label after each snapshot (the hourly timer's label is 'hourly'): a backup
            # is kept if any rule keeps it; pre_* labels keep their newest always.
            keep_last = 24
            keep_daily = 14
            keep_weekly = 8
            keep_monthly = 12
            # 'deployctl status' exits 1 when the newest backup is older than this: the hourly timer
            # with two hours to spare.
            max_backup_age = "3h"

            [hooks]
            # Shell commands run in this folder for deploy and restore, each with a timeout.
            # stop = "systemctl stop \(name)"
            # start = "systemctl start \(name)"
            # health = "curl -fsS http://127.0.0.1:8000/health"
            timeout_seconds = 60

            """
    }

    /// `text` inside a TOML basic string.
    static func tomlEscaped(_ text: String) -> String {
        text.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"")
    }
}
