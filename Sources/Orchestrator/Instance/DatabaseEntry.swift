import Foundation
import Support

/// One `[[database]]` table of `instance.toml`: a database of an instance with several (a Rails
/// app's primary, cache, queue and cable), each with its own migrations, history table, journal
/// and backups sub-folder (docs/databases.md).
struct DatabaseEntry: Sendable {
    let name: String
    /// The live database (absolute).
    let path: String
    /// Its migrations folder (absolute); nil: deploy.toml's folder + `/<name>`.
    let migrations: String?
    let seedSQL: String?
    let busyTimeout: Duration?
    let maxWriteLock: Duration?
    let onlineLockWait: Duration?

    static let keys: Set<String> = ["name", "path", "migrations", "seed_sql", "busy_timeout_ms", "max_write_lock_ms", "online_lock_wait_seconds"]

    /// Every `[[database]]` table, checked: names valid and distinct, paths given, no two naming
    /// one file, no two files of one name (backups are named after the database's file).
    /// - Throws: `Failure` `config.invalid` naming file, line and key.
    static func all(_ toml: TOMLSubset, count: Int, folder: String, file: String) throws -> [DatabaseEntry] {
        var entries = [DatabaseEntry]()
        for index in 0..<count {
            let key = { (name: String) in "database.\(index).\(name)" }
            let line = { (name: String) in toml.line(of: key(name)) ?? toml.line(of: key("path")) ?? toml.line(of: key("name")) ?? 1 }
            guard let name = try toml.string(key("name")) else {
                throw TOMLSubset.error(file, line("name"), "[[database]] number \(index + 1) needs name = \"…\" (a-z, 0-9, - and _; e.g. \"primary\")")
            }
            guard Workspace.isValidName(name) else {
                throw TOMLSubset.error(file, line("name"), "[[database]] number \(index + 1): name '\(name)' is not valid: names match [a-z0-9][a-z0-9_-]* (e.g. \"primary\"), never a path")
            }
            guard let path = try toml.string(key("path")), !path.isEmpty else {
                throw TOMLSubset.error(file, line("path"), "[[database]] '\(name)' needs path = \"…\" (the live database file)")
            }
            let milliseconds = { (setting: String, range: ClosedRange<Int>) in try toml.int(key(setting), range: range).map { Duration.milliseconds($0) } }
            let entry = DatabaseEntry(
                name: name, path: resolve(path, against: folder), migrations: try toml.string(key("migrations")).map { resolve($0, against: folder) },
                seedSQL: try toml.string(key("seed_sql")).map { resolve($0, against: folder) },
                busyTimeout: try milliseconds("busy_timeout_ms", 0...600_000), maxWriteLock: try milliseconds("max_write_lock_ms", 1...3_600_000),
                onlineLockWait: try toml.int(key("online_lock_wait_seconds"), range: 1...86_400).map { .seconds($0) })
            if let other = entries.first(where: { $0.name == name }) {
                throw TOMLSubset.error(file, line("name"), "two [[database]] tables are named '\(name)' (the other is at \(other.path)); give each its own name")
            }
            let identity = fileIdentity(entry.path)
            if let other = entries.first(where: { fileIdentity($0.path).path == identity.path || (identity.inode != nil && fileIdentity($0.path).inode == identity.inode) }) {
                throw Failure(.sharedDatabase, "\(file):\(line("path")): [[database]] '\(name)' and '\(other.name)' name the same database file (\(entry.path)); each database of an instance is a file of its own",
                              hint: "point each [[database]] path in \(file) at its own file")
            }
            let fileName = (entry.path as NSString).lastPathComponent
            if let other = entries.first(where: { ($0.path as NSString).lastPathComponent == fileName }) {
                throw TOMLSubset.error(file, line("path"), "[[database]] '\(name)' and '\(other.name)' both have files named \(fileName); backups are named after the file, so give them different file names")
            }
            entries.append(entry)
        }
        return entries
    }
}

extension InstanceConfig {
    /// The config of one of this instance's databases: its own database, seed, migrations,
    /// timeouts and journal, its backups in `<backups>/<name>`; everything else the instance's.
    func view(of entry: DatabaseEntry) -> InstanceConfig {
        var view = InstanceConfig(
            name: name, folder: folder, file: file, databasePath: entry.path, backupsFolder: backupsFolder + "/" + entry.name,
            deploysFolder: deploysFolder, busyTimeout: entry.busyTimeout ?? busyTimeout,
            maxWriteLock: entry.maxWriteLock ?? entry.busyTimeout.map { $0 / 2 } ?? maxWriteLock,
            onlineLockWait: entry.onlineLockWait ?? onlineLockWait, compression: compression, retention: retention,
            restoreCopies: restoreCopies, maxBackupAge: maxBackupAge, seedSQL: entry.seedSQL, hooks: hooks, offsite: offsite, encryption: encryption)
        view.databaseName = entry.name
        view.migrationsFolder = entry.migrations
        return view
    }

    /// The database called `name` of an instance with several.
    /// - Throws: `config.database_unknown` (64) naming the databases there are, and the nearest.
    public func database(_ name: String) throws -> InstanceConfig {
        if let view = databases.first(where: { $0.databaseName == name }) { return view }
        let known = databases.compactMap(\.databaseName)
        guard !known.isEmpty else {
            throw Failure(.databaseUnknown, "instance '\(self.name)' has one database (\(databasePath)); --database applies to instances with several [[database]] tables",
                          hint: "leave out --database \(name)")
        }
        let nearest = Suggestion.nearest(to: name, in: known)
        throw Failure(.databaseUnknown, "instance '\(self.name)' has no database '\(name)'; its databases: \(known.joined(separator: ", "))",
                      hint: nearest.map { "did you mean --database \($0)?" } ?? "pass --database with one of: \(known.joined(separator: ", "))")
    }
}
