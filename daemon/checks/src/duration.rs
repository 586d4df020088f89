//! Go's `time.ParseDuration`, which is how Consul reads every duration field.

use std::time::Duration;

/// Parses a Go duration string ("10s", "1m30s", "1.5h", "500ms", "0").
///
/// Negative durations are rejected: no check field means anything by them.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    mesh_types::parse_go_duration(s).map_err(|why| format!("invalid duration {s:?}: {why}"))
}
