import ArgumentParser
import Foundation
import Orchestrator

struct Keygen: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Write a new age identity file (mode 0600) for encrypted backups and print its public key.",
        discussion: """
            The file is what age-keygen writes: 'age -d -i FILE' opens backups encrypted to its public key, \
            without deployctl. Put the public key in [encryption] recipients and keep the file off the hosts \
            that only take backups; point identity_file at it where backups are verified or restored.
            An existing file is never replaced.
            Example: deployctl keygen --output /etc/deployctl/prod.agekey
            With --signing INSTANCE it makes the instance's offsite signing key instead \
            (instances/INSTANCE/offsite-signing.key, 0600), which signs every manifest pushed offsite; \
            the first push makes one if none exists. Back it up (docs/offsite.md, 'Signing key').
            Example: deployctl keygen --signing prod
            """)

    @OptionGroup var global: GlobalOptions

    @Option(help: ArgumentHelp("The identity file to create; it must not exist.", valueName: "file"))
    var output: String?

    @Option(help: ArgumentHelp("Make this instance's offsite signing key instead (never over an existing one).", valueName: "instance"))
    var signing: String?

    func validate() throws {
        if (output == nil) == (signing == nil) { throw ValidationError("Give --output FILE (an age identity) or --signing INSTANCE (the offsite signing key), one of them.") }
    }

    struct Result: Encodable {
        let identityFile: String
        let publicKey: String

        enum CodingKeys: String, CodingKey {
            case identityFile = "identity_file"
            case publicKey = "public_key"
        }
    }

    struct SigningResult: Encodable {
        let signingKey: String
        let keyId: String

        enum CodingKeys: String, CodingKey {
            case signingKey = "signing_key"
            case keyId = "key_id"
        }
    }

    func run() throws {
        let console = Console(global)
        if let signing {
            try console.run { runtime in
                let made = try RemoteBackups(runtime).makeSigningKey(instance: signing)
                if global.json { return try console.json(SigningResult(signingKey: made.path, keyId: made.id)) }
                console.line(made.path)
                console.note("Made instance '\(signing)''s offsite signing key (mode 0600, key id \(made.id)): every copy pushed offsite is signed with it, and restore --remote accepts only copies it signed. Back the file up now, away from the bucket, and copy it to every host that restores this instance's copies (docs/offsite.md, 'Signing key').")
            }
            return
        }
        guard let output else { return }
        try console.guarded {
            let publicKey = try KeyFiles.generate(output: output, now: Date())
            if global.json { try console.json(Result(identityFile: output, publicKey: publicKey)); return }
            console.line(publicKey)
            console.note("Wrote the private key to \(output) (mode 0600). Add the public key above to [encryption] recipients; keep a copy of the file somewhere safe: without it the backups encrypted to it cannot be opened.")
        }
    }
}
