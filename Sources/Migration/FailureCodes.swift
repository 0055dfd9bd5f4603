import Support

/// The Migration module's failure codes (docs/errors.md, Migration).
extension FailureCode {
    public static let migrationChanged = FailureCode("migration.changed", .badData)
}
