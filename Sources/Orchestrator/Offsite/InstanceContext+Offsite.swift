import Backup
import Foundation
import Offsite
import Support

/// The S3 client of a remote, from the environment and its `[[offsite]]` table.
extension Runtime {
    /// The S3 client for one remote: credentials from the AWS SDKs' chain (`CredentialChain`,
    /// refreshed before temporary ones expire), region and endpoint from the table or else the
    /// environment and AWS config, the remote's deadlines and retries, trust roots from
    /// `ca_bundle`, `AWS_CA_BUNDLE` or the profile, a proxy from `HTTPS_PROXY`/`HTTP_PROXY`
    /// unless `NO_PROXY`, and a checkpoint that stops any network wait within a second of
    /// SIGINT or SIGTERM (docs/offsite.md).
    /// - Throws: `Failure` `offsite.credentials_missing` (and the other credential codes),
    ///   `offsite.endpoint_invalid` for a bad `AWS_ENDPOINT_URL_S3`, `offsite.proxy_invalid`.
    func client(_ remote: OffsiteConfig) throws -> S3Client {
        let checkpoint: @Sendable () throws -> Void = { [self] in
            try checkInterruption("the wait for remote '\(remote.name)' stopped; nothing partial is listed as good in the store")
        }
        var chain = CredentialChain(environment: environment, remote: remote.name)
        chain.checkpoint = checkpoint
        let provider = try CredentialProvider(chain)
        // What the table leaves out comes from the environment and the AWS config, as in the SDKs.
        let region = remote.regionSet ? remote.region : chain.region
        var endpoint = remote.endpoint
        if !remote.endpointSet {
            let text = chain.env("AWS_ENDPOINT_URL_S3") ?? chain.env("AWS_ENDPOINT_URL") ?? "https://s3.\(region).amazonaws.com"
            do {
                endpoint = try Endpoint(parsing: text)
            } catch let failure as Failure {
                throw Failure(failure.code, "remote '\(remote.name)': AWS_ENDPOINT_URL_S3: \(failure.message)", hint: "set endpoint in its [[offsite]] table, or fix the variable")
            }
        }
        let caBundle = remote.caBundle ?? chain.env("AWS_CA_BUNDLE") ?? chain.profileValue("ca_bundle")
        let host = remote.pathStyle ? endpoint : Endpoint(secure: endpoint.secure, host: "\(remote.bucket).\(endpoint.host)", port: endpoint.port)
        let proxy = try Proxy.forEndpoint(host, environment: environment)
        return S3Client(remote: remote.name, endpoint: endpoint, bucket: remote.bucket, pathStyle: remote.pathStyle,
                        signer: SigV4(credentials: provider.initial, region: region), clock: clock,
                        retry: RetryPolicy(attempts: remote.attempts), deadlines: remote.deadlines, caBundle: caBundle,
                        credentialProvider: provider, proxy: proxy, checkpoint: checkpoint)
    }
}

/// An instance's remotes as `Offsite` values: the offsite signing key, and the `RemoteStore`
/// of each remote.
extension InstanceContext {
    /// The instance's copies in `remote`, checked with `signingKey` (nil: this host has none).
    func remoteStore(_ remote: OffsiteConfig, signingKey: SigningKey?) throws -> RemoteStore {
        // A database of an instance of several keeps its copies under a prefix of its own: `<prefix>/<database>/<host>/`.
        RemoteStore(s3: try runtime.client(remote), prefix: remotePrefix(remote.prefix), hostId: remote.hostId, instance: config.name,
                    signingKey: signingKey, keyPath: signingKeyPath)
    }

    /// The key prefix of this database's copies in a remote: `<prefix>/<database>` for a
    /// database of an instance of several, else the remote's prefix.
    func remotePrefix(_ prefix: String) -> String {
        guard let database = config.databaseName else { return prefix }
        return prefix.isEmpty ? database : prefix + "/" + database
    }

    /// The remotes a command acts on: the one named, or all of the instance's.
    func remotes(_ name: String?) throws -> [OffsiteConfig] {
        if let name { return [try config.remote(name)] }
        guard !config.offsite.isEmpty else { _ = try config.remote(nil); return [] }
        return config.offsite
    }

    /// Where the instance's offsite signing key lives: `offsite-signing.key` in its folder.
    var signingKeyPath: String { config.folder + "/offsite-signing.key" }

    /// The instance's offsite signing key, or nil when it has none. With `create`, a missing
    /// key is made (0600, durably, never over a file) and its path announced once with a
    /// warning to back it up. A key file group or others can read is refused, as the age
    /// identity file is: whoever can read it can sign a forged copy.
    /// - Throws: `Failure` `offsite.signing_key_invalid` for a file that is not a key,
    ///   `offsite.signing_key_exposed` for a mode wider than 0600,
    ///   `offsite.signing_key_unreadable`, the file's write failures.
    func signingKey(create: Bool) throws -> SigningKey? {
        let path = signingKeyPath
        var info = stat()
        if stat(path, &info) == 0 {
            guard info.st_mode & S_IFMT == S_IFREG else {
                throw Failure(.offsiteSigningKeyInvalid, "\(path) is not a file, so it is not a deployctl offsite signing key",
                              hint: "move it away and put the key file back from your backup of it (docs/offsite.md, 'Signing key')")
            }
            let mode = info.st_mode & 0o777
            guard mode & 0o077 == 0 else {
                throw Failure(.offsiteSigningKeyExposed, "the offsite signing key \(path) has mode \(String(mode, radix: 8)): group or others can read it (and sign copies a restore would accept), so it is not used",
                              hint: "chmod 600 \(path)")
            }
            guard let text = try? String(contentsOfFile: path, encoding: .utf8) else {
                throw Failure(.offsiteSigningKeyUnreadable, "cannot read the offsite signing key \(path)", hint: "check its owner and mode (0600, readable by the user running deployctl)")
            }
            return try SigningKey(fileText: text, path: path)
        }
        let code = errno
        guard code == ENOENT else {
            throw Failure(.offsiteSigningKeyUnreadable, "cannot read the offsite signing key \(path): \(String(cString: strerror(code)))",
                          hint: "check its owner and mode (0600, readable by the user running deployctl)")
        }
        guard create else { return nil }
        let key = try writeSigningKey()
        runtime.events(.notice("made this instance's offsite signing key \(path) (key id \(key.id)): every copy pushed offsite is signed with it, and restore --remote accepts only copies it signed. Back the file up now, away from the bucket (docs/offsite.md, 'Signing key'); copy it to every host that restores this instance's copies"))
        return key
    }

    /// Makes a new signing key file (0600, durably) where none is.
    /// - Throws: `Failure` `keygen.file_exists` when the file is there (or appears meanwhile):
    ///   a key is never replaced (copies signed with it would no longer restore); the write's failures.
    func writeSigningKey() throws -> SigningKey {
        let path = signingKeyPath
        let key = try SigningKey.generate()
        do {
            try DurableFile.write(Data(key.fileText.utf8), to: path, mode: 0o600, replace: false)
        } catch let failure as Failure where failure.code == .fileExists {
            throw Failure(.keygenFileExists, "\(path) exists; a signing key is never replaced (copies signed with it would no longer restore without --allow-unsigned)",
                          hint: "to rotate it, follow docs/offsite.md, 'Signing key' (move it aside to offsite-signing.key.old first)")
        }
        return key
    }
}

extension RemoteBackups {
    /// `deployctl keygen --signing INSTANCE`: makes the instance's offsite signing key on
    /// purpose, before any push (`instances/<name>/offsite-signing.key`, 0600, never over an
    /// existing file). Returns its path and key id.
    /// - Throws: `Failure` `keygen.file_exists` when the instance has a key already, the
    ///   instance's and the write's failures.
    public func makeSigningKey(instance name: String) throws -> (path: String, id: String) {
        let instance = try runtime.instance(name, for: nil)
        var info = stat()
        if lstat(instance.signingKeyPath, &info) == 0 {
            let id = (try? instance.signingKey(create: false))?.id
            throw Failure(.keygenFileExists, "instance '\(name)' has an offsite signing key already: \(instance.signingKeyPath)\(id.map { " (key id \($0))" } ?? ""); a signing key is never replaced (copies signed with it would no longer restore without --allow-unsigned)",
                          hint: "keep using it; to rotate it, follow docs/offsite.md, 'Signing key'")
        }
        let key = try instance.writeSigningKey()
        return (instance.signingKeyPath, key.id)
    }
}
