import Foundation
#if canImport(FoundationXML)
import FoundationXML
#endif

/// A small XML tree read with a real parser (libxml2 through Foundation's `XMLParser`): an S3
/// answer that is not well-formed XML is an error, never an empty result.
struct XMLNode: Sendable {
    let name: String
    var children: [XMLNode] = []
    var text = ""

    /// The first child named `name`.
    func child(_ name: String) -> XMLNode? { children.first { $0.name == name } }
    func all(_ name: String) -> [XMLNode] { children.filter { $0.name == name } }
    /// The text of the first child named `name`.
    func value(_ name: String) -> String? { child(name)?.text }

    /// Parses a document; nil when it is not well-formed XML (HTML, garbage, truncated) or
    /// nests deeper than S3's answers do.
    static func parse(_ bytes: [UInt8]) -> XMLNode? {
        guard !bytes.isEmpty else { return nil }
        let builder = Builder()
        let parser = XMLParser(data: Data(bytes))
        parser.shouldResolveExternalEntities = false
        parser.delegate = builder
        guard parser.parse(), !builder.failed, builder.stack.count == 1, let root = builder.stack[0].children.first else { return nil }
        return root
    }

    private final class Builder: NSObject, XMLParserDelegate {
        var stack = [XMLNode(name: "")]
        var failed = false

        func parser(_ parser: XMLParser, didStartElement elementName: String, namespaceURI: String?, qualifiedName: String?,
                    attributes: [String: String] = [:]) {
            guard stack.count < 16 else { failed = true; parser.abortParsing(); return }
            stack.append(XMLNode(name: elementName))
        }

        func parser(_ parser: XMLParser, didEndElement elementName: String, namespaceURI: String?, qualifiedName: String?) {
            guard stack.count > 1 else { failed = true; return }
            let node = stack.removeLast()
            stack[stack.count - 1].children.append(node)
        }

        func parser(_ parser: XMLParser, foundCharacters string: String) {
            stack[stack.count - 1].text += string
        }

        func parser(_ parser: XMLParser, foundCDATA CDATABlock: Data) {
            stack[stack.count - 1].text += String(decoding: CDATABlock, as: UTF8.self)
        }

        func parser(_ parser: XMLParser, parseErrorOccurred parseError: Error) { failed = true }
    }
}
