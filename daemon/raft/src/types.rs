use std::fmt;
use std::io::Cursor;

use mesh_types::Outcome;
use serde::{Deserialize, Serialize};

/// A server as Raft membership records it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MeshNode {
    /// Agent node name.
    pub name: String,
    /// Server RPC address (Raft and forwarding), `ip:port`.
    pub rpc_addr: String,
    /// HTTP API address, `ip:port` (empty when disabled).
    pub http_addr: String,
}

impl fmt::Display for MeshNode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.name, self.rpc_addr)
    }
}

/// An encoded [`mesh_types::Command`]; kept opaque in the log so replicas
/// decode (and may refuse) it at apply time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Proposal(#[serde(with = "serde_bytes")] pub Vec<u8>);

impl fmt::Display for Proposal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "proposal({} bytes)", self.0.len())
    }
}

openraft::declare_raft_types!(
    /// openraft configuration for mesh.
    pub TypeConfig:
        D = Proposal,
        R = Outcome,
        NodeId = u64,
        Node = MeshNode,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = Cursor<Vec<u8>>,
        AsyncRuntime = openraft::TokioRuntime,
);
