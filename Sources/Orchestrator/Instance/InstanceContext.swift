import Backup
import Foundation
import Locking
import SQLite
import Support

/// One instance as a command works on it: the environment (`runtime`) and the instance's
/// config, with what every use case needs of them — its backup store, its lock, the preflights
/// of free space and encryption, the snapshot request, the database built from seed SQL.
/// Made by `Runtime.instance(_:for:)`, which loads the config and checks permissions first.
public struct InstanceContext: Sendable {
    public let runtime: Runtime
    public let config: InstanceConfig
    public var name: String { config.name }

    init(runtime: Runtime, config: InstanceConfig) {
        self.runtime = runtime
        self.config = config
    }

    /// The backup store of an instance.
    var store: BackupStore {
        var store = BackupStore(folder: config.backupsFolder, databasePath: config.databasePath, now: runtime.clock())
        let interruption = runtime.interruption
        store.stopped = { interruption() != nil }
        store.instance = config.name
        let encryption = config.encryption
        store.identities = { try encryption.identities() }
        store.identitySetting = encryption.setting
        return store
    }

    /// Makes sure the instance's live database exists. Only an instance whose config names a
    /// `seed_sql` gets one built (the bundled example): in a temp file, fsynced, linked into
    /// place without replacing. Every other instance with no database is an error; a live
    /// database is never conjured up.
    /// - Throws: `Failure` `.missingInput`; `SQLiteError` for a bad seed.
    func ensureDatabase() throws {
        if FileManager.default.fileExists(atPath: config.databasePath) { return }
        guard let seed = config.seedSQL else {
            throw Failure(.databaseMissing, "database file \(config.databasePath) of instance '\(config.name)' does not exist",
                          hint: store.entries().isEmpty
                            ? "point database.path in \(config.file) at the application's database, or create it with the application's schema (Runbooks/deploy-and-restore.md, 'Putting a database in place')"
                            : "check database.path in \(config.file), or recover it with 'deployctl restore \(config.name) --latest --replace'")
        }
        guard let sql = try? String(contentsOfFile: seed, encoding: .utf8) else {
            throw Failure(.seedUnreadable, "seed file \(seed) of instance '\(config.name)' cannot be read")
        }
        let folder = (config.databasePath as NSString).deletingLastPathComponent
        try DurableFile.createFolder(folder)
        let temp = DurableFile.temporaryPath(for: config.databasePath)
        defer { unlink(temp); unlink(temp + "-journal"); unlink(temp + "-wal"); unlink(temp + "-shm") }
        // The temp file becomes the database only when complete, so a failed seed leaves nothing.
        try Connection.create(at: temp, running: sql)
        try DurableFile.syncFile(temp)
        do {
            try DurableFile.publish(temp, as: config.databasePath)
        } catch let failure as Failure where FileManager.default.fileExists(atPath: config.databasePath) {
            _ = failure  // another run built it first; theirs stands
        }
        try DurableFile.syncDirectory(containing: config.databasePath)
        runtime.events(.stepDone("Built the \(config.label) database from \(URL(fileURLWithPath: seed).lastPathComponent): \(config.databasePath)"))
    }

    /// The live database's size as SQLite sees it (page count × page size, the WAL's last
    /// commit included; a large but checkpointed `-wal` adds nothing): what a copy of it takes.
    /// Where it cannot be opened, the file's size.
    var liveBytes: Int64 {
        // An estimate: never waits for a lock (the file's size does when it is locked).
        if let bytes = Connection.bytesAsSQLiteSeesThem(path: config.databasePath) { return bytes }
        return ((try? FileManager.default.attributesOfItem(atPath: config.databasePath))?[.size] as? NSNumber)?.int64Value ?? 0
    }

    /// Free-space preflight of a snapshot (and, for a deploy, its rehearsal copy): the copy, half
    /// again for its gzip file, and the rehearsal's scratch copy, all in the backups folder.
    /// - Throws: `Failure` `.io` naming the folder and the bytes.
    /// With `onlineTable`, also the shadow copy an online rebuild builds of that table and its
    /// indexes beside the live database (their pages from `dbstat`, a quarter more for the WAL).
    func checkSpaceForSnapshot(compression: Compression, rehearsal: Bool, onlineTable: String? = nil) throws {
        let gzip = compression != .none
        guard !runtime.failpoints.skips(.freeSpace) else { return }
        let bytes = liveBytes
        var needs = SpaceNeeds(instance: config.name)
        needs.add(bytes, in: config.backupsFolder, for: "the snapshot")
        if gzip {
            // As the newest backup of that compression compressed, with a quarter to spare; half without one.
            let ratio = store.entries().first { $0.compression == compression && ($0.manifest?.databaseBytes ?? 0) > 0 }
                .map { min(1.0, Double($0.bytes) / Double($0.manifest!.databaseBytes) * 1.25) } ?? 0.5
            needs.add(Int64(Double(bytes) * ratio), in: config.backupsFolder, for: "its \(compression.rawValue) copy")
        }
        if rehearsal { needs.add(bytes, in: config.backupsFolder, for: "the rehearsal copy") }
        if let onlineTable {
            let pages = try Connection.treeBytes(path: config.databasePath, table: onlineTable, busyTimeout: config.busyTimeout)
            needs.add(pages + pages / 4, in: (config.databasePath as NSString).deletingLastPathComponent,
                      for: "the online rebuild's copy of \(onlineTable) and its indexes")
        }
        try needs.check()
    }

    /// A deploy reads its own snapshot back (to rehearse the migrations, and to restore it on
    /// failure). With `[encryption] local = true` that snapshot is encrypted, so the deploy is
    /// refused before it touches anything unless the identity file opens files for one of the
    /// recipients.
    /// - Throws: `Failure` `.usage` naming the setting; what loading the identity file throws.
    func checkOwnSnapshotsDecrypt() throws {
        let encryption = config.encryption
        guard encryption.local else { return }
        guard let identities = try encryption.identities() else {
            throw Failure(.ownSnapshotUnreadable, "[encryption] local = true in \(config.file) encrypts the deploy's snapshot, which the deploy must read back to rehearse the migrations and to restore on failure, but no identity_file is set",
                          hint: "set identity_file under [encryption] to the private key of one of the recipients, or set local = false (copies pushed offsite are still encrypted)")
        }
        let opened = Set(identities.map(\.recipient))
        guard encryption.recipients.contains(where: opened.contains) else {
            throw Failure(.ownSnapshotUnreadable, "no key in \(encryption.identityFile ?? "") belongs to [encryption] recipients in \(config.file) (\(encryption.recipients.map(\.description).joined(separator: ", "))): the deploy could not read its own snapshot back",
                          hint: "point identity_file at the private key of one of the recipients ('age-keygen -y FILE' prints a key's public key)")
        }
    }

    /// A snapshot request for an instance's live database, recording the instance and the
    /// database's path relative to the root in the manifest.
    /// Encrypted to `[encryption] recipients` when `local = true`, unless `encrypt` is false
    /// (the `pre_restore` copy, written under the write lock and needed back at once).
    func snapshotRequest(label: String, compression: Compression, verify: Bool = false, note: String? = nil,
                         encrypt: Bool = true) -> SnapshotRequest {
        var request = SnapshotRequest(databasePath: config.databasePath, label: label, compression: compression, verify: verify, busyTimeout: config.busyTimeout,
                                      now: runtime.clock(), instance: config.name, database: relativeDatabasePath, note: note)
        if encrypt && config.encryption.local { request.recipients = config.encryption.recipients }
        return request
    }

    /// The live database's path relative to the root (absolute when it lies outside), as
    /// manifests record it.
    var relativeDatabasePath: String {
        let root = runtime.workspace.root + "/"
        return config.databasePath.hasPrefix(root) ? String(config.databasePath.dropFirst(root.count)) : config.databasePath
    }

    /// Takes the instance lock for a writing command (deploy, snapshot, restore, prune), first
    /// refusing a config whose database file another instance of this root also names: two
    /// instance locks would not keep their commands apart. `operation` (`deploy`, `restore`)
    /// and `stage` are recorded in the lock file: `status` reports that work as in progress.
    /// - Throws: `Failure` `.usage` naming both instances; `.temporary` when the lock is held.
    func lock(operation: String? = nil, stage: String? = nil) throws -> InstanceLock {
        for database in config.databases.isEmpty ? [config] : config.databases {
            if let (other, otherConfig) = runtime.workspace.instance(naming: database.databasePath, except: config.name) {
                throw Failure(.sharedDatabase, "instances '\(config.name)' and '\(other)' name the same database file (\(database.databasePath) and \(otherConfig.databasePath)); their locks would not keep deploys and restores apart",
                              hint: "point one of \(config.file) and \(otherConfig.file) at its own database")
            }
        }
        for other in (try? runtime.workspace.allInstanceFolders()) ?? [] where other != config.name {
            guard let otherConfig = try? runtime.workspace.instance(other) else { continue }
            if fileIdentity(config.backupsFolder).path == fileIdentity(otherConfig.backupsFolder).path {
                throw Failure(.sharedBackupsFolder, "instances '\(config.name)' and '\(other)' share the backups folder \(config.backupsFolder); retention of one would remove the other's backups",
                              hint: "give each instance its own backups.path in \(config.file) and \(otherConfig.file)")
            }
        }
        let lock = try InstanceLock(path: config.lockPath, command: runtime.commandLine, now: runtime.clock(), operation: operation, stage: stage)
        // Temp files and scratch copies of runs that died (killed mid-snapshot, mid-rehearsal).
        let leftovers = Self.leftovers(config)
        for leftover in leftovers { unlink(leftover.path) }
        if !leftovers.isEmpty {
            runtime.events(.fact("removed \(counted(leftovers.count, "temp file")) left by runs that died (\(SpaceNeeds.format(leftovers.reduce(0) { $0 + $1.bytes })))"))
        }
        return lock
    }

    /// Temp files of dead runs beside an instance's database and in its backups folder.
    static func leftovers(_ config: InstanceConfig) -> [(path: String, bytes: Int64)] {
        // Each database's of a set (once each: they share the instance folder).
        var seen = Set<String>()
        return (own(config) + config.databases.flatMap(own)).filter { seen.insert($0.path).inserted }
    }

    private static func own(_ config: InstanceConfig) -> [(path: String, bytes: Int64)] {
        // A journal being written when its run died.
        DurableFile.leftovers(in: config.folder, naming: ".deployctl.")
            + DurableFile.leftovers(in: config.backupsFolder)
            + DurableFile.leftovers(in: (config.databasePath as NSString).deletingLastPathComponent,
                                    naming: (config.databasePath as NSString).lastPathComponent)
    }
}

extension Runtime {
    /// The instance `name` with one database: its config loaded and checked, and, before any
    /// work, the check that this user may do `access` with its files (nil: no check, for
    /// commands that check later). With several databases, the one `--database` names; a
    /// command that works on one database refuses an instance of several without it.
    /// - Throws: `Failure` for an unknown or invalid instance, a broken config, missing
    ///   permissions; `config.database_not_named` (64).
    func instance(_ name: String, for access: InstanceAccess?) throws -> InstanceContext {
        let instance = try instanceSet(name, for: nil)
        let selected = try instance.selectedDatabases
        guard selected.count == 1 else {
            throw Failure(.databaseNotNamed, "instance '\(name)' has \(selected.count) databases (\(selected.compactMap(\.config.databaseName).joined(separator: ", "))) and this command works on one",
                          hint: "name one with --database, e.g. the same command with --database \(selected[0].config.databaseName ?? "NAME")")
        }
        if let access { try selected[0].checkAccess(access) }
        return selected[0]
    }

    /// The instance `name` as a whole, for a command that works on each of its databases
    /// (`selectedDatabases`); `access` is checked for each of them.
    func instanceSet(_ name: String, for access: InstanceAccess?) throws -> InstanceContext {
        let instance = InstanceContext(runtime: self, config: try workspace.instance(name))
        if let database, instance.config.databases.isEmpty { _ = try instance.config.database(database) }
        if let access { for database in try instance.selectedDatabases { try database.checkAccess(access) } }
        return instance
    }
}

extension Runtime {
    /// One runtime per database a command goes over: itself for an instance of one database or
    /// with `--database`; else one per `[[database]]`, each with `database` set.
    /// - Throws: `Failure` for an unknown or invalid instance, or a broken config.
    /// With `backup`, only the database whose backups folder holds a backup of that name.
    public func eachDatabase(of instance: String, naming backup: String? = nil) throws -> [Runtime] {
        let config = try workspace.instance(instance)
        guard database == nil, !config.databases.isEmpty else { return [self] }
        let holding = config.databases.filter { view in backup.map { FileManager.default.fileExists(atPath: view.backupsFolder + "/" + $0) || FileManager.default.fileExists(atPath: view.backupsFolder + "/" + $0 + ".json") } ?? true }
        guard !holding.isEmpty else { return [self] }
        return holding.map { view in
            var runtime = self
            runtime.database = view.databaseName
            return runtime
        }
    }

    /// For a command naming one backup: the runtime of the one database whose backups hold it
    /// (an instance of several, no `--database`), else this one.
    public func holding(_ backup: String?, of instance: String) throws -> Runtime {
        let holding = try eachDatabase(of: instance, naming: backup)
        return holding.count == 1 ? holding[0] : self
    }
}

extension InstanceContext {
    /// The databases a command works on: the instance itself when it has one; else each
    /// `[[database]]` in the config's order, or the one `--database` names.
    /// - Throws: `config.database_unknown` (64) for a `--database` the instance lacks.
    var selectedDatabases: [InstanceContext] {
        get throws {
            if config.databases.isEmpty {
                if let name = runtime.database { _ = try config.database(name) }
                return [self]
            }
            if let name = runtime.database { return [InstanceContext(runtime: runtime, config: try config.database(name))] }
            return config.databases.map { InstanceContext(runtime: runtime, config: $0) }
        }
    }

    /// Every database of the set this context belongs to, as contexts: the instance's
    /// `[[database]]` views, whether this is the instance or one of its databases; empty for an
    /// instance with one database.
    var setMembers: [InstanceContext] {
        get throws {
            let views = config.databaseName == nil ? config.databases : try runtime.workspace.instance(config.name).databases
            return views.map { InstanceContext(runtime: runtime, config: $0) }
        }
    }

    /// Whether the instance declares several databases (`[[database]]` tables).
    var hasDatabaseSet: Bool { !config.databases.isEmpty }

    /// The database's migrations folder: its `[[database]] migrations`, else deploy.toml's
    /// folder (`/<name>` for a database of an instance with several).
    /// - Throws: `config.migrations_missing` (66) when a database of a set has no such folder
    ///   (one with nothing to migrate yet has an empty one).
    var migrationsFolder: String {
        get throws {
            let base = try runtime.workspace.deployConfig().migrationsFolder
            let folder = config.migrationsFolder ?? config.databaseName.map { base + "/" + $0 } ?? base
            // A framework command's database needs no .sql folder.
            guard let database = config.databaseName, config.command == nil else { return folder }
            var isFolder: ObjCBool = false
            guard FileManager.default.fileExists(atPath: folder, isDirectory: &isFolder), isFolder.boolValue else {
                let what = FileManager.default.fileExists(atPath: folder) ? "is not a folder" : "does not exist"
                throw Failure(.migrationsFolderMissing, "the migrations folder \(folder) of database '\(database)' of instance '\(config.name)' \(what)",
                              hint: "create it (empty when the database has no migrations yet), or point migrations = \"…\" of its [[database]] table in \(config.file) at it")
            }
            return folder
        }
    }
}
