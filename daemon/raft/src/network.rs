//! Raft RPC client side: one lazily connected tonic channel per peer.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mesh_proto::raft::raft_client::RaftClient;
use mesh_proto::raft::Payload;
use openraft::error::{
    InstallSnapshotError, NetworkError, PayloadTooLarge, RPCError, RaftError, RemoteError,
    Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use parking_lot::Mutex;
use serde::{de::DeserializeOwned, Serialize};
use tonic::transport::{Channel, Endpoint};

use crate::codec::{decode, encode};
use crate::tls::RpcTls;
use crate::{MeshNode, TypeConfig};

/// The largest Raft RPC message either side accepts. A log entry is at most
/// `mesh_types::MAX_ENTRY_BYTES` (half of this), so one always fits.
pub(crate) const MAX_MESSAGE_BYTES: usize = 64 << 20;

/// Most bytes of log entries one AppendEntries carries (a single larger
/// entry still goes alone). openraft gives each AppendEntries one
/// heartbeat interval (100 ms at raft_multiplier 1) to be sent, stored and
/// fsynced by the follower, and sends up to 512 entries at once: with
/// 1 MB entries a lagging follower was sent tens of MB per try, every try
/// timed out on a loaded machine, and it never caught up.
pub(crate) const APPEND_BATCH_BYTES: usize = 2 << 20;

/// How many of `entries`, from the first, fit in `budget` encoded bytes
/// (at least one).
fn entries_within(entries: &[openraft::Entry<TypeConfig>], budget: usize) -> u64 {
    let mut total = 0usize;
    let mut fit = 0u64;
    for entry in entries {
        total += encode(entry).map_or(usize::MAX / 2, |b| b.len());
        if total > budget {
            break;
        }
        fit += 1;
    }
    fit.max(1)
}

const _: () = assert!(mesh_types::MAX_ENTRY_BYTES + (1 << 20) < MAX_MESSAGE_BYTES);

/// Connects to peers by their server RPC address; channels are shared.
#[derive(Clone, Default)]
pub struct Network {
    channels: Arc<Mutex<HashMap<String, Channel>>>,
    /// ACL token for writes forwarded without a caller's own (the agent's).
    token: Arc<Mutex<Option<String>>>,
    /// TLS for dialing peers, when `tls.internal_rpc` is configured.
    tls: Arc<Mutex<Option<Arc<dyn RpcTls>>>>,
    /// When each peer last answered a Raft message (heartbeats included).
    contacts: Arc<Mutex<HashMap<u64, Instant>>>,
}

impl Network {
    /// The token forwarded writes carry when no caller token is in scope.
    pub fn set_token(&self, token: Option<String>) {
        *self.token.lock() = token;
    }

    pub(crate) fn token(&self) -> Option<String> {
        self.token.lock().clone()
    }

    /// Dial peers through `tls` from now on (set once, before any dial).
    pub fn set_tls(&self, tls: Arc<dyn RpcTls>) {
        *self.tls.lock() = Some(tls);
        self.channels.lock().clear();
    }

    /// How long ago peer `id` last answered a Raft message from this node
    /// (on the leader: every follower, through heartbeats).
    pub fn last_contact(&self, id: u64) -> Option<Duration> {
        self.contacts.lock().get(&id).map(Instant::elapsed)
    }

    /// Drops every peer connection, so the next calls dial again (with a
    /// certificate assigned since, for one).
    pub fn reset_connections(&self) {
        self.channels.lock().clear();
    }

    /// Whether peers are dialed through the agent's RPC TLS.
    pub fn has_tls(&self) -> bool {
        self.tls.lock().is_some()
    }

    /// Checks that the server at `addr` holds a server certificate. With
    /// no RPC TLS configured there is nothing to prove it with: `Ok`.
    pub async fn prove_server(&self, addr: &str) -> Result<(), String> {
        let tls = self.tls.lock().clone();
        match tls {
            Some(tls) => crate::tls::prove(tls.as_ref(), addr).await,
            None => Ok(()),
        }
    }

    /// A client for a peer's Raft service.
    pub fn client(&self, addr: &str) -> Result<RaftClient<Channel>, tonic::transport::Error> {
        let mut channels = self.channels.lock();
        if let Some(ch) = channels.get(addr) {
            return Ok(RaftClient::new(ch.clone()));
        }
        let endpoint = Endpoint::from_shared(format!("http://{addr}"))?
            .connect_timeout(Duration::from_millis(500))
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(10));
        let channel = match self.tls.lock().clone() {
            None => endpoint.connect_lazy(),
            Some(tls) => {
                // Each new connection takes the TLS config in force then.
                let target = addr.to_string();
                endpoint.connect_with_connector_lazy(tower::service_fn(
                    move |_: tonic::codegen::http::Uri| {
                        let (config, name, target) =
                            (tls.dial(), tls.server_name(), target.clone());
                        async move { crate::tls::dial(&target, config, &name).await }
                    },
                ))
            }
        };
        channels.insert(addr.to_string(), channel.clone());
        Ok(RaftClient::new(channel)
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES))
    }
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = Connection;

    async fn new_client(&mut self, target: u64, node: &MeshNode) -> Connection {
        Connection {
            target,
            addr: node.rpc_addr.clone(),
            network: self.clone(),
        }
    }
}

/// A connection to one peer.
pub struct Connection {
    target: u64,
    addr: String,
    network: Network,
}

type Call = fn(
    RaftClient<Channel>,
    tonic::Request<Payload>,
) -> futures_util_box::BoxFuture<Result<tonic::Response<Payload>, tonic::Status>>;

mod futures_util_box {
    pub type BoxFuture<T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send>>;
}

impl Connection {
    async fn call<Req, Resp, E>(
        &self,
        req: &Req,
        ttl: Duration,
        method: Call,
    ) -> Result<Resp, RPCError<u64, MeshNode, RaftError<u64, E>>>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let data = encode(req).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        self.send(data, ttl, method).await
    }

    async fn send<Resp, E>(
        &self,
        data: Vec<u8>,
        ttl: Duration,
        method: Call,
    ) -> Result<Resp, RPCError<u64, MeshNode, RaftError<u64, E>>>
    where
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let client = self
            .network
            .client(&self.addr)
            .map_err(|e| RPCError::Unreachable(Unreachable::new(&e)))?;
        let mut request = tonic::Request::new(Payload { data });
        request.set_timeout(ttl);
        let reply = method(client, request).await.map_err(|status| {
            if status.code() == tonic::Code::Unavailable {
                RPCError::Unreachable(Unreachable::new(&status))
            } else {
                RPCError::Network(NetworkError::new(&status))
            }
        })?;
        self.network
            .contacts
            .lock()
            .insert(self.target, Instant::now());
        let result: Result<Resp, RaftError<u64, E>> = decode(&reply.into_inner().data)
            .map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        result.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }
}

impl RaftNetwork<TypeConfig> for Connection {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<u64>, RPCError<u64, MeshNode, RaftError<u64>>> {
        let data = encode(&rpc).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        if data.len() > APPEND_BATCH_BYTES && rpc.entries.len() > 1 {
            // Never send more than a follower can take within openraft's
            // deadline (or the peer's message limit): openraft retries at
            // once with as many entries as fit. One entry always goes.
            let hint = entries_within(&rpc.entries, APPEND_BATCH_BYTES);
            tracing::debug!(
                bytes = data.len(),
                hint,
                "append-entries over the batch budget; splitting"
            );
            return Err(RPCError::PayloadTooLarge(
                PayloadTooLarge::new_entries_hint(hint),
            ));
        }
        self.send(data, option.hard_ttl(), |mut c, r| {
            Box::pin(async move { c.append_entries(r).await })
        })
        .await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<u64>,
        RPCError<u64, MeshNode, RaftError<u64, InstallSnapshotError>>,
    > {
        self.call(&rpc, option.hard_ttl(), |mut c, r| {
            Box::pin(async move { c.install_snapshot(r).await })
        })
        .await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<u64>,
        option: RPCOption,
    ) -> Result<VoteResponse<u64>, RPCError<u64, MeshNode, RaftError<u64>>> {
        self.call(&rpc, option.hard_ttl(), |mut c, r| {
            Box::pin(async move { c.vote(r).await })
        })
        .await
    }
}

#[cfg(test)]
#[path = "network_tests.rs"]
mod tests;
