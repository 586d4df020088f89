//! `/v1/catalog/*`.

use std::collections::{BTreeMap, HashMap};

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
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
    let key = params.answer_key();
    let cache = &api.renders;
    let (answer, index) = api
        .blocking_read_versioned(&opts, table, |s, version| match cache.get(&key, version) {
            Some(hit) => (Answer::Rendered(hit.body), hit.index),
            None => {
                let (value, index) = read(s);
                (Answer::Fresh(value, version), index)
            }
        })
        .await?;
    let body = match answer {
        Answer::Rendered(body) => body,
        Answer::Fresh(value, version) => {
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
    Ok((headers, body).into_response())
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
