import Support

/// The Offsite module's failure codes (docs/errors.md, Offsite): reaching the store, what it
/// answered, credentials, TLS, and the copies in it.
extension FailureCode {
    // Configuration
    public static let offsiteEndpointInvalid = FailureCode("offsite.endpoint_invalid", .usage)
    public static let offsiteProxyInvalid = FailureCode("offsite.proxy_invalid", .usage)
    public static let offsiteWrongRegion = FailureCode("offsite.wrong_region", .usage)
    public static let offsiteHostInvalid = FailureCode("offsite.host_invalid", .usage)
    public static let offsiteSigningKeyInvalid = FailureCode("offsite.signing_key_invalid", .usage)

    // Reaching the store
    public static let offsiteUnreachable = FailureCode("offsite.unreachable", .unavailable)
    public static let offsiteTimeout = FailureCode("offsite.timeout", .unavailable)
    public static let offsiteRedirected = FailureCode("offsite.redirected", .unavailable)
    public static let offsiteRequestFailed = FailureCode("offsite.request_failed", .unavailable)
    public static let offsiteProtocolViolation = FailureCode("offsite.protocol_violation", .unavailable)
    public static let offsiteListingMalformed = FailureCode("offsite.listing_malformed", .unavailable)
    public static let offsiteAnswerMalformed = FailureCode("offsite.answer_malformed", .unavailable)

    // TLS
    public static let offsiteTLSUntrusted = FailureCode("offsite.tls_untrusted", .unavailable)
    public static let offsiteTLSHostMismatch = FailureCode("offsite.tls_host_mismatch", .unavailable)
    public static let offsiteTLSExpired = FailureCode("offsite.tls_expired", .unavailable)
    public static let offsiteTLSFailed = FailureCode("offsite.tls_failed", .unavailable)

    // Credentials
    public static let offsiteCredentialsMissing = FailureCode("offsite.credentials_missing", .permission)
    public static let offsiteCredentialsSourceFailed = FailureCode("offsite.credentials_source_failed", .permission)
    public static let offsiteCredentialsExpired = FailureCode("offsite.credentials_expired", .permission)
    public static let offsiteCredentialsUnreachable = FailureCode("offsite.credentials_unreachable", .unavailable)
    public static let offsiteProfileMissing = FailureCode("offsite.profile_missing", .permission)
    public static let offsiteWebIdentityRefused = FailureCode("offsite.web_identity_refused", .permission)
    public static let offsiteCredentialsRefused = FailureCode("offsite.credentials_refused", .permission)
    public static let offsiteClockSkewed = FailureCode("offsite.clock_skewed", .permission)

    // The bucket and its objects
    public static let offsiteBucketMissing = FailureCode("offsite.bucket_missing", .missingInput)
    public static let offsiteObjectMissing = FailureCode("offsite.object_missing", .missingInput)
    public static let offsiteObjectTooLarge = FailureCode("offsite.object_too_large", .badData)
    public static let offsiteUploadFailed = FailureCode("offsite.upload_failed", .failed)
    public static let offsiteCopyDamaged = FailureCode("offsite.copy_damaged", .badData)
    public static let offsitePushSourceDamaged = FailureCode("offsite.push_source_damaged", .badData)
    public static let offsiteCopyUnusable = FailureCode("offsite.copy_unusable", .badData)
    public static let offsiteManifestUnsigned = FailureCode("offsite.manifest_unsigned", .badData)
    public static let offsiteManifestForged = FailureCode("offsite.manifest_forged", .badData)
    public static let offsiteManifestOtherKey = FailureCode("offsite.manifest_other_key", .badData)
    public static let offsiteLocalNameTaken = FailureCode("offsite.local_name_taken", .badData)
    public static let offsiteCopyForeign = FailureCode("offsite.copy_foreign", .failed)
    public static let offsiteCopyNotFound = FailureCode("offsite.copy_not_found", .missingInput)
    public static let offsiteLeaseHeld = FailureCode("offsite.lease_held", .temporary)
    public static let offsiteRandomFailed = FailureCode("offsite.random_failed", .io)
}
