import ArgumentParser
import Foundation
import Support

@main
struct Deployctl: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "deployctl",
        abstract: "Deploy schema changes to SQLite-backed applications without losing data.",
        discussion: """
            Common jobs:
              deployctl plan prod                         what the pending migrations do, proven on a copy
              deployctl deploy prod                       backup, migrate, verify, restore on failure
              deployctl deploy all                        every instance in deploy.toml's order
              deployctl backups list prod                 backups with their last verification
              deployctl restore prod --latest             the newest good backup, the current state saved first
              deployctl snapshot prod --gzip --label nightly --keep-daily 14 --quiet   (cron)
              deployctl status all --quiet                exits non-zero when something needs a person
              deployctl backups push prod --all           copy backups to the [[offsite]] object store
              deployctl keygen --output prod.agekey       an age key for [encryption]: age -d opens backups
              deployctl init app --database /srv/app/app.db   adopt an existing database as instance 'app'

            
            """ + ExitStatus.help,
        version: DeployctlVersion.text,
        subcommands: [Deploy.self, Plan.self, Snapshot.self, Backups.self, Restore.self, Verify.self, Status.self, History.self,
                      Baseline.self, Accept.self, Keygen.self, Init.self])

    static func main() {
        // A peer that closes a connection (an object store) must give an error, not kill us.
        signal(SIGPIPE, SIG_IGN)
        // Global options may stand before the subcommand name: move them after it, where every
        // subcommand's @OptionGroup reads them.
        var arguments = Array(CommandLine.arguments.dropFirst())
        arguments = GlobalOptionsMover.reorder(arguments, subcommands: Set(configuration.subcommands.map { $0._commandName }))
        if let unknown = UnknownCommand.find(arguments, commands: configuration.subcommands.map { $0._commandName },
                                             groups: ["backups": Backups.configuration.subcommands.map { $0._commandName }]) {
            if let hint = unknown.hint { Console.logHint(hint) }
            usageError(.usageUnknownCommand, unknown.message, hint: unknown.hint, arguments: arguments)
        }
        do {
            var command = try parseAsRoot(arguments)
            // Tests check that every printed hint parses as a command line: parse, run nothing.
            if ProcessInfo.processInfo.environment["DEPLOYCTL_PARSE_ONLY"] != nil { return }
            try command.run()
        } catch let error as ExitCode {
            exit(withError: error)
        } catch {
            // The parser's own refusals (an unknown option, a bad value) are usage errors with a
            // code like every other, in the form --json and --quiet promise.
            guard exitCode(for: error) == .validationFailure else { exit(withError: error) }
            var message = fullMessage(for: error)
            if message.hasPrefix("Error: ") { message.removeFirst("Error: ".count) }
            usageError(.usageInvalidArguments, message.trimmingCharacters(in: .whitespacesAndNewlines), hint: nil, arguments: arguments)
        }
    }

    /// Prints a usage error (64) before any command ran: `error[code]:` and the text on stderr;
    /// with `--quiet` one line ending in `[code]`; with `--json` also the error document on stdout.
    static func usageError(_ code: FailureCode, _ message: String, hint: String?, arguments: [String]) -> Never {
        let standardError = StandardStream(descriptor: 2, name: "stderr")
        if arguments.contains("--quiet") {
            let first = message.split(separator: "\n").first.map(String.init) ?? message
            standardError.write("deployctl: \(first)\(hint.map { " (try: \($0))" } ?? "") [\(code)]\n")
        } else {
            standardError.write("error[\(code)]: \(message)\n" + (hint.map { "Try: \($0)\n" } ?? ""))
        }
        if arguments.contains("--json") {
            struct ErrorDocument: Encodable { let error: String; let code: String; let kind: String; let hint: String?; let exit_code: Int32 }
            if let data = try? JSON.encoder().encode(ErrorDocument(error: message, code: code.rawValue, kind: code.kind.rawValue, hint: hint, exit_code: 64)) {
                StandardStream(descriptor: 1, name: "stdout").write(String(decoding: data, as: UTF8.self) + "\n")
            }
        }
        Foundation.exit(64)
    }
}

/// Moves global options written before the subcommand to after it.
enum GlobalOptionsMover {
    static let valued: Set<String> = ["--root", "--log-level"]
    static let flags: Set<String> = ["--json", "--quiet"]

    static func reorder(_ arguments: [String], subcommands: Set<String>) -> [String] {
        var globals = [String]()
        var index = 0
        while index < arguments.count {
            let argument = arguments[index]
            let name = argument.split(separator: "=", maxSplits: 1).first.map(String.init) ?? argument
            if valued.contains(name) {
                globals.append(argument)
                if !argument.contains("="), index + 1 < arguments.count {
                    globals.append(arguments[index + 1])
                    index += 1
                }
                index += 1
            } else if flags.contains(argument) {
                globals.append(argument)
                index += 1
            } else {
                break
            }
        }
        guard !globals.isEmpty, index < arguments.count, subcommands.contains(arguments[index]) else { return arguments }
        var rest = Array(arguments[index...])
        // A command group (backups list): keep its own subcommand name first too.
        let insertAt = rest.count > 1 && !rest[1].hasPrefix("-") && rest[0] == "backups" ? 2 : 1
        rest.insert(contentsOf: globals, at: min(insertAt, rest.count))
        return rest
    }
}

/// A first word that is no command (`deployctl snapshpt prod`), or a `backups` subcommand that
/// is none: argument parsing would only say "unexpected arguments"; this names the nearest.
struct UnknownCommand {
    let message: String
    let hint: String?

    /// The unknown command in `arguments` (global options already moved after a known one),
    /// if its first word, or the word after a group's name, is not a command.
    static func find(_ arguments: [String], commands: [String], groups: [String: [String]]) -> UnknownCommand? {
        // ArgumentParser's own entry points (completion scripts and the completions they ask
        // for, the help dump the man pages are made from) take words that are no commands.
        let parserOwn = ["--generate-completion-script", "---completion", "--experimental-dump-help"]
        guard !arguments.contains(where: { argument in parserOwn.contains { argument == $0 || argument.hasPrefix($0 + "=") } }) else { return nil }
        var index = 0
        // Global options before an unknown word stay in front: step over them.
        while index < arguments.count, arguments[index].hasPrefix("-") {
            let name = arguments[index].split(separator: "=", maxSplits: 1).first.map(String.init) ?? arguments[index]
            index += GlobalOptionsMover.valued.contains(name) && !arguments[index].contains("=") ? 2 : 1
        }
        guard index < arguments.count else { return nil }
        let word = arguments[index]
        var known = commands + ["help"]
        var prefix = ""
        if let sub = groups[word] {
            guard index + 1 < arguments.count, !arguments[index + 1].hasPrefix("-") else { return nil }
            prefix = word + " "
            known = sub + ["help"]
            index += 1
        }
        let candidate = arguments[index]
        guard !known.contains(candidate) else { return nil }
        let rest = arguments.enumerated().filter { $0.offset != index }.map(\.element)
        let nearest = Suggestion.nearest(to: candidate, in: known.filter { $0 != "help" })
        let message = "unknown command '\(prefix)\(candidate)'" + (nearest.map { ": did you mean '\(prefix)\($0)'?" } ?? ".")
            + " Commands: \(known.filter { $0 != "help" }.map { prefix + $0 }.joined(separator: ", "))."
        guard let nearest else { return UnknownCommand(message: message, hint: nil) }
        var corrected = rest
        corrected.insert(nearest, at: index)
        return UnknownCommand(message: message, hint: "deployctl " + corrected.joined(separator: " "))
    }
}
