import ArgumentParser

/// Options every subcommand accepts, before or after its name.
struct GlobalOptions: ParsableArguments {
    @Option(help: "The deployment root holding instances/ (default: $DEPLOYCTL_ROOT, else the current directory when it holds instances/, else /var/lib/deployctl).")
    var root: String?

    @Option(help: "How much to log to stderr: error, warning, info or debug.")
    var logLevel: LogLevel = .info

    @Flag(help: "Print one JSON document on stdout and nothing else there.")
    var json = false

    @Flag(help: "Print nothing on success and one line to stderr on failure.")
    var quiet = false

    enum LogLevel: String, ExpressibleByArgument, CaseIterable {
        case error, warning, info, debug
    }
}

/// `--database NAME`: with an instance of several databases (`[[database]]` tables), work on
/// that one only (docs/databases.md). Every command that names an instance has it but `init`,
/// whose `--database` is the path of the database it adopts.
struct DatabaseOption: ParsableArguments {
    @Option(help: ArgumentHelp("With an instance of several databases ([[database]] tables): work on this one only.", valueName: "name"))
    var database: String?
}
