//! `/v1/catalog/*`.

use std::collections::{BTreeMap, HashMap};

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use mesh_chain::entries::IngressGateway;
use mesh_state::{State as Catalog, Table};
use mesh_types::{CheckStatus, Command, HealthCheck, Node, Service};
use serde::Deserialize;
use serde_json::Value;

use crate::decoded::{CatalogDeregister, CatalogRegister, Decoded};
use crate::params::Params;
use crate::query::Rendered;
use crate::wire::{self, catalog_service_json, node_json, parse_value, service_json, ServiceDef};
use crate::{Api, ApiError, QueryOptions};

#[derive(Deserialize, Default)]
#[serde(default)]
struct RegisterRequest {
    id: String,
    node: String,
    address: String,
    datacenter: String,
    #[serde(rename = "taggedaddresses")]
    tagged_addresses: Option<BTreeMap<String, String>>,
    #[serde(rename = "nodemeta")]
    node_meta: Option<BTreeMap<String, String>>,
    service: Option<ServiceDef>,
    check: Option<CatalogCheck>,
    checks: Option<Vec<CatalogCheck>>,
    #[serde(rename = "skipnodeupdate")]
    skip_node_update: bool,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct CatalogCheck {
    #[serde(rename = "checkid")]
    check_id: String,
    name: String,
    notes: String,
    status: String,
    output: String,
    #[serde(rename = "serviceid")]
    service_id: String,
}

impl CatalogCheck {
    fn to_check(&self) -> Result<HealthCheck, ApiError> {
        let status = if self.status.is_empty() {
            CheckStatus::Critical
        } else {
            CheckStatus::parse(&self.status).ok_or_else(|| {
                ApiError::bad_request(format!("Invalid check status {:?}", self.status))
            })?
        };
        let id = if self.check_id.is_empty() {
            &self.name
        } else {
            &self.check_id
        };
        Ok(HealthCheck {
            check_id: id.clone(),
            name: if self.name.is_empty() {
                id.clone()
            } else {
                self.name.clone()
            },
            status,
            notes: self.notes.clone(),
            output: self.output.clone(),
            service_id: self.service_id.clone(),
            ..Default::default()
        })
    }
}

/// The command a catalog registration body proposes.
pub(crate) fn register_command(
    api: &Api,
    owner: &str,
    takeover: bool,
    body: &Value,
) -> Result<Command, ApiError> {
    let req: RegisterRequest = parse_value(body.clone(), "catalog register")?;
    if req.node.is_empty() {
        return Err(ApiError::bad_request("Must provide node"));
    }
    if req.address.is_empty() && !req.skip_node_update {
        return Err(ApiError::bad_request("Must provide address"));
    }
    let service = req
        .service
        .as_ref()
        .map(|s| s.to_service(owner))
        .transpose()?;
    let mut checks = Vec::new();
    for c in req.check.iter().chain(req.checks.iter().flatten()) {
        checks.push(c.to_check()?);
    }
    let node = Node {
        id: req.id,
        name: req.node,
        address: req.address,
        datacenter: if req.datacenter.is_empty() {
            api.agent.datacenter()
        } else {
            req.datacenter
        },
        tagged_addresses: req.tagged_addresses.unwrap_or_default(),
        meta: req.node_meta.unwrap_or_default(),
        ..Default::default()
    };
    Ok(Command::Register {
        node,
        skip_node_update: req.skip_node_update,
        service,
        checks,
        takeover,
    })
}

pub(crate) async fn register(
    State(api): State<Api>,
    Decoded(CatalogRegister(cmd)): Decoded<CatalogRegister>,
) -> Result<Json<bool>, ApiError> {
    api.apply(cmd).await?;
    Ok(Json(true))
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct DeregisterRequest {
    node: String,
    #[serde(rename = "serviceid")]
    service_id: String,
    #[serde(rename = "checkid")]
    check_id: String,
}

/// The command a catalog deregistration body proposes.
pub(crate) fn deregister_command(
    owner: &str,
    takeover: bool,
    body: &Value,
) -> Result<Command, ApiError> {
    let req: DeregisterRequest = parse_value(body.clone(), "catalog deregister")?;
    if req.node.is_empty() {
        return Err(ApiError::bad_request("Must provide node"));
    }
    Ok(if !req.service_id.is_empty() {
        Command::ServiceDeregister {
            node: req.node,
            service_id: req.service_id,
            owner: owner.to_string(),
            takeover,
        }
    } else if !req.check_id.is_empty() {
        Command::CheckDeregister {
            node: req.node,
            check_id: req.check_id,
        }
    } else {
        Command::NodeDeregister { node: req.node }
    })
}

pub(crate) async fn deregister(
    State(api): State<Api>,
    Decoded(CatalogDeregister(cmd)): Decoded<CatalogDeregister>,
) -> Result<Json<bool>, ApiError> {
    api.apply(cmd).await?;
    Ok(Json(true))
}

/// Whether a node passes every `?node-meta=k:v` filter.
pub(crate) fn node_matches(node: &Node, filters: &[(String, String)]) -> bool {
    filters.iter().all(|(k, v)| node.meta.get(k) == Some(v))
}

/// Whether a service carries every `?tag=` asked for.
pub(crate) fn has_tags(service: &Service, tags: &[&str]) -> bool {
    tags.iter().all(|t| service.tags.iter().any(|s| s == t))
}

/// Answer a blocking read as JSON with Consul's headers.
pub(crate) async fn json_read(
    api: &Api,
    params: &Params,
    table: Table,
    read: impl Fn(&Catalog) -> (Value, u64),
) -> Result<Response, ApiError> {
    let opts = QueryOptions::parse(&params.map())?;
    let near = near_node(api, params);
    let key = params.answer_key();
    // `?filter=` is part of the key: the filtered answer is what is cached.
    let filter = crate::expression_filter::from_params(params);
    let cache = &api.renders;
    let (answer, index) = api
        .blocking_read_versioned(&opts, table, |s, version| match cache.get(&key, version) {
            Some(hit) => (Answer::Rendered(hit.body), hit.index),
            None => {
                let (mut value, index) = read(s);
                if let Some(near) = &near {
                    sort_near(s, near, &mut value);
                }
                (Answer::Fresh(value, version), index)
            }
        })
        .await?;
    let body = match answer {
        Answer::Rendered(body) => body,
        Answer::Fresh(mut value, version) => {
            if let Some(filter) = &filter {
                crate::expression_filter::retain(&mut value, filter);
            }
            // Rendered outside the state lock; the version says which state it shows.
            let body = Bytes::from(serde_json::to_vec(&value).expect("a JSON value renders"));
            let rendered = Rendered {
                version,
                index,
                body: body.clone(),
            };
            cache.put(key, rendered);
            body
        }
    };
    let mut headers = api.read_headers(index);
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    let mut response = (headers, body).into_response();
    if filter.is_some() {
        response
            .extensions_mut()
            .insert(crate::expression_filter::FilterApplied);
    }
    Ok(response)
}

/// `?near=`: the node a list is sorted around (`_agent`: this agent's).
fn near_node(api: &Api, params: &Params) -> Option<String> {
    match params.all("near").first().copied() {
        Some("_agent") => Some(api.agent.node_name()),
        Some("") | None => None,
        Some(n) => Some(n.to_string()),
    }
}

/// Sorts a list answer by estimated round trip from `near`, nearest first.
/// Each element names its node in `Node`, as a name (catalog) or as an
/// object with one (health).
fn sort_near(s: &Catalog, near: &str, value: &mut Value) {
    if let Value::Array(items) = value {
        s.sort_by_rtt(near, items, |v| {
            v.get("Node")
                .and_then(|n| n.as_str().or_else(|| n.get("Node")?.as_str()))
                .unwrap_or_default()
        });
    }
}

/// A read's answer: already rendered by an identical read of the same
/// state, or computed now.
enum Answer {
    Rendered(Bytes),
    Fresh(Value, u64),
}

/// Like `json_read`, for answers that depend on more than the state and the
/// request (agent settings that reload), so they are never cached.
pub(crate) async fn json_read_uncached(
    api: &Api,
    params: &Params,
    table: Table,
    read: impl Fn(&Catalog) -> (Value, u64),
) -> Result<Response, ApiError> {
    let opts = QueryOptions::parse(&params.map())?;
    let (value, index) = api.blocking_read(&opts, table, read).await?;
    Ok((api.read_headers(index), Json(value)).into_response())
}

pub(crate) async fn nodes(State(api): State<Api>, params: Params) -> Result<Response, ApiError> {
    let meta = params.node_meta();
    json_read(&api, &params, Table::Nodes, |s| {
        let list: Vec<Value> = s
            .nodes()
            .filter(|n| node_matches(n, &meta))
            .map(node_json)
            .collect();
        (Value::Array(list), s.table_index(Table::Nodes))
    })
    .await
}

pub(crate) async fn services(State(api): State<Api>, params: Params) -> Result<Response, ApiError> {
    let meta = params.node_meta();
    json_read(&api, &params, Table::Services, |s| {
        let mut names: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (node, svc) in s.services() {
            if !s.node(node).is_some_and(|n| node_matches(n, &meta)) {
                continue;
            }
            let tags = names.entry(svc.name.clone()).or_default();
            for t in &svc.tags {
                if !tags.contains(t) {
                    tags.push(t.clone());
                }
            }
        }
        (
            serde_json::to_value(names).expect("map"),
            s.table_index(Table::Services),
        )
    })
    .await
}

pub(crate) async fn service(
    State(api): State<Api>,
    Path(name): Path<String>,
    params: Params,
) -> Result<Response, ApiError> {
    let tags: Vec<String> = params.all("tag").into_iter().map(String::from).collect();
    let tags: Vec<&str> = tags.iter().map(String::as_str).collect();
    let meta = params.node_meta();
    json_read(&api, &params, Table::Services, |s| {
        let list: Vec<Value> = s
            .service_instances(&name)
            .filter(|(n, svc)| has_tags(svc, &tags) && node_matches(n, &meta))
            .map(|(n, svc)| catalog_service_json(n, svc))
            .collect();
        (Value::Array(list), s.service_name_index(&name))
    })
    .await
}

/// Proxies for `name` (and instances that speak Connect natively).
pub fn connect_instances<'a>(s: &'a Catalog, name: &'a str) -> Vec<(&'a Node, &'a Service)> {
    let proxies = s
        .services()
        .filter(move |(_, svc)| svc.kind == "connect-proxy" && proxied(svc) == Some(name))
        .filter_map(|(node, svc)| Some((s.node(node)?, svc)));
    let native = s
        .service_instances(name)
        .filter(|(_, svc)| svc.connect_native);
    let gateways = terminating_gateways_of(s, name);
    proxies.chain(native).chain(gateways).collect()
}

/// The services each terminating gateway links, by gateway name.
fn linked_by_gateway(s: &Catalog) -> HashMap<String, Vec<String>> {
    s.config_entries("terminating-gateway")
        .filter_map(|e| {
            let entry: mesh_chain::entries::TerminatingGateway =
                mesh_chain::entries::parse(&e.kind, &e.name, &e.body_json).ok()?;
            Some((
                e.name.clone(),
                entry.services.into_iter().map(|l| l.name).collect(),
            ))
        })
        .collect()
}

/// Instances of the terminating gateways that link service `name`: a
/// service outside the mesh is reached through them.
fn terminating_gateways_of<'a>(s: &'a Catalog, name: &str) -> Vec<(&'a Node, &'a Service)> {
    let linked = linked_by_gateway(s);
    s.services()
        .filter(|(_, svc)| svc.kind == "terminating-gateway")
        .filter(|(_, svc)| {
            linked
                .get(&svc.name)
                .is_some_and(|l| l.iter().any(|n| n == name))
        })
        .filter_map(|(node, svc)| Some((s.node(node)?, svc)))
        .collect()
}

/// Instances of the ingress gateways whose entry exposes service `name` on
/// one of its listeners (`/v1/health/ingress`).
pub(crate) fn ingress_gateways_of<'a>(s: &'a Catalog, name: &str) -> Vec<(&'a Node, &'a Service)> {
    let exposes = |e: &mesh_types::ConfigEntry| {
        let parsed = mesh_chain::entries::parse::<IngressGateway>(&e.kind, &e.name, &e.body_json);
        let Ok(entry) = parsed else {
            return false;
        };
        let mut services = entry.listeners.iter().flat_map(|l| &l.services);
        services.any(|svc| svc.name == name)
    };
    let exposing: std::collections::HashSet<&str> = s
        .config_entries("ingress-gateway")
        .filter(|e| exposes(e))
        .map(|e| e.name.as_str())
        .collect();
    if exposing.is_empty() {
        return Vec::new();
    }
    s.services()
        .filter(|(_, svc)| svc.kind == "ingress-gateway" && exposing.contains(svc.name.as_str()))
        .filter_map(|(node, svc)| Some((s.node(node)?, svc)))
        .collect()
}

/// [`connect_instances`] of every service at once, in one scan of the
/// catalog: for callers that need many of them (proxy snapshots).
pub fn connect_instances_by_service(s: &Catalog) -> HashMap<&str, Vec<(&Node, &Service)>> {
    let mut out: HashMap<&str, Vec<(&Node, &Service)>> = HashMap::new();
    for (node, svc) in s.services() {
        let Some(node) = s.node(node) else { continue };
        if svc.kind == "connect-proxy" {
            if let Some(name) = proxied(svc) {
                out.entry(name).or_default().push((node, svc));
            }
        }
    }
    for (node, svc) in s.services() {
        if svc.connect_native {
            if let Some(node) = s.node(node) {
                out.entry(svc.name.as_str()).or_default().push((node, svc));
            }
        }
    }
    let linked = linked_by_gateway(s);
    if !linked.is_empty() {
        for (node, svc) in s.services() {
            let (Some(names), Some(node)) = (linked.get(&svc.name), s.node(node)) else {
                continue;
            };
            if svc.kind != "terminating-gateway" {
                continue;
            }
            for name in names {
                // Keyed by the linked service's registered name (borrowed from the catalog).
                if let Some((_, external)) = s.service_instances(name).next() {
                    out.entry(external.name.as_str())
                        .or_default()
                        .push((node, svc));
                }
            }
        }
    }
    out
}

/// The service a proxy stands for.
fn proxied(svc: &Service) -> Option<&str> {
    svc.proxy
        .as_ref()
        .map(|p| p.destination_service_name.as_str())
}

pub(crate) async fn connect(
    State(api): State<Api>,
    Path(name): Path<String>,
    params: Params,
) -> Result<Response, ApiError> {
    json_read(&api, &params, Table::Services, |s| {
        let list: Vec<Value> = connect_instances(s, &name)
            .into_iter()
            .map(|(n, svc)| catalog_service_json(n, svc))
            .collect();
        (Value::Array(list), s.table_index(Table::Services))
    })
    .await
}

/// `GET /v1/catalog/gateway-services/<gateway>`: the services the
/// gateway's `ingress-gateway` and `terminating-gateway` entries link, in
/// Consul's shape (one row per listener and service of an ingress gateway).
pub(crate) async fn gateway_services(
    State(api): State<Api>,
    Path(gateway): Path<String>,
    params: Params,
) -> Result<Response, ApiError> {
    json_read(&api, &params, Table::Config, |s| {
        (
            Value::Array(gateway_service_rows(s, &gateway)),
            s.table_index(Table::Config),
        )
    })
    .await
}

/// The rows of [`gateway_services`]. A wildcard (`*`) link is left out:
/// mesh's gateways route named services only, so it links nothing.
fn gateway_service_rows(s: &Catalog, gateway: &str) -> Vec<Value> {
    use mesh_chain::entries::{parse, TerminatingGateway};
    let row = |kind: &str, service: &str, e: &mesh_types::ConfigEntry| {
        serde_json::json!({
            "Gateway": { "Name": gateway },
            "Service": { "Name": service },
            "GatewayKind": kind,
            "CreateIndex": e.create_index,
            "ModifyIndex": e.modify_index,
        })
    };
    let mut rows = Vec::new();
    if let Some(e) = s.config_entry("ingress-gateway", gateway) {
        if let Ok(entry) = parse::<IngressGateway>(&e.kind, &e.name, &e.body_json) {
            for listener in &entry.listeners {
                for svc in listener.services.iter().filter(|svc| svc.name != "*") {
                    let mut r = row("ingress-gateway", &svc.name, e);
                    r["Port"] = listener.port.into();
                    r["Protocol"] = listener.protocol().into();
                    if !svc.hosts.is_empty() {
                        r["Hosts"] = svc.hosts.clone().into();
                    }
                    rows.push(r);
                }
            }
        }
    }
    if let Some(e) = s.config_entry("terminating-gateway", gateway) {
        if let Ok(entry) = parse::<TerminatingGateway>(&e.kind, &e.name, &e.body_json) {
            for linked in entry.services.iter().filter(|l| l.name != "*") {
                let mut r = row("terminating-gateway", &linked.name, e);
                // Consul leaves empty ones out.
                for (key, value) in [
                    ("CAFile", &linked.cafile),
                    ("CertFile", &linked.certfile),
                    ("KeyFile", &linked.keyfile),
                    ("SNI", &linked.sni),
                ] {
                    if !value.is_empty() {
                        r[key] = value.clone().into();
                    }
                }
                rows.push(r);
            }
        }
    }
    rows
}

pub(crate) async fn node(
    State(api): State<Api>,
    Path(name): Path<String>,
    params: Params,
) -> Result<Response, ApiError> {
    let opts = QueryOptions::parse(&params.map())?;
    let (value, index) = api
        .blocking_read(&opts, Table::Services, |s| {
            let value = s.node(&name).map(|n| {
                let services = wire::object(
                    s.node_services(&name)
                        .map(|svc| (svc.id.clone(), service_json(svc))),
                );
                serde_json::json!({ "Node": node_json(n), "Services": services })
            });
            (value, s.catalog_index())
        })
        .await?;
    let headers = api.read_headers(index);
    Ok(match value {
        Some(v) => (headers, Json(v)).into_response(),
        None => (StatusCode::NOT_FOUND, headers, "Node not found\n").into_response(),
    })
}

pub(crate) async fn datacenters(State(api): State<Api>) -> Json<Vec<String>> {
    Json(vec![api.agent.datacenter()])
}

#[cfg(test)]
mod tests {
    use mesh_state::StateStore;
    use mesh_types::{ConfigEntry, Outcome};
    use serde_json::json;

    use super::*;

    fn set_entry(store: &StateStore, index: u64, kind: &str, name: &str, body: Value) {
        let entry = ConfigEntry {
            kind: kind.into(),
            name: name.into(),
            body_json: body.to_string(),
            ..Default::default()
        };
        let cmd = Command::ConfigSet {
            entry,
            cas: None,
            takeover: false,
        };
        assert_eq!(store.apply_command(index, cmd), Outcome::Bool(true));
    }

    fn register(store: &StateStore, index: u64, node: &str, id: &str, name: &str, kind: &str) {
        let cmd = Command::Register {
            node: Node {
                name: node.into(),
                address: "10.0.0.1".into(),
                ..Default::default()
            },
            skip_node_update: false,
            service: Some(Service {
                id: id.into(),
                name: name.into(),
                kind: kind.into(),
                owner: "api".into(),
                ..Default::default()
            }),
            checks: Vec::new(),
            takeover: false,
        };
        assert_eq!(store.apply_command(index, cmd), Outcome::Done);
    }

    #[test]
    fn gateway_rows_follow_both_entries_and_leave_wildcards_out() {
        let store = StateStore::new();
        let listeners = json!({"Listeners": [
            {"Port": 8080, "Services": [{"Name": "api"}]},
            {"Port": 8081, "Protocol": "HTTP", "Services": [{"Name": "web", "Hosts": ["web.test"]}]},
        ]});
        set_entry(&store, 1, "ingress-gateway", "gw", listeners);
        let linked = json!({"Services": [{"Name": "*"}, {"Name": "legacy", "SNI": "legacy.test"}]});
        set_entry(&store, 2, "terminating-gateway", "gw", linked);
        let rows = store.read(|s| gateway_service_rows(s, "gw"));
        let ingress = |service: &str, port: u16, protocol: &str| {
            json!({
                "Gateway": {"Name": "gw"},
                "Service": {"Name": service},
                "GatewayKind": "ingress-gateway",
                "Port": port,
                "Protocol": protocol,
                "CreateIndex": 1,
                "ModifyIndex": 1,
            })
        };
        let mut web = ingress("web", 8081, "http");
        web["Hosts"] = json!(["web.test"]);
        let legacy = json!({
            "Gateway": {"Name": "gw"},
            "Service": {"Name": "legacy"},
            "GatewayKind": "terminating-gateway",
            "SNI": "legacy.test",
            "CreateIndex": 2,
            "ModifyIndex": 2,
        });
        assert_eq!(rows, vec![ingress("api", 8080, "tcp"), web, legacy]);
        assert!(store.read(|s| gateway_service_rows(s, "other")).is_empty());
    }

    #[test]
    fn the_ingress_gateways_of_a_service_are_the_instances_of_those_exposing_it() {
        let store = StateStore::new();
        let exposes =
            |name: &str| json!({"Listeners": [{"Port": 80, "Services": [{"Name": name}]}]});
        set_entry(&store, 1, "ingress-gateway", "ing", exposes("api"));
        set_entry(&store, 2, "ingress-gateway", "other", exposes("web"));
        register(&store, 3, "n1", "ing1", "ing", "ingress-gateway");
        register(&store, 4, "n2", "other1", "other", "ingress-gateway");
        // A typical service that happens to share the gateway's name.
        register(&store, 5, "n3", "ing", "ing", "");
        let of = |service: &str| {
            store.read(|s| {
                ingress_gateways_of(s, service)
                    .iter()
                    .map(|(node, svc)| format!("{}/{}", node.name, svc.id))
                    .collect::<Vec<_>>()
            })
        };
        assert_eq!(of("api"), ["n1/ing1"]);
        assert_eq!(of("web"), ["n2/other1"]);
        assert!(of("db").is_empty());
    }
}
