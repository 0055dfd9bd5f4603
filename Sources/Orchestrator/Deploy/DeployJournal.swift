import Foundation
import Support

/// The deploy journal: written (fsynced) before each stage starts and removed when the deploy
/// ends, so a deploy killed at any point can be finished or undone by the next run.
public struct DeployJournal: Codable, Sendable, Equatable {
    public var deployId: String
    public var instance: String
    public var startedAt: Date
    /// The stage about to run or running.
    public var stage: Stage
    /// The pre-deploy snapshot's name, once taken.
    public var snapshot: String?
    /// Migrations being applied.
    public var migrations: [String]
    /// Whether the stop hook ran (so the app may be stopped).
    public var appStopped: Bool
    /// Whether the migrating transaction committed.
    public var committed: Bool
    /// Whether the migrations are additive (undo drops what they created) or need a restore.
    public var additive: Bool
    /// Objects the migrations created (type, name), for an undo.
    public var created: [CreatedObject]
    /// For a preserving migration that only added columns (and indexes, triggers, views,
    /// tables): the columns per table, which an undo drops instead of restoring the snapshot.
    public var addedColumns: [String: [String]]?
    /// The rehearsal proved the migrations' down parts return a copy to the snapshot's
    /// content: an undo runs them instead of restoring the snapshot.
    public var downProven: Bool?
    /// The schema before the deploy (type, name and SQL of each object, the history table
    /// aside), which an undo by down parts must give back.
    public var schemaBefore: [String]?
    /// The down parts the rehearsal proved, as they were then (newest last): the undo runs
    /// these, never what is on disk by then.
    public var downSQL: [String]?
    /// The process running the deploy: while it holds the instance lock, `status` reports the
    /// deploy as in progress rather than unfinished (nil in journals of older versions).
    public var pid: Int32? = getpid()
    /// A deploy by the framework's own command (`migrate_command`): `committed` is set when the
    /// command starts on the live database (it commits in several transactions of its own), and
    /// an unproven one is undone from the snapshot by recovery. Nil for `.sql` deploys.
    public var command: Bool?
    /// The live run was proven equal to the rehearsal: recovery keeps it.
    public var commandProven: Bool?
    /// The process group of the command running on the live database: recovery ends what is
    /// left of it before restoring the snapshot.
    public var commandGroup: Int32?
    /// The proven live run was additive: an undo drops what it created (`created`) and puts the
    /// framework's bookkeeping tables back from the snapshot, keeping the application's writes.
    public var commandAdditive: Bool?

    /// One schema object a migration created.
    public struct CreatedObject: Codable, Sendable, Equatable {
        public let type: String
        public let name: String
    }

    enum CodingKeys: String, CodingKey {
        case instance, stage, snapshot, migrations, committed, additive, created, pid
        case addedColumns = "added_columns"
        case downProven = "down_proven"
        case schemaBefore = "schema_before"
        case downSQL = "down_sql"
        case deployId = "deploy_id"
        case startedAt = "started_at"
        case appStopped = "app_stopped"
        case command
        case commandProven = "command_proven"
        case commandGroup = "command_group"
        case commandAdditive = "command_additive"
    }

    /// Reads the journal at `path`; nil when there is none.
    /// - Throws: `Failure` `.badData` when it exists but cannot be read.
    static func read(path: String) throws -> DeployJournal? {
        guard let data = FileManager.default.contents(atPath: path) else { return nil }
        do {
            return try JSON.decoder().decode(DeployJournal.self, from: data)
        } catch {
            throw Failure(.journalUnreadable, "the deploy journal \(path) cannot be read: \(error)",
                          hint: "inspect it by hand; it records an unfinished deploy")
        }
    }

    /// Writes the journal durably (temp, fsync, rename, folder fsync).
    func write(path: String) throws {
        try DurableFile.write(try JSON.encoder().encode(self), to: path, replace: true)
    }

    /// Removes the journal durably.
    static func remove(path: String) throws {
        unlink(path)
        try DurableFile.syncDirectory(containing: path)
    }
}
