import Foundation
import Support

/// The deployment root: the folder holding `instances/`.
public struct Workspace: Sendable {
    /// The root folder (absolute).
    public let root: String
    /// `<root>/instances`.
    public var instancesFolder: String { root + "/instances" }

    /// The installed package's root (`/var/lib/deployctl`): the root when nothing else names one.
    public static let installedRoot = "/var/lib/deployctl"

    /// Picks the root: `--root`, else `$DEPLOYCTL_ROOT` (when not empty), else the current
    /// directory when it holds `instances/`, else `installedRoot` when it holds `instances/`
    /// (the package creates it), else the current directory (which then fails below).
    /// - Throws: `Failure` `.usage` when the chosen folder holds no `instances/` folder.
    public init(root: String?, environment: [String: String], currentDirectory: String = FileManager.default.currentDirectoryPath,
                installedRoot: String = Workspace.installedRoot) throws {
        let named = root ?? environment["DEPLOYCTL_ROOT"].flatMap { $0.isEmpty ? nil : $0 }
        let chosen = named ?? ([currentDirectory, installedRoot].first { Self.holdsInstances($0) } ?? currentDirectory)
        let absolute = URL(fileURLWithPath: chosen, relativeTo: URL(fileURLWithPath: currentDirectory))
            .standardizedFileURL.path
        guard Self.holdsInstances(absolute) else {
            throw Failure(.notADeploymentRoot, "\(absolute) is not a deployment root: it has no instances/ folder"
                            + (named == nil ? " (nor has \(installedRoot), the installed package's root)" : ""),
                          hint: "run from the deployment root, or pass --root DIR (or set DEPLOYCTL_ROOT)")
        }
        self.root = absolute
    }

    /// Whether `folder` holds an `instances/` folder.
    static func holdsInstances(_ folder: String) -> Bool {
        var isDirectory: ObjCBool = false
        return FileManager.default.fileExists(atPath: folder + "/instances", isDirectory: &isDirectory) && isDirectory.boolValue
    }

    /// Whether `name` is a valid instance name: `[a-z0-9][a-z0-9_-]*`.
    public static func isValidName(_ name: String) -> Bool {
        guard let first = name.unicodeScalars.first, name.count <= 64 else { return false }
        func ok(_ c: Unicode.Scalar) -> Bool { (c >= "a" && c <= "z") || (c >= "0" && c <= "9") }
        return ok(first) && name.unicodeScalars.allSatisfy { ok($0) || $0 == "_" || $0 == "-" }
    }

    /// The config of instance `name`.
    /// - Throws: `Failure` `.usage` for an invalid name or config; `.missingInput` for no such instance.
    public func instance(_ name: String) throws -> InstanceConfig {
        guard Self.isValidName(name) else {
            throw Failure(.instanceInvalidName, "invalid instance name '\(name)': names match [a-z0-9][a-z0-9_-]*, never a path",
                          hint: "list the instances with 'ls \(instancesFolder)'")
        }
        do {
            return try InstanceConfig.load(name: name, folder: instancesFolder + "/" + name)
        } catch let failure as Failure where failure.kind == .missingInput && !FileManager.default.fileExists(atPath: instancesFolder + "/" + name + "/instance.toml") {
            // No such instance: name the ones there are, and the nearest.
            let known = ((try? allInstanceFolders()) ?? [])
            guard !known.isEmpty else { throw failure }
            let nearest = Suggestion.nearest(to: name, in: known)
            throw Failure(.instanceUnknown, "\(failure.message); instances: \(known.joined(separator: ", "))",
                          hint: nearest.map { "did you mean the instance '\($0)'? (the same command with \($0) in place of \(name))" } ?? failure.hint)
        }
    }

    /// The deploy order and migrations folder.
    /// - Throws: `Failure` `.usage` for a malformed `deploy.toml`.
    public func deployConfig() throws -> DeployConfig {
        try DeployConfig.load(instancesFolder: instancesFolder)
    }

    /// Instances for `all`: deploy.toml's order, else every folder with an `instance.toml`.
    public func allInstances() throws -> [String] {
        let order = try deployConfig().order
        if !order.isEmpty { return order }
        return try allInstanceFolders()
    }

    /// Instances for `status all`: deploy.toml's order, then every other folder of `instances/`
    /// with an `instance.toml` (sorted), so that an instance left out of the order is still
    /// watched.
    /// - Throws: `Failure` `.usage` for a malformed `deploy.toml`.
    public func everyInstance() throws -> [String] {
        let order = try deployConfig().order
        return order + (try allInstanceFolders()).filter { !order.contains($0) }
    }

    /// Every folder of `instances/` with a valid name and an `instance.toml`, sorted.
    public func allInstanceFolders() throws -> [String] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: instancesFolder)) ?? []
        return names.filter { Self.isValidName($0) && FileManager.default.fileExists(atPath: instancesFolder + "/\($0)/instance.toml") }.sorted()
    }

    /// The instance of this root (but `name`) whose config names the database file at `path`
    /// (the same path, or the same file by device and inode), if any; unreadable configs are
    /// passed over.
    public func instance(naming path: String, except name: String) -> (String, InstanceConfig)? {
        let mine = fileIdentity(path)
        for other in (try? allInstanceFolders()) ?? [] where other != name {
            guard let otherConfig = try? instance(other) else { continue }
            for database in otherConfig.databases.isEmpty ? [otherConfig] : otherConfig.databases {
                let theirs = fileIdentity(database.databasePath)
                if mine.path == theirs.path || (mine.inode != nil && mine.inode == theirs.inode) { return (other, database) }
            }
        }
        return nil
    }
}
