import Foundation
import Support

/// A value from a config file, with the line it was written on.
struct ConfigValue: Sendable {
    enum Kind: Sendable {
        case string(String)
        case integer(Int)
        case bool(Bool)
        case array([ConfigValue])
    }
    let kind: Kind
    let line: Int
}

/// The TOML that deployctl's configs use, parsed with line numbers kept, so every error names
/// file, line and key: `[table]` headers, `key = value` with basic or literal strings, integers,
/// booleans and (possibly multi-line) arrays, and `#` comments. Inline tables, dates and floats
/// are not used by any config and are rejected with a clear message.
struct TOMLSubset {
    /// Values by dotted key (`database.path`).
    private(set) var values: [String: ConfigValue] = [:]
    let file: String

    /// Parses `text` read from `file`.
    /// - Throws: `Failure` `.usage` naming file and line.
    init(text: String, file: String) throws {
        self.file = file
        var table = ""
        var arrayCounts = [String: Int]()
        var lines = text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)[...]
        var number = 0
        while let raw = lines.popFirst() {
            number += 1
            let startLine = number
            var line = Self.stripComment(raw).trimmingCharacters(in: .whitespaces)
            if line.isEmpty { continue }
            if line.hasPrefix("[[") {
                // An array of tables: its Nth `[[name]]` holds the keys `name.N.key`.
                let name = line.hasSuffix("]]") ? String(line.dropFirst(2).dropLast(2)).trimmingCharacters(in: .whitespaces) : ""
                guard Self.isBareKey(name) else { throw Self.error(file, startLine, "malformed table header '\(line)'") }
                table = "\(name).\(arrayCounts[name, default: 0])"
                arrayCounts[name, default: 0] += 1
                continue
            }
            if line.hasPrefix("[") {
                guard line.hasSuffix("]") else {
                    throw Self.error(file, startLine, "malformed table header '\(line)'")
                }
                table = String(line.dropFirst().dropLast()).trimmingCharacters(in: .whitespaces)
                guard Self.isBareKey(table.replacingOccurrences(of: ".", with: "")) else {
                    throw Self.error(file, startLine, "malformed table name '\(table)'")
                }
                continue
            }
            guard let equals = line.firstIndex(of: "=") else {
                throw Self.error(file, startLine, "expected 'key = value', found '\(line)'")
            }
            let key = line[..<equals].trimmingCharacters(in: .whitespaces)
            guard Self.isBareKey(key) else { throw Self.error(file, startLine, "malformed key '\(key)'") }
            let fullKey = table.isEmpty ? key : table + "." + key
            // Multi-line arrays: keep reading until the brackets balance.
            while Self.bracketDepth(String(line[line.index(after: equals)...])) > 0, let next = lines.popFirst() {
                number += 1
                line += " " + Self.stripComment(next).trimmingCharacters(in: .whitespaces)
            }
            var rest = Substring(line[line.index(after: equals)...].trimmingCharacters(in: .whitespaces))
            let value: ConfigValue
            do {
                value = try Self.parseValue(&rest, line: startLine)
            } catch let message as ParseMessage {
                throw Self.error(file, startLine, "key '\(fullKey)': \(message.text)")
            }
            guard rest.trimmingCharacters(in: .whitespaces).isEmpty else {
                throw Self.error(file, startLine, "key '\(fullKey)': unexpected text after the value: '\(rest)'")
            }
            guard values[fullKey] == nil else {
                throw Self.error(file, startLine, "key '\(fullKey)' is defined twice (first on line \(values[fullKey]!.line))")
            }
            values[fullKey] = value
        }
    }

    struct ParseMessage: Error { let text: String }

    static func error(_ file: String, _ line: Int, _ message: String) -> Failure {
        Failure(.configInvalid, "\(file):\(line): \(message)", hint: "fix the config file")
    }

    static func isBareKey(_ key: String) -> Bool {
        !key.isEmpty && key.unicodeScalars.allSatisfy {
            ($0 >= "a" && $0 <= "z") || ($0 >= "A" && $0 <= "Z") || ($0 >= "0" && $0 <= "9") || $0 == "_" || $0 == "-"
        }
    }

    /// Removes a `#` comment that is not inside a string.
    static func stripComment(_ line: String) -> String {
        var quote: Character?
        var escaped = false
        for (offset, ch) in line.enumerated() {
            if let q = quote {
                if escaped { escaped = false; continue }
                if ch == "\\" && q == "\"" { escaped = true; continue }
                if ch == q { quote = nil }
            } else if ch == "\"" || ch == "'" {
                quote = ch
            } else if ch == "#" {
                return String(line.prefix(offset))
            }
        }
        return line
    }

    static func bracketDepth(_ text: String) -> Int {
        var depth = 0
        var quote: Character?
        for ch in text {
            if let q = quote { if ch == q { quote = nil } } else if ch == "\"" || ch == "'" { quote = ch } else if ch == "[" { depth += 1 } else if ch == "]" { depth -= 1 }
        }
        return depth
    }

    static func parseValue(_ text: inout Substring, line: Int) throws -> ConfigValue {
        text = text.drop(while: { $0 == " " || $0 == "\t" })
        guard let first = text.first else { throw ParseMessage(text: "missing value") }
        switch first {
        case "\"":
            text = text.dropFirst()
            var out = ""
            while let ch = text.popFirst() {
                if ch == "\"" { return ConfigValue(kind: .string(out), line: line) }
                if ch == "\\" {
                    guard let next = text.popFirst() else { break }
                    switch next {
                    case "n": out.append("\n")
                    case "t": out.append("\t")
                    case "\\": out.append("\\")
                    case "\"": out.append("\"")
                    default: throw ParseMessage(text: "unsupported escape '\\\(next)' in a string")
                    }
                } else {
                    out.append(ch)
                }
            }
            throw ParseMessage(text: "unterminated string")
        case "'":
            text = text.dropFirst()
            guard let end = text.firstIndex(of: "'") else { throw ParseMessage(text: "unterminated string") }
            let value = String(text[..<end])
            text = text[text.index(after: end)...]
            return ConfigValue(kind: .string(value), line: line)
        case "[":
            text = text.dropFirst()
            var items = [ConfigValue]()
            while true {
                text = text.drop(while: { $0 == " " || $0 == "\t" || $0 == "," })
                if text.first == "]" { text = text.dropFirst(); return ConfigValue(kind: .array(items), line: line) }
                if text.isEmpty { throw ParseMessage(text: "unterminated array") }
                items.append(try parseValue(&text, line: line))
                text = text.drop(while: { $0 == " " || $0 == "\t" })
                guard text.first == "," || text.first == "]" else { throw ParseMessage(text: "expected ',' or ']' in an array") }
            }
        default:
            let token = text.prefix(while: { $0 != " " && $0 != "\t" && $0 != "," && $0 != "]" })
            text = text.dropFirst(token.count)
            if token == "true" { return ConfigValue(kind: .bool(true), line: line) }
            if token == "false" { return ConfigValue(kind: .bool(false), line: line) }
            if let number = Int(token.replacingOccurrences(of: "_", with: "")) { return ConfigValue(kind: .integer(number), line: line) }
            throw ParseMessage(text: "'\(token)' is not a string, integer, boolean or array (strings need quotes)")
        }
    }

    // MARK: Typed access

    /// Throws for keys outside `allowed`, naming the line: a typo is never silently ignored.
    func rejectUnknownKeys(allowed: Set<String>) throws {
        for (key, value) in values.sorted(by: { $0.value.line < $1.value.line }) where !allowed.contains(key) {
            throw Self.error(file, value.line, "unknown key '\(key)' (known keys: \(allowed.sorted().joined(separator: ", ")))")
        }
    }

    func string(_ key: String) throws -> String? {
        guard let value = values[key] else { return nil }
        guard case .string(let s) = value.kind else { throw Self.error(file, value.line, "key '\(key)': expected a quoted string") }
        return s
    }

    func int(_ key: String, range: ClosedRange<Int>) throws -> Int? {
        guard let value = values[key] else { return nil }
        guard case .integer(let n) = value.kind else { throw Self.error(file, value.line, "key '\(key)': expected an integer") }
        guard range.contains(n) else {
            throw Self.error(file, value.line, "key '\(key)': \(n) is out of range \(range.lowerBound)…\(range.upperBound)")
        }
        return n
    }

    func bool(_ key: String) throws -> Bool? {
        guard let value = values[key] else { return nil }
        guard case .bool(let b) = value.kind else { throw Self.error(file, value.line, "key '\(key)': expected true or false") }
        return b
    }

    func strings(_ key: String) throws -> [String]? {
        guard let value = values[key] else { return nil }
        guard case .array(let items) = value.kind else { throw Self.error(file, value.line, "key '\(key)': expected an array of strings") }
        return try items.map { item in
            guard case .string(let s) = item.kind else { throw Self.error(file, value.line, "key '\(key)': expected an array of strings") }
            return s
        }
    }

    func line(of key: String) -> Int? { values[key]?.line }

    /// How many `[[name]]` tables the file has (their keys are `name.0.key`, `name.1.key`, …).
    func arrayCount(_ name: String) -> Int {
        var count = 0
        while values.keys.contains(where: { $0.hasPrefix("\(name).\(count).") }) { count += 1 }
        return count
    }
}
