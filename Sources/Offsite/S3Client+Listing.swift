import Foundation
import Support

extension S3Client {
    /// How long listing may take in all, however many pages.
    public static let listingDeadline = Duration.seconds(300)
    /// The most objects a listing reads: memory stays bounded whatever a store sends.
    public static let listingLimit = 100_000

    /// Every object under `prefix` (ListObjectsV2 with `encoding-type=url`, all pages), within
    /// `listingDeadline`. A page that is not a well-formed listing, a truncated page without a
    /// continuation token, or a token seen before is an error, never a shorter list.
    /// - Throws: `Failure` `.unavailable` for a malformed or looping listing.
    public func list(prefix: String) throws -> [Object] {
        let s3 = within(Self.listingDeadline, "listing \(prefix)", setting: "listing is bounded to \(Int(Self.listingDeadline.seconds)) s", raisable: false)
        var objects = [Object]()
        var token: String?
        var seen = Set<String>()
        repeat {
            // Between pages too: a store answering every page at once leaves no wait to stop in.
            try checkpoint()
            var query = [("list-type", "2"), ("prefix", prefix), ("encoding-type", "url")]
            if let token { query.append(("continuation-token", token)) }
            let response = try s3.request("GET", key: "", query: query, what: "listing \(prefix)")
            let malformed = { (why: String) in
                Failure(.offsiteListingMalformed, "remote '\(self.remote)' answered the listing of \(prefix) with something that is not a valid S3 listing (\(why)); nothing was read from it",
                        hint: "check that the endpoint is an S3-compatible store; run again, and report the store's version if it persists")
            }
            guard let root = XMLNode.parse(response.body) else {
                throw malformed("not well-formed XML: \(clean(response.text, limit: 80))")
            }
            guard root.name == "ListBucketResult" else { throw malformed("its root element is <\(clean(root.name, limit: 40))>") }
            let encoded = root.value("EncodingType") == "url"
            for block in root.all("Contents") {
                guard let raw = block.value("Key"), let key = encoded ? Self.urlDecode(raw) : raw, !key.isEmpty else {
                    throw malformed("an entry without a key, or a key that does not decode")
                }
                guard let sizeText = block.value("Size"), let size = Int64(sizeText), size >= 0 else {
                    throw malformed("\(clean(key, limit: 80)) has no valid size")
                }
                // A key outside the prefix asked for (a store ignoring it) is no copy of this folder.
                guard key.hasPrefix(prefix) else { throw malformed("it listed \(clean(key, limit: 80)), which is outside \(clean(prefix, limit: 80))") }
                objects.append(Object(key: key, size: size, etag: Self.unquote(block.value("ETag") ?? ""),
                                      lastModified: block.value("LastModified") ?? ""))
            }
            guard objects.count <= Self.listingLimit else {
                throw malformed("more than \(Self.listingLimit) objects under the prefix (deployctl keeps far fewer copies of an instance)")
            }
            switch root.value("IsTruncated") {
            case "true":
                guard let next = root.value("NextContinuationToken"), !next.isEmpty else {
                    throw malformed("a truncated page without NextContinuationToken")
                }
                guard seen.insert(next).inserted else { throw malformed("the continuation token \(clean(next, limit: 40)) came twice: the listing loops") }
                token = next
            case "false", nil:
                token = nil
            case let other?:
                throw malformed("IsTruncated is '\(clean(other, limit: 20))'")
            }
        } while token != nil
        return objects
    }

    /// Percent-decoding as S3's `encoding-type=url` does it (`+` is a space).
    static func urlDecode(_ text: String) -> String? {
        text.replacingOccurrences(of: "+", with: " ").removingPercentEncoding
    }
}
