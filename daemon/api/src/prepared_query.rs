//! `/v1/query`: prepared queries in Consul's JSON shape: create, list,
//! read, update, delete, execute and explain.

use std::collections::{BTreeMap, HashMap};

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use mesh_acl::{Access, Resource};
use mesh_state::{ServiceHealth, Table};
use mesh_types::{
    parse_go_duration, Command, PreparedQuery, MAX_QUERY_LIST, MAX_QUERY_NAME_BYTES,
    MAX_QUERY_REGEXP_BYTES, TEMPLATE_NAME_PREFIX_MATCH,
};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::acl_routes::Check;
use crate::decoded::{BodyRequest, Decoded, Head};
use crate::wire::{check_json, node_json, service_json};
use crate::{Api, ApiError, QueryOptions};

/// A query in Consul's JSON shape; a stored token is never shown.
pub(crate) fn query_json(q: &PreparedQuery) -> Value {
    json!({
        "ID": q.id,
        "Name": q.name,
        "Session": q.session,
        "Token": if q.token.is_empty() { "" } else { "<hidden>" },
        "Template": {
            "Type": q.template_type,
            "Regexp": q.template_regexp,
            "RemoveEmptyTags": q.remove_empty_tags,
        },
        "Service": {
            "Service": q.service,
            "Failover": {
                "NearestN": q.failover_nearest_n,
                "Datacenters": q.failover_datacenters,
            },
            "OnlyPassing": q.only_passing,
            "IgnoreCheckIDs": q.ignore_check_ids,
            "Near": q.near,
            "Tags": q.tags,
            "NodeMeta": q.node_meta,
            "ServiceMeta": q.service_meta,
            "Connect": { "Enabled": q.connect },
        },
        "DNS": { "TTL": q.dns_ttl },
        "CreateIndex": q.create_index,
        "ModifyIndex": q.modify_index,
    })
}

// Consul's request body, keys folded (any case, `_` ignored).
#[derive(Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
struct Body {
    id: String,
    name: String,
    session: String,
    token: String,
    service: ServiceBody,
    dns: DnsBody,
    template: TemplateBody,
    // What Consul's own client sends back; read and not stored.
    createindex: u64,
    modifyindex: u64,
}

#[derive(Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
struct ServiceBody {
    service: String,
    failover: FailoverBody,
    onlypassing: bool,
    ignorecheckids: Option<Vec<String>>,
    near: String,
    tags: Option<Vec<String>>,
    nodemeta: Option<BTreeMap<String, String>>,
    servicemeta: Option<BTreeMap<String, String>>,
    connect: ConnectBody,
    peer: String,
    samenessgroup: String,
    namespace: String,
    partition: String,
}

#[derive(Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
struct FailoverBody {
    nearestn: u32,
    datacenters: Option<Vec<String>>,
    targets: Option<Value>,
}

#[derive(Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
struct ConnectBody {
    enabled: bool,
}

#[derive(Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
struct DnsBody {
    /// Go duration text; a number is seconds (python-consul sends one).
    ttl: Value,
}

#[derive(Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
struct TemplateBody {
    #[serde(rename = "type")]
    kind: String,
    regexp: String,
    removeemptytags: bool,
}

fn bad(what: impl Into<String>) -> ApiError {
    ApiError::bad_request(what)
}

fn bounded<T>(list: Option<Vec<T>>, field: &str) -> Result<Vec<T>, ApiError> {
    let list = list.unwrap_or_default();
    if list.len() > MAX_QUERY_LIST {
        return Err(bad(format!(
            "{field} has {} entries; at most {MAX_QUERY_LIST} (MAX_QUERY_LIST)",
            list.len()
        )));
    }
    Ok(list)
}

fn bounded_map(
    map: Option<BTreeMap<String, String>>,
    field: &str,
) -> Result<BTreeMap<String, String>, ApiError> {
    let map = map.unwrap_or_default();
    if map.len() > MAX_QUERY_LIST {
        return Err(bad(format!(
            "{field} has {} entries; at most {MAX_QUERY_LIST} (MAX_QUERY_LIST)",
            map.len()
        )));
    }
    Ok(map)
}

/// The query a body defines, checked; `id` is the one it is stored under.
fn to_query(body: Body, id: String) -> Result<PreparedQuery, ApiError> {
    if body.name.len() > MAX_QUERY_NAME_BYTES {
        return Err(bad(format!(
            "Name is over {MAX_QUERY_NAME_BYTES} bytes (MAX_QUERY_NAME_BYTES)"
        )));
    }
    let s = body.service;
    if s.service.is_empty() {
        return Err(bad("Must provide a Service name to query"));
    }
    for (field, value) in [("Namespace", &s.namespace), ("Partition", &s.partition)] {
        if !value.is_empty() && value != "default" {
            return Err(bad(format!(
                "Service.{field} {value:?}: mesh has only the default one"
            )));
        }
    }
    if !s.peer.is_empty() || !s.samenessgroup.is_empty() {
        return Err(bad(
            "Service.Peer and Service.SamenessGroup need cluster peering, which mesh does not have",
        ));
    }
    if s.failover.targets.as_ref().is_some_and(|t| !t.is_null()) {
        return Err(bad(
            "Service.Failover.Targets need cluster peering, which mesh does not have",
        ));
    }
    let t = body.template;
    match t.kind.as_str() {
        "" if !t.regexp.is_empty() => {
            return Err(bad("Template.Regexp needs Template.Type"));
        }
        "" => {}
        TEMPLATE_NAME_PREFIX_MATCH => {
            if t.regexp.len() > MAX_QUERY_REGEXP_BYTES {
                return Err(bad(format!(
                    "Template.Regexp is over {MAX_QUERY_REGEXP_BYTES} bytes (MAX_QUERY_REGEXP_BYTES)"
                )));
            }
            if !t.regexp.is_empty() {
                regex::Regex::new(&t.regexp)
                    .map_err(|e| bad(format!("Invalid Template.Regexp: {e}")))?;
            }
        }
        other => {
            return Err(bad(format!(
                "Bad Template.Type {other:?}: only {TEMPLATE_NAME_PREFIX_MATCH}"
            )))
        }
    }
    let dns_ttl = match &body.dns.ttl {
        Value::Null => String::new(),
        Value::String(t) if t.is_empty() => String::new(),
        Value::String(t) => {
            parse_go_duration(t).map_err(|e| bad(format!("Invalid DNS.TTL {t:?}: {e}")))?;
            t.clone()
        }
        Value::Number(n) if n.is_u64() => format!("{n}s"),
        other => {
            return Err(bad(format!(
                "Invalid DNS.TTL {other}: a duration like \"10s\""
            )))
        }
    };
    Ok(PreparedQuery {
        id,
        name: body.name,
        session: body.session,
        token: body.token,
        service: s.service,
        failover_nearest_n: s.failover.nearestn,
        failover_datacenters: bounded(s.failover.datacenters, "Service.Failover.Datacenters")?,
        only_passing: s.onlypassing,
        ignore_check_ids: bounded(s.ignorecheckids, "Service.IgnoreCheckIDs")?,
        near: s.near,
        tags: bounded(s.tags, "Service.Tags")?,
        node_meta: bounded_map(s.nodemeta, "Service.NodeMeta")?,
        service_meta: bounded_map(s.servicemeta, "Service.ServiceMeta")?,
        connect: s.connect.enabled,
        dns_ttl,
        template_type: t.kind,
        template_regexp: t.regexp,
        remove_empty_tags: t.removeemptytags,
        create_index: 0,
        modify_index: 0,
    })
}

/// `POST /v1/query` or `PUT /v1/query/:id`: the query as it will be
/// proposed (a new one's ID chosen here, once).
pub struct QueryWrite(pub PreparedQuery);

impl BodyRequest for QueryWrite {
    const WHAT: &'static str = "prepared query";
    fn decode(_: &Api, head: &Head, body: &Value) -> Result<Self, ApiError> {
        if !body.is_object() {
            return Err(bad("Request decode failed: prepared query: a JSON object"));
        }
        let parsed: Body = crate::wire::parse_value(body.clone(), Self::WHAT)?;
        // PUT names the query in its path; POST makes a new one.
        let id = match head.params.path.strip_prefix("/v1/query/") {
            Some(id) => {
                if !parsed.id.is_empty() && parsed.id != id {
                    return Err(bad(format!(
                        "ID {:?} in the body is not the query {id:?} in the path",
                        parsed.id
                    )));
                }
                id.to_string()
            }
            None => uuid::Uuid::new_v4().to_string(),
        };
        Ok(QueryWrite(to_query(parsed, id)?))
    }

    fn checks(&self, api: &Api) -> Vec<Check> {
        // Write on its name and on the name it replaces (a query with no
        // name: on the empty name, as a `query_prefix ""` rule grants).
        let old = api
            .state
            .read(|s| s.prepared_query(&self.0.id).map(|q| q.name.clone()));
        [Some(self.0.name.clone()), old]
            .into_iter()
            .flatten()
            .map(|name| Check::Named(Resource::Query, name, Access::Write))
            .collect()
    }
}

pub(crate) async fn create(
    State(api): State<Api>,
    Decoded(QueryWrite(query)): Decoded<QueryWrite>,
) -> Result<Response, ApiError> {
    let id = query.id.clone();
    api.apply(Command::QuerySet { query }).await?;
    Ok(Json(json!({ "ID": id })).into_response())
}

pub(crate) async fn update(
    State(api): State<Api>,
    Decoded(QueryWrite(query)): Decoded<QueryWrite>,
) -> Result<Response, ApiError> {
    let exists = api.state.read(|s| s.prepared_query(&query.id).is_some());
    if !exists {
        return Err(not_found(&query.id));
    }
    api.apply(Command::QuerySet { query }).await?;
    Ok(().into_response())
}

pub(crate) async fn delete(
    State(api): State<Api>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    api.apply(Command::QueryDelete { id }).await?;
    Ok(().into_response())
}

fn not_found(id: &str) -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, format!("Query not found: {id:?}"))
}

/// The queries `pick` selects, as a blocking read on the query table.
async fn answer(
    api: &Api,
    params: &HashMap<String, String>,
    pick: impl Fn(&PreparedQuery) -> bool,
    one: bool,
) -> Result<Response, ApiError> {
    let opts = QueryOptions::parse(params)?;
    let (list, index) = api
        .blocking_read(&opts, Table::Queries, |s| {
            let list: Vec<Value> = s
                .prepared_queries()
                .filter(|q| pick(q))
                .map(query_json)
                .collect();
            (list, s.table_index(Table::Queries))
        })
        .await?;
    if one && list.is_empty() {
        return Err(ApiError::new(StatusCode::NOT_FOUND, "Query not found"));
    }
    Ok((api.read_headers(index), Json(list)).into_response())
}

pub(crate) async fn list(
    State(api): State<Api>,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    answer(&api, &params, |_| true, false).await
}

pub(crate) async fn get_one(
    State(api): State<Api>,
    Path(id): Path<String>,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    answer(&api, &params, |q| q.id == id, true).await
}

fn entry_json(h: &ServiceHealth<'_>) -> Value {
    json!({
        "Node": node_json(h.node),
        "Service": service_json(h.service),
        "Checks": h.checks.iter().map(|c| {
            let tags: &[String] = if c.service_id.is_empty() { &[] } else { &h.service.tags };
            check_json(&h.node.name, c, tags)
        }).collect::<Vec<_>>(),
    })
}

/// Whose rights a query runs with: its stored token's if it has one, else
/// the caller's; `None` with ACLs off.
fn runner(
    api: &Api,
    caller: &crate::Caller,
    query_token: &str,
) -> Result<Option<mesh_acl::Authorizer>, ApiError> {
    let settings = api.agent.acl();
    if !settings.enabled {
        return Ok(None);
    }
    if query_token.is_empty() {
        return Ok(Some((*caller.authz).clone()));
    }
    let resolved = api
        .state
        .read(|s| crate::acl_caller::resolve_in(s, &settings, Some(query_token)))
        .ok_or_else(|| {
            ApiError::new(
                axum::http::StatusCode::FORBIDDEN,
                "Permission denied: the prepared query's token no longer exists",
            )
        })?;
    Ok(Some(mesh_acl::Authorizer::from_rule_texts(
        resolved.management,
        &resolved.rules,
        settings.default_allow,
    )))
}

/// `GET /v1/query/:id_or_name/execute?near=&limit=`: instances the runner
/// (the query's token, else the caller) may read, service and node.
pub(crate) async fn execute(
    State(api): State<Api>,
    Path(key): Path<String>,
    Query(params): Query<HashMap<String, String>>,
    axum::Extension(caller): axum::Extension<crate::Caller>,
) -> Result<Response, ApiError> {
    let limit = match params.get("limit") {
        Some(v) => Some(
            v.parse::<usize>()
                .map_err(|_| bad(format!("Invalid limit {v:?}: a non-negative integer")))?,
        ),
        None => None,
    };
    let near = match params.get("near").map(String::as_str) {
        Some("_agent") => api.agent.node_name(),
        Some(n) => n.to_string(),
        None => String::new(),
    };
    let agent = api.agent.node_name();
    let dc = api.agent.datacenter();
    let index = api.state.read(|s| {
        s.table_index(Table::Checks)
            .max(s.table_index(Table::Queries))
    });
    let token = api
        .state
        .read(|s| s.resolve_query(&key).map(|q| q.token))
        .unwrap_or_default();
    let authz = runner(&api, &caller, &token)?;
    let body = api.state.read(|s| {
        let query = s.resolve_query(&key)?;
        let near = match (near.as_str(), query.near.as_str()) {
            ("", "_agent") => agent.clone(),
            ("", n) => n.to_string(),
            (n, _) => n.to_string(),
        };
        let mut found = s.run_query(&query, &near);
        if let Some(a) = &authz {
            found.retain(|h| {
                a.allows(Resource::Service, &h.service.name, Access::Read)
                    && a.allows(Resource::Node, &h.node.name, Access::Read)
            });
        }
        if near.is_empty() {
            // Spread the load, as Consul does when nothing sorts the list.
            use rand::seq::SliceRandom;
            found.shuffle(&mut rand::rng());
        }
        let mut nodes: Vec<Value> = found.iter().map(entry_json).collect();
        if let Some(limit) = limit {
            nodes.truncate(limit);
        }
        Some(json!({
            "Service": query.service,
            "Nodes": nodes,
            "DNS": { "TTL": query.dns_ttl },
            "Datacenter": dc,
            "Failovers": 0,
        }))
    });
    match body {
        Some(body) => Ok((api.read_headers(index), Json(body)).into_response()),
        None => Err(not_found(&key)),
    }
}

/// `GET /v1/query/:id_or_name/explain`: the query as it would run (a
/// template rendered for the name).
pub(crate) async fn explain(
    State(api): State<Api>,
    Path(key): Path<String>,
) -> Result<Response, ApiError> {
    match api.state.read(|s| s.resolve_query(&key)) {
        Some(q) => Ok(Json(json!({ "Query": query_json(&q) })).into_response()),
        None => Err(not_found(&key)),
    }
}
