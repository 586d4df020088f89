//! Raft RPC server side.

use mesh_proto::raft::raft_server::{Raft, RaftServer};
use mesh_proto::raft::Payload;
use openraft::raft::{AppendEntriesRequest, InstallSnapshotRequest, VoteRequest};
use serde::Serialize;
use tonic::{Request, Response, Status};

use crate::codec::{decode, encode};
use crate::node::{with_caller_token, Forwarded, TOKEN_HEADER};
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
        let token = req
            .metadata()
            .get(TOKEN_HEADER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let bytes: Vec<u8> = decode(&req.into_inner().data)?;
        if let Err(why) = self.node.check_proposal(token.as_deref(), &bytes) {
            return reply(&Forwarded::<(u64, mesh_types::Outcome)>::Failed(why));
        }
        // Forwarded writes (from followers or client agents) take the full
        // path, so any server accepts them and hands them to the leader,
        // with the token they came with.
        let node = self.node.clone();
        let result = with_caller_token(token, async move {
            match node.propose_local(bytes.clone()).await {
                Ok(Forwarded::NotLeader) => match node.propose_bytes(bytes).await {
                    Ok(applied) => Forwarded::Ok(applied),
                    Err(ProposeError::NoLeader) => Forwarded::NotLeader,
                    Err(e) => Forwarded::Failed(e.to_string()),
                },
                Ok(forwarded) => forwarded,
                Err(e) => Forwarded::Failed(e.to_string()),
            }
        })
        .await;
        reply(&result)
    }

    async fn read_index(&self, req: Request<Payload>) -> Result<Response<Payload>, Status> {
        let mode: ReadMode = decode(&req.into_inner().data)?;
        reply(&self.node.read_index_local(mode).await)
    }
}
