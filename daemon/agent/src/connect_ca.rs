//! The Connect CA in the cluster: the CA state lives in Raft (as mesh-ca's
//! `CaState` JSON); the leader creates it, advances rotations (pending →
//! active → retired → removed) and records progress; any server signs leaves
//! with the active root. Configuration changes come from the API, `ca { }`
//! blocks in config files, or the agent's `connect { ca_config }`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use mesh_ca::{CaState, Leaf, LeafRequest, RootCa, Signer, Stage};
use mesh_config::{LiveConfig, Loc, RuntimeConfig};
use mesh_raft::RaftNode;
use mesh_state::{StateStore, Table};
use mesh_types::{Command, Outcome};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::watch;

use crate::stop::Stop;
use crate::writes::Writes;

/// What the cluster stores: the CA state, and the configuration that made it
/// (its private key removed: the key lives only in the root itself).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct StoredCa {
    pub state: CaState,
    pub config: Value,
    pub pending_secs: u64,
    pub spread_secs: u64,
}

/// Why a CA request was refused; the text is what the user sees.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CaRequestError {
    /// The request is wrong (400).
    #[error("{0}")]
    Bad(String),
    /// The CA cannot serve it now (503).
    #[error("{0}")]
    Unavailable(String),
    /// Over `CSRMaxPerSecond`: try again shortly (429).
    #[error("{0}")]
    RateLimited(String),
}

/// A cached leaf and when it should be replaced.
#[derive(Clone)]
pub(crate) struct CachedLeaf {
    pub leaf: Leaf,
    /// Intermediates to present after the leaf (a user root's signing
    /// certificate, the cross-signed new root), so peers that trust only an
    /// older root can still build a path.
    pub chain: Vec<String>,
    /// Bumped whenever this service's leaf is replaced (the blocking index).
    pub index: u64,
    pub renew_at: i64,
    /// `<node>/<service>`: whose leaf this is, for rotation progress and
    /// the re-issue slot.
    pub holder: String,
    /// The CSR it was signed from, when the holder (a client agent) keeps
    /// its own key; a different CSR means a new key to sign.
    pub csr: Option<String>,
    /// DNS SANs beyond the SPIFFE ID (a gateway's listener hosts).
    pub dns: Vec<String>,
}

/// The Connect CA as one component: the stored CA state (read from the
/// replicated state, changed by compare-and-set through Raft), a signer
/// cached by state epoch, the leaf cache with the `CSRMaxPerSecond` budget,
/// and the leader's rotation duties.
pub(crate) struct ConnectCa {
    state: Arc<StateStore>,
    node_name: String,
    datacenter: String,
    server: bool,
    dev: bool,
    writes: Arc<Writes>,
    /// The CA settings a new CA is created with, and whether connect is on.
    live: watch::Receiver<Arc<LiveConfig>>,
    signer: Mutex<Option<(u64, String, Arc<Signer>)>>,
    pub(crate) leaves: Mutex<HashMap<String, CachedLeaf>>,
    next_index: std::sync::atomic::AtomicU64,
    /// The `CSRMaxPerSecond` budget of this server, rebuilt when the rate changes.
    csr_limit: Mutex<Option<(u64, Arc<governor::DefaultDirectRateLimiter>)>>,
}

impl ConnectCa {
    pub(crate) fn new(
        config: &RuntimeConfig,
        state: Arc<StateStore>,
        writes: Arc<Writes>,
        live: watch::Receiver<Arc<LiveConfig>>,
    ) -> Self {
        ConnectCa {
            state,
            node_name: config.node_name.clone(),
            datacenter: config.datacenter.clone(),
            server: config.server,
            dev: config.dev,
            writes,
            live,
            signer: Mutex::default(),
            leaves: Mutex::default(),
            next_index: Default::default(),
            csr_limit: Mutex::default(),
        }
    }
}

/// Longest a signing waits for the `CSRMaxPerSecond` budget before the
/// caller gets 429 (sidecars and leaf watchers retry).
const CSR_WAIT: Duration = Duration::from_secs(2);

fn now() -> i64 {
    mesh_ca::unix_now()
}

/// Parses a CA configuration request (API, `ca { }` block, agent config).
fn parse_config(body: &Value) -> Result<mesh_ca::CaConfigRequest, CaRequestError> {
    mesh_ca::CaConfigRequest::parse(body).map_err(CaRequestError::Bad)
}

impl ConnectCa {
    /// The stored CA and its modify index, if the CA exists.
    pub(crate) fn stored_ca(&self) -> Option<(StoredCa, u64)> {
        self.state.read(|s| {
            let rec = s.ca()?;
            let stored: StoredCa = serde_json::from_str(&rec.state_json).ok()?;
            Some((stored, rec.modify_index))
        })
    }

    async fn propose_ca(&self, stored: &StoredCa, cas: u64) -> Result<bool, CaRequestError> {
        let json = serde_json::to_string(stored)
            .map_err(|e| CaRequestError::Unavailable(e.to_string()))?;
        match self
            .writes
            .propose(&Command::CaSet {
                state_json: json,
                cas: Some(cas),
            })
            .await
        {
            Ok(Outcome::Bool(b)) => Ok(b),
            Ok(other) => Err(CaRequestError::Unavailable(format!(
                "unexpected outcome {other:?}"
            ))),
            Err(e) => Err(CaRequestError::Unavailable(format!("{e:#}"))),
        }
    }

    /// A signer for the active root, cached until the CA state changes.
    pub(crate) fn ca_signer(&self) -> Result<(Arc<Signer>, StoredCa), CaRequestError> {
        let (stored, _) = self.stored_ca().ok_or_else(|| {
            CaRequestError::Unavailable("the Connect CA is not initialised yet".into())
        })?;
        let active_id = stored
            .state
            .active()
            .map(|r| r.id.clone())
            .unwrap_or_default();
        let mut cache = self.signer.lock();
        if let Some((epoch, id, signer)) = cache.as_ref() {
            if *epoch == stored.state.epoch && *id == active_id {
                return Ok((signer.clone(), stored));
            }
        }
        let signer = Arc::new(
            stored
                .state
                .active_signer()
                .map_err(|e| CaRequestError::Unavailable(e.to_string()))?,
        );
        *cache = Some((stored.state.epoch, active_id, signer.clone()));
        Ok((signer, stored))
    }

    /// Apply a CA configuration (API, `ca { }` block, agent config): a key or
    /// root change starts a staged rotation; a TTL change applies in place.
    pub(crate) async fn set_ca_config(&self, body: &Value) -> Result<bool, CaRequestError> {
        let mesh_ca::CaConfigRequest {
            config: cfg,
            shown,
            pending,
            spread,
        } = parse_config(body)?;
        let valid = cfg
            .validate()
            .map_err(|e| CaRequestError::Bad(e.to_string()))?;
        let Some((mut stored, index)) = self.stored_ca() else {
            return Err(CaRequestError::Unavailable(
                "the Connect CA is not initialised yet (is connect enabled and is there a leader?)"
                    .into(),
            ));
        };
        let t = now();
        let active = stored
            .state
            .active()
            .cloned()
            .ok_or_else(|| CaRequestError::Unavailable("no active root".into()))?;
        let rotate = match &valid.user_root {
            Some((cert, _)) => cert.trim() != active.root_cert.trim(),
            None => active.user_supplied || active.key_type != valid.key_type,
        };
        if rotate {
            if stored.state.pending().is_some() {
                return Err(CaRequestError::Bad(
                    "a rotation is already pending; wait for it to activate".into(),
                ));
            }
            let new_root = valid
                .build_root(&stored.state.trust_domain, t)
                .map_err(|e| CaRequestError::Bad(e.to_string()))?;
            let new_root = mesh_ca::prepare_rotation(&active, new_root, &valid, t)
                .map_err(|e| CaRequestError::Bad(format!("rotation refused: {e}")))?;
            stored
                .state
                .begin_rotation(new_root, t, spread)
                .map_err(|e| CaRequestError::Bad(format!("rotation refused: {e}")))?;
            mesh_telemetry::counter!(mesh_telemetry::MESH_CA_ROTATIONS).increment(1);
        }
        if stored.state.leaf_ttl_secs != valid.leaf_ttl.as_secs() {
            stored.state.set_leaf_ttl(valid.leaf_ttl);
        }
        let changed = rotate
            || stored.config != shown
            || stored.pending_secs != pending.as_secs()
            || stored.spread_secs != spread.as_secs();
        if !changed && stored.state.leaf_ttl_secs == valid.leaf_ttl.as_secs() {
            return Ok(false);
        }
        stored.config = shown;
        stored.pending_secs = pending.as_secs();
        stored.spread_secs = spread.as_secs();
        if !self.propose_ca(&stored, index).await? {
            return Err(CaRequestError::Unavailable(
                "the CA changed while this request was applied; retry".into(),
            ));
        }
        Ok(rotate)
    }

    /// Retire every retired root now (it leaves the trust bundle).
    pub(crate) async fn retire_now(&self) -> Result<Vec<String>, CaRequestError> {
        let (mut stored, index) = self.stored_ca().ok_or_else(|| {
            CaRequestError::Unavailable("the Connect CA is not initialised".into())
        })?;
        let gone = stored.state.retire_now();
        if !gone.is_empty() && !self.propose_ca(&stored, index).await? {
            return Err(CaRequestError::Unavailable(
                "the CA changed meanwhile; retry".into(),
            ));
        }
        Ok(gone)
    }

    /// Apply a `ca { provider = ..., config { } }` block from a config file.
    pub(crate) async fn apply_ca_block(
        &self,
        block: &Value,
        loc: &Loc,
    ) -> Result<(), crate::reconcile::ReloadError> {
        use crate::reconcile::ReloadError;
        let invalid = |e: String| ReloadError::Invalid(vec![format!("{loc}: ca: {e}")]);
        if !self.server {
            // Servers apply cluster-wide CA settings; a client's block is checked only.
            return parse_config(&mesh_config::camel_keys(block.clone()))
                .map(|_| ())
                .map_err(|e| invalid(e.to_string()));
        }
        let body = mesh_config::camel_keys(block.clone());
        match self.set_ca_config(&body).await {
            Ok(_) => Ok(()),
            Err(CaRequestError::Bad(e)) => Err(invalid(e)),
            Err(CaRequestError::Unavailable(e) | CaRequestError::RateLimited(e)) => {
                Err(ReloadError::Unavailable(e))
            }
        }
    }

    /// The leaf for `service`, from the cache or freshly signed.
    pub(crate) async fn leaf_for(&self, service: &str) -> Result<CachedLeaf, CaRequestError> {
        let node = self.node_name.clone();
        self.issue_leaf(&node, service, None, &[]).await
    }

    /// A leaf for gateway `service` that also names `dns` (the hosts its
    /// TLS listeners answer for); a new set of hosts is a new leaf.
    pub(crate) async fn leaf_with_dns(
        &self,
        service: &str,
        dns: &[String],
    ) -> Result<CachedLeaf, CaRequestError> {
        let node = self.node_name.clone();
        self.issue_leaf(&node, service, None, dns).await
    }

    /// A leaf for `service` on client agent `node`, signed from the CSR that
    /// agent sent: its private key never crosses the network. Cached,
    /// renewed and re-issued on rotation like this agent's own leaves. A
    /// gateway's leaf also names `dns`, as [`Self::leaf_with_dns`].
    pub(crate) async fn leaf_for_csr(
        &self,
        node: &str,
        service: &str,
        csr: &str,
        dns: &[String],
    ) -> Result<CachedLeaf, CaRequestError> {
        self.issue_leaf(node, service, Some(csr), dns).await
    }

    /// Waits (at most `CSR_WAIT`) for room under `CSRMaxPerSecond` to sign
    /// one leaf; a burst of one second's worth passes at once.
    pub(crate) async fn csr_permit(&self, stored: &StoredCa) -> Result<(), CaRequestError> {
        use governor::clock::{Clock, DefaultClock};
        let rate = mesh_ca::csr_max_per_second(&stored.config);
        // Configs are validated when written; a stored value from before
        // that check, if out of range, turns the limit off, never panics.
        if rate <= 0.0 || !mesh_ca::csr_rate_ok(rate) {
            return Ok(());
        }
        let limiter = {
            let mut slot = self.csr_limit.lock();
            match slot.as_ref() {
                Some((bits, l)) if *bits == rate.to_bits() => l.clone(),
                _ => {
                    let burst = std::num::NonZeroU32::new(rate.ceil().clamp(1.0, 1e6) as u32)
                        .expect("at least 1");
                    let period = Duration::try_from_secs_f64(1.0 / rate).ok();
                    let quota = period
                        .and_then(governor::Quota::with_period)
                        .ok_or_else(|| {
                            CaRequestError::Unavailable("CSRMaxPerSecond too large".into())
                        })?
                        .allow_burst(burst);
                    let l = Arc::new(governor::RateLimiter::direct(quota));
                    *slot = Some((rate.to_bits(), l.clone()));
                    l
                }
            }
        };
        let deadline = tokio::time::Instant::now() + CSR_WAIT;
        loop {
            let Err(not_until) = limiter.check() else {
                return Ok(());
            };
            let wait = not_until.wait_time_from(DefaultClock::default().now());
            if tokio::time::Instant::now() + wait > deadline {
                return Err(CaRequestError::RateLimited(format!(
                    "rate limit reached: the CA signs at most {rate} certificates per second (CSRMaxPerSecond); retry shortly"
                )));
            }
            tokio::time::sleep(wait).await;
        }
    }

    /// The cache slot of a leaf: this agent's own by service name, a client
    /// agent's by `<node>/<service>` (service names cannot hold a `/`).
    pub(crate) fn leaf_slot(&self, node: &str, service: &str) -> String {
        if node == self.node_name {
            service.to_string()
        } else {
            format!("{node}/{service}")
        }
    }

    async fn issue_leaf(
        &self,
        node: &str,
        service: &str,
        csr: Option<&str>,
        dns: &[String],
    ) -> Result<CachedLeaf, CaRequestError> {
        let (signer, stored) = self.ca_signer()?;
        let t = now();
        let key = format!("{node}/{service}");
        let slot = self.leaf_slot(node, service);
        let due_reissue = |c: &CachedLeaf| -> bool {
            if c.leaf.root_id == signer.root_id() {
                return false;
            }
            // A new root: re-issue at this leaf's slot in the spread window.
            let Some(rot) = stored.state.rotation.as_ref() else {
                return true;
            };
            let Some(activated) = rot.activated_at else {
                return true;
            };
            t >= activated + self.reissue_offset(&key, rot.spread_window_secs).as_secs() as i64
        };
        if let Some(c) = self.leaves.lock().get(&slot) {
            if t < c.renew_at
                && !due_reissue(c)
                && t < c.leaf.valid_before
                && c.csr.as_deref() == csr
                && c.dns == dns
            {
                return Ok(c.clone());
            }
        }
        self.csr_permit(&stored).await?;
        let ttl = Duration::from_secs(stored.state.leaf_ttl_secs);
        let mut request = LeafRequest::new(service, &self.datacenter, ttl);
        request.dns_sans = dns.to_vec();
        let leaf = match csr {
            // A CSR that does not verify or names another identity is the caller's fault.
            Some(csr) => signer
                .sign_csr(csr, &request)
                .map_err(|e| CaRequestError::Bad(e.to_string()))?,
            None => signer
                .sign_leaf(&request)
                .map_err(|e| CaRequestError::Unavailable(e.to_string()))?,
        };
        let renew_at = mesh_ca::renew_at(leaf.valid_after, leaf.valid_before, &mut rand::rng());
        let chain = stored
            .state
            .active()
            .map(|r| r.chain_pems())
            .unwrap_or_default()
            .into_iter()
            .filter(|pem| !leaf.cert_pem.contains(pem.trim()))
            .collect();
        let cached = CachedLeaf {
            chain,
            index: self
                .next_index
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
                + 1,
            renew_at,
            leaf,
            holder: key.clone(),
            csr: csr.map(str::to_string),
            dns: dns.to_vec(),
        };
        self.leaves.lock().insert(slot, cached.clone());
        // Progress bookkeeping: one write per leaf and root, not per request.
        let recorded = self.state.read(|s| s.ca_leaves().get(&key).cloned());
        if recorded.as_deref() != Some(signer.root_id()) {
            let cmd = Command::CaLeafIssued {
                key,
                root_id: signer.root_id().to_string(),
            };
            if let Err(e) = self.writes.propose(&cmd).await {
                tracing::debug!(error = %e, "recording leaf progress");
            }
        }
        Ok(cached)
    }

    /// Where this key's re-issue falls in the spread window.
    fn reissue_offset(&self, key: &str, window_secs: u64) -> Duration {
        let (pos, total) = self.state.read(|s| {
            let keys = s.ca_leaves();
            (
                keys.keys().position(|k| k == key).unwrap_or(0),
                keys.len().max(1),
            )
        });
        mesh_ca::reissue_at(pos as u64, total as u64, Duration::from_secs(window_secs))
    }

    /// When the leaf for `service` next changes: renewal or a due re-issue.
    pub(crate) fn leaf_changes_at(&self, cached: &CachedLeaf) -> i64 {
        let mut at = cached.renew_at.min(cached.leaf.valid_before);
        if let Some((stored, _)) = self.stored_ca() {
            if let (Some(active), Some(rot)) =
                (stored.state.active(), stored.state.rotation.as_ref())
            {
                if active.id != cached.leaf.root_id {
                    let activated = rot.activated_at.unwrap_or_else(now);
                    at = at.min(
                        activated
                            + self
                                .reissue_offset(&cached.holder, rot.spread_window_secs)
                                .as_secs() as i64,
                    );
                }
            }
        }
        at
    }
}

/// The leader's CA duties: create the CA once, move rotations along, retire
/// old roots when due, and keep the progress figures current.
pub(crate) async fn leader_loop(
    ca: Arc<ConnectCa>,
    raft: RaftNode,
    mut stop: watch::Receiver<Stop>,
) -> anyhow::Result<()> {
    let tick = if ca.dev {
        Duration::from_millis(200)
    } else {
        Duration::from_millis(500)
    };
    let mut ca_changes = ca.state.hub().subscribe(Table::Ca);
    loop {
        tokio::select! {
            _ = tokio::time::sleep(tick) => {}
            _ = ca_changes.changed() => {}
            _ = stop.wait_for(|s| *s != Stop::Running) => return Ok(()),
        }
        if !raft.is_leader() || !ca.live.borrow().connect_enabled {
            continue;
        }
        if let Err(e) = leader_step(&ca).await {
            tracing::warn!("connect CA: {e}");
        }
    }
}

async fn leader_step(ca: &ConnectCa) -> Result<(), CaRequestError> {
    let t = now();
    let Some((mut stored, index)) = ca.stored_ca() else {
        return create_ca(ca).await;
    };
    let mut changed = false;
    if let Some(p) = stored
        .state
        .roots
        .iter()
        .find(|r| r.stage == Stage::Pending)
    {
        if t >= p.since + stored.pending_secs as i64 {
            stored
                .state
                .activate(t)
                .map_err(|e| CaRequestError::Unavailable(e.to_string()))?;
            let total = ca.state.read(|s| s.ca_leaves().len()) as u64;
            stored.state.set_total(total);
            tracing::info!(total, "connect CA: new root active; re-issuing leaves");
            changed = true;
        }
    }
    if stored
        .state
        .rotation
        .as_ref()
        .is_some_and(|r| r.activated_at.is_some())
    {
        let active = stored
            .state
            .active()
            .map(|r| r.id.clone())
            .unwrap_or_default();
        let (done, total) = ca.state.read(|s| {
            let leaves = s.ca_leaves();
            (
                leaves.values().filter(|r| **r == active).count() as u64,
                leaves.len() as u64,
            )
        });
        let (was, was_total) = stored.state.progress();
        if total != was_total {
            stored.state.set_total(total);
            changed = true;
        }
        if done != was {
            let rot = stored
                .state
                .rotation
                .as_mut()
                .expect("rotation checked above");
            rot.reissued = done.min(rot.total);
            stored.state.epoch += 1;
            changed = true;
        }
    }
    if !stored.state.retire_due(t).is_empty() {
        changed = true;
    }
    if changed {
        ca.propose_ca(&stored, index).await?;
    }
    Ok(())
}

async fn create_ca(ca: &ConnectCa) -> Result<(), CaRequestError> {
    let body = ca
        .live
        .borrow()
        .connect_ca
        .clone()
        .unwrap_or_else(|| serde_json::json!({"Provider": "consul", "Config": {}}));
    let mesh_ca::CaConfigRequest {
        config: cfg,
        shown,
        pending,
        spread,
    } = parse_config(&body)?;
    let valid = cfg
        .validate()
        .map_err(|e| CaRequestError::Bad(e.to_string()))?;
    let trust_domain = format!("{}.consul", uuid::Uuid::new_v4());
    let t = now();
    let root: RootCa = valid
        .build_root(&trust_domain, t)
        .map_err(|e| CaRequestError::Bad(e.to_string()))?;
    let stored = StoredCa {
        state: CaState::new(root, valid.leaf_ttl, t),
        config: shown,
        pending_secs: pending.as_secs(),
        spread_secs: spread.as_secs(),
    };
    if ca.propose_ca(&stored, 0).await? {
        tracing::info!(%trust_domain, "connect CA initialised");
    }
    Ok(())
}
