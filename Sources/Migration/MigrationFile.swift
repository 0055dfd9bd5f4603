import Foundation
import SQLite
import Support

/// One migration: `NNNN_name.sql` (deployctl's own), golang-migrate's `NNNN_name.up.sql` with an
/// optional `NNNN_name.down.sql`, dbmate's `NNNN_name.sql` with `-- migrate:up` and
/// `-- migrate:down` sections, or Flyway's `V<n>__name.sql` with an optional `U<n>__name.sql`.
/// Plain SQL with optional metadata in leading `--` lines:
///
///     -- description: Adds the six cashback tables.
///     -- allow-destructive
///     -- online
///     -- verify: SELECT count(*) = 0 FROM cashback_transaction
///
/// A whole-file `BEGIN;` … `COMMIT;` wrapper, as ORMs print their SQL, is removed with a note:
/// deployctl runs every migration in its own transaction.
public struct MigrationFile: Sendable, Equatable {
    /// The number, e.g. 1 for `0001_cashback_tables.sql` (up to 14 digits: timestamps too).
    public let id: Int
    /// The name, e.g. `cashback_tables`.
    public let name: String
    public let path: String
    /// The SQL that migrates up.
    public let sql: String
    /// The SQL that undoes it, when the file (or its down file) has one.
    public let downSQL: String?
    /// SHA-256 of the file's bytes.
    public let sha256: String
    public let description: String?
    /// The file allows non-additive statements (the command must allow them too).
    public let allowDestructive: Bool
    /// The file asks for an online rebuild (`-- online`): refused when it cannot run online.
    public let online: Bool
    /// Queries that must each return a single true value after the migration.
    public let verifyQueries: [String]
    /// `deployctl`, `golang-migrate`, `dbmate` or `flyway`.
    public let format: String
    /// What deployctl did with the file as written (a transaction wrapper removed, …).
    public let notes: [String]

    /// The migration's key, `0001_cashback_tables`: its number and name.
    public var key: String { migrationKey(id: id, name: name) }

    /// The file name.
    public var fileName: String { URL(fileURLWithPath: path).lastPathComponent }

    /// Reads and parses a migration file (and, for golang-migrate and Flyway, its down file).
    /// - Throws: `Failure` `migration.bad_name`, `migration.unreadable` or
    ///   `migration.directive_misplaced`.
    public init(path: String) throws {
        let file = URL(fileURLWithPath: path).lastPathComponent
        guard let parsed = Self.parseName(file) else { throw Self.badName(file, path: path) }
        guard let data = FileManager.default.contents(atPath: path), let text = String(data: data, encoding: .utf8) else {
            throw Failure(.migrationUnreadable, "migration file \(path) cannot be read as UTF-8 text")
        }
        self.id = parsed.id
        self.name = parsed.name
        self.path = path
        // The checksum covers a separate down file too: the text an undo may run.
        var checked = data
        if let downName = parsed.downFile, let downData = FileManager.default.contents(atPath: (path as NSString).deletingLastPathComponent + "/" + downName) {
            checked += Data("\0down\0".utf8) + downData
        }
        self.sha256 = try SHA256.hex(of: checked)
        var up = text
        var down: String?
        var format = parsed.format
        var notes = [String]()
        if let downName = parsed.downFile {
            let downPath = (path as NSString).deletingLastPathComponent + "/" + downName
            if let downData = FileManager.default.contents(atPath: downPath) {
                down = String(decoding: downData, as: UTF8.self)
            }
        } else if let (upPart, downPart) = Self.dbmateSections(text) {
            format = "dbmate"
            up = upPart
            down = downPart
        }
        if let unwrapped = Self.unwrapped(up) {
            up = unwrapped
            notes.append("its whole-file BEGIN … COMMIT wrapper was removed: deployctl runs every migration in its own transaction")
        }
        if let text = down, let unwrapped = Self.unwrapped(text) { down = unwrapped }
        self.sql = up
        self.downSQL = down.flatMap { $0.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty ? nil : $0 }
        self.format = format
        self.notes = notes
        let header = try Header(text, path: path)
        self.description = header.description
        self.allowDestructive = header.allowDestructive
        self.online = header.online
        self.verifyQueries = header.verifyQueries
    }

    /// Why a `.sql` file's name is in no format deployctl reads (`migration.bad_name`).
    static func badName(_ file: String, path: String) -> Failure {
        if file.hasPrefix("R__") {
            return Failure(.migrationBadName, "migration file \(path) is a Flyway repeatable migration (R__): deployctl applies each migration once, in order",
                           hint: "give it a number (V<n>__name.sql or NNNN_name.sql), or keep it out of the migrations folder")
        }
        if file.range(of: #"^V\d+([._]\d+)+__"#, options: .regularExpression) != nil {
            return Failure(.migrationBadName, "migration file \(path) has a dotted Flyway version: deployctl numbers migrations with whole numbers",
                           hint: "rename it with a whole number, e.g. V21__name.sql for V2.1__name.sql, keeping the order")
        }
        return Failure(.migrationBadName, "migration file \(path) is not named NNNN_name.sql (or NNNN_name.up.sql, V<n>__name.sql)",
                       hint: "rename it, e.g. 0002_add_index.sql")
    }

    /// The directives of a file's leading `--` lines.
    struct Header {
        var description: String?
        var allowDestructive = false
        var online = false
        var verifyQueries = [String]()

        /// Reads the comment lines at the top of `text`.
        /// - Throws: `Failure` `migration.directive_misplaced` for a directive below the first
        ///   statement.
        init(_ text: String, path: String) throws {
            var inHeader = true
            for (number, line) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
                let trimmed = line.trimmingCharacters(in: .whitespaces)
                if trimmed.isEmpty { continue }
                if inHeader && !trimmed.hasPrefix("--") { inHeader = false }
                guard inHeader else {
                    // A directive below the first statement would be silently ignored: a check the
                    // operator wrote that never runs. Refused, naming the line.
                    if let directive = MigrationFile.directive(trimmed) {
                        throw Failure(.migrationDirectiveMisplaced, "migration file \(path) line \(number + 1): '-- \(directive)' comes after the first statement; deployctl reads directives only from the comment lines at the top of the file, so it would be ignored",
                                      hint: "move that line above the first statement of \((path as NSString).lastPathComponent)")
                    }
                    continue
                }
                let body = trimmed.dropFirst(2).trimmingCharacters(in: .whitespaces)
                if body.lowercased().hasPrefix("description:") {
                    description = body.dropFirst("description:".count).trimmingCharacters(in: .whitespaces)
                } else if body.lowercased() == "allow-destructive" {
                    allowDestructive = true
                } else if body.lowercased() == "online" {
                    online = true
                } else if body.lowercased().hasPrefix("verify:") {
                    verifyQueries.append(body.dropFirst("verify:".count).trimmingCharacters(in: .whitespaces))
                }
            }
        }
    }

    /// The directive a comment line holds (`verify:`, `allow-destructive`, `online`,
    /// `description:`), or nil.
    static func directive(_ line: String) -> String? {
        guard line.hasPrefix("--") else { return nil }
        let body = line.dropFirst(2).trimmingCharacters(in: .whitespaces)
        let lower = body.lowercased()
        if lower.hasPrefix("verify:") { return "verify:" }
        if lower.hasPrefix("description:") { return "description:" }
        if lower == "allow-destructive" || lower == "online" { return lower }
        return nil
    }

    /// A file name's number, name, format and the down file that goes with it, if any; nil for a
    /// name in no known format. Down files themselves (`.down.sql`, `U<n>__`) are not migrations.
    static func parseName(_ file: String) -> (id: Int, name: String, format: String, downFile: String?)? {
        guard file.hasSuffix(".sql") else { return nil }
        let validName = { (name: Substring) in
            !name.isEmpty && name.unicodeScalars.allSatisfy { ($0 >= "a" && $0 <= "z") || ($0 >= "A" && $0 <= "Z") || ($0 >= "0" && $0 <= "9") || $0 == "_" || $0 == "-" }
        }
        if file.hasPrefix("V"), let separator = file.range(of: "__") {
            let digits = file[file.index(after: file.startIndex)..<separator.lowerBound]
            let name = file[separator.upperBound...].dropLast(4)
            guard !digits.isEmpty, digits.count <= 14, digits.allSatisfy(\.isNumber), let id = Int(digits), validName(name) else { return nil }
            return (id, String(name), "flyway", "U\(digits)__\(name).sql")
        }
        var stem = file.dropLast(4)
        var format = "deployctl"
        var downFile: String?
        if stem.hasSuffix(".up") {
            stem = stem.dropLast(3)
            format = "golang-migrate"
            downFile = stem + ".down.sql"
        }
        guard let underscore = stem.firstIndex(of: "_") else { return nil }
        let digits = stem[..<underscore]
        let name = stem[stem.index(after: underscore)...]
        guard !digits.isEmpty, digits.count <= 14, digits.allSatisfy(\.isNumber), let id = Int(digits), validName(name) else { return nil }
        return (id, String(name), format, downFile)
    }

    /// Whether a file name is a down file that belongs to another migration file.
    static func isDownFile(_ file: String) -> Bool {
        file.hasSuffix(".down.sql") || (file.hasPrefix("U") && file.contains("__") && file.hasSuffix(".sql"))
    }

    /// dbmate's `-- migrate:up` / `-- migrate:down` sections, when the file has them.
    static func dbmateSections(_ text: String) -> (up: String, down: String?)? {
        var up = [Substring]()
        var down = [Substring]()
        var section = 0
        for line in text.split(separator: "\n", omittingEmptySubsequences: false) {
            let marker = line.trimmingCharacters(in: .whitespaces).lowercased()
            if marker.hasPrefix("-- migrate:up") { section = 1; continue }
            if marker.hasPrefix("-- migrate:down") { section = 2; continue }
            if section == 1 { up.append(line) } else if section == 2 { down.append(line) }
        }
        guard section > 0 else { return nil }
        return (up.joined(separator: "\n"), down.isEmpty ? nil : down.joined(separator: "\n"))
    }

    /// The SQL without a whole-file `BEGIN` … `COMMIT` (or `END`) wrapper; nil when it has none.
    static func unwrapped(_ sql: String) -> String? {
        guard let statements = try? Connection.split(sql), statements.count >= 2 else { return nil }
        let words = { (statement: String) in
            let code = statement.split(separator: "\n").filter { !$0.trimmingCharacters(in: .whitespaces).hasPrefix("--") }.joined(separator: "\n")
            return Connection.normalizeSQL(code).uppercased().trimmingCharacters(in: CharacterSet(charactersIn: "; "))
        }
        let begin = words(statements.first!)
        let end = words(statements.last!)
        guard ["BEGIN", "BEGIN TRANSACTION", "BEGIN DEFERRED", "BEGIN IMMEDIATE", "BEGIN EXCLUSIVE",
               "BEGIN DEFERRED TRANSACTION", "BEGIN IMMEDIATE TRANSACTION", "BEGIN EXCLUSIVE TRANSACTION"].contains(begin),
              ["COMMIT", "END", "COMMIT TRANSACTION", "END TRANSACTION"].contains(end) else { return nil }
        return statements.dropFirst().dropLast().joined(separator: "\n")
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
    /// - Throws: `Failure` `migration.duplicate_number`, or as `init(path:)`.
    public static func loadAll(folder: String) throws -> [MigrationFile] {
        let names = ((try? FileManager.default.contentsOfDirectory(atPath: folder)) ?? [])
            .filter { $0.hasSuffix(".sql") && !isDownFile($0) }.sorted()
        let files = try names.map { try MigrationFile(path: folder + "/" + $0) }.sorted { $0.id < $1.id }
        var seen = [Int: String]()
        for file in files {
            if let other = seen[file.id] {
                throw Failure(.migrationDuplicateNumber, "two migrations share the number \(migrationKey(id: file.id, name: "").dropLast()): \(other) and \(file.fileName)",
                              hint: "renumber one of them in \(folder)")
            }
            seen[file.id] = file.fileName
        }
        return files
    }
}

/// `NNNN_name`, the key by which plans, history and reports name a migration.
func migrationKey(id: Int, name: String) -> String {
    let digits = String(id)
    return String(repeating: "0", count: max(0, 4 - digits.count)) + digits + "_" + name
}
