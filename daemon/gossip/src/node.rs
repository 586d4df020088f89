//! The event loop that owns foca: packets in, timers, commands, packets out.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap, HashSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use foca::{AccumulatingRuntime, Foca, OwnedNotification, PostcardCodec, Timer};
use parking_lot::{Mutex, RwLock};
use rand::Rng as _;
use rand_foca::rngs::SmallRng;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinSet;
use tokio::time::{Duration, Instant, MissedTickBehavior};

use crate::coordinate::CoordinateView;
use crate::encryption::{self, Encryption, KeyAnswer, KeyOp, WarnLimit};
use crate::events::{EventLog, UserEvent};
use crate::identity::{LeaveHandler, LeaveNotice, LeftSet, NodeId, MAX_IDENTITY_LEN};
use crate::transport::Transport;
use crate::wire::{self, OpenError, PushPull, DECRYPT_FAILED};
use crate::{ForceLeaveError, GossipError, Member, MemberStatus, Timing};

mod rtt;

type Swim = Foca<NodeId, PostcardCodec, SmallRng, LeaveHandler>;

/// Members told of a new identity by push/pull right away (gossip spreads
/// it to the rest).
const IDENTITY_PUSH_PEERS: usize = 3;

/// Requests from the `Gossip` handle and from the node's own helper tasks.
pub(crate) enum Command {
    /// Our full state, encoded for push/pull; `None` once we have left.
    LocalState(oneshot::Sender<Option<Vec<u8>>>),
    /// State received by push/pull; the sender is told once it is applied.
    Merge(PushPull, Option<oneshot::Sender<()>>),
    SetTags(BTreeMap<String, String>),
    /// Starts a graceful leave.
    Leave(oneshot::Sender<()>),
    /// Marks a failed member as left (and with `prune`, forgets it) on
    /// every member: `force-leave`.
    ForceLeave {
        name: String,
        prune: bool,
        reply: oneshot::Sender<Result<(), ForceLeaveError>>,
    },
    /// Spreads a user event (already recorded by the caller's handler).
    FireEvent(UserEvent, oneshot::Sender<Result<(), GossipError>>),
    /// Gossips the leave again; answers true once nothing is left to send.
    LeaveProgress(oneshot::Sender<bool>),
    /// Stops the node and its helper tasks.
    Shutdown,
}

/// Settings shared by the node, its helper tasks and the handle.
pub(crate) struct Shared {
    pub transport: Arc<dyn Transport>,
    /// Swapped whole when keys or the verify flags change.
    pub encryption: RwLock<Arc<Encryption>>,
    pub keyring_file: Option<PathBuf>,
    pub timing: Timing,
    /// Key-mismatch warnings, rate-limited.
    pub key_warnings: WarnLimit,
}

impl Shared {
    /// The encryption in force now.
    pub fn encryption(&self) -> Arc<Encryption> {
        self.encryption.read().clone()
    }

    /// Applies a keyring change here and persists it before it takes effect.
    pub fn apply_key_op(&self, op: &KeyOp) -> KeyAnswer {
        let mut current = self.encryption.write();
        let (next, mut answer) = encryption::apply(current.keyring.as_ref(), op);
        if let Some(next) = next {
            if let Some(path) = &self.keyring_file {
                if let Err(e) = encryption::save_keyring_file(path, &next) {
                    answer.error = Some(format!("saving the keyring to {}: {e}", path.display()));
                    return answer;
                }
            }
            tracing::info!(?op, "gossip keyring changed");
            *current = Arc::new(Encryption {
                keyring: Some(next),
                ..(**current).clone()
            });
        }
        answer
    }

    /// Logs a key mismatch from `from`, at most once per ten seconds.
    pub fn warn_key_mismatch(&self, from: SocketAddr, what: &str) {
        if let Some(held) = self.key_warnings.due() {
            tracing::warn!(%from, held_back = held, "{what}");
        }
    }
}

/// The first byte of what an initiator sends on a TCP stream.
pub(crate) const STREAM_PUSH_PULL: u8 = 0;
pub(crate) const STREAM_KEYRING: u8 = 1;

pub(crate) struct Node {
    foca: Swim,
    rt: AccumulatingRuntime<NodeId>,
    shared: Arc<Shared>,
    left_set: Arc<Mutex<LeftSet>>,
    events: Arc<Mutex<EventLog>>,
    timers: BinaryHeap<Reverse<Scheduled>>,
    timer_seq: u64,
    members: watch::Sender<Vec<Member>>,
    /// Pool size the current foca config was computed for.
    pool_size: usize,
    /// We left gracefully: stay silent except to spread the leave.
    left: bool,
    /// Helper tasks (reader, acceptor, push/pull); aborted when the node stops.
    tasks: JoinSet<()>,
    commands: mpsc::WeakUnboundedSender<Command>,
    coords: Arc<Mutex<CoordinateView>>,
    /// Round-trip probes awaiting their answer, by sequence number.
    rtt_pending: HashMap<u64, rtt::PendingProbe>,
}

impl Node {
    pub fn new(
        id: NodeId,
        shared: Arc<Shared>,
        members: watch::Sender<Vec<Member>>,
        commands: mpsc::WeakUnboundedSender<Command>,
        left_set: Arc<Mutex<LeftSet>>,
        events: Arc<Mutex<EventLog>>,
        coords: Arc<Mutex<CoordinateView>>,
    ) -> Node {
        let foca = new_foca(id, &shared.timing, &left_set, &events);
        Node {
            foca,
            rt: AccumulatingRuntime::new(),
            shared,
            left_set,
            events,
            timers: BinaryHeap::new(),
            timer_seq: 0,
            members,
            pool_size: 1,
            left: false,
            tasks: JoinSet::new(),
            commands,
            coords,
            rtt_pending: HashMap::new(),
        }
    }

    /// Runs until every `Gossip` handle is dropped (or the task is aborted).
    pub async fn run(mut self, mut commands: mpsc::UnboundedReceiver<Command>) {
        let (packet_tx, mut packets) = mpsc::channel(1024);
        self.tasks
            .spawn(read_packets(self.shared.clone(), packet_tx));
        self.tasks
            .spawn(accept_streams(self.shared.clone(), self.commands.clone()));

        let timing = &self.shared.timing;
        // Random phase so a pool started together does not push/pull in lockstep.
        let phase = timing
            .push_pull_interval
            .mul_f64(rand::rng().random_range(0.5..1.5));
        let mut push_pull =
            tokio::time::interval_at(Instant::now() + phase, timing.push_pull_interval);
        push_pull.set_missed_tick_behavior(MissedTickBehavior::Delay);
        // Suspect/alive flips raise no foca notification; a periodic refresh catches them.
        let mut refresh = tokio::time::interval(timing.gossip_interval);
        refresh.set_missed_tick_behavior(MissedTickBehavior::Delay);
        // Coordinates learn from our own probes, one member per probe interval.
        let mut rtt_probe = tokio::time::interval(timing.probe_interval);
        rtt_probe.set_missed_tick_behavior(MissedTickBehavior::Delay);

        loop {
            let next_timer = self.timers.peek().map(|Reverse(s)| s.at);
            tokio::select! {
                cmd = commands.recv() => match cmd {
                    Some(Command::Shutdown) | None => break,
                    Some(cmd) => self.on_command(cmd),
                },
                Some((from, data)) = packets.recv() => self.on_packet(from, &data),
                _ = sleep_until(next_timer), if next_timer.is_some() => self.on_timers(),
                _ = push_pull.tick() => self.start_push_pull(),
                _ = refresh.tick() => self.publish(),
                _ = rtt_probe.tick() => self.probe_rtt(),
                Some(res) = self.tasks.join_next(), if !self.tasks.is_empty() => {
                    if let Err(e) = res {
                        if e.is_panic() {
                            tracing::error!(error = %e, "gossip helper task panicked");
                        }
                    }
                }
            }
        }
        // Wait for helpers so their sockets are closed when we return.
        self.tasks.shutdown().await;
    }

    // === inputs ===

    fn on_command(&mut self, cmd: Command) {
        match cmd {
            Command::LocalState(reply) => {
                let _ = reply.send((!self.left).then(|| self.local_state().encode()));
            }
            Command::Merge(state, done) => {
                if !self.left {
                    self.merge(state);
                }
                if let Some(done) = done {
                    let _ = done.send(());
                }
            }
            Command::SetTags(tags) => self.set_tags(tags),
            Command::Leave(reply) => {
                self.leave();
                let _ = reply.send(());
            }
            Command::ForceLeave { name, prune, reply } => {
                let _ = reply.send(self.force_leave(&name, prune));
            }
            Command::FireEvent(event, reply) => {
                let _ = reply.send(self.fire_event(event));
            }
            Command::LeaveProgress(reply) => {
                // Our leave notice rides with our own down update; once it has been
                // sent as often as any update would be, the pool has it. Other
                // queued updates need not hold us back.
                let done =
                    self.foca.num_members() == 0 || self.foca.custom_broadcast_backlog() == 0;
                if !done {
                    if let Err(e) = self.foca.gossip(&mut self.rt) {
                        tracing::debug!(error = %e, "gossiping leave failed");
                    }
                    self.drain();
                }
                let _ = reply.send(done);
            }
            Command::Shutdown => {}
        }
    }

    fn on_packet(&mut self, from: SocketAddr, data: &[u8]) {
        if self.left {
            return;
        }
        let enc = self.shared.encryption();
        let probe = wire::unmark_rtt(data);
        let data = probe.as_deref().unwrap_or(data);
        let plain = match wire::open(enc.keyring.as_ref(), enc.accepts_plaintext(), data) {
            Ok(plain) => plain,
            Err(OpenError::Decrypt | OpenError::Plaintext) => {
                self.shared.warn_key_mismatch(from, DECRYPT_FAILED);
                return;
            }
            Err(OpenError::Sealed) => {
                self.shared.warn_key_mismatch(
                    from,
                    "gossip packet is encrypted but this node has no -encrypt key; dropped",
                );
                return;
            }
            Err(e) => {
                tracing::debug!(%from, error = ?e, "dropped a packet that is not mesh gossip");
                return;
            }
        };
        if probe.is_some() {
            self.on_rtt_probe(from, &plain);
            return;
        }
        if let Err(e) = self.foca.handle_data(&plain, &mut self.rt) {
            tracing::debug!(%from, error = %e, "gossip packet rejected");
        }
        self.drain();
    }

    fn on_timers(&mut self) {
        let now = Instant::now();
        let mut due = Vec::new();
        while self.timers.peek().is_some_and(|Reverse(s)| s.at <= now) {
            let Reverse(s) = self.timers.pop().expect("peeked");
            due.push(s.timer);
        }
        // Foca wants indirect probes handled before the next probe when both are late.
        due.sort();
        for timer in due {
            if self.left {
                continue;
            }
            if let Err(e) = self.foca.handle_timer(timer, &mut self.rt) {
                tracing::debug!(error = %e, "gossip timer failed");
            }
        }
        self.drain();
    }

    // === actions ===

    fn merge(&mut self, state: PushPull) {
        {
            let mut left = self.left_set.lock();
            for (name, version) in &state.left {
                left.insert(name, *version);
            }
        }
        if self.is_isolated() {
            self.start_over(&state);
        }
        if let Err(e) = self
            .foca
            .apply_many(state.members.into_iter(), true, &mut self.rt)
        {
            tracing::debug!(error = %e, "applying push/pull state failed");
        }
        self.drain();
        self.publish();
    }

    /// Everyone we know is down in our eyes (we were cut off, or paused).
    fn is_isolated(&self) -> bool {
        let me = &self.foca.identity().name;
        self.foca.num_members() == 0
            && self
                .foca
                .iter_membership_state()
                .any(|m| &m.id().name != me)
    }

    /// Restarts foca under a newer identity before adopting a peer's view.
    ///
    /// Foca never revives an identity it saw go down, so after a partition an
    /// isolated node could not believe the peers it reaches again. Starting over
    /// lets the peer's state in; failures the peer does not know about are kept.
    fn start_over(&mut self, incoming: &PushPull) {
        let me = self.foca.identity().clone();
        let theirs: HashSet<&str> = incoming
            .members
            .iter()
            .map(|m| m.id().name.as_str())
            .collect();
        let keep: Vec<_> = self
            .foca
            .iter_membership_state()
            .filter(|m| m.id().name != me.name && !theirs.contains(m.id().name.as_str()))
            .cloned()
            .collect();
        tracing::info!("reconnected after isolation; rejoining the gossip pool");
        self.foca = new_foca(
            me.bumped(),
            &self.shared.timing,
            &self.left_set,
            &self.events,
        );
        // Timers of the old instance must not reach the new one.
        self.timers.clear();
        self.pool_size = 1;
        if let Err(e) = self.foca.apply_many(keep.into_iter(), false, &mut self.rt) {
            tracing::debug!(error = %e, "restoring failed members failed");
        }
    }

    fn set_tags(&mut self, tags: BTreeMap<String, String>) {
        if self.left || self.foca.identity().tags == tags {
            return;
        }
        let mut id = self.foca.identity().bumped();
        id.tags = tags;
        if id.encoded_len() > MAX_IDENTITY_LEN {
            tracing::warn!(
                limit = MAX_IDENTITY_LEN,
                "gossip tags not updated: name, datacenter and tags together are too large to gossip"
            );
            return;
        }
        if let Err(e) = self.foca.change_identity(id, &mut self.rt) {
            tracing::warn!(error = %e, "could not change gossip identity for new tags");
        }
        // change_identity disconnects until someone talks to us; we still know the
        // pool, so reconnect at once and keep probing.
        let _ = self.foca.apply_many(std::iter::empty(), true, &mut self.rt);
        self.drain();
        self.publish();
        // Foca drops every packet addressed to an identity we no longer
        // have, sender's news included. When several members change at once
        // (servers marking themselves initialized) each keeps probing the
        // others' old identities, and they mark each other failed until the
        // next periodic push/pull. Exchanging state now spreads the new
        // identity, and teaches us theirs, at once.
        use rand::seq::IndexedRandom as _;
        let alive: Vec<SocketAddr> = self.foca.iter_members().map(|m| m.id().addr).collect();
        let peers: Vec<SocketAddr> = alive
            .choose_multiple(&mut rand::rng(), IDENTITY_PUSH_PEERS)
            .copied()
            .collect();
        for peer in peers {
            self.spawn_push_pull(peer);
        }
    }

    fn leave(&mut self) {
        if self.left {
            return;
        }
        let id = self.foca.identity();
        let notice = LeaveNotice {
            name: id.name.clone(),
            version: id.version,
            prune: false,
        };
        let bytes = postcard::to_allocvec(&notice).expect("encoding to a Vec cannot fail");
        if let Err(e) = self.foca.add_broadcast(&bytes) {
            tracing::warn!(error = %e, "could not queue the leave notice");
        }
        if let Err(e) = self.foca.leave_cluster(&mut self.rt) {
            tracing::warn!(error = %e, "leaving the gossip pool failed");
        }
        self.left = true;
        tracing::info!(members = self.foca.num_members(), "left the gossip pool");
        self.drain();
        self.publish();
    }

    /// Spreads a leave notice on behalf of a member that is down. A live
    /// member is refused: it would only refute the notice (as in Serf).
    fn force_leave(&mut self, name: &str, prune: bool) -> Result<(), ForceLeaveError> {
        if self.left {
            return Err(ForceLeaveError::Left);
        }
        if name == self.foca.identity().name {
            return Err(ForceLeaveError::Alive(name.to_owned()));
        }
        let member = self
            .foca
            .iter_membership_state()
            .filter(|m| m.id().name == name)
            .max_by_key(|m| m.id().version)
            .cloned()
            .ok_or_else(|| ForceLeaveError::Unknown(name.to_owned()))?;
        if member.state() != foca::State::Down {
            return Err(ForceLeaveError::Alive(name.to_owned()));
        }
        let id = member.id();
        let notice = LeaveNotice {
            name: id.name.clone(),
            version: id.version,
            prune,
        };
        // Foca hands the notice to our own LeaveHandler, which records it
        // here first; recording it before would make it stale news that
        // foca never spreads.
        let bytes = postcard::to_allocvec(&notice).expect("encoding to a Vec cannot fail");
        if let Err(e) = self.foca.add_broadcast(&bytes) {
            tracing::warn!(error = %e, "could not queue the force-leave notice");
        }
        tracing::info!(node = %name, prune, "force-leave: member marked as left");
        self.drain();
        self.publish();
        Ok(())
    }

    /// Hands the event to foca, which passes it to our handler (recording
    /// it here) and queues it for gossip.
    fn fire_event(&mut self, event: UserEvent) -> Result<(), GossipError> {
        if self.left {
            return Err(GossipError::Left);
        }
        self.foca
            .add_broadcast(&event.encode())
            .map_err(|e| GossipError::Config(format!("could not queue the event: {e}")))?;
        // Send it now rather than at the next gossip round.
        if self.foca.num_members() > 0 {
            if let Err(e) = self.foca.gossip(&mut self.rt) {
                tracing::debug!(error = %e, "gossiping an event failed");
            }
        }
        self.drain();
        Ok(())
    }

    fn start_push_pull(&mut self) {
        if self.left {
            return;
        }
        use rand::seq::IndexedRandom as _;
        let me = &self.foca.identity().name;
        let mut alive = Vec::new();
        let mut failed = Vec::new();
        {
            let left = self.left_set.lock();
            for m in self.foca.iter_membership_state() {
                match m.state() {
                    _ if &m.id().name == me => {}
                    foca::State::Alive | foca::State::Suspect => alive.push(m.id().addr),
                    foca::State::Down if !left.has_left(m.id()) => failed.push(m.id().addr),
                    foca::State::Down => {}
                }
            }
        }
        let mut rng = rand::rng();
        let mut peers: Vec<SocketAddr> = alive.choose(&mut rng).copied().into_iter().collect();
        // Like Serf's reconnect: now and then try a failed member, always when
        // nobody is alive, so partitions heal once the network does.
        let odds = failed.len() as f64 / alive.len().max(1) as f64;
        if rng.random_bool(odds.min(1.0)) {
            peers.extend(failed.choose(&mut rng));
        }
        for peer in peers {
            self.spawn_push_pull(peer);
        }
    }

    fn spawn_push_pull(&mut self, peer: SocketAddr) {
        let local = self.local_state().encode();
        let shared = self.shared.clone();
        let commands = self.commands.clone();
        self.tasks.spawn(async move {
            match push_pull(&shared, peer, &local).await {
                Ok(state) => {
                    if let Some(tx) = commands.upgrade() {
                        let _ = tx.send(Command::Merge(state, None));
                    }
                }
                Err(reason) => tracing::debug!(%peer, %reason, "periodic push/pull failed"),
            }
        });
    }

    // === outputs ===

    /// Sends, schedules and reacts to whatever foca asked for.
    fn drain(&mut self) {
        let enc = self.shared.encryption();
        let keyring = enc.sealing();
        while let Some((to, packet)) = self.rt.to_send() {
            self.shared
                .transport
                .send_packet(to.addr, &wire::seal(keyring, &packet));
        }
        let now = Instant::now();
        while let Some((after, timer)) = self.rt.to_schedule() {
            self.timer_seq += 1;
            self.timers.push(Reverse(Scheduled {
                at: now + after,
                seq: self.timer_seq,
                timer,
            }));
        }
        let mut changed = false;
        while let Some(note) = self.rt.to_notify() {
            changed = true;
            match note {
                OwnedNotification::Defunct if !self.left => {
                    tracing::warn!("the gossip pool declared this node failed")
                }
                OwnedNotification::Rejoin(id) => {
                    tracing::info!(
                        version = id.version,
                        "rejoined the gossip pool after being declared failed"
                    )
                }
                OwnedNotification::Idle if !self.left => {
                    tracing::info!("no other live gossip members known")
                }
                _ => {}
            }
        }
        if changed || self.left_set.lock().dirty {
            self.publish();
        }
    }

    /// Rebuilds the member list and tells subscribers if it changed.
    fn publish(&mut self) {
        let mut list = {
            let me = self.foca.identity();
            let own = if self.left {
                MemberStatus::Left
            } else {
                MemberStatus::Alive
            };
            let mut list = vec![to_member(me, own)];
            let mut known: HashMap<&str, u64> = HashMap::new();
            let mut left = self.left_set.lock();
            left.dirty = false;
            // A previous life of ours (before a restart) is not another member.
            for m in self
                .foca
                .iter_membership_state()
                .filter(|m| m.id().name != me.name)
            {
                let status = match m.state() {
                    foca::State::Alive => MemberStatus::Alive,
                    foca::State::Suspect => MemberStatus::Suspect,
                    foca::State::Down if left.has_left(m.id()) => MemberStatus::Left,
                    foca::State::Down => MemberStatus::Failed,
                };
                known.insert(&m.id().name, m.id().version);
                list.push(to_member(m.id(), status));
            }
            // Leaves of identities foca has forgotten (or replaced) are no longer needed.
            left.retain(|name, version| name == me.name || known.get(name) == Some(&version));
            list
        };
        list.sort_by(|a, b| a.name.cmp(&b.name));
        {
            let mut view = self.coords.lock();
            let gone: Vec<String> = view
                .peers
                .keys()
                .filter(|name| {
                    !list.iter().any(|m| {
                        &m.name == *name
                            && matches!(m.status, MemberStatus::Alive | MemberStatus::Suspect)
                    })
                })
                .cloned()
                .collect();
            for name in gone {
                view.peers.remove(&name);
                view.vivaldi.forget(&name);
            }
        }

        let pool = self.foca.num_members() + 1;
        if pool != self.pool_size {
            self.pool_size = pool;
            if let Err(e) = self.foca.set_config(self.shared.timing.foca_config(pool)) {
                tracing::warn!(error = %e, "could not rescale gossip timing");
            }
        }

        self.members.send_if_modified(|current| {
            if *current == list {
                return false;
            }
            log_changes(current, &list);
            *current = list;
            true
        });
    }

    /// Everything we know, ourselves included, for a push/pull.
    fn local_state(&self) -> PushPull {
        let mut members: Vec<_> = self.foca.iter_membership_state().cloned().collect();
        members.push(foca::Member::alive(self.foca.identity().clone()));
        PushPull {
            members,
            left: self.left_set.lock().entries(),
        }
    }
}

pub(crate) fn new_foca(
    id: NodeId,
    timing: &Timing,
    left_set: &Arc<Mutex<LeftSet>>,
    events: &Arc<Mutex<EventLog>>,
) -> Swim {
    use rand_foca::SeedableRng as _;
    Foca::with_custom_broadcast(
        id,
        timing.foca_config(1),
        SmallRng::seed_from_u64(rand::rng().random()),
        PostcardCodec,
        LeaveHandler {
            left: left_set.clone(),
            events: events.clone(),
        },
    )
}

fn to_member(id: &NodeId, status: MemberStatus) -> Member {
    Member {
        name: id.name.clone(),
        addr: id.addr,
        status,
        role: id.role,
        dc: id.dc.clone(),
        tags: id.tags.clone(),
    }
}

/// Logs membership changes and counts them under Serf's metric names.
fn log_changes(before: &[Member], after: &[Member]) {
    use mesh_telemetry as t;
    let old: HashMap<&str, &Member> = before.iter().map(|m| (m.name.as_str(), m)).collect();
    let alive = after
        .iter()
        .filter(|m| m.status == MemberStatus::Alive)
        .count();
    t::gauge!(t::MEMBERLIST_MEMBERS).set(alive as f64);
    for m in after {
        let (name, addr) = (&m.name, m.addr);
        match old.get(name.as_str()) {
            None if m.status == MemberStatus::Alive => {
                t::counter!(t::SERF_MEMBER_JOIN).increment(1);
                tracing::info!(member = %name, %addr, "member joined")
            }
            Some(prev) if prev.status != m.status => match m.status {
                MemberStatus::Alive => {
                    t::counter!(t::SERF_MEMBER_JOIN).increment(1);
                    tracing::info!(member = %name, %addr, "member alive")
                }
                MemberStatus::Suspect => tracing::debug!(member = %name, %addr, "member suspected"),
                MemberStatus::Failed => {
                    t::counter!(t::SERF_MEMBER_FAILED).increment(1);
                    tracing::info!(member = %name, %addr, "member failed")
                }
                MemberStatus::Left => {
                    t::counter!(t::SERF_MEMBER_LEFT).increment(1);
                    tracing::info!(member = %name, %addr, "member left")
                }
            },
            Some(prev) if prev.tags != m.tags || prev.addr != m.addr => {
                tracing::info!(member = %name, %addr, "member updated")
            }
            _ => {}
        }
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// A foca timer waiting for its deadline; ordered by deadline, then submission.
struct Scheduled {
    at: Instant,
    seq: u64,
    timer: Timer<NodeId>,
}

impl PartialEq for Scheduled {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}
impl Eq for Scheduled {}
impl PartialOrd for Scheduled {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Scheduled {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.at, self.seq).cmp(&(other.at, other.seq))
    }
}

// === helper tasks ===

async fn read_packets(shared: Arc<Shared>, tx: mpsc::Sender<(SocketAddr, Vec<u8>)>) {
    loop {
        match shared.transport.recv_packet().await {
            Ok(packet) => {
                if tx.send(packet).await.is_err() {
                    return;
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotConnected => return,
            Err(e) => {
                // Transient socket errors (ICMP noise and the like): keep reading.
                tracing::debug!(error = %e, "gossip packet receive failed");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}

async fn accept_streams(shared: Arc<Shared>, commands: mpsc::WeakUnboundedSender<Command>) {
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            accepted = shared.transport.accept() => match accepted {
                // Push/pulls are rare (joins and a periodic sync): a flood
                // of them is refused rather than served at any cost.
                Ok((peer, _)) if conns.len() >= MAX_PUSH_PULLS => {
                    tracing::debug!(%peer, "push/pull refused: {MAX_PUSH_PULLS} already in progress");
                }
                Ok((peer, conn)) => {
                    conns.spawn(serve_push_pull(shared.clone(), commands.clone(), peer, conn));
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotConnected => return,
                Err(e) => {
                    tracing::debug!(error = %e, "push/pull accept failed");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            },
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
}

/// Incoming push/pulls served at once.
const MAX_PUSH_PULLS: usize = 32;

/// Why a message could not be opened, as told to the other end.
fn refusal(me: SocketAddr, e: &OpenError) -> String {
    match e {
        OpenError::Decrypt => format!(
            "encryption key mismatch: {me} could not decrypt the push/pull with any installed -encrypt key"
        ),
        OpenError::Plaintext => format!(
            "encryption key mismatch: {me} requires gossip encryption but the sender has no -encrypt key"
        ),
        OpenError::Sealed => format!(
            "encryption key mismatch: {me} has no -encrypt key but the sender encrypts gossip"
        ),
        OpenError::Remote(_) | OpenError::Malformed => {
            format!("{me} did not understand the push/pull")
        }
    }
}

/// Answers one incoming stream: a push/pull (read their state, send ours,
/// merge theirs) or a keyring change.
async fn serve_push_pull(
    shared: Arc<Shared>,
    commands: mpsc::WeakUnboundedSender<Command>,
    peer: SocketAddr,
    mut conn: Box<dyn crate::transport::Conn>,
) {
    let me = shared.transport.local_addr();
    let exchange = async {
        let enc = shared.encryption();
        let opened =
            wire::receive_any(&mut conn, enc.keyring.as_ref(), enc.accepts_plaintext()).await?;
        let (plain, sealed) = match opened {
            Ok(opened) => opened,
            Err(e) => {
                let reason = refusal(me, &e);
                shared.warn_key_mismatch(peer, &format!("{DECRYPT_FAILED}: {reason}"));
                wire::write_frame(&mut conn, &wire::error_frame(&reason)).await?;
                return Ok(());
            }
        };
        let (kind, body) = plain.split_first().unwrap_or((&u8::MAX, &[]));
        if *kind == STREAM_KEYRING {
            let answer = match postcard::from_bytes::<KeyOp>(body) {
                // Only a holder of an installed key may change the keys.
                Ok(_) if !sealed => KeyAnswer {
                    error: Some(format!(
                        "{me} refuses keyring changes that are not encrypted with an installed key"
                    )),
                    ..Default::default()
                },
                Ok(op) => shared.apply_key_op(&op),
                Err(e) => KeyAnswer {
                    error: Some(format!("{me} could not decode the keyring request: {e}")),
                    ..Default::default()
                },
            };
            let reply = postcard::to_allocvec(&answer).expect("encoding to a Vec cannot fail");
            // Sealed with the keys as they are now (a `use` has taken effect).
            let enc = shared.encryption();
            wire::send(&mut conn, enc.sealing(), &reply).await?;
            return Ok(());
        }
        let theirs = match (kind, PushPull::decode(body)) {
            (&STREAM_PUSH_PULL, Ok(state)) => state,
            (_, Err(e)) => {
                let reason = format!("{me} could not decode the push/pull: {e}");
                wire::write_frame(&mut conn, &wire::error_frame(&reason)).await?;
                return Ok(());
            }
            (other, Ok(_)) => {
                let reason = format!("{me} does not know stream kind {other}");
                wire::write_frame(&mut conn, &wire::error_frame(&reason)).await?;
                return Ok(());
            }
        };
        let Some(tx) = commands.upgrade() else {
            return Ok(());
        };
        // Merge before answering: if they think we failed, we rejoin under a new
        // identity first and they learn it from this very reply.
        let (merged, done) = oneshot::channel();
        let _ = tx.send(Command::Merge(theirs, Some(merged)));
        let _ = done.await;
        let (reply, local) = oneshot::channel();
        let _ = tx.send(Command::LocalState(reply));
        match local.await.ok().flatten() {
            Some(local) => {
                wire::send(&mut conn, enc.sealing(), &local).await?;
            }
            None => {
                let reason = format!("{me} has left the gossip pool");
                wire::write_frame(&mut conn, &wire::error_frame(&reason)).await?;
            }
        }
        Ok::<_, std::io::Error>(())
    };
    match tokio::time::timeout(shared.timing.tcp_timeout, exchange).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::debug!(%peer, error = %e, "push/pull from peer failed"),
        Err(_) => tracing::debug!(%peer, "push/pull from peer timed out"),
    }
}

/// One request over TCP as the initiator: `kind` and `body` out, the
/// reply's plaintext back.
async fn exchange(
    shared: &Shared,
    to: SocketAddr,
    kind: u8,
    body: &[u8],
) -> Result<Vec<u8>, String> {
    let enc = shared.encryption();
    let mut message = Vec::with_capacity(1 + body.len());
    message.push(kind);
    message.extend_from_slice(body);
    let exchange = async {
        let mut conn = shared
            .transport
            .connect(to)
            .await
            .map_err(|e| format!("unreachable ({e})"))?;
        wire::send(&mut conn, enc.sealing(), &message)
            .await
            .map_err(|e| format!("sending failed ({e})"))?;
        let reply = wire::receive_any(&mut conn, enc.keyring.as_ref(), enc.accepts_plaintext())
            .await
            .map_err(|e| format!("no reply ({e}); is this a mesh gossip port?"))?;
        reply.map(|(plain, _)| plain).map_err(|e| match e {
            OpenError::Decrypt => "encryption key mismatch: could not decrypt the reply with any installed -encrypt key".to_owned(),
            OpenError::Plaintext => "encryption key mismatch: the remote node does not encrypt gossip but this node has an -encrypt key".to_owned(),
            OpenError::Sealed => "encryption key mismatch: the remote node encrypts gossip but this node has no -encrypt key".to_owned(),
            OpenError::Remote(reason) => reason,
            OpenError::Malformed => "the reply is not mesh gossip".to_owned(),
        })
    };
    tokio::time::timeout(shared.timing.tcp_timeout, exchange)
        .await
        .unwrap_or_else(|_| Err(format!("timed out after {:?}", shared.timing.tcp_timeout)))
}

/// One push/pull as the initiator: send our state, return theirs.
pub(crate) async fn push_pull(
    shared: &Shared,
    to: SocketAddr,
    local: &[u8],
) -> Result<PushPull, String> {
    let plain = exchange(shared, to, STREAM_PUSH_PULL, local).await?;
    PushPull::decode(&plain).map_err(|e| format!("malformed reply ({e})"))
}

/// Asks the member at `to` to apply a keyring change (or list its keys).
pub(crate) async fn key_op(
    shared: &Shared,
    to: SocketAddr,
    op: &KeyOp,
) -> Result<KeyAnswer, String> {
    let body = postcard::to_allocvec(op).expect("encoding to a Vec cannot fail");
    let plain = exchange(shared, to, STREAM_KEYRING, &body).await?;
    postcard::from_bytes(&plain).map_err(|e| format!("malformed keyring reply ({e})"))
}
