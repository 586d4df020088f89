//! `/v1/status/*`, `/v1/operator/raft/configuration` and
//! `/v1/operator/usage`.

use std::collections::{BTreeMap, BTreeSet};

use axum::extract::State;
use axum::response::Response;
use axum::Json;
use mesh_state::Table;
use serde::Serialize;
use serde_json::{json, Value};

use crate::catalog::json_read;
use crate::params::Params;
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

/// The kinds `/v1/operator/usage` counts under `ConnectServiceInstances`:
/// Consul's set, each shown even at 0.
const CONNECT_KINDS: [&str; 6] = [
    "api-gateway",
    "connect-native",
    "connect-proxy",
    "ingress-gateway",
    "mesh-gateway",
    "terminating-gateway",
];

/// Consul's own service, which Consul leaves out of the billable count.
const CONSUL_SERVICE: &str = "consul";

/// `GET /v1/operator/usage`: this datacenter's service and node counts, in
/// Consul's shape; a blocking read.
pub(crate) async fn usage(State(api): State<Api>, params: Params) -> Result<Response, ApiError> {
    let datacenter = api.agent.datacenter();
    json_read(&api, &params, Table::Services, |s| {
        let index = s.catalog_index().max(1);
        let mut by_datacenter = serde_json::Map::new();
        by_datacenter.insert(datacenter.clone(), usage_of(s));
        (json!({ "Usage": by_datacenter, "Index": index }), index)
    })
    .await
}

/// One datacenter's counts: service names, instances (by Connect kind, and
/// the billable ones: typical instances other than Consul's own) and nodes.
fn usage_of(s: &mesh_state::State) -> Value {
    let mut names = BTreeSet::new();
    let mut instances = 0u64;
    let mut billable = 0u64;
    let mut connect: BTreeMap<&str, u64> = CONNECT_KINDS.iter().map(|k| (*k, 0)).collect();
    for (_, svc) in s.services() {
        names.insert(svc.name.as_str());
        instances += 1;
        let kind = match svc.kind.as_str() {
            "" if svc.connect_native => "connect-native",
            other => other,
        };
        if let Some(n) = connect.get_mut(kind) {
            *n += 1;
        }
        if svc.kind.is_empty() && svc.name != CONSUL_SERVICE {
            billable += 1;
        }
    }
    json!({
        "Services": names.len(),
        "ServiceInstances": instances,
        "ConnectServiceInstances": connect,
        "BillableServiceInstances": billable,
        "Nodes": s.nodes().count(),
    })
}

#[cfg(test)]
mod tests {
    use mesh_state::StateStore;
    use mesh_types::{Command, Node, Proxy, Service};

    use super::*;

    fn register(store: &StateStore, index: u64, node: &str, service: Service) {
        let cmd = Command::Register {
            node: Node {
                name: node.into(),
                address: "10.0.0.1".into(),
                ..Default::default()
            },
            skip_node_update: false,
            service: Some(service),
            checks: Vec::new(),
            takeover: false,
        };
        assert_eq!(store.apply_command(index, cmd), mesh_types::Outcome::Done);
    }

    fn service(id: &str, name: &str, kind: &str) -> Service {
        Service {
            id: id.into(),
            name: name.into(),
            kind: kind.into(),
            owner: "api".into(),
            ..Default::default()
        }
    }

    #[test]
    fn usage_counts_names_instances_kinds_and_billable_ones() {
        let store = StateStore::new();
        assert_eq!(
            store.read(usage_of),
            json!({
                "Services": 0,
                "ServiceInstances": 0,
                "ConnectServiceInstances": {
                    "api-gateway": 0, "connect-native": 0, "connect-proxy": 0,
                    "ingress-gateway": 0, "mesh-gateway": 0, "terminating-gateway": 0,
                },
                "BillableServiceInstances": 0,
                "Nodes": 0,
            })
        );
        register(&store, 1, "n1", service("web1", "web", ""));
        register(&store, 2, "n2", service("web2", "web", ""));
        let mut proxy = service("web1-sidecar-proxy", "web-sidecar-proxy", "connect-proxy");
        proxy.proxy = Some(Proxy {
            destination_service_name: "web".into(),
            ..Default::default()
        });
        register(&store, 3, "n1", proxy);
        let mut native = service("pay", "pay", "");
        native.connect_native = true;
        register(&store, 4, "n2", native);
        register(&store, 5, "n3", service("consul", "consul", ""));
        register(&store, 6, "n3", service("ing", "ing", "ingress-gateway"));
        let usage = store.read(usage_of);
        assert_eq!(usage["Services"], 5, "{usage}");
        assert_eq!(usage["ServiceInstances"], 6, "{usage}");
        assert_eq!(usage["Nodes"], 3, "{usage}");
        // web twice and pay: not the proxy, the gateway or Consul's own.
        assert_eq!(usage["BillableServiceInstances"], 3, "{usage}");
        let connect = &usage["ConnectServiceInstances"];
        assert_eq!(connect["connect-proxy"], 1, "{usage}");
        assert_eq!(connect["connect-native"], 1, "{usage}");
        assert_eq!(connect["ingress-gateway"], 1, "{usage}");
        assert_eq!(connect["terminating-gateway"], 0, "{usage}");
    }
}
