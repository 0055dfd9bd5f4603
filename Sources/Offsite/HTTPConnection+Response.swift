import Foundation
import Support

/// Where a response body goes as it arrives: into `sink` (a 2xx answer streamed), or collected
/// up to a limit (an error document is cut there; a 2xx body over it is refused).
private final class BodyCollector {
    let streaming: ((UnsafeRawBufferPointer) throws -> Void)?
    let success: Bool
    let limit: Int
    let description: String
    var collected = [UInt8]()
    /// An error document reached its limit: the rest is never read.
    var full = false

    init(status: Int, sink: ((UnsafeRawBufferPointer) throws -> Void)?, description: String) {
        success = (200..<300).contains(status)
        streaming = success ? sink : nil
        limit = success ? HTTPLimits.collectedBody : HTTPLimits.errorBody
        self.description = description
    }

    func deliver(_ chunk: UnsafeRawBufferPointer) throws {
        if let streaming { return try streaming(chunk) }
        guard collected.count + chunk.count <= limit else {
            // An error document is cut; a 2xx body this large is not an S3 answer.
            guard success else {
                collected.append(contentsOf: chunk.prefix(limit - collected.count))
                full = true
                return
            }
            throw TransportError(.protocolViolation, "\(description) sent a response body over \(limit >> 20) MiB where a small document was expected")
        }
        collected.append(contentsOf: chunk)
    }
}

extension HTTPConnection {
    /// Reads until `\r\n`, returning the line without it; `budget` is what the head may still use.
    func readLine(budget: inout Int) throws -> String {
        var line = [UInt8]()
        while true {
            guard try fill() else { throw TransportError(.connection, "\(description) closed the connection mid-response") }
            let available = pending[pendingStart...]
            if let newline = available.firstIndex(of: 10) {
                line.append(contentsOf: pending[pendingStart..<newline])
                pendingStart = newline + 1
                break
            }
            line.append(contentsOf: available)
            pendingStart = pending.count
            guard line.count <= budget else { break }
        }
        budget -= line.count + 1
        guard budget >= 0 else {
            throw TransportError(.protocolViolation, "\(description) sent a response head over \(HTTPLimits.headerBytes >> 10) KiB (headers are bounded)")
        }
        if line.last == 13 { line.removeLast() }
        return String(decoding: line, as: UTF8.self)
    }

    /// Reads one response: status, headers (bounded), then the body by chunks, by
    /// Content-Length, or to the end of the stream.
    /// - Throws: `TransportError`; what `sink` throws.
    func readResponse(method: String, sink: ((UnsafeRawBufferPointer) throws -> Void)?) throws -> HTTPResponse {
        pending = []
        pendingStart = 0
        var budget = HTTPLimits.headerBytes
        let status = try readStatus(budget: &budget)
        let headers = try readHeaders(budget: &budget)
        var response = HTTPResponse(status: status, headers: headers, body: [])
        if method == "HEAD" || status == 204 || status == 304 { return response }
        let body = BodyCollector(status: status, sink: sink, description: description)
        let buffer = UnsafeMutableRawPointer.allocate(byteCount: 1 << 20, alignment: 16)
        defer { buffer.deallocate() }
        waiter.doing = "reading the answer's body"
        if headers["transfer-encoding"]?.lowercased().contains("chunked") == true {
            try readChunked(into: body, buffer: buffer)
        } else if let text = headers["content-length"] {
            guard !text.isEmpty, text.count <= 18, text.allSatisfy(\.isASCII), text.allSatisfy(\.isNumber), let length = Int(text) else {
                throw TransportError(.protocolViolation, "\(description) sent a malformed Content-Length '\(Sanitized.text(text, limit: 40))'")
            }
            try copy(length, buffer: buffer, into: body)
        } else {
            while !body.full {
                let n = try read(into: buffer, count: 1 << 20)
                if n == 0 { break }
                try body.deliver(UnsafeRawBufferPointer(start: buffer, count: n))
            }
        }
        response.body = body.collected
        return response
    }

    private func readStatus(budget: inout Int) throws -> Int {
        var line = try readLine(budget: &budget)
        // A 100 Continue (never asked for, but allowed) precedes the real status.
        while true {
            let parts = line.split(separator: " ", maxSplits: 2)
            guard parts.count >= 2, parts[0] == "HTTP/1.1" || parts[0] == "HTTP/1.0", parts[1].count == 3,
                  let status = Int(parts[1]), (100...599).contains(status) else {
                throw TransportError(.protocolViolation, "\(description) did not answer in HTTP/1.1: '\(Sanitized.text(line, limit: 80))'")
            }
            guard status == 100 else { return status }
            while try !readLine(budget: &budget).isEmpty {}
            line = try readLine(budget: &budget)
        }
    }

    /// The header lines up to the empty one, names lower-cased; bounded in count and bytes.
    private func readHeaders(budget: inout Int) throws -> [String: String] {
        var headers = [String: String]()
        var count = 0
        while true {
            let line = try readLine(budget: &budget)
            if line.isEmpty { return headers }
            count += 1
            guard count <= HTTPLimits.headerCount else {
                throw TransportError(.protocolViolation, "\(description) sent over \(HTTPLimits.headerCount) header lines (headers are bounded)")
            }
            guard let colon = line.firstIndex(of: ":") else { continue }
            let name = line[..<colon].lowercased()
            let value = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
            // A repeated Content-Length that disagrees is a smuggling attempt, not a response.
            if name == "content-length", let earlier = headers[name], earlier != value {
                throw TransportError(.protocolViolation, "\(description) sent two different Content-Length headers")
            }
            headers[name] = value
        }
    }

    /// A chunked body: hex sizes (bounded), each chunk followed by CRLF, then trailers.
    private func readChunked(into body: BodyCollector, buffer: UnsafeMutableRawPointer) throws {
        while !body.full {
            var lineBudget = 4096
            let sizeLine = try readLine(budget: &lineBudget)
            let digits = sizeLine.split(separator: ";", maxSplits: 1, omittingEmptySubsequences: false).first.map { $0.trimmingCharacters(in: .whitespaces) } ?? ""
            guard !digits.isEmpty, digits.count <= 15, digits.allSatisfy(\.isHexDigit), let size = Int(digits, radix: 16) else {
                throw TransportError(.protocolViolation, "\(description) sent a malformed chunk size '\(Sanitized.text(sizeLine, limit: 40))'")
            }
            if size == 0 {
                var trailers = 8192
                while try !readLine(budget: &trailers).isEmpty {}
                return
            }
            try copy(size, buffer: buffer, into: body)
            var crlf = 16
            guard try readLine(budget: &crlf).isEmpty else {
                throw TransportError(.protocolViolation, "\(description) sent a chunk longer than its size")
            }
        }
    }

    private func copy(_ count: Int, buffer: UnsafeMutableRawPointer, into body: BodyCollector) throws {
        var left = count
        while left > 0, !body.full {
            let n = try read(into: buffer, count: min(left, 1 << 20))
            guard n > 0 else { throw TransportError(.connection, "\(description) closed the connection with \(left) bytes of the body unsent") }
            try body.deliver(UnsafeRawBufferPointer(start: buffer, count: n))
            left -= n
        }
    }
}
