import Support

/// The Encryption module's failure codes (docs/errors.md, Encryption).
extension FailureCode {
    public static let encryptionNoIdentityMatched = FailureCode("encryption.no_identity_matched", .badData)
    /// A configured recipient is not an age X25519 public key (or is a private key).
    public static let encryptionInvalidRecipient = FailureCode("encryption.invalid_recipient", .usage)
    /// Encryption was asked for with no recipient.
    public static let encryptionNoRecipient = FailureCode("encryption.no_recipient", .usage)
    /// An identity (or identity file) holds no usable age X25519 identity.
    public static let encryptionInvalidIdentity = FailureCode("encryption.invalid_identity", .usage)
    /// The configured identity file does not exist.
    public static let encryptionIdentityFileMissing = FailureCode("encryption.identity_file_missing", .missingInput)
    /// The identity file cannot be read.
    public static let encryptionIdentityFileUnreadable = FailureCode("encryption.identity_file_unreadable", .usage)
    /// The identity file can be read by group or others: it is not used.
    public static let encryptionIdentityFileExposed = FailureCode("encryption.identity_file_exposed", .usage)
    /// An age file's header is not age v1 or is damaged.
    public static let encryptionInvalidFile = FailureCode("encryption.invalid_file", .badData)
    /// libcrypto failed (random generator, X25519, ChaCha20-Poly1305).
    public static let encryptionLibraryFailed = FailureCode("encryption.library_failed", .io)
}
