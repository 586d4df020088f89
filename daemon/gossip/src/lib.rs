//! mesh-gossip: LAN membership by SWIM gossip (foca), like Consul's Serf pool.
//!
//! This crate owns who is in the pool and in what state (alive, suspect,
//! failed, left), the metadata each member gossips (role, dc, tags), the
//! encryption of gossip traffic, and the TCP push/pull that joins nodes and
//! heals partitions. Foca is sans-IO; [`Gossip`] is the runtime around it,
//! over real sockets or the in-memory [`mem`] network used by tests.
#![forbid(unsafe_code)]

mod config;
mod coordinate;
mod encryption;
mod error;
mod events;
#[cfg(any(test, feature = "fuzzing"))]
pub mod fuzzing;
mod handle;
mod identity;
mod keyring;
pub mod mem;
mod node;
mod transport;
mod wire;

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

pub use config::{GossipConfig, Timing};
pub use encryption::{load_keyring_file, Encryption, KeyAnswer, KeyOp, NodeAnswer};
pub use error::{ForceLeaveError, GossipError, JoinFailure};
pub use events::{NewEvent, UserEvent, EVENT_BUFFER, MAX_EVENT_BYTES};
pub use handle::Gossip;
pub use keyring::{decode_base64, generate_key, DecryptError, Keyring};
pub use transport::{BoxFuture, Conn, NetTransport, Transport};

/// Whether a member is a server (raft voter) or a client agent.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Runs raft and answers RPCs.
    Server,
    /// Forwards to servers.
    Client,
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Role::Server => "server",
            Role::Client => "client",
        })
    }
}

/// A member's liveness as this node sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MemberStatus {
    /// Answering probes.
    Alive,
    /// Missed a probe; failed unless it refutes in time.
    Suspect,
    /// Declared dead by the pool.
    Failed,
    /// Left gracefully.
    Left,
}

impl fmt::Display for MemberStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            MemberStatus::Alive => "alive",
            MemberStatus::Suspect => "suspect",
            MemberStatus::Failed => "failed",
            MemberStatus::Left => "left",
        })
    }
}

/// One node of the pool, as listed by `Gossip::members`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    /// Unique node name.
    pub name: String,
    /// Gossip address (UDP and TCP).
    pub addr: SocketAddr,
    /// Liveness.
    pub status: MemberStatus,
    /// Server or client.
    pub role: Role,
    /// Datacenter.
    pub dc: String,
    /// Gossiped metadata.
    pub tags: BTreeMap<String, String>,
}
