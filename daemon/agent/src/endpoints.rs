//! `/v1/agent/service/*`, `/v1/agent/check/*` and `/v1/agent/join`: answered
//! from this agent's local state.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::Path;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use axum::{Extension, Json, Router};
use mesh_api::{
    owner, takeover, AgentToken, Api, ApiError, CheckRegistration, Decoded, Params,
    ServiceRegistration,
};
use mesh_types::CheckStatus;
use mesh_wire::{check_json, object, service_json};
use serde_json::Value;

use crate::node::Node;

type A = Extension<Arc<Node>>;

/// The agent's own routes, merged into the API router.
pub(crate) fn routes(agent: Arc<Node>) -> Router<Api> {
    Router::new()
        .route("/v1/agent/service/register", put(register_service))
        .route("/v1/agent/service/deregister/{id}", put(deregister_service))
        .route("/v1/agent/services", get(services))
        .route(
            "/v1/agent/health/service/id/{id}",
            get(crate::local_health::by_id),
        )
        .route(
            "/v1/agent/health/service/name/{name}",
            get(crate::local_health::by_name),
        )
        .route("/v1/agent/service/{id}", get(service))
        .route("/v1/agent/check/register", put(register_check))
        .route("/v1/agent/check/deregister/{id}", put(deregister_check))
        .route("/v1/agent/check/pass/{id}", put(pass))
        .route("/v1/agent/check/warn/{id}", put(warn))
        .route("/v1/agent/check/fail/{id}", put(fail))
        .route("/v1/agent/check/update/{id}", put(update))
        .route("/v1/agent/checks", get(checks))
        .route("/v1/agent/join/{addr}", put(join))
        .route("/v1/agent/force-leave/{node}", put(force_leave))
        .route("/v1/agent/maintenance", put(node_maintenance))
        .route(
            "/v1/agent/service/maintenance/{id}",
            put(service_maintenance),
        )
        .route("/v1/agent/reload", put(reload))
        .route("/v1/event/fire/{name}", put(crate::events::fire))
        .route("/v1/event/list", get(crate::events::list))
        .route("/v1/agent/token/{kind}", put(set_token))
        .route("/v1/agent/config/plan", axum::routing::post(plan))
        .route(
            "/v1/agent/connect/proxy/{id}",
            get(crate::proxy_snapshot::handler),
        )
        .route("/v1/agent/connect/proxy/{id}/xds", get(xds_status))
        .route(
            "/v1/operator/autopilot/health",
            get(crate::operator::autopilot_health),
        )
        .route(
            "/v1/operator/raft/peer",
            axum::routing::delete(crate::operator::remove_peer),
        )
        .route(
            "/v1/operator/raft/transfer-leader",
            axum::routing::post(crate::operator::transfer_leader),
        )
        .route(
            "/v1/operator/keyring",
            get(crate::keyring::keyring)
                .post(crate::keyring::keyring)
                .put(crate::keyring::keyring)
                .delete(crate::keyring::keyring),
        )
        .layer(Extension(agent))
}

fn body_json(body: &Bytes, what: &str) -> Result<Value, ApiError> {
    Ok(mesh_wire::decode_json(body, what)?)
}

/// Wait briefly for anti-entropy to push a change, so a read right after a
/// registration usually sees it (Consul syncs in the background too).
async fn settle(agent: &Node) {
    let target = agent.local.version();
    let mut rx = agent.synced.subscribe();
    let _ = tokio::time::timeout(Duration::from_secs(2), rx.wait_for(|v| *v >= target)).await;
}

/// A service another owner registered (a mesh.d file, say) is theirs:
/// 409 unless the caller asks to take it over, as catalog writes do.
fn check_service_owner(
    agent: &Node,
    id: &str,
    caller: &str,
    params: &Params,
) -> Result<(), ApiError> {
    match agent.local.service_owner(id) {
        Some(owner) if owner != caller && !takeover(&params.map()) => Err(ApiError::new(
            StatusCode::CONFLICT,
            format!(
                "service {id:?} is managed by {owner}; change it there, or retry with ?takeover=true to take it over"
            ),
        )),
        _ => Ok(()),
    }
}

async fn register_service(
    Extension(agent): A,
    headers: HeaderMap,
    params: Params,
    Decoded(reg): Decoded<ServiceRegistration>,
) -> Result<Response, ApiError> {
    let caller = owner(&headers);
    // Keys are folded (lowercase) by the decoder; the ID defaults to the name.
    let id = reg.definition["id"]
        .as_str()
        .filter(|id| !id.is_empty())
        .or_else(|| reg.definition["name"].as_str())
        .unwrap_or_default()
        .to_string();
    check_service_owner(&agent, &id, &caller, &params)?;
    agent.local.add_service(reg.definition, &caller)?;
    settle(&agent).await;
    Ok(().into_response())
}

async fn deregister_service(
    Extension(agent): A,
    headers: HeaderMap,
    params: Params,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    check_service_owner(&agent, &id, &owner(&headers), &params)?;
    if !agent.local.remove_service(&id) {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("Unknown service ID {id:?}"),
        ));
    }
    settle(&agent).await;
    Ok(().into_response())
}

async fn services(Extension(agent): A) -> Json<Value> {
    let services = agent.local.services();
    Json(object(
        services.iter().map(|(id, s)| (id.clone(), service_json(s))),
    ))
}

async fn service(Extension(agent): A, Path(id): Path<String>) -> Result<Json<Value>, ApiError> {
    agent
        .local
        .service(&id)
        .map(|s| Json(service_json(&s)))
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, format!("unknown service ID: {id}")))
}

async fn register_check(
    Extension(agent): A,
    Decoded(reg): Decoded<CheckRegistration>,
) -> Result<Response, ApiError> {
    agent.local.add_check(reg.definition)?;
    settle(&agent).await;
    Ok(().into_response())
}

async fn deregister_check(
    Extension(agent): A,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    if !agent.local.remove_check(&id) {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("Unknown check ID {id:?}"),
        ));
    }
    settle(&agent).await;
    Ok(().into_response())
}

async fn ttl(
    agent: &Node,
    id: &str,
    status: CheckStatus,
    note: String,
) -> Result<Response, ApiError> {
    agent.local.ttl_update(id, status, note)?;
    Ok(().into_response())
}

async fn pass(
    Extension(agent): A,
    Path(id): Path<String>,
    params: Params,
) -> Result<Response, ApiError> {
    ttl(
        &agent,
        &id,
        CheckStatus::Passing,
        params.map().remove("note").unwrap_or_default(),
    )
    .await
}

async fn warn(
    Extension(agent): A,
    Path(id): Path<String>,
    params: Params,
) -> Result<Response, ApiError> {
    ttl(
        &agent,
        &id,
        CheckStatus::Warning,
        params.map().remove("note").unwrap_or_default(),
    )
    .await
}

async fn fail(
    Extension(agent): A,
    Path(id): Path<String>,
    params: Params,
) -> Result<Response, ApiError> {
    ttl(
        &agent,
        &id,
        CheckStatus::Critical,
        params.map().remove("note").unwrap_or_default(),
    )
    .await
}

async fn update(
    Extension(agent): A,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let v = mesh_wire::fold_keys(body_json(&body, "check update")?);
    let status = v["status"].as_str().unwrap_or("");
    let status = CheckStatus::parse(status).ok_or_else(|| {
        ApiError::bad_request(format!(
            "Invalid Status {status:?}: use passing, warning or critical"
        ))
    })?;
    let output = v["output"].as_str().unwrap_or("").to_string();
    ttl(&agent, &id, status, output).await
}

async fn checks(Extension(agent): A) -> Json<Value> {
    let node = agent.config.node_name.clone();
    let checks = agent.local.checks_with_tags();
    Json(object(checks.iter().map(|(id, check, tags)| {
        (id.clone(), check_json(&node, check, tags))
    })))
}

async fn join(Extension(agent): A, Path(addr): Path<String>) -> Result<Response, ApiError> {
    let target = if addr.contains(':') {
        addr.clone()
    } else {
        format!("{addr}:8301")
    };
    let addrs: Vec<std::net::SocketAddr> = tokio::net::lookup_host(&target)
        .await
        .map_err(|e| ApiError::bad_request(format!("cannot resolve {addr:?}: {e}")))?
        .collect();
    agent
        .gossip
        .join(&addrs)
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    Ok(().into_response())
}

/// `PUT /v1/agent/force-leave/<node>[?prune]`: a failed member becomes
/// left on every member (so the leader removes it from the catalog and,
/// for a server, from Raft); `prune` also drops it from the member list.
async fn force_leave(
    Extension(agent): A,
    Path(node): Path<String>,
    params: Params,
) -> Result<Response, ApiError> {
    let prune = params.map().contains_key("prune");
    match agent.gossip.force_leave(&node, prune).await {
        Ok(()) => Ok(().into_response()),
        Err(mesh_gossip::GossipError::ForceLeave(e)) => {
            let status = match e {
                mesh_gossip::ForceLeaveError::Unknown(_) => StatusCode::NOT_FOUND,
                _ => StatusCode::BAD_REQUEST,
            };
            Err(ApiError::new(status, e.to_string()))
        }
        Err(e) => Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            e.to_string(),
        )),
    }
}

/// Reads `?enable=true|false&reason=` (Consul requires `enable`).
fn maintenance_params(params: &Params) -> Result<(bool, String), ApiError> {
    let map = params.map();
    let enable = match map.get("enable").map(String::as_str) {
        Some("true") => true,
        Some("false") => false,
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "Invalid value for \"enable\": {other:?} (use true or false)"
            )))
        }
        None => return Err(ApiError::bad_request("Missing value for \"enable\"")),
    };
    let reason = map.get("reason").cloned().unwrap_or_default();
    if reason.len() > MAX_MAINTENANCE_REASON_BYTES {
        return Err(ApiError::bad_request(format!(
            "reason is {} bytes; the limit is {MAX_MAINTENANCE_REASON_BYTES} (MAX_MAINTENANCE_REASON_BYTES)",
            reason.len()
        )));
    }
    Ok((enable, reason))
}

/// Longest maintenance reason kept (it lands in every health answer).
const MAX_MAINTENANCE_REASON_BYTES: usize = 1024;

/// `PUT /v1/agent/maintenance?enable=&reason=`.
async fn node_maintenance(Extension(agent): A, params: Params) -> Result<Response, ApiError> {
    let (enable, reason) = maintenance_params(&params)?;
    if enable {
        agent.local.enable_maintenance(None, &reason)?;
    } else {
        agent.local.disable_maintenance(None)?;
    }
    settle(&agent).await;
    Ok(().into_response())
}

/// `PUT /v1/agent/service/maintenance/<id>?enable=&reason=`.
async fn service_maintenance(
    Extension(agent): A,
    Path(id): Path<String>,
    params: Params,
) -> Result<Response, ApiError> {
    let (enable, reason) = maintenance_params(&params)?;
    if enable {
        agent.local.enable_maintenance(Some(&id), &reason)?;
    } else {
        agent.local.disable_maintenance(Some(&id))?;
    }
    settle(&agent).await;
    Ok(().into_response())
}

async fn reload(Extension(agent): A) -> Response {
    // Also re-push everything to the catalog, as Consul's reload does.
    agent.local.mark_all_dirty();
    match agent.reloads.request("API").await {
        Some(status) if status.ok => Json(status).into_response(),
        Some(status) => (
            StatusCode::BAD_REQUEST,
            format!(
                "config reload refused, the last good config stays in force:\n{}\n",
                status.errors.join("\n")
            ),
        )
            .into_response(),
        None => (StatusCode::SERVICE_UNAVAILABLE, "agent is shutting down\n").into_response(),
    }
}

/// `PUT /v1/agent/token/<kind>` with `{"Token": "<SecretID>"}`: sets one of
/// this agent's ACL tokens in memory, as Consul does (401 with ACLs off,
/// 404 for a kind Consul does not know). `default` and `agent` apply at
/// once; the other kinds are kept with no effect.
async fn set_token(
    Extension(agent): A,
    Path(kind): Path<String>,
    body: Result<Decoded<AgentToken>, ApiError>,
) -> Result<Response, ApiError> {
    if !agent.live.borrow().acl.enabled {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "ACL support disabled",
        ));
    }
    let Decoded(AgentToken { token }) = body?;
    let parsed = crate::reload::TokenKind::parse(&kind).ok_or_else(|| {
        ApiError::new(StatusCode::NOT_FOUND, format!("Token {kind:?} is unknown"))
    })?;
    agent.reloads.set_token(parsed, token);
    if parsed.applies() {
        // What anti-entropy was refused may now go through, as in Consul.
        agent.local.mark_all_dirty();
    }
    tracing::info!(token = %kind, applies = parsed.applies(), "updated the agent's ACL token");
    Ok(().into_response())
}

/// `POST /v1/agent/config/plan` with `{"Files": [{"Path", "Content"}]}`: what
/// a reload with these files would change, without changing anything.
async fn plan(Extension(agent): A, body: Bytes) -> Result<Json<Value>, ApiError> {
    let v = body_json(&body, "plan")?;
    let files = v["Files"]
        .as_array()
        .ok_or_else(|| ApiError::bad_request("plan: Files must be a list of {Path, Content}"))?;
    let mut decls = Vec::new();
    let mut errors = Vec::new();
    for f in files {
        let path = std::path::PathBuf::from(f["Path"].as_str().unwrap_or_default());
        let content = f["Content"].as_str().unwrap_or_default();
        let Some(format) = mesh_config::Format::from_path(&path) else {
            continue;
        };
        match mesh_config::parse_resources(content, format, &path) {
            Ok(d) => decls.extend(d),
            Err(e) => errors.push(e.to_string()),
        }
    }
    if errors.is_empty() {
        match crate::reconcile::plan_now(&agent.reconciler, &decls).await {
            Ok(plan) => {
                return Ok(Json(
                    serde_json::json!({"Changes": plan.changes, "Errors": []}),
                ))
            }
            Err(e) => errors = e.errors(),
        }
    }
    Ok(Json(serde_json::json!({"Changes": [], "Errors": errors})))
}

/// What a proxy's Envoy was last sent over xDS, per resource type, and
/// what it answered: the accepted version, or its NACK with Envoy's detail.
async fn xds_status(Extension(agent): A, Path(id): Path<String>) -> Result<Response, ApiError> {
    match agent.xds.status(&id) {
        Some(status) => Ok(Json(status).into_response()),
        None => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("no xDS stream has served proxy {id:?} on this agent"),
        )),
    }
}
