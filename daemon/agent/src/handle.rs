//! The agent as the HTTP API sees it.

use std::sync::Arc;

use futures::future::BoxFuture;
use mesh_api::{AgentHandle, MemberView};
use mesh_gossip::{MemberStatus, Role};

use crate::node::{acl_settings, Node};

pub(crate) struct AgentView {
    agent: Arc<Node>,
}

impl AgentView {
    pub(crate) fn new(agent: Arc<Node>) -> Self {
        AgentView { agent }
    }
}

impl AgentHandle for AgentView {
    fn node_name(&self) -> String {
        self.agent.config.node_name.clone()
    }

    fn datacenter(&self) -> String {
        self.agent.config.datacenter.clone()
    }

    fn node_id(&self) -> String {
        self.agent.node_id.to_string()
    }

    fn is_server(&self) -> bool {
        self.agent.config.server
    }

    fn grpc_port(&self) -> Option<u16> {
        self.agent.addrs.grpc.map(|a| a.port())
    }

    fn grpc_tls_port(&self) -> Option<u16> {
        self.agent.addrs.grpc_tls.map(|a| a.port())
    }

    fn coordinate(&self) -> Option<mesh_types::Coordinate> {
        Some(self.agent.gossip.coordinate())
    }

    fn members(&self) -> Vec<MemberView> {
        self.agent
            .gossip
            .members()
            .into_iter()
            .map(|m| {
                let mut tags = m.tags.clone();
                tags.insert(
                    "role".into(),
                    if m.role == Role::Server {
                        "consul"
                    } else {
                        "node"
                    }
                    .into(),
                );
                tags.insert("dc".into(), m.dc.clone());
                let status = match m.status {
                    MemberStatus::Alive | MemberStatus::Suspect => 1,
                    MemberStatus::Left => 3,
                    MemberStatus::Failed => 4,
                };
                MemberView {
                    name: m.name,
                    addr: m.addr.ip().to_string(),
                    port: m.addr.port(),
                    tags,
                    status,
                    state: m.status.to_string(),
                }
            })
            .collect()
    }

    fn server_base_url(&self) -> Option<String> {
        self.agent.server_base_url()
    }

    fn body_limits(&self) -> mesh_api::BodyLimits {
        let l = &self.agent.config.limits;
        mesh_api::BodyLimits {
            kv_max_value_size: l.kv_max_value_size,
            txn_max_req_len: l.txn_max_req_len,
        }
    }

    fn rpc_permit(&self) -> bool {
        self.agent.writes.permit()
    }

    fn max_blocking_queries_per_client(&self) -> u32 {
        self.agent
            .config
            .limits
            .http_max_blocking_queries_per_client
    }

    fn intention_default_allow(&self) -> bool {
        self.agent.live.borrow().acl.default_policy == mesh_config::AclPolicy::Allow
    }

    fn acl(&self) -> mesh_api::AclSettings {
        acl_settings(&self.agent.live.borrow().acl, &self.agent.config.datacenter)
    }

    fn local_service_name(&self, id: &str) -> Option<String> {
        self.agent.local.service(id).map(|s| s.name)
    }

    fn local_proxy_destination(&self, id: &str) -> Option<String> {
        let proxy = self.agent.local.service(id)?.proxy?;
        Some(proxy.destination_service_name)
    }

    fn local_check_service(&self, check_id: &str) -> Option<String> {
        self.agent.local.check_service_name(check_id)
    }

    fn metrics_text(&self) -> String {
        self.agent.snapshots.metrics_text()
    }

    fn stats(&self) -> mesh_api::AgentStats {
        let checks = self.agent.local.checks_with_tags();
        let of_type = |t: &str| checks.iter().filter(|(_, c, _)| c.check_type == t).count();
        let config = &self.agent.config;
        mesh_api::AgentStats {
            services: self.agent.local.services().len(),
            checks: checks.len(),
            check_monitors: of_type("script"),
            check_ttls: of_type("ttl"),
            gossip_encrypted: self
                .agent
                .gossip
                .encryption()
                .is_ok_and(|e| e.keyring.is_some()),
            bootstrap: config.server && config.bootstrap_expect == 1,
        }
    }

    fn config_status(&self) -> serde_json::Value {
        serde_json::to_value(self.agent.reloads.status()).unwrap_or_default()
    }

    fn server_client(&self) -> reqwest::Client {
        self.agent.server_http.clone()
    }

    fn leave(&self) -> BoxFuture<'static, ()> {
        let agent = self.agent.clone();
        Box::pin(async move { agent.request_leave() })
    }
}

/// The client for agent-to-server requests (relayed snapshots, cluster
/// state for a client's reload): one connection pool per agent, no
/// timeout, as a blocking query's own wait bounds it. With the HTTPS
/// surface's CA it verifies servers against it (chain only: servers are
/// dialed by IP) and presents this agent's certificate.
pub(crate) fn server_client(tls: Option<&Arc<mesh_tls::SurfaceTls>>) -> reqwest::Client {
    // reqwest is built with rustls and no default crypto provider: use ring.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let Some(config) = tls.and_then(mesh_tls::live_client_config) else {
        return reqwest::Client::new();
    };
    reqwest::Client::builder()
        .tls_backend_preconfigured((*config).clone())
        .build()
        .unwrap_or_else(|e| {
            tracing::warn!(error = %e, "a TLS client for servers: falling back to plain HTTP");
            reqwest::Client::new()
        })
}
