//! [`RaftNode`]: a running Raft server and the operations the agent needs.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use mesh_proto::raft::Payload;
use mesh_state::StateStore;
use mesh_types::{
    command_size, encode_command, encode_entry, Command, CommandError, LogEntry, Outcome,
    MAX_ENTRY_BYTES,
};
use openraft::error::{ClientWriteError, InitializeError, RaftError};
use openraft::storage::{RaftLogStorage, RaftStateMachine};
use openraft::{ChangeMembers, Config, Raft, ServerState, SnapshotPolicy};
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use crate::codec::{decode, encode};
use crate::{MeshNode, Network, Proposal, TypeConfig};

/// Raft timing. Consul's production values scaled down: leader loss is
/// detected within one election timeout.
#[derive(Debug, Clone, Copy)]
pub struct RaftTiming {
    pub heartbeat: Duration,
    pub election_min: Duration,
    pub election_max: Duration,
}

impl RaftTiming {
    /// Timing for a cluster on a LAN, scaled by `raft_multiplier` (1 = fastest).
    pub fn lan(multiplier: u32) -> Self {
        let m = multiplier.max(1);
        RaftTiming {
            heartbeat: Duration::from_millis(100) * m,
            election_min: Duration::from_millis(400) * m,
            election_max: Duration::from_millis(800) * m,
        }
    }

    /// Fast timing for a single dev server.
    pub fn dev() -> Self {
        RaftTiming {
            heartbeat: Duration::from_millis(50),
            election_min: Duration::from_millis(150),
            election_max: Duration::from_millis(300),
        }
    }

    fn config(&self) -> Config {
        Config {
            cluster_name: "mesh".into(),
            heartbeat_interval: self.heartbeat.as_millis() as u64,
            election_timeout_min: self.election_min.as_millis() as u64,
            election_timeout_max: self.election_max.as_millis() as u64,
            // Far above one chunk's transfer time; a shorter timeout makes
            // chunked snapshot sends retry forever.
            install_snapshot_timeout: 10_000,
            snapshot_max_chunk_size: 4 << 20,
            snapshot_policy: SnapshotPolicy::LogsSinceLast(16_384),
            max_in_snapshot_log_to_keep: 10_240,
            max_payload_entries: 512,
            ..Default::default()
        }
    }
}

/// How fresh a read must be (Consul's consistency modes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ReadMode {
    /// `?stale`: whatever this server has applied.
    Stale,
    /// Default: at least what the leader had applied when asked.
    Default,
    /// `?consistent`: the leader confirms leadership with a quorum first.
    Consistent,
}

/// A write could not be proposed.
#[derive(Debug, Clone, thiserror::Error, Serialize, Deserialize)]
pub enum ProposeError {
    /// No leader was known within the deadline.
    #[error("No cluster leader")]
    NoLeader,
    /// The leader could not be reached after the request was sent: it may or
    /// may not have been applied.
    #[error("lost contact with the leader at {0}; the write may or may not have been applied")]
    Unknown(String),
    /// The command could not be encoded.
    #[error("{0}")]
    Encode(String),
    /// The command is over the Raft entry limit (`MAX_ENTRY_BYTES`).
    #[error("{0}")]
    TooLarge(String),
    /// No server could be reached (the write was not sent).
    #[error("no server reachable: {0}")]
    Unreachable(String),
    /// Raft is shutting down or failed.
    #[error("raft stopped: {0}")]
    Stopped(String),
}

/// A read barrier could not be passed.
#[derive(Debug, Clone, thiserror::Error, Serialize, Deserialize)]
pub enum ReadError {
    /// No leader was known within the deadline.
    #[error("No cluster leader")]
    NoLeader,
    /// The leader could not confirm the read.
    #[error("read index from leader failed: {0}")]
    Leader(String),
}

/// One server in the Raft configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerInfo {
    pub id: u64,
    pub node: MeshNode,
    pub voter: bool,
    pub leader: bool,
}

/// Reply to a forwarded proposal or read-index request.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) enum Forwarded<T> {
    Ok(T),
    NotLeader,
    Failed(String),
}

tokio::task_local! {
    /// The ACL token of the request a write is made for (set by the HTTP
    /// API), carried when the write is forwarded to another server.
    static CALLER_TOKEN: Option<String>;
}

/// Run `work` with `token` as the ACL token any write it forwards carries.
pub async fn with_caller_token<F: std::future::Future>(
    token: Option<String>,
    work: F,
) -> F::Output {
    CALLER_TOKEN.scope(token, work).await
}

fn caller_token() -> Option<String> {
    CALLER_TOKEN.try_with(Clone::clone).ok().flatten()
}

/// Decides whether a write that arrived over the server RPC port, with the
/// token it carried, may be proposed (`Err` says why not). It sees the
/// decoded command that is then proposed, never the bytes again.
pub type ProposeGuard = Arc<dyn Fn(Option<&str>, &Command) -> Result<(), String> + Send + Sync>;

/// Answers, on the leader and from memory, a command that is never
/// written to the log (a session renewal).
pub type LeaderAnswer = Arc<dyn Fn(&Command) -> Outcome + Send + Sync>;

/// How long a write or read waits for a leader before giving up.
const LEADER_WAIT: Duration = Duration::from_secs(7);

/// Longest a leadership transfer waits for its target to catch up.
const TRANSFER_WAIT: Duration = Duration::from_secs(5);

/// Waited past the leader lease so every follower's has run out.
const LEASE_MARGIN: Duration = Duration::from_millis(50);

/// Why leadership was not handed over.
#[derive(Debug, Clone, thiserror::Error)]
pub enum TransferError {
    #[error("a leadership transfer is already under way")]
    Busy,
    #[error("this server is not the leader")]
    NotLeader,
    #[error("server {0} is already the leader")]
    AlreadyLeader(u64),
    #[error("server {0} is not a voter in the Raft configuration")]
    NotAVoter(u64),
    #[error("there is no other voter to hand leadership to")]
    NoOtherVoter,
    #[error("asking the new leader to stand: {0}")]
    Target(String),
    #[error("leadership transfer timed out: {0}")]
    Timeout(String),
}

/// The leader's request that a follower stand for election.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct ElectRequest {
    pub from: u64,
    pub term: u64,
}

/// Pauses writes and heartbeats on the leader for a transfer, and
/// resumes both when dropped, however the transfer ends.
struct PauseForTransfer<'a>(&'a RaftNode);

impl<'a> PauseForTransfer<'a> {
    fn start(node: &'a RaftNode) -> Self {
        node.inner.writes_paused.send_replace(true);
        node.inner.raft.runtime_config().heartbeat(false);
        PauseForTransfer(node)
    }
}

impl Drop for PauseForTransfer<'_> {
    fn drop(&mut self) {
        self.0.inner.raft.runtime_config().heartbeat(true);
        self.0.inner.writes_paused.send_replace(false);
    }
}

async fn send_elect(network: &Network, addr: &str, req: ElectRequest) -> Result<(), String> {
    let data = encode(&req).map_err(|e| e.to_string())?;
    let mut client = network.client(addr).map_err(|e| format!("{addr}: {e}"))?;
    let mut call = tonic::Request::new(Payload { data });
    call.set_timeout(Duration::from_secs(2));
    let reply = client
        .elect(call)
        .await
        .map_err(|s| format!("{addr}: {}", s.message()))?;
    let answer: Result<(), String> =
        decode(&reply.into_inner().data).map_err(|e| format!("{addr}: {e}"))?;
    answer.map_err(|e| format!("{addr}: {e}"))
}

/// A running Raft server. Cheap to clone.
#[derive(Clone)]
pub struct RaftNode {
    inner: Arc<Inner>,
}

type Reply = oneshot::Sender<Result<Forwarded<(u64, Outcome)>, ProposeError>>;

/// A proposal waiting for group commit: the command, its encoded size, and
/// where its answer goes.
type Queued = (Command, usize, Reply);

/// Most proposals committed together in one log entry.
const MAX_BATCH: usize = 256;

/// Group commit stops adding proposals to an entry past this many encoded
/// bytes, so entries stay small enough to replicate many at a time; a
/// single larger proposal (up to `MAX_ENTRY_BYTES`) still goes alone.
const MAX_BATCH_BYTES: usize = 1 << 20;

struct Inner {
    id: u64,
    raft: Raft<TypeConfig>,
    /// Proposals waiting for the group-commit task.
    batcher: mpsc::Sender<Queued>,
    network: Network,
    state: Arc<StateStore>,
    guard: parking_lot::RwLock<Option<ProposeGuard>>,
    leader_answer: parking_lot::RwLock<Option<LeaderAnswer>>,
    auto_encrypt: parking_lot::RwLock<Option<crate::AutoEncryptSigner>>,
    timing: RaftTiming,
    /// Held back while leadership is handed over: a write or a quorum
    /// check would extend the leader's lease and block the handover.
    writes_paused: tokio::sync::watch::Sender<bool>,
    /// One leadership transfer at a time.
    transfer: tokio::sync::Mutex<()>,
    /// Why Raft stopped, once it has.
    fault: std::sync::OnceLock<String>,
}

impl RaftNode {
    /// Check every write that arrives over the server RPC port with `guard`.
    pub fn set_propose_guard(&self, guard: ProposeGuard) {
        *self.inner.guard.write() = Some(guard);
    }

    /// Answer leader-local commands ([`Command::SessionRenew`]) with `answer`.
    pub fn set_leader_answer(&self, answer: LeaderAnswer) {
        *self.inner.leader_answer.write() = Some(answer);
    }

    /// Serve auto_encrypt signing requests with `signer` (servers with
    /// `auto_encrypt { allow_tls = true }`).
    pub fn set_auto_encrypt(&self, signer: crate::AutoEncryptSigner) {
        *self.inner.auto_encrypt.write() = Some(signer);
    }

    pub(crate) fn auto_encrypt_signer(&self) -> Option<crate::AutoEncryptSigner> {
        self.inner.auto_encrypt.read().clone()
    }

    pub(crate) fn check_proposal(&self, token: Option<&str>, cmd: &Command) -> Result<(), String> {
        match &*self.inner.guard.read() {
            Some(guard) => guard(token, cmd),
            None => Ok(()),
        }
    }

    /// The RPC client this server forwards with.
    pub fn network(&self) -> &Network {
        &self.inner.network
    }

    /// Start Raft with the given storage. `state` must be the store the state
    /// machine applies to.
    pub async fn start<LS, SM>(
        id: u64,
        timing: RaftTiming,
        log_store: LS,
        state_machine: SM,
        state: Arc<StateStore>,
    ) -> Result<RaftNode, openraft::error::Fatal<u64>>
    where
        LS: RaftLogStorage<TypeConfig>,
        SM: RaftStateMachine<TypeConfig>,
    {
        let config = Arc::new(timing.config().validate().expect("raft timing is valid"));
        let network = Network::default();
        let raft = Raft::new(id, config, network.clone(), log_store, state_machine).await?;
        let (batcher, queue) = mpsc::channel(4 * MAX_BATCH);
        let (writes_paused, paused) = tokio::sync::watch::channel(false);
        tokio::spawn(group_commit(raft.clone(), queue, paused));
        tokio::spawn(raft_gauges(raft.clone()));
        let node = RaftNode {
            inner: Arc::new(Inner {
                id,
                raft,
                batcher,
                network,
                state,
                guard: parking_lot::RwLock::new(None),
                leader_answer: parking_lot::RwLock::new(None),
                auto_encrypt: parking_lot::RwLock::new(None),
                timing,
                writes_paused,
                transfer: tokio::sync::Mutex::new(()),
                fault: std::sync::OnceLock::new(),
            }),
        };
        tokio::spawn(watch_fault(node.clone()));
        Ok(node)
    }

    /// This server's Raft ID.
    pub fn id(&self) -> u64 {
        self.inner.id
    }

    /// The underlying openraft handle.
    pub fn raft(&self) -> &Raft<TypeConfig> {
        &self.inner.raft
    }

    /// The replicated state this node applies to.
    pub fn state(&self) -> &Arc<StateStore> {
        &self.inner.state
    }

    /// The tonic service to mount on the server RPC port.
    pub fn service(&self) -> crate::RaftService {
        crate::RaftService::new(self.clone())
    }

    /// The current leader, if known.
    pub fn leader(&self) -> Option<(u64, MeshNode)> {
        let m = self.inner.raft.metrics().borrow().clone();
        let id = m.current_leader?;
        let node = m.membership_config.membership().get_node(&id)?.clone();
        Some((id, node))
    }

    /// Why this server's Raft stopped, if it did (a storage write failed:
    /// disk full, an I/O error). Such a server takes no part in the cluster
    /// until it is restarted.
    pub fn fault(&self) -> Option<String> {
        // Read on every request: one atomic load, set once by `watch_fault`.
        self.inner.fault.get().cloned()
    }

    /// Wait until this server's Raft stops, and say why.
    pub async fn stopped(&self) -> String {
        stop_reason(self.inner.raft.metrics())
            .await
            .unwrap_or_else(|| "raft stopped".into())
    }

    /// Whether this server is the leader now.
    pub fn is_leader(&self) -> bool {
        self.inner.raft.metrics().borrow().state == ServerState::Leader
    }

    /// Milliseconds since the leader last heard from a quorum (on the leader),
    /// used for `X-Consul-LastContact`.
    pub fn millis_since_quorum_ack(&self) -> Option<u64> {
        self.inner.raft.metrics().borrow().millis_since_quorum_ack
    }

    /// The servers in the current membership.
    pub fn servers(&self) -> (Vec<ServerInfo>, u64) {
        let m = self.inner.raft.metrics().borrow().clone();
        let membership = m.membership_config.membership();
        let voters: BTreeSet<u64> = membership.voter_ids().collect();
        let servers = membership
            .nodes()
            .map(|(id, node)| ServerInfo {
                id: *id,
                node: node.clone(),
                voter: voters.contains(id),
                leader: m.current_leader == Some(*id),
            })
            .collect();
        let index = m.membership_config.log_id().map_or(0, |l| l.index);
        (servers, index)
    }

    /// Bootstrap a new cluster with these servers. Safe to call on every
    /// server with the same set; a no-op on a node that already has state.
    pub async fn bootstrap(&self, servers: BTreeMap<u64, MeshNode>) -> Result<bool, String> {
        match self.inner.raft.initialize(servers).await {
            Ok(()) => Ok(true),
            Err(RaftError::APIError(InitializeError::NotAllowed(_))) => Ok(false),
            Err(e) => Err(e.to_string()),
        }
    }

    /// Whether this node has any Raft state (was bootstrapped or joined).
    pub async fn is_initialized(&self) -> bool {
        self.inner.raft.is_initialized().await.unwrap_or(false)
    }

    /// Make a server a voter (leader only): learner first, caught up, then voter.
    pub async fn add_voter(&self, id: u64, node: MeshNode) -> Result<(), String> {
        let (servers, _) = self.servers();
        if servers
            .iter()
            .any(|s| s.id == id && s.voter && s.node == node)
        {
            return Ok(());
        }
        self.inner
            .raft
            .add_learner(id, node, true)
            .await
            .map_err(|e| e.to_string())?;
        self.inner
            .raft
            .change_membership(ChangeMembers::AddVoterIds(BTreeSet::from([id])), false)
            .await
            .map_err(|e| e.to_string())?;
        Ok(())
    }

    /// Point a member at its new addresses (leader only): a server that
    /// restarted with the same data (so the same ID and log) on another
    /// port or IP. Only for an ID gossip shows alive at the new address.
    pub async fn update_address(&self, id: u64, node: MeshNode) -> Result<(), String> {
        let (servers, _) = self.servers();
        if !servers.iter().any(|s| s.id == id && s.node != node) {
            return Ok(());
        }
        self.inner
            .raft
            .change_membership(ChangeMembers::SetNodes(BTreeMap::from([(id, node)])), false)
            .await
            .map_err(|e| e.to_string())?;
        Ok(())
    }

    /// Remove a server from the configuration (leader only).
    pub async fn remove_server(&self, id: u64) -> Result<(), String> {
        let (servers, _) = self.servers();
        let Some(server) = servers.iter().find(|s| s.id == id) else {
            return Ok(());
        };
        let change = if server.voter {
            ChangeMembers::RemoveVoters(BTreeSet::from([id]))
        } else {
            ChangeMembers::RemoveNodes(BTreeSet::from([id]))
        };
        self.inner
            .raft
            .change_membership(change, false)
            .await
            .map_err(|e| e.to_string())?;
        Ok(())
    }

    /// Hand leadership to `to` (or the best caught-up voter) and return its
    /// ID; on the leader only (Consul's `operator raft transfer-leader`).
    ///
    /// openraft 0.9 has no TimeoutNow message, so the handover is done with
    /// what it has: writes and heartbeats pause, the target catches up, the
    /// followers' leader lease runs out, and the target is told to stand
    /// for election. It wins before any other follower's election timer
    /// (lease + election timeout) fires. Everything resumes however it ends.
    pub async fn transfer_leadership(&self, to: Option<u64>) -> Result<u64, TransferError> {
        let _one = self
            .inner
            .transfer
            .try_lock()
            .map_err(|_| TransferError::Busy)?;
        if !self.is_leader() {
            return Err(TransferError::NotLeader);
        }
        let m = self.inner.raft.metrics().borrow().clone();
        let membership = m.membership_config.membership();
        let mut voters: Vec<u64> = membership
            .voter_ids()
            .filter(|id| *id != self.id())
            .collect();
        let matched = |id: &u64| {
            m.replication
                .as_ref()
                .and_then(|r| r.get(id).cloned().flatten())
                .map_or(0, |l| l.index)
        };
        let target = match to {
            Some(id) if id == self.id() => return Err(TransferError::AlreadyLeader(id)),
            Some(id) if voters.contains(&id) => id,
            Some(id) => return Err(TransferError::NotAVoter(id)),
            None => {
                voters.sort_by_key(|id| std::cmp::Reverse(matched(id)));
                *voters.first().ok_or(TransferError::NoOtherVoter)?
            }
        };
        let addr = membership
            .get_node(&target)
            .map(|n| n.rpc_addr.clone())
            .ok_or(TransferError::NotAVoter(target))?;
        let _pause = PauseForTransfer::start(self);
        let deadline = Instant::now() + TRANSFER_WAIT;
        let mut metrics = self.inner.raft.metrics();
        let caught_up = metrics.wait_for(|m| {
            let matched = m
                .replication
                .as_ref()
                .and_then(|r| r.get(&target).cloned().flatten());
            matched.map(|l| l.index) >= m.last_log_index
        });
        if tokio::time::timeout_at(deadline, caught_up).await.is_err() {
            return Err(TransferError::Timeout(format!(
                "server {target} did not catch up with the log"
            )));
        }
        // The last message the followers got is older than now: once the
        // lease is over they grant votes again.
        let lease = self.inner.timing.election_max + LEASE_MARGIN;
        tokio::time::sleep(lease).await;
        let term = self.inner.raft.metrics().borrow().current_term;
        send_elect(
            &self.inner.network,
            &addr,
            ElectRequest {
                from: self.id(),
                term,
            },
        )
        .await
        .map_err(TransferError::Target)?;
        let wait = self.inner.timing.election_max * 2;
        let settled =
            metrics.wait_for(|m| m.current_leader == Some(target) || m.current_term > term);
        let _ = tokio::time::timeout(wait, settled).await;
        // A new term may first show no leader: give it its election.
        let leader = metrics.wait_for(|m| m.current_leader.is_some());
        let _ = tokio::time::timeout(wait, leader).await;
        match self.leader() {
            Some((id, _)) if id == target => Ok(target),
            other => Err(TransferError::Timeout(format!(
                "server {target} stood for election but the leader is now {}",
                other.map_or("unknown".to_string(), |(id, _)| format!("server {id}"))
            ))),
        }
    }

    /// On a follower: stand for election now, when the leader (`from`, in
    /// `term`) asks as it hands over leadership.
    pub(crate) async fn elect_on_request(&self, req: ElectRequest) -> Result<(), String> {
        let m = self.inner.raft.metrics().borrow().clone();
        if m.current_leader != Some(req.from) || m.current_term != req.term {
            return Err(format!(
                "server {} is not the leader in term {} here (leader {:?}, term {})",
                req.from, req.term, m.current_leader, m.current_term
            ));
        }
        tracing::info!(
            from = req.from,
            "standing for election: the leader hands over"
        );
        self.inner
            .raft
            .trigger()
            .elect()
            .await
            .map_err(|e| e.to_string())
    }

    // === writes ===

    /// Replicate a command and return its log index and outcome. Forwards to
    /// the leader when this server is not it, waiting out elections.
    pub async fn propose(&self, command: &Command) -> Result<(u64, Outcome), ProposeError> {
        let size = encoded_size(command)?;
        let deadline = Instant::now() + LEADER_WAIT;
        // Encoded only if it has to travel to another server.
        let mut bytes: Option<Vec<u8>> = None;
        loop {
            match self.propose_local(command.clone(), size).await? {
                Forwarded::Ok(applied) => return Ok(applied),
                Forwarded::Failed(why) => return Err(ProposeError::Stopped(why)),
                Forwarded::NotLeader => {}
            }
            if let Some((id, leader)) = self.leader().filter(|(id, _)| *id != self.id()) {
                if bytes.is_none() {
                    bytes = Some(encode_proposal(command)?);
                }
                let bytes = bytes.as_deref().unwrap_or_default();
                match self.forward_propose(&leader, bytes).await {
                    Ok(Forwarded::Ok(applied)) => return Ok(applied),
                    Ok(Forwarded::Failed(why)) => return Err(ProposeError::Stopped(why)),
                    Ok(Forwarded::NotLeader) => tracing::debug!(id, "leader moved; retrying"),
                    Err(Delivery::NotSent(why)) => tracing::debug!(%why, "leader unreachable"),
                    Err(Delivery::Unknown(why)) => return Err(ProposeError::Unknown(why)),
                }
            }
            if Instant::now() >= deadline {
                return Err(ProposeError::NoLeader);
            }
            self.wait_for_leader_change(deadline).await;
        }
    }

    /// Propose on this server if it is the leader. Concurrent proposals are
    /// committed together (one log entry, one fsync) by the group-commit task.
    pub(crate) async fn propose_local(
        &self,
        command: Command,
        size: usize,
    ) -> Result<Forwarded<(u64, Outcome)>, ProposeError> {
        if matches!(command, Command::SessionRenew { .. }) {
            // Not a log entry: the leader answers it from memory.
            if !self.is_leader() {
                return Ok(Forwarded::NotLeader);
            }
            let answer = self.inner.leader_answer.read().clone();
            let outcome = match answer {
                Some(answer) => answer(&command),
                None => Outcome::Rejected("this server does not track sessions".into()),
            };
            return Ok(Forwarded::Ok((self.inner.state.last_index(), outcome)));
        }
        let (tx, rx) = oneshot::channel();
        self.inner
            .batcher
            .send((command, size, tx))
            .await
            .map_err(|_| ProposeError::Stopped("raft is shutting down".into()))?;
        rx.await
            .map_err(|_| ProposeError::Stopped("raft is shutting down".into()))?
    }

    async fn forward_propose(
        &self,
        leader: &MeshNode,
        bytes: &[u8],
    ) -> Result<Forwarded<(u64, Outcome)>, Delivery> {
        send_propose(&self.inner.network, &leader.rpc_addr, bytes).await
    }

    async fn wait_for_leader_change(&self, deadline: Instant) {
        let mut rx = self.inner.raft.metrics();
        let before = rx.borrow().current_leader;
        let wait = rx.wait_for(|m| m.current_leader != before && m.current_leader.is_some());
        let step = Instant::now() + Duration::from_millis(100);
        let _ = tokio::time::timeout_at(step.min(deadline), wait).await;
    }

    // === reads ===

    /// Wait until this server's state is fresh enough for a read in `mode`.
    pub async fn read_barrier(&self, mode: ReadMode) -> Result<(), ReadError> {
        if mode == ReadMode::Stale {
            return Ok(());
        }
        let deadline = Instant::now() + LEADER_WAIT;
        loop {
            match self.read_index_local(mode).await {
                Forwarded::Ok(index) => return self.wait_applied(index, deadline).await,
                Forwarded::Failed(why) => return Err(ReadError::Leader(why)),
                Forwarded::NotLeader => {}
            }
            if let Some((_, leader)) = self.leader().filter(|(id, _)| *id != self.id()) {
                match self.forward_read_index(&leader, mode).await {
                    Ok(Forwarded::Ok(index)) => return self.wait_applied(index, deadline).await,
                    Ok(Forwarded::Failed(why)) => return Err(ReadError::Leader(why)),
                    Ok(Forwarded::NotLeader) | Err(_) => {}
                }
            }
            if Instant::now() >= deadline {
                return Err(ReadError::NoLeader);
            }
            self.wait_for_leader_change(deadline).await;
        }
    }

    /// On the leader: the index a read in `mode` must observe.
    pub(crate) async fn read_index_local(&self, mode: ReadMode) -> Forwarded<u64> {
        if !self.is_leader() {
            return Forwarded::NotLeader;
        }
        match mode {
            ReadMode::Stale | ReadMode::Default => Forwarded::Ok(self.inner.state.last_index()),
            ReadMode::Consistent => match self.linearizable().await {
                Ok(read_log_id) => Forwarded::Ok(read_log_id.map_or(0, |l| l.index)),
                Err(RaftError::APIError(_)) => Forwarded::NotLeader,
                Err(e) => Forwarded::Failed(e.to_string()),
            },
        }
    }

    /// A quorum check, held back while leadership is handed over (its
    /// heartbeats would renew the lease the handover waits out).
    async fn linearizable(
        &self,
    ) -> Result<
        Option<openraft::LogId<u64>>,
        RaftError<u64, openraft::error::CheckIsLeaderError<u64, MeshNode>>,
    > {
        let mut paused = self.inner.writes_paused.subscribe();
        let _ = paused.wait_for(|p| !*p).await;
        self.inner.raft.ensure_linearizable().await
    }

    async fn forward_read_index(
        &self,
        leader: &MeshNode,
        mode: ReadMode,
    ) -> Result<Forwarded<u64>, Delivery> {
        let data = encode(&mode).map_err(|e| Delivery::NotSent(e.to_string()))?;
        let mut client = self
            .inner
            .network
            .client(&leader.rpc_addr)
            .map_err(|e| Delivery::NotSent(e.to_string()))?;
        let mut req = tonic::Request::new(Payload { data });
        req.set_timeout(Duration::from_secs(2));
        let reply = client
            .read_index(req)
            .await
            .map_err(|s| Delivery::Unknown(s.message().to_string()))?;
        decode(&reply.into_inner().data).map_err(|e| Delivery::Unknown(e.to_string()))
    }

    async fn wait_applied(&self, index: u64, deadline: Instant) -> Result<(), ReadError> {
        tokio::time::timeout_at(deadline, self.inner.state.hub().wait_applied(index))
            .await
            .map_err(|_| ReadError::Leader(format!("timed out applying up to index {index}")))
    }

    /// Stop Raft.
    pub async fn shutdown(&self) {
        let _ = self.inner.raft.shutdown().await;
    }
}

impl From<CommandError> for ProposeError {
    fn from(e: CommandError) -> Self {
        match e {
            CommandError::TooLarge(size) => ProposeError::TooLarge(format!(
                "Request of {size} bytes is over the Raft entry limit \
                 (raft_max_entry_bytes = {MAX_ENTRY_BYTES})"
            )),
            other => ProposeError::Encode(other.to_string()),
        }
    }
}

/// A command's encoded size, refused over the entry limit.
pub(crate) fn encoded_size(command: &Command) -> Result<usize, ProposeError> {
    Ok(command_size(command)?)
}

fn encode_proposal(command: &Command) -> Result<Vec<u8>, ProposeError> {
    Ok(encode_command(command)?)
}

/// Record why Raft stopped, once it does (it holds only a weak reference, so
/// a dropped node ends it).
async fn watch_fault(node: RaftNode) {
    let weak = Arc::downgrade(&node.inner);
    let metrics = node.inner.raft.metrics();
    drop(node);
    if let (Some(why), Some(inner)) = (stop_reason(metrics).await, weak.upgrade()) {
        let _ = inner.fault.set(why);
    }
}

/// Wait until Raft stops and say why (`None`: its metrics ended first).
async fn stop_reason(
    mut metrics: tokio::sync::watch::Receiver<openraft::RaftMetrics<u64, MeshNode>>,
) -> Option<String> {
    let m = metrics.wait_for(|m| m.running_state.is_err()).await.ok()?;
    m.running_state.as_ref().err().map(ToString::to_string)
}

/// Raft's gauges, sampled once a second (cheap, and off the write path),
/// and Consul's leader/candidate transition counters.
async fn raft_gauges(raft: Raft<TypeConfig>) {
    use mesh_telemetry as t;
    let mut metrics = raft.metrics();
    let mut last: Option<(ServerState, u64)> = None;
    loop {
        {
            let m = metrics.borrow_and_update();
            if m.running_state.is_err() {
                return;
            }
            t::gauge!(t::RAFT_LAST_INDEX).set(m.last_log_index.unwrap_or(0) as f64);
            t::gauge!(t::RAFT_APPLIED_INDEX).set(m.last_applied.map_or(0, |l| l.index) as f64);
            t::gauge!(t::RAFT_PEERS)
                .set(m.membership_config.membership().voter_ids().count() as f64);
            if let Some(ms) = m.millis_since_quorum_ack {
                t::gauge!(t::RAFT_LEADER_LAST_CONTACT).set(ms as f64);
            }
            let now = (m.state, m.current_term);
            if last != Some(now) {
                match m.state {
                    ServerState::Leader => t::counter!(t::RAFT_STATE_LEADER).increment(1),
                    ServerState::Candidate => t::counter!(t::RAFT_STATE_CANDIDATE).increment(1),
                    _ => {}
                }
                last = Some(now);
            }
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Write one log entry through openraft.
async fn client_write(
    raft: &Raft<TypeConfig>,
    entry: &LogEntry,
) -> Result<Forwarded<(u64, Outcome)>, ProposeError> {
    let bytes = encode_entry(entry).map_err(|e| ProposeError::Encode(e.to_string()))?;
    let started = Instant::now();
    match raft.client_write(Proposal(bytes)).await {
        Ok(resp) => {
            let commands = match entry {
                LogEntry::Batch(b) => b.len() as u64,
                _ => 1,
            };
            use mesh_telemetry as t;
            t::histogram!(t::RAFT_COMMIT_TIME).record(t::ms(started.elapsed()));
            t::counter!(t::RAFT_APPLY).increment(commands);
            Ok(Forwarded::Ok((resp.log_id.index, resp.data)))
        }
        Err(RaftError::APIError(ClientWriteError::ForwardToLeader(_))) => Ok(Forwarded::NotLeader),
        Err(RaftError::APIError(e)) => Ok(Forwarded::Failed(e.to_string())),
        Err(RaftError::Fatal(e)) => Err(ProposeError::Stopped(e.to_string())),
    }
}

/// Group commit: take the proposals waiting when the previous write
/// finished (up to `MAX_BATCH` of them and `MAX_BATCH_BYTES`) and commit them
/// as one `LogEntry::Batch`, so N concurrent writers cost one log append
/// (and one fsync per server), not N.
async fn group_commit(
    raft: Raft<TypeConfig>,
    mut queue: mpsc::Receiver<Queued>,
    mut paused: tokio::sync::watch::Receiver<bool>,
) {
    // A proposal that did not fit the previous entry starts the next one.
    let mut carried: Option<Queued> = None;
    loop {
        let first = match carried.take() {
            Some(q) => q,
            None => match queue.recv().await {
                Some(q) => q,
                None => return,
            },
        };
        // A leadership transfer is bounded (TRANSFER_WAIT); afterwards the
        // write finds the new leader through ForwardToLeader.
        let _ = paused.wait_for(|p| !*p).await;
        let mut bytes = first.1;
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH && bytes < MAX_BATCH_BYTES {
            match queue.try_recv() {
                Ok(next) if bytes + next.1 > MAX_BATCH_BYTES => {
                    carried = Some(next);
                    break;
                }
                Ok(next) => {
                    bytes += next.1;
                    batch.push(next);
                }
                Err(_) => break,
            }
        }
        if batch.len() == 1 {
            let (command, _, reply) = batch.pop().expect("one proposal");
            let _ = reply.send(client_write(&raft, &LogEntry::One(Box::new(command))).await);
            continue;
        }
        let (commands, replies): (Vec<Command>, Vec<Reply>) =
            batch.into_iter().map(|(c, _, r)| (c, r)).unzip();
        let count = commands.len();
        match client_write(&raft, &LogEntry::Batch(commands)).await {
            Ok(Forwarded::Ok((index, Outcome::Batch(outcomes)))) if outcomes.len() == count => {
                for (reply, outcome) in replies.into_iter().zip(outcomes) {
                    let _ = reply.send(Ok(Forwarded::Ok((index, outcome))));
                }
            }
            Ok(Forwarded::Ok((_, other))) => {
                // A replica that cannot decode batches refuses the whole entry.
                for reply in replies {
                    let _ = reply.send(Ok(Forwarded::Ok((0, other.clone()))));
                }
            }
            other => {
                for reply in replies {
                    let _ = reply.send(other.clone());
                }
            }
        }
    }
}

/// Propose from a client agent (no Raft of its own) through a server,
/// which forwards to the leader.
pub async fn propose_via_server(
    network: &Network,
    server_rpc: &str,
    command: &Command,
) -> Result<(u64, Outcome), ProposeError> {
    let bytes = encode_proposal(command)?;
    match send_propose(network, server_rpc, &bytes).await {
        Ok(Forwarded::Ok(applied)) => Ok(applied),
        Ok(Forwarded::NotLeader) => Err(ProposeError::NoLeader),
        Ok(Forwarded::Failed(why)) => Err(ProposeError::Stopped(why)),
        Err(Delivery::NotSent(why)) => {
            Err(ProposeError::Unreachable(format!("{server_rpc}: {why}")))
        }
        Err(Delivery::Unknown(why)) => Err(ProposeError::Unknown(why)),
    }
}

/// Metadata key of the ACL token on forwarded writes.
pub(crate) const TOKEN_HEADER: &str = "x-consul-token";

async fn send_propose(
    network: &Network,
    addr: &str,
    bytes: &[u8],
) -> Result<Forwarded<(u64, Outcome)>, Delivery> {
    let data =
        encode(&serde_bytes::Bytes::new(bytes)).map_err(|e| Delivery::NotSent(e.to_string()))?;
    let mut client = network
        .client(addr)
        .map_err(|e| Delivery::NotSent(e.to_string()))?;
    let mut req = tonic::Request::new(Payload { data });
    req.set_timeout(LEADER_WAIT + Duration::from_secs(1));
    if let Some(token) = caller_token().or_else(|| network.token()) {
        if let Ok(value) = token.parse() {
            req.metadata_mut().insert(TOKEN_HEADER, value);
        }
    }
    match client.propose(req).await {
        Ok(reply) => {
            decode(&reply.into_inner().data).map_err(|e| Delivery::Unknown(format!("{addr}: {e}")))
        }
        // A refused connection means the request never left this process.
        Err(status) if is_not_sent(&status) => Err(Delivery::NotSent(status.message().to_string())),
        Err(status) => Err(Delivery::Unknown(format!("{addr}: {}", status.message()))),
    }
}

enum Delivery {
    /// The request never reached the leader; retrying is safe.
    NotSent(String),
    /// The request may have reached the leader.
    Unknown(String),
}

fn is_not_sent(status: &tonic::Status) -> bool {
    status.code() == tonic::Code::Unavailable
        && !status.message().contains("reset")
        && !status.message().contains("closed")
}
