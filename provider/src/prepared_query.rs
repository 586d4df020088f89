//! `mesh_prepared_query`: a prepared query (`/v1/query`), run over HTTP
//! and DNS as `<name>.query.<domain>`.

use std::sync::Arc;

use serde_json::{json, Value as Json};
use tfplug::{AttrPath, Attribute, Block, Diagnostics, Schema, Type, Value};

use crate::provider::Shared;
use crate::util::{
    keep_unset, list_from_json, map_from_json, report, s, str_from_json, string_map, strings,
};

/// `mesh_prepared_query`.
pub struct PreparedQueryResource(pub Arc<Shared>);

fn flag(v: &Value, name: &str) -> bool {
    v.get(name).as_bool().unwrap_or(false)
}

/// The query's body in Consul's shape.
fn body(v: &Value) -> Json {
    json!({
        "Name": s(v, "name"),
        "Session": s(v, "session"),
        "Token": s(v, "token"),
        "Service": {
            "Service": s(v, "service"),
            "OnlyPassing": flag(v, "only_passing"),
            "Near": s(v, "near"),
            "Tags": strings(v.get("tags")),
            "NodeMeta": string_map(v.get("node_meta")),
            "ServiceMeta": string_map(v.get("service_meta")),
            "IgnoreCheckIDs": strings(v.get("ignore_check_ids")),
            "Connect": { "Enabled": flag(v, "connect") },
        },
        "DNS": { "TTL": s(v, "dns_ttl") },
        "Template": {
            "Type": s(v, "template_type"),
            "Regexp": s(v, "template_regexp"),
        },
    })
}

impl PreparedQueryResource {
    async fn put(&self, id: Option<&str>, planned: &Value, diags: &mut Diagnostics) -> Value {
        let Some(c) = self.0.client(diags) else {
            return Value::Null;
        };
        let name = s(planned, "name");
        let answer = match id {
            Some(id) => c
                .write_json(
                    mesh_client::Method::PUT,
                    &format!("query/{id}"),
                    &[],
                    Some(&body(planned)),
                )
                .await
                .map(|_| id.to_string()),
            None => c
                .write_json(
                    mesh_client::Method::POST,
                    "query",
                    &[],
                    Some(&body(planned)),
                )
                .await
                .map(|j| j["ID"].as_str().unwrap_or_default().to_string()),
        };
        match answer {
            Ok(id) => {
                let mut v = planned.clone();
                v.set("id", id.into());
                v
            }
            Err(e) => {
                report(
                    diags,
                    e,
                    &format!("write prepared query {name:?}"),
                    Some(AttrPath::attr("name")),
                );
                Value::Null
            }
        }
    }
}

#[tonic::async_trait]
impl tfplug::Resource for PreparedQueryResource {
    fn type_name(&self) -> &str {
        "mesh_prepared_query"
    }

    fn schema(&self) -> Schema {
        let list = || Type::list(Type::String);
        let map = || Type::map(Type::String);
        Schema::new(
            Block::new("A prepared query: a stored service lookup with filters, run by name or ID over HTTP (`/v1/query/<name>/execute`) and DNS (`<name>.query.<domain>`). Import with the query's ID.")
                .attr(Attribute::string("id").computed().use_state_for_unknown().describe("The query's ID."))
                .attr(Attribute::string("name").required().describe("Unique name; for a template, the prefix it matches."))
                .attr(Attribute::string("service").required().describe("The service to look up (in a template, may use `${name.suffix}`, `${match(N)}`)."))
                .attr(Attribute::bool("only_passing").default(false).describe("Only instances whose checks all pass (otherwise: all but critical)."))
                .attr(Attribute::new("tags", list()).describe("Tags each instance must have; `!tag` must not."))
                .attr(Attribute::new("node_meta", map()).describe("Node metadata each instance's node must have."))
                .attr(Attribute::new("service_meta", map()).describe("Service metadata each instance must have."))
                .attr(Attribute::new("ignore_check_ids", list()).describe("Checks that do not count for health."))
                .attr(Attribute::string("near").describe("`_agent` or a node name: that node's instances first."))
                .attr(Attribute::bool("connect").default(false).describe("Answer with the service's Connect proxies."))
                .attr(Attribute::string("session").describe("A session the query lives with: destroyed with it."))
                .attr(Attribute::string("token").sensitive().describe("Stored with the query (shown as `<hidden>`)."))
                .attr(Attribute::string("dns_ttl").describe("TTL of its DNS answers, e.g. `10s`."))
                .attr(Attribute::string("template_type").describe("`name_prefix_match` to make the query a template."))
                .attr(Attribute::string("template_regexp").describe("A template's regular expression; its groups are `${match(N)}`.")),
        )
    }

    async fn create(&self, planned: &Value, _: &Value, diags: &mut Diagnostics) -> Value {
        self.put(None, planned, diags).await
    }

    async fn update(
        &self,
        prior: &Value,
        planned: &Value,
        _: &Value,
        diags: &mut Diagnostics,
    ) -> Value {
        let id = s(prior, "id");
        self.put(Some(&id), planned, diags).await
    }

    async fn read(&self, state: &Value, diags: &mut Diagnostics) -> Value {
        let Some(c) = self.0.client(diags) else {
            return state.clone();
        };
        let id = s(state, "id");
        let q = match c.get_json(&format!("query/{id}"), &[]).await {
            Ok(None) => return Value::Null,
            Ok(Some(list)) => list[0].clone(),
            Err(e) => {
                report(diags, e, &format!("read prepared query {id:?}"), None);
                return state.clone();
            }
        };
        if q.is_null() {
            return Value::Null;
        }
        let svc = &q["Service"];
        let keep = |name: &str, read: Value| keep_unset(state.get(name), read);
        Value::object([
            ("id", Value::from(id.clone())),
            ("name", str_from_json(&q["Name"])),
            ("service", str_from_json(&svc["Service"])),
            (
                "only_passing",
                Value::from(svc["OnlyPassing"].as_bool().unwrap_or(false)),
            ),
            ("tags", keep("tags", list_from_json(&svc["Tags"]))),
            (
                "node_meta",
                keep("node_meta", map_from_json(&svc["NodeMeta"])),
            ),
            (
                "service_meta",
                keep("service_meta", map_from_json(&svc["ServiceMeta"])),
            ),
            (
                "ignore_check_ids",
                keep("ignore_check_ids", list_from_json(&svc["IgnoreCheckIDs"])),
            ),
            ("near", keep("near", str_from_json(&svc["Near"]))),
            (
                "connect",
                Value::from(svc["Connect"]["Enabled"].as_bool().unwrap_or(false)),
            ),
            ("session", keep("session", str_from_json(&q["Session"]))),
            // The server hides it; what was planned stays.
            ("token", state.get("token").clone()),
            ("dns_ttl", keep("dns_ttl", str_from_json(&q["DNS"]["TTL"]))),
            (
                "template_type",
                keep("template_type", str_from_json(&q["Template"]["Type"])),
            ),
            (
                "template_regexp",
                keep("template_regexp", str_from_json(&q["Template"]["Regexp"])),
            ),
        ])
    }

    async fn delete(&self, prior: &Value, diags: &mut Diagnostics) {
        let Some(c) = self.0.client(diags) else {
            return;
        };
        let id = s(prior, "id");
        if let Err(e) = c
            .write_json(
                mesh_client::Method::DELETE,
                &format!("query/{id}"),
                &[],
                None,
            )
            .await
        {
            report(diags, e, &format!("delete prepared query {id:?}"), None);
        }
    }

    async fn import(&self, id: &str, _: &mut Diagnostics) -> Value {
        Value::object([("id", Value::from(id))])
    }
}
