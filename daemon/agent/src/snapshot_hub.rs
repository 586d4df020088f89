//! The snapshot hub: each proxy's snapshot is computed once per relevant
//! change and every watcher of that proxy (HTTP blocking queries, managed
//! sidecars, later the xDS server) shares the result through a
//! `watch::Receiver`.
//!
//! On a server one task recomputes the snapshots of all watched proxies in
//! one pass when the catalog, health, config entries (intentions), the CA,
//! this agent's registrations or its live settings change. Parts shared by
//! many proxies (a destination's intentions and protocol, an upstream's
//! endpoints) are computed once per pass. A snapshot is published only when
//! its content differs from the last one, so its version moves only then.
//!
//! A client agent holds no catalog and no CA: each watched proxy has one
//! relay task that long-polls a server for it (with a CSR, so the key stays
//! here) and publishes what comes back, however many local watchers there
//! are.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::http::StatusCode;
use mesh_config::LiveConfig;
use mesh_proxy::{IntentionSet, Leaf, Protocol, ProxySnapshot};
use mesh_state::{StateStore, Table};
use mesh_types::Service;
use parking_lot::Mutex;
use tokio::sync::{watch, Notify};

use crate::connect_ca::{CaRequestError, CachedLeaf, ConnectCa};
use crate::local::LocalState;
use crate::snapshot_compute::{
    chain_of, compute, linked_services, service_defaults_body, service_protocol, tls_hosts, Inputs,
    Parts,
};
use crate::stop::Stop;
use crate::writes::Writes;

/// How long a proxy nobody watches keeps its slot: blocking queries let go
/// between polls, and a slot that survives them keeps its version.
const IDLE_GRACE: Duration = Duration::from_secs(60);

/// How soon a failed leaf signing is retried while the last snapshot stays.
const LEAF_RETRY_SECS: i64 = 5;

/// The state tables a snapshot is computed from.
const INPUT_TABLES: [Table; 4] = [Table::Services, Table::Checks, Table::Config, Table::Ca];

/// The kinds of service a snapshot is computed for.
const SERVED_KINDS: [&str; 3] = ["connect-proxy", "ingress-gateway", "terminating-gateway"];

/// Longest a relayed blocking query to a server waits.
const RELAY_WAIT: Duration = Duration::from_secs(300);

/// Which proxy, as seen by whom.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct ProxyKey {
    /// The proxy's service ID.
    pub id: String,
    /// On a server: the client agent's node the proxy is registered on
    /// (`None`: this agent's own registration).
    pub node: Option<String>,
    /// On a server: the CSR a client agent sent for the proxy's leaf.
    pub csr: Option<String>,
    /// On a client agent: the token the relay presents to the server (the
    /// server checks the proxy's own token).
    pub token: Option<String>,
}

impl ProxyKey {
    /// This agent's own proxy `id`.
    pub(crate) fn local(id: &str) -> Self {
        ProxyKey {
            id: id.to_string(),
            node: None,
            csr: None,
            token: None,
        }
    }
}

/// What a watcher sees.
#[derive(Clone, Default)]
pub(crate) enum Watched {
    /// The first snapshot is being computed.
    #[default]
    Pending,
    Ready(Arc<Published>),
    /// No such proxy, or it cannot be served now; the slot is gone and the
    /// next watcher starts afresh.
    Failed(Arc<Failure>),
}

/// A published snapshot and its JSON, rendered once for all HTTP watchers.
pub(crate) struct Published {
    pub snapshot: Arc<ProxySnapshot>,
    json: OnceLock<Bytes>,
}

impl Published {
    fn new(snapshot: ProxySnapshot) -> Arc<Self> {
        Arc::new(Published {
            snapshot: Arc::new(snapshot),
            json: OnceLock::new(),
        })
    }

    /// The snapshot as the HTTP endpoint sends it.
    pub(crate) fn json(&self) -> Bytes {
        self.json
            .get_or_init(|| {
                serde_json::to_vec(&*self.snapshot)
                    .map(Bytes::from)
                    .unwrap_or_default()
            })
            .clone()
    }
}

/// Why a proxy's snapshot cannot be served: the HTTP answer to give.
#[derive(Debug)]
pub(crate) struct Failure {
    pub status: StatusCode,
    pub body: String,
}

impl Failure {
    fn new(status: StatusCode, message: impl std::fmt::Display) -> Arc<Self> {
        Arc::new(Failure {
            status,
            body: format!("{message}\n"),
        })
    }

    fn unknown(id: &str) -> Arc<Self> {
        Failure::new(
            StatusCode::NOT_FOUND,
            format!("unknown proxy service ID {id:?} on this agent"),
        )
    }

    fn from_ca(e: CaRequestError) -> Arc<Self> {
        match e {
            CaRequestError::Bad(m) => Failure::new(StatusCode::BAD_REQUEST, format!("csr: {m}")),
            CaRequestError::Unavailable(m) => Failure::new(StatusCode::SERVICE_UNAVAILABLE, m),
            CaRequestError::RateLimited(m) => Failure::new(StatusCode::TOO_MANY_REQUESTS, m),
        }
    }
}

/// The content last published for a proxy, and its version: the version
/// moves only when the content does.
#[derive(Default)]
pub(crate) struct Versioned {
    content: Option<ProxySnapshot>,
    version: u64,
}

impl Versioned {
    /// Offers freshly computed content (its `index` ignored); returns the
    /// snapshot to publish, stamped with its version, if it differs from the
    /// last. `floor` keeps versions above what an earlier slot for the
    /// same proxy may have handed out.
    pub(crate) fn offer(
        &mut self,
        mut content: ProxySnapshot,
        floor: u64,
    ) -> Option<ProxySnapshot> {
        content.index = 0;
        if self.content.as_ref() == Some(&content) {
            return None;
        }
        self.version = (self.version + 1).max(floor);
        let mut out = content.clone();
        out.index = self.version;
        self.content = Some(content);
        Some(out)
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.content.is_none()
    }
}

struct Slot {
    tx: Arc<watch::Sender<Watched>>,
    generation: u64,
    versioned: Versioned,
    /// Server: the leaf in the last snapshot and when it next changes.
    leaf: Option<CachedLeaf>,
    leaf_due: i64,
    /// Since when nobody has watched this slot.
    idle_since: Option<Instant>,
    /// The service the proxy stands for, as of its last snapshot.
    destination: Option<String>,
    /// The services its upstreams name, as of its last snapshot.
    upstreams: Vec<String>,
    /// A gateway: its config entry and the chains of the services behind
    /// it shape it, so any config change recomputes it.
    gateway: bool,
}

/// What snapshots are computed from: this agent's state, its registrations,
/// the CA and the live settings, and (client agents) the way to a server.
pub(crate) struct HubInputs {
    pub state: Arc<StateStore>,
    pub local: Arc<LocalState>,
    pub ca: Arc<ConnectCa>,
    pub live: watch::Receiver<Arc<LiveConfig>>,
    pub shutdown: watch::Receiver<Stop>,
    pub node_name: String,
    pub datacenter: String,
    /// Servers compute snapshots; client agents relay them.
    pub server: bool,
    /// A client agent's way to find servers.
    pub writes: Arc<Writes>,
    /// Requests to servers.
    pub http: reqwest::Client,
    /// The most proxies kept at once (`limits.proxy_snapshots_max_watched`).
    pub max_watched: usize,
}

/// Shared by the HTTP endpoint, managed sidecars and the hub's own tasks.
pub(crate) struct SnapshotHub {
    /// The agent's runtime: relays run there, whoever subscribes.
    runtime: tokio::runtime::Handle,
    inputs: HubInputs,
    slots: Mutex<HashMap<ProxyKey, Slot>>,
    /// A server slot waits for its first pass.
    added: Notify,
    generations: AtomicU64,
    /// A client agent's key and CSR per `<node>/<service>`, made once.
    client_keys: Mutex<HashMap<String, (mesh_ca::SecretPem, String)>>,
    /// Recomputations of all watched snapshots (server).
    passes: AtomicU64,
    /// Snapshots handed out with a new version.
    published: AtomicU64,
    /// The newest catalog, config or CA index the last finished pass read.
    pass_index: AtomicU64,
}

impl SnapshotHub {
    /// A hub whose tasks run on the current runtime.
    pub(crate) fn new(inputs: HubInputs) -> Self {
        SnapshotHub {
            runtime: tokio::runtime::Handle::current(),
            inputs,
            slots: Default::default(),
            added: Notify::new(),
            generations: AtomicU64::new(0),
            client_keys: Default::default(),
            passes: AtomicU64::new(0),
            published: AtomicU64::new(0),
            pass_index: AtomicU64::new(0),
        }
    }

    /// The hub's counters and gauge, in Prometheus' text format.
    pub(crate) fn metrics_text(&self) -> String {
        format!(
            "# HELP mesh_proxy_snapshot_passes_total Times the watched proxy snapshots were recomputed.\n\
             # TYPE mesh_proxy_snapshot_passes_total counter\n\
             mesh_proxy_snapshot_passes_total {}\n\
             # HELP mesh_proxy_snapshots_published_total Proxy snapshots handed out with a new version.\n\
             # TYPE mesh_proxy_snapshots_published_total counter\n\
             mesh_proxy_snapshots_published_total {}\n\
             # HELP mesh_proxy_snapshot_pass_index The newest catalog, config or CA index the last recomputation read.\n\
             # TYPE mesh_proxy_snapshot_pass_index gauge\n\
             mesh_proxy_snapshot_pass_index {}\n\
             # HELP mesh_proxy_snapshots_watched Proxies whose snapshot the hub keeps.\n\
             # TYPE mesh_proxy_snapshots_watched gauge\n\
             mesh_proxy_snapshots_watched {}\n",
            self.passes.load(Ordering::Relaxed),
            self.published.load(Ordering::Relaxed),
            self.pass_index.load(Ordering::Relaxed),
            self.slots.lock().len()
        )
    }
}

/// A receiver of proxy `key`'s snapshot; its first value may be
/// [`Watched::Pending`].
pub(crate) fn subscribe(hub: &Arc<SnapshotHub>, key: ProxyKey) -> watch::Receiver<Watched> {
    let mut slots = hub.slots.lock();
    if let Some(slot) = slots.get_mut(&key) {
        slot.idle_since = None;
        return slot.tx.subscribe();
    }
    if slots.len() >= hub.inputs.max_watched {
        // Each slot holds a snapshot (and, for a client's CSR, a leaf) for
        // a while after its last watcher: refuse rather than grow.
        let failure = Failure::new(
            StatusCode::TOO_MANY_REQUESTS,
            format!(
                "this agent already watches {} proxies (limits.proxy_snapshots_max_watched); retry once some are gone",
                hub.inputs.max_watched
            ),
        );
        return watch::channel(Watched::Failed(failure)).1;
    }
    let (tx, rx) = watch::channel(Watched::Pending);
    let tx = Arc::new(tx);
    let generation = hub.generations.fetch_add(1, Ordering::Relaxed);
    slots.insert(
        key.clone(),
        Slot {
            tx: tx.clone(),
            generation,
            versioned: Versioned::default(),
            leaf: None,
            leaf_due: 0,
            idle_since: None,
            destination: None,
            upstreams: Vec::new(),
            gateway: false,
        },
    );
    drop(slots);
    if hub.inputs.server {
        hub.added.notify_one();
    } else {
        hub.runtime.spawn(relay(hub.clone(), key, generation, tx));
    }
    rx
}

/// Drops slot `key` if it is still generation `generation`.
fn remove(hub: &SnapshotHub, key: &ProxyKey, generation: u64) {
    let mut slots = hub.slots.lock();
    if slots.get(key).is_some_and(|s| s.generation == generation) {
        slots.remove(key);
    }
}

/// The server's hub task: one pass per relevant change.
pub(crate) async fn run(hub: Arc<SnapshotHub>) -> anyhow::Result<()> {
    let inputs = &hub.inputs;
    let mut watches = INPUT_TABLES.map(|t| inputs.state.hub().subscribe(t));
    let mut local = inputs.local.versions.subscribe();
    // Live settings carry the intention default every snapshot holds.
    let mut live = inputs.live.clone();
    let mut stop = inputs.shutdown.clone();
    let mut state = PassState::default();
    let mut everything = true;
    loop {
        for w in &mut watches {
            w.borrow_and_update();
        }
        local.borrow_and_update();
        live.borrow_and_update();
        let next_due = pass(&hub, &mut state, std::mem::take(&mut everything)).await;
        // At least once per grace period, so slots nobody watches go.
        let until_due = (next_due - mesh_ca::unix_now()).clamp(1, IDLE_GRACE.as_secs() as i64);
        let wake = tokio::time::Instant::now() + Duration::from_secs(until_due as u64);
        let [a, b, c, d] = &mut watches;
        tokio::select! {
            _ = a.changed() => {}
            _ = b.changed() => {}
            _ = c.changed() => {}
            _ = d.changed() => {}
            _ = local.changed() => {}
            _ = hub.added.notified() => {}
            _ = live.changed() => everything = true,
            _ = tokio::time::sleep_until(wake) => {}
            _ = stop.wait_for(|s| *s != Stop::Running) => return Ok(()),
        }
    }
}

/// What a pass remembers for the next one.
#[derive(Default)]
struct PassState {
    /// The stored CA's modify index.
    ca: Option<u64>,
    /// The input tables' indexes and the local version last read.
    seen: Option<([u64; 4], u64)>,
    /// Each watched destination's intentions and protocol, as last computed.
    destinations: HashMap<String, (IntentionSet, Protocol, String)>,
    /// The terminating gateway entries' versions, as last seen.
    linking: Option<Vec<u64>>,
    /// Each watched upstream's protocol and discovery chain, as last computed.
    upstreams: HashMap<String, (Protocol, Option<mesh_chain::CompiledChain>)>,
}

/// What one pass needs to know of a slot.
struct Want {
    key: ProxyKey,
    generation: u64,
    refresh_leaf: bool,
}

/// A slot's leaf after a pass.
enum LeafUpdate {
    Keep,
    Set(Option<Box<CachedLeaf>>),
    Failed(CaRequestError),
}

/// Recompute the slots whose inputs may have changed (all of them unless
/// only intentions or config entries did, then those of the destinations
/// whose intentions or protocol changed); publish the ones whose content
/// changed. Returns when the earliest leaf changes (unix seconds).
async fn pass(hub: &SnapshotHub, st: &mut PassState, everything: bool) -> i64 {
    let agent = &hub.inputs;
    hub.passes.fetch_add(1, Ordering::Relaxed);
    let now = mesh_ca::unix_now();
    let stored = agent.ca.stored_ca();
    let ca_index = stored.as_ref().map(|(_, i)| *i);
    let ca_changed = ca_index != st.ca;
    st.ca = ca_index;
    let default_allow = agent.live.borrow().acl.default_policy == mesh_config::AclPolicy::Allow;
    let tables = agent.state.read(|s| INPUT_TABLES.map(|t| s.table_index(t)));
    let local_version = agent.local.version();
    // Only config entries changed (or nothing: a new slot, a leaf due)?
    let config_only = !everything
        && !ca_changed
        && st.seen.is_some_and(|(seen, v)| {
            let others_same = INPUT_TABLES
                .iter()
                .zip(seen.iter().zip(&tables))
                .all(|(table, (a, b))| *table == Table::Config || a == b);
            v == local_version && others_same
        });
    st.seen = Some((tables, local_version));
    // Linking a service to a terminating gateway moves every caller's
    // endpoints to the gateway: recompute them all.
    let linking: Vec<u64> = agent.state.read(|s| {
        s.config_entries("terminating-gateway")
            .map(|e| e.modify_index)
            .collect()
    });
    let config_only = config_only && st.linking.as_ref() == Some(&linking);
    st.linking = Some(linking);
    // (destinations whose intentions or protocol changed, upstreams whose protocol did)
    let changed: Option<(HashSet<String>, HashSet<String>)> = config_only.then(|| {
        let (watched, upstreams): (HashSet<String>, HashSet<String>) = {
            let slots = hub.slots.lock();
            (
                slots
                    .values()
                    .filter_map(|s| s.destination.clone())
                    .collect(),
                slots
                    .values()
                    .flat_map(|s| s.upstreams.iter().cloned())
                    .collect(),
            )
        };
        agent.state.read(|s| {
            let destinations = watched
                .into_iter()
                .filter(|dest| {
                    let now = (
                        IntentionSet::for_destination(s.intentions(), dest, default_allow),
                        service_protocol(s, dest),
                        service_defaults_body(s, dest),
                    );
                    let changed = st.destinations.get(dest) != Some(&now);
                    st.destinations.insert(dest.clone(), now);
                    changed
                })
                .collect();
            let upstreams = upstreams
                .into_iter()
                .filter(|up| {
                    let now = (service_protocol(s, up), chain_of(s, up, &agent.datacenter));
                    let changed = st.upstreams.get(up) != Some(&now);
                    st.upstreams.insert(up.clone(), now);
                    changed
                })
                .collect();
            (destinations, upstreams)
        })
    });
    let wants: Vec<Want> = {
        let mut slots = hub.slots.lock();
        let idle_for = |s: &Slot| s.idle_since.map(|t| t.elapsed());
        slots.retain(|_, s| {
            if s.tx.receiver_count() > 0 {
                s.idle_since = None;
            } else {
                s.idle_since.get_or_insert_with(Instant::now);
            }
            idle_for(s).is_none_or(|d| d < IDLE_GRACE)
        });
        slots
            .iter()
            .filter(|(_, s)| {
                let affected = match (&changed, &s.destination) {
                    (Some((destinations, upstreams)), Some(dest)) => {
                        destinations.contains(dest)
                            || s.upstreams.iter().any(|u| upstreams.contains(u))
                    }
                    _ => true,
                };
                affected || s.gateway || s.versioned.is_empty() || now >= s.leaf_due
            })
            .map(|(key, s)| Want {
                key: key.clone(),
                generation: s.generation,
                // A gateway's hosts may have changed: the CA cache answers if not.
                refresh_leaf: s.leaf.is_none() || ca_changed || now >= s.leaf_due || s.gateway,
            })
            .collect()
    };
    if !wants.is_empty() {
        recompute(hub, st, &wants, stored, now, default_allow).await;
    }
    hub.pass_index
        .store(tables.into_iter().max().unwrap_or(0), Ordering::Relaxed);
    let slots = hub.slots.lock();
    let watched: HashSet<&String> = slots
        .values()
        .filter_map(|s| s.destination.as_ref())
        .collect();
    st.destinations.retain(|d, _| watched.contains(d));
    let upstreams: HashSet<&String> = slots.values().flat_map(|s| s.upstreams.iter()).collect();
    st.upstreams.retain(|u, _| upstreams.contains(u));
    slots
        .values()
        .map(|s| s.leaf_due)
        .min()
        .unwrap_or(now + 3600)
        .max(now)
}

/// Recompute `wants` and publish the changed ones.
async fn recompute(
    hub: &SnapshotHub,
    st: &mut PassState,
    wants: &[Want],
    stored: Option<(crate::connect_ca::StoredCa, u64)>,
    now: i64,
    default_allow: bool,
) {
    let agent = &hub.inputs;
    // Registrations: this agent's own, or the catalog's for a client's node.
    let registrations: Vec<Option<Service>> = {
        let own = agent.local.services_of(
            wants
                .iter()
                .map(|w| w.key.node.is_none().then_some(w.key.id.as_str())),
        );
        agent.state.read(|s| {
            wants
                .iter()
                .zip(own)
                .map(|(w, own)| match &w.key.node {
                    None => own,
                    Some(node) => s.service(node, &w.key.id).cloned(),
                })
                .map(|svc| svc.filter(|s| SERVED_KINDS.contains(&s.kind.as_str())))
                .collect()
        })
    };
    // Leaves, signed or taken from the CA's cache only when due.
    let domain = agent.live.borrow().dns.domain.clone();
    // A gateway is its own identity; its TLS listeners' hosts are DNS SANs.
    let gateway_hosts: Vec<Vec<String>> = agent.state.read(|s| {
        registrations
            .iter()
            .map(|reg| match reg {
                Some(svc) if svc.kind == "ingress-gateway" => {
                    tls_hosts(s, &svc.name, &domain, &agent.datacenter)
                }
                _ => Vec::new(),
            })
            .collect()
    });
    let mut leaves = Vec::with_capacity(wants.len());
    for ((w, reg), dns) in wants.iter().zip(&registrations).zip(&gateway_hosts) {
        let dest = reg.as_ref().and_then(|s| match s.kind.as_str() {
            "connect-proxy" => s
                .proxy
                .as_ref()
                .map(|p| p.destination_service_name.as_str()),
            _ => Some(s.name.as_str()),
        });
        let leaf = match (&stored, dest, &w.key.node, &w.key.csr) {
            (None, _, _, _) | (_, None, _, _) | (_, _, Some(_), None) => Ok(None),
            _ if !w.refresh_leaf => {
                leaves.push(LeafUpdate::Keep);
                continue;
            }
            (Some(_), Some(dest), None, _) if !dns.is_empty() => {
                agent.ca.leaf_with_dns(dest, dns).await.map(Some)
            }
            (Some(_), Some(dest), None, _) => agent.ca.leaf_for(dest).await.map(Some),
            (Some(_), Some(dest), Some(node), Some(csr)) => {
                agent.ca.leaf_for_csr(node, dest, csr, dns).await.map(Some)
            }
        };
        leaves.push(match leaf {
            Ok(leaf) => LeafUpdate::Set(leaf.map(Box::new)),
            Err(e) => LeafUpdate::Failed(e),
        });
    }
    // A terminating gateway presents each linked service's own leaf.
    let linked_names: Vec<Vec<String>> = agent.state.read(|s| {
        registrations
            .iter()
            .map(|reg| match reg {
                Some(svc) if svc.kind == "terminating-gateway" => linked_services(s, &svc.name)
                    .into_iter()
                    .map(|l| l.name)
                    .collect(),
                _ => Vec::new(),
            })
            .collect()
    });
    let mut linked_leaves: Vec<Vec<(String, CachedLeaf)>> = Vec::with_capacity(wants.len());
    for names in &linked_names {
        let mut got = Vec::new();
        for name in names.iter().filter(|_| stored.is_some()) {
            match agent.ca.leaf_for(name).await {
                Ok(leaf) => got.push((name.clone(), leaf)),
                Err(e) => {
                    tracing::warn!(service = %name, error = %e, "leaf for a terminating gateway's linked service")
                }
            }
        }
        linked_leaves.push(got);
    }
    let (td, roots) = stored
        .as_ref()
        .map(|(s, _)| (s.state.trust_domain.clone(), s.state.trust_bundle()))
        .unwrap_or_default();
    let inputs = Inputs {
        datacenter: &agent.datacenter,
        domain: &domain,
        trust_domain: &td,
        roots: &roots,
        default_allow,
    };
    let (computed, floor) = agent.state.read(|s| {
        let mut parts = Parts::default();
        let computed: Vec<Option<ProxySnapshot>> = wants
            .iter()
            .zip(&registrations)
            .map(|(w, reg)| {
                reg.as_ref()
                    .map(|svc| compute(s, &inputs, &mut parts, &w.key.id, svc))
            })
            .collect();
        for (dest, intentions) in parts.intentions {
            let protocol = parts.protocols.get(&dest).copied().unwrap_or_default();
            let defaults = service_defaults_body(s, &dest);
            st.destinations
                .insert(dest, (intentions, protocol, defaults));
        }
        let floor = INPUT_TABLES.map(|t| s.table_index(t)).iter().sum::<u64>();
        (computed, floor)
    });
    let floor = floor + agent.local.version();
    let mut slots = hub.slots.lock();
    let gateways = registrations
        .iter()
        .map(|r| r.as_ref().is_some_and(|s| s.kind != "connect-proxy"));
    let steps = wants.iter().zip(computed).zip(leaves).zip(gateways);
    for ((((w, snap), leaf), gateway), linked) in steps.zip(linked_leaves) {
        let Some(slot) = slots
            .get_mut(&w.key)
            .filter(|s| s.generation == w.generation)
        else {
            continue;
        };
        let Some(mut snap) = snap else {
            slot.tx
                .send_replace(Watched::Failed(Failure::unknown(&w.key.id)));
            slots.remove(&w.key);
            continue;
        };
        slot.destination = Some(snap.service.clone());
        slot.gateway = gateway;
        slot.upstreams = snap
            .upstreams
            .iter()
            .map(|u| u.destination_name.clone())
            .collect();
        match leaf {
            LeafUpdate::Keep => {}
            LeafUpdate::Set(leaf) => {
                slot.leaf_due = leaf
                    .as_ref()
                    .map_or(now + 3600, |l| agent.ca.leaf_changes_at(l));
                slot.leaf = leaf.map(|l| *l);
            }
            LeafUpdate::Failed(e) if slot.versioned.is_empty() => {
                slot.tx.send_replace(Watched::Failed(Failure::from_ca(e)));
                slots.remove(&w.key);
                continue;
            }
            LeafUpdate::Failed(e) => {
                tracing::warn!(proxy = %w.key.id, error = %e, "leaf for proxy snapshot; keeping the last one");
                slot.leaf_due = now + LEAF_RETRY_SECS;
            }
        }
        snap.leaf = slot.leaf.as_ref().map(leaf_pems);
        for (name, cached) in &linked {
            slot.leaf_due = slot.leaf_due.min(agent.ca.leaf_changes_at(cached));
            for l in snap.linked.iter_mut().filter(|l| l.service == *name) {
                l.leaf = Some(leaf_pems(cached));
            }
        }
        if let Some(out) = slot.versioned.offer(snap, floor) {
            hub.published.fetch_add(1, Ordering::Relaxed);
            slot.tx.send_replace(Watched::Ready(Published::new(out)));
        }
    }
}

/// A cached leaf as a snapshot carries it: the certificate with the
/// chain after it, and the key.
fn leaf_pems(c: &CachedLeaf) -> Leaf {
    Leaf {
        cert_pem: std::iter::once(c.leaf.cert_pem.as_str())
            .chain(c.chain.iter().map(String::as_str))
            .collect(),
        private_key_pem: c
            .leaf
            .private_key_pem
            .as_ref()
            .map(|k| k.expose().to_string())
            .unwrap_or_default(),
    }
}

/// Resolves when nobody has watched `tx` for [`IDLE_GRACE`].
async fn abandoned(tx: &watch::Sender<Watched>) {
    loop {
        tx.closed().await;
        tokio::time::sleep(IDLE_GRACE).await;
        if tx.receiver_count() == 0 {
            return;
        }
    }
}

/// A client agent's relay for one proxy: long-polls a server and publishes
/// what changes. Any error reaches the watchers and ends the relay, so the
/// next watcher asks afresh (a running sidecar keeps its last snapshot).
async fn relay(
    hub: Arc<SnapshotHub>,
    key: ProxyKey,
    generation: u64,
    tx: Arc<watch::Sender<Watched>>,
) {
    let mut versioned = Versioned::default();
    let mut index = 0;
    let mut stop = hub.inputs.shutdown.clone();
    loop {
        let fetched = tokio::select! {
            r = from_server(&hub, &key, index) => r,
            _ = abandoned(&tx) => break,
            _ = stop.wait_for(|s| *s != Stop::Running) => break,
        };
        match fetched {
            Ok(snap) => {
                // Versions follow the server's where they can; ours never
                // go back if another server answers with a lower one.
                index = snap.index;
                if let Some(out) = versioned.offer(snap, index) {
                    hub.published.fetch_add(1, Ordering::Relaxed);
                    tx.send_replace(Watched::Ready(Published::new(out)));
                }
            }
            Err(failure) => {
                tx.send_replace(Watched::Failed(failure));
                break;
            }
        }
    }
    remove(&hub, &key, generation);
}

/// One blocking query to a server for `key` (waiting while its version is
/// `index`), with this agent's private key put into the leaf.
async fn from_server(
    hub: &SnapshotHub,
    key: &ProxyKey,
    index: u64,
) -> Result<ProxySnapshot, Arc<Failure>> {
    let id = &key.id;
    let agent = &hub.inputs;
    let Some(proxy) = agent
        .local
        .service(id)
        .filter(|s| SERVED_KINDS.contains(&s.kind.as_str()))
    else {
        return Err(Failure::unknown(id));
    };
    let unavailable = |what: String| Failure::new(StatusCode::SERVICE_UNAVAILABLE, what);
    let server = agent.writes.server_base_url().ok_or_else(|| {
        unavailable(
            "No known servers: this client agent has not joined a cluster with servers".into(),
        )
    })?;
    // A sidecar proves the service it fronts; a gateway, itself.
    let service = match proxy.proxy {
        Some(p) if proxy.kind == "connect-proxy" => p.destination_service_name,
        _ => proxy.name.clone(),
    };
    let (private_key, csr) = client_key(hub, &server, &service).await?;
    let query = [
        ("node", agent.node_name.clone()),
        ("csr", csr),
        ("index", index.to_string()),
        ("wait", format!("{}s", RELAY_WAIT.as_secs())),
    ];
    let url =
        reqwest::Url::parse_with_params(&format!("{server}/v1/agent/connect/proxy/{id}"), &query)
            .map_err(|e| Failure::new(StatusCode::BAD_REQUEST, format!("proxy ID {id:?}: {e}")))?;
    let mut req = agent
        .http
        .get(url)
        .timeout(RELAY_WAIT + RELAY_WAIT / 16 + Duration::from_secs(10));
    if let Some(token) = &key.token {
        // The server checks the proxy's own token, not this agent's.
        req = req.header("x-consul-token", token);
    }
    let resp = req
        .send()
        .await
        .map_err(|e| unavailable(format!("asking server {server} for proxy {id:?}: {e}")))?;
    let status = resp.status();
    let body = resp
        .bytes()
        .await
        .map_err(|e| unavailable(format!("reading proxy {id:?} from server {server}: {e}")))?;
    if !status.is_success() {
        let status = StatusCode::from_u16(status.as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
        return Err(Arc::new(Failure {
            status,
            body: String::from_utf8_lossy(&body).into_owned(),
        }));
    }
    let mut snap: ProxySnapshot = serde_json::from_slice(&body)
        .map_err(|e| unavailable(format!("server {server} sent a bad snapshot: {e}")))?;
    if let Some(leaf) = &mut snap.leaf {
        leaf.private_key_pem = private_key.expose().to_string();
    }
    Ok(snap)
}

/// This client agent's key and CSR for `service`, made once per process
/// (the cluster's trust domain, needed for the SPIFFE ID, from a server).
async fn client_key(
    hub: &SnapshotHub,
    server: &str,
    service: &str,
) -> Result<(mesh_ca::SecretPem, String), Arc<Failure>> {
    let agent = &hub.inputs;
    let keys = &hub.client_keys;
    let slot = format!("{}/{service}", agent.node_name);
    if let Some(k) = keys.lock().get(&slot) {
        return Ok(k.clone());
    }
    let unavailable = |what: String| Failure::new(StatusCode::SERVICE_UNAVAILABLE, what);
    let roots: serde_json::Value = agent
        .http
        .get(format!("{server}/v1/connect/ca/roots"))
        .send()
        .await
        .and_then(|r| r.error_for_status())
        .map_err(|e| unavailable(format!("CA roots from server {server}: {e}")))?
        .json()
        .await
        .map_err(|e| unavailable(format!("CA roots from server {server}: {e}")))?;
    let trust_domain = roots["TrustDomain"]
        .as_str()
        .filter(|t| !t.is_empty())
        .ok_or_else(|| unavailable(format!("server {server} has no CA trust domain yet")))?;
    let id = mesh_types::SpiffeId::service(trust_domain, &agent.datacenter, service).to_string();
    let made = mesh_ca::key_and_csr(&id)
        .map_err(|e| Failure::new(StatusCode::INTERNAL_SERVER_ERROR, e))?;
    Ok(keys.lock().entry(slot).or_insert(made).clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snap(service: &str, index: u64) -> ProxySnapshot {
        ProxySnapshot {
            proxy_id: format!("{service}-proxy"),
            service: service.into(),
            index,
            ..Default::default()
        }
    }

    #[test]
    fn the_version_moves_only_when_the_content_does() {
        let mut v = Versioned::default();
        let first = v
            .offer(snap("web", 0), 10)
            .expect("first content is published");
        assert_eq!(first.index, 10, "starts at the floor");
        assert!(v.offer(snap("web", 0), 11).is_none(), "same content");
        assert!(
            v.offer(snap("web", 999), 50).is_none(),
            "the index is not content"
        );
        let second = v.offer(snap("db", 0), 10).expect("new content");
        assert_eq!(
            second.index, 11,
            "one past the last when the floor is behind"
        );
        let third = v.offer(snap("web", 0), 40).expect("new content");
        assert_eq!(third.index, 40, "jumps to a floor ahead of it");
    }
}
