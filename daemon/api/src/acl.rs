//! `/v1/acl/*`: bootstrap, tokens and policies (Consul's shapes). Rules are
//! checked here, with line and column, before anything is proposed.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use mesh_acl::{Access, Global};
use mesh_types::{AclPolicy, AclToken, AclTokenLinks, Command, GLOBAL_MANAGEMENT_POLICY_ID};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::acl_caller::{request_secret, Caller};
use crate::acl_links::{LinkBody, NodeIdentityBody, ServiceIdentityBody, TemplatedPolicyBody};
use crate::error::json_body;
use crate::{Api, ApiError, Written};

/// A body field, its key in any case (`name` and `Name` alike).
fn get<'a>(v: &'a Value, key: &str) -> Option<&'a Value> {
    v.as_object().and_then(|m| mesh_wire::field(m, key))
}

fn field<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    get(v, key)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
}

fn new_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

pub(crate) fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

fn not_found(what: impl std::fmt::Display) -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, format!("{what} not found"))
}

pub(crate) fn enabled(api: &Api) -> Result<(), ApiError> {
    if api.agent.acl().enabled {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "ACL support disabled: set acl { enabled = true } in the agent config",
        ))
    }
}

// === JSON ===

pub(crate) fn policy_json(p: &AclPolicy, with_rules: bool) -> Value {
    let mut v = json!({
        "ID": p.id,
        "Name": p.name,
        "Description": p.description,
        "Datacenters": p.datacenters,
        "CreateIndex": p.create_index,
        "ModifyIndex": p.modify_index,
    });
    if with_rules {
        v["Rules"] = p.rules.clone().into();
    }
    v
}

fn token_json(api: &Api, t: &AclToken, show_secret: bool) -> Value {
    api.state.read(|s| token_json_in(s, t, show_secret))
}

/// The token as Consul shows it, policy names looked up in `s`.
fn token_json_in(s: &mesh_state::State, t: &AclToken, show_secret: bool) -> Value {
    let policies: Vec<Value> = t
        .policies
        .iter()
        .map(|id| {
            let name = s.acl_policy(id).map(|p| p.name).unwrap_or_default();
            json!({"ID": id, "Name": name})
        })
        .collect();
    let mut out = json!({
        "AccessorID": t.accessor_id,
        "SecretID": if show_secret { t.secret_id.as_str() } else { "<hidden>" },
        "Description": t.description,
        "Policies": policies,
        "Local": t.local,
        "CreateTime": t.create_time,
        "CreateIndex": t.create_index,
        "ModifyIndex": t.modify_index,
    });
    crate::acl_links::add_links_json(s, &mut out, &s.acl_token_links(&t.accessor_id));
    out
}

/// Secrets are shown only to callers that may write ACLs (Consul redacts too).
fn shows_secrets(caller: &Caller) -> bool {
    caller.authz.allows_global(Global::Acl, Access::Write)
}

// === bootstrap ===

pub(crate) async fn bootstrap(State(api): State<Api>) -> Result<Response, ApiError> {
    enabled(&api)?;
    let token = AclToken {
        accessor_id: new_id(),
        secret_id: new_id(),
        description: "Bootstrap Token (Global Management)".into(),
        policies: vec![GLOBAL_MANAGEMENT_POLICY_ID.into()],
        create_time: now_rfc3339(),
        ..Default::default()
    };
    match api
        .apply(Command::AclBootstrap {
            token: token.clone(),
        })
        .await
    {
        Ok(_) => {}
        Err(e) if e.status == StatusCode::BAD_REQUEST => {
            return Err(ApiError::new(StatusCode::FORBIDDEN, e.message))
        }
        Err(e) => return Err(e),
    }
    let stored = stored_token(&api, &token.accessor_id)
        .await
        .unwrap_or(token);
    Ok(Json(token_json(&api, &stored, true)).into_response())
}

/// The token as stored (with its indexes), once this server has applied it.
async fn stored_token(api: &Api, accessor: &str) -> Option<AclToken> {
    if let Some(raft) = &api.raft {
        let _ = raft.read_barrier(mesh_raft::ReadMode::Default).await;
    }
    api.state.read(|s| s.acl_token(accessor).cloned())
}

// === policies ===

fn policy_from(body: &Value, id: String) -> Result<AclPolicy, ApiError> {
    let name = field(body, "Name")
        .ok_or_else(|| ApiError::bad_request("ACL policy Name is required"))?
        .to_string();
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        || name.len() > 128
    {
        return Err(ApiError::bad_request(format!(
            "ACL policy Name {name:?} is invalid: use up to 128 letters, digits, '-' and '_'"
        )));
    }
    let rules = get(body, "Rules")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    mesh_acl::parse_rules(&rules)
        .map_err(|e| ApiError::bad_request(format!("ACL policy {name:?}: {e}")))?;
    let datacenters = get(body, "Datacenters")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    Ok(AclPolicy {
        id,
        name,
        description: field(body, "Description").unwrap_or("").to_string(),
        rules,
        datacenters,
        ..Default::default()
    })
}

async fn write_policy(api: &Api, policy: AclPolicy) -> Result<Response, ApiError> {
    let id = policy.id.clone();
    api.apply(Command::AclPolicySet { policy }).await?;
    if let Some(raft) = &api.raft {
        raft.read_barrier(mesh_raft::ReadMode::Default).await?;
    }
    let stored = api
        .state
        .read(|s| s.acl_policy(&id))
        .ok_or_else(|| not_found(format!("ACL policy {id}")))?;
    Ok(Json(policy_json(&stored, true)).into_response())
}

pub(crate) async fn policy_create(
    State(api): State<Api>,
    body: Bytes,
) -> Result<Response, ApiError> {
    enabled(&api)?;
    let body = json_body(&body, "policy")?;
    if field(&body, "ID").is_some() {
        return Err(ApiError::bad_request(
            "ID must be empty when creating a policy; use PUT /v1/acl/policy/<id> to update",
        ));
    }
    let policy = policy_from(&body, new_id())?;
    write_policy(&api, policy).await
}

pub(crate) async fn policy_update(
    State(api): State<Api>,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    enabled(&api)?;
    let body = json_body(&body, "policy")?;
    if api.state.read(|s| s.acl_policy(&id)).is_none() {
        return Err(not_found(format!("ACL policy {id}")));
    }
    let policy = policy_from(&body, id)?;
    write_policy(&api, policy).await
}

pub(crate) async fn policy_get(
    State(api): State<Api>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    enabled(&api)?;
    let p = api
        .state
        .read(|s| s.acl_policy(&id))
        .ok_or_else(|| not_found(format!("ACL policy {id}")))?;
    Ok(Json(policy_json(&p, true)).into_response())
}

pub(crate) async fn policy_by_name(
    State(api): State<Api>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    enabled(&api)?;
    let p = api
        .state
        .read(|s| s.acl_policy_by_name(&name))
        .ok_or_else(|| not_found(format!("ACL policy named {name:?}")))?;
    Ok(Json(policy_json(&p, true)).into_response())
}

pub(crate) async fn policy_delete(
    State(api): State<Api>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    enabled(&api)?;
    let done = api.apply(Command::AclPolicyDelete { id }).await?;
    Ok(Json(done.as_bool()).into_response())
}

pub(crate) async fn policies(State(api): State<Api>) -> Result<Response, ApiError> {
    enabled(&api)?;
    let list: Vec<Value> = api
        .state
        .read(|s| s.acl_policies().map(|p| policy_json(&p, false)).collect());
    Ok(Json(list).into_response())
}

// === tokens ===

/// A token body, keys in any case. Fields Consul's clients send back
/// from a read (`CreateTime`, indexes, `Hash`) are accepted and ignored.
#[derive(Deserialize, Default)]
#[serde(default)]
struct TokenBody {
    accessorid: String,
    secretid: String,
    description: String,
    policies: Vec<LinkBody>,
    roles: Vec<LinkBody>,
    serviceidentities: Vec<ServiceIdentityBody>,
    nodeidentities: Vec<NodeIdentityBody>,
    templatedpolicies: Vec<TemplatedPolicyBody>,
    local: Option<bool>,
    /// A Go duration ("1h") or nanoseconds.
    expirationttl: Value,
    /// RFC 3339.
    expirationtime: Option<String>,
}

/// The shortest and longest `ExpirationTTL` (Consul's defaults for
/// `token_min_expiration_ttl` and `token_max_expiration_ttl`).
pub const MIN_TOKEN_TTL: std::time::Duration = std::time::Duration::from_secs(60);
pub const MAX_TOKEN_TTL: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

fn token_body(body: &[u8]) -> Result<TokenBody, ApiError> {
    let value = json_body(body, "token")?;
    if !value.is_object() {
        return Err(ApiError::bad_request(
            "Request decode failed: token: a JSON object",
        ));
    }
    Ok(crate::wire::parse_value(value, "token")?)
}

/// The expiry a body asks for, in Unix milliseconds (0: none).
fn expiration_ms(b: &TokenBody) -> Result<u64, ApiError> {
    let ttl = match &b.expirationttl {
        Value::Null => None,
        Value::String(s) if s.is_empty() => None,
        Value::String(s) => Some(
            mesh_types::parse_go_duration(s)
                .map_err(|e| ApiError::bad_request(format!("ExpirationTTL {s:?}: {e}")))?,
        ),
        Value::Number(n) => n
            .as_u64()
            .filter(|n| *n > 0)
            .map(std::time::Duration::from_nanos),
        other => {
            return Err(ApiError::bad_request(format!(
                "ExpirationTTL {other}: a duration such as \"1h\""
            )))
        }
    };
    let now = mesh_state::now_unix_ms();
    match (ttl, &b.expirationtime) {
        (Some(_), Some(_)) => Err(ApiError::bad_request(
            "Expiration TTL and Expiration Time cannot both be set",
        )),
        (Some(ttl), None) => {
            if !(MIN_TOKEN_TTL..=MAX_TOKEN_TTL).contains(&ttl) {
                return Err(ApiError::bad_request(format!(
                    "ExpirationTTL {}: must be between {} and {} (MIN_TOKEN_TTL, MAX_TOKEN_TTL)",
                    mesh_types::format_go_duration(ttl),
                    mesh_types::format_go_duration(MIN_TOKEN_TTL),
                    mesh_types::format_go_duration(MAX_TOKEN_TTL),
                )));
            }
            Ok(now + ttl.as_millis() as u64)
        }
        (None, Some(at)) => {
            let t = time::OffsetDateTime::parse(at, &time::format_description::well_known::Rfc3339)
                .map_err(|e| ApiError::bad_request(format!("ExpirationTime {at:?}: {e}")))?;
            let ms = (t.unix_timestamp_nanos() / 1_000_000).max(0) as u64;
            if ms <= now || ms - now > MAX_TOKEN_TTL.as_millis() as u64 {
                return Err(ApiError::bad_request(format!(
                    "ExpirationTime {at:?}: must be in the future, within {} (MAX_TOKEN_TTL)",
                    mesh_types::format_go_duration(MAX_TOKEN_TTL)
                )));
            }
            Ok(ms)
        }
        (None, None) => Ok(0),
    }
}

/// The links a body asks for (the expiry and auth method set by the caller).
fn links_from(api: &Api, b: &TokenBody) -> Result<AclTokenLinks, ApiError> {
    let ids = crate::acl_links::identities(
        b.serviceidentities.clone(),
        b.nodeidentities.clone(),
        b.templatedpolicies.clone(),
    )?;
    Ok(AclTokenLinks {
        roles: api
            .state
            .read(|s| crate::acl_links::role_ids(s, &b.roles))?,
        service_identities: ids.services,
        node_identities: ids.nodes,
        templated_policies: ids.templated,
        ..Default::default()
    })
}

fn check_uuid(what: &str, value: &str) -> Result<(), ApiError> {
    uuid::Uuid::parse_str(value)
        .map(|_| ())
        .map_err(|_| ApiError::bad_request(format!("{what} {value:?} is not a UUID")))
}

pub(crate) async fn write_token(
    api: &Api,
    token: AclToken,
    links: AclTokenLinks,
) -> Result<Response, ApiError> {
    let accessor = token.accessor_id.clone();
    // A token without links keeps the older command, which every server reads.
    let cmd = if links.is_empty() {
        Command::AclTokenSet { token }
    } else {
        Command::AclTokenSetLinked { token, links }
    };
    api.apply(cmd).await?;
    let stored = stored_token(api, &accessor)
        .await
        .ok_or_else(|| not_found(format!("ACL token {accessor}")))?;
    Ok(Json(token_json(api, &stored, true)).into_response())
}

pub(crate) async fn token_create(
    State(api): State<Api>,
    body: Bytes,
) -> Result<Response, ApiError> {
    enabled(&api)?;
    let b = token_body(&body)?;
    let accessor = Some(b.accessorid.clone())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(new_id);
    let secret = Some(b.secretid.clone())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(new_id);
    check_uuid("AccessorID", &accessor)?;
    check_uuid("SecretID", &secret)?;
    if api.state.read(|s| s.acl_token(&accessor).is_some()) {
        return Err(ApiError::bad_request(format!(
            "a token with AccessorID {accessor} already exists; update it with PUT /v1/acl/token/{accessor}"
        )));
    }
    let mut links = links_from(&api, &b)?;
    links.expiration_unix_ms = expiration_ms(&b)?;
    let token = AclToken {
        accessor_id: accessor,
        secret_id: secret,
        description: b.description.clone(),
        policies: api
            .state
            .read(|s| crate::acl_links::policy_ids(s, &b.policies))?,
        local: b.local.unwrap_or(false),
        create_time: now_rfc3339(),
        ..Default::default()
    };
    write_token(&api, token, links).await
}

pub(crate) async fn token_update(
    State(api): State<Api>,
    Path(accessor): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    enabled(&api)?;
    let b = token_body(&body)?;
    let (old, old_links) = api
        .state
        .read(|s| {
            s.acl_token(&accessor)
                .cloned()
                .map(|t| (t, s.acl_token_links(&accessor)))
        })
        .ok_or_else(|| not_found(format!("ACL token {accessor}")))?;
    if !b.secretid.is_empty() && b.secretid != old.secret_id {
        return Err(ApiError::bad_request(
            "a token's SecretID cannot be changed",
        ));
    }
    if !b.accessorid.is_empty() && b.accessorid != old.accessor_id {
        return Err(ApiError::bad_request(format!(
            "AccessorID {:?} in the body is not the token {accessor:?} in the path",
            b.accessorid
        )));
    }
    // The expiry and the login that made a token never change; a client
    // may send back the ExpirationTime it read.
    let ttl_given =
        !matches!(&b.expirationttl, Value::Null) && b.expirationttl != Value::String(String::new());
    let time_changed = b.expirationtime.as_deref().is_some_and(|t| {
        old_links.expiration_unix_ms == 0
            || crate::acl_links::rfc3339_ms(old_links.expiration_unix_ms) != t
    });
    if ttl_given || time_changed {
        return Err(ApiError::bad_request(
            "a token's expiration cannot be changed",
        ));
    }
    let mut links = links_from(&api, &b)?;
    links.expiration_unix_ms = old_links.expiration_unix_ms;
    links.auth_method = old_links.auth_method;
    let token = AclToken {
        description: b.description.clone(),
        policies: api
            .state
            .read(|s| crate::acl_links::policy_ids(s, &b.policies))?,
        local: b.local.unwrap_or(old.local),
        ..old
    };
    write_token(&api, token, links).await
}

/// `PUT /v1/acl/token/:accessor/clone`: a new token (new accessor and
/// secret) with the same policies; `Description` from the body, else the
/// original's.
pub(crate) async fn token_clone(
    State(api): State<Api>,
    Path(accessor): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    enabled(&api)?;
    let body = json_body(&body, "token clone")?;
    let Some(map) = body.as_object() else {
        return Err(ApiError::bad_request(
            "token clone: the body must be a JSON object",
        ));
    };
    if let Some(other) = map.keys().find(|k| !mesh_wire::same_key(k, "Description")) {
        return Err(ApiError::bad_request(format!(
            "token clone takes only Description, not {other:?}"
        )));
    }
    let new_description = mesh_wire::field(map, "Description").and_then(Value::as_str);
    let old = api
        .state
        .read(|s| s.acl_token(&accessor).cloned())
        .ok_or_else(|| not_found(format!("ACL token {accessor}")))?;
    if old.accessor_id == mesh_types::ANONYMOUS_TOKEN_ID {
        return Err(ApiError::bad_request(
            "the anonymous token cannot be cloned",
        ));
    }
    let description = new_description.map_or_else(|| old.description.clone(), str::to_string);
    let links = api.state.read(|s| s.acl_token_links(&old.accessor_id));
    let token = AclToken {
        accessor_id: new_id(),
        secret_id: new_id(),
        description,
        create_time: now_rfc3339(),
        create_index: 0,
        modify_index: 0,
        ..old
    };
    write_token(&api, token, links).await
}

pub(crate) async fn token_get(
    State(api): State<Api>,
    Path(accessor): Path<String>,
    Extension(caller): Extension<Caller>,
) -> Result<Response, ApiError> {
    enabled(&api)?;
    let t = api
        .state
        .read(|s| s.acl_token(&accessor).cloned())
        .ok_or_else(|| not_found(format!("ACL token {accessor}")))?;
    Ok(Json(token_json(&api, &t, shows_secrets(&caller))).into_response())
}

pub(crate) async fn token_self(
    State(api): State<Api>,
    headers: HeaderMap,
    params: crate::Params,
) -> Result<Response, ApiError> {
    enabled(&api)?;
    let secret = request_secret(&headers, &params.map())
        .ok_or_else(|| ApiError::new(StatusCode::FORBIDDEN, "ACL not found: no token given"))?;
    let t = api
        .state
        .read(|s| s.acl_token_by_secret(&secret).cloned())
        .ok_or_else(|| ApiError::new(StatusCode::FORBIDDEN, "ACL not found"))?;
    Ok(Json(token_json(&api, &t, true)).into_response())
}

pub(crate) async fn token_delete(
    State(api): State<Api>,
    Path(accessor): Path<String>,
) -> Result<Response, ApiError> {
    enabled(&api)?;
    let done = api
        .apply(Command::AclTokenDelete {
            accessor_id: accessor,
        })
        .await?;
    Ok(Json(matches!(done, Written::Done) || done.as_bool()).into_response())
}

/// `GET /v1/acl/tokens`, narrowed by `?policy=`, `?role=` (IDs),
/// `?authmethod=` and `?servicename=` (a service identity's name).
pub(crate) async fn tokens(
    State(api): State<Api>,
    Extension(caller): Extension<Caller>,
    params: crate::Params,
) -> Result<Response, ApiError> {
    enabled(&api)?;
    let show = shows_secrets(&caller);
    let q = params.map();
    let want = |k: &str| q.get(k).filter(|v| !v.is_empty());
    let list: Vec<Value> = api.state.read(|s| {
        s.acl_tokens()
            .filter(|t| {
                let links = s.acl_token_links(&t.accessor_id);
                want("policy").is_none_or(|p| t.policies.contains(p))
                    && want("role").is_none_or(|r| links.roles.contains(r))
                    && want("authmethod").is_none_or(|m| links.auth_method == **m)
                    && want("servicename").is_none_or(|n| {
                        links
                            .service_identities
                            .iter()
                            .any(|i| i.service_name == **n)
                    })
            })
            .map(|t| token_json_in(s, t, show))
            .collect()
    });
    Ok(Json(list).into_response())
}

/// For client agents: what a secret may do, as the rules of its policies.
pub(crate) async fn resolve(
    State(api): State<Api>,
    headers: HeaderMap,
    params: crate::Params,
) -> Result<Response, ApiError> {
    enabled(&api)?;
    let map: HashMap<String, String> = params.map();
    let secret = request_secret(&headers, &map);
    let resolved = crate::acl_caller::resolve_local(&api, secret.as_deref()).await?;
    Ok(Json(json!({
        "AccessorID": resolved.accessor,
        "Management": resolved.management,
        "Rules": resolved.rules,
        "ExpiresUnixMs": resolved.expires_unix_ms,
    }))
    .into_response())
}
