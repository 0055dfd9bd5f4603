import Backup
import Foundation
import Support

/// One instance's copies in one remote: `<prefix>/<host>/<name>` with its manifest
/// `<name>.json` beside it, uploaded last and carrying the instance's authenticator
/// (`SigningKey`). Lists them (`copies`), pushes one (`push`), fetches one into a local
/// backups folder (`fetch`), removes one (`remove`), and takes the prune lease (`RemoteLease`).
/// Which instance, which remotes, events and locks are the caller's.
public struct RemoteStore: Sendable {
    public let s3: S3Client
    /// The remote's prefix (may be empty).
    public let prefix: String
    /// This host's folder name (`host_id`).
    public let hostId: String
    /// The instance whose copies these are.
    public let instance: String
    /// The instance's signing key on this host (nil: none), and where it is (for messages).
    public let signingKey: SigningKey?
    public let keyPath: String

    public init(s3: S3Client, prefix: String, hostId: String, instance: String, signingKey: SigningKey?, keyPath: String) {
        self.s3 = s3
        self.prefix = prefix
        self.hostId = hostId
        self.instance = instance
        self.signingKey = signingKey
        self.keyPath = keyPath
    }

    /// The remote's name in the instance's config.
    public var name: String { s3.remote }

    /// `<prefix>/<host>/` (this host's unless another is named).
    public func folder(host: String? = nil) -> String {
        (prefix.isEmpty ? "" : prefix + "/") + (host ?? hostId) + "/"
    }

    /// The name of the prune lease object in this host's folder.
    var leaseKey: String { folder() + ".prune-lease" }
}

/// A backup in an object store (see `RemoteStore`).
public struct RemoteBackup: Sendable {
    public let name: String
    public let key: String
    public let host: String
    /// The object's size in the store.
    public let bytes: Int64
    public let etag: String
    public let manifest: Manifest?
    /// Why it is not a good copy (no manifest: an unfinished push; a size that differs from the
    /// manifest's; an authenticator that does not check out); nil when it is good.
    public let issue: CopyProblem?
    /// Whether the local backups folder has it too.
    public let local: Bool

    public var createdAt: Date? { manifest?.createdAt }
    public var label: String { manifest?.label ?? "?" }
    /// `issue` in words, for people.
    public var problem: String? { issue?.description }
}

/// Why a remote copy is not a good one. Decides what may be done with it (never restored,
/// counted or removed by a prune) and the failure code when it is asked for by name.
public enum CopyProblem: Sendable, Equatable, CustomStringConvertible {
    /// An unfinished push: the copy is there, its manifest is not.
    case noManifest
    case manifestUnreadable
    case manifestVanished
    /// The manifest's authenticator does not show it was made by a holder of the instance's key.
    case unauthenticated(Authenticity)
    /// The manifest names another backup.
    case namesOther(String)
    case sizeDiffers(store: Int64, manifest: Int64)
    /// The store's ETag is not the one recorded at push.
    case replaced(etag: String, recorded: String)

    public var description: String {
        switch self {
        case .noManifest: return "no manifest: an unfinished push (never restored; the next push replaces it)"
        case .manifestUnreadable: return "its manifest cannot be read"
        case .manifestVanished: return "its manifest vanished while listing"
        case .unauthenticated(let why): return "not made by a holder of this instance's key: \(why); never restored without --allow-unsigned"
        case .namesOther(let name): return "its manifest names \(name)"
        case .sizeDiffers(let store, let manifest): return "\(store) bytes in the store, \(manifest) in its manifest"
        case .replaced(let etag, let recorded):
            return "the store's ETag \(etag) is not the one recorded at push (\(recorded)): replaced or damaged in the store"
        }
    }

    /// The code of a failure that names this copy.
    public var code: FailureCode {
        switch self {
        case .unauthenticated(let why): return why.code
        case .sizeDiffers, .replaced: return .offsiteCopyDamaged
        case .noManifest, .manifestUnreadable, .manifestVanished, .namesOther: return .offsiteCopyUnusable
        }
    }
}

/// Why a manifest's authenticator is not good enough.
public enum Authenticity: Sendable, Equatable, CustomStringConvertible {
    /// This host has no signing key to check it with (its path).
    case noKey(String)
    /// The manifest carries no authenticator.
    case unsigned
    /// Signed with another key (its id).
    case otherKey(String)
    /// Signed with this key's id but it does not match: the manifest or its name was changed.
    case forged

    /// The decision for one manifest: nil when it is good enough (valid, or unsigned copies
    /// are allowed).
    static func problem(_ verdict: SigningKey.Verdict?, keyPath: String, allowUnsigned: Bool) -> Authenticity? {
        guard !allowUnsigned else { return nil }
        switch verdict {
        case .valid?: return nil
        case nil: return .noKey(keyPath)
        case .missing?: return .unsigned
        case .otherKey(let id)?: return .otherKey(id)
        case .wrong?: return .forged
        }
    }

    public var description: String {
        switch self {
        case .noKey(let path): return "this host has no offsite signing key (\(path)) to check it with"
        case .unsigned: return "its manifest carries no authenticator"
        case .otherKey(let id): return "its manifest was signed with another key (id \(id))"
        case .forged: return "its manifest's authenticator does not match (the manifest or its name was changed)"
        }
    }

    public var code: FailureCode {
        switch self {
        case .noKey, .unsigned: return .offsiteManifestUnsigned
        case .otherKey: return .offsiteManifestOtherKey
        case .forged: return .offsiteManifestForged
        }
    }
}
