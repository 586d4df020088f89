//! The running agent as its HTTP endpoints see it: the components they
//! call into, and the addresses the agent listens on. Built by `build.rs`;
//! nothing here starts a task.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use mesh_config::{LiveConfig, RuntimeConfig};
use mesh_gossip::Gossip;
use mesh_raft::{MeshNode, RaftNode};
use mesh_state::StateStore;
use tokio::sync::watch;
use uuid::Uuid;

use crate::connect_ca::ConnectCa;
use crate::local::LocalState;
use crate::reconcile::Reconciler;
use crate::reload::Reloads;
use crate::snapshot_hub::SnapshotHub;
use crate::stop::Stop;
use crate::writes::Writes;

/// Where the agent listens, after binding (port 0 resolved).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Addrs {
    pub http: Option<SocketAddr>,
    pub https: Option<SocketAddr>,
    /// The advertised server RPC address (servers).
    pub rpc: Option<SocketAddr>,
    pub dns: Option<SocketAddr>,
    /// xDS (ADS) for Envoy.
    pub grpc: Option<SocketAddr>,
    /// xDS over TLS (`ports.grpc_tls`).
    pub grpc_tls: Option<SocketAddr>,
}

pub(crate) struct Node {
    /// The settings the agent started with; live ones are in `live`.
    pub config: RuntimeConfig,
    pub node_id: Uuid,
    pub addrs: Addrs,
    pub state: Arc<StateStore>,
    /// This server's Raft node; client agents have none.
    pub raft: Option<RaftNode>,
    pub gossip: Gossip,
    /// Which user events were meant for this agent, decided when each
    /// arrived (`events.rs`).
    pub event_intake: crate::events::Intake,
    /// Services and checks this agent is authoritative for.
    pub local: Arc<LocalState>,
    /// Counts completed anti-entropy passes.
    pub synced: Arc<watch::Sender<u64>>,
    pub writes: Arc<Writes>,
    pub ca: Arc<ConnectCa>,
    pub snapshots: Arc<SnapshotHub>,
    pub reconciler: Reconciler,
    pub reloads: Arc<Reloads>,
    /// What each Envoy's xDS streams were sent and what it said (ACK/NACK).
    pub xds: Arc<mesh_xds::Streams>,
    /// The settings reloads change in place.
    pub live: watch::Receiver<Arc<LiveConfig>>,
    pub shutdown: watch::Sender<Stop>,
    /// The HTTP client for calls to servers (TLS per `tls.https`).
    pub server_http: reqwest::Client,
    /// Servers only: server health and dead-server cleanup on the leader.
    pub autopilot: Option<Arc<crate::autopilot::Autopilot>>,
}

impl Node {
    /// This server's Raft membership entry.
    pub(crate) fn mesh_node(&self) -> Option<MeshNode> {
        Some(MeshNode {
            name: self.config.node_name.clone(),
            rpc_addr: self.addrs.rpc?.to_string(),
            http_addr: self.addrs.http.map(|a| a.to_string()).unwrap_or_default(),
        })
    }

    /// The API base URL of a live server, from gossip tags.
    pub(crate) fn server_base_url(&self) -> Option<String> {
        self.writes.server_base_url()
    }

    /// Ask the agent to leave and stop.
    pub(crate) fn request_leave(&self) {
        let _ = self.shutdown.send(Stop::Leave);
    }

    /// Graceful leave: a leader hands its seat back first, then gossip says goodbye.
    pub(crate) async fn leave(&self) {
        tracing::info!("leaving the cluster");
        if let Some(raft) = &self.raft {
            if raft.is_leader() {
                if let Err(e) = raft.remove_server(raft.id()).await {
                    tracing::warn!(error = %e, "removing self from raft configuration");
                }
            }
        }
        if let Err(e) = self.gossip.leave(Duration::from_secs(5)).await {
            tracing::warn!(error = %e, "gossip leave");
        }
    }

    /// The RPC guard: with ACLs on, a write that arrives over the server
    /// RPC port needs a token allowed to make it.
    pub(crate) fn check_proposal(
        &self,
        token: Option<&str>,
        cmd: &mesh_types::Command,
    ) -> Result<(), String> {
        let settings = acl_settings(&self.live.borrow().acl, &self.config.datacenter);
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

/// The API's view of the `acl { }` settings.
pub(crate) fn acl_settings(
    acl: &mesh_config::AclConfig,
    datacenter: &str,
) -> mesh_api::AclSettings {
    mesh_api::AclSettings {
        datacenter: datacenter.to_string(),
        enabled: acl.enabled,
        default_allow: acl.default_policy == mesh_config::AclPolicy::Allow,
        initial_management: acl.initial_management_token.clone(),
        default_token: acl.default_token.clone(),
    }
}
