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

/// `/v1/agent/metrics`: Consul's JSON (Gauges, Counters, Samples), or
/// Prometheus' text with `?format=prometheus`.
pub(crate) async fn metrics(
    State(api): State<Api>,
    axum::extract::Query(q): axum::extract::Query<std::collections::HashMap<String, String>>,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let own = format!(
        "# HELP mesh_api_queries_blocking Blocking queries (?index=) open on this agent's HTTP API.\n\
         # TYPE mesh_api_queries_blocking gauge\n\
         mesh_api_queries_blocking {}\n{}",
        api.parked.total(),
        api.agent.metrics_text()
    );
    match q.get("format").map(String::as_str) {
        Some("prometheus") => (
            [(
                axum::http::header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            )],
            format!("{}{own}", mesh_telemetry::prometheus_text()),
        )
            .into_response(),
        None | Some("json") | Some("") => Json(mesh_telemetry::consul_json(&own)).into_response(),
        Some(other) => crate::ApiError::new(
            axum::http::StatusCode::BAD_REQUEST,
            format!("format={other:?}: use prometheus, or leave it out for JSON"),
        )
        .into_response(),
    }
}

pub(crate) async fn leave(State(api): State<Api>) -> Json<bool> {
    // Answer first; the agent shuts down once the leave has propagated.
    tokio::spawn(api.agent.leave());
    Json(true)
}

/// Most `/v1/agent/monitor` streams open at once on one agent.
pub const MAX_MONITORS: usize = 32;

/// `/v1/agent/monitor?loglevel=LEVEL[&logjson]`: this agent's log lines
/// from now on, streamed until the caller hangs up (as Consul's).
pub(crate) async fn monitor(
    axum::extract::Query(q): axum::extract::Query<std::collections::HashMap<String, String>>,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    use mesh_telemetry::monitor;
    let name = q.get("loglevel").map_or("info", String::as_str);
    let Some(level) = monitor::level_of(name) else {
        return crate::ApiError::new(
            axum::http::StatusCode::BAD_REQUEST,
            format!("loglevel={name:?}: use trace, debug, info, warn or error"),
        )
        .into_response();
    };
    if monitor::watchers() >= MAX_MONITORS {
        return crate::ApiError::new(
            axum::http::StatusCode::TOO_MANY_REQUESTS,
            format!(
                "{MAX_MONITORS} monitors are streaming from this agent (MAX_MONITORS); try later"
            ),
        )
        .into_response();
    }
    let json = q.contains_key("logjson");
    let watch = monitor::watch(level);
    let stream = futures::stream::unfold(watch, move |mut w| async move {
        loop {
            match w.rx.recv().await {
                Ok(line) if line.level <= w.level => {
                    let text = if json {
                        serde_json::json!({"@level": line.level, "@message": line.text}).to_string()
                    } else {
                        line.text
                    };
                    return Some((Ok::<_, std::convert::Infallible>(format!("{text}\n")), w));
                }
                Ok(_) => continue,
                Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                    let note = format!("[monitor: {n} lines dropped: this reader was too slow]\n");
                    return Some((Ok(note), w));
                }
                Err(_) => return None,
            }
        }
    });
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; charset=utf-8",
        )],
        axum::body::Body::from_stream(stream),
    )
        .into_response()
}
