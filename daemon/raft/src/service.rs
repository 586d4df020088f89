//! Raft RPC server side.

use mesh_proto::raft::raft_server::{Raft, RaftServer};
use mesh_proto::raft::Payload;
use mesh_types::{decode_command, Outcome};
use openraft::raft::{AppendEntriesRequest, InstallSnapshotRequest, VoteRequest};
use serde::Serialize;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tonic::{Request, Response, Status};

use crate::codec::{decode, encode};
use crate::node::{with_caller_token, Forwarded, TOKEN_HEADER};
use crate::{ProposeError, RaftNode, ReadMode, RpcPeer, TypeConfig};

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
            .max_decoding_message_size(crate::network::MAX_MESSAGE_BYTES)
            .max_encoding_message_size(crate::network::MAX_MESSAGE_BYTES)
    }
}

fn reply<T: Serialize>(value: &T) -> Result<Response<Payload>, Status> {
    Ok(Response::new(Payload {
        data: encode(value)?,
    }))
}

/// Raft messages come only from servers: a caller the listener did not
/// find fit (no server certificate where one is required) is refused
/// before its message is decoded, so nothing it sent is applied.
fn from_a_server<T>(req: &Request<T>, what: &str) -> Result<(), Status> {
    mesh_telemetry::counter!(mesh_telemetry::RPC_REQUEST, "method" => what.to_string())
        .increment(1);
    static REFUSALS: Mutex<Option<Instant>> = Mutex::new(None);
    let peer = req.extensions().get::<RpcPeer>();
    if peer.is_some_and(|p| p.may_replicate) {
        return Ok(());
    }
    let (remote, identity) = match peer {
        Some(p) => (p.remote, p.identity.as_str()),
        None => (None, "a connection the RPC listener did not check"),
    };
    let now = Instant::now();
    let mut last = REFUSALS.lock();
    // At most one line a second, so a flood cannot fill the log.
    if last.is_none_or(|t| now.duration_since(t) >= Duration::from_secs(1)) {
        *last = Some(now);
        tracing::warn!(
            ?remote,
            identity,
            what,
            "Raft RPC refused: the caller has not proven it is a server"
        );
    }
    Err(Status::permission_denied(format!(
        "{what} is for servers only; the caller presented {identity}"
    )))
}

#[tonic::async_trait]
impl Raft for RaftService {
    async fn append_entries(&self, req: Request<Payload>) -> Result<Response<Payload>, Status> {
        from_a_server(&req, "AppendEntries")?;
        let rpc: AppendEntriesRequest<TypeConfig> = decode(&req.into_inner().data)?;
        reply(&self.node.raft().append_entries(rpc).await)
    }

    async fn vote(&self, req: Request<Payload>) -> Result<Response<Payload>, Status> {
        from_a_server(&req, "Vote")?;
        let rpc: VoteRequest<u64> = decode(&req.into_inner().data)?;
        reply(&self.node.raft().vote(rpc).await)
    }

    async fn install_snapshot(&self, req: Request<Payload>) -> Result<Response<Payload>, Status> {
        from_a_server(&req, "InstallSnapshot")?;
        let rpc: InstallSnapshotRequest<TypeConfig> = decode(&req.into_inner().data)?;
        reply(&self.node.raft().install_snapshot(rpc).await)
    }

    async fn propose(&self, req: Request<Payload>) -> Result<Response<Payload>, Status> {
        // Unauthenticated TLS is let in only for auto_encrypt signing.
        if req
            .extensions()
            .get::<RpcPeer>()
            .is_none_or(|p| !p.may_forward)
        {
            return Err(Status::permission_denied(
                "forwarded writes need a certificate from the CA (verify_incoming)",
            ));
        }
        let token = req
            .metadata()
            .get(TOKEN_HEADER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let bytes: serde_bytes::ByteBuf = decode(&req.into_inner().data)?;
        // Decoded once (bounded, no nesting): the guard checks this value and
        // this value is what is proposed.
        let command = match decode_command(&bytes) {
            Ok(command) => command,
            Err(e) => return reply(&Forwarded::<(u64, Outcome)>::Failed(e.to_string())),
        };
        drop(bytes);
        if let Err(why) = self.node.check_proposal(token.as_deref(), &command) {
            return reply(&Forwarded::<(u64, Outcome)>::Failed(why));
        }
        // Forwarded writes (from followers or client agents) take the full
        // path, so any server accepts them and hands them to the leader,
        // with the token they came with.
        let node = self.node.clone();
        let result = with_caller_token(token, async move {
            match node.propose(&command).await {
                Ok(applied) => Forwarded::Ok(applied),
                Err(ProposeError::NoLeader) => Forwarded::NotLeader,
                Err(e) => Forwarded::Failed(e.to_string()),
            }
        })
        .await;
        reply(&result)
    }

    async fn auto_encrypt_sign(&self, req: Request<Payload>) -> Result<Response<Payload>, Status> {
        let Some(signer) = self.node.auto_encrypt_signer() else {
            return Err(Status::unimplemented(
                "auto_encrypt is not allowed on this server (auto_encrypt { allow_tls = true })",
            ));
        };
        let token = req
            .metadata()
            .get(TOKEN_HEADER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let request: crate::AutoEncryptRequest = decode(&req.into_inner().data)?;
        reply(&signer(token, request).await)
    }

    async fn elect(&self, req: Request<Payload>) -> Result<Response<Payload>, Status> {
        from_a_server(&req, "Elect")?;
        let request: crate::node::ElectRequest = decode(&req.into_inner().data)?;
        reply(&self.node.elect_on_request(request).await)
    }

    async fn read_index(&self, req: Request<Payload>) -> Result<Response<Payload>, Status> {
        from_a_server(&req, "ReadIndex")?;
        let mode: ReadMode = decode(&req.into_inner().data)?;
        reply(&self.node.read_index_local(mode).await)
    }
}
