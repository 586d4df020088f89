//! `mesh_service`: an agent-independent catalog registration (node, service,
//! checks) with an optional Connect sidecar registered as a `connect-proxy`.

use std::sync::Arc;

use serde_json::{json, Value as Json};
use tfplug::{
    AttrPath, Attribute, Block, Diagnostics, NestedBlock, Plan, Schema, Type, Validator, Value,
};

use crate::provider::Shared;
use crate::util::{self, n, report, s, string_map, strings};

/// `mesh_service`.
pub struct ServiceResource(pub Arc<Shared>);

fn sidecar_id(service_id: &str) -> String {
    format!("{service_id}-sidecar-proxy")
}

#[tonic::async_trait]
impl tfplug::Resource for ServiceResource {
    fn type_name(&self) -> &str {
        "mesh_service"
    }

    fn schema(&self) -> Schema {
        let statuses = ["passing", "warning", "critical"]
            .map(String::from)
            .to_vec();
        Schema::new(
            Block::new("A service registered in the catalog on a node of your choosing (not tied to an agent, so anti-entropy leaves it alone). Import with `<node>/<service_id>`.")
                .attr(Attribute::string("id").computed().use_state_for_unknown().describe("`<node>/<service_id>`."))
                .attr(Attribute::string("node").required().requires_replace().describe("Catalog node the service is registered on (created if missing)."))
                .attr(Attribute::string("address").required().describe("The node's address."))
                .attr(Attribute::string("name").required().describe("Service name."))
                .attr(
                    Attribute::string("service_id")
                        .optional_computed()
                        .requires_replace()
                        .use_state_for_unknown()
                        .describe("Service instance ID; defaults to `name`."),
                )
                .attr(Attribute::number("port").validate(Validator::Range(0.0, 65535.0)).describe("Service port."))
                .attr(Attribute::string("service_address").describe("Service address, if not the node's."))
                .attr(Attribute::new("tags", Type::list(Type::String)).describe("Tags."))
                .attr(Attribute::new("meta", Type::map(Type::String)).describe("Service metadata."))
                .attr(util::takeover_attr())
                .block(NestedBlock::list(
                    "check",
                    Block::new("A catalog health check of the service.")
                        .attr(Attribute::string("check_id").required().describe("Check ID."))
                        .attr(Attribute::string("name").required().describe("Check name."))
                        .attr(Attribute::string("status").default("critical").validate(Validator::OneOf(statuses)).describe("Initial status."))
                        .attr(Attribute::string("notes").describe("Notes.")),
                ))
                .block(NestedBlock::single(
                    "sidecar",
                    Block::new("A Connect sidecar proxy, registered as `<service_id>-sidecar-proxy` of kind `connect-proxy`.")
                        .attr(Attribute::number("port").required().validate(Validator::Range(1.0, 65535.0)).describe("Proxy's public port."))
                        .block(NestedBlock::list(
                            "upstream",
                            Block::new("A service this one calls through the proxy.")
                                .attr(Attribute::string("destination_name").required().describe("Upstream service name."))
                                .attr(Attribute::number("local_bind_port").required().validate(Validator::Range(1.0, 65535.0)).describe("Local port of the upstream listener.")),
                        )),
                )),
        )
    }

    async fn modify_plan(&self, _: &Value, _: &Value, plan: &mut Plan, diags: &mut Diagnostics) {
        if plan.planned.get("service_id").is_unknown() {
            if let Some(name) = plan.planned.get("name").as_str().map(str::to_string) {
                plan.planned.set("service_id", name.into());
            }
        }
        if let (Some(node), Some(sid)) = (
            plan.planned.get("node").as_str(),
            plan.planned.get("service_id").as_str(),
        ) {
            let id = format!("{node}/{sid}");
            plan.planned.set("id", id.into());
        }
        self.check_owner(&plan.planned, diags).await;
    }

    async fn plan_destroy(&self, prior: &Value, diags: &mut Diagnostics) {
        self.check_owner(prior, diags).await;
    }

    async fn create(&self, planned: &Value, _: &Value, diags: &mut Diagnostics) -> Value {
        self.write(&Value::Null, planned, diags).await
    }

    async fn update(
        &self,
        prior: &Value,
        planned: &Value,
        _: &Value,
        diags: &mut Diagnostics,
    ) -> Value {
        self.write(prior, planned, diags).await
    }

    async fn read(&self, state: &Value, diags: &mut Diagnostics) -> Value {
        let Some(c) = self.0.client(diags) else {
            return state.clone();
        };
        let (node, sid, name) = (s(state, "node"), s(state, "service_id"), s(state, "name"));
        // Common case, one small read: no sidecar or checks to look at, so the
        // service's own instances are enough (a whole-node read grows with the node).
        let simple = !name.is_empty()
            && state.get("sidecar").is_null()
            && state.get("check").items().is_empty();
        if simple {
            match c.catalog_service(&name, &Default::default()).await {
                Ok(list) => {
                    if let Some(e) = list
                        .iter()
                        .find(|e| e["Node"] == node && e["ServiceID"] == sid)
                    {
                        let mut out = service_value(&node, &sid, e, "Service");
                        out.set("address", util::str_from_json(&e["Address"]));
                        out.set("check", Value::List(vec![]));
                        util::normalise(
                            state,
                            &mut out,
                            &["port", "service_address", "tags", "meta"],
                        );
                        util::keep_takeover(state, &mut out);
                        return out;
                    }
                    // Not under that name: renamed or gone; the node read tells which.
                }
                Err(e) => {
                    report(diags, e, &format!("read service {name:?}"), None);
                    return state.clone();
                }
            }
        }
        let found = match c.catalog_node(&node, &Default::default()).await {
            Ok(v) => v,
            Err(e) => {
                report(diags, e, &format!("read node {node:?}"), None);
                return state.clone();
            }
        };
        let Some(found) = found else {
            return Value::Null;
        };
        let svc = &found["Services"][&sid];
        if svc.is_null() {
            return Value::Null;
        }
        let checks = match c.health_node(&node, &Default::default()).await {
            Ok(v) => v,
            Err(e) => {
                report(diags, e, &format!("read checks of node {node:?}"), None);
                return state.clone();
            }
        };
        let mut out = service_value(&node, &sid, svc, "");
        out.set("address", util::str_from_json(&found["Node"]["Address"]));
        out.set("check", read_checks(state, &checks, &sid));
        out.set(
            "sidecar",
            read_sidecar(&found["Services"][sidecar_id(&sid)]),
        );
        util::normalise(
            state,
            &mut out,
            &["port", "service_address", "tags", "meta"],
        );
        util::keep_takeover(state, &mut out);
        out
    }

    async fn delete(&self, prior: &Value, diags: &mut Diagnostics) {
        let Some(c) = self.0.client(diags) else {
            return;
        };
        let c = c.with_takeover(util::takeover(prior));
        let (node, sid) = (s(prior, "node"), s(prior, "service_id"));
        for id in [sidecar_id(&sid), sid.clone()] {
            let body = json!({"Node": node, "ServiceID": id});
            if let Err(e) = c.catalog_deregister(&body).await {
                return report(
                    diags,
                    e,
                    &format!("deregister service {id:?}"),
                    Some(AttrPath::attr("name")),
                );
            }
        }
        for check in prior.get("check").items() {
            let _ = c
                .catalog_deregister(&json!({"Node": node, "CheckID": s(check, "check_id")}))
                .await;
        }
        // The node was created for the service: remove it once nothing is left on it.
        if let Ok(Some(found)) = c.catalog_node(&node, &Default::default()).await {
            if found["Services"].as_object().is_none_or(|m| m.is_empty()) {
                let _ = c.catalog_deregister(&json!({"Node": node})).await;
            }
        }
    }

    async fn import(&self, id: &str, diags: &mut Diagnostics) -> Value {
        match id.split_once('/') {
            Some((node, sid)) if !node.is_empty() && !sid.is_empty() => Value::object([
                ("id", Value::from(id)),
                ("node", Value::from(node)),
                ("service_id", Value::from(sid)),
            ]),
            _ => {
                diags.error(
                    "Invalid import ID",
                    format!("expected `<node>/<service_id>`, got {id:?}"),
                );
                Value::Null
            }
        }
    }
}

/// The service's own attributes from agent JSON; `prefix` is "Service" for the
/// flattened `/v1/catalog/service` shape, "" for a node's `Services` map.
fn service_value(node: &str, sid: &str, j: &Json, prefix: &str) -> Value {
    let f = |name: &str| &j[format!("{prefix}{name}")];
    let name = if prefix.is_empty() {
        &j["Service"]
    } else {
        &j["ServiceName"]
    };
    Value::object([
        ("id", Value::from(format!("{node}/{sid}"))),
        ("node", node.into()),
        ("name", util::str_from_json(name)),
        ("service_id", sid.into()),
        ("port", Value::from(f("Port").as_i64().unwrap_or_default())),
        ("service_address", util::str_from_json(f("Address"))),
        ("tags", util::list_from_json(f("Tags"))),
        ("meta", util::map_from_json(f("Meta"))),
        ("sidecar", Value::Null),
    ])
}

/// Checks of the service, in the order the state lists them, then any others.
fn read_checks(state: &Value, checks: &[Json], sid: &str) -> Value {
    let mut mine: Vec<&Json> = checks.iter().filter(|c| c["ServiceID"] == sid).collect();
    let order: Vec<String> = state
        .get("check")
        .items()
        .iter()
        .map(|c| s(c, "check_id"))
        .collect();
    mine.sort_by_key(|c| {
        let id = c["CheckID"].as_str().unwrap_or_default();
        (
            order.iter().position(|o| o == id).unwrap_or(usize::MAX),
            id.to_string(),
        )
    });
    Value::List(
        mine.into_iter()
            .map(|c| {
                let notes = util::str_from_json(&c["Notes"]);
                Value::object([
                    ("check_id", util::str_from_json(&c["CheckID"])),
                    ("name", util::str_from_json(&c["Name"])),
                    ("status", util::str_from_json(&c["Status"])),
                    ("notes", util::keep_unset(&Value::Null, notes)),
                ])
            })
            .collect(),
    )
}

fn read_sidecar(svc: &Json) -> Value {
    if svc.is_null() {
        return Value::Null;
    }
    let upstreams = svc["Proxy"]["Upstreams"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    Value::object([
        (
            "port",
            Value::from(svc["Port"].as_i64().unwrap_or_default()),
        ),
        (
            "upstream",
            Value::List(
                upstreams
                    .iter()
                    .map(|u| {
                        Value::object([
                            (
                                "destination_name",
                                util::str_from_json(&u["DestinationName"]),
                            ),
                            (
                                "local_bind_port",
                                Value::from(u["LocalBindPort"].as_i64().unwrap_or_default()),
                            ),
                        ])
                    })
                    .collect(),
            ),
        ),
    ])
}

impl ServiceResource {
    /// The service's owner at plan time (errors there are left to apply).
    async fn check_owner(&self, value: &Value, diags: &mut Diagnostics) {
        let (Some(node), Some(sid)) =
            (value.get("node").as_str(), value.get("service_id").as_str())
        else {
            return;
        };
        let mut ignored = Diagnostics::default();
        let Some(c) = self.0.client(&mut ignored) else {
            return;
        };
        if let Ok(Some(found)) = c.catalog_node(node, &Default::default()).await {
            let owner = util::owner_of(&found["Services"][sid]);
            let what = format!("service {sid:?} on node {node:?}");
            util::check_owner(owner.as_deref(), value, &what, diags);
        }
    }

    async fn write(&self, prior: &Value, planned: &Value, diags: &mut Diagnostics) -> Value {
        let Some(c) = self.0.client(diags) else {
            return Value::Null;
        };
        let c = c.with_takeover(util::takeover(planned));
        let (node, name, sid) = (
            s(planned, "node"),
            s(planned, "name"),
            s(planned, "service_id"),
        );
        let mut service = serde_json::Map::new();
        service.insert("ID".into(), sid.clone().into());
        service.insert("Service".into(), name.clone().into());
        service.insert("Tags".into(), json!(strings(planned.get("tags"))));
        service.insert("Meta".into(), json!(string_map(planned.get("meta"))));
        service.insert("Port".into(), n(planned, "port").into());
        util::put_str(&mut service, "Address", planned.get("service_address"));
        let checks: Vec<Json> = planned
            .get("check")
            .items()
            .iter()
            .map(|ch| {
                json!({"CheckID": s(ch, "check_id"), "Name": s(ch, "name"), "Status": s(ch, "status"),
                       "Notes": s(ch, "notes"), "ServiceID": sid})
            })
            .collect();
        let body = json!({"Node": node, "Address": s(planned, "address"), "Service": service, "Checks": checks});
        if let Err(e) = c.catalog_register(&body).await {
            report(
                diags,
                e,
                &format!("register service {sid:?} on {node:?}"),
                Some(AttrPath::attr("name")),
            );
            return Value::Null;
        }
        let sidecar = planned.get("sidecar");
        if sidecar.is_null() {
            if !prior.get("sidecar").is_null() {
                let body = json!({"Node": node, "ServiceID": sidecar_id(&sid)});
                if let Err(e) = c.catalog_deregister(&body).await {
                    report(
                        diags,
                        e,
                        "deregister the sidecar",
                        Some(AttrPath::attr("sidecar")),
                    );
                }
            }
        } else {
            let upstreams: Vec<Json> = sidecar
                .get("upstream")
                .items()
                .iter()
                .map(|u| json!({"DestinationName": s(u, "destination_name"), "LocalBindPort": n(u, "local_bind_port")}))
                .collect();
            let proxy = json!({
                "Node": node, "Address": s(planned, "address"),
                "Service": {
                    "ID": sidecar_id(&sid), "Service": format!("{name}-sidecar-proxy"), "Kind": "connect-proxy",
                    "Port": n(sidecar, "port"),
                    "Proxy": {"DestinationServiceName": name, "DestinationServiceID": sid,
                              "LocalServicePort": n(planned, "port"), "Upstreams": upstreams},
                },
            });
            if let Err(e) = c.catalog_register(&proxy).await {
                report(
                    diags,
                    e,
                    "register the sidecar",
                    Some(AttrPath::attr("sidecar")),
                );
            }
        }
        // Checks dropped from configuration are deregistered.
        let keep: Vec<String> = planned
            .get("check")
            .items()
            .iter()
            .map(|ch| s(ch, "check_id"))
            .collect();
        for old in prior.get("check").items() {
            let id = s(old, "check_id");
            if !keep.contains(&id) {
                let _ = c
                    .catalog_deregister(&json!({"Node": node, "CheckID": id}))
                    .await;
            }
        }
        let mut v = planned.clone();
        v.set("id", format!("{node}/{sid}").into());
        v
    }
}
