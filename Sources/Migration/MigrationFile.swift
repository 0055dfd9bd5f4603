import Foundation
import Support

/// One migration file, `NNNN_name.sql`: plain SQL with optional metadata in leading `--` lines:
///
///     -- description: Adds the six cashback tables.
///     -- allow-destructive
///     -- verify: SELECT count(*) = 0 FROM cashback_transaction
public struct MigrationFile: Sendable, Equatable {
    /// The number, e.g. 1 for `0001_cashback_tables.sql`.
    public let id: Int
    /// The name, e.g. `cashback_tables`.
    public let name: String
    public let path: String
    public let sql: String
    /// SHA-256 of the file's bytes.
    public let sha256: String
    public let description: String?
    /// The file allows non-additive statements (the command must allow them too).
    public let allowDestructive: Bool
    /// Queries that must each return a single true value after the migration.
    public let verifyQueries: [String]

    /// The migration's key, `0001_cashback_tables`: its number and name.
    public var key: String { migrationKey(id: id, name: name) }

    /// The file name.
    public var fileName: String { URL(fileURLWithPath: path).lastPathComponent }

    /// Reads and parses a migration file.
    /// - Throws: `Failure` `.usage` for a bad name or unreadable file.
    public init(path: String) throws {
        let file = URL(fileURLWithPath: path).lastPathComponent
        guard let (id, name) = Self.parseName(file) else {
            throw Failure(.usage, "migration file \(path) is not named NNNN_name.sql", hint: "rename it, e.g. 0002_add_index.sql")
        }
        guard let data = FileManager.default.contents(atPath: path), let text = String(data: data, encoding: .utf8) else {
            throw Failure(.usage, "migration file \(path) cannot be read as UTF-8 text")
        }
        self.id = id
        self.name = name
        self.path = path
        self.sql = text
        self.sha256 = SHA256.hex(of: data)
        var description: String?
        var allow = false
        var verify = [String]()
        for line in text.split(separator: "\n") {
            let trimmed = line.trimmingCharacters(in: .whitespaces)
            if trimmed.isEmpty { continue }
            guard trimmed.hasPrefix("--") else { break }
            let body = trimmed.dropFirst(2).trimmingCharacters(in: .whitespaces)
            if body.lowercased().hasPrefix("description:") {
                description = body.dropFirst("description:".count).trimmingCharacters(in: .whitespaces)
            } else if body.lowercased() == "allow-destructive" {
                allow = true
            } else if body.lowercased().hasPrefix("verify:") {
                verify.append(body.dropFirst("verify:".count).trimmingCharacters(in: .whitespaces))
            }
        }
        self.description = description
        self.allowDestructive = allow
        self.verifyQueries = verify
    }

    static func parseName(_ file: String) -> (Int, String)? {
        guard file.hasSuffix(".sql"), file.count > 9 else { return nil }
        let digits = file.prefix(4)
        guard digits.allSatisfy(\.isNumber), file.dropFirst(4).first == "_", let id = Int(digits) else { return nil }
        let name = String(file.dropFirst(5).dropLast(4))
        guard !name.isEmpty, name.unicodeScalars.allSatisfy({ ($0 >= "a" && $0 <= "z") || ($0 >= "0" && $0 <= "9") || $0 == "_" }) else { return nil }
        return (id, name)
    }

    /// The names of the tables `sql` creates (`CREATE [VIRTUAL] TABLE [IF NOT EXISTS] name`),
    /// read from the text: enough to tell whether a database belongs to these migrations.
    public static func createdTables(in sql: String) -> Set<String> {
        let pattern = #"(?i)\bCREATE\s+(?:VIRTUAL\s+)?TABLE\s+(?:IF\s+NOT\s+EXISTS\s+)?(?:main\s*\.\s*)?["`\[]?([A-Za-z_][A-Za-z0-9_$]*)"#
        guard let regex = try? NSRegularExpression(pattern: pattern) else { return [] }
        let range = NSRange(sql.startIndex..., in: sql)
        return Set(regex.matches(in: sql, range: range).compactMap { Range($0.range(at: 1), in: sql).map { String(sql[$0]) } })
    }

    /// Every migration in `folder`, in order. A missing or empty folder has none.
    /// - Throws: `Failure` `.usage` for duplicate numbers or a badly named `.sql` file.
    public static func loadAll(folder: String) throws -> [MigrationFile] {
        let names = ((try? FileManager.default.contentsOfDirectory(atPath: folder)) ?? []).filter { $0.hasSuffix(".sql") }.sorted()
        let files = try names.map { try MigrationFile(path: folder + "/" + $0) }
        var seen = [Int: String]()
        for file in files {
            if let other = seen[file.id] {
                throw Failure(.usage, "two migrations share the number \(String(format: "%04d", file.id)): \(other) and \(file.fileName)",
                              hint: "renumber one of them in \(folder)")
            }
            seen[file.id] = file.fileName
        }
        return files
    }
}

/// `NNNN_name`, the key by which plans, history and reports name a migration.
func migrationKey(id: Int, name: String) -> String {
    String(format: "%04d_", id) + name
}
