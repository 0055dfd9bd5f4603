import Backup
import Foundation
import Locking
import Migration
import SQLite
import Support

/// Flags of `deployctl deploy`.
public struct DeployOptions: Sendable {
    public var dryRun = false
    public var gzip: Bool?
    public var allowDestructive = false
    public var skipPromotionCheck = false
    /// Run the rebuild online (`--online`); refused when it cannot run so.
    public var online = false

    public init(dryRun: Bool = false, gzip: Bool? = nil, allowDestructive: Bool = false, skipPromotionCheck: Bool = false, online: Bool = false) {
        self.dryRun = dryRun
        self.gzip = gzip
        self.allowDestructive = allowDestructive
        self.skipPromotionCheck = skipPromotionCheck
        self.online = online
    }
}

/// A deploy that failed: the report (already written) and the error that ended it.
public struct DeployFailure: DeployctlError {
    public let report: DeployReport
    public let underlying: DeployctlError
    public var code: FailureCode { underlying.code }
    /// The cause's code when the deploy was undone after it.
    public var cause: FailureCode? { (underlying as? Failure)?.cause }
    public var kind: FailureKind { underlying.kind }
    public var message: String { underlying.message }
    public var hint: String? { underlying.hint }
}

/// `deployctl deploy`: one instance, or every instance in deploy.toml's order.
public struct Deployment: Sendable {
    let runtime: Runtime

    public init(_ runtime: Runtime) { self.runtime = runtime }

    /// `deployctl deploy <instance>`: SPEC.md's pipeline. Returns the report on success (and for
    /// a dry run or nothing to do); on failure throws `DeployFailure` after undoing what must
    /// be undone, starting the app again and writing the report.
    public func deploy(instance name: String, options: DeployOptions) throws -> DeployReport {
        let set = try runtime.instanceSet(name, for: options.dryRun ? .readDatabase : .changeLive)
        let databases = try set.selectedDatabases
        for database in databases { try database.ensureDatabase() }
        let id = Runtime.deployId(runtime.clock())
        if set.hasDatabaseSet && runtime.database == nil {
            var pipeline = SetDeployPipeline(instance: set, databases: databases, options: options,
                                             report: DeployReport(deployId: id, instance: name, startedAt: runtime.clock(), outcome: .failed))
            return try pipeline.runToEnd()
        }
        let instance = databases[0]
        var pipeline = DeployPipeline(instance: instance, options: options,
                                      report: DeployReport(deployId: id, instance: name, startedAt: runtime.clock(), outcome: .failed))
        pipeline.report.database = instance.config.databaseName
        return try pipeline.runToEnd()
    }

    /// `deployctl deploy all`: every instance in deploy.toml's order; stops at the first failure.
    public func deployAll(options: DeployOptions) throws -> [DeployReport] {
        var reports = [DeployReport]()
        for name in try runtime.workspace.allInstances() {
            runtime.events(.instanceStarted(name))
            reports.append(try deploy(instance: name, options: options))
        }
        return reports
    }
}
