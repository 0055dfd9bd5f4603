import Foundation
import Testing

/// Disk full mid-snapshot and mid-restore, on a real full filesystem: a small tmpfs mounted for
/// the test (needs root, as CI and the development machines run).
@Suite("disk full", .serialized, .enabled(if: getuid() == 0, "mounting a small tmpfs needs root"))
struct DiskFullTests {
    /// Mounts a tmpfs of `kib` KiB at a new folder and returns it; `unmount` removes it.
    func mountSmallFilesystem(kib: Int) throws -> String {
        let folder = NSTemporaryDirectory() + "deployctl-full-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        let result = try Sandbox.exec("/bin/mount", ["-t", "tmpfs", "-o", "size=\(kib)k", "tmpfs", folder])
        try #require(result.status == 0, "mount failed: \(result.stderr)")
        return folder
    }

    func unmount(_ folder: String) {
        _ = try? Sandbox.exec("/bin/umount", [folder])
        try? FileManager.default.removeItem(atPath: folder)
    }

    @Test("a snapshot into a full disk fails with 74, leaves no partial file, and the live database is untouched",
          arguments: [false, true])
    func snapshotDiskFull(gzip: Bool) throws {
        let box = try Sandbox(rows: 3000)
        let small = try mountSmallFilesystem(kib: 256)
        defer { unmount(small) }
        try box.write("instances/prod/instance.toml", "[database]\npath = \"database/lending_app_prod.db\"\n[backups]\npath = \"\(small)/backups\"\n")
        let before = try box.sha3(box.databasePath)
        let result = try box.deployctl(["snapshot", "prod", gzip ? "--gzip" : "--no-gzip"])
        #expect(result.status == 74, "\(result.stderr)")
        #expect(result.stderr.lowercased().contains("full") || result.stderr.contains("No space"), "\(result.stderr)")
        #expect(try FileManager.default.contentsOfDirectory(atPath: small + "/backups").isEmpty)
        #expect(try box.sha3(box.databasePath) == before)
    }

    @Test("a restore into a new file on a full disk fails with 74 and leaves nothing behind")
    func restoreDiskFull() throws {
        let box = try Sandbox(rows: 3000)
        #expect(try box.deployctl(["snapshot", "prod", "--gzip"]).status == 0)
        let small = try mountSmallFilesystem(kib: 256)
        defer { unmount(small) }
        let before = try box.sha3(box.databasePath)
        let result = try box.deployctl(["restore", "prod", "--latest", "--to", small + "/copy.db"])
        #expect(result.status == 74, "\(result.stderr)")
        #expect(try FileManager.default.contentsOfDirectory(atPath: small).isEmpty)
        #expect(try box.sha3(box.databasePath) == before)
    }

    @Test("inflating a .gz backup onto a full disk fails with 74 and leaves only the backup behind")
    func inflateDiskFull() throws {
        let box = try Sandbox(rows: 3000)
        let (name, file) = try box.takeSnapshot(gzip: true)
        let gzBytes = try #require(FileManager.default.attributesOfItem(atPath: file)[.size] as? Int)
        let databaseBytes = try #require(FileManager.default.attributesOfItem(atPath: box.databasePath)[.size] as? Int)
        // Room for the backup and its manifest, not for the database inflated from it.
        let kib = gzBytes / 1024 + 64
        try #require(databaseBytes > kib * 1024, "the database must not fit beside its backup")
        let small = try mountSmallFilesystem(kib: kib)
        defer { unmount(small) }
        try FileManager.default.createDirectory(atPath: small + "/backups", withIntermediateDirectories: false)
        for file in [name, name + ".json"] {
            try FileManager.default.copyItem(atPath: box.backupsFolder + "/" + file, toPath: small + "/backups/" + file)
        }
        try box.write("instances/prod/instance.toml", "[database]\npath = \"database/lending_app_prod.db\"\n[backups]\npath = \"\(small)/backups\"\n")
        let before = try box.sha3(box.databasePath)

        let verify = try box.deployctl(["backups", "verify", "prod", name])
        #expect(verify.status == 74, "\(verify.stdout)\(verify.stderr)")
        #expect(verify.stderr.lowercased().contains("full") || verify.stderr.contains("No space"), "\(verify.stderr)")
        let restore = try box.deployctl(["restore", "prod", name, "--yes"])
        #expect(restore.status == 74, "\(restore.stderr)")
        #expect(try FileManager.default.contentsOfDirectory(atPath: small + "/backups").sorted() == [name, name + ".json"])
        #expect(try box.sha3(box.databasePath) == before)
    }
}
