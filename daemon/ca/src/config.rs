//! The CA configuration in Consul's `/v1/connect/ca/configuration` shape:
//! a raw serde mirror (`CaConfig`) and its validated form (`ValidCaConfig`).

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::{CaError, ConfigError};
use crate::key::{KeyType, SecretPem};
use crate::root::RootCa;
use crate::{
    DEFAULT_INTERMEDIATE_TTL, DEFAULT_LEAF_TTL, DEFAULT_ROOT_TTL, MAX_LEAF_TTL, MIN_LEAF_TTL,
};
use mesh_types::{format_go_duration, parse_go_duration};

/// Consul's CA configuration body: `{Provider, Config, ForceWithoutCrossSigning}`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct CaConfig {
    /// CA provider; only `consul` (or empty, meaning `consul`) is supported.
    pub provider: String,
    /// Provider settings.
    pub config: ProviderConfig,
    /// Rotate without cross-signing (also accepted inside `Config`).
    pub force_without_cross_signing: bool,
}

/// The `Config` object of the `consul` provider, as given (durations as Go strings).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ProviderConfig {
    /// Leaf lifetime, default `72h`, allowed `1h`..`8760h`.
    #[serde(rename = "LeafCertTTL")]
    pub leaf_cert_ttl: Option<String>,
    /// Root lifetime, default `87600h`.
    #[serde(rename = "RootCertTTL")]
    pub root_cert_ttl: Option<String>,
    /// Intermediate lifetime, default `8760h`, at least 3 × LeafCertTTL.
    #[serde(rename = "IntermediateCertTTL")]
    pub intermediate_cert_ttl: Option<String>,
    /// `ec` (default) or `rsa`.
    #[serde(rename = "PrivateKeyType")]
    pub private_key_type: Option<String>,
    /// 256/384 for ec, 2048/4096 for rsa.
    #[serde(rename = "PrivateKeyBits")]
    pub private_key_bits: Option<u32>,
    /// User-supplied root key PEM (secret).
    #[serde(rename = "PrivateKey")]
    pub private_key: Option<SecretPem>,
    /// User-supplied root certificate PEM.
    #[serde(rename = "RootCert")]
    pub root_cert: Option<String>,
    /// Deprecated in Consul; parsed and kept, not acted on.
    #[serde(rename = "RotationPeriod")]
    pub rotation_period: Option<String>,
    /// Same as the top-level flag.
    #[serde(rename = "ForceWithoutCrossSigning")]
    pub force_without_cross_signing: Option<bool>,
    /// Consul's CSR rate limit (default 50/s); kept for the caller to enforce.
    #[serde(rename = "CSRMaxPerSecond")]
    pub csr_max_per_second: Option<f64>,
    /// Consul's CSR concurrency limit (0 = use the rate limit).
    #[serde(rename = "CSRMaxConcurrent")]
    pub csr_max_concurrent: Option<u32>,
}

/// A validated CA configuration with typed values and defaults applied.
#[derive(Debug, Clone, PartialEq)]
pub struct ValidCaConfig {
    /// LeafCertTTL.
    pub leaf_ttl: Duration,
    /// RootCertTTL.
    pub root_ttl: Duration,
    /// IntermediateCertTTL.
    pub intermediate_ttl: Duration,
    /// The key type for generated roots (or the one declared for a user root).
    pub key_type: KeyType,
    /// True when PrivateKeyType/Bits were given (checked against a user root).
    pub key_type_declared: bool,
    /// User-supplied root: `(RootCert, PrivateKey)`.
    pub user_root: Option<(String, SecretPem)>,
    /// RotationPeriod, if given.
    pub rotation_period: Option<Duration>,
    /// Effective ForceWithoutCrossSigning (top level or in Config).
    pub force_without_cross_signing: bool,
    /// CSR signing rate limit per second.
    pub csr_max_per_second: f64,
    /// CSR concurrency limit.
    pub csr_max_concurrent: u32,
}

impl Default for ValidCaConfig {
    fn default() -> Self {
        CaConfig::default().validate().expect("defaults are valid")
    }
}

const TOP_KNOWN: &str =
    "Provider, Config, ForceWithoutCrossSigning, State, CreateIndex, ModifyIndex";
const CONFIG_KNOWN: &str =
    "LeafCertTTL, RootCertTTL, IntermediateCertTTL, PrivateKeyType, PrivateKeyBits, \
PrivateKey, RootCert, RotationPeriod, ForceWithoutCrossSigning, CSRMaxPerSecond, CSRMaxConcurrent";

/// Key comparison as Consul's decoder does it: case-insensitive, `_` ignored.
use mesh_wire::fold_key as norm;

// === impl CaConfig ===

impl CaConfig {
    /// Parses a JSON body; keys are case-insensitive and may be snake_case (python-consul, HCL).
    pub fn from_json(body: &str) -> Result<CaConfig, ConfigError> {
        let value: Value =
            serde_json::from_str(body).map_err(|e| ConfigError::Json(e.to_string()))?;
        let Value::Object(top) = value else {
            return Err(ConfigError::Json("expected a JSON object".into()));
        };
        let mut out = CaConfig::default();
        for (key, v) in top {
            match norm(&key).as_str() {
                "provider" => out.provider = string(v, "Provider")?.unwrap_or_default(),
                "forcewithoutcrosssigning" => {
                    out.force_without_cross_signing = boolean(v, "ForceWithoutCrossSigning")?
                }
                "config" => match v {
                    Value::Object(map) => out.config = ProviderConfig::from_map(map)?,
                    Value::Null => {}
                    _ => {
                        return Err(ConfigError::WrongType {
                            field: "Config",
                            expected: "an object",
                        })
                    }
                },
                "state" | "createindex" | "modifyindex" => {} // echoed back from a GET
                _ => {
                    return Err(ConfigError::UnknownField {
                        field: key,
                        section: "top level",
                        known: TOP_KNOWN,
                    })
                }
            }
        }
        Ok(out)
    }

    /// Checks every value and applies Consul's defaults.
    pub fn validate(&self) -> Result<ValidCaConfig, ConfigError> {
        let csr_max_per_second = self.config.csr_max_per_second.unwrap_or(50.0);
        if !csr_rate_ok(csr_max_per_second) {
            return Err(ConfigError::CsrRate(csr_max_per_second.to_string()));
        }
        if !(self.provider.is_empty() || self.provider.eq_ignore_ascii_case("consul")) {
            return Err(ConfigError::UnsupportedProvider(self.provider.clone()));
        }
        let c = &self.config;
        let leaf_ttl = ttl("LeafCertTTL", &c.leaf_cert_ttl, DEFAULT_LEAF_TTL)?;
        let root_ttl = ttl("RootCertTTL", &c.root_cert_ttl, DEFAULT_ROOT_TTL)?;
        let intermediate_ttl = ttl(
            "IntermediateCertTTL",
            &c.intermediate_cert_ttl,
            DEFAULT_INTERMEDIATE_TTL,
        )?;
        let rotation_period = match &c.rotation_period {
            Some(p) => Some(ttl("RotationPeriod", &Some(p.clone()), Duration::ZERO)?),
            None => None,
        };
        if !(MIN_LEAF_TTL..=MAX_LEAF_TTL).contains(&leaf_ttl) {
            return Err(ConfigError::LeafTtlOutOfRange {
                value: format_go_duration(leaf_ttl),
            });
        }
        if intermediate_ttl < leaf_ttl * 3 {
            return Err(ConfigError::IntermediateTtlTooShort {
                intermediate: format_go_duration(intermediate_ttl),
                leaf: format_go_duration(leaf_ttl),
            });
        }
        let too_short = |other_name, other: Duration| ConfigError::RootTtlTooShort {
            root: format_go_duration(root_ttl),
            other_name,
            other: format_go_duration(other),
        };
        if root_ttl <= leaf_ttl {
            return Err(too_short("LeafCertTTL", leaf_ttl));
        }
        if root_ttl < intermediate_ttl {
            return Err(too_short("IntermediateCertTTL", intermediate_ttl));
        }
        let kind = c.private_key_type.clone().unwrap_or_default();
        let bits = c.private_key_bits.unwrap_or(0);
        let key_type = KeyType::from_consul(&kind, bits).map_err(|e| ConfigError::KeyType {
            key_type: kind.clone(),
            bits,
            reason: match e {
                CaError::UnsupportedKeyType { reason, .. } => reason.to_string(),
                other => other.to_string(),
            },
        })?;
        let user_root = match (&c.root_cert, &c.private_key) {
            (Some(cert), Some(key)) => Some((cert.clone(), key.clone())),
            (None, None) => None,
            (Some(_), None) => {
                return Err(ConfigError::IncompleteUserRoot {
                    present: "RootCert",
                    missing: "PrivateKey",
                })
            }
            (None, Some(_)) => {
                return Err(ConfigError::IncompleteUserRoot {
                    present: "PrivateKey",
                    missing: "RootCert",
                })
            }
        };
        Ok(ValidCaConfig {
            leaf_ttl,
            root_ttl,
            intermediate_ttl,
            key_type,
            key_type_declared: c.private_key_type.is_some() || c.private_key_bits.is_some(),
            user_root,
            rotation_period,
            force_without_cross_signing: self.force_without_cross_signing
                || c.force_without_cross_signing.unwrap_or(false),
            csr_max_per_second,
            csr_max_concurrent: c.csr_max_concurrent.unwrap_or(0),
        })
    }
}

/// The slowest `CSRMaxPerSecond` above 0: one leaf a day.
pub const MIN_CSR_RATE: f64 = 1.0 / 86_400.0;
/// The fastest `CSRMaxPerSecond`.
pub const MAX_CSR_RATE: f64 = 1e6;

/// Whether a `CSRMaxPerSecond` can be enforced: 0 (off) or a finite rate
/// whose period fits a `Duration`.
pub fn csr_rate_ok(rate: f64) -> bool {
    rate == 0.0 || (MIN_CSR_RATE..=MAX_CSR_RATE).contains(&rate)
}

impl ProviderConfig {
    fn from_map(map: Map<String, Value>) -> Result<ProviderConfig, ConfigError> {
        let mut c = ProviderConfig::default();
        for (key, v) in map {
            match norm(&key).as_str() {
                "leafcertttl" => c.leaf_cert_ttl = duration_string(v, "LeafCertTTL")?,
                "rootcertttl" => c.root_cert_ttl = duration_string(v, "RootCertTTL")?,
                "intermediatecertttl" => {
                    c.intermediate_cert_ttl = duration_string(v, "IntermediateCertTTL")?
                }
                "rotationperiod" => c.rotation_period = duration_string(v, "RotationPeriod")?,
                "privatekeytype" => c.private_key_type = string(v, "PrivateKeyType")?,
                "privatekeybits" => {
                    c.private_key_bits = number(v, "PrivateKeyBits")?.map(|n| n as u32)
                }
                "privatekey" => c.private_key = string(v, "PrivateKey")?.map(SecretPem::new),
                "rootcert" => c.root_cert = string(v, "RootCert")?,
                "forcewithoutcrosssigning" => {
                    c.force_without_cross_signing = Some(boolean(v, "ForceWithoutCrossSigning")?)
                }
                "csrmaxpersecond" => c.csr_max_per_second = number(v, "CSRMaxPerSecond")?,
                "csrmaxconcurrent" => {
                    c.csr_max_concurrent = number(v, "CSRMaxConcurrent")?.map(|n| n as u32)
                }
                _ => {
                    return Err(ConfigError::UnknownField {
                        field: key,
                        section: "Config",
                        known: CONFIG_KNOWN,
                    })
                }
            }
        }
        Ok(c)
    }
}

impl ValidCaConfig {
    /// The root this configuration asks for: the user's (validated) or a freshly generated one.
    pub fn build_root(&self, trust_domain: &str, now: i64) -> Result<RootCa, CaError> {
        match &self.user_root {
            Some((cert, key)) => {
                let declared = self.key_type_declared.then_some(self.key_type);
                RootCa::from_user_checked(cert, key.expose(), trust_domain, declared, now)
            }
            None => RootCa::generate_at(trust_domain, self.key_type, self.root_ttl, now),
        }
    }
}

/// A string field; `""` and `null` mean unset.
fn string(v: Value, field: &'static str) -> Result<Option<String>, ConfigError> {
    match v {
        Value::Null => Ok(None),
        Value::String(s) if s.is_empty() => Ok(None),
        Value::String(s) => Ok(Some(s)),
        _ => Err(ConfigError::WrongType {
            field,
            expected: "a string",
        }),
    }
}

fn boolean(v: Value, field: &'static str) -> Result<bool, ConfigError> {
    match v {
        Value::Null => Ok(false),
        Value::Bool(b) => Ok(b),
        Value::String(s) if s.eq_ignore_ascii_case("true") => Ok(true),
        Value::String(s) if s.eq_ignore_ascii_case("false") => Ok(false),
        _ => Err(ConfigError::WrongType {
            field,
            expected: "true or false",
        }),
    }
}

/// A non-negative number, also accepted as a numeric string (HCL and mapstructure are lax).
fn number(v: Value, field: &'static str) -> Result<Option<f64>, ConfigError> {
    let wrong = || ConfigError::WrongType {
        field,
        expected: "a non-negative number",
    };
    let n = match v {
        Value::Null => return Ok(None),
        Value::Number(n) => n.as_f64().ok_or_else(wrong)?,
        Value::String(s) if s.is_empty() => return Ok(None),
        Value::String(s) => s.trim().parse::<f64>().map_err(|_| wrong())?,
        _ => return Err(wrong()),
    };
    if n < 0.0 || !n.is_finite() {
        return Err(wrong());
    }
    Ok(Some(n))
}

/// A duration: a Go string, or an integer of nanoseconds (Go's JSON for `time.Duration`).
fn duration_string(v: Value, field: &'static str) -> Result<Option<String>, ConfigError> {
    match v {
        Value::Number(n) => {
            let nanos = n.as_u64().ok_or(ConfigError::WrongType {
                field,
                expected: "a duration string or non-negative nanoseconds",
            })?;
            Ok(Some(format_go_duration(Duration::from_nanos(nanos))))
        }
        other => string(other, field),
    }
}

fn ttl(
    field: &'static str,
    value: &Option<String>,
    default: Duration,
) -> Result<Duration, ConfigError> {
    match value {
        None => Ok(default),
        Some(s) => parse_go_duration(s).map_err(|reason| ConfigError::BadDuration {
            field,
            value: s.clone(),
            reason,
        }),
    }
}

#[cfg(test)]
#[path = "config_tests.rs"]
mod tests;
