//! `/v1/status/*` and `/v1/operator/raft/configuration`.

use axum::extract::State;
use axum::Json;
use serde::Serialize;

use crate::{Api, ApiError};

/// The leader's server RPC address, or "" when there is none.
pub(crate) async fn leader(State(api): State<Api>) -> Json<String> {
    Json(
        api.raft
            .as_ref()
            .and_then(|r| r.leader())
            .map(|(_, node)| node.rpc_addr)
            .unwrap_or_default(),
    )
}

/// Server RPC addresses of the voters.
pub(crate) async fn peers(State(api): State<Api>) -> Json<Vec<String>> {
    let Some(raft) = &api.raft else {
        return Json(Vec::new());
    };
    let (servers, _) = raft.servers();
    Json(
        servers
            .into_iter()
            .filter(|s| s.voter)
            .map(|s| s.node.rpc_addr)
            .collect(),
    )
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct RaftServer {
    #[serde(rename = "ID")]
    id: String,
    node: String,
    address: String,
    leader: bool,
    voter: bool,
    protocol_version: String,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct RaftConfiguration {
    servers: Vec<RaftServer>,
    index: u64,
}

pub(crate) async fn raft_configuration(
    State(api): State<Api>,
) -> Result<Json<RaftConfiguration>, ApiError> {
    let raft = api
        .raft
        .as_ref()
        .ok_or_else(|| ApiError::bad_request("not a server"))?;
    let (servers, index) = raft.servers();
    Ok(Json(RaftConfiguration {
        servers: servers
            .into_iter()
            .map(|s| RaftServer {
                id: s.id.to_string(),
                node: s.node.name,
                address: s.node.rpc_addr,
                leader: s.leader,
                voter: s.voter,
                protocol_version: "3".into(),
            })
            .collect(),
        index,
    }))
}
