import CTLS
import Foundation
import Support

/// AWS credentials: a key id, its secret, a session token for temporary ones, and when they
/// expire. Never printed: the description names the key id's source only.
public struct Credentials: Sendable, CustomStringConvertible {
    public let accessKeyId: String
    let secretAccessKey: String
    let sessionToken: String?
    /// Where they came from, for messages.
    public let source: String
    /// When temporary credentials stop working (refreshed before then); nil for static keys.
    public let expiration: Date?

    public var description: String { "credentials from \(source)" }

    /// What must never be printed, even when a server echoes it back.
    var secrets: [String] { [secretAccessKey] + (sessionToken.map { [$0] } ?? []) }

    public init(accessKeyId: String, secretAccessKey: String, sessionToken: String? = nil, source: String, expiration: Date? = nil) {
        self.accessKeyId = accessKeyId
        self.secretAccessKey = secretAccessKey
        self.sessionToken = sessionToken
        self.source = source
        self.expiration = expiration
    }

    /// The first credentials of the AWS SDKs' default chain (`CredentialChain`).
    /// - Throws: `Failure` `.permission` when none are found, naming where it looked.
    public static func find(environment: [String: String], remote: String) throws -> Credentials {
        try CredentialChain(environment: environment, remote: remote).resolve()
    }
}

/// AWS Signature Version 4 for S3 (https://docs.aws.amazon.com/AmazonS3/latest/API/sig-v4-header-based-auth.html):
/// the canonical request, the string to sign, the derived signing key and the `Authorization`
/// header. The payload is always hashed (never `UNSIGNED-PAYLOAD`), so a store that checks
/// signatures also checks the body.
public struct SigV4: Sendable {
    public let credentials: Credentials
    public let region: String

    public init(credentials: Credentials, region: String) {
        self.credentials = credentials
        self.region = region
    }

    /// The headers to add to a request: `x-amz-date`, `x-amz-content-sha256`, the session
    /// token when there is one, and `Authorization`. `headers` are the request's other headers
    /// (all are signed), `path` is already URI-encoded, `query` is unencoded pairs.
    public func sign(method: String, host: String, path: String, query: [(String, String)], headers: [(String, String)],
                     payloadSHA256: String, date: Date) throws(Failure) -> [(String, String)] {
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = TimeZone(identifier: "UTC")
        formatter.dateFormat = "yyyyMMdd'T'HHmmss'Z'"
        let amzDate = formatter.string(from: date)
        let day = String(amzDate.prefix(8))
        var all = headers + [("host", host), ("x-amz-content-sha256", payloadSHA256), ("x-amz-date", amzDate)]
        if let token = credentials.sessionToken { all.append(("x-amz-security-token", token)) }
        let (canonicalRequest, signedNames) = Self.canonicalRequest(method: method, path: path, query: query, headers: all, payloadSHA256: payloadSHA256)
        let scope = "\(day)/\(region)/s3/aws4_request"
        let stringToSign = try Self.stringToSign(amzDate: amzDate, scope: scope, canonicalRequest: canonicalRequest)
        let signature = try Self.signature(secret: credentials.secretAccessKey, day: day, region: region, service: "s3", stringToSign: stringToSign)
        var result = [("x-amz-date", amzDate), ("x-amz-content-sha256", payloadSHA256)]
        if let token = credentials.sessionToken { result.append(("x-amz-security-token", token)) }
        result.append(("Authorization", "AWS4-HMAC-SHA256 Credential=\(credentials.accessKeyId)/\(scope), SignedHeaders=\(signedNames), Signature=\(signature)"))
        return result
    }

    /// The canonical request and the signed header names (every header given is signed).
    /// `path` is already URI-encoded; `query` is unencoded pairs.
    static func canonicalRequest(method: String, path: String, query: [(String, String)], headers: [(String, String)],
                                 payloadSHA256: String) -> (request: String, signedNames: String) {
        let signed = canonicalHeaders(headers)
        let names = signed.map(\.0).joined(separator: ";")
        let request = [method, path, canonicalQuery(query), signed.map { "\($0.0):\($0.1)\n" }.joined(), names, payloadSHA256].joined(separator: "\n")
        return (request, names)
    }

    static func stringToSign(amzDate: String, scope: String, canonicalRequest: String) throws(Failure) -> String {
        "AWS4-HMAC-SHA256\n\(amzDate)\n\(scope)\n\(try sha256Hex(Array(canonicalRequest.utf8)))"
    }

    /// The hex signature: HMAC of the string to sign under the key derived from the secret,
    /// the day, the region and the service.
    /// - Throws: `Failure` `crypto.library_failed` when libcrypto fails.
    static func signature(secret: String, day: String, region: String, service: String, stringToSign: String) throws(Failure) -> String {
        var key = try SHA256.hmac(key: Array("AWS4\(secret)".utf8), Array(day.utf8))
        for part in [region, service, "aws4_request"] { key = try SHA256.hmac(key: key, Array(part.utf8)) }
        return SHA256.hex(try SHA256.hmac(key: key, Array(stringToSign.utf8)))
    }

    /// Headers as SigV4 canonicalises them: names lower-cased and sorted; values with folded
    /// lines joined, leading and trailing spaces trimmed and inner runs of spaces collapsed to
    /// one; a repeated name's values joined with commas in the order given.
    static func canonicalHeaders(_ headers: [(String, String)]) -> [(String, String)] {
        var merged = [String: [String]]()
        for (name, value) in headers {
            let folded = value.replacingOccurrences(of: "\r\n", with: " ").replacingOccurrences(of: "\n", with: " ")
            let collapsed = folded.split(whereSeparator: { $0 == " " || $0 == "\t" }).joined(separator: " ")
            merged[name.lowercased(), default: []].append(collapsed)
        }
        return merged.map { ($0.key, $0.value.joined(separator: ",")) }.sorted { $0.0 < $1.0 }
    }

    /// Query pairs sorted by name and URI-encoded (`/` too).
    static func canonicalQuery(_ query: [(String, String)]) -> String {
        query.map { (uriEncode($0.0, slash: true), uriEncode($0.1, slash: true)) }.sorted { $0 < $1 }
            .map { "\($0.0)=\($0.1)" }.joined(separator: "&")
    }

    /// RFC 3986 encoding as SigV4 wants it: unreserved characters kept, `/` kept in paths.
    public static func uriEncode(_ text: String, slash: Bool) -> String {
        var out = ""
        for byte in text.utf8 {
            switch byte {
            case UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "0")...UInt8(ascii: "9"),
                 UInt8(ascii: "-"), UInt8(ascii: "_"), UInt8(ascii: "."), UInt8(ascii: "~"):
                out.append(Character(UnicodeScalar(byte)))
            case UInt8(ascii: "/") where !slash:
                out.append("/")
            default:
                out += String(format: "%%%02X", byte)
            }
        }
        return out
    }

    /// - Throws: `Failure` `crypto.library_failed` when libcrypto fails.
    public static func sha256Hex(_ bytes: [UInt8]) throws(Failure) -> String {
        try SHA256.hex(of: bytes)
    }
}

/// MD5 (through libcrypto), for S3's `Content-MD5` and ETags only: never as a security check.
public struct MD5: ~Copyable {
    private let context: OpaquePointer

    public init() {
        context = EVP_MD_CTX_new()
        EVP_DigestInit_ex(context, EVP_md5(), nil)
    }

    deinit { EVP_MD_CTX_free(context) }

    public mutating func update(_ bytes: UnsafeRawBufferPointer) {
        if bytes.count > 0 { EVP_DigestUpdate(context, bytes.baseAddress, bytes.count) }
    }

    public consuming func finalize() -> [UInt8] {
        var digest = [UInt8](repeating: 0, count: 16)
        var length: UInt32 = 0
        EVP_DigestFinal_ex(context, &digest, &length)
        return digest
    }

    public static func digest(_ bytes: UnsafeRawBufferPointer) -> [UInt8] {
        var md5 = MD5()
        md5.update(bytes)
        return md5.finalize()
    }
}
