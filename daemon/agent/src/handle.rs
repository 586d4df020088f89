//! The agent as the HTTP API sees it.

use std::sync::Arc;

use futures::future::BoxFuture;
use mesh_api::{AgentHandle, MemberView};
use mesh_gossip::{MemberStatus, Role};

use crate::build::Agent;

pub(crate) struct AgentView {
    agent: Arc<Agent>,
}

impl AgentView {
    pub(crate) fn new(agent: Arc<Agent>) -> Self {
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

    fn server_http_addr(&self) -> Option<String> {
        self.agent.server_http_addr()
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
        acl_settings(&self.agent.live.borrow().acl)
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

    fn config_status(&self) -> serde_json::Value {
        serde_json::to_value(&*self.agent.config_status.lock()).unwrap_or_default()
    }

    fn leave(&self) -> BoxFuture<'static, ()> {
        let agent = self.agent.clone();
        Box::pin(async move { agent.request_leave() })
    }
}

impl Agent {
    /// The HTTP address of a live server, from gossip tags.
    pub(crate) fn server_http_addr(&self) -> Option<String> {
        self.writes.server_http_addr()
    }
}

/// The API's view of the `acl { }` settings.
pub(crate) fn acl_settings(acl: &mesh_config::AclConfig) -> mesh_api::AclSettings {
    mesh_api::AclSettings {
        enabled: acl.enabled,
        default_allow: acl.default_policy == mesh_config::AclPolicy::Allow,
        initial_management: acl.initial_management_token.clone(),
        default_token: acl.default_token.clone(),
    }
}

impl Agent {
    /// The RPC guard: with ACLs on, a write that arrives over the server
    /// RPC port needs a token allowed to make it.
    pub(crate) fn check_proposal(
        &self,
        token: Option<&str>,
        cmd: &mesh_types::Command,
    ) -> Result<(), String> {
        let settings = acl_settings(&self.live.borrow().acl);
        if !settings.enabled {
            return Ok(());
        }
        self.state.read(|s| {
            let resolved = mesh_api::resolve_in(s, &settings, token)
                .ok_or_else(|| "ACL not found: the write's token is unknown".to_string())?;
            let authz = mesh_acl::Authorizer::from_rule_texts(
                resolved.management,
                &resolved.rules,
                settings.default_allow,
            );
            mesh_api::command_allowed(&authz, s, cmd)
        })
    }
}

/// The client for agent-to-server requests (relayed snapshots, cluster
/// state for a client's reload): one connection pool per agent, no
/// timeout, as a blocking query's own wait bounds it.
pub(crate) fn server_client() -> reqwest::Client {
    // reqwest is built with rustls and no default crypto provider: use ring.
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::new()
}
