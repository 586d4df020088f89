//! `autopilot { }`: how the leader looks after the Raft server set, with
//! Consul's keys and defaults.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::validate::Check;
use crate::ValidationError;

/// `autopilot { }` as written.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct RawAutopilot {
    /// Remove servers gossip has marked failed, after the stabilization time.
    pub cleanup_dead_servers: Option<bool>,
    /// A server whose last contact with the leader is older is unhealthy.
    pub last_contact_threshold: Option<String>,
    /// How long a server must be healthy (or failed) before it counts as
    /// stable (or dead).
    pub server_stabilization_time: Option<String>,
    /// A server further behind the leader's log is unhealthy.
    pub max_trailing_logs: Option<u64>,
    /// Never remove dead servers below this many voters.
    pub min_quorum: Option<u32>,
}

/// The autopilot settings in force.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Autopilot {
    pub cleanup_dead_servers: bool,
    pub last_contact_threshold: Duration,
    pub server_stabilization_time: Duration,
    pub max_trailing_logs: u64,
    pub min_quorum: u32,
}

impl Default for Autopilot {
    /// Consul's defaults.
    fn default() -> Self {
        Autopilot {
            cleanup_dead_servers: true,
            last_contact_threshold: Duration::from_millis(200),
            server_stabilization_time: Duration::from_secs(10),
            max_trailing_logs: 250,
            min_quorum: 0,
        }
    }
}

impl Check<'_> {
    pub(crate) fn autopilot(&self) -> Result<Autopilot, ValidationError> {
        let d = Autopilot::default();
        let Some(raw) = &self.raw.autopilot else {
            return Ok(d);
        };
        let duration = |key: &str, text: &Option<String>, default: Duration| match text {
            None => Ok(default),
            Some(text) => match crate::parse_duration(text) {
                Ok(t) if t > Duration::ZERO && t <= Duration::from_secs(24 * 3600) => Ok(t),
                Ok(_) => Err(self.fail(
                    &format!("autopilot.{key}"),
                    format!("{text:?} is out of range: use more than 0 and at most 24h"),
                )),
                Err(e) => Err(self.fail(&format!("autopilot.{key}"), e)),
            },
        };
        Ok(Autopilot {
            cleanup_dead_servers: raw.cleanup_dead_servers.unwrap_or(d.cleanup_dead_servers),
            last_contact_threshold: duration(
                "last_contact_threshold",
                &raw.last_contact_threshold,
                d.last_contact_threshold,
            )?,
            server_stabilization_time: duration(
                "server_stabilization_time",
                &raw.server_stabilization_time,
                d.server_stabilization_time,
            )?,
            max_trailing_logs: raw.max_trailing_logs.unwrap_or(d.max_trailing_logs),
            min_quorum: raw.min_quorum.unwrap_or(d.min_quorum),
        })
    }
}
