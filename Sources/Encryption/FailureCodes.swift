import Support

/// The Encryption module's failure codes (docs/errors.md, Encryption).
extension FailureCode {
    public static let encryptionNoIdentityMatched = FailureCode("encryption.no_identity_matched", .badData)
}
