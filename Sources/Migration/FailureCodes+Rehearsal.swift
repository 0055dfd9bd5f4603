import Support

/// The rehearsal's failure codes (docs/errors.md, Migration).
extension FailureCode {
    public static let rehearsalChangedTables = FailureCode("rehearsal.changed_existing_tables", .failed)
}
