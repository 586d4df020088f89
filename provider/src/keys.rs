//! `mesh_keys`: several named keys written together (Consul provider's
//! `consul_keys`). Every apply is one transaction: the declared keys are
//! set, and keys dropped from the config are deleted if they were marked
//! `delete = true`. Unlike `mesh_key_prefix`, keys nobody declared are left.

use std::collections::BTreeMap;
use std::sync::Arc;

use base64::Engine;
use serde_json::json;
use tfplug::{AttrPath, Attribute, Block, Diagnostics, NestedBlock, Schema, Validator, Value};

use crate::provider::Shared;
use crate::util::{n, report, s};

/// A transaction holds at most 128 operations.
const MAX_KEYS: usize = 128;

/// `mesh_keys`.
pub struct KeysResource(pub Arc<Shared>);

/// One `key` block.
struct Key {
    path: String,
    value: String,
    flags: u64,
    delete: bool,
}

fn keys(v: &Value) -> Vec<Key> {
    v.get("key")
        .items()
        .iter()
        .map(|k| Key {
            path: s(k, "path"),
            value: s(k, "value"),
            flags: n(k, "flags") as u64,
            delete: k.get("delete").as_bool().unwrap_or(false),
        })
        .collect()
}

fn key_value(k: &Key) -> Value {
    Value::object([
        ("path", Value::from(k.path.clone())),
        ("value", Value::from(k.value.clone())),
        ("flags", Value::from(k.flags as i64)),
        ("delete", Value::Bool(k.delete)),
    ])
}

fn id_of(keys: &[Key]) -> String {
    let mut paths: Vec<&str> = keys.iter().map(|k| k.path.as_str()).collect();
    paths.sort();
    paths.join(",")
}

impl KeysResource {
    async fn apply(
        &self,
        prior: Option<&Value>,
        planned: &Value,
        diags: &mut Diagnostics,
    ) -> Value {
        let wanted = keys(planned);
        let b64 = base64::engine::general_purpose::STANDARD;
        let mut ops: Vec<serde_json::Value> = wanted
            .iter()
            .map(|k| {
                json!({"KV": {"Verb": "set", "Key": k.path, "Value": b64.encode(&k.value), "Flags": k.flags}})
            })
            .collect();
        // Keys dropped from the config go only if they were marked so.
        if let Some(prior) = prior {
            ops.extend(
                keys(prior)
                    .into_iter()
                    .filter(|k| k.delete && !wanted.iter().any(|w| w.path == k.path))
                    .map(|k| json!({"KV": {"Verb": "delete", "Key": k.path}})),
            );
        }
        if ops.len() > MAX_KEYS {
            diags.attr_error(
                AttrPath::attr("key"),
                "Too many keys",
                format!(
                    "{} operations; one apply writes at most {MAX_KEYS} (one transaction)",
                    ops.len()
                ),
            );
            return Value::Null;
        }
        let Some(c) = self.0.client(diags) else {
            return Value::Null;
        };
        match c
            .write_json(mesh_client::Method::PUT, "txn", &[], Some(&json!(ops)))
            .await
        {
            Ok(_) => {
                let mut v = planned.clone();
                v.set("id", id_of(&wanted).into());
                v
            }
            Err(e) => {
                report(diags, e, "write keys", Some(AttrPath::attr("key")));
                Value::Null
            }
        }
    }
}

#[tonic::async_trait]
impl tfplug::Resource for KeysResource {
    fn type_name(&self) -> &str {
        "mesh_keys"
    }

    fn schema(&self) -> Schema {
        Schema::new(
            Block::new("Several keys written together, in one transaction. A key dropped from the config is deleted if it had `delete = true`; keys nobody declared are left alone (use `mesh_key_prefix` to own a whole prefix). Import with the paths, comma-separated.")
                .attr(Attribute::string("id").computed().describe("The key paths, sorted and comma-separated."))
                .block(
                    NestedBlock::list(
                        "key",
                        Block::new("One key.")
                            .attr(Attribute::string("path").required().describe("Key path, e.g. `app/config/limit`."))
                            .attr(Attribute::string("value").required().describe("The value (UTF-8)."))
                            .attr(
                                Attribute::number("flags")
                                    .default(0i64)
                                    .validate(Validator::Range(0.0, u64::MAX as f64))
                                    .describe("Opaque flags stored with the key."),
                            )
                            .attr(
                                Attribute::bool("delete")
                                    .default(false)
                                    .describe("Delete the key when it leaves the config or the resource is destroyed."),
                            ),
                    )
                    .items(1, 0),
                ),
        )
    }

    async fn validate(&self, config: &Value, diags: &mut Diagnostics) {
        let list = keys(config);
        if list.len() > MAX_KEYS {
            diags.attr_error(
                AttrPath::attr("key"),
                "Too many keys",
                format!(
                    "{} keys; one apply writes at most {MAX_KEYS} (one transaction)",
                    list.len()
                ),
            );
        }
        let mut seen = BTreeMap::new();
        for k in list.iter().filter(|k| !k.path.is_empty()) {
            if seen.insert(k.path.clone(), ()).is_some() {
                diags.attr_error(
                    AttrPath::attr("key"),
                    "Duplicate key",
                    format!("{:?} is declared twice", k.path),
                );
            }
        }
    }

    async fn create(&self, planned: &Value, _: &Value, diags: &mut Diagnostics) -> Value {
        self.apply(None, planned, diags).await
    }

    async fn update(
        &self,
        prior: &Value,
        planned: &Value,
        _: &Value,
        diags: &mut Diagnostics,
    ) -> Value {
        self.apply(Some(prior), planned, diags).await
    }

    async fn read(&self, state: &Value, diags: &mut Diagnostics) -> Value {
        let Some(c) = self.0.client(diags) else {
            return state.clone();
        };
        let mut found = Vec::new();
        for mut k in keys(state) {
            match c.kv_get(&k.path, &Default::default()).await {
                // A key deleted by hand leaves the state: the plan puts it back.
                Ok((None, _)) => {}
                Ok((Some(pair), _)) => {
                    k.value = String::from_utf8_lossy(&pair.value.unwrap_or_default()).into_owned();
                    k.flags = pair.flags;
                    found.push(k);
                }
                Err(e) => {
                    report(diags, e, &format!("read key {:?}", k.path), None);
                    return state.clone();
                }
            }
        }
        if found.is_empty() {
            return Value::Null;
        }
        Value::object([
            ("id", Value::from(id_of(&found))),
            ("key", Value::List(found.iter().map(key_value).collect())),
        ])
    }

    async fn delete(&self, prior: &Value, diags: &mut Diagnostics) {
        let ops: Vec<serde_json::Value> = keys(prior)
            .into_iter()
            .filter(|k| k.delete)
            .map(|k| json!({"KV": {"Verb": "delete", "Key": k.path}}))
            .collect();
        if ops.is_empty() {
            return;
        }
        let Some(c) = self.0.client(diags) else {
            return;
        };
        if let Err(e) = c
            .write_json(mesh_client::Method::PUT, "txn", &[], Some(&json!(ops)))
            .await
        {
            report(diags, e, "delete keys", None);
        }
    }

    async fn import(&self, id: &str, _: &mut Diagnostics) -> Value {
        let list: Vec<Value> = id
            .split(',')
            .filter(|p| !p.is_empty())
            .map(|p| {
                key_value(&Key {
                    path: p.to_string(),
                    value: String::new(),
                    flags: 0,
                    delete: false,
                })
            })
            .collect();
        Value::object([("id", Value::from(id)), ("key", Value::List(list))])
    }
}
