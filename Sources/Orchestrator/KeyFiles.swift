import Encryption
import Foundation
import Support

/// `deployctl keygen`: new age identity files.
public enum KeyFiles {
    /// Writes a new X25519 identity to `output` as `age-keygen` does (comments with the
    /// creation time and public key, then the key), mode 0600, durably, and never over an
    /// existing file (a key replaced is every backup encrypted to it lost). Returns the public key.
    /// - Throws: `Failure` `.cannotCreate` when the file exists or its folder refuses it, `.io`.
    public static func generate(output: String, now: Date) throws -> String {
        let path = URL(fileURLWithPath: output, relativeTo: URL(fileURLWithPath: FileManager.default.currentDirectoryPath)).standardizedFileURL.path
        var info = stat()
        if lstat(path, &info) == 0 {
            throw Failure(.cannotCreate, "\(path) exists; keygen never replaces a file (backups encrypted to a replaced key could not be opened again)",
                          hint: "choose a new file name; 'age-keygen -y \(path)' prints the public key of the existing one")
        }
        let identity = try AgeIdentity.generate()
        do {
            try DurableFile.write(Data(identity.fileText(created: now).utf8), to: path, mode: 0o600, replace: false)
        } catch let failure as Failure where failure.message.contains("exists") {
            throw Failure(.cannotCreate, failure.message, hint: "choose a new file name")
        }
        return identity.recipient.description
    }
}
