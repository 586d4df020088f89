//! `mesh_intention`: allow/deny (L4) or L7 permissions from a source service
//! to a destination, via `/v1/connect/intentions/exact`.

use std::sync::Arc;

use serde_json::{json, Value as Json};
use tfplug::{
    AttrPath, Attribute, Block, Diagnostics, NestedBlock, Plan, Schema, Type, Validator, Value,
};

use crate::provider::Shared;
use crate::util::{self, report, s, string_map, strings};

/// `mesh_intention`.
pub struct IntentionResource(pub Arc<Shared>);

fn actions() -> Validator {
    Validator::OneOf(vec!["allow".into(), "deny".into()])
}

const PATHS: [(&str, &str); 3] = [
    ("PathExact", "path_exact"),
    ("PathPrefix", "path_prefix"),
    ("PathRegex", "path_regex"),
];

/// The request body for a planned value.
fn body(v: &Value) -> Json {
    let mut o = serde_json::Map::new();
    util::put_str(&mut o, "Action", v.get("action"));
    util::put_str(&mut o, "Description", v.get("description"));
    o.insert("Meta".into(), json!(string_map(v.get("meta"))));
    let perms: Vec<Json> = v
        .get("permission")
        .items()
        .iter()
        .map(|p| {
            let mut http = serde_json::Map::new();
            let h = p.get("http");
            for (key, attr) in PATHS {
                util::put_str(&mut http, key, h.get(attr));
            }
            let methods = strings(h.get("methods"));
            if !methods.is_empty() {
                http.insert("Methods".into(), json!(methods));
            }
            json!({"Action": s(p, "action"), "HTTP": http})
        })
        .collect();
    if !perms.is_empty() {
        o.insert("Permissions".into(), Json::Array(perms));
    }
    Json::Object(o)
}

fn opt(j: &Json) -> Value {
    match j.as_str() {
        Some(s) if !s.is_empty() => Value::from(s),
        _ => Value::Null,
    }
}

/// The resource value for an intention read back.
fn from_json(state: &Value, src: &str, dst: &str, j: &Json) -> Value {
    let perms = j["Permissions"].as_array().cloned().unwrap_or_default();
    let mut v = Value::object([
        ("id", Value::from(format!("{src}/{dst}"))),
        ("source", src.into()),
        ("destination", dst.into()),
        ("action", opt(&j["Action"])),
        ("description", opt(&j["Description"])),
        ("meta", util::map_from_json(&j["Meta"])),
        (
            "permission",
            Value::List(
                perms
                    .iter()
                    .map(|p| {
                        let h = &p["HTTP"];
                        let mut http = Value::object(PATHS.map(|(key, attr)| (attr, opt(&h[key]))));
                        let methods = util::list_from_json(&h["Methods"]);
                        http.set(
                            "methods",
                            if methods.items().is_empty() {
                                Value::Null
                            } else {
                                methods
                            },
                        );
                        Value::object([
                            ("action", opt(&p["Action"])),
                            ("http", if h.is_null() { Value::Null } else { http }),
                        ])
                    })
                    .collect(),
            ),
        ),
    ]);
    util::normalise(state, &mut v, &["meta"]);
    v
}

#[tonic::async_trait]
impl tfplug::Resource for IntentionResource {
    fn type_name(&self) -> &str {
        "mesh_intention"
    }

    fn schema(&self) -> Schema {
        Schema::new(
            Block::new("An intention: whether `source` may call `destination`. Set `action` (L4) or `permission` blocks (L7). Import with `<source>/<destination>`.")
                .attr(Attribute::string("id").computed().use_state_for_unknown().describe("`<source>/<destination>`."))
                .attr(Attribute::string("source").required().requires_replace().describe("Source service name, or `*`."))
                .attr(Attribute::string("destination").required().requires_replace().describe("Destination service name, or `*`."))
                .attr(Attribute::string("action").validate(actions()).describe("L4 decision."))
                .attr(Attribute::string("description").describe("Free text."))
                .attr(Attribute::new("meta", Type::map(Type::String)).describe("Metadata."))
                .attr(util::takeover_attr())
                .block(NestedBlock::list(
                    "permission",
                    Block::new("An L7 rule; the first that matches decides (destination must speak http, http2 or grpc).")
                        .attr(Attribute::string("action").required().validate(actions()).describe("Decision when the rule matches."))
                        .block(NestedBlock::single(
                            "http",
                            Block::new("HTTP request match.")
                                .attr(Attribute::string("path_exact").describe("Exact path."))
                                .attr(Attribute::string("path_prefix").describe("Path prefix."))
                                .attr(Attribute::string("path_regex").describe("Path regex."))
                                .attr(Attribute::new("methods", Type::list(Type::String)).describe("HTTP methods.")),
                        )),
                )),
        )
    }

    async fn validate(&self, config: &Value, diags: &mut Diagnostics) {
        let action = config.get("action");
        let perms = config.get("permission");
        if action.is_unknown() || perms.has_unknown() {
            return;
        }
        match (action.is_null(), perms.items().is_empty()) {
            (true, true) => diags.attr_error(
                AttrPath::attr("action"),
                "Missing action",
                "set `action` (allow or deny) or at least one `permission` block",
            ),
            (false, false) => diags.attr_error(
                AttrPath::attr("action"),
                "Conflicting action",
                "set either `action` or `permission` blocks, not both",
            ),
            _ => {}
        }
        for (i, p) in perms.items().iter().enumerate() {
            let h = p.get("http");
            let set = PATHS.iter().filter(|(_, a)| !h.get(a).is_null()).count();
            if set > 1 {
                diags.attr_error(
                    AttrPath::attr("permission").index(i).then("http"),
                    "Conflicting paths",
                    "set at most one of path_exact, path_prefix, path_regex",
                );
            }
        }
    }

    async fn modify_plan(&self, _: &Value, _: &Value, plan: &mut Plan, diags: &mut Diagnostics) {
        self.check_owner(&plan.planned, diags).await;
    }

    async fn plan_destroy(&self, prior: &Value, diags: &mut Diagnostics) {
        self.check_owner(prior, diags).await;
    }

    async fn create(&self, planned: &Value, _: &Value, diags: &mut Diagnostics) -> Value {
        self.write(planned, diags).await
    }

    async fn read(&self, state: &Value, diags: &mut Diagnostics) -> Value {
        let Some(c) = self.0.client(diags) else {
            return state.clone();
        };
        let (src, dst) = (s(state, "source"), s(state, "destination"));
        match c.intention_get(&src, &dst).await {
            Ok(None) => Value::Null,
            Ok(Some(j)) => {
                let mut out = from_json(state, &src, &dst, &j);
                util::keep_takeover(state, &mut out);
                out
            }
            Err(e) => {
                report(diags, e, &format!("read intention {src} => {dst}"), None);
                state.clone()
            }
        }
    }

    async fn delete(&self, prior: &Value, diags: &mut Diagnostics) {
        let Some(c) = self.0.client(diags) else {
            return;
        };
        let c = c.with_takeover(util::takeover(prior));
        let (src, dst) = (s(prior, "source"), s(prior, "destination"));
        match c.intention_delete(&src, &dst).await {
            Ok(()) | Err(mesh_client::Error::Status { status: 404, .. }) => {}
            Err(e) => report(
                diags,
                e,
                &format!("delete intention {src} => {dst}"),
                Some(AttrPath::attr("source")),
            ),
        }
    }

    async fn import(&self, id: &str, diags: &mut Diagnostics) -> Value {
        match id.split_once('/') {
            Some((src, dst)) if !src.is_empty() && !dst.is_empty() => Value::object([
                ("id", Value::from(id)),
                ("source", Value::from(src)),
                ("destination", Value::from(dst)),
            ]),
            _ => {
                diags.error(
                    "Invalid import ID",
                    format!("expected `<source>/<destination>`, got {id:?}"),
                );
                Value::Null
            }
        }
    }
}

impl IntentionResource {
    /// The intention's owner at plan time (errors there are left to apply).
    async fn check_owner(&self, value: &Value, diags: &mut Diagnostics) {
        let (Some(src), Some(dst)) = (
            value.get("source").as_str(),
            value.get("destination").as_str(),
        ) else {
            return;
        };
        let mut ignored = Diagnostics::default();
        let Some(c) = self.0.client(&mut ignored) else {
            return;
        };
        if let Ok(Some(found)) = c.intention_get(src, dst).await {
            let what = format!("intention {src} => {dst}");
            util::check_owner(util::owner_of(&found).as_deref(), value, &what, diags);
        }
    }

    async fn write(&self, planned: &Value, diags: &mut Diagnostics) -> Value {
        let Some(c) = self.0.client(diags) else {
            return Value::Null;
        };
        let c = c.with_takeover(util::takeover(planned));
        let (src, dst) = (s(planned, "source"), s(planned, "destination"));
        if let Err(e) = c.intention_put(&src, &dst, &body(planned)).await {
            report(
                diags,
                e,
                &format!("intention {src} => {dst}"),
                Some(AttrPath::attr("source")),
            );
            return Value::Null;
        }
        let mut v = planned.clone();
        v.set("id", format!("{src}/{dst}").into());
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_and_read_back_agree() {
        let http = Value::object([
            ("path_prefix", Value::from("/api")),
            ("path_exact", Value::Null),
            ("path_regex", Value::Null),
            ("methods", Value::List(vec!["GET".into()])),
        ]);
        let v = Value::object([
            ("id", Value::Null),
            ("source", Value::from("web")),
            ("destination", Value::from("db")),
            ("action", Value::Null),
            ("description", Value::Null),
            ("meta", Value::Null),
            (
                "permission",
                Value::List(vec![Value::object([
                    ("action", Value::from("allow")),
                    ("http", http),
                ])]),
            ),
        ]);
        let j = body(&v);
        assert_eq!(j["Permissions"][0]["HTTP"]["PathPrefix"], "/api");
        let mut back = from_json(&v, "web", "db", &j);
        back.set("id", Value::Null);
        assert_eq!(back, v);
    }
}
