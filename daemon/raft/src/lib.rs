//! Raft for mesh servers: the openraft type configuration, Raft RPC over
//! tonic, and [`RaftNode`], which proposes commands (forwarding to the
//! leader) and serves read barriers for default and consistent reads.
//! Generic over storage; `mesh-store` provides the rocksdb implementation.

#![forbid(unsafe_code)]

mod auto_encrypt;
mod codec;
mod network;
mod node;
mod service;
mod tls;
mod types;

pub use auto_encrypt::{AutoEncryptReply, AutoEncryptRequest, AutoEncryptSigner};
pub use network::Network;
pub use node::{
    propose_via_server, with_caller_token, LeaderAnswer, ProposeError, ProposeGuard, RaftNode,
    RaftTiming, ReadError, ReadMode, ServerInfo, TransferError,
};
pub use service::RaftService;
pub use tls::{RpcPeer, RpcTls, PROOF_TIMEOUT};
pub use types::{MeshNode, Proposal, TypeConfig};

/// openraft's types specialised to mesh.
pub mod raft_types {
    use crate::TypeConfig;
    pub type LogId = openraft::LogId<u64>;
    pub type Vote = openraft::Vote<u64>;
    pub type Entry = openraft::Entry<TypeConfig>;
    pub type StorageError = openraft::StorageError<u64>;
    pub type StoredMembership = openraft::StoredMembership<u64, crate::MeshNode>;
    pub type SnapshotMeta = openraft::SnapshotMeta<u64, crate::MeshNode>;
    pub type Snapshot = openraft::Snapshot<TypeConfig>;
    pub type LogState = openraft::storage::LogState<TypeConfig>;
}
