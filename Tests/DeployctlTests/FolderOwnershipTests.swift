import Foundation
import Support
import Testing

/// `DurableFile.createFolder`: a new folder takes its parent's owner and mode, except under a
/// world-writable parent (/tmp), where it is private to its creator.
@Suite("folder ownership")
struct FolderOwnershipTests {
    static func info(_ path: String) -> stat {
        var info = stat()
        _ = stat(path, &info)
        return info
    }

    @Test("missing folders are made one by one, each with its parent's owner, group and mode; an existing folder is left as it is; a file in the way is refused with 73",
          .enabled(if: geteuid() == 0, "giving a folder to another user needs root"))
    func inheritsParent() throws {
        let box = try Sandbox()
        let parent = box.path("app")
        try FileManager.default.createDirectory(atPath: parent, withIntermediateDirectories: false)
        #expect(chown(parent, 4321, 4322) == 0 && chmod(parent, 0o2750) == 0)
        try DurableFile.createFolder(parent + "/a/b/c")
        for path in [parent + "/a", parent + "/a/b", parent + "/a/b/c"] {
            let made = Self.info(path)
            #expect(made.st_uid == 4321 && made.st_gid == 4322 && made.st_mode & 0o7777 == 0o2750, "\(path): \(made.st_uid):\(made.st_gid) \(String(made.st_mode & 0o7777, radix: 8))")
        }
        // Existing: untouched.
        #expect(chmod(parent + "/a/b/c", 0o700) == 0)
        try DurableFile.createFolder(parent + "/a/b/c")
        #expect(Self.info(parent + "/a/b/c").st_mode & 0o7777 == 0o700)
        // A file in the way.
        try "x".write(toFile: parent + "/file", atomically: true, encoding: .utf8)
        do {
            try DurableFile.createFolder(parent + "/file/sub", called: "backups folder")
            Issue.record("a folder was made under a file")
        } catch let failure as Failure {
            #expect(failure.kind == .cannotCreate)
            #expect(failure.message == "cannot create backups folder \(parent)/file: a file of that name is in the way", "\(failure.message)")
        }
    }

    @Test("under a world-writable parent (/tmp, mode 1777) the new folder is its creator's, 0700: never world-writable")
    func worldWritableParent() throws {
        let box = try Sandbox()
        let shared = box.path("shared")
        try FileManager.default.createDirectory(atPath: shared, withIntermediateDirectories: false)
        #expect(chmod(shared, 0o1777) == 0)
        if geteuid() == 0 { #expect(chown(shared, 4321, 4322) == 0) }
        try DurableFile.createFolder(shared + "/backups")
        let made = Self.info(shared + "/backups")
        #expect(made.st_mode & 0o7777 == 0o700, "\(String(made.st_mode & 0o7777, radix: 8))")
        #expect(made.st_uid == geteuid())
    }
}
