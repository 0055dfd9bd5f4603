import Orchestrator

/// What `deployctl --version` prints: deployctl's version, the SQLite library in use, the build.
enum DeployctlVersion {
    static let number = "0.4.0"

    static var text: String {
        #if DEBUG
        let build = "debug build"
        #else
        let build = "release build"
        #endif
        return "deployctl \(number) (SQLite \(Runtime.sqliteVersion), \(build))"
    }
}
