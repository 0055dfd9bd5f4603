import Foundation
import Support

/// What a command does with an instance's files: what the permission check before any work
/// asks of them (see `InstanceContext.checkAccess`).
enum InstanceAccess {
    /// Lists the backups (backups list, prune --dry-run).
    case listBackups
    /// Reads the live database only (verify, plan, deploy --dry-run).
    case readDatabase
    /// Reads the database and lists the backups (status, restore --dry-run).
    case inspect
    /// Reads and rewrites backups' manifests (backups verify).
    case recordVerification
    /// Reads the database, writes backups, takes the instance lock (snapshot).
    case snapshot
    /// Changes the live database, writes backups, takes the instance lock (deploy, restore).
    case changeLive
    /// Removes backups or writes a restored copy beside them, takes the instance lock (prune,
    /// backups remove, restore --to or --replace).
    case manageBackups

    enum Use { case none, read, write }

    /// What is asked of the backups folder, the lock and the database.
    var needs: (backups: Use, lock: Bool, database: Use) {
        switch self {
        case .listBackups: return (.read, false, .none)
        case .readDatabase: return (.none, false, .read)
        case .inspect: return (.read, false, .read)
        case .recordVerification: return (.write, false, .none)
        case .snapshot: return (.write, true, .read)
        case .changeLive: return (.write, true, .write)
        case .manageBackups: return (.write, true, .none)
        }
    }
}

extension InstanceContext {
    /// Checks, before any work, that this user may do what `access` needs with the instance's
    /// backups folder, lock file and database, so that a permission problem is an error naming
    /// the path, the user and the missing permission, never "no backups" or a raw SQLite error.
    /// What is only read fails with 66 (input not readable), what is written with 73.
    /// - Throws: `Failure` `.missingInput` or `.cannotCreate` (see `FileAccess.require`).
    func checkAccess(_ access: InstanceAccess) throws {
        let needs = access.needs
        switch needs.backups {
        case .none: break
        case .read:
            try FileAccess.require([.read, .search], on: config.backupsFolder, what: "backups folder",
                                   purpose: "list the backups there", kind: .missingInput)
        case .write:
            try FileAccess.require([.read, .write, .search], on: config.backupsFolder, what: "backups folder",
                                   purpose: "write and remove backups there", kind: .cannotCreate)
        }
        if needs.backups != .none {
            // A manifest this user cannot read would make its backup look unmanaged ("no
            // backups"): each one is named instead (backups are written 0600 by their owner).
            let names = (try? FileManager.default.contentsOfDirectory(atPath: config.backupsFolder)) ?? []
            for name in names.sorted() where name.hasSuffix(".json") && !name.hasPrefix(".") {
                try FileAccess.require(.read, on: config.backupsFolder + "/" + name, what: "backup manifest",
                                       purpose: "read which backup it describes", kind: .missingInput)
            }
        }
        if needs.lock {
            if FileManager.default.fileExists(atPath: config.lockPath) {
                try FileAccess.require([.read, .write], on: config.lockPath, what: "instance lock file",
                                       purpose: "take the instance lock", kind: .cannotCreate)
            } else {
                try FileAccess.require([.write, .search], on: config.folder, what: "instance folder",
                                       purpose: "create the instance lock file there", kind: .cannotCreate)
            }
        }
        let databaseFolder = (config.databasePath as NSString).deletingLastPathComponent
        switch needs.database {
        case .none: break
        case .write:
            try FileAccess.require([.read, .write], on: config.databasePath, what: "database", purpose: "change the live database", kind: .cannotCreate)
            try FileAccess.require([.write, .search], on: databaseFolder, what: "database's folder",
                                   purpose: "create SQLite's journal files beside the database", kind: .cannotCreate)
        case .read:
            try FileAccess.require(.read, on: config.databasePath, what: "database", purpose: "read the live database", kind: .missingInput)
            // A WAL database is read through its -shm file, which SQLite creates beside it when missing.
            if Self.isWAL(config.databasePath) && !FileManager.default.isWritableFile(atPath: config.databasePath + "-shm") {
                try FileAccess.require([.write, .search], on: databaseFolder, what: "database's folder",
                                       purpose: "create the -shm file SQLite reads a WAL database through", kind: .missingInput)
            }
        }
    }

    /// Whether the file's header says WAL (bytes 18 and 19 are 2; sqlite.org/fileformat2.html).
    static func isWAL(_ path: String) -> Bool {
        guard let handle = FileHandle(forReadingAtPath: path) else { return false }
        defer { try? handle.close() }
        guard let header = try? handle.read(upToCount: 20), header.count == 20 else { return false }
        return header[18] == 2 && header[19] == 2
    }
}
