//! mesh-ca: the certificate authority behind Connect.
//!
//! Owns the pure CA logic: key types, root CAs (generated or supplied by the
//! user), leaf signing for SPIFFE service identities, cross-signed root
//! rotation with preflight checks, the staged rotation model (`CaState`) and
//! trust bundles. No HTTP, no Raft, no clock reads in state transitions:
//! callers pass `now` (unix seconds) and persist the serde types as they like.
//!
//! Crypto is rcgen + ring; RSA root keys are generated with the `rsa` crate
//! (ring cannot generate RSA keys); chains are verified with rustls-webpki.
#![forbid(unsafe_code)]

mod config;
mod der;
mod duration;
mod error;
mod inspect;
mod key;
mod root;
mod rotation;
mod signer;
mod state;
mod verify;

pub use config::{CaConfig, ProviderConfig, ValidCaConfig};
pub use duration::{format_go_duration, parse_go_duration};
pub use error::{CaError, ConfigError, RotationError};
pub use key::{KeyType, SecretPem};
pub use root::RootCa;
pub use rotation::{cross_sign, preflight, prepare_rotation};
pub use signer::{default_dns_san, spiffe_service_id, Leaf, LeafRequest, Signer};
pub use state::{reissue_at, renew_at, CaState, Rotation, Stage, StagedRoot};
pub use verify::{verify_leaf, VerifyPurpose};

use std::time::Duration;

/// Consul's default LeafCertTTL (72h).
pub const DEFAULT_LEAF_TTL: Duration = Duration::from_secs(72 * 3600);
/// Shortest LeafCertTTL accepted (1h).
pub const MIN_LEAF_TTL: Duration = Duration::from_secs(3600);
/// Longest LeafCertTTL accepted (1 year = 8760h).
pub const MAX_LEAF_TTL: Duration = Duration::from_secs(8760 * 3600);
/// Consul's default RootCertTTL (10 years = 87600h).
pub const DEFAULT_ROOT_TTL: Duration = Duration::from_secs(87600 * 3600);
/// Consul's default IntermediateCertTTL (1 year = 8760h).
pub const DEFAULT_INTERMEDIATE_TTL: Duration = Duration::from_secs(8760 * 3600);
/// Certificates are back-dated by this much to absorb clock skew between hosts.
pub const BACKDATE: Duration = Duration::from_secs(60);

/// Current wall-clock time in unix seconds (the only clock read in this crate).
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Renders unix seconds as RFC 3339 (`2024-05-01T12:00:00Z`), as Consul's JSON does.
pub fn rfc3339(unix_secs: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(unix_secs)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}
