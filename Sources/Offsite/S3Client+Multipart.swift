import Foundation
import Support

/// Multipart uploads (`upload` in Transfer.swift uses them for large files).
extension S3Client {
    public func createMultipartUpload(_ key: String, what: String) throws -> String {
        let response = try request("POST", key: key, query: [("uploads", "")], what: what)
        // The root's name varies between stores (rclone: InitiateMultipartUpload); the id must be there.
        guard let document = XMLNode.parse(response.body), document.name != "Error",
              let id = document.value("UploadId"), !id.isEmpty else {
            throw Failure(.offsiteAnswerMalformed, "remote '\(remote)': starting a multipart upload of \(key) gave no UploadId (the answer was not well-formed XML with an UploadId)")
        }
        return id
    }

    public func uploadPart(_ key: String, uploadId: String, number: Int, fd: Int32, offset: Int64, length: Int64,
                           md5: [UInt8], sha256: String, what: String) throws -> String {
        let response = try request("PUT", key: key, query: [("partNumber", String(number)), ("uploadId", uploadId)],
                                   headers: [("Content-MD5", Data(md5).base64EncodedString())],
                                   body: .file(fd: fd, offset: offset, length: length), payloadSHA256: sha256, what: what)
        return Self.unquote(response.headers["etag"] ?? "")
    }

    /// Completes an upload; a 200 answer whose body is an `<Error>` (S3 does that) fails.
    public func completeMultipartUpload(_ key: String, uploadId: String, parts: [(Int, String)], what: String) throws -> String {
        let xml = "<CompleteMultipartUpload>" + parts.map { "<Part><PartNumber>\($0.0)</PartNumber><ETag>\"\($0.1)\"</ETag></Part>" }.joined()
            + "</CompleteMultipartUpload>"
        let response = try request("POST", key: key, query: [("uploadId", uploadId)], body: .bytes(Array(xml.utf8)), what: what)
        guard let document = XMLNode.parse(response.body) else {
            throw Failure(.offsiteAnswerMalformed, "remote '\(remote)': completing the upload of \(key) got an answer that is not XML: \(clean(response.text, limit: 80))")
        }
        if document.name == "Error" {
            throw Failure(.offsiteUploadFailed, "remote '\(remote)': completing the upload of \(key) failed: \(clean(document.value("Code") ?? "", limit: 64)) \(clean(document.value("Message") ?? ""))")
        }
        return Self.unquote(document.value("ETag") ?? "")
    }

    public func abortMultipartUpload(_ key: String, uploadId: String, what: String) throws {
        try request("DELETE", key: key, query: [("uploadId", uploadId)], acceptable: [200, 204, 404], what: what)
    }

    /// Unfinished multipart uploads of exactly `key`: their upload ids.
    public func multipartUploads(of key: String) throws -> [String] {
        // rclone's S3 server answers 404 NoSuchUpload when there are none.
        let response = try request("GET", key: "", query: [("uploads", ""), ("prefix", key)], acceptable: [200, 404],
                                   what: "listing unfinished uploads of \(key)")
        guard response.status == 200 else { return [] }
        guard let document = XMLNode.parse(response.body), document.name != "Error" else {
            throw Failure(.offsiteAnswerMalformed, "remote '\(remote)' answered the listing of unfinished uploads of \(key) with something that is not an S3 listing: \(clean(response.text, limit: 80))")
        }
        return document.all("Upload").filter { $0.value("Key") == key }.compactMap { $0.value("UploadId") }
    }
}
