import Foundation
import Locking
import Migration

/// One stage of a deploy as the report records it.
public struct StageRecord: Codable, Sendable {
    public let name: Stage
    public var status: StageStatus
    public var seconds: Double
    public var detail: String?
}

/// The report of one deploy: `instances/<name>/deploys/<deploy-id>.json`.
public struct DeployReport: Codable, Sendable {
    public let deployId: String
    public let instance: String
    public let startedAt: Date
    public var finishedAt: Date?
    public var outcome: DeployOutcome
    public var error: String?
    /// The failure's stable code (docs/errors.md), when the deploy failed.
    public var errorCode: String?
    public var stages: [StageRecord] = []
    public var pending: [String] = []
    public var tablesCreated: [String] = []
    public var tablesAlreadyExisted: [String] = []
    /// The pending migrations' class: additive, preserving or destructive.
    public var classification: String?
    /// What the migrations did to existing tables, per table and column (the plan's evidence).
    public var changes: [String]?
    public var snapshot: String?
    public var writeLockMilliseconds: Double?
    public var hooks: [HookResult] = []
    /// What recovery of an earlier unfinished deploy did first, if anything.
    public var recovered: String?
    /// In a deploy of several databases: the database this part of the report is about.
    public var database: String?
    /// In a deploy of several databases: one report per database (pending, class, snapshot,
    /// stages of its own), in the order they were migrated.
    public var databases: [DeployReport]?
    /// A `migrate_command` deploy's runs of the framework's commands (rehearsal, live, pending
    /// checks), with their exit codes and output files; nil for `.sql` deploys.
    public var commands: [ShellCommandResult]?

    enum CodingKeys: String, CodingKey {
        case instance, outcome, error, stages, pending, snapshot, hooks, recovered, database, databases
        case deployId = "deploy_id"
        case startedAt = "started_at"
        case finishedAt = "finished_at"
        case tablesCreated = "tables_created"
        case tablesAlreadyExisted = "tables_already_existed"
        case classification = "class"
        case changes
        case writeLockMilliseconds = "write_lock_ms"
        case errorCode = "error_code"
        case commands
    }
}
