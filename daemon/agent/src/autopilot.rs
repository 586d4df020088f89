//! Autopilot on the leader, as Consul's: each server's health (gossip
//! status, last contact with the leader, how far its log trails, since when
//! it is stable) for `/v1/operator/autopilot/health`, and dead servers
//! (failed in gossip for longer than `server_stabilization_time`) removed
//! from Raft when `cleanup_dead_servers` is on, never below a quorum of
//! the voters nor below `min_quorum`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mesh_config::Autopilot as Settings;
use mesh_gossip::{Gossip, MemberStatus};
use mesh_raft::RaftNode;
use parking_lot::Mutex;
use serde_json::{json, Value};
use tokio::sync::watch;

use crate::stop::Stop;

/// How often the leader looks at the servers.
const TICK: Duration = Duration::from_millis(500);

/// What the leader has seen of one server over time.
#[derive(Default, Clone, Copy)]
struct Seen {
    healthy_since: Option<Instant>,
    failed_since: Option<Instant>,
}

/// The leader's autopilot: settings and what it has seen.
pub(crate) struct Autopilot {
    pub raft: RaftNode,
    pub gossip: Gossip,
    pub settings: Settings,
    seen: Mutex<HashMap<u64, Seen>>,
}

/// One server's health, as the leader sees it now.
struct ServerHealth {
    id: u64,
    name: String,
    address: String,
    serf: MemberStatus,
    leader: bool,
    voter: bool,
    last_contact: Option<Duration>,
    last_index: u64,
    last_term: u64,
    healthy: bool,
}

impl Autopilot {
    pub(crate) fn new(raft: RaftNode, gossip: Gossip, settings: Settings) -> Autopilot {
        Autopilot {
            raft,
            gossip,
            settings,
            seen: Mutex::default(),
        }
    }

    fn servers(&self) -> Vec<ServerHealth> {
        let metrics = self.raft.raft().metrics().borrow().clone();
        let leader_last = metrics.last_log_index.unwrap_or(0);
        let members = self.gossip.members();
        let (servers, _) = self.raft.servers();
        servers
            .into_iter()
            .map(|s| {
                let serf = members
                    .iter()
                    .find(|m| m.name == s.node.name)
                    .map_or(MemberStatus::Failed, |m| m.status);
                let me = s.id == metrics.id;
                let matched = metrics
                    .replication
                    .as_ref()
                    .and_then(|r| r.get(&s.id).cloned().flatten());
                let (last_index, last_term) = match (me, matched) {
                    (true, _) => (leader_last, metrics.current_term),
                    (false, Some(log)) => (log.index, log.leader_id.term),
                    (false, None) => (0, 0),
                };
                let last_contact = if me {
                    Some(Duration::ZERO)
                } else {
                    self.raft.network().last_contact(s.id)
                };
                let caught_up = last_index + self.settings.max_trailing_logs >= leader_last;
                let in_contact =
                    last_contact.is_some_and(|c| c <= self.settings.last_contact_threshold);
                ServerHealth {
                    id: s.id,
                    name: s.node.name,
                    address: s.node.rpc_addr,
                    serf,
                    leader: s.leader,
                    voter: s.voter,
                    last_contact,
                    last_index,
                    last_term,
                    healthy: serf == MemberStatus::Alive && (me || (in_contact && caught_up)),
                }
            })
            .collect()
    }

    /// Updates what has been seen and returns the servers' health.
    fn observe(&self) -> Vec<ServerHealth> {
        let servers = self.servers();
        let now = Instant::now();
        let mut seen = self.seen.lock();
        seen.retain(|id, _| servers.iter().any(|s| s.id == *id));
        for s in &servers {
            let entry = seen.entry(s.id).or_default();
            entry.healthy_since = match (s.healthy, entry.healthy_since) {
                (true, None) => Some(now),
                (true, since) => since,
                (false, _) => None,
            };
            entry.failed_since = match (s.serf == MemberStatus::Failed, entry.failed_since) {
                (true, None) => Some(now),
                (true, since) => since,
                (false, _) => None,
            };
        }
        servers
    }

    /// `/v1/operator/autopilot/health`, in Consul's shape.
    pub(crate) fn health(&self) -> Value {
        let servers = self.observe();
        let seen = self.seen.lock().clone();
        let voters = servers.iter().filter(|s| s.voter).count();
        let healthy_voters = servers.iter().filter(|s| s.voter && s.healthy).count();
        let failure_tolerance = healthy_voters.saturating_sub(voters / 2 + 1);
        let now = Instant::now();
        let stable = |s: &ServerHealth| {
            seen.get(&s.id)
                .and_then(|x| x.healthy_since)
                .is_some_and(|t| now.duration_since(t) >= self.settings.server_stabilization_time)
        };
        let list: Vec<Value> = servers
            .iter()
            .map(|s| {
                let since = seen.get(&s.id).and_then(|x| x.healthy_since).map(|t| {
                    let ago = now.duration_since(t);
                    mesh_ca::rfc3339(mesh_ca::unix_now().saturating_sub(ago.as_secs() as i64))
                });
                json!({
                    "ID": s.id.to_string(),
                    "Name": s.name,
                    "Address": s.address,
                    "SerfStatus": s.serf.to_string(),
                    "Version": env!("CARGO_PKG_VERSION"),
                    "Leader": s.leader,
                    "LastContact": s.last_contact.map_or("never".to_string(), |c| format!("{c:?}")),
                    "LastTerm": s.last_term,
                    "LastIndex": s.last_index,
                    "Healthy": s.healthy,
                    "Voter": s.voter,
                    "StableSince": since,
                    "Stable": stable(s),
                })
            })
            .collect();
        json!({
            "Healthy": servers.iter().all(|s| s.healthy),
            "FailureTolerance": failure_tolerance,
            "Servers": list,
        })
    }

    /// Dead voters that may go now: failed for the stabilization time, as
    /// many as keep a quorum of the current voters and `min_quorum`.
    fn removable(&self, servers: &[ServerHealth]) -> Vec<u64> {
        let seen = self.seen.lock();
        let now = Instant::now();
        let dead: Vec<u64> = servers
            .iter()
            .filter(|s| !s.leader)
            .filter(|s| {
                seen.get(&s.id)
                    .and_then(|x| x.failed_since)
                    .is_some_and(|t| {
                        now.duration_since(t) >= self.settings.server_stabilization_time
                    })
            })
            .map(|s| s.id)
            .collect();
        let voters = servers.iter().filter(|s| s.voter).count();
        let room = removal_room(voters, self.settings.min_quorum as usize);
        dead.into_iter().take(room).collect()
    }
}

/// How many of `voters` may be removed and still leave a quorum of them
/// and at least `min_quorum`.
fn removal_room(voters: usize, min_quorum: usize) -> usize {
    voters.saturating_sub((voters / 2 + 1).max(min_quorum))
}

/// On the leader: watch the servers and clean up dead ones.
pub(crate) async fn run(
    autopilot: Arc<Autopilot>,
    mut stop: watch::Receiver<Stop>,
) -> anyhow::Result<()> {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(TICK) => {}
            _ = stop.wait_for(|s| *s != Stop::Running) => return Ok(()),
        }
        if !autopilot.raft.is_leader() {
            autopilot.seen.lock().clear();
            continue;
        }
        let servers = autopilot.observe();
        let health = autopilot.health();
        use mesh_telemetry as t;
        t::gauge!(t::AUTOPILOT_HEALTHY).set(if health["Healthy"] == true { 1.0 } else { 0.0 });
        t::gauge!(t::AUTOPILOT_FAILURE_TOLERANCE)
            .set(health["FailureTolerance"].as_f64().unwrap_or(0.0));
        if !autopilot.settings.cleanup_dead_servers {
            continue;
        }
        for id in autopilot.removable(&servers) {
            let name = servers.iter().find(|s| s.id == id).map(|s| s.name.clone());
            tracing::info!(server = ?name, id, "autopilot: removing a dead server from raft");
            if let Err(e) = autopilot.raft.remove_server(id).await {
                tracing::warn!(error = %e, "autopilot: removing a dead server");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::removal_room as room;

    #[test]
    fn dead_servers_never_take_the_voters_below_quorum() {
        assert_eq!(room(3, 0), 1);
        assert_eq!(room(5, 0), 2);
        assert_eq!(room(2, 0), 0);
        assert_eq!(room(1, 0), 0);
        assert_eq!(room(5, 5), 0, "min_quorum holds all five");
        assert_eq!(room(5, 4), 1);
    }
}
