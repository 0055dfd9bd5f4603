import Foundation
import Support

/// The S3 operations deployctl uses, signed with SigV4, against any S3-compatible store
/// (path-style `endpoint/bucket/key` or virtual-hosted `bucket.endpoint/key`). Every call
/// retries transport failures and 5xx answers a bounded number of times with backoff, then
/// fails with `.unavailable`; refused credentials are `.permission`; a missing bucket is
/// `.missingInput`. Messages name the remote.
public struct S3Client: Sendable {
    public let remote: String
    public let endpoint: Endpoint
    public let bucket: String
    public let pathStyle: Bool
    public let signer: SigV4
    public let clock: @Sendable () -> Date
    /// Pauses before retry `n` (1-based); tests and the CLI pass real sleeps.
    public let attempts: Int
    public let sleep: @Sendable (Duration) -> Void

    public init(remote: String, endpoint: Endpoint, bucket: String, pathStyle: Bool, signer: SigV4,
                clock: @escaping @Sendable () -> Date = { Date() }, attempts: Int = 4,
                sleep: @escaping @Sendable (Duration) -> Void = { Thread.sleep(forTimeInterval: $0.seconds) }) {
        self.remote = remote
        self.endpoint = endpoint
        self.bucket = bucket
        self.pathStyle = pathStyle
        self.signer = signer
        self.clock = clock
        self.attempts = attempts
        self.sleep = sleep
    }

    var host: Endpoint { pathStyle ? endpoint : Endpoint(secure: endpoint.secure, host: "\(bucket).\(endpoint.host)", port: endpoint.port) }

    /// The request path of `key` (URI-encoded; `/` kept).
    func path(_ key: String) -> String {
        (pathStyle ? "/\(SigV4.uriEncode(bucket, slash: true))/" : "/") + SigV4.uriEncode(key, slash: false)
    }

    /// Sends one signed request, with retries. `acceptable` statuses are returned; anything else
    /// becomes a `Failure`.
    /// - Throws: `Failure` (`.unavailable`, `.permission`, `.missingInput`, `.failed`).
    @discardableResult
    func request(_ method: String, key: String, query: [(String, String)] = [], headers: [(String, String)] = [],
                 body: HTTPBody = .empty, payloadSHA256: String? = nil, acceptable: Set<Int> = [200],
                 what: String, sink: ((UnsafeRawBufferPointer) throws -> Void)? = nil,
                 restart: (() throws -> Void)? = nil) throws -> HTTPResponse {
        let target = host
        let client = HTTPClient(endpoint: target)
        let queryText = SigV4.canonicalQuery(query)
        let hash = payloadSHA256 ?? {
            if case .bytes(let bytes) = body { return SigV4.sha256Hex(bytes) }
            return SigV4.sha256Hex([])
        }()
        var lastProblem = ""
        for attempt in 1...attempts {
            if attempt > 1 {
                sleep(.milliseconds(200 << (attempt - 2)))
                try restart?()
            }
            let signed = signer.sign(method: method, host: target.hostHeader, path: path(key), query: query, headers: headers,
                                     payloadSHA256: hash, date: clock())
            let response: HTTPResponse
            do {
                response = try client.send(method: method, target: path(key) + (queryText.isEmpty ? "" : "?" + queryText),
                                           headers: headers + signed, body: body, sink: sink)
            } catch let error as TransportError {
                lastProblem = error.message
                if error.permanent { throw Failure(.unavailable, "remote '\(remote)': \(error.message)", hint: "check the endpoint's certificate, or SSL_CERT_FILE for a private CA") }
                continue
            }
            if acceptable.contains(response.status) { return response }
            let code = Self.element("Code", in: response.text) ?? ""
            let message = Self.element("Message", in: response.text) ?? response.text.prefix(200).description
            switch (response.status, code) {
            case (_, "RequestTimeTooSkewed"), (_, "RequestExpired"):
                throw Failure(.permission, "remote '\(remote)' refused the request's time (\(code)): this host's clock (\(ISO8601DateFormatter().string(from: clock()))) is too far from the store's",
                              hint: "set the clock right (NTP: timedatectl set-ntp true), then run again")
            case (403, _), (401, _), (_, "InvalidAccessKeyId"), (_, "SignatureDoesNotMatch"), (_, "AccessDenied"):
                throw Failure(.permission, "remote '\(remote)' refused the credentials (\(signer.credentials.source), key \(signer.credentials.accessKeyId)) for \(what): \(response.status) \(code.isEmpty ? "" : code + ": ")\(message)",
                              hint: "check AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY (or the profile) and that the key may read and write bucket '\(bucket)'")
            case (404, "NoSuchBucket"):
                throw Failure(.missingInput, "remote '\(remote)': bucket '\(bucket)' does not exist at \(endpoint.hostHeader)",
                              hint: "create it (aws s3 mb s3://\(bucket)), or fix url in the instance's [[offsite]]")
            case (500...599, _):
                lastProblem = "\(response.status) \(code) \(message)"
                continue
            default:
                throw Failure(.failed, "remote '\(remote)': \(what) failed: \(response.status) \(code.isEmpty ? "" : code + ": ")\(message)")
            }
        }
        throw Failure(.unavailable, "remote '\(remote)' (\(endpoint.secure ? "https" : "http")://\(endpoint.hostHeader)) cannot be reached for \(what) after \(attempts) attempts: \(lastProblem)",
                      hint: "check that the store is up and the endpoint in the instance's [[offsite]] is right, then run again")
    }

    // MARK: Objects

    public struct Object: Sendable, Equatable {
        public let key: String
        public let size: Int64
        public let etag: String
        public let lastModified: String
    }

    /// Stores `bytes` under `key` in one request with `Content-MD5`. With `ifNoneMatch`, only if
    /// no object has that key (returns false when one does: 412).
    /// - Returns: whether it was written.
    @discardableResult
    public func put(_ key: String, bytes: [UInt8], ifNoneMatch: Bool = false, what: String) throws -> Bool {
        let md5 = bytes.withUnsafeBytes { MD5.digest($0) }
        var headers = [("Content-MD5", Data(md5).base64EncodedString())]
        if ifNoneMatch { headers.append(("If-None-Match", "*")) }
        let response = try request("PUT", key: key, headers: headers, body: .bytes(bytes), acceptable: [200, 412], what: what)
        return response.status == 200
    }

    /// Stores `length` bytes of `fd` from `offset` under `key` in one request.
    /// - Returns: the ETag.
    public func put(_ key: String, fd: Int32, offset: Int64, length: Int64, md5: [UInt8], sha256: String, what: String) throws -> String {
        let response = try request("PUT", key: key, headers: [("Content-MD5", Data(md5).base64EncodedString())],
                                   body: .file(fd: fd, offset: offset, length: length), payloadSHA256: sha256, what: what)
        return Self.unquote(response.headers["etag"] ?? "")
    }

    /// The object's size and ETag, or nil when there is none.
    public func head(_ key: String, what: String) throws -> Object? {
        let response = try request("HEAD", key: key, acceptable: [200, 404], what: what)
        guard response.status == 200 else { return nil }
        return Object(key: key, size: Int64(response.headers["content-length"] ?? "") ?? -1,
                      etag: Self.unquote(response.headers["etag"] ?? ""), lastModified: response.headers["last-modified"] ?? "")
    }

    /// The object's bytes, or nil when there is none (small objects only: manifests, leases).
    public func get(_ key: String, what: String) throws -> [UInt8]? {
        var bytes = [UInt8]()
        let response = try request("GET", key: key, acceptable: [200, 404], what: what) { chunk in
            guard bytes.count + chunk.count <= 16 << 20 else { throw Failure(.badData, "remote '\(self.remote)': \(key) is larger than a manifest can be") }
            bytes.append(contentsOf: chunk)
        }
        return response.status == 200 ? bytes : nil
    }

    /// Streams the object into `sink`; `restart` is called before a retry (the sink starts over).
    /// - Throws: `Failure` `.missingInput` when there is no such object.
    public func download(_ key: String, what: String, restart: @escaping () throws -> Void, sink: @escaping (UnsafeRawBufferPointer) throws -> Void) throws -> Int64 {
        var received: Int64 = 0
        let response = try request("GET", key: key, acceptable: [200, 404], what: what, sink: { chunk in
            received += Int64(chunk.count)
            try sink(chunk)
        }, restart: { received = 0; try restart() })
        guard response.status == 200 else { throw Failure(.missingInput, "remote '\(remote)' has no object \(key)") }
        return received
    }

    public func delete(_ key: String, what: String) throws {
        try request("DELETE", key: key, acceptable: [200, 204, 404], what: what)
    }

    /// Every object under `prefix` (ListObjectsV2, all pages).
    public func list(prefix: String) throws -> [Object] {
        var objects = [Object]()
        var token: String?
        repeat {
            var query = [("list-type", "2"), ("prefix", prefix)]
            if let token { query.append(("continuation-token", token)) }
            let text = try request("GET", key: "", query: query, what: "listing \(prefix)").text
            for block in Self.elements("Contents", in: text) {
                guard let key = Self.element("Key", in: block) else { continue }
                objects.append(Object(key: key, size: Int64(Self.element("Size", in: block) ?? "") ?? -1,
                                      etag: Self.unquote(Self.element("ETag", in: block) ?? ""),
                                      lastModified: Self.element("LastModified", in: block) ?? ""))
            }
            token = Self.element("IsTruncated", in: text) == "true" ? Self.element("NextContinuationToken", in: text) : nil
        } while token != nil
        return objects
    }

    // MARK: Multipart uploads

    public func createMultipartUpload(_ key: String, what: String) throws -> String {
        let text = try request("POST", key: key, query: [("uploads", "")], what: what).text
        guard let id = Self.element("UploadId", in: text) else {
            throw Failure(.failed, "remote '\(remote)': starting a multipart upload of \(key) gave no UploadId")
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
        let text = try request("POST", key: key, query: [("uploadId", uploadId)], body: .bytes(Array(xml.utf8)), what: what).text
        if text.contains("<Error>") {
            throw Failure(.failed, "remote '\(remote)': completing the upload of \(key) failed: \(Self.element("Code", in: text) ?? "") \(Self.element("Message", in: text) ?? "")")
        }
        return Self.unquote(Self.element("ETag", in: text) ?? "")
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
        let text = response.text
        return Self.elements("Upload", in: text).filter { Self.element("Key", in: $0) == key }.compactMap { Self.element("UploadId", in: $0) }
    }

    // MARK: XML

    /// The text of the first `<name>…</name>`, entities decoded.
    static func element(_ name: String, in xml: String) -> String? {
        elements(name, in: xml).first.map(unescape)
    }

    /// The inner text of every `<name>…</name>` (not decoded).
    static func elements(_ name: String, in xml: String) -> [String] {
        var result = [String]()
        var rest = xml[...]
        while let open = rest.range(of: "<\(name)>"), let close = rest[open.upperBound...].range(of: "</\(name)>") {
            result.append(String(rest[open.upperBound..<close.lowerBound]))
            rest = rest[close.upperBound...]
        }
        return result
    }

    static func unescape(_ text: String) -> String {
        text.replacingOccurrences(of: "&quot;", with: "\"").replacingOccurrences(of: "&apos;", with: "'")
            .replacingOccurrences(of: "&lt;", with: "<").replacingOccurrences(of: "&gt;", with: ">")
            .replacingOccurrences(of: "&#34;", with: "\"").replacingOccurrences(of: "&amp;", with: "&")
    }

    static func unquote(_ etag: String) -> String {
        etag.trimmingCharacters(in: CharacterSet(charactersIn: "\""))
    }
}
