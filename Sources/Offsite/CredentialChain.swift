import Foundation
import Support

/// The AWS SDKs' default credential chain, in their order: the environment
/// (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`), web identity
/// (`AWS_WEB_IDENTITY_TOKEN_FILE` + `AWS_ROLE_ARN`, through STS `AssumeRoleWithWebIdentity`),
/// the shared credentials and config files with profiles (`AWS_PROFILE`, `AWS_DEFAULT_PROFILE`,
/// `[profile x]`, static keys or `credential_process`), ECS container credentials
/// (`AWS_CONTAINER_CREDENTIALS_RELATIVE_URI` / `_FULL_URI`), then EC2 instance metadata (IMDSv2:
/// a token first; `AWS_EC2_METADATA_SERVICE_ENDPOINT` overrides the address,
/// `AWS_EC2_METADATA_DISABLED=true` skips it). An empty variable counts as unset, as in the SDKs.
public struct CredentialChain: Sendable {
    public let environment: [String: String]
    public let remote: String
    /// Runs between the slices of every network wait; throws to stop.
    public var checkpoint: @Sendable () throws -> Void = {}

    public init(environment: [String: String], remote: String) {
        self.environment = environment
        self.remote = remote
    }

    /// A variable's value, nil when unset or empty.
    public func env(_ name: String) -> String? { environment[name].flatMap { $0.isEmpty ? nil : $0 } }

    public var profileName: String { env("AWS_PROFILE") ?? env("AWS_DEFAULT_PROFILE") ?? "default" }
    var home: String { env("HOME") ?? NSHomeDirectory() }
    var credentialsFile: String { env("AWS_SHARED_CREDENTIALS_FILE") ?? home + "/.aws/credentials" }
    var configFile: String { env("AWS_CONFIG_FILE") ?? home + "/.aws/config" }

    /// The region for STS: `AWS_REGION`, `AWS_DEFAULT_REGION`, the profile's, else us-east-1.
    public var region: String { env("AWS_REGION") ?? env("AWS_DEFAULT_REGION") ?? profileValue("region") ?? "us-east-1" }

    /// Resolves the first source that has credentials.
    /// - Throws: `Failure` `.permission` when none has, naming where it looked; a source that is
    ///   configured but fails (STS refuses, the process exits non-zero) is `.permission` too.
    public func resolve() throws -> Credentials {
        if let found = try fromEnvironment() ?? fromWebIdentity() ?? fromProfile() ?? fromContainer() ?? fromInstanceMetadata() {
            return found
        }
        let looked = "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, web identity (AWS_WEB_IDENTITY_TOKEN_FILE), profile [\(profileName)] in \(credentialsFile) and \(configFile), "
            + "container credentials (AWS_CONTAINER_CREDENTIALS_*_URI), " + (env("AWS_EC2_METADATA_DISABLED")?.lowercased() == "true" ? "instance metadata (disabled)" : "instance metadata at \(metadataEndpoint)")
        throw Failure(.offsiteCredentialsMissing, "remote '\(remote)': no credentials found (looked for \(looked))",
                      hint: "export AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or write them to profile [\(profileName)] of \(credentialsFile) (docs/offsite.md, 'Credentials')")
    }

    // MARK: Sources

    func fromEnvironment() throws -> Credentials? {
        guard let id = env("AWS_ACCESS_KEY_ID") else { return nil }
        guard let secret = env("AWS_SECRET_ACCESS_KEY") else {
            throw Failure(.offsiteCredentialsSourceFailed, "remote '\(remote)': AWS_ACCESS_KEY_ID is set but AWS_SECRET_ACCESS_KEY is not",
                          hint: "export AWS_SECRET_ACCESS_KEY too, or unset AWS_ACCESS_KEY_ID to use the credentials file")
        }
        return Credentials(accessKeyId: id, secretAccessKey: secret, sessionToken: env("AWS_SESSION_TOKEN"), source: "the environment")
    }

    func fromWebIdentity() throws -> Credentials? {
        guard let tokenFile = env("AWS_WEB_IDENTITY_TOKEN_FILE") ?? profileValue("web_identity_token_file"),
              let role = env("AWS_ROLE_ARN") ?? profileValue("role_arn") else { return nil }
        guard let token = try? String(contentsOfFile: tokenFile, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines), !token.isEmpty else {
            throw Failure(.offsiteCredentialsSourceFailed, "remote '\(remote)': the web identity token file \(tokenFile) cannot be read",
                          hint: "check AWS_WEB_IDENTITY_TOKEN_FILE (the orchestrator mounts it) and its permissions")
        }
        let session = env("AWS_ROLE_SESSION_NAME") ?? "deployctl-\(getpid())"
        let endpoint = env("AWS_ENDPOINT_URL_STS") ?? "https://sts.\(region).amazonaws.com"
        let form = [("Action", "AssumeRoleWithWebIdentity"), ("Version", "2011-06-15"), ("RoleArn", role),
                    ("RoleSessionName", session), ("WebIdentityToken", token)]
            .map { "\($0.0)=\(SigV4.uriEncode($0.1, slash: true))" }.joined(separator: "&")
        let response = try fetch(endpoint + "/", method: "POST", headers: [("Content-Type", "application/x-www-form-urlencoded")],
                                 body: Array(form.utf8), what: "STS AssumeRoleWithWebIdentity")
        let document = XMLNode.parse(response.body)
        guard response.status == 200, let result = document?.child("AssumeRoleWithWebIdentityResult")?.child("Credentials") else {
            let error = document?.child("Error")
            throw Failure(.offsiteWebIdentityRefused, "remote '\(remote)': STS at \(endpoint) refused the web identity for role \(Sanitized.text(role, limit: 120)): \(response.status) "
                              + Sanitized.text((error?.value("Code") ?? "") + " " + (error?.value("Message") ?? ""), limit: 200),
                          hint: "check AWS_ROLE_ARN and that the role trusts this identity provider")
        }
        return try credentials(id: result.value("AccessKeyId"), secret: result.value("SecretAccessKey"), token: result.value("SessionToken"),
                               expiration: result.value("Expiration"), source: "web identity (role \(Sanitized.text(role, limit: 120)))")
    }

    func fromProfile() throws -> Credentials? {
        let fromCredentials = Self.section(profileName, in: credentialsFile, config: false)
        let fromConfig = Self.section(profileName, in: configFile, config: true)
        // A profile named on purpose that is in neither file is a mistake, as the AWS CLI says:
        // falling through to instance metadata would sign as the machine's role instead.
        if fromCredentials.isEmpty && fromConfig.isEmpty, env("AWS_PROFILE") != nil || env("AWS_DEFAULT_PROFILE") != nil {
            throw Failure(.offsiteProfileMissing, "remote '\(remote)': the profile [\(Sanitized.text(profileName, limit: 80))] named by AWS_PROFILE/AWS_DEFAULT_PROFILE is in neither \(credentialsFile) nor \(configFile)",
                          hint: "fix the profile's name, or unset AWS_PROFILE to use the default credential chain")
        }
        let values = fromConfig.merging(fromCredentials) { _, credentials in credentials }
        if let id = values["aws_access_key_id"], let secret = values["aws_secret_access_key"] {
            let file = fromCredentials["aws_access_key_id"] != nil ? credentialsFile : configFile
            return Credentials(accessKeyId: id, secretAccessKey: secret, sessionToken: values["aws_session_token"], source: "profile [\(profileName)] of \(file)")
        }
        if let command = values["credential_process"] { return try fromProcess(command) }
        return nil
    }

    /// `credential_process`: a command that prints `{"Version": 1, "AccessKeyId": …}` (run by
    /// /bin/sh, its stderr passed through, at most 60 s).
    func fromProcess(_ command: String) throws -> Credentials {
        let process = Process()
        // In a process group of its own (setsid execs the shell in place), so that a timeout or an
        // interrupt stops the helper and everything it started, not the shell alone.
        let setsid = FileManager.default.isExecutableFile(atPath: "/usr/bin/setsid")
        process.executableURL = URL(fileURLWithPath: setsid ? "/usr/bin/setsid" : "/bin/sh")
        process.arguments = setsid ? ["/bin/sh", "-c", command] : ["-c", command]
        process.environment = environment
        let out = Pipe()
        process.standardOutput = out
        process.standardInput = FileHandle.nullDevice
        do { try process.run() } catch {
            throw Failure(.offsiteCredentialsSourceFailed, "remote '\(remote)': credential_process of profile [\(profileName)] cannot be started: \(error)")
        }
        nonisolated(unsafe) var output = Data()
        let reader = DispatchGroup()
        reader.enter()
        DispatchQueue.global().async {
            output = out.fileHandleForReading.readDataToEndOfFile()
            reader.leave()
        }
        let end = Date().addingTimeInterval(60)
        while process.isRunning {
            do {
                try checkpoint()
                guard Date() < end else { throw Failure(.offsiteCredentialsSourceFailed, "remote '\(remote)': credential_process of profile [\(profileName)] did not finish within 60 s") }
            } catch {
                if setsid { kill(-process.processIdentifier, SIGKILL) }
                process.terminate()
                throw error
            }
            Thread.sleep(forTimeInterval: 0.05)
        }
        reader.wait()
        guard process.terminationStatus == 0 else {
            throw Failure(.offsiteCredentialsSourceFailed, "remote '\(remote)': credential_process of profile [\(profileName)] exited with status \(process.terminationStatus)",
                          hint: "run it by hand to see why: \(Sanitized.text(command, limit: 200))")
        }
        guard let json = try? JSONSerialization.jsonObject(with: output.prefix(1 << 20)) as? [String: Any], (json["Version"] as? Int) == 1 else {
            throw Failure(.offsiteCredentialsSourceFailed, "remote '\(remote)': credential_process of profile [\(profileName)] did not print a Version 1 JSON document")
        }
        return try credentials(id: json["AccessKeyId"] as? String, secret: json["SecretAccessKey"] as? String, token: json["SessionToken"] as? String,
                               expiration: json["Expiration"] as? String, source: "credential_process of profile [\(profileName)]")
    }

    func fromContainer() throws -> Credentials? {
        let url: String
        if let relative = env("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI") {
            url = "http://169.254.170.2" + relative
        } else if let full = env("AWS_CONTAINER_CREDENTIALS_FULL_URI") {
            // As in the SDKs: plain http only to a loopback or the ECS/EKS agents' addresses.
            let lower = full.lowercased()
            let allowed = ["http://127.", "http://localhost", "http://[::1]", "http://169.254.170.2", "http://169.254.170.23", "http://[fd00:ec2::23]"]
            guard lower.hasPrefix("https://") || allowed.contains(where: { lower.hasPrefix($0) }) else {
                throw Failure(.offsiteCredentialsSourceFailed, "remote '\(remote)': AWS_CONTAINER_CREDENTIALS_FULL_URI must be https, or http to a loopback or the container agent's address")
            }
            url = full
        } else {
            return nil
        }
        var headers = [(String, String)]()
        if let token = env("AWS_CONTAINER_AUTHORIZATION_TOKEN") {
            headers.append(("Authorization", token))
        } else if let file = env("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE") {
            guard let token = try? String(contentsOfFile: file, encoding: .utf8) else {
                throw Failure(.offsiteCredentialsSourceFailed, "remote '\(remote)': AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE \(file) cannot be read")
            }
            headers.append(("Authorization", token.trimmingCharacters(in: .whitespacesAndNewlines)))
        }
        let response = try fetch(url, method: "GET", headers: headers, body: [], what: "container credentials")
        guard response.status == 200, let json = try? JSONSerialization.jsonObject(with: Data(response.body)) as? [String: Any] else {
            throw Failure(.offsiteCredentialsSourceFailed, "remote '\(remote)': the container credentials endpoint answered \(response.status): \(Sanitized.text(response.text, limit: 120))")
        }
        return try credentials(id: json["AccessKeyId"] as? String, secret: json["SecretAccessKey"] as? String, token: json["Token"] as? String,
                               expiration: json["Expiration"] as? String, source: "container credentials")
    }

    var metadataEndpoint: String {
        var endpoint = env("AWS_EC2_METADATA_SERVICE_ENDPOINT") ?? "http://169.254.169.254"
        while endpoint.hasSuffix("/") { endpoint.removeLast() }
        return endpoint
    }

    /// IMDSv2: a session token first (PUT), then the role's name and its credentials. Not
    /// reachable within a second (not on EC2): no credentials from here.
    func fromInstanceMetadata() throws -> Credentials? {
        guard env("AWS_EC2_METADATA_DISABLED")?.lowercased() != "true" else { return nil }
        let quick = Deadlines(connect: .seconds(1), idle: .seconds(2), request: .seconds(3))
        let token: HTTPResponse
        do {
            token = try fetch(metadataEndpoint + "/latest/api/token", method: "PUT", headers: [("X-aws-ec2-metadata-token-ttl-seconds", "21600")],
                              body: [], what: "instance metadata", deadlines: quick)
        } catch let failure as Failure where failure.code == .offsiteCredentialsUnreachable {
            return nil
        }
        guard token.status == 200, !token.body.isEmpty, token.body.count < 4096 else { return nil }
        let header = [("X-aws-ec2-metadata-token", token.text.trimmingCharacters(in: .whitespacesAndNewlines))]
        let base = metadataEndpoint + "/latest/meta-data/iam/security-credentials/"
        let roles = try fetch(base, method: "GET", headers: header, body: [], what: "instance metadata", deadlines: quick)
        guard roles.status == 200, let role = roles.text.split(whereSeparator: \.isNewline).first.map(String.init), !role.isEmpty,
              role.allSatisfy({ $0.isLetter || $0.isNumber || "+=,.@_-".contains($0) }) else {
            throw Failure(.offsiteCredentialsSourceFailed, "remote '\(remote)': this instance's metadata names no IAM role (\(roles.status))",
                          hint: "attach an instance profile with a role that may use the bucket, or give keys another way")
        }
        let response = try fetch(base + role, method: "GET", headers: header, body: [], what: "instance metadata", deadlines: quick)
        guard response.status == 200, let json = try? JSONSerialization.jsonObject(with: Data(response.body)) as? [String: Any] else {
            throw Failure(.offsiteCredentialsSourceFailed, "remote '\(remote)': instance metadata gave no credentials for role \(role) (\(response.status))")
        }
        return try credentials(id: json["AccessKeyId"] as? String, secret: json["SecretAccessKey"] as? String, token: json["Token"] as? String,
                               expiration: json["Expiration"] as? String, source: "instance metadata (role \(role))")
    }

    // MARK: Helpers

    func credentials(id: String?, secret: String?, token: String?, expiration: String?, source: String) throws -> Credentials {
        guard let id, !id.isEmpty, let secret, !secret.isEmpty else {
            throw Failure(.offsiteCredentialsSourceFailed, "remote '\(remote)': \(source) gave no AccessKeyId and SecretAccessKey")
        }
        var expires: Date?
        if let expiration {
            let plain = ISO8601DateFormatter()
            let fractional = ISO8601DateFormatter()
            fractional.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
            expires = plain.date(from: expiration) ?? fractional.date(from: expiration)
            guard let expires else { throw Failure(.offsiteCredentialsSourceFailed, "remote '\(remote)': \(source) gave an expiration that is not a date: \(Sanitized.text(expiration, limit: 40))") }
            // Temporary credentials already past their expiration would be refused by the store
            // (or, with a clock that is behind, used after they should have stopped): never used.
            let now = Date()
            guard expires > now else {
                throw Failure(.offsiteCredentialsExpired,
                              "remote '\(remote)': \(source) gave temporary credentials that expired at \(Self.stamp(expires)) (this host's clock says \(Self.stamp(now))); they are not used",
                              hint: "check what that source hands out (for credential_process, run the command by hand) and this host's clock (timedatectl); then run the command again")
            }
        }
        return Credentials(accessKeyId: id, secretAccessKey: secret, sessionToken: token.flatMap { $0.isEmpty ? nil : $0 }, source: source, expiration: expires)
    }

    /// A time as the SDKs print one: `2026-12-06T21:00:00Z`.
    static func stamp(_ date: Date) -> String { ISO8601DateFormatter().string(from: date) }

    /// One request to a credentials endpoint (`http(s)://host[:port]/path`).
    /// - Throws: `Failure` `offsite.credentials_unreachable` when it cannot be reached, a TLS
    ///   code (`offsite.tls_host_mismatch`, …) when its certificate is refused.
    func fetch(_ url: String, method: String, headers: [(String, String)], body: [UInt8], what: String,
               deadlines: Deadlines = Deadlines(connect: .seconds(5), idle: .seconds(10), request: .seconds(30))) throws -> HTTPResponse {
        let schemeEnd = url.range(of: "://")?.upperBound ?? url.startIndex
        let slash = url[schemeEnd...].firstIndex(of: "/") ?? url.endIndex
        let endpoint = try Endpoint(parsing: String(url[..<slash]))
        let target = slash == url.endIndex ? "/" : String(url[slash...])
        let client = HTTPClient(endpoint: endpoint, deadlines: deadlines, caBundle: env("AWS_CA_BUNDLE"), checkpoint: checkpoint)
        do {
            return try client.send(method: method, target: target, headers: headers, body: body.isEmpty && method != "PUT" && method != "POST" ? .empty : .bytes(body))
        } catch let error as TransportError {
            // A refused certificate is the same refusal as the store's, whichever endpoint it is.
            let place = "\(what) at \(endpoint.secure ? "https" : "http")://\(endpoint.hostHeader)"
            if case .certificate(let problem) = error.kind {
                throw Failure(S3Client.code(problem), "remote '\(remote)': \(place) was not trusted: \(Sanitized.text(error.message, limit: 300))",
                              hint: "check that endpoint's certificate, or point AWS_CA_BUNDLE at the CA that signed it")
            }
            throw Failure(.offsiteCredentialsUnreachable, "remote '\(remote)': \(place) cannot be reached: \(Sanitized.text(error.message, limit: 200))")
        }
    }

    /// A value of the chosen profile in the config file (`[profile x]`, or `[default]`).
    public func profileValue(_ key: String) -> String? {
        Self.section(profileName, in: configFile, config: true)[key].flatMap { $0.isEmpty ? nil : $0 }
    }

    /// The keys of one profile's section: `[name]` in the credentials file, `[profile name]`
    /// (or `[default]`) in the config file. Keys lower-cased; `#` and `;` lines are comments.
    static func section(_ profile: String, in file: String, config: Bool) -> [String: String] {
        guard let text = try? String(contentsOfFile: file, encoding: .utf8) else { return [:] }
        let wanted = config && profile != "default" ? ["profile \(profile)"] : config ? ["default", "profile default"] : [profile]
        var section = ""
        var values = [String: String]()
        for raw in text.split(whereSeparator: \.isNewline) {
            let line = raw.trimmingCharacters(in: .whitespaces)
            if line.hasPrefix("#") || line.hasPrefix(";") || line.isEmpty { continue }
            if line.hasPrefix("[") && line.hasSuffix("]") {
                section = String(line.dropFirst().dropLast()).split(separator: " ", omittingEmptySubsequences: true).joined(separator: " ")
                continue
            }
            guard wanted.contains(section), let equals = line.firstIndex(of: "=") else { continue }
            values[line[..<equals].trimmingCharacters(in: .whitespaces).lowercased()] = line[line.index(after: equals)...].trimmingCharacters(in: .whitespaces)
        }
        return values
    }
}

/// Credentials for a long command: resolved once, then again before temporary ones expire
/// (within 5 minutes of their expiration), so a push that outlasts them goes on.
public final class CredentialProvider: @unchecked Sendable {
    let chain: CredentialChain
    private let lock = NSLock()
    private var cached: Credentials

    /// - Throws: what `CredentialChain.resolve` throws.
    public init(_ chain: CredentialChain) throws {
        self.chain = chain
        cached = try chain.resolve()
    }

    public var initial: Credentials { lock.lock(); defer { lock.unlock() }; return cached }

    /// The credentials to sign the next request with.
    public func current(now: Date = Date()) throws -> Credentials {
        lock.lock(); defer { lock.unlock() }
        if let expiration = cached.expiration, now >= expiration.addingTimeInterval(-300) {
            cached = try chain.resolve()
        }
        return cached
    }
}
