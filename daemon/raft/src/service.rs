//! Raft RPC server side.

use mesh_proto::raft::raft_server::{Raft, RaftServer};
use mesh_proto::raft::Payload;
use openraft::raft::{AppendEntriesRequest, InstallSnapshotRequest, VoteRequest};
use serde::Serialize;
use tonic::{Request, Response, Status};

use crate::codec::{decode, encode};
use crate::node::Forwarded;
use crate::{ProposeError, RaftNode, ReadMode, TypeConfig};

/// Serves Raft messages and forwarded writes and reads for one server.
pub struct RaftService {
    node: RaftNode,
}

impl RaftService {
    pub(crate) fn new(node: RaftNode) -> Self {
        RaftService { node }
    }

    /// Wrap as a tonic service.
    pub fn into_server(self) -> RaftServer<RaftService> {
        RaftServer::new(self)
            .max_decoding_message_size(64 << 20)
            .max_encoding_message_size(64 << 20)
    }
}

fn reply<T: Serialize>(value: &T) -> Result<Response<Payload>, Status> {
    Ok(Response::new(Payload {
        data: encode(value)?,
    }))
}

#[tonic::async_trait]
impl Raft for RaftService {
    async fn append_entries(&self, req: Request<Payload>) -> Result<Response<Payload>, Status> {
        let rpc: AppendEntriesRequest<TypeConfig> = decode(&req.into_inner().data)?;
        reply(&self.node.raft().append_entries(rpc).await)
    }

    async fn vote(&self, req: Request<Payload>) -> Result<Response<Payload>, Status> {
        let rpc: VoteRequest<u64> = decode(&req.into_inner().data)?;
        reply(&self.node.raft().vote(rpc).await)
    }

    async fn install_snapshot(&self, req: Request<Payload>) -> Result<Response<Payload>, Status> {
        let rpc: InstallSnapshotRequest<TypeConfig> = decode(&req.into_inner().data)?;
        reply(&self.node.raft().install_snapshot(rpc).await)
    }

    async fn propose(&self, req: Request<Payload>) -> Result<Response<Payload>, Status> {
        let bytes: Vec<u8> = decode(&req.into_inner().data)?;
        // Forwarded writes (from followers or client agents) take the full
        // path, so any server accepts them and hands them to the leader.
        let result = match self.node.propose_local(bytes.clone()).await {
            Ok(Forwarded::NotLeader) => match self.node.propose_bytes(bytes).await {
                Ok(applied) => Forwarded::Ok(applied),
                Err(ProposeError::NoLeader) => Forwarded::NotLeader,
                Err(e) => Forwarded::Failed(e.to_string()),
            },
            Ok(forwarded) => forwarded,
            Err(e) => Forwarded::Failed(e.to_string()),
        };
        reply(&result)
    }

    async fn read_index(&self, req: Request<Payload>) -> Result<Response<Payload>, Status> {
        let mode: ReadMode = decode(&req.into_inner().data)?;
        reply(&self.node.read_index_local(mode).await)
    }
}
