//! Anti-entropy: the agent is authoritative for its node. Local changes are
//! pushed to the catalog as they happen; everything is re-pushed every
//! minute (unchanged registrations are no-ops in the state machine).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tokio::time::Instant as TokioInstant;

use mesh_types::{Node, Outcome};

use crate::local::LocalState;
use crate::stop::Stop;
use crate::writes::Writes;

const FULL_SYNC: Duration = Duration::from_secs(60);
const RETRY: Duration = Duration::from_secs(1);

/// Anti-entropy for this agent's node: what it pushes, through what, and
/// how far it got.
pub(crate) struct AntiEntropy {
    pub local: Arc<LocalState>,
    pub writes: Arc<Writes>,
    /// This agent's catalog node.
    pub node: Node,
    /// The local version the catalog has caught up to.
    pub synced: Arc<watch::Sender<u64>>,
    pub shutdown: watch::Receiver<Stop>,
}

/// This agent's catalog node, at its gossip address.
pub(crate) fn catalog_node(
    id: &uuid::Uuid,
    config: &mesh_config::RuntimeConfig,
    address: std::net::IpAddr,
) -> Node {
    let address = address.to_string();
    Node {
        id: id.to_string(),
        name: config.node_name.clone(),
        address: address.clone(),
        datacenter: config.datacenter.clone(),
        tagged_addresses: BTreeMap::from([("lan".to_string(), address)]),
        meta: BTreeMap::new(),
        create_index: 0,
        modify_index: 0,
    }
}

impl AntiEntropy {
    /// One pass; `full` pushes everything, else only what changed.
    async fn sync_once(&self, full: bool) -> Result<u64, crate::writes::WriteError> {
        let crate::local::SyncBatch {
            commands,
            dirty,
            version,
        } = self.local.take_sync(&self.node, full);
        let mut failed = None;
        for cmd in commands {
            match self.writes.propose(&cmd).await {
                Ok(Outcome::Conflict { what, owner }) => {
                    tracing::warn!(%what, %owner, "anti-entropy: catalog entry is managed by another owner; leaving it")
                }
                Ok(Outcome::Rejected(why)) => {
                    tracing::warn!(%why, "anti-entropy: registration refused")
                }
                Ok(_) => {}
                Err(e) => {
                    failed = Some(e);
                    break;
                }
            }
        }
        if let Some(e) = failed {
            // Push it all again next time.
            self.local.retry_sync(dirty);
            return Err(e);
        }
        Ok(version)
    }
}

/// Run anti-entropy until the agent stops.
pub(crate) async fn anti_entropy(sync: AntiEntropy) -> anyhow::Result<()> {
    let mut stop = sync.shutdown.clone();
    let mut last_full = Instant::now() - FULL_SYNC;
    loop {
        let full = last_full.elapsed() >= FULL_SYNC;
        match sync.sync_once(full).await {
            Ok(version) => {
                if full {
                    last_full = Instant::now();
                }
                sync.synced.send_replace(version);
                tokio::select! {
                    _ = sync.local.changed.notified() => {}
                    _ = tokio::time::sleep(FULL_SYNC) => {}
                    _ = stop.wait_for(|s| *s != Stop::Running) => return Ok(()),
                }
            }
            Err(e) => {
                tracing::debug!(error = %e, "anti-entropy: will retry");
                tokio::select! {
                    _ = tokio::time::sleep(RETRY) => {}
                    _ = stop.wait_for(|s| *s != Stop::Running) => return Ok(()),
                }
            }
        }
    }
}

/// Feed check results into local state; deregister services whose checks
/// stayed critical past `DeregisterCriticalServiceAfter`.
pub(crate) async fn check_results(
    local: Arc<LocalState>,
    mut updates: tokio::sync::mpsc::Receiver<mesh_checks::CheckUpdate>,
) -> anyhow::Result<()> {
    let mut reap = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            update = updates.recv() => match update {
                Some(u) => local.apply_update(u),
                None => return Ok(()),
            },
            _ = reap.tick() => {
                for id in local.expired_services(TokioInstant::now()) {
                    tracing::info!(service = %id, "deregistering: critical longer than DeregisterCriticalServiceAfter");
                    local.remove_service(&id);
                }
            }
        }
    }
}
