//! A CA configuration as the API and mesh.d send it: Consul's fields plus
//! our rotation settings, read in any key spelling, and what may be shown
//! of it again (never the private key).

use std::time::Duration;

use serde_json::Value;

use crate::config::CaConfig;

/// How long a new root stays pending (trusted, not signing) before it
/// signs, unless the configuration says otherwise.
pub const DEFAULT_PENDING: Duration = Duration::from_secs(5);
/// Window over which leaves are re-issued after a new root activates.
pub const DEFAULT_SPREAD: Duration = Duration::from_secs(30);
/// Consul's default `Config.CSRMaxPerSecond`.
pub const DEFAULT_CSR_MAX_PER_SECOND: f64 = 50.0;

/// A parsed CA configuration request.
#[derive(Debug, Clone)]
pub struct CaConfigRequest {
    /// Consul's part, parsed.
    pub config: CaConfig,
    /// What `GET /v1/connect/ca/configuration` may echo: the request
    /// without our rotation keys and without any private key.
    pub shown: Value,
    /// `RotationPendingPeriod`.
    pub pending: Duration,
    /// `RotationSpreadWindow`.
    pub spread: Duration,
}

impl CaConfigRequest {
    /// Splits off our rotation keys and parses the rest as Consul's CA
    /// configuration. The error says what is wrong.
    pub fn parse(body: &Value) -> Result<Self, String> {
        let mut top = body
            .as_object()
            .cloned()
            .ok_or("CA configuration must be a JSON object")?;
        let mut take_duration = |name: &str, default: Duration| -> Result<Duration, String> {
            match mesh_wire::take_field(&mut top, name) {
                None | Some(Value::Null) => Ok(default),
                Some(Value::String(s)) => {
                    crate::parse_go_duration(&s).map_err(|e| format!("{name}: {e}"))
                }
                Some(other) => Err(format!("{name} must be a duration string, got {other}")),
            }
        };
        let pending = take_duration("RotationPendingPeriod", DEFAULT_PENDING)?;
        let spread = take_duration("RotationSpreadWindow", DEFAULT_SPREAD)?;
        let config = CaConfig::from_json(&Value::Object(top.clone()).to_string())
            .map_err(|e| e.to_string())?;
        let mut shown = top;
        if let Some(Value::Object(inner)) = mesh_wire::field_mut(&mut shown, "Config") {
            while mesh_wire::take_field(inner, "PrivateKey").is_some() {}
        }
        Ok(CaConfigRequest {
            config,
            shown: Value::Object(shown),
            pending,
            spread,
        })
    }
}

/// `Config.CSRMaxPerSecond` of a stored configuration: Consul's default 50,
/// and 0 (or less) turns the limit off.
pub fn csr_max_per_second(config: &Value) -> f64 {
    config
        .as_object()
        .and_then(|m| mesh_wire::field(m, "Config"))
        .and_then(Value::as_object)
        .and_then(|c| mesh_wire::field(c, "CSRMaxPerSecond"))
        .and_then(Value::as_f64)
        .unwrap_or(DEFAULT_CSR_MAX_PER_SECOND)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn rotation_keys_split_off_and_the_key_is_never_shown() {
        let r = CaConfigRequest::parse(&json!({
            "Provider": "consul",
            "rotation_pending_period": "10s",
            "Config": {"private_key": "secret", "LeafCertTTL": "72h"}
        }))
        .unwrap();
        assert_eq!(r.pending, Duration::from_secs(10));
        assert_eq!(r.spread, DEFAULT_SPREAD);
        assert_eq!(
            r.shown,
            json!({"Provider": "consul", "Config": {"LeafCertTTL": "72h"}})
        );
        assert!(CaConfigRequest::parse(&json!({"RotationSpreadWindow": 5}))
            .unwrap_err()
            .contains("RotationSpreadWindow must be a duration string"));
        assert!(CaConfigRequest::parse(&json!([])).is_err());
    }

    #[test]
    fn the_csr_rate_defaults_to_consuls() {
        assert_eq!(csr_max_per_second(&json!({})), 50.0);
        assert_eq!(
            csr_max_per_second(&json!({"config": {"csr_max_per_second": 0}})),
            0.0
        );
    }
}
