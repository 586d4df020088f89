//! `mesh_key_prefix`: every key under a prefix, owned as a whole. One
//! transaction deletes the tree and writes the subkeys, so readers never
//! see half an apply and keys nobody declared do not linger.

use std::collections::BTreeMap;
use std::sync::Arc;

use base64::Engine;
use serde_json::json;
use tfplug::{AttrPath, Attribute, Block, Diagnostics, Schema, Type, Value};

use crate::provider::Shared;
use crate::util::{report, s, string_map};

/// A transaction holds at most 128 operations, one of them the tree delete.
const MAX_SUBKEYS: usize = 127;

/// `mesh_key_prefix`.
pub struct KeyPrefixResource(pub Arc<Shared>);

impl KeyPrefixResource {
    async fn write(&self, planned: &Value, diags: &mut Diagnostics) -> Value {
        let prefix = s(planned, "path_prefix");
        let subkeys = string_map(planned.get("subkeys"));
        if subkeys.len() > MAX_SUBKEYS {
            diags.attr_error(
                AttrPath::attr("subkeys"),
                "Too many subkeys",
                format!(
                    "{} subkeys; one apply writes at most {MAX_SUBKEYS} (one transaction)",
                    subkeys.len()
                ),
            );
            return Value::Null;
        }
        let Some(c) = self.0.client(diags) else {
            return Value::Null;
        };
        let b64 = base64::engine::general_purpose::STANDARD;
        let mut ops = vec![json!({"KV": {"Verb": "delete-tree", "Key": prefix}})];
        ops.extend(subkeys.iter().map(|(k, v)| {
            json!({"KV": {"Verb": "set", "Key": format!("{prefix}{k}"), "Value": b64.encode(v)}})
        }));
        match c
            .write_json(mesh_client::Method::PUT, "txn", &[], Some(&json!(ops)))
            .await
        {
            Ok(_) => {
                let mut v = planned.clone();
                v.set("id", prefix.into());
                v
            }
            Err(e) => {
                report(
                    diags,
                    e,
                    &format!("write keys under {prefix:?}"),
                    Some(AttrPath::attr("subkeys")),
                );
                Value::Null
            }
        }
    }
}

#[tonic::async_trait]
impl tfplug::Resource for KeyPrefixResource {
    fn type_name(&self) -> &str {
        "mesh_key_prefix"
    }

    fn schema(&self) -> Schema {
        Schema::new(
            Block::new("Every key under a prefix: keys not in `subkeys` are deleted on apply, and all changes land in one transaction. Import with the prefix.")
                .attr(Attribute::string("id").computed().use_state_for_unknown().describe("The prefix."))
                .attr(
                    Attribute::string("path_prefix")
                        .required()
                        .requires_replace()
                        .describe("The prefix, usually ending in `/`, e.g. `app/config/`."),
                )
                .attr(
                    Attribute::new("subkeys", Type::map(Type::String))
                        .required()
                        .describe("Keys below the prefix (without it) and their values."),
                ),
        )
    }

    async fn validate(&self, config: &Value, diags: &mut Diagnostics) {
        if config.get("path_prefix").as_str() == Some("") {
            diags.attr_error(
                AttrPath::attr("path_prefix"),
                "Empty path_prefix",
                "an empty prefix would own the whole KV store; name a prefix such as `app/`",
            );
        }
        let count = string_map(config.get("subkeys")).len();
        if count > MAX_SUBKEYS {
            diags.attr_error(
                AttrPath::attr("subkeys"),
                "Too many subkeys",
                format!(
                    "{count} subkeys; one apply writes at most {MAX_SUBKEYS} (one transaction)"
                ),
            );
        }
    }

    async fn create(&self, planned: &Value, _: &Value, diags: &mut Diagnostics) -> Value {
        self.write(planned, diags).await
    }

    async fn read(&self, state: &Value, diags: &mut Diagnostics) -> Value {
        let Some(c) = self.0.client(diags) else {
            return state.clone();
        };
        let prefix = s(state, "path_prefix");
        match c.kv_list(&prefix, &Default::default()).await {
            Ok((pairs, _)) => {
                let subkeys: BTreeMap<String, Value> = pairs
                    .into_iter()
                    .filter_map(|p| {
                        let sub = p.key.strip_prefix(prefix.as_str())?.to_string();
                        let value =
                            String::from_utf8_lossy(&p.value.unwrap_or_default()).into_owned();
                        Some((sub, Value::from(value)))
                    })
                    .collect();
                Value::object([
                    ("id", Value::from(prefix.clone())),
                    ("path_prefix", prefix.into()),
                    ("subkeys", Value::Map(subkeys)),
                ])
            }
            Err(e) => {
                report(diags, e, &format!("read keys under {prefix:?}"), None);
                state.clone()
            }
        }
    }

    async fn delete(&self, prior: &Value, diags: &mut Diagnostics) {
        let Some(c) = self.0.client(diags) else {
            return;
        };
        let prefix = s(prior, "path_prefix");
        if let Err(e) = c.kv_delete(&prefix, true, None).await {
            report(diags, e, &format!("delete keys under {prefix:?}"), None);
        }
    }

    async fn import(&self, id: &str, _: &mut Diagnostics) -> Value {
        Value::object([("id", Value::from(id)), ("path_prefix", Value::from(id))])
    }
}
