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
        "Member": me,
        "ConfigStatus": agent.config_status(),
    }))
}

pub(crate) async fn leave(State(api): State<Api>) -> Json<bool> {
    // Answer first; the agent shuts down once the leave has propagated.
    tokio::spawn(api.agent.leave());
    Json(true)
}
