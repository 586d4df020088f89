//! Operator routes answered by the Raft leader: `/v1/operator/autopilot/health`,
//! `DELETE /v1/operator/raft/peer` (`mesh operator raft remove-peer`) and
//! `POST /v1/operator/raft/transfer-leader`.
//! Any other agent passes the request on: a follower to the leader, a
//! client agent to a server.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Query, Request};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use mesh_api::ApiError;

use crate::node::Node;

type A = Extension<Arc<Node>>;

/// Where a leader-only request goes from this agent: `None` to answer here.
fn leader_url(agent: &Node) -> Result<Option<String>, ApiError> {
    let unavailable = |m: &str| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, m.to_string());
    match &agent.raft {
        Some(raft) if raft.is_leader() => Ok(None),
        Some(raft) => match raft.leader() {
            Some((_, node)) if !node.http_addr.is_empty() => {
                Ok(Some(format!("http://{}", node.http_addr)))
            }
            _ => Err(unavailable("no Raft leader is known")),
        },
        None => agent
            .server_base_url()
            .map(Some)
            .ok_or_else(|| unavailable("no known servers")),
    }
}

/// Sends `req` on to `base` with the caller's token, and passes back the answer.
async fn pass_on(agent: &Node, base: &str, req: Request) -> Result<Response, ApiError> {
    let path = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_default();
    let mut out = agent
        .server_http
        .request(req.method().clone(), format!("{base}{path}"));
    if let Some(token) = req.headers().get("x-consul-token") {
        out = out.header("x-consul-token", token);
    }
    let resp = out.send().await.map_err(|e| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("asking {base}: {e}"),
        )
    })?;
    let status = StatusCode::from_u16(resp.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
    let body = resp.bytes().await.unwrap_or_default();
    Ok((status, [("content-type", "application/json")], body).into_response())
}

pub(crate) async fn autopilot_health(
    Extension(agent): A,
    req: Request,
) -> Result<Response, ApiError> {
    if let Some(base) = leader_url(&agent)? {
        return pass_on(&agent, &base, req).await;
    }
    let autopilot = agent.autopilot.as_ref().ok_or_else(|| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "autopilot runs on servers only",
        )
    })?;
    let health = autopilot.health();
    // Consul answers 429 when the cluster is unhealthy, for load balancers.
    let status = if health["Healthy"] == true {
        StatusCode::OK
    } else {
        StatusCode::TOO_MANY_REQUESTS
    };
    Ok((status, Json(health)).into_response())
}

pub(crate) async fn remove_peer(
    Extension(agent): A,
    Query(q): Query<HashMap<String, String>>,
    req: Request,
) -> Result<Response, ApiError> {
    let bad = |m: String| ApiError::new(StatusCode::BAD_REQUEST, m);
    let target = match (q.get("id"), q.get("address")) {
        (Some(id), None) => Target::Id(id.clone()),
        (None, Some(address)) => Target::Address(address.clone()),
        _ => return Err(bad("give exactly one of ?id= or ?address=".into())),
    };
    if let Some(base) = leader_url(&agent)? {
        return pass_on(&agent, &base, req).await;
    }
    let raft = agent.raft.as_ref().expect("the leader is a server");
    let (servers, _) = raft.servers();
    let found = servers.iter().find(|s| match &target {
        Target::Id(id) => s.id.to_string() == *id,
        Target::Address(a) => s.node.rpc_addr == *a,
    });
    let Some(server) = found else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("{target} is not in the Raft configuration"),
        ));
    };
    if server.leader {
        return Err(bad(format!(
            "{target} is the leader; removing it here would leave the cluster without one"
        )));
    }
    tracing::info!(server = %server.node, "operator: removing a server from raft");
    raft.remove_server(server.id)
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e))?;
    Ok(StatusCode::OK.into_response())
}

pub(crate) async fn transfer_leader(
    Extension(agent): A,
    Query(q): Query<HashMap<String, String>>,
    req: Request,
) -> Result<Response, ApiError> {
    let to = match q.get("id").filter(|id| !id.is_empty()) {
        None => None,
        Some(id) => Some(id.parse::<u64>().map_err(|_| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                format!("?id={id:?} is not a server ID (mesh operator raft list-peers shows them)"),
            )
        })?),
    };
    if let Some(base) = leader_url(&agent)? {
        return pass_on(&agent, &base, req).await;
    }
    let raft = agent.raft.as_ref().expect("the leader is a server");
    tracing::info!(?to, "operator: handing over raft leadership");
    match raft.transfer_leadership(to).await {
        Ok(id) => {
            tracing::info!(to = id, "operator: raft leadership handed over");
            Ok(Json(serde_json::json!({ "Success": true, "ID": id.to_string() })).into_response())
        }
        Err(e) => {
            use mesh_raft::TransferError as E;
            let status = match e {
                E::NotAVoter(_) => StatusCode::NOT_FOUND,
                E::AlreadyLeader(_) | E::NoOtherVoter => StatusCode::BAD_REQUEST,
                E::Busy => StatusCode::CONFLICT,
                E::NotLeader | E::Target(_) | E::Timeout(_) => StatusCode::SERVICE_UNAVAILABLE,
            };
            Err(ApiError::new(status, e.to_string()))
        }
    }
}

enum Target {
    Id(String),
    Address(String),
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::Id(id) => write!(f, "server ID {id:?}"),
            Target::Address(a) => write!(f, "server address {a:?}"),
        }
    }
}
