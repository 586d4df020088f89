//! Error types: one enum per concern, each variant says what to do.

use thiserror::Error;

/// Errors from creating roots, loading user-supplied roots and signing leaves.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CaError {
    /// A certificate field did not hold a parsable PEM certificate.
    #[error("{field} is not a valid PEM certificate: {reason}; paste the whole -----BEGIN CERTIFICATE----- block")]
    CertPem {
        /// Which input held the certificate (e.g. `RootCert`).
        field: &'static str,
        /// What was wrong with it.
        reason: String,
    },
    /// A private-key field did not hold a usable PEM private key.
    #[error("{field} is not a usable PEM private key: {reason}; supply an unencrypted PKCS#8 (PRIVATE KEY), SEC1 (EC PRIVATE KEY) or PKCS#1 (RSA PRIVATE KEY) block")]
    KeyPem {
        /// Which input held the key (e.g. `PrivateKey`).
        field: &'static str,
        /// What was wrong with it.
        reason: String,
    },
    /// The key type cannot be used with this build's crypto (ring).
    #[error("key type {key} is not supported: {reason}")]
    UnsupportedKeyType {
        /// The key type found or requested, e.g. `ec P-521`.
        key: String,
        /// Why, and what to use instead.
        reason: &'static str,
    },
    /// PrivateKeyType/PrivateKeyBits disagree with the key actually supplied.
    #[error("declared key type {declared} does not match the supplied root's key ({actual}); set PrivateKeyType/PrivateKeyBits to match or leave them unset")]
    KeyTypeMismatch {
        /// What the configuration declared.
        declared: String,
        /// What the certificate and key really are.
        actual: String,
    },
    /// The private key is not the one the certificate was issued for.
    #[error("PrivateKey does not match RootCert's public key; supply the key the certificate was issued for")]
    KeyMismatch,
    /// The supplied certificate cannot sign certificates.
    #[error("RootCert is not a CA certificate: {reason}; issue it with basicConstraints CA:TRUE and keyUsage keyCertSign")]
    NotCa {
        /// Which CA property is missing.
        reason: String,
    },
    /// The supplied root is not self-signed (it is an intermediate).
    #[error("RootCert is not self-signed (issuer differs from subject or signature does not verify); supply the root certificate itself")]
    NotSelfSigned,
    /// The certificate's validity period has ended.
    #[error("{what} expired at {not_after}; supply a certificate that is currently valid")]
    Expired {
        /// Which certificate.
        what: &'static str,
        /// Its notAfter, RFC 3339.
        not_after: String,
    },
    /// The certificate's validity period has not started.
    #[error("{what} is not valid until {not_before}; check the clock or wait")]
    NotYetValid {
        /// Which certificate.
        what: &'static str,
        /// Its notBefore, RFC 3339.
        not_before: String,
    },
    /// The certificate names a SPIFFE trust domain other than the cluster's.
    #[error("RootCert carries SPIFFE ID {found} but this cluster's trust domain is {expected}; issue the root for spiffe://{expected} or without a SPIFFE URI")]
    TrustDomainMismatch {
        /// The cluster's trust domain.
        expected: String,
        /// The URI found in the certificate.
        found: String,
    },
    /// The subject name cannot be reproduced byte-for-byte in issued certificates.
    #[error("RootCert's subject cannot be used as an issuer name: {reason}; re-issue it with a simple subject (one attribute per RDN, no repeated attribute types)")]
    UnsupportedSubject {
        /// What about the subject is unsupported.
        reason: String,
    },
    /// A service, datacenter, namespace or trust domain name is not usable in a SPIFFE ID.
    #[error("invalid {field} {value:?}: use letters, digits, '-', '_' and '.' only")]
    InvalidName {
        /// Which name.
        field: &'static str,
        /// The rejected value.
        value: String,
    },
    /// A TTL is zero or too large to represent.
    #[error("invalid TTL: {reason}")]
    InvalidTtl {
        /// What is wrong with it.
        reason: String,
    },
    /// A CSR could not be parsed or its signature does not verify.
    #[error("invalid CSR: {reason}")]
    Csr {
        /// Why.
        reason: String,
    },
    /// A CSR asks for an identity other than the requested service's.
    #[error("CSR URI SAN {found:?} does not match the requested identity {expected}")]
    CsrIdentity {
        /// The SPIFFE ID the request is entitled to.
        expected: String,
        /// The URI SANs found in the CSR (empty when none).
        found: String,
    },
    /// Key generation failed.
    #[error("could not generate a {key} key: {reason}")]
    KeyGeneration {
        /// The key type.
        key: String,
        /// Why.
        reason: String,
    },
    /// rcgen failed to build or sign a certificate.
    #[error("could not sign certificate: {0}")]
    Signing(String),
    /// A probe leaf signed through this root did not verify; the root is unusable.
    #[error("self-test failed: a leaf signed by this root does not verify ({0})")]
    SelfTest(String),
    /// Chain verification failed.
    #[error("certificate does not verify against the trust bundle: {0}")]
    Verify(String),
}

impl From<rcgen::Error> for CaError {
    fn from(e: rcgen::Error) -> Self {
        CaError::Signing(e.to_string())
    }
}

/// Errors from parsing and validating the CA configuration.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConfigError {
    /// `CSRMaxPerSecond` is negative, not a number, or outside the range a
    /// rate limiter can express.
    #[error("Config.CSRMaxPerSecond = {0}: use 0 (no limit) or a rate from {min} to {max} per second", min = crate::config::MIN_CSR_RATE, max = crate::config::MAX_CSR_RATE)]
    CsrRate(String),
    /// The body is not JSON of the expected shape.
    #[error("CA configuration is not valid JSON: {0}")]
    Json(String),
    /// A key the CA configuration does not know.
    #[error("unknown field {field:?} in {section}; known fields: {known}")]
    UnknownField {
        /// The unknown key as given.
        field: String,
        /// `top level` or `Config`.
        section: &'static str,
        /// The accepted keys.
        known: &'static str,
    },
    /// A field holds a value of the wrong JSON type.
    #[error("{field} must be {expected}")]
    WrongType {
        /// The field.
        field: &'static str,
        /// What it must be.
        expected: &'static str,
    },
    /// A duration string is not a Go duration.
    #[error("{field} = {value:?} is not a duration: {reason} (use Go syntax such as \"72h\", \"1h30m\")")]
    BadDuration {
        /// The field.
        field: &'static str,
        /// The value given.
        value: String,
        /// Why it does not parse.
        reason: String,
    },
    /// Provider other than `consul`.
    #[error("provider {0:?} is not supported; use \"consul\"")]
    UnsupportedProvider(String),
    /// LeafCertTTL outside 1h..8760h.
    #[error("LeafCertTTL {value} is outside the allowed range 1h..8760h")]
    LeafTtlOutOfRange {
        /// The value given, Go syntax.
        value: String,
    },
    /// IntermediateCertTTL shorter than 3 × LeafCertTTL.
    #[error("IntermediateCertTTL {intermediate} must be at least 3 × LeafCertTTL ({leaf})")]
    IntermediateTtlTooShort {
        /// IntermediateCertTTL, Go syntax.
        intermediate: String,
        /// LeafCertTTL, Go syntax.
        leaf: String,
    },
    /// RootCertTTL not longer than the TTLs of what it signs.
    #[error("RootCertTTL {root} must be longer than {other_name} ({other})")]
    RootTtlTooShort {
        /// RootCertTTL, Go syntax.
        root: String,
        /// The TTL it must exceed.
        other_name: &'static str,
        /// That TTL, Go syntax.
        other: String,
    },
    /// PrivateKeyType / PrivateKeyBits not a supported combination.
    #[error("PrivateKeyType {key_type:?} with PrivateKeyBits {bits}: {reason}")]
    KeyType {
        /// PrivateKeyType given.
        key_type: String,
        /// PrivateKeyBits given.
        bits: u32,
        /// What is supported.
        reason: String,
    },
    /// Only one of PrivateKey and RootCert was supplied.
    #[error("{present} is set but {missing} is not; a user-supplied root needs both")]
    IncompleteUserRoot {
        /// The field that is set.
        present: &'static str,
        /// The field that is missing.
        missing: &'static str,
    },
}

/// Errors from rotation preflight and staged-rotation transitions.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RotationError {
    /// The new root belongs to another trust domain.
    #[error("new root is for trust domain {new} but the cluster's is {active}; SPIFFE IDs cannot change during rotation")]
    TrustDomainChanged {
        /// The active trust domain.
        active: String,
        /// The new root's trust domain.
        new: String,
    },
    /// The new root is the active root.
    #[error("new root {0} is already the active root; nothing to rotate")]
    SameRoot(String),
    /// The new root is not valid yet.
    #[error("new root is not valid until {not_before}")]
    NewRootNotYetValid {
        /// notBefore, RFC 3339.
        not_before: String,
    },
    /// The new root has expired.
    #[error("new root expired at {not_after}")]
    NewRootExpired {
        /// notAfter, RFC 3339.
        not_after: String,
    },
    /// The new root expires before leaves issued during the rotation would.
    #[error("new root expires at {not_after}, before {needed} (now + 2 × LeafCertTTL); use a root with a longer lifetime")]
    NewRootExpiresTooSoon {
        /// notAfter, RFC 3339.
        not_after: String,
        /// The earliest acceptable expiry, RFC 3339.
        needed: String,
    },
    /// Cross-signing failed or the cross-signed chain does not verify.
    #[error("cannot cross-sign the new root with the active one: {0}; set ForceWithoutCrossSigning to rotate anyway (clients that only trust the old root will reject new leaves until they fetch the new bundle)")]
    CrossSign(String),
    /// A rotation is already under way.
    #[error("rotation to root {0} is already in progress; activate or abort it first")]
    InProgress(String),
    /// `activate` without a pending root.
    #[error("no pending root to activate; begin a rotation first")]
    NoPendingRoot,
    /// The state has no active root.
    #[error("no active root")]
    NoActiveRoot,
    /// Signing or parsing failed.
    #[error(transparent)]
    Ca(#[from] CaError),
}
