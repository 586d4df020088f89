//! Anti-entropy: the agent is authoritative for its node. Local changes are
//! pushed to the catalog as they happen; everything is re-pushed every
//! minute (unchanged registrations are no-ops in the state machine).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::time::Instant as TokioInstant;

use mesh_types::{Command, Node, Outcome};

use crate::build::Agent;
use crate::stop::Stop;

const FULL_SYNC: Duration = Duration::from_secs(60);
const RETRY: Duration = Duration::from_secs(1);

impl Agent {
    /// This agent's catalog node.
    pub(crate) fn catalog_node(&self) -> Node {
        let address = self.gossip.local_addr().ip().to_string();
        Node {
            id: self.node_id.to_string(),
            name: self.config.node_name.clone(),
            address: address.clone(),
            datacenter: self.config.datacenter.clone(),
            tagged_addresses: BTreeMap::from([("lan".to_string(), address)]),
            meta: BTreeMap::new(),
            create_index: 0,
            modify_index: 0,
        }
    }

    /// One anti-entropy pass; `full` pushes everything, else only what changed.
    async fn sync_once(&self, full: bool) -> anyhow::Result<u64> {
        let node = self.catalog_node();
        let crate::local::SyncBatch {
            commands,
            dirty,
            version,
        } = self.local.take_sync(&node, full);
        let mut failed = None;
        for cmd in commands {
            match self.propose(&cmd).await {
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

    /// Propose through Raft here, or through a server on a client agent.
    pub(crate) async fn propose(&self, cmd: &Command) -> anyhow::Result<Outcome> {
        self.writes.propose(cmd).await
    }
}

/// Run anti-entropy until the agent stops.
pub(crate) async fn anti_entropy(agent: Arc<Agent>) -> anyhow::Result<()> {
    let mut stop = agent.shutdown.subscribe();
    let mut last_full = Instant::now() - FULL_SYNC;
    loop {
        let full = last_full.elapsed() >= FULL_SYNC;
        match agent.sync_once(full).await {
            Ok(version) => {
                if full {
                    last_full = Instant::now();
                }
                agent.synced.send_replace(version);
                tokio::select! {
                    _ = agent.local.changed.notified() => {}
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
    agent: Arc<Agent>,
    mut updates: tokio::sync::mpsc::Receiver<mesh_checks::CheckUpdate>,
) -> anyhow::Result<()> {
    let mut reap = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            update = updates.recv() => match update {
                Some(u) => agent.local.apply_update(u),
                None => return Ok(()),
            },
            _ = reap.tick() => {
                for id in agent.local.expired_services(TokioInstant::now()) {
                    tracing::info!(service = %id, "deregistering: critical longer than DeregisterCriticalServiceAfter");
                    agent.local.remove_service(&id);
                }
            }
        }
    }
}
