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
            """)

    @OptionGroup var global: GlobalOptions

    @Option(help: ArgumentHelp("The identity file to create; it must not exist.", valueName: "file"))
    var output: String

    struct Result: Encodable {
        let identityFile: String
        let publicKey: String

        enum CodingKeys: String, CodingKey {
            case identityFile = "identity_file"
            case publicKey = "public_key"
        }
    }

    func run() throws {
        let console = Console(global)
        try console.guarded {
            let publicKey = try KeyFiles.generate(output: output, now: Date())
            if global.json { try console.json(Result(identityFile: output, publicKey: publicKey)); return }
            console.line(publicKey)
            console.note("Wrote the private key to \(output) (mode 0600). Add the public key above to [encryption] recipients; keep a copy of the file somewhere safe: without it the backups encrypted to it cannot be opened.")
        }
    }
}
