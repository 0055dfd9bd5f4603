import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// What a command will write, folder by folder, checked against the free space of the
/// filesystems holding them before it writes anything: a command that cannot fit fails early
/// (74) naming the folder and the bytes, rather than after minutes of copying. The needs are
/// estimates; a write that still runs out of space fails cleanly on its own.
public struct SpaceNeeds: Sendable {
    private var items: [(folder: String, bytes: Int64, what: String)] = []

    /// The instance whose files need the room, for the prune command in the hint.
    public var instance: String?

    public init(instance: String? = nil) { self.instance = instance }

    /// Adds `bytes` that will be written in `folder` (or in its nearest existing parent) for `what`.
    public mutating func add(_ bytes: Int64, in folder: String, for what: String) {
        if bytes > 0 { items.append((folder, bytes, what)) }
    }

    /// Checks each filesystem's free space (for an unprivileged user) against the sum of what
    /// will be written on it.
    /// - Throws: `Failure` `.io` naming the folder, what needs the room, and the bytes.
    public func check() throws {
        var byDevice = [UInt64: [(folder: String, bytes: Int64, what: String)]]()
        var order = [UInt64]()
        for item in items {
            var info = stat()
            guard stat(Self.existing(item.folder), &info) == 0 else { continue }
            let device = UInt64(info.st_dev)
            if byDevice[device] == nil { order.append(device) }
            byDevice[device, default: []].append(item)
        }
        for device in order {
            let list = byDevice[device]!
            var info = statvfs()
            guard statvfs(Self.existing(list[0].folder), &info) == 0 else { continue }
            let free = Int64(info.f_bavail) * Int64(info.f_frsize)
            let needed = list.reduce(0) { $0 + $1.bytes }
            guard needed > free else { continue }
            var folders = [String]()
            for item in list where !folders.contains(item.folder) { folders.append(item.folder) }
            let what = folders.map { folder in
                list.filter { $0.folder == folder }.map { "\($0.what) (\(Self.format($0.bytes)))" }.joined(separator: " and ") + " in \(folder)"
            }.joined(separator: ", ")
            throw Failure(.spaceInsufficient, "not enough free space: \(what) need about \(Self.format(needed)) (\(needed) bytes, estimated), but that filesystem has \(Self.format(free)) free; nothing was written",
                          hint: "free \(Self.format(needed - free)) there (old backups: see what 'deployctl backups prune \(instance ?? "<instance>") --keep-last 7 --dry-run' would remove), or set another backups path in the instance config")
        }
    }

    /// `folder`, or its nearest parent that exists (a backups folder is created on first use).
    static func existing(_ folder: String) -> String {
        var path = folder
        while !FileManager.default.fileExists(atPath: path), path != "/", !path.isEmpty {
            path = (path as NSString).deletingLastPathComponent
        }
        return path.isEmpty ? "/" : path
    }

    /// `1.2 MiB`, `512 B`.
    public static func format(_ bytes: Int64) -> String {
        let units = ["B", "KiB", "MiB", "GiB", "TiB"]
        var value = Double(bytes)
        var unit = 0
        while value >= 1024 && unit < units.count - 1 { value /= 1024; unit += 1 }
        return unit == 0 ? "\(bytes) B" : String(format: "%.1f %@", value, units[unit])
    }
}
