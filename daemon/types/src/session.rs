//! Sessions: a client's lease on a node (and some of its health checks),
//! which KV locks are held under. Invalidated when destroyed, when its TTL
//! runs out without renewal, when its node leaves, or when a bound check
//! turns critical; its locks are then released or their keys deleted.

use serde::{Deserialize, Serialize};

/// Consul's default lock delay: after a session holding a lock is
/// invalidated, the key cannot be acquired again for this long.
pub const DEFAULT_LOCK_DELAY_MS: u64 = 15_000;
/// The longest lock delay a session may ask for (Consul's bound).
pub const MAX_LOCK_DELAY_MS: u64 = 60_000;
/// The shortest and longest session TTL (Consul's `session_ttl_min`
/// default and its 24 h ceiling).
pub const MIN_SESSION_TTL_MS: u64 = 10_000;
pub const MAX_SESSION_TTL_MS: u64 = 86_400_000;
/// Health checks one session may bind.
pub const MAX_SESSION_CHECKS: usize = 64;
/// A session's name, at most this many bytes.
pub const MAX_SESSION_NAME_BYTES: usize = 512;

/// What happens to a session's locks when it is invalidated.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum SessionBehavior {
    /// The locks are released; the keys stay.
    #[default]
    Release,
    /// The locked keys are deleted.
    Delete,
}

impl SessionBehavior {
    pub fn as_str(self) -> &'static str {
        match self {
            SessionBehavior::Release => "release",
            SessionBehavior::Delete => "delete",
        }
    }
}

/// One session, as stored.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    pub id: String,
    pub name: String,
    pub node: String,
    /// Node-level checks it is bound to (default: `serfHealth`).
    pub node_checks: Vec<String>,
    /// Service checks it is bound to, by check ID on the node.
    pub service_checks: Vec<String>,
    pub lock_delay_ms: u64,
    pub behavior: SessionBehavior,
    /// 0: no TTL.
    pub ttl_ms: u64,
    pub create_index: u64,
    pub modify_index: u64,
}

impl Session {
    /// Every check the session is bound to.
    pub fn checks(&self) -> impl Iterator<Item = &String> {
        self.node_checks.iter().chain(&self.service_checks)
    }
}
