//! `mesh_ca_config`: the Connect CA configuration. A change is applied in
//! place and waits until the staged rotation reports the new root active.
//! The private key is write-only: state keeps only its SHA-256.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value as Json};
use sha2::Digest;
use tfplug::{AttrPath, Attribute, Block, Diagnostics, Plan, Schema, Validator, Value};

use crate::provider::Shared;
use crate::util::{self, n, report, s};

/// `mesh_ca_config`.
pub struct CaConfigResource(pub Arc<Shared>);

/// Whether `text` is one or more well-formed PEM blocks with `label` in their type.
pub fn check_pem(text: &str, label: &str) -> Result<(), String> {
    use base64::Engine;
    let mut found = 0;
    let mut rest = text.trim();
    while !rest.is_empty() {
        let begin = rest
            .strip_prefix("-----BEGIN ")
            .ok_or("expected a line `-----BEGIN ...-----`")?;
        let (kind, body) = begin.split_once("-----").ok_or("unterminated BEGIN line")?;
        if !kind.contains(label) {
            return Err(format!("expected a {label} PEM block, found {kind:?}"));
        }
        let end = format!("-----END {kind}-----");
        let (b64, after) = body
            .split_once(&end)
            .ok_or_else(|| format!("missing `{end}`"))?;
        let b64: String = b64.split_whitespace().collect();
        base64::engine::general_purpose::STANDARD
            .decode(b64)
            .map_err(|e| format!("the {kind} block is not valid base64: {e}"))?;
        found += 1;
        rest = after.trim();
    }
    if found == 0 {
        return Err("empty PEM".into());
    }
    Ok(())
}

fn hash(key: &str) -> String {
    let digest = sha2::Sha256::digest(key.trim().as_bytes());
    format!(
        "sha256:{}",
        digest
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    )
}

const FIELDS: [(&str, &str); 3] = [
    ("LeafCertTTL", "leaf_cert_ttl"),
    ("RootCertTTL", "root_cert_ttl"),
    ("PrivateKeyType", "private_key_type"),
];

#[tonic::async_trait]
impl tfplug::Resource for CaConfigResource {
    fn type_name(&self) -> &str {
        "mesh_ca_config"
    }

    fn schema(&self) -> Schema {
        let ttl = || {
            Validator::regex(
                r"^([0-9]+(\.[0-9]+)?(ns|us|ms|s|m|h))+$",
                "a duration such as `72h`",
            )
        };
        Schema::new(
            Block::new("The cluster's Connect CA configuration (a singleton). Changes rotate the root in place, staged; destroy only forgets it. Import with `ca`.")
                .attr(Attribute::string("id").computed().use_state_for_unknown().describe("Always `ca`."))
                .attr(Attribute::string("provider").default("consul").validate(Validator::OneOf(vec!["consul".into()])).describe("CA provider."))
                .attr(Attribute::string("leaf_cert_ttl").optional_computed().validate(ttl()).describe("Leaf certificate lifetime (1h–8760h), e.g. `72h`."))
                .attr(Attribute::string("root_cert_ttl").optional_computed().validate(ttl()).describe("Root certificate lifetime, e.g. `87600h`."))
                .attr(Attribute::string("private_key_type").optional_computed().validate(Validator::OneOf(vec!["ec".into(), "rsa".into()])).describe("Key type of a generated root."))
                .attr(Attribute::number("private_key_bits").optional_computed().describe("Key size of a generated root (256 for ec, 2048+ for rsa)."))
                .attr(Attribute::string("private_key").write_only().describe("PEM private key of a root you supply (with `root_cert`)."))
                .attr(Attribute::string("private_key_hash").computed().describe("`sha256:<hex>` of `private_key`, so a key change shows in plans."))
                .attr(Attribute::string("root_cert").describe("PEM root certificate you supply (with `private_key`)."))
                .attr(Attribute::string("rotation_pending_period").validate(ttl()).describe("How long a new root stays pending, trusted but not yet signing, before it becomes active (server default `5s`). Applies to the rotations this resource starts."))
                .attr(Attribute::string("rotation_spread_window").validate(ttl()).describe("Window over which leaves are re-issued from the new root (server default `30s`). Applies to the rotations this resource starts."))
                .attr(Attribute::number("rotation_timeout").default(120i64).validate(Validator::Range(1.0, 3600.0)).describe("Seconds an update waits for the new root to become active.")),
        )
    }

    async fn validate(&self, config: &Value, diags: &mut Diagnostics) {
        if let Some(pem) = config.get("root_cert").as_str() {
            if let Err(e) = check_pem(pem, "CERTIFICATE") {
                diags.attr_error(AttrPath::attr("root_cert"), "Malformed root_cert", e);
            }
        }
        if let Some(pem) = config.get("private_key").as_str() {
            if let Err(e) = check_pem(pem, "PRIVATE KEY") {
                diags.attr_error(AttrPath::attr("private_key"), "Malformed private_key", e);
            }
        }
    }

    async fn modify_plan(
        &self,
        _prior: &Value,
        config: &Value,
        plan: &mut Plan,
        _: &mut Diagnostics,
    ) {
        let h = match config.get("private_key") {
            Value::String(k) => Value::from(hash(k)),
            Value::Unknown => Value::Unknown,
            _ => Value::Null,
        };
        // Null when no key is configured: never "known after apply".
        plan.planned.set("private_key_hash", h);
        plan.planned.set("id", "ca".into());
    }

    async fn create(&self, planned: &Value, config: &Value, diags: &mut Diagnostics) -> Value {
        self.write(planned, config, diags).await
    }

    async fn read(&self, state: &Value, diags: &mut Diagnostics) -> Value {
        let Some(c) = self.0.client(diags) else {
            return state.clone();
        };
        match c.ca_config_get().await {
            Ok(None) => Value::Null,
            Ok(Some(j)) => {
                let mut v = state.clone();
                v.set("id", "ca".into());
                v.set("provider", util::str_from_json(&j["Provider"]));
                for (key, attr) in FIELDS {
                    v.set(attr, util::str_from_json(&j["Config"][key]));
                }
                v.set(
                    "private_key_bits",
                    Value::from(j["Config"]["PrivateKeyBits"].as_i64().unwrap_or_default()),
                );
                if v.get("rotation_timeout").is_null() {
                    v.set("rotation_timeout", 120i64.into());
                }
                v
            }
            Err(e) => {
                report(diags, e, "read the CA configuration", None);
                state.clone()
            }
        }
    }

    async fn delete(&self, _: &Value, diags: &mut Diagnostics) {
        diags.warning(
            "CA configuration left in place",
            "a cluster always has a CA; destroying mesh_ca_config only removes it from Terraform state",
        );
    }

    async fn import(&self, _: &str, _: &mut Diagnostics) -> Value {
        Value::object([("id", Value::from("ca"))])
    }
}

impl CaConfigResource {
    async fn write(&self, planned: &Value, config: &Value, diags: &mut Diagnostics) -> Value {
        let Some(c) = self.0.client(diags) else {
            return Value::Null;
        };
        let mut cfg = serde_json::Map::new();
        for (key, attr) in FIELDS {
            util::put_str(&mut cfg, key, planned.get(attr));
        }
        if let Some(bits) = planned.get("private_key_bits").as_i64().filter(|b| *b > 0) {
            cfg.insert("PrivateKeyBits".into(), bits.into());
        }
        util::put_str(&mut cfg, "PrivateKey", config.get("private_key"));
        util::put_str(&mut cfg, "RootCert", planned.get("root_cert"));
        let before = c.ca_roots(&Default::default()).await.ok().flatten();
        let before = before
            .as_ref()
            .and_then(|r| r["ActiveRootID"].as_str())
            .map(str::to_string);
        let mut body = json!({"Provider": s(planned, "provider"), "Config": cfg});
        for (key, attr) in [
            ("RotationPendingPeriod", "rotation_pending_period"),
            ("RotationSpreadWindow", "rotation_spread_window"),
        ] {
            if let Some(d) = planned.get(attr).as_str() {
                body[key] = d.into();
            }
        }
        let answer = match c.ca_config_put(&body).await {
            Ok(a) => a,
            Err(e) => {
                report(diags, e, "update the CA configuration", None);
                return Value::Null;
            }
        };
        let timeout = Duration::from_secs(n(planned, "rotation_timeout").max(1) as u64);
        let rotating = answer["Rotating"].as_bool().unwrap_or(true);
        if !rotating {
            // Nothing about the root changed (e.g. only the leaf TTL).
        } else if let Err(e) = wait_rotated(&c, before.as_deref(), timeout).await {
            diags.attr_error(
                AttrPath::attr("rotation_timeout"),
                "CA rotation did not finish",
                e,
            );
            return Value::Null;
        }
        // Fill server defaults for what was left unset.
        let mut v = tfplug::Resource::read(self, planned, diags).await;
        v.set("private_key_hash", planned.get("private_key_hash").clone());
        v.set("root_cert", planned.get("root_cert").clone());
        for attr in [
            "rotation_timeout",
            "rotation_pending_period",
            "rotation_spread_window",
        ] {
            v.set(attr, planned.get(attr).clone());
        }
        for attr in [
            "leaf_cert_ttl",
            "root_cert_ttl",
            "private_key_type",
            "private_key_bits",
        ] {
            if !planned.get(attr).is_unknown() {
                v.set(attr, planned.get(attr).clone());
            }
        }
        v
    }
}

/// Waits until the rotation endpoint reports the new root active (or,
/// without that endpoint, until the active root differs from `before`).
async fn wait_rotated(
    c: &mesh_client::Client,
    before: Option<&str>,
    timeout: Duration,
) -> Result<(), String> {
    let start = Instant::now();
    loop {
        let rotation = c.ca_rotation().await;
        let done = match &rotation {
            Ok(Some(r)) => rotation_done(r, before),
            // No staged rotation endpoint: a changed root (or none before) is enough.
            _ => match c.ca_roots(&Default::default()).await {
                Ok(Some(roots)) => roots["ActiveRootID"].as_str() != before || before.is_none(),
                _ => false,
            },
        };
        if done {
            return Ok(());
        }
        if start.elapsed() > timeout {
            return Err(format!(
                "the new root was not active after {timeout:?}; last rotation state: {rotation:?}"
            ));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Whether a rotation status says the new root is active: stage `active` or
/// `reissuing` (leaves are being re-signed by the new root), or no rotation
/// with an active root other than the one before the change.
fn rotation_done(r: &Json, before: Option<&str>) -> bool {
    let field = |name: &str| {
        r.as_object()
            .and_then(|m| m.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)))
            .map(|(_, v)| v.clone())
            .unwrap_or(Json::Null)
    };
    match field("Stage")
        .as_str()
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        Some("active" | "reissuing") => true,
        Some("none") => field("ActiveRootID").as_str() != before,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pem_checks_say_what_is_wrong() {
        let good = "-----BEGIN CERTIFICATE-----\nTUlJQg==\n-----END CERTIFICATE-----\n";
        assert!(check_pem(good, "CERTIFICATE").is_ok());
        assert!(check_pem("not pem", "CERTIFICATE")
            .unwrap_err()
            .contains("BEGIN"));
        assert!(check_pem(
            "-----BEGIN CERTIFICATE-----\n@@@\n-----END CERTIFICATE-----",
            "CERTIFICATE"
        )
        .unwrap_err()
        .contains("base64"));
        assert!(check_pem(good, "PRIVATE KEY").is_err());
        assert!(hash("k").starts_with("sha256:"));
    }

    #[test]
    fn rotation_is_done_once_the_new_root_is_active() {
        let stage = |s: &str, id: &str| json!({"Stage": s, "ActiveRootID": id});
        assert!(!rotation_done(&stage("pending", "a"), Some("a")));
        assert!(rotation_done(&stage("reissuing", "b"), Some("a")));
        assert!(rotation_done(&stage("active", "b"), Some("a")));
        assert!(!rotation_done(&stage("none", "a"), Some("a")));
        assert!(rotation_done(&stage("none", "b"), Some("a")));
    }
}
