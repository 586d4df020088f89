//! The public handle: start, join, watch members, leave, shut down.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use mesh_types::Coordinate;
use parking_lot::{Mutex, RwLock};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::{JoinHandle, JoinSet};

use crate::coordinate::CoordinateView;
use crate::encryption::WarnLimit;
use crate::events::{EventLog, NewEvent, UserEvent, MAX_EVENT_BYTES};
use crate::identity::{LeftSet, NodeId, MAX_IDENTITY_LEN};
use crate::node::{self, Command, Node, Shared};
use crate::{
    Encryption, GossipConfig, GossipError, JoinFailure, KeyAnswer, KeyOp, Keyring, Member,
    MemberStatus, NetTransport, NodeAnswer, Transport,
};

/// A running gossip node; clones share it. Dropping every clone stops it.
#[derive(Clone)]
pub struct Gossip {
    inner: Arc<Inner>,
}

struct Inner {
    commands: mpsc::UnboundedSender<Command>,
    members: watch::Receiver<Vec<Member>>,
    /// Who left, and who was pruned (`force-leave -prune`).
    left_set: Arc<Mutex<LeftSet>>,
    /// User events seen (fired here or received).
    events: Arc<Mutex<EventLog>>,
    /// Our network coordinate and our peers' latest.
    coords: Arc<Mutex<CoordinateView>>,
    /// Taken on shutdown so the sockets close.
    shared: Mutex<Option<Arc<Shared>>>,
    gossip_interval: Duration,
    local_addr: SocketAddr,
    /// The address others reach us at.
    advertised: SocketAddr,
    task: Mutex<Option<JoinHandle<()>>>,
}

impl Gossip {
    /// Binds UDP and TCP on `config.bind` and starts gossiping (alone until `join`).
    pub async fn start(config: GossipConfig) -> Result<Gossip, GossipError> {
        config.timing.validate()?;
        let transport = NetTransport::bind(config.bind).await?;
        Gossip::start_with_transport(config, Arc::new(transport)).await
    }

    /// Starts on an already-bound transport (for example [`crate::mem`]); `config.bind` is ignored.
    pub async fn start_with_transport(
        config: GossipConfig,
        transport: Arc<dyn Transport>,
    ) -> Result<Gossip, GossipError> {
        config.timing.validate()?;
        if config.name.is_empty() {
            return Err(GossipError::Config(
                "node name must not be empty".to_owned(),
            ));
        }
        let local_addr = transport.local_addr();
        let addr = match config.advertise {
            Some(mut adv) => {
                if adv.port() == 0 {
                    adv.set_port(local_addr.port());
                }
                adv
            }
            None => local_addr,
        };
        if addr.ip().is_unspecified() {
            return Err(GossipError::Config(format!(
                "gossip is bound to {local_addr}, which other nodes cannot reach; set an advertise address"
            )));
        }
        let id = NodeId {
            name: config.name,
            addr,
            role: config.role,
            dc: config.dc,
            tags: config.tags,
            version: now_millis(),
        };
        if id.encoded_len() > MAX_IDENTITY_LEN {
            return Err(GossipError::Config(format!(
                "name, datacenter and tags take {} bytes encoded; gossip allows {MAX_IDENTITY_LEN}",
                id.encoded_len()
            )));
        }

        if let (Some(path), Some(ring)) = (&config.keyring_file, &config.keyring) {
            // Key changes persist from the first: write the starting keys.
            if !path.exists() {
                crate::encryption::save_keyring_file(path, ring).map_err(|e| {
                    GossipError::Config(format!("writing the keyring {}: {e}", path.display()))
                })?;
            }
        }
        let shared = Arc::new(Shared {
            transport,
            encryption: RwLock::new(Arc::new(Encryption {
                keyring: config.keyring,
                verify_incoming: config.verify_incoming,
                verify_outgoing: config.verify_outgoing,
            })),
            keyring_file: config.keyring_file,
            timing: config.timing,
            key_warnings: WarnLimit::new(),
        });
        let me = Member {
            name: id.name.clone(),
            addr: id.addr,
            status: MemberStatus::Alive,
            role: id.role,
            dc: id.dc.clone(),
            tags: id.tags.clone(),
        };
        let (members_tx, members) = watch::channel(vec![me]);
        let (commands, commands_rx) = mpsc::unbounded_channel();
        let left_set = Arc::new(Mutex::new(LeftSet::default()));
        let events = Arc::new(Mutex::new(EventLog::new()));
        let coords = Arc::new(Mutex::new(CoordinateView::default()));
        let node = Node::new(
            id,
            shared.clone(),
            members_tx,
            commands.downgrade(),
            left_set.clone(),
            events.clone(),
            coords.clone(),
        );
        let task = tokio::spawn(node.run(commands_rx));
        tracing::info!(%local_addr, advertise = %addr, encrypted = shared.encryption().keyring.is_some(), "gossip started");
        Ok(Gossip {
            inner: Arc::new(Inner {
                commands,
                members,
                left_set,
                events,
                coords,
                gossip_interval: shared.timing.gossip_interval,
                shared: Mutex::new(Some(shared)),
                local_addr,
                advertised: addr,
                task: Mutex::new(Some(task)),
            }),
        })
    }

    /// The bound gossip address (the real port when started with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.inner.local_addr
    }

    /// Exchanges full state with each address over TCP; returns how many answered.
    ///
    /// Fails only if none did, listing why for each (unreachable, key mismatch...).
    pub async fn join(&self, addrs: &[SocketAddr]) -> Result<usize, GossipError> {
        let local = self
            .request(Command::LocalState)
            .await?
            .ok_or(GossipError::Left)?;
        let local = Arc::new(local);
        let shared = self.shared()?;
        let mut exchanges = JoinSet::new();
        for &addr in addrs {
            let (shared, local) = (shared.clone(), local.clone());
            exchanges.spawn(async move { (addr, node::push_pull(&shared, addr, &local).await) });
        }
        let mut joined = 0;
        let mut failures = Vec::new();
        while let Some(done) = exchanges.join_next().await {
            let Ok((addr, result)) = done else { continue };
            match result {
                Ok(state) => {
                    self.request(|done| Command::Merge(state, Some(done)))
                        .await?;
                    tracing::info!(%addr, "joined gossip pool");
                    joined += 1;
                }
                Err(reason) => {
                    tracing::warn!(%addr, %reason, "gossip join failed");
                    failures.push(JoinFailure { addr, reason });
                }
            }
        }
        if joined == 0 {
            failures.sort_by_key(|f| f.addr);
            return Err(GossipError::Join(failures));
        }
        Ok(joined)
    }

    /// Every known member, ourselves included, sorted by name; failed and
    /// left ones stay listed, pruned ones do not.
    pub fn members(&self) -> Vec<Member> {
        let left = self.inner.left_set.lock();
        self.inner
            .members
            .borrow()
            .iter()
            .filter(|m| !(m.status == MemberStatus::Left && left.is_pruned_name(&m.name)))
            .cloned()
            .collect()
    }

    /// A receiver updated on every membership change. Pruned members stay
    /// in it, as left, so the leader still removes them from the catalog.
    pub fn subscribe(&self) -> watch::Receiver<Vec<Member>> {
        self.inner.members.clone()
    }

    /// Replaces our tags; the pool sees them once the new identity has been gossiped.
    pub fn set_tags(&self, tags: BTreeMap<String, String>) {
        let _ = self.inner.commands.send(Command::SetTags(tags));
    }

    /// Leaves gracefully: others list us as Left, not Failed.
    ///
    /// Waits up to `timeout` for the leave to be gossiped; the node then stays
    /// silent until `shutdown`.
    pub async fn leave(&self, timeout: Duration) -> Result<(), GossipError> {
        self.request(Command::Leave).await?;
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if self.request(Command::LeaveProgress).await? {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(GossipError::LeaveTimeout(timeout));
            }
            // Pace retransmissions like regular gossip rounds.
            tokio::time::sleep(self.inner.gossip_interval).await;
        }
    }

    /// Marks the failed member `name` as left on every member, so the
    /// catalog drops it; with `prune` members also stop listing it.
    pub async fn force_leave(&self, name: &str, prune: bool) -> Result<(), GossipError> {
        let name = name.to_owned();
        self.request(|reply| Command::ForceLeave { name, prune, reply })
            .await?
            .map_err(GossipError::ForceLeave)
    }

    /// Fires a user event: recorded here and spread to every member.
    pub async fn fire_event(&self, new: NewEvent) -> Result<UserEvent, GossipError> {
        let event = UserEvent {
            id: random_id(),
            name: new.name,
            payload: new.payload,
            node_filter: new.node_filter,
            service_filter: new.service_filter,
            tag_filter: new.tag_filter,
            ltime: self.inner.events.lock().next_time(),
        };
        let size = event.encode().len();
        if size > MAX_EVENT_BYTES {
            return Err(GossipError::EventTooLarge(size));
        }
        let sent = event.clone();
        self.request(|reply| Command::FireEvent(sent, reply))
            .await??;
        Ok(event)
    }

    /// The recent user events (at most [`crate::EVENT_BUFFER`]), oldest first.
    pub fn events(&self) -> Vec<UserEvent> {
        self.inner.events.lock().recent()
    }

    /// Changes each time an event is recorded.
    pub fn subscribe_events(&self) -> watch::Receiver<u64> {
        self.inner.events.lock().subscribe()
    }

    /// This node's network coordinate, learned from round-trip probes.
    pub fn coordinate(&self) -> Coordinate {
        self.inner.coords.lock().vivaldi.coordinate().clone()
    }

    /// The latest coordinate each alive member we probed reported.
    pub fn peer_coordinates(&self) -> BTreeMap<String, Coordinate> {
        let view = self.inner.coords.lock();
        view.peers
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    /// The gossip encryption in force.
    pub fn encryption(&self) -> Result<Arc<Encryption>, GossipError> {
        Ok(self.shared()?.encryption())
    }

    /// Changes the staged-switch flags in place.
    pub fn set_verify(&self, incoming: bool, outgoing: bool) -> Result<(), GossipError> {
        let shared = self.shared()?;
        let mut current = shared.encryption.write();
        if (current.verify_incoming, current.verify_outgoing) != (incoming, outgoing) {
            tracing::info!(incoming, outgoing, "gossip encryption verify flags changed");
            *current = Arc::new(Encryption {
                verify_incoming: incoming,
                verify_outgoing: outgoing,
                ..(**current).clone()
            });
        }
        Ok(())
    }

    /// Turns encryption on with `keyring` where it was off (a key given by
    /// a config reload); persisted like any key change. A node that already
    /// has keys keeps them: those change through [`Gossip::key_op`].
    pub fn enable_encryption(&self, keyring: Keyring) -> Result<bool, GossipError> {
        let shared = self.shared()?;
        let mut current = shared.encryption.write();
        if current.keyring.is_some() {
            return Ok(false);
        }
        if let Some(path) = &shared.keyring_file {
            crate::encryption::save_keyring_file(path, &keyring).map_err(|e| {
                GossipError::Config(format!("writing the keyring {}: {e}", path.display()))
            })?;
        }
        tracing::info!("gossip encryption enabled");
        *current = Arc::new(Encryption {
            keyring: Some(keyring),
            ..(**current).clone()
        });
        Ok(true)
    }

    /// Applies `op` on every live member (this one included) and returns
    /// each member's answer; one that cannot be reached answers with why.
    pub async fn key_op(&self, op: KeyOp) -> Result<Vec<NodeAnswer>, GossipError> {
        let shared = self.shared()?;
        let me = self.inner.local_addr;
        let own = shared.apply_key_op(&op);
        let mut answers = Vec::new();
        let mut asks = JoinSet::new();
        for member in self.members() {
            if !matches!(member.status, MemberStatus::Alive | MemberStatus::Suspect) {
                continue;
            }
            if member.addr == me || member.addr == self.advertised() {
                answers.push(NodeAnswer {
                    node: member.name,
                    answer: own.clone(),
                });
                continue;
            }
            let (shared, op) = (shared.clone(), op.clone());
            asks.spawn(async move {
                let answer = node::key_op(&shared, member.addr, &op)
                    .await
                    .unwrap_or_else(|why| KeyAnswer {
                        error: Some(why),
                        ..Default::default()
                    });
                NodeAnswer {
                    node: member.name,
                    answer,
                }
            });
        }
        while let Some(done) = asks.join_next().await {
            if let Ok(answer) = done {
                answers.push(answer);
            }
        }
        answers.sort_by(|a, b| a.node.cmp(&b.node));
        Ok(answers)
    }

    /// Stops every task and closes the sockets without leaving (others will see us fail).
    pub async fn shutdown(&self) {
        let Some(shared) = self.inner.shared.lock().take() else {
            return;
        };
        shared.transport.close();
        drop(shared);
        let _ = self.inner.commands.send(Command::Shutdown);
        let task = self.inner.task.lock().take();
        if let Some(task) = task {
            let _ = task.await;
        }
    }

    fn advertised(&self) -> SocketAddr {
        self.inner.advertised
    }

    fn shared(&self) -> Result<Arc<Shared>, GossipError> {
        self.inner
            .shared
            .lock()
            .clone()
            .ok_or(GossipError::Shutdown)
    }

    async fn request<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<T>) -> Command,
    ) -> Result<T, GossipError> {
        let (tx, rx) = oneshot::channel();
        self.inner
            .commands
            .send(make(tx))
            .map_err(|_| GossipError::Shutdown)?;
        rx.await.map_err(|_| GossipError::Shutdown)
    }
}

/// A random version-4 UUID's bytes (Consul's event IDs are UUIDs).
fn random_id() -> [u8; 16] {
    let mut id: [u8; 16] = rand::random();
    id[6] = (id[6] & 0x0f) | 0x40;
    id[8] = (id[8] & 0x3f) | 0x80;
    id
}

impl std::fmt::Debug for Gossip {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gossip")
            .field("local_addr", &self.inner.local_addr)
            .finish_non_exhaustive()
    }
}

fn now_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
