//! `/v1/agent/*` endpoints answered by the local agent.

use axum::extract::State;
use axum::Json;
use serde_json::{json, Value};

use crate::{Api, MemberView};

/// What only the agent knows, for the `Stats` of `/v1/agent/self`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AgentStats {
    /// Services registered on this agent.
    pub services: usize,
    /// Checks registered on this agent.
    pub checks: usize,
    /// Script checks (Consul's "monitors").
    pub check_monitors: usize,
    /// TTL checks.
    pub check_ttls: usize,
    /// Whether gossip is encrypted.
    pub gossip_encrypted: bool,
    /// A server that elects itself alone (`-dev`, `bootstrap_expect = 1`).
    pub bootstrap: bool,
}

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
        "Coord": agent.coordinate(),
        "Stats": stats(&api),
        "ConfigStatus": agent.config_status(),
        "Health": health(&api),
    }))
}

/// Consul's `Stats` sections, every value a string as Consul gives them:
/// `agent`, `build`, `consul`, `raft` (servers), `runtime` and `serf_lan`.
fn stats(api: &Api) -> Value {
    let agent = &api.agent;
    let own = agent.stats();
    let members = agent.members();
    let with_status = |status: u8| members.iter().filter(|m| m.status == status).count();
    let mut consul = serde_json::Map::new();
    consul.insert("server".into(), agent.is_server().to_string().into());
    let mut out = json!({
        "agent": {
            "checks": own.checks.to_string(),
            "check_monitors": own.check_monitors.to_string(),
            "check_ttls": own.check_ttls.to_string(),
            "services": own.services.to_string(),
        },
        "build": { "version": env!("CARGO_PKG_VERSION"), "prerelease": "" },
        "runtime": runtime_stats(),
        "serf_lan": {
            "members": members.len().to_string(),
            "failed": with_status(4).to_string(),
            "left": with_status(3).to_string(),
            // mesh's gossip keeps no Lifeguard awareness score: always healthy.
            "health_score": "0",
            "encrypted": own.gossip_encrypted.to_string(),
        },
    });
    match &api.raft {
        Some(raft) => {
            let leader_addr = raft.leader().map(|(_, n)| n.rpc_addr).unwrap_or_default();
            consul.insert("leader".into(), raft.is_leader().to_string().into());
            consul.insert("leader_addr".into(), leader_addr.into());
            consul.insert("bootstrap".into(), own.bootstrap.to_string().into());
            // One datacenter: there is no WAN pool.
            consul.insert("known_datacenters".into(), "1".into());
            out["raft"] = raft_stats(raft);
        }
        None => {
            let servers = members.iter().filter(|m| {
                m.status == 1 && m.tags.get("role").map(String::as_str) == Some("consul")
            });
            consul.insert("known_servers".into(), servers.count().to_string().into());
        }
    }
    out["consul"] = Value::Object(consul);
    out
}

/// Consul's `raft` section from openraft's metrics. openraft reports no
/// commit index apart from what it applied, so `commit_index` is the
/// applied index; a follower does not time its leader's contact.
fn raft_stats(raft: &mesh_raft::RaftNode) -> Value {
    let m = raft.raft().metrics().borrow().clone();
    let leader = raft.is_leader();
    let voters: Vec<u64> = m.membership_config.membership().voter_ids().collect();
    let others = voters.iter().filter(|id| **id != raft.id()).count();
    let applied = m.last_applied.map_or(0, |l| l.index);
    json!({
        "state": format!("{:?}", m.state),
        "term": m.current_term.to_string(),
        "last_log_index": m.last_log_index.unwrap_or(0).to_string(),
        "applied_index": applied.to_string(),
        "commit_index": applied.to_string(),
        "last_snapshot_index": m.snapshot.map_or(0, |l| l.index).to_string(),
        "num_peers": others.to_string(),
        "last_contact": if leader { "0" } else { "unknown" },
    })
}

/// Consul's `runtime` section: the platform in Go's names, and in place of
/// Go's goroutines the tokio runtime's tasks and worker threads.
fn runtime_stats() -> Value {
    let os = match std::env::consts::OS {
        "macos" => "darwin",
        other => other,
    };
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        other => other,
    };
    let cpus = std::thread::available_parallelism().map_or(1, usize::from);
    let mut out = json!({
        "os": os,
        "arch": arch,
        "cpu_count": cpus.to_string(),
        "version": concat!("mesh ", env!("CARGO_PKG_VERSION")),
    });
    if let Ok(handle) = tokio::runtime::Handle::try_current() {
        let metrics = handle.metrics();
        out["tokio_tasks"] = metrics.num_alive_tasks().to_string().into();
        out["tokio_workers"] = metrics.num_workers().to_string().into();
    }
    out
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
