import Encryption
import Foundation
import Support

/// `deployctl keygen`: new age identity files.
public enum KeyFiles {
    /// Writes a new X25519 identity to `output` as `age-keygen` does (comments with the
    /// creation time and public key, then the key), mode 0600, durably, and never over an
    /// existing file (a key replaced is every backup encrypted to it lost). Returns the public key.
    /// - Throws: `Failure` `keygen.no_file_name` for an empty name, `keygen.file_exists` when
    ///   the file exists (or appears while it is written), `keygen.folder_missing`; the write's
    ///   failures.
    public static func generate(output: String, now: Date) throws -> String {
        guard !output.isEmpty, !output.hasSuffix("/") else {
            throw Failure(.keygenNoFileName, "--output needs a file name, got '\(output)'", hint: "e.g. deployctl keygen --output /etc/deployctl/prod.agekey")
        }
        let path = URL(fileURLWithPath: output, relativeTo: URL(fileURLWithPath: FileManager.default.currentDirectoryPath)).standardizedFileURL.path
        let folder = (path as NSString).deletingLastPathComponent
        var isFolder: ObjCBool = false
        guard FileManager.default.fileExists(atPath: folder, isDirectory: &isFolder), isFolder.boolValue else {
            throw Failure(.keygenFolderMissing, "cannot create \(path): the folder \(folder) does not exist", hint: "create it first (mkdir -m 700 \(folder))")
        }
        var info = stat()
        if lstat(path, &info) == 0 {
            throw Failure(.keygenFileExists, "\(path) exists; keygen never replaces a file (backups encrypted to a replaced key could not be opened again)",
                          hint: "choose a new file name; 'age-keygen -y \(path)' prints the public key of the existing one")
        }
        let identity = try AgeIdentity.generate()
        let text = Data(identity.fileText(created: now).utf8)
        do {
            try DurableFile.write(text, to: path, mode: 0o600, replace: false)
        } catch let failure as Failure where lstat(path, &info) == 0 && FileManager.default.contents(atPath: path) != text {
            // Another file took the name between the check above and the write: never replaced.
            throw Failure(.keygenFileExists, "\(path) exists; keygen never replaces a file (\(failure.message))", hint: "choose a new file name")
        }
        return identity.recipient.description
    }
}
