import Foundation
import Support

/// A lease on a remote's prune: one object written only if absent.
///
/// Where the store honours `If-None-Match: *` (a conditional write; SeaweedFS and AWS S3 do) a
/// second writer gets 412 and waits its turn. Where it does not (`rclone serve s3` overwrites),
/// the lease is written, read back after a pause, and kept only if it still holds this run's
/// token: two prunes starting within that pause can still both run, which is safe for this
/// host's own folder (each removes manifest first, then the copy) but not exclusive. A lease
/// older than an hour was left by a killed run and is taken over.
public struct RemoteLease: Sendable {
    let s3: S3Client
    let key: String

    /// What the lease object holds (JSON): who holds it, this run's token, and since when.
    struct Record: Codable {
        let holder: String
        let token: String
        let at: String

        /// The object's bytes, or nil when it is not a lease record.
        init?(_ bytes: [UInt8]?) {
            guard let bytes, let record = try? JSONDecoder().decode(Record.self, from: Data(bytes)) else { return nil }
            self = record
        }

        init(holder: String, token: String, at: String) {
            self.holder = holder
            self.token = token
            self.at = at
        }

        /// One line, in the form earlier releases wrote.
        var bytes: [UInt8] { Array("{\"holder\": \"\(holder)\", \"token\": \"\(token)\", \"at\": \"\(at)\"}\n".utf8) }
    }

    /// - Throws: `Failure` `offsite.lease_held` when another prune holds it (or took it at the
    ///   same moment); the store's failures.
    static func take(_ s3: S3Client, key: String, holder: String, now: Date) throws -> RemoteLease {
        let token = UUID().uuidString
        let record = Record(holder: holder, token: token, at: ISO8601DateFormatter().string(from: now))
        for attempt in 0..<2 {
            if try s3.put(key, bytes: record.bytes, ifNoneMatch: true, what: "taking the prune lease \(key)") {
                // A store that ignores If-None-Match just overwrote any other lease: read it back.
                Thread.sleep(forTimeInterval: 0.5)
                guard Record(try s3.get(key, what: "reading the prune lease \(key)"))?.token == token else {
                    throw Failure(.offsiteLeaseHeld, "remote '\(s3.remote)': another prune took the lease \(key) at the same time", hint: "run again later")
                }
                return RemoteLease(s3: s3, key: key)
            }
            let existing = try s3.get(key, what: "reading the prune lease \(key)")
            let taken = Record(existing).flatMap { ISO8601DateFormatter().date(from: $0.at) }
            if attempt == 0, let taken, now.timeIntervalSince(taken) > 3600 {
                try s3.delete(key, what: "removing a stale prune lease \(key)")
                continue
            }
            let text = existing.map { String(decoding: $0, as: UTF8.self) } ?? ""
            throw Failure(.offsiteLeaseHeld, "remote '\(s3.remote)': another prune holds the lease \(key): \(Sanitized.text(text.trimmingCharacters(in: .whitespacesAndNewlines), limit: 200))",
                          hint: "wait for it to finish; a lease older than an hour is taken over")
        }
        throw Failure(.offsiteLeaseHeld, "remote '\(s3.remote)': the prune lease \(key) could not be taken", hint: "run again later")
    }

    /// Removes the lease (best effort: a lease left behind is taken over after an hour).
    public func release() {
        try? s3.delete(key, what: "releasing the prune lease \(key)")
    }
}
