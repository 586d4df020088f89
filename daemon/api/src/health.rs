//! `/v1/health/*`.

use axum::extract::{Path, State};
use axum::response::Response;
use mesh_state::{ServiceHealth, State as Catalog, Table};
use mesh_types::{CheckStatus, HealthCheck, Node, Service};
use serde_json::{json, Value};

use crate::catalog::{connect_instances, has_tags, ingress_gateways_of, json_read, node_matches};
use crate::params::Params;
use crate::wire::{check_json, node_json, service_json};
use crate::{Api, ApiError};

fn entry_json(h: &ServiceHealth<'_>) -> Value {
    json!({
        "Node": node_json(h.node),
        "Service": service_json(h.service),
        "Checks": h.checks.iter().map(|c| check_json(&h.node.name, c, tags_for(h, c))).collect::<Vec<_>>(),
    })
}

fn tags_for<'a>(h: &'a ServiceHealth<'_>, c: &HealthCheck) -> &'a [String] {
    if c.service_id.is_empty() {
        &[]
    } else {
        &h.service.tags
    }
}

/// Health entries with Consul's filters: `?passing` keeps only instances
/// whose every check passes; `?tag=` and `?node-meta=` narrow the list.
fn filtered(entries: Vec<ServiceHealth<'_>>, params: &Params) -> Vec<Value> {
    let passing = params.has("passing");
    let tags: Vec<&str> = params.all("tag");
    let meta = params.node_meta();
    entries
        .iter()
        .filter(|h| !passing || h.status() == CheckStatus::Passing)
        .filter(|h| has_tags(h.service, &tags) && node_matches(h.node, &meta))
        .map(entry_json)
        .collect()
}

pub(crate) async fn service(
    State(api): State<Api>,
    Path(name): Path<String>,
    params: Params,
) -> Result<Response, ApiError> {
    let p = params.clone();
    json_read(&api, &params, Table::Checks, move |s| {
        (
            Value::Array(filtered(s.service_health(&name), &p)),
            s.service_name_index(&name),
        )
    })
    .await
}

pub(crate) async fn connect(
    State(api): State<Api>,
    Path(name): Path<String>,
    params: Params,
) -> Result<Response, ApiError> {
    instances_read(&api, &params, name, connect_instances, |s| {
        s.catalog_index()
    })
    .await
}

/// Some service instances of `name` (connect proxies, ingress gateways)
/// as a health read: each with its checks, filtered by `?passing`, `?tag`
/// and `?node-meta`; `index` gives the answer's index.
async fn instances_read(
    api: &Api,
    params: &Params,
    name: String,
    pick: for<'s> fn(&'s Catalog, &'s str) -> Vec<(&'s Node, &'s Service)>,
    index: fn(&Catalog) -> u64,
) -> Result<Response, ApiError> {
    let p = params.clone();
    json_read(api, params, Table::Checks, move |s| {
        let entries = pick(s, &name)
            .into_iter()
            .map(|(node, service)| ServiceHealth {
                node,
                service,
                checks: s.checks_for(&node.name, &service.id),
            })
            .collect();
        (Value::Array(filtered(entries, &p)), index(s))
    })
    .await
}

/// `GET /v1/health/ingress/<service>`: the instances of the ingress
/// gateways whose entry exposes the service, as `/v1/health/service` shows
/// instances (`?passing`, `?tag`, `?node-meta`).
pub(crate) async fn ingress(
    State(api): State<Api>,
    Path(name): Path<String>,
    params: Params,
) -> Result<Response, ApiError> {
    // An entry edit changes which gateways expose the service.
    let index = |s: &Catalog| s.catalog_index().max(s.table_index(Table::Config));
    instances_read(&api, &params, name, ingress_gateways_of, index).await
}

fn checks_json<'a>(s: &Catalog, checks: impl Iterator<Item = (&'a str, &'a HealthCheck)>) -> Value {
    Value::Array(
        checks
            .map(|(node, c)| {
                let tags = s
                    .service(node, &c.service_id)
                    .map(|svc| svc.tags.clone())
                    .unwrap_or_default();
                check_json(node, c, &tags)
            })
            .collect(),
    )
}

pub(crate) async fn node(
    State(api): State<Api>,
    Path(name): Path<String>,
    params: Params,
) -> Result<Response, ApiError> {
    json_read(&api, &params, Table::Checks, |s| {
        (
            checks_json(s, s.node_checks(&name).map(|c| (name.as_str(), c))),
            s.table_index(Table::Checks),
        )
    })
    .await
}

pub(crate) async fn checks(
    State(api): State<Api>,
    Path(service): Path<String>,
    params: Params,
) -> Result<Response, ApiError> {
    json_read(&api, &params, Table::Checks, |s| {
        let list = s.checks().filter(|(_, c)| c.service_name == service);
        (checks_json(s, list), s.service_name_index(&service))
    })
    .await
}

pub(crate) async fn state(
    State(api): State<Api>,
    Path(state): Path<String>,
    params: Params,
) -> Result<Response, ApiError> {
    let wanted = match state.as_str() {
        "any" => None,
        other => Some(CheckStatus::parse(other).ok_or_else(|| {
            ApiError::bad_request(format!(
                "Invalid check state {other:?}: use any, passing, warning or critical"
            ))
        })?),
    };
    json_read(&api, &params, Table::Checks, |s| {
        let list = s
            .checks()
            .filter(|(_, c)| wanted.is_none_or(|w| c.status == w));
        (checks_json(s, list), s.table_index(Table::Checks))
    })
    .await
}

/// One service's summary in `/v1/internal/ui/services`.
#[derive(Default)]
struct UiService {
    kind: String,
    tags: Vec<String>,
    nodes: std::collections::BTreeSet<String>,
    instances: u64,
    passing: u64,
    warning: u64,
    critical: u64,
    owners: std::collections::BTreeSet<String>,
    with_proxy: bool,
}

/// `GET /v1/internal/ui/services`: one summary per service, the shape of
/// Consul's UI endpoint (instance and check counts, tags, nodes, whether a
/// sidecar fronts it) plus the owners of its instances, so a UI lists a
/// large catalog in one blocking read.
pub(crate) async fn ui_services(
    State(api): State<Api>,
    params: Params,
) -> Result<Response, ApiError> {
    json_read(&api, &params, Table::Checks, |s| {
        let mut by: std::collections::BTreeMap<String, UiService> = Default::default();
        for (node, svc) in s.services() {
            let a = by.entry(svc.name.clone()).or_default();
            a.kind = svc.kind.clone();
            a.instances += 1;
            a.nodes.insert(node.to_string());
            a.owners.insert(svc.owner.clone());
            for t in &svc.tags {
                if !a.tags.contains(t) {
                    a.tags.push(t.clone());
                }
            }
            for c in s.checks_for(node, &svc.id) {
                match c.status {
                    CheckStatus::Passing => a.passing += 1,
                    CheckStatus::Warning => a.warning += 1,
                    _ => a.critical += 1,
                }
            }
            if svc.kind == "connect-proxy" {
                if let Some(p) = &svc.proxy {
                    by.entry(p.destination_service_name.clone())
                        .or_default()
                        .with_proxy = true;
                }
            }
        }
        let dc = api.agent.datacenter();
        let list: Vec<Value> = by
            .into_iter()
            // A proxy's destination that has no instances of its own.
            .filter(|(_, a)| a.instances > 0)
            .map(|(name, a)| {
                json!({
                    "Name": name,
                    "Datacenter": dc,
                    "Kind": a.kind,
                    "Tags": a.tags,
                    "Nodes": a.nodes,
                    "InstanceCount": a.instances,
                    "ChecksPassing": a.passing,
                    "ChecksWarning": a.warning,
                    "ChecksCritical": a.critical,
                    "ConnectedWithProxy": a.with_proxy,
                    "ConnectedWithGateway": false,
                    "Owners": a.owners,
                })
            })
            .collect();
        let index = s
            .table_index(Table::Checks)
            .max(s.table_index(Table::Services))
            .max(s.table_index(Table::Nodes));
        (Value::Array(list), index)
    })
    .await
}
