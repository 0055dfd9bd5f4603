// ahc-s3: the two transfers deployctl's offsite commands make, done with async-http-client, so the
// transport alone can be compared (docs/transport.md). It does the same work per request as
// deployctl: SigV4 with the body's SHA-256 signed (never UNSIGNED-PAYLOAD), Content-MD5 on every
// PUT and part, bodies streamed from the file (never whole in memory), a download streamed into a
// temp file with its SHA-256 computed on the way, fsync, rename.
//
//   ahc-s3 put  ENDPOINT BUCKET KEY FILE [--single] [--part-mib 16] [--parallel 2] [--prepass]
//
// --prepass: as `backups push` does, one pass over the whole file first (its SHA-256, and each
// part's MD5 and SHA-256), then the upload; without it each part is hashed just before it is sent.
//   ahc-s3 get  ENDPOINT BUCKET KEY FILE
//
// Credentials from AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, region from AWS_DEFAULT_REGION
// (us-east-1 if unset). A measuring tool: errors end it with a message and exit 1.
import AsyncHTTPClient
import CBenchCrypto
import Glibc
import NIOCore
import NIOHTTP1

// MARK: Hashing (OpenSSL, as deployctl)

struct Digest: ~Copyable {
    let ctx: OpaquePointer
    init(_ md: OpaquePointer?) {
        ctx = EVP_MD_CTX_new()
        EVP_DigestInit_ex(ctx, md, nil)
    }
    static func sha256() -> Digest { Digest(EVP_sha256()) }
    static func md5() -> Digest { Digest(EVP_md5()) }
    func update(_ p: UnsafeRawBufferPointer) { EVP_DigestUpdate(ctx, p.baseAddress, p.count) }
    consuming func finish() -> [UInt8] {
        var out = [UInt8](repeating: 0, count: Int(EVP_MAX_MD_SIZE))
        var n: UInt32 = 0
        EVP_DigestFinal_ex(ctx, &out, &n)
        EVP_MD_CTX_free(ctx)
        return Array(out.prefix(Int(n)))
    }
}

let hexDigits = Array("0123456789abcdef".utf8)
func hex(_ b: [UInt8]) -> String {
    String(decoding: b.flatMap { [hexDigits[Int($0 >> 4)], hexDigits[Int($0 & 15)]] }, as: UTF8.self)
}
func sha256Hex(_ s: String) -> String {
    let d = Digest.sha256()
    Array(s.utf8).withUnsafeBytes { d.update($0) }
    return hex(d.finish())
}
func hmac(_ key: [UInt8], _ s: String) -> [UInt8] {
    var out = [UInt8](repeating: 0, count: 32)
    var n: UInt32 = 0
    let bytes = Array(s.utf8)
    _ = HMAC(EVP_sha256(), key, Int32(key.count), bytes, bytes.count, &out, &n)
    return out
}
func base64(_ b: [UInt8]) -> String {
    let table = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/".utf8)
    var out = [UInt8]()
    var i = 0
    while i < b.count {
        let n = min(3, b.count - i)
        let v = (UInt32(b[i]) << 16) | (n > 1 ? UInt32(b[i + 1]) << 8 : 0) | (n > 2 ? UInt32(b[i + 2]) : 0)
        out.append(table[Int(v >> 18 & 63)]); out.append(table[Int(v >> 12 & 63)])
        out.append(n > 1 ? table[Int(v >> 6 & 63)] : UInt8(ascii: "="))
        out.append(n > 2 ? table[Int(v & 63)] : UInt8(ascii: "="))
        i += 3
    }
    return String(decoding: out, as: UTF8.self)
}

func fail(_ message: String) -> Never {
    FileHandle.standardError(message + "\n")
    exit(1)
}
enum FileHandle {
    static func standardError(_ s: String) { var b = Array(s.utf8); _ = write(2, &b, b.count) }
}

/// Reads `length` bytes at `offset` in 1 MiB pieces and gives each to `body`.
func readRange(_ fd: Int32, _ offset: Int64, _ length: Int64, _ body: (UnsafeRawBufferPointer) -> Void) {
    let buf = UnsafeMutableRawBufferPointer.allocate(byteCount: 1 << 20, alignment: 16)
    defer { buf.deallocate() }
    var done: Int64 = 0
    while done < length {
        let want = Int(min(Int64(buf.count), length - done))
        let n = pread(fd, buf.baseAddress, want, off_t(offset + done))
        if n <= 0 { fail("read failed at \(offset + done)") }
        body(UnsafeRawBufferPointer(rebasing: buf[0..<n]))
        done += Int64(n)
    }
}

// MARK: SigV4

struct Signer: Sendable {
    let access: String, secret: String, region: String, host: String

    static func encode(_ s: String, slash: Bool) -> String {
        var out = ""
        for b in s.utf8 {
            let c = Character(Unicode.Scalar(b))
            if (b >= 0x41 && b <= 0x5A) || (b >= 0x61 && b <= 0x7A) || (b >= 0x30 && b <= 0x39)
                || c == "-" || c == "_" || c == "." || c == "~" || (slash && c == "/")
            {
                out.append(c)
            } else {
                out += "%" + hex([b]).uppercased()
            }
        }
        return out
    }

    /// Headers for a request: host, x-amz-date, x-amz-content-sha256, Authorization.
    func headers(method: String, path: String, query: [(String, String)], payloadSHA256: String) -> [(String, String)] {
        var t = time(nil)
        var tm = tm()
        gmtime_r(&t, &tm)
        var buf = [Int8](repeating: 0, count: 32)
        strftime(&buf, 32, "%Y%m%dT%H%M%SZ", &tm)
        let amzDate = String(cString: buf)
        let day = String(amzDate.prefix(8))
        let q = query.map { (Signer.encode($0.0, slash: false), Signer.encode($0.1, slash: false)) }
            .sorted { $0.0 < $1.0 }.map { "\($0.0)=\($0.1)" }.joined(separator: "&")
        let canonical = [
            method, Signer.encode(path, slash: true), q,
            "host:\(host)\nx-amz-content-sha256:\(payloadSHA256)\nx-amz-date:\(amzDate)\n",
            "host;x-amz-content-sha256;x-amz-date", payloadSHA256,
        ].joined(separator: "\n")
        let scope = "\(day)/\(region)/s3/aws4_request"
        let toSign = "AWS4-HMAC-SHA256\n\(amzDate)\n\(scope)\n\(sha256Hex(canonical))"
        let key = hmac(hmac(hmac(hmac(Array("AWS4\(secret)".utf8), day), region), "s3"), "aws4_request")
        let signature = hex(hmac(key, toSign))
        return [
            ("host", host), ("x-amz-date", amzDate), ("x-amz-content-sha256", payloadSHA256),
            ("authorization", "AWS4-HMAC-SHA256 Credential=\(access)/\(scope), SignedHeaders=host;x-amz-content-sha256;x-amz-date, Signature=\(signature)"),
        ]
    }
}

// MARK: File bodies

/// A part of a file as an async sequence of 1 MiB ByteBuffers, read when AHC asks for them
/// (AHC pulls the next one only when the connection can take it: the memory stays flat).
struct FileRange: AsyncSequence, Sendable {
    typealias Element = ByteBuffer
    let fd: Int32, offset: Int64, length: Int64
    struct AsyncIterator: AsyncIteratorProtocol {
        let fd: Int32, end: Int64
        var at: Int64
        mutating func next() async throws -> ByteBuffer? {
            if at >= end { return nil }
            let want = Int(Swift.min(1 << 20, end - at))
            var buffer = ByteBufferAllocator().buffer(capacity: want)
            let n = buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: want) { p in
                pread(fd, p.baseAddress, want, off_t(at))
            }
            if n <= 0 { throw BenchError("read failed at \(at)") }
            at += Int64(n)
            return buffer
        }
    }
    func makeAsyncIterator() -> AsyncIterator { AsyncIterator(fd: fd, end: offset + length, at: offset) }
}

struct BenchError: Error, CustomStringConvertible {
    let description: String
    init(_ d: String) { description = d }
}

// MARK: Requests

struct Store: Sendable {
    let client: HTTPClient, endpoint: String, bucket: String, signer: Signer

    func send(
        _ method: HTTPMethod, key: String, query: [(String, String)] = [], payloadSHA256: String,
        extra: [(String, String)] = [], body: HTTPClientRequest.Body? = nil
    ) async throws -> HTTPClientResponse {
        let path = "/\(bucket)/\(key)"
        var url = endpoint + Signer.encode(path, slash: true)
        if !query.isEmpty {
            url += "?" + query.map { $0.1.isEmpty ? $0.0 : "\($0.0)=\(Signer.encode($0.1, slash: false))" }.joined(separator: "&")
        }
        var request = HTTPClientRequest(url: url)
        request.method = method
        for (name, value) in signer.headers(method: method.rawValue, path: path, query: query, payloadSHA256: payloadSHA256) + extra {
            request.headers.add(name: name, value: value)
        }
        if let body { request.body = body }
        let response = try await client.execute(request, timeout: .seconds(120))
        if response.status.code >= 300 {
            var text = ""
            for try await chunk in response.body { text += String(buffer: chunk); if text.count > 4096 { break } }
            throw BenchError("\(method) \(url): \(response.status.code) \(text)")
        }
        return response
    }

    func text(_ response: HTTPClientResponse) async throws -> String {
        String(buffer: try await response.body.collect(upTo: 1 << 20))
    }

    /// MD5 (base64) and SHA-256 (hex) of a range, read once for both, as deployctl's push does.
    static func sums(_ fd: Int32, _ offset: Int64, _ length: Int64) -> (md5: String, sha: String) {
        let md5 = Digest.md5(), sha = Digest.sha256()
        readRange(fd, offset, length) { md5.update($0); sha.update($0) }
        return (base64(md5.finish()), hex(sha.finish()))
    }

    func putRange(key: String, fd: Int32, offset: Int64, length: Int64, query: [(String, String)] = [],
                  sums known: (md5: String, sha: String)? = nil) async throws -> String {
        let (md5, sha) = known ?? Store.sums(fd, offset, length)
        let response = try await send(
            .PUT, key: key, query: query, payloadSHA256: sha, extra: [("content-md5", md5)],
            body: .stream(FileRange(fd: fd, offset: offset, length: length), length: .known(length)))
        let etag = response.headers.first(name: "etag") ?? ""
        for try await _ in response.body {}
        return etag
    }

    /// One pass: the whole file's SHA-256 and each part's MD5 and SHA-256.
    static func prepass(_ fd: Int32, size: Int64, partSize: Int64) -> [(md5: String, sha: String)] {
        let whole = Digest.sha256()
        var parts = [(md5: String, sha: String)]()
        var offset: Int64 = 0
        while offset < size {
            let length = Swift.min(partSize, size - offset)
            let md5 = Digest.md5(), sha = Digest.sha256()
            readRange(fd, offset, length) { whole.update($0); md5.update($0); sha.update($0) }
            parts.append((base64(md5.finish()), hex(sha.finish())))
            offset += length
        }
        _ = whole.finish()
        return parts
    }

    func put(key: String, file: String, single: Bool, partSize: Int64, parallel: Int, prepass: Bool) async throws {
        let fd = open(file, O_RDONLY)
        if fd < 0 { throw BenchError("cannot open \(file)") }
        defer { close(fd) }
        var st = stat()
        fstat(fd, &st)
        let size = Int64(st.st_size)
        if single || size <= partSize {
            _ = try await putRange(key: key, fd: fd, offset: 0, length: size)
            return
        }
        let emptySHA = sha256Hex("")
        let started = try await text(send(.POST, key: key, query: [("uploads", "")], payloadSHA256: emptySHA))
        let pieces = started.split(separator: "<UploadId>", maxSplits: 1)
        guard pieces.count == 2, let id = pieces[1].split(separator: "</UploadId>").first else {
            throw BenchError("no UploadId in \(started)")
        }
        let uploadID = String(id)
        let count = Int((size + partSize - 1) / partSize)
        let sums = prepass ? Store.prepass(fd, size: size, partSize: partSize) : nil
        var etags = [String](repeating: "", count: count)
        try await withThrowingTaskGroup(of: (Int, String).self) { group in
            var next = 0
            func add() {
                let n = next
                next += 1
                let offset = Int64(n) * partSize
                group.addTask {
                    (n, try await putRange(key: key, fd: fd, offset: offset, length: min(partSize, size - offset),
                                           query: [("partNumber", "\(n + 1)"), ("uploadId", uploadID)], sums: sums?[n]))
                }
            }
            while next < min(parallel, count) { add() }
            while let (n, etag) = try await group.next() {
                etags[n] = etag
                if next < count { add() }
            }
        }
        var xml = "<CompleteMultipartUpload>"
        for (i, etag) in etags.enumerated() { xml += "<Part><PartNumber>\(i + 1)</PartNumber><ETag>\(etag)</ETag></Part>" }
        xml += "</CompleteMultipartUpload>"
        let answer = try await text(send(.POST, key: key, query: [("uploadId", uploadID)], payloadSHA256: sha256Hex(xml),
                                         body: .bytes(ByteBuffer(string: xml))))
        if answer.contains("<Error>") { throw BenchError("complete failed: \(answer)") }
    }

    func get(key: String, file: String) async throws -> String {
        let temp = file + ".part"
        let fd = open(temp, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        if fd < 0 { throw BenchError("cannot create \(temp)") }
        let sha = Digest.sha256()
        do {
            let response = try await send(.GET, key: key, payloadSHA256: sha256Hex(""))
            for try await chunk in response.body {
                chunk.withUnsafeReadableBytes { p in
                    sha.update(p)
                    var done = 0
                    while done < p.count {
                        let n = write(fd, p.baseAddress! + done, p.count - done)
                        if n <= 0 { fail("write failed") }
                        done += n
                    }
                }
            }
        } catch {
            close(fd); unlink(temp)
            throw error
        }
        fsync(fd); close(fd)
        if rename(temp, file) != 0 { throw BenchError("rename failed") }
        let dir = open(".", O_RDONLY); fsync(dir); close(dir)
        return hex(sha.finish())
    }
}

// MARK: main

let args = Array(CommandLine.arguments.dropFirst())
guard args.count >= 5, args[0] == "put" || args[0] == "get" else {
    fail("usage: ahc-s3 put|get ENDPOINT BUCKET KEY FILE [--single] [--part-mib N] [--parallel N]")
}
func option(_ name: String, _ fallback: Int) -> Int {
    if let i = args.firstIndex(of: name), i + 1 < args.count, let v = Int(args[i + 1]) { return v }
    return fallback
}
let env = { (name: String) -> String? in getenv(name).map { String(cString: $0) } }
guard let access = env("AWS_ACCESS_KEY_ID"), let secret = env("AWS_SECRET_ACCESS_KEY") else {
    fail("AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY are needed")
}
let endpoint = args[1].hasSuffix("/") ? String(args[1].dropLast()) : args[1]
let host = endpoint.split(separator: "/", omittingEmptySubsequences: true).dropFirst().first.map(String.init) ?? ""
var configuration = HTTPClient.Configuration()
configuration.timeout = .init(connect: .seconds(10), read: .seconds(30))
configuration.decompression = .disabled
let client = HTTPClient(eventLoopGroupProvider: .singleton, configuration: configuration)
let store = Store(client: client, endpoint: endpoint, bucket: args[2],
                  signer: Signer(access: access, secret: secret, region: env("AWS_DEFAULT_REGION") ?? "us-east-1", host: host))
var status: Int32 = 0
do {
    if args[0] == "put" {
        try await store.put(key: args[3], file: args[4], single: args.contains("--single"),
                            partSize: Int64(option("--part-mib", 16)) << 20, parallel: option("--parallel", 2),
                            prepass: args.contains("--prepass"))
    } else {
        print(try await store.get(key: args[3], file: args[4]))
    }
} catch {
    FileHandle.standardError("ahc-s3: \(error)\n")
    status = 1
}
try await client.shutdown()
exit(status)
