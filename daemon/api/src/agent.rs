//! `/v1/agent/*` endpoints answered by the local agent.

use axum::extract::State;
use axum::Json;
use serde_json::{json, Value};

use crate::{Api, MemberView};

pub(crate) async fn members(State(api): State<Api>) -> Json<Vec<MemberView>> {
    Json(api.agent.members())
}

pub(crate) async fn self_info(State(api): State<Api>) -> Json<Value> {
    let agent = &api.agent;
    let me = agent
        .members()
        .into_iter()
        .find(|m| m.name == agent.node_name());
    Json(json!({
        "Config": {
            "Datacenter": agent.datacenter(),
            "NodeName": agent.node_name(),
            "NodeID": agent.node_id(),
            "Server": agent.is_server(),
            "Version": env!("CARGO_PKG_VERSION"),
        },
        // Consul's field: `connect envoy` finds the xDS port here.
        "DebugConfig": {
            "GRPCPort": agent.grpc_port().map_or(-1, i64::from),
            "GRPCTLSPort": agent.grpc_tls_port().map_or(-1, i64::from),
        },
        "Member": me,
        "ConfigStatus": agent.config_status(),
        "Health": health(&api),
    }))
}

/// This agent's own health: a server whose Raft storage failed is not.
fn health(api: &Api) -> Value {
    match api.raft.as_ref().and_then(|r| r.fault()) {
        None => json!({ "Healthy": true }),
        Some(fault) => json!({
            "Healthy": false,
            "Reason": format!("raft storage failed: {fault}"),
        }),
    }
}

/// What a server whose Raft storage failed cannot answer truthfully is
/// refused; what describes the agent itself still answers.
pub(crate) fn storage_refusal(api: &Api, path: &str) -> Option<crate::ApiError> {
    let fault = api.raft.as_ref()?.fault()?;
    let about_self = matches!(
        path,
        "/v1/agent/self" | "/v1/agent/members" | "/v1/agent/leave"
    );
    (!about_self).then(|| {
        crate::ApiError::new(
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "this server's raft storage failed ({fault}); it takes no part in the cluster until restarted: send requests to another server"
            ),
        )
    })
}

/// `/v1/agent/metrics` in Prometheus' text format (what
/// `?format=prometheus` asks for on Consul; mesh has no other format).
pub(crate) async fn metrics(State(api): State<Api>) -> impl axum::response::IntoResponse {
    let body = format!(
        "# HELP mesh_api_queries_blocking Blocking queries (?index=) open on this agent's HTTP API.\n\
         # TYPE mesh_api_queries_blocking gauge\n\
         mesh_api_queries_blocking {}\n{}",
        api.parked.total(),
        api.agent.metrics_text()
    );
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        body,
    )
}

pub(crate) async fn leave(State(api): State<Api>) -> Json<bool> {
    // Answer first; the agent shuts down once the leave has propagated.
    tokio::spawn(api.agent.leave());
    Json(true)
}
