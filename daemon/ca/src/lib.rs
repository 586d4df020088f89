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
//!
//! ```
//! use std::time::Duration;
//! use mesh_ca::*;
//!
//! let now = unix_now();
//! let cfg = CaConfig::from_json(r#"{"Provider":"consul","Config":{"LeafCertTTL":"72h"}}"#)?.validate()?;
//! let td = "11111111-2222-3333-4444-555555555555.consul";
//! let mut state = CaState::new(cfg.build_root(td, now)?, cfg.leaf_ttl, now);
//!
//! // Leaves: build a Signer once, share it (Arc), rebuild when !signer.is_for(active).
//! let signer = state.active_signer()?;
//! let leaf = signer.sign_leaf(&LeafRequest::new("web", "dc1", cfg.leaf_ttl))?;
//! verify_leaf(&leaf.cert_pem, &state.trust_bundle(), now, VerifyPurpose::Both)?;
//!
//! // Rotation: preflight + cross-sign (leader, before proposing), then stage it.
//! let new = RootCa::generate(td, KeyType::EcP256, cfg.root_ttl)?;
//! let new = prepare_rotation(state.active().unwrap(), new, &cfg, now)?;
//! state.begin_rotation(new, now, Duration::from_secs(3600))?; // Pending: trusted, not signing
//! state.activate(now)?;                                       // Active; old root Retired
//! state.retire_due(now + 2 * cfg.leaf_ttl.as_secs() as i64);  // old root leaves the bundle
//! assert_eq!(state.trust_bundle().len(), 1);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![forbid(unsafe_code)]

mod config;
mod der;
mod error;
mod inspect;
mod key;
mod request;
mod root;
mod rotation;
mod signer;
mod state;
mod verify;

pub use config::{
    csr_rate_ok, CaConfig, ProviderConfig, ValidCaConfig, MAX_CSR_RATE, MIN_CSR_RATE,
};
pub use error::{CaError, ConfigError, RotationError};
pub use key::{KeyType, SecretPem};
pub use mesh_types::{format_go_duration, parse_go_duration};
pub use request::{
    csr_max_per_second, CaConfigRequest, DEFAULT_CSR_MAX_PER_SECOND, DEFAULT_PENDING,
    DEFAULT_SPREAD,
};
pub use root::RootCa;
pub use rotation::{cross_sign, preflight, prepare_rotation};
pub use signer::{default_dns_san, key_and_csr, Leaf, LeafRequest, Signer};
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
