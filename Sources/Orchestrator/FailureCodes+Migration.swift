import Support

/// The Orchestrator's failure codes for planning, deploying, adopting and undoing migrations
/// (docs/errors.md, Migration).
extension FailureCode {
    /// A destructive migration without `-- allow-destructive` in its file and `--allow-destructive`.
    public static let migrationDestructiveRefused = FailureCode("migration.destructive_refused", .usage)
    /// A `-- verify:` query is false (or fails) on the plan's copy after the migrations.
    public static let migrationVerifyQueryFalse = FailureCode("migration.verify_query_false", .failed)
    /// The plan's write-lock estimate is over `max_write_lock` and the deploy cannot run online.
    public static let migrationWriteLockOverBudget = FailureCode("migration.write_lock_over_budget", .usage)
    /// `baseline` or `accept` names a migration the migrations folder does not hold.
    public static let migrationNotFound = FailureCode("migration.not_found", .usage)
    /// `baseline`: the database does not hold what the migrations it would record create.
    public static let baselineSchemaDiffers = FailureCode("baseline.schema_differs", .badData)
    /// `accept`: the migration is not applied to the instance.
    public static let acceptNotApplied = FailureCode("accept.not_applied", .usage)
    /// `accept`: the migration's file is unchanged since it was applied.
    public static let acceptUnchanged = FailureCode("accept.unchanged", .usage)
    public static let acceptChangedWhileAsked = FailureCode("accept.changed_while_asked", .usage)
    /// An undo that must restore the snapshot finds none recorded in the journal.
    public static let undoNoSnapshot = FailureCode("undo.no_snapshot", .unproven)
}
