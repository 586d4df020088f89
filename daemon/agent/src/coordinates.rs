//! Reports this node's network coordinate (learned by gossip probes) to
//! the catalog, so `?near=` sorting and `/v1/coordinate/*` see it. Like
//! Consul's agents: only when it moved, at a pace that keeps the whole
//! cluster's updates near `CLUSTER_UPDATES_PER_SEC`.

use std::sync::Arc;
use std::time::Duration;

use mesh_gossip::Gossip;
use mesh_types::{Command, Coordinate, CoordinateUpdate};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::stop::Stop;
use crate::writes::Writes;

/// The shortest time between two reports from one agent.
const MIN_INTERVAL: Duration = Duration::from_secs(5);
/// The whole cluster's coordinate writes per second, at most (Consul's
/// `sync_coordinate_rate_target`).
const CLUSTER_UPDATES_PER_SEC: f64 = 64.0;
/// A coordinate that moved less than this (seconds), with an error that
/// changed less than `MIN_ERROR_CHANGE`, is not worth a write.
const MIN_MOVE_SECS: f64 = 0.000_5;
const MIN_ERROR_CHANGE: f64 = 0.1;
/// An unchanged coordinate is still reported this often, so a restored
/// or rebuilt catalog gets it back.
const REFRESH: Duration = Duration::from_secs(300);

pub(crate) struct CoordinateReports {
    pub node_name: String,
    pub gossip: Gossip,
    pub writes: Arc<Writes>,
    /// Bumped by each anti-entropy pass: reports start after the first,
    /// once the node is in the catalog.
    pub synced: watch::Receiver<u64>,
    pub shutdown: watch::Receiver<Stop>,
}

fn interval(members: usize) -> Duration {
    MIN_INTERVAL.max(Duration::from_secs_f64(
        members as f64 / CLUSTER_UPDATES_PER_SEC,
    ))
}

pub(crate) async fn run(mut r: CoordinateReports) -> anyhow::Result<()> {
    tokio::select! {
        _ = r.synced.changed() => {}
        _ = r.shutdown.wait_for(|s| *s != Stop::Running) => return Ok(()),
    }
    let mut last: Option<(Coordinate, Instant)> = None;
    loop {
        let now = r.gossip.coordinate();
        let due = match &last {
            None => true,
            Some((sent, at)) => {
                now.moved_from(sent) >= MIN_MOVE_SECS
                    || (now.error - sent.error).abs() >= MIN_ERROR_CHANGE
                    || at.elapsed() >= REFRESH
            }
        };
        if due {
            let cmd = Command::CoordinateBatch {
                updates: vec![CoordinateUpdate {
                    node: r.node_name.clone(),
                    segment: String::new(),
                    coord: now.clone(),
                }],
            };
            match r.writes.propose(&cmd).await {
                Ok(_) => last = Some((now, Instant::now())),
                Err(e) => {
                    tracing::debug!(error = %e, "reporting the network coordinate: will retry")
                }
            }
        }
        let wait = interval(r.gossip.members().len());
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = r.shutdown.wait_for(|s| *s != Stop::Running) => return Ok(()),
        }
    }
}
