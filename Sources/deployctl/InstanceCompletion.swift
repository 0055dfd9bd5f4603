import ArgumentParser
import Foundation
import Orchestrator

/// Shell completion of instance names (bash, zsh, fish): the shell asks the installed binary,
/// which lists the instance folders of the root the command line would use (its `--root`,
/// else `DEPLOYCTL_ROOT`, else the current directory or the installed root).
enum InstanceCompletion {
    /// Instances only.
    static let instances = CompletionKind.custom { words, _, prefix in names(words, all: false, prefix: prefix) }
    /// Instances and `all`.
    static let instancesOrAll = CompletionKind.custom { words, _, prefix in names(words, all: true, prefix: prefix) }

    /// The instance names starting with `prefix` for the command line `words`; empty when no
    /// root can be found.
    static func names(_ words: [String], all: Bool, prefix: String) -> [String] {
        var root: String?
        for (index, word) in words.enumerated() {
            if word == "--root", index + 1 < words.count { root = words[index + 1] }
            if word.hasPrefix("--root=") { root = String(word.dropFirst(7)) }
        }
        guard let workspace = try? Workspace(root: root, environment: ProcessInfo.processInfo.environment),
              let names = try? workspace.allInstanceFolders() else { return [] }
        return (all ? names + ["all"] : names).filter { $0.hasPrefix(prefix) }
    }
}
