//! `mesh_kv`: one key in the KV store.

use std::sync::Arc;

use tfplug::{AttrPath, Attribute, Block, Diagnostics, Schema, Value};

use crate::provider::Shared;
use crate::util::{n, report, s};

/// `mesh_kv`.
pub struct KvResource(pub Arc<Shared>);

impl KvResource {
    async fn write(&self, planned: &Value, diags: &mut Diagnostics) -> Value {
        let Some(c) = self.0.client(diags) else {
            return Value::Null;
        };
        let path = s(planned, "path");
        let flags = n(planned, "flags") as u64;
        match c
            .kv_put(&path, s(planned, "value"), Some(flags), None)
            .await
        {
            Ok(_) => {
                let mut v = planned.clone();
                v.set("id", path.into());
                v
            }
            Err(e) => {
                report(
                    diags,
                    e,
                    &format!("write key {path:?}"),
                    Some(AttrPath::attr("path")),
                );
                Value::Null
            }
        }
    }
}

#[tonic::async_trait]
impl tfplug::Resource for KvResource {
    fn type_name(&self) -> &str {
        "mesh_kv"
    }

    fn schema(&self) -> Schema {
        Schema::new(
            Block::new("A key in mesh's KV store. Import with the key path.")
                .attr(
                    Attribute::string("id")
                        .computed()
                        .use_state_for_unknown()
                        .describe("The key path."),
                )
                .attr(
                    Attribute::string("path")
                        .required()
                        .requires_replace()
                        .describe("Key path, e.g. `app/config/limit`."),
                )
                .attr(
                    Attribute::string("value")
                        .sensitive()
                        .describe("The value (UTF-8). Null stores an empty value."),
                )
                .attr(
                    Attribute::number("flags")
                        .default(0i64)
                        .validate(tfplug::Validator::Range(0.0, u64::MAX as f64))
                        .describe("Opaque flags stored with the key."),
                ),
        )
    }

    async fn create(&self, planned: &Value, _: &Value, diags: &mut Diagnostics) -> Value {
        self.write(planned, diags).await
    }

    async fn read(&self, state: &Value, diags: &mut Diagnostics) -> Value {
        let Some(c) = self.0.client(diags) else {
            return state.clone();
        };
        let path = s(state, "path");
        match c.kv_get(&path, &Default::default()).await {
            Ok((None, _)) => Value::Null,
            Ok((Some(pair), _)) => {
                let value = String::from_utf8_lossy(&pair.value.unwrap_or_default()).into_owned();
                let value = crate::util::keep_unset(state.get("value"), value.into());
                Value::object([
                    ("id", Value::from(path.clone())),
                    ("path", path.into()),
                    ("value", value),
                    ("flags", (pair.flags as i64).into()),
                ])
            }
            Err(e) => {
                report(diags, e, &format!("read key {path:?}"), None);
                state.clone()
            }
        }
    }

    async fn delete(&self, prior: &Value, diags: &mut Diagnostics) {
        let Some(c) = self.0.client(diags) else {
            return;
        };
        let path = s(prior, "path");
        if let Err(e) = c.kv_delete(&path, false, None).await {
            report(diags, e, &format!("delete key {path:?}"), None);
        }
    }

    async fn import(&self, id: &str, _: &mut Diagnostics) -> Value {
        Value::object([("id", Value::from(id)), ("path", Value::from(id))])
    }
}
