import Foundation
import Testing

/// docs/architecture.md, Package.swift and the `import` lines agree (issue 24, item 9): every
/// module imports only what its target depends on, and the page lists each module with exactly
/// those dependencies.
@Suite("architecture")
struct ArchitectureTests {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path
    /// What any module may import: the platform, not the project.
    static let platform: Set<String> = ["Foundation", "FoundationXML", "Glibc", "Dispatch", "Synchronization", "FoundationEssentials"]

    /// Each target of Package.swift with the targets and products it depends on.
    static func targets() throws -> [String: Set<String>] {
        let text = try String(contentsOfFile: root + "/Package.swift", encoding: .utf8)
        var targets = [String: Set<String>]()
        let target = try NSRegularExpression(pattern: #"\.(?:target|executableTarget)\(name: "(\w+)", dependencies: \[(.*?)\]"#,
                                             options: .dotMatchesLineSeparators)
        let name = try NSRegularExpression(pattern: #""(\w+)""#)
        for match in target.matches(in: text, range: NSRange(text.startIndex..., in: text)) {
            let module = String(text[Range(match.range(at: 1), in: text)!])
            let list = String(text[Range(match.range(at: 2), in: text)!])
            var dependencies = Set<String>()
            for dependency in name.matches(in: list, range: NSRange(list.startIndex..., in: list)) {
                let found = String(list[Range(dependency.range(at: 1), in: list)!])
                // `.product(name: "ArgumentParser", package: "swift-argument-parser")`: the module is the product.
                if found != "swift-argument-parser" { dependencies.insert(found) }
            }
            targets[module] = dependencies
        }
        return targets
    }

    /// The modules each Swift module's sources import.
    static func imports(of module: String) throws -> Set<String> {
        let folder = root + "/Sources/" + module
        let files = FileManager.default.enumerator(atPath: folder)!.compactMap { $0 as? String }.filter { $0.hasSuffix(".swift") }
        var found = Set<String>()
        let line = try NSRegularExpression(pattern: #"^(?:@testable |@_implementationOnly )?import (\w+)"#, options: .anchorsMatchLines)
        for file in files {
            let text = try String(contentsOfFile: folder + "/" + file, encoding: .utf8)
            for match in line.matches(in: text, range: NSRange(text.startIndex..., in: text)) {
                found.insert(String(text[Range(match.range(at: 1), in: text)!]))
            }
        }
        return found.subtracting(platform)
    }

    @Test("each module imports only the targets Package.swift lets it depend on")
    func importsMatchPackage() throws {
        let targets = try Self.targets()
        #expect(targets.count >= 9, "\(targets.keys.sorted())")
        for (module, allowed) in targets.sorted(by: { $0.key < $1.key }) {
            let imported = try Self.imports(of: module)
            #expect(imported.isSubset(of: allowed), "\(module) imports \(imported.subtracting(allowed).sorted()) without depending on them")
        }
    }

    @Test("docs/architecture.md lists every module with exactly its dependencies")
    func documentedMap() throws {
        let targets = try Self.targets()
        let page = try String(contentsOfFile: Self.root + "/docs/architecture.md", encoding: .utf8)
        // The table of the "Modules" section only.
        let section = try #require(page.range(of: "\n## Modules\n"))
        let text = String(page[section.upperBound...].prefix { _ in true }.split(separator: "\n## ", maxSplits: 1).first ?? "")
        let row = try NSRegularExpression(pattern: #"^\| `(\w+)` \| [^|]+ \| ([^|]*) \|$"#, options: .anchorsMatchLines)
        var documented = [String: Set<String>]()
        for match in row.matches(in: text, range: NSRange(text.startIndex..., in: text)) {
            let module = String(text[Range(match.range(at: 1), in: text)!])
            let cell = String(text[Range(match.range(at: 2), in: text)!])
            documented[module] = Set(cell.split(separator: ",").map { $0.trimmingCharacters(in: CharacterSet(charactersIn: " `")) }.filter { !$0.isEmpty && $0 != "—" })
        }
        for (module, dependencies) in targets.sorted(by: { $0.key < $1.key }) {
            #expect(documented[module] == dependencies, "docs/architecture.md: \(module) may import \(dependencies.sorted()), the page says \(documented[module].map { $0.sorted() } ?? [])")
        }
        for module in documented.keys where targets[module] == nil {
            Issue.record("docs/architecture.md lists \(module), which Package.swift does not have")
        }
    }
}
