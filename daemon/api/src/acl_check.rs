//! ACL enforcement for every route: the caller's token is resolved to an
//! authorizer (cached until ACL data changes), the request is mapped to the
//! permission it needs, and list answers are filtered to what the token may
//! read (Consul's `X-Consul-Results-Filtered-By-ACLs`).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use mesh_acl::{Access, Authorizer, Global, Resource};
use mesh_state::ResolvedToken;
use parking_lot::Mutex;
use serde_json::Value;

use crate::{Api, ApiError};

/// The agent's ACL settings.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AclSettings {
    /// Whether tokens are checked at all.
    pub enabled: bool,
    /// What no rule names is allowed (`default_policy = "allow"`).
    pub default_allow: bool,
    /// `acl.tokens.initial_management`: a management secret known from config.
    pub initial_management: Option<String>,
    /// `acl.tokens.default`: used for requests that carry no token.
    pub default_token: Option<String>,
}

/// Who is calling; handlers find it in the request's extensions.
#[derive(Clone)]
pub struct Caller {
    pub accessor: String,
    /// The secret the request carried, to relay to a server.
    pub secret: Option<String>,
    pub authz: Arc<Authorizer>,
}

impl Caller {
    fn anyone() -> Caller {
        Caller {
            accessor: String::new(),
            secret: None,
            authz: Arc::new(Authorizer::management()),
        }
    }
}

/// A token resolved to its policies' rules (what client agents fetch).
pub(crate) type Resolved = ResolvedToken;

/// Resolved callers, keyed by secret; stamped with the ACL index (servers)
/// or the time fetched (client agents, which ask a server).
#[derive(Default)]
pub(crate) struct CallerCache {
    entries: Mutex<HashMap<String, (Stamp, bool, Caller)>>,
    /// Filtered list answers by (authorizer, request URI).
    filtered: Mutex<HashMap<(usize, String), FilteredAnswer>>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Stamp {
    Index(u64),
    At(Instant),
}

/// How long a client agent trusts a resolution from a server (Consul's token_ttl).
const CLIENT_TTL: Duration = Duration::from_secs(30);
const CACHE_MAX: usize = 4096;

/// The token a request carries: `X-Consul-Token`, `Authorization: Bearer`, or `?token=`.
pub fn request_secret(headers: &HeaderMap, params: &HashMap<String, String>) -> Option<String> {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    header("x-consul-token")
        .map(str::to_string)
        .or_else(|| {
            header("authorization")
                .and_then(|v| v.strip_prefix("Bearer "))
                .map(|v| v.trim().to_string())
        })
        .or_else(|| params.get("token").cloned())
        .filter(|s| !s.is_empty())
}

fn acl_not_found() -> ApiError {
    ApiError::new(StatusCode::FORBIDDEN, "ACL not found")
}

/// On a server, from its state: the secret's token (the configured initial
/// management secret counts as management before the leader stores it).
pub fn resolve_in(
    state: &mesh_state::State,
    settings: &AclSettings,
    secret: Option<&str>,
) -> Option<ResolvedToken> {
    if secret.is_some() && settings.initial_management.as_deref() == secret {
        return Some(ResolvedToken {
            accessor: "initial-management".into(),
            management: true,
            rules: Vec::new(),
        });
    }
    state.acl_resolve(secret)
}

/// On a server: the secret's token and its policies' rules.
pub(crate) async fn resolve_local(api: &Api, secret: Option<&str>) -> Result<Resolved, ApiError> {
    let settings = api.agent.acl();
    let lookup = |api: &Api| api.state.read(|s| resolve_in(s, &settings, secret));
    if let Some(found) = lookup(api) {
        return Ok(found);
    }
    // A token created through another server may not be applied here yet.
    if let Some(raft) = &api.raft {
        raft.read_barrier(mesh_raft::ReadMode::Default).await?;
    }
    lookup(api).ok_or_else(acl_not_found)
}

/// On a client agent: ask a server what the secret may do.
async fn resolve_remote(api: &Api, secret: Option<&str>) -> Result<Resolved, ApiError> {
    let server = api.agent.server_http_addr().ok_or_else(|| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "cannot check the ACL token: no known servers",
        )
    })?;
    let mut req = api
        .http
        .get(format!("http://{server}/v1/internal/acl/authorizer"));
    if let Some(secret) = secret {
        req = req.header("x-consul-token", secret);
    }
    let unavailable = |e: reqwest::Error| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("cannot check the ACL token with server {server}: {e}"),
        )
    };
    let resp = req.send().await.map_err(unavailable)?;
    if resp.status() == reqwest::StatusCode::FORBIDDEN {
        return Err(acl_not_found());
    }
    let v: Value = resp
        .error_for_status()
        .map_err(unavailable)?
        .json()
        .await
        .map_err(unavailable)?;
    Ok(Resolved {
        accessor: v["AccessorID"].as_str().unwrap_or_default().to_string(),
        management: v["Management"].as_bool().unwrap_or(false),
        rules: v["Rules"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default(),
    })
}

async fn caller(
    api: &Api,
    settings: &AclSettings,
    secret: Option<String>,
) -> Result<Caller, ApiError> {
    let key = secret.clone().unwrap_or_default();
    let stamp_now = match api.raft {
        Some(_) => Stamp::Index(api.state.read(|s| s.acl_index())),
        None => Stamp::At(Instant::now()),
    };
    if let Some((stamp, default_allow, c)) = api.acl_cache.entries.lock().get(&key) {
        let fresh = match (stamp, stamp_now) {
            (Stamp::Index(a), Stamp::Index(b)) => *a == b,
            (Stamp::At(t), Stamp::At(_)) => t.elapsed() < CLIENT_TTL,
            _ => false,
        };
        if fresh && *default_allow == settings.default_allow {
            return Ok(c.clone());
        }
    }
    let resolved = match api.raft {
        Some(_) => resolve_local(api, secret.as_deref()).await?,
        None => resolve_remote(api, secret.as_deref()).await?,
    };
    let authz =
        Authorizer::from_rule_texts(resolved.management, &resolved.rules, settings.default_allow);
    let c = Caller {
        accessor: resolved.accessor,
        secret,
        authz: Arc::new(authz),
    };
    let mut entries = api.acl_cache.entries.lock();
    if entries.len() >= CACHE_MAX {
        entries.clear();
    }
    entries.insert(key, (stamp_now, settings.default_allow, c.clone()));
    Ok(c)
}

// === what a request needs ===

/// One permission.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Check {
    Named(Resource, String, Access),
    Global(Global, Access),
    KeyWritePrefix(String),
    Management,
}

/// How a list answer is cut down to what the caller may read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Filter {
    /// An array of objects, each named by a field.
    Array(&'static str, Resource),
    /// An object keyed by name (`/v1/catalog/services`).
    Keys(Resource),
    /// An object of objects, each named by a field (`/v1/agent/services`).
    Values(&'static str, Resource),
    /// Checks (array or object): by service if they have one, else by node.
    Checks,
    /// An array of key names (`?keys`).
    KeyNames,
}

#[derive(Debug, Default)]
struct Needs {
    checks: Vec<Check>,
    filter: Option<Filter>,
}

impl Needs {
    fn one(check: Check) -> Needs {
        Needs {
            checks: vec![check],
            filter: None,
        }
    }
    fn filter(filter: Filter) -> Needs {
        Needs {
            checks: Vec::new(),
            filter: Some(filter),
        }
    }
}

fn decode(segment: &str) -> String {
    percent_encoding::percent_decode_str(segment)
        .decode_utf8_lossy()
        .into_owned()
}

const SERVICE_KINDS: [&str; 6] = [
    "service-defaults",
    "service-router",
    "service-splitter",
    "service-resolver",
    "ingress-gateway",
    "terminating-gateway",
];

/// A config entry write by `authz`, for the RPC guard.
pub(crate) fn config_check_allowed(
    authz: &Authorizer,
    kind: &str,
    name: &str,
) -> Result<(), String> {
    match config_check(kind, name, Access::Write) {
        Some(check) if !allowed(authz, &check) => Err(format!(
            "Permission denied: the token lacks {}",
            check_text(&check)
        )),
        _ => Ok(()),
    }
}

fn config_check(kind: &str, name: &str, need: Access) -> Option<Check> {
    if kind == "service-intentions" {
        Some(Check::Named(Resource::Intention, name.into(), need))
    } else if SERVICE_KINDS.contains(&kind) {
        Some(Check::Named(Resource::Service, name.into(), need))
    } else if need == Access::Write {
        Some(Check::Global(Global::Mesh, Access::Write))
    } else {
        // proxy-defaults and mesh are readable by anyone, as in Consul.
        None
    }
}

fn str_field(body: &Value, key: &str) -> String {
    body.get(key)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

/// The permissions a request needs. `body` is the request body for the
/// routes whose target is inside it.
fn needs(
    api: &Api,
    method: &Method,
    path: &str,
    q: &HashMap<String, String>,
    body: &Value,
) -> Needs {
    use Access::{Read, Write};
    use Check::{Global as G, Named};
    let Some(rest) = path.strip_prefix("/v1/") else {
        return Needs::default();
    };
    let segs: Vec<&str> = rest.split('/').collect();
    // Only agent routes need this agent's name.
    let node = || api.agent.node_name();
    let write = *method != Method::GET && *method != Method::HEAD;
    let access = if write { Write } else { Read };
    let qs = |k: &str| q.get(k).cloned().unwrap_or_default();
    match segs.as_slice() {
        ["status", ..] | ["catalog", "datacenters"] => Needs::default(),
        ["connect", "ca", "roots"] | ["agent", "connect", "ca", "roots"] => Needs::default(),
        ["acl", "bootstrap"] | ["acl", "token", "self"] | ["internal", "acl", "authorizer"] => {
            Needs::default()
        }
        ["acl", ..] => Needs::one(G(Global::Acl, access)),
        ["operator", ..] => Needs::one(G(Global::Operator, access)),
        ["snapshot"] => Needs::one(Check::Management),
        ["kv", key @ ..] => {
            let key = decode(&key.join("/"));
            match (write, q.contains_key("recurse"), q.contains_key("keys")) {
                (true, true, _) => Needs::one(Check::KeyWritePrefix(key)),
                (true, false, _) => Needs::one(Named(Resource::Key, key, Write)),
                (false, _, true) => Needs::filter(Filter::KeyNames),
                (false, true, _) => Needs::filter(Filter::Array("Key", Resource::Key)),
                (false, false, false) => Needs::one(Named(Resource::Key, key, Read)),
            }
        }
        ["txn"] => Needs {
            checks: txn_checks(body),
            filter: None,
        },
        ["catalog", "register"] => {
            let mut checks = Vec::new();
            if let Some(svc) = body.get("Service").filter(|s| s.is_object()) {
                checks.push(Named(Resource::Service, str_field(svc, "Service"), Write));
            }
            if !body
                .get("SkipNodeUpdate")
                .and_then(Value::as_bool)
                .unwrap_or(false)
                || checks.is_empty()
            {
                checks.push(Named(Resource::Node, str_field(body, "Node"), Write));
            }
            Needs {
                checks,
                filter: None,
            }
        }
        ["catalog", "deregister"] => {
            let node = str_field(body, "Node");
            let sid = str_field(body, "ServiceID");
            let name = (!sid.is_empty())
                .then(|| {
                    api.state
                        .read(|s| s.service(&node, &sid).map(|s| s.name.clone()))
                })
                .flatten();
            match name {
                Some(name) => Needs::one(Named(Resource::Service, name, Write)),
                None => Needs::one(Named(Resource::Node, node, Write)),
            }
        }
        ["catalog", "nodes"] => Needs::filter(Filter::Array("Node", Resource::Node)),
        ["catalog", "services"] => Needs::filter(Filter::Keys(Resource::Service)),
        ["catalog" | "health", "service" | "connect", name] | ["health", "checks", name] => {
            Needs::one(Named(Resource::Service, decode(name), Read))
        }
        ["catalog" | "health", "node", name] => {
            Needs::one(Named(Resource::Node, decode(name), Read))
        }
        ["health", "state", _] => Needs::filter(Filter::Checks),
        ["config"] => match config_check(&str_field(body, "Kind"), &str_field(body, "Name"), Write)
        {
            Some(c) => Needs::one(c),
            None => Needs::default(),
        },
        ["config", kind] => {
            if *kind == "service-intentions" {
                Needs::filter(Filter::Array("Name", Resource::Intention))
            } else if SERVICE_KINDS.contains(kind) {
                Needs::filter(Filter::Array("Name", Resource::Service))
            } else {
                Needs::default()
            }
        }
        ["config", kind, name] => match config_check(kind, &decode(name), access) {
            Some(c) => Needs::one(c),
            None => Needs::default(),
        },
        ["connect", "intentions"] if write => Needs::one(Named(
            Resource::Intention,
            str_field(body, "DestinationName"),
            Write,
        )),
        ["connect", "intentions"] => {
            Needs::filter(Filter::Array("DestinationName", Resource::Intention))
        }
        ["connect", "intentions", "exact" | "check"] => {
            Needs::one(Named(Resource::Intention, qs("destination"), access))
        }
        ["connect", "intentions", "match"] => {
            Needs::one(Named(Resource::Intention, qs("name"), Read))
        }
        ["connect", "intentions", id] => {
            let id = decode(id);
            let dest = api.state.read(|s| {
                s.intentions()
                    .find(|i| i.id == id)
                    .map(|i| i.destination.clone())
            });
            match dest {
                Some(dest) => Needs::one(Named(Resource::Intention, dest, access)),
                None => Needs::default(),
            }
        }
        ["connect", "ca", ..] => Needs::one(G(Global::Operator, access)),
        ["agent", "connect", "authorize"] => {
            Needs::one(Named(Resource::Service, str_field(body, "Target"), Write))
        }
        ["agent", "connect", "ca", "leaf", service] => {
            Needs::one(Named(Resource::Service, decode(service), Write))
        }
        ["agent", "connect", "proxy", id] => {
            // The snapshot carries the leaf (the identity) of the service the
            // proxy stands for: as for the leaf endpoint, that needs write.
            let id = decode(id);
            let destination = match q.get("node") {
                Some(n) => api.state.read(|s| {
                    s.service(n, &id)
                        .and_then(|s| s.proxy.as_ref())
                        .map(|p| p.destination_service_name.clone())
                }),
                None => api.agent.local_proxy_destination(&id),
            };
            Needs::one(Named(Resource::Service, destination.unwrap_or(id), Write))
        }
        ["agent", "members"] => Needs::filter(Filter::Array("Name", Resource::Node)),
        ["agent", "self"] => Needs::one(Named(Resource::Agent, node(), Read)),
        ["agent", "leave" | "reload" | "join", ..] => {
            Needs::one(Named(Resource::Agent, node(), Write))
        }
        ["agent", "config", "plan"] => Needs::one(Named(Resource::Agent, node(), Read)),
        ["agent", "services"] => Needs::filter(Filter::Values("Service", Resource::Service)),
        ["agent", "checks"] => Needs::filter(Filter::Checks),
        ["agent", "service", "register"] => {
            let name = body
                .get("Name")
                .or_else(|| body.get("Service"))
                .and_then(Value::as_str)
                .unwrap_or_default();
            Needs::one(Named(Resource::Service, name.into(), Write))
        }
        ["agent", "service", op @ ..] => {
            let id = decode(op.last().copied().unwrap_or_default());
            let name = api.agent.local_service_name(&id).unwrap_or(id);
            Needs::one(Named(Resource::Service, name, access))
        }
        ["agent", "check", "register"] => {
            let sid = str_field(body, "ServiceID");
            match api.agent.local_service_name(&sid) {
                Some(name) => Needs::one(Named(Resource::Service, name, Write)),
                None => Needs::one(Named(Resource::Node, node(), Write)),
            }
        }
        ["agent", "check", _, id] => match api.agent.local_check_service(&decode(id)) {
            Some(name) => Needs::one(Named(Resource::Service, name, Write)),
            None => Needs::one(Named(Resource::Node, node(), Write)),
        },
        // Anything else: only a management token (fail closed).
        _ => Needs::one(Check::Management),
    }
}

fn txn_checks(body: &Value) -> Vec<Check> {
    let Some(ops) = body.as_array() else {
        return Vec::new();
    };
    ops.iter()
        .filter_map(|op| op.get("KV"))
        .map(|kv| {
            let key = str_field(kv, "Key");
            match str_field(kv, "Verb").as_str() {
                "get" | "check-index" | "check-session" | "check-not-exists" | "get-tree" => {
                    Check::Named(Resource::Key, key, Access::Read)
                }
                "delete-tree" => Check::KeyWritePrefix(key),
                _ => Check::Named(Resource::Key, key, Access::Write),
            }
        })
        .collect()
}

/// Which routes carry their target in the body.
fn body_matters(method: &Method, path: &str) -> bool {
    *method != Method::GET
        && matches!(
            path,
            "/v1/txn"
                | "/v1/catalog/register"
                | "/v1/catalog/deregister"
                | "/v1/config"
                | "/v1/connect/intentions"
                | "/v1/agent/connect/authorize"
                | "/v1/agent/service/register"
                | "/v1/agent/check/register"
        )
}

fn allowed(authz: &Authorizer, check: &Check) -> bool {
    match check {
        Check::Named(r, name, need) => authz.allows(*r, name, *need),
        Check::Global(g, need) => authz.allows_global(*g, *need),
        Check::KeyWritePrefix(prefix) => authz.allows_key_write_prefix(prefix),
        Check::Management => authz.is_management(),
    }
}

fn check_text(check: &Check) -> String {
    match check {
        Check::Named(r, name, need) => format!("'{}:{}' on {name:?}", r.as_str(), need.as_str()),
        Check::Global(g, need) => format!("'{}:{}'", g.as_str(), need.as_str()),
        Check::KeyWritePrefix(prefix) => format!("'key:write' on every key under {prefix:?}"),
        Check::Management => "'acl:write' (a management token)".into(),
    }
}

fn denied(caller: &Caller, check: &Check) -> ApiError {
    let what = check_text(check);
    ApiError::new(
        StatusCode::FORBIDDEN,
        format!(
            "Permission denied: token with AccessorID '{}' lacks permission {what}",
            caller.accessor
        ),
    )
}

/// The middleware: resolve, check, run, filter.
pub(crate) async fn enforce(State(api): State<Api>, req: Request, next: Next) -> Response {
    match enforce_inner(api, req, next).await {
        Ok(resp) => resp,
        Err(e) => e.into_response(),
    }
}

async fn enforce_inner(api: Api, mut req: Request, next: Next) -> Result<Response, ApiError> {
    let settings = api.agent.acl();
    if !settings.enabled {
        req.extensions_mut().insert(Caller::anyone());
        return Ok(next.run(req).await);
    }
    let query: HashMap<String, String> = req
        .uri()
        .query()
        .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
        .unwrap_or_default();
    let secret = request_secret(req.headers(), &query).or(settings.default_token.clone());
    let caller = caller(&api, &settings, secret).await?;
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let uri = req.uri().to_string();
    let mut body_value = Value::Null;
    if body_matters(&method, &path) {
        let (parts, body) = req.into_parts();
        let bytes: Bytes = axum::body::to_bytes(body, 64 << 20)
            .await
            .map_err(|e| ApiError::bad_request(format!("reading request body: {e}")))?;
        body_value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        req = Request::from_parts(parts, Body::from(bytes));
    }
    let needs = needs(&api, &method, &path, &query, &body_value);
    if let Some(missing) = needs.checks.iter().find(|c| !allowed(&caller.authz, c)) {
        tracing::debug!(accessor = %caller.accessor, %path, "ACL denied");
        return Err(denied(&caller, missing));
    }
    let authz = caller.authz.clone();
    let token = caller.secret.clone();
    req.extensions_mut().insert(caller);
    // A write this request makes carries its token if forwarded to the leader.
    let resp = mesh_raft::with_caller_token(token, next.run(req)).await;
    match needs.filter {
        Some(filter) if !authz.is_management() && resp.status() == StatusCode::OK => {
            let kv = path.starts_with("/v1/kv");
            filter_answer(&api, resp, filter, &authz, &uri, kv).await
        }
        _ => Ok(resp),
    }
}

async fn filter_answer(
    api: &Api,
    resp: Response,
    filter: Filter,
    authz: &Arc<Authorizer>,
    uri: &str,
    kv: bool,
) -> Result<Response, ApiError> {
    let (mut parts, body) = resp.into_parts();
    let bytes = axum::body::to_bytes(body, usize::MAX)
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    // Most reads repeat: the same answer for the same caller filters the same.
    let key = (Arc::as_ptr(authz) as usize, uri.to_string());
    let hit = api
        .acl_cache
        .filtered
        .lock()
        .get(&key)
        .filter(|e| e.source == bytes)
        .map(|e| e.result.clone());
    let result = match hit {
        Some(r) => r,
        None => {
            let r = filter_bytes(&bytes, filter, authz, kv);
            let mut cache = api.acl_cache.filtered.lock();
            if cache.len() >= CACHE_MAX {
                cache.clear();
            }
            cache.insert(
                key,
                FilteredAnswer {
                    // Held so the pointer in the key cannot be reused by another authorizer.
                    _authz: authz.clone(),
                    source: bytes.clone(),
                    result: r.clone(),
                },
            );
            r
        }
    };
    parts.headers.remove(axum::http::header::CONTENT_LENGTH);
    Ok(match result {
        // Consul answers 404 when nothing under the prefix is readable.
        Filtered::NothingReadable => (StatusCode::NOT_FOUND, parts.headers, "").into_response(),
        Filtered::Unchanged => Response::from_parts(parts, Body::from(bytes)),
        Filtered::Cut(out) => {
            parts.headers.insert(
                "X-Consul-Results-Filtered-By-ACLs",
                HeaderValue::from_static("true"),
            );
            Response::from_parts(parts, Body::from(out))
        }
    })
}

/// A list answer after the ACL filter.
#[derive(Clone)]
enum Filtered {
    Unchanged,
    Cut(Bytes),
    NothingReadable,
}

/// One filtered answer, kept while its source bytes stay the same.
pub(crate) struct FilteredAnswer {
    _authz: Arc<Authorizer>,
    source: Bytes,
    result: Filtered,
}

fn filter_bytes(bytes: &Bytes, filter: Filter, authz: &Authorizer, kv: bool) -> Filtered {
    let Ok(mut value) = serde_json::from_slice::<Value>(bytes) else {
        return Filtered::Unchanged;
    };
    let can_read = |r: Resource, name: &str| authz.allows(r, name, Access::Read);
    let check_ok = |c: &Value| {
        let service = c.get("ServiceName").and_then(Value::as_str).unwrap_or("");
        if service.is_empty() {
            can_read(
                Resource::Node,
                c.get("Node").and_then(Value::as_str).unwrap_or(""),
            )
        } else {
            can_read(Resource::Service, service)
        }
    };
    let named = |v: &Value, field: &str, r: Resource| {
        can_read(r, v.get(field).and_then(Value::as_str).unwrap_or(""))
    };
    let before = count(&value);
    match (&mut value, filter) {
        (Value::Array(items), Filter::Array(field, r)) => items.retain(|v| named(v, field, r)),
        (Value::Array(items), Filter::KeyNames) => {
            items.retain(|k| can_read(Resource::Key, k.as_str().unwrap_or("")))
        }
        (Value::Array(items), Filter::Checks) => items.retain(check_ok),
        (Value::Object(map), Filter::Checks) => map.retain(|_, c| check_ok(c)),
        (Value::Object(map), Filter::Keys(r)) => map.retain(|k, _| can_read(r, k)),
        (Value::Object(map), Filter::Values(field, r)) => map.retain(|_, v| named(v, field, r)),
        _ => {}
    }
    let after = count(&value);
    if kv && after == 0 && before > 0 {
        return Filtered::NothingReadable;
    }
    if after == before {
        return Filtered::Unchanged;
    }
    Filtered::Cut(Bytes::from(
        serde_json::to_vec(&value).expect("a JSON value renders"),
    ))
}

fn count(v: &Value) -> usize {
    match v {
        Value::Array(a) => a.len(),
        Value::Object(o) => o.len(),
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_comes_from_header_bearer_or_query() {
        let mut h = HeaderMap::new();
        let q = HashMap::from([("token".to_string(), "from-query".to_string())]);
        assert_eq!(request_secret(&h, &q).as_deref(), Some("from-query"));
        h.insert(
            "authorization",
            HeaderValue::from_static("Bearer from-bearer"),
        );
        assert_eq!(request_secret(&h, &q).as_deref(), Some("from-bearer"));
        h.insert("x-consul-token", HeaderValue::from_static("from-header"));
        assert_eq!(request_secret(&h, &q).as_deref(), Some("from-header"));
        assert_eq!(request_secret(&HeaderMap::new(), &HashMap::new()), None);
    }

    #[test]
    fn txn_needs_read_for_reads_and_write_for_writes() {
        let body = serde_json::json!([
            {"KV": {"Verb": "get", "Key": "a"}},
            {"KV": {"Verb": "set", "Key": "b"}},
            {"KV": {"Verb": "delete-tree", "Key": "c/"}},
        ]);
        assert_eq!(
            txn_checks(&body),
            vec![
                Check::Named(Resource::Key, "a".into(), Access::Read),
                Check::Named(Resource::Key, "b".into(), Access::Write),
                Check::KeyWritePrefix("c/".into()),
            ]
        );
    }
}
