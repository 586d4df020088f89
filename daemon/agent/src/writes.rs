//! Writes through Raft: a server proposes to its own node (which forwards
//! to the leader); a client agent sends its writes to a server, within
//! `limits.rpc_rate`.

use mesh_gossip::{Gossip, Role};
use mesh_raft::{ProposeError, RaftNode};
use mesh_types::{Command, Outcome};

use crate::tags;

/// Why one of this agent's own writes did not reach the log.
#[derive(Debug, thiserror::Error)]
pub(crate) enum WriteError {
    /// A client agent knows no alive server (gossip has none yet).
    #[error("no known servers")]
    NoServer,
    #[error(transparent)]
    Propose(#[from] ProposeError),
}

/// The one way this agent's own writes reach the log.
pub(crate) struct Writes {
    raft: Option<RaftNode>,
    network: mesh_raft::Network,
    limiter: Option<governor::DefaultDirectRateLimiter>,
    gossip: Gossip,
    /// This agent can reach servers' HTTPS (it has their CA): it prefers it.
    https_to_servers: bool,
}

impl Writes {
    pub(crate) fn new(
        raft: Option<RaftNode>,
        network: mesh_raft::Network,
        limiter: Option<governor::DefaultDirectRateLimiter>,
        gossip: Gossip,
        https_to_servers: bool,
    ) -> Self {
        Writes {
            raft,
            network,
            limiter,
            gossip,
            https_to_servers,
        }
    }

    /// The tag `tag` of every alive server, from gossip.
    pub(crate) fn server_tags(&self, tag: &str) -> Vec<String> {
        self.gossip
            .members()
            .into_iter()
            .filter(|m| m.role == Role::Server && m.status == mesh_gossip::MemberStatus::Alive)
            .filter_map(|m| m.tags.get(tag).cloned())
            .collect()
    }

    /// Server RPC addresses of alive servers.
    pub(crate) fn server_rpc_addrs(&self) -> Vec<String> {
        self.server_tags(tags::RPC)
    }

    /// The API base URL of an alive server: `https://` when this agent
    /// has the servers' CA and the server serves HTTPS, else `http://`.
    pub(crate) fn server_base_url(&self) -> Option<String> {
        if self.https_to_servers {
            if let Some(addr) = self.server_tags(tags::HTTPS).into_iter().next() {
                return Some(format!("https://{addr}"));
            }
        }
        let addr = self.server_tags(tags::HTTP).into_iter().next()?;
        Some(format!("http://{addr}"))
    }

    /// Whether a write relayed for an HTTP caller fits `limits.rpc_rate` now.
    pub(crate) fn permit(&self) -> bool {
        self.limiter.as_ref().is_none_or(|l| l.check().is_ok())
    }

    /// Proposes `cmd` and returns its outcome once applied.
    pub(crate) async fn propose(&self, cmd: &Command) -> Result<Outcome, WriteError> {
        if let Some(raft) = &self.raft {
            return Ok(raft.propose(cmd).await?.1);
        }
        let server = self
            .server_rpc_addrs()
            .into_iter()
            .next()
            .ok_or(WriteError::NoServer)?;
        // The agent's own writes wait for room under limits.rpc_rate.
        if let Some(limiter) = &self.limiter {
            limiter.until_ready().await;
        }
        Ok(mesh_raft::propose_via_server(&self.network, &server, cmd)
            .await?
            .1)
    }
}
