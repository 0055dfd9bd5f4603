import Foundation
@testable import Offsite
import Testing

/// AWS's SigV4 test suite as botocore ships it (`tests/unit/auth/aws4_testsuite` in its source
/// distribution; the wheel does not carry it). `.ci/run` unpacks it to
/// `~/.cache/deployctl/aws4_testsuite` from `pip download --no-binary :all: botocore`; nothing of
/// it is copied into this repository. `DEPLOYCTL_AWS4_TESTSUITE` points elsewhere.
@Suite("SigV4 canonicalisation against AWS's test suite (botocore's aws4_testsuite)")
struct SigV4SuiteTests {
    static let folder: String? = {
        let environment = ProcessInfo.processInfo.environment
        let path = environment["DEPLOYCTL_AWS4_TESTSUITE"] ?? ((environment["HOME"] ?? NSHomeDirectory()) + "/.cache/deployctl/aws4_testsuite")
        return FileManager.default.fileExists(atPath: path + "/get-vanilla/get-vanilla.req") ? path : nil
    }()

    /// Vectors that do not apply to S3: it never normalises paths (`normalize-path/*`), and the
    /// suite signs the session token for `post-sts-header-after` only after the signature.
    static let notForS3 = ["normalize-path", "post-sts-header-after"]

    /// Every vector folder (those holding `<name>.req`), relative to the suite.
    static var vectors: [String] {
        guard let folder, let walker = FileManager.default.enumerator(atPath: folder) else { return [] }
        return walker.compactMap { $0 as? String }.filter { path in
            path.hasSuffix(".req") && (path as NSString).deletingLastPathComponent.hasSuffix(((path as NSString).lastPathComponent as NSString).deletingPathExtension)
        }.map { ($0 as NSString).deletingLastPathComponent }.filter { vector in !notForS3.contains { vector.hasPrefix($0) || vector.hasSuffix("/" + $0) } }.sorted()
    }

    @Test("the suite is there (in CI, where .ci/run fetches it)")
    func present() {
        if ProcessInfo.processInfo.environment["CI"] != nil {
            #expect(Self.folder != nil, "aws4_testsuite is missing: .ci/run should have unpacked it to ~/.cache/deployctl/aws4_testsuite")
        }
        if Self.folder != nil { #expect(Self.vectors.count >= 20, "\(Self.vectors)") }
    }

    @Test("each vector's canonical request, string to sign and signature", .enabled(if: folder != nil), arguments: vectors)
    func vector(_ name: String) throws {
        let base = Self.folder! + "/" + name + "/" + (name as NSString).lastPathComponent
        let read = { (suffix: String) in try String(contentsOfFile: base + suffix, encoding: .utf8) }
        let request = try read(".req")
        let (head, body) = request.range(of: "\n\n").map { (String(request[..<$0.lowerBound]), String(request[$0.upperBound...])) } ?? (request, "")
        var lines = head.components(separatedBy: "\n")
        let first = lines.removeFirst()
        let method = String(first.prefix { $0 != " " })
        let target = String(first.dropFirst(method.count + 1).dropLast(" HTTP/1.1".count))
        var headers = [(String, String)]()
        for line in lines {
            if line.first == " " || line.first == "\t", !headers.isEmpty {
                headers[headers.count - 1].1 += "\n" + line
            } else if let colon = line.firstIndex(of: ":") {
                headers.append((String(line[..<colon]), String(line[line.index(after: colon)...])))
            }
        }
        // A vector signed with temporary credentials: the signer adds their token header (as
        // SigV4.sign does), the value given in the signed request (.sreq).
        if !headers.contains(where: { $0.0.lowercased() == "x-amz-security-token" }),
           let token = try read(".sreq").components(separatedBy: "\n").first(where: { $0.lowercased().hasPrefix("x-amz-security-token:") }) {
            headers.append(("X-Amz-Security-Token", String(token.drop { $0 != ":" }.dropFirst())))
        }
        let rawPath = String(target.prefix { $0 != "?" })
        let rawQuery = target.contains("?") ? String(target.drop { $0 != "?" }.dropFirst()) : ""
        let query: [(String, String)] = rawQuery.isEmpty ? [] : rawQuery.split(separator: "&").map { pair in
            let parts = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            let decode = { (text: Substring) in String(text).removingPercentEncoding ?? String(text) }
            return (decode(parts[0]), parts.count > 1 ? decode(parts[1]) : "")
        }
        let path = SigV4.uriEncode(rawPath.removingPercentEncoding ?? rawPath, slash: false)
        let payload = try SigV4.sha256Hex(Array(body.utf8))
        let (canonical, names) = SigV4.canonicalRequest(method: method, path: path, query: query, headers: headers, payloadSHA256: payload)
        #expect(canonical == (try read(".creq")), "\(name): canonical request")
        let amzDate = headers.first { $0.0.lowercased() == "x-amz-date" }!.1
        let scope = "\(amzDate.prefix(8))/us-east-1/service/aws4_request"
        let stringToSign = try SigV4.stringToSign(amzDate: amzDate, scope: scope, canonicalRequest: canonical)
        #expect(stringToSign == (try read(".sts")), "\(name): string to sign")
        let signature = try SigV4.signature(secret: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", day: String(amzDate.prefix(8)), region: "us-east-1",
                                        service: "service", stringToSign: stringToSign)
        let authorization = "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/\(scope), SignedHeaders=\(names), Signature=\(signature)"
        #expect(authorization == (try read(".authz")), "\(name): Authorization")
    }
}
