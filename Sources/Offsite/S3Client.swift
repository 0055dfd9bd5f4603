import Foundation
import Support

/// How hard a client tries: attempts per request (the first included) and the backoff between
/// them, as the AWS SDKs' "standard" retry mode does it (full jitter: a random pause up to
/// `base × 2^(attempt-1)`, capped).
public struct RetryPolicy: Sendable, Equatable {
    public var attempts: Int
    public var base: Duration
    public var cap: Duration

    public init(attempts: Int = 5, base: Duration = .milliseconds(500), cap: Duration = .seconds(20)) {
        self.attempts = attempts
        self.base = base
        self.cap = cap
    }

    /// The longest pause before retry `n` (1-based: the pause after the first failed attempt is n = 1).
    public func ceiling(_ n: Int) -> Duration { min(cap, base * (1 << min(n - 1, 20))) }
}

/// The S3 operations deployctl uses, signed with SigV4, against any S3-compatible store
/// (path-style `endpoint/bucket/key` or virtual-hosted `bucket.endpoint/key`). Every call
/// retries what is worth retrying (connection failures, 5xx, throttling, `RequestTimeout`) with
/// jittered backoff (`RetryPolicy`), within each request's deadlines and the operation's
/// (`within`), then fails with `.unavailable`; refused credentials are `.permission`; a missing
/// bucket is `.missingInput`; an answer that is not what S3 sends (malformed XML, a looping
/// listing, a redirect) is `.unavailable` and never read as an empty result. Messages name the
/// remote; server text in them is sanitised (`Sanitized`).
public struct S3Client: Sendable {
    public let remote: String
    public let endpoint: Endpoint
    public let bucket: String
    public let pathStyle: Bool
    public let signer: SigV4
    public let clock: @Sendable () -> Date
    public let retry: RetryPolicy
    public let deadlines: Deadlines
    public let caBundle: String?
    /// Runs between every 250 ms slice of a wait; throws to stop (an interrupted command).
    public let checkpoint: @Sendable () throws -> Void
    /// Where fresh credentials come from when temporary ones near their expiration.
    public let credentialProvider: CredentialProvider?
    /// The proxy to reach the store through (`HTTPS_PROXY`/`HTTP_PROXY`, unless `NO_PROXY`).
    public let proxy: Proxy?
    /// The operation's deadline, and what the operation is (for the message when it passes).
    public private(set) var operation: (deadline: ContinuousClock.Instant, what: String, setting: String, raisable: Bool)?

    public init(remote: String, endpoint: Endpoint, bucket: String, pathStyle: Bool, signer: SigV4,
                clock: @escaping @Sendable () -> Date = { Date() }, retry: RetryPolicy = RetryPolicy(),
                deadlines: Deadlines = Deadlines(), caBundle: String? = nil, credentialProvider: CredentialProvider? = nil,
                proxy: Proxy? = nil, checkpoint: @escaping @Sendable () throws -> Void = {}) {
        self.credentialProvider = credentialProvider
        self.proxy = proxy
        self.remote = remote
        self.endpoint = endpoint
        self.bucket = bucket
        self.pathStyle = pathStyle
        self.signer = signer
        self.clock = clock
        self.retry = retry
        self.deadlines = deadlines
        self.caBundle = caBundle
        self.checkpoint = checkpoint
    }

    /// This client with an overall deadline: every request and pause of `what` ends by then, and
    /// the command exits 69 naming `what` and the setting that bounds it.
    /// `raisable`: `setting` is a config key the operator may raise (else a fixed bound).
    public func within(_ duration: Duration, _ what: String, setting: String, raisable: Bool = true) -> S3Client {
        var copy = self
        let deadline = ContinuousClock.now.advanced(by: duration)
        if let current = operation, current.deadline < deadline { return copy }
        copy.operation = (deadline, what, setting, raisable)
        return copy
    }

    var host: Endpoint { pathStyle ? endpoint : Endpoint(secure: endpoint.secure, host: "\(bucket).\(endpoint.host)", port: endpoint.port) }

    /// The request path of `key` (URI-encoded; `/` kept).
    func path(_ key: String) -> String {
        (pathStyle ? "/\(SigV4.uriEncode(bucket, slash: true))/" : "/") + SigV4.uriEncode(key, slash: false)
    }

    /// Server text made printable: no control characters, none of this client's secrets, cut.
    func clean(_ text: String, limit: Int = 200) -> String {
        Sanitized.text(text, limit: limit, secrets: signer.credentials.secrets + (credentialProvider?.initial.secrets ?? []) + (proxy?.secrets ?? []))
    }

    func operationFailure(_ lastProblem: String) -> Failure {
        let operation = operation!
        return Failure(.offsiteTimeout, "remote '\(remote)': gave up \(operation.what): it did not finish within its deadline (\(operation.setting))"
                           + (lastProblem.isEmpty ? "" : "; last problem: \(lastProblem)"),
                       hint: "check that the store at \(endpoint.secure ? "https" : "http")://\(endpoint.hostHeader) answers"
                           + (operation.raisable ? ", or raise \(operation.setting) in the instance's [[offsite]]" : "")
                           + ", then run again")
    }

    /// Pauses up to `duration`, in slices, calling `checkpoint`; stops at the operation deadline.
    func pause(_ duration: Duration, lastProblem: String) throws {
        let end = ContinuousClock.now.advanced(by: duration)
        while true {
            try checkpoint()
            let now = ContinuousClock.now
            if let operation, now >= operation.deadline { throw operationFailure(lastProblem) }
            guard now < end else { return }
            Thread.sleep(forTimeInterval: min(Waiter.slice, end - now).seconds)
        }
    }

    /// Why an answer is worth another try (AWS SDK standard mode), or nil.
    static func transient(status: Int, code: String) -> Bool {
        if (500...599).contains(status) || status == 429 { return true }
        return ["RequestTimeout", "SlowDown", "Throttling", "ThrottlingException", "RequestThrottled", "RequestLimitExceeded",
                "TooManyRequestsException", "ProvisionedThroughputExceededException", "InternalError", "ServiceUnavailable"].contains(code)
    }

    /// Sends one signed request, with retries. `acceptable` statuses are returned; anything else
    /// becomes a `Failure`.
    /// - Throws: `Failure` with an `offsite.*` code (`offsite.unreachable` after the retries,
    ///   `offsite.timeout`, `offsite.credentials_refused`, `offsite.wrong_region`, the TLS codes…);
    ///   what `checkpoint`, `sink` and `restart` throw.
    @discardableResult
    func request(_ method: String, key: String, query: [(String, String)] = [], headers: [(String, String)] = [],
                 body: HTTPBody = .empty, payloadSHA256: String? = nil, acceptable: Set<Int> = [200],
                 what: String, sink: ((UnsafeRawBufferPointer) throws -> Void)? = nil,
                 restart: (() throws -> Void)? = nil) throws -> HTTPResponse {
        let target = host
        let client = HTTPClient(endpoint: target, deadlines: deadlines, caBundle: caBundle, proxy: proxy, checkpoint: checkpoint)
        let queryText = SigV4.canonicalQuery(query)
        let hash = try payloadSHA256 ?? {
            if case .bytes(let bytes) = body { return try SigV4.sha256Hex(bytes) }
            return try SigV4.sha256Hex([])
        }()
        let place = "\(endpoint.secure ? "https" : "http")://\(endpoint.hostHeader)"
        var lastProblem = ""
        for attempt in 1...max(1, retry.attempts) {
            if attempt > 1 {
                let ceiling = retry.ceiling(attempt - 1)
                try pause(ceiling * Double.random(in: 0...1), lastProblem: lastProblem)
                try restart?()
            }
            if let operation, ContinuousClock.now >= operation.deadline { throw operationFailure(lastProblem) }
            let signer = try credentialProvider.map { SigV4(credentials: try $0.current(), region: self.signer.region) } ?? self.signer
            let signed = try signer.sign(method: method, host: target.hostHeader, path: path(key), query: query, headers: headers,
                                     payloadSHA256: hash, date: clock())
            let response: HTTPResponse
            do {
                response = try client.send(method: method, target: path(key) + (queryText.isEmpty ? "" : "?" + queryText),
                                           headers: headers + signed, body: body, deadline: operation?.deadline, sink: sink)
            } catch let error as TransportError {
                lastProblem = clean(error.message, limit: 300)
                try giveUp(on: error, lastProblem: lastProblem, what: what, place: place)
                continue
            }
            if acceptable.contains(response.status) { return response }
            lastProblem = try transientProblem(response, what: what, signer: signer)
        }
        throw Failure(.offsiteUnreachable, "remote '\(remote)' (\(place)) cannot be reached for \(what) after \(retry.attempts) attempts: \(lastProblem)",
                      hint: "check that the store is up and the endpoint in the instance's [[offsite]] is right, then run again")
    }

    /// Throws for a transport failure another try would not mend (a certificate, a broken
    /// protocol, the operation's deadline); returns for one worth retrying.
    private func giveUp(on error: TransportError, lastProblem: String, what: String, place: String) throws {
        switch error.kind {
        case .certificate(let problem):
            throw Failure(Self.code(problem), "remote '\(remote)': \(lastProblem)",
                          hint: "check the endpoint's certificate and host name, or point AWS_CA_BUNDLE (or ca_bundle, SSL_CERT_FILE) at the CA that signed it")
        case .protocolViolation:
            throw Failure(.offsiteProtocolViolation, "remote '\(remote)' broke the S3 protocol while \(what): \(lastProblem); nothing it sent was used",
                          hint: "check that \(place) is an S3-compatible store (and not a proxy or captive portal), then run again")
        case .timeout:
            if let operation, ContinuousClock.now >= operation.deadline { throw operationFailure(lastProblem) }
        case .connection:
            break
        }
    }

    /// What a response that is not acceptable means: throws the failure it is, or returns the
    /// problem to retry (a 5xx, throttling, `RequestTimeout`).
    private func transientProblem(_ response: HTTPResponse, what: String, signer: SigV4) throws -> String {
        let document = XMLNode.parse(response.body)
        let code = clean(document?.value("Code") ?? "", limit: 64)
        let message = document.map { clean($0.value("Message") ?? "") } ?? clean(response.text)
        let detail = "\(response.status)\(code.isEmpty ? "" : " " + code)\(message.isEmpty ? "" : ": " + message)"
        switch (response.status, code) {
        case (_, "RequestTimeTooSkewed"), (_, "RequestExpired"):
            throw Failure(.offsiteClockSkewed, "remote '\(remote)' refused the request's time (\(code)): this host's clock (\(ISO8601DateFormatter().string(from: clock()))) is too far from the store's",
                          hint: "set the clock right (NTP: timedatectl set-ntp true), then run again")
        case _ where (300...399).contains(response.status) || code == "PermanentRedirect"
            || (code == "AuthorizationHeaderMalformed" && Self.bucketRegion(response, document) != nil):
            throw redirected(response, document, code: code, what: what, region: signer.region)
        case (403, _), (401, _), (_, "InvalidAccessKeyId"), (_, "SignatureDoesNotMatch"), (_, "AccessDenied"):
            throw Failure(.offsiteCredentialsRefused, "remote '\(remote)' refused the credentials (\(signer.credentials.source), key \(signer.credentials.accessKeyId)) for \(what): \(detail)",
                          hint: "check AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY (or the profile) and that the key may read and write bucket '\(bucket)'")
        case (404, "NoSuchBucket"):
            throw Failure(.offsiteBucketMissing, "remote '\(remote)': bucket '\(bucket)' does not exist at \(endpoint.hostHeader)",
                          hint: "create it (aws s3 mb s3://\(bucket)), or fix url in the instance's [[offsite]]")
        case _ where Self.transient(status: response.status, code: code):
            return detail
        default:
            throw Failure(.offsiteRequestFailed, "remote '\(remote)': \(what) failed: the store answered \(detail)",
                          hint: "check the store's logs for the request; run again once it accepts it")
        }
    }

    /// A redirect, or an answer naming the bucket's region: the wrong region when it names
    /// another, else a redirect (never followed).
    private func redirected(_ response: HTTPResponse, _ document: XMLNode?, code: String, what: String, region asked: String) -> Failure {
        if let region = Self.bucketRegion(response, document), region != asked {
            return Failure(.offsiteWrongRegion, "remote '\(remote)': bucket '\(bucket)' is in region \(region), not \(asked) (the store answered \(response.status)\(code.isEmpty ? "" : " " + code))",
                           hint: "set region = \"\(region)\" in the instance's [[offsite]] '\(remote)' (and its regional endpoint), then run again")
        }
        let location = response.headers["location"].map { " to \(clean($0, limit: 120))" } ?? ""
        return Failure(.offsiteRedirected, "remote '\(remote)' redirected \(what)\(location) (\(response.status)); redirects are never followed",
                       hint: "set endpoint in the instance's [[offsite]] '\(remote)' to the store's own address")
    }

    /// The code of a refused certificate: what the operator fixes differs for each.
    static func code(_ problem: CertificateProblem) -> FailureCode {
        switch problem {
        case .untrusted: return .offsiteTLSUntrusted
        case .hostNameMismatch, .ipAddressMismatch: return .offsiteTLSHostMismatch
        case .expired: return .offsiteTLSExpired
        case .other, .setup: return .offsiteTLSFailed
        }
    }

    /// The region a wrong-region answer names (`x-amz-bucket-region`, or `<Region>` in its
    /// error document), if it looks like one.
    static func bucketRegion(_ response: HTTPResponse, _ document: XMLNode?) -> String? {
        let region = response.headers["x-amz-bucket-region"] ?? document?.value("Region") ?? ""
        guard !region.isEmpty, region.count <= 32, region.allSatisfy({ $0.isASCII && ($0.isLowercase || $0.isNumber || $0 == "-") }) else { return nil }
        return region
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
    public func put(_ key: String, bytes: [UInt8], ifNoneMatch: Bool = false, metadata: [(String, String)] = [], what: String) throws -> Bool {
        let md5 = bytes.withUnsafeBytes { MD5.digest($0) }
        var headers = [("Content-MD5", Data(md5).base64EncodedString())] + metadata
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

    /// The object's bytes and headers, or nil when there is none (small objects only:
    /// manifests, leases; over 16 MiB is refused).
    public func getWithHeaders(_ key: String, what: String) throws -> (bytes: [UInt8], headers: [String: String])? {
        var bytes = [UInt8]()
        let response = try request("GET", key: key, acceptable: [200, 404], what: what, sink: { chunk in
            guard bytes.count + chunk.count <= 16 << 20 else { throw Failure(.offsiteObjectTooLarge, "remote '\(self.remote)': \(key) is larger than a manifest can be") }
            bytes.append(contentsOf: chunk)
        }, restart: { bytes = [] })
        return response.status == 200 ? (bytes, response.headers) : nil
    }

    /// The object's bytes, or nil when there is none (small objects only: manifests, leases).
    public func get(_ key: String, what: String) throws -> [UInt8]? {
        try getWithHeaders(key, what: what)?.bytes
    }

    /// Streams the object into `sink`; `restart` is called before a retry (the sink starts over).
    /// - Throws: `Failure` `.missingInput` when there is no such object.
    public func download(_ key: String, what: String, restart: @escaping () throws -> Void, sink: @escaping (UnsafeRawBufferPointer) throws -> Void) throws -> Int64 {
        var received: Int64 = 0
        let response = try request("GET", key: key, acceptable: [200, 404], what: what, sink: { chunk in
            received += Int64(chunk.count)
            try sink(chunk)
        }, restart: { received = 0; try restart() })
        guard response.status == 200 else { throw Failure(.offsiteObjectMissing, "remote '\(remote)' has no object \(key)") }
        return received
    }

    public func delete(_ key: String, what: String) throws {
        try request("DELETE", key: key, acceptable: [200, 204, 404], what: what)
    }

    static func unquote(_ etag: String) -> String {
        etag.trimmingCharacters(in: CharacterSet(charactersIn: "\""))
    }
}
