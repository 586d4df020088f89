//! Session TTLs, kept by the leader in memory as Consul keeps them: a
//! session with a TTL that goes twice its TTL without a renewal is
//! destroyed (through Raft, so its locks are released everywhere). A new
//! leader starts every timer afresh. Renewals are answered here from
//! memory, never written to the log.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mesh_raft::RaftNode;
use mesh_state::{StateStore, Table};
use mesh_types::{Command, Outcome};
use parking_lot::Mutex;
use tokio::sync::watch;

use crate::stop::Stop;

/// Consul's grace: a session lives up to this many TTLs without renewal.
const TTL_MULTIPLIER: u32 = 2;
/// The longest the sweeper sleeps between looks at the session table.
const SWEEP_EVERY: Duration = Duration::from_secs(1);

/// The leader's session deadlines.
pub(crate) struct SessionTimers {
    deadlines: Mutex<HashMap<String, Instant>>,
    state: Arc<StateStore>,
}

impl SessionTimers {
    pub(crate) fn new(state: Arc<StateStore>) -> Arc<Self> {
        Arc::new(SessionTimers {
            deadlines: Mutex::new(HashMap::new()),
            state,
        })
    }

    /// The answer to a [`Command::SessionRenew`] reaching this leader.
    pub(crate) fn renew(&self, cmd: &Command) -> Outcome {
        let Command::SessionRenew { id } = cmd else {
            return Outcome::Rejected("not a session renewal".into());
        };
        match self.state.read(|s| s.session(id).map(|s| s.ttl_ms)) {
            None => Outcome::Rejected(format!("Session id {id:?} not found")),
            Some(0) => Outcome::Done,
            Some(ms) => {
                let deadline = Instant::now() + Duration::from_millis(ms) * TTL_MULTIPLIER;
                self.deadlines.lock().insert(id.clone(), deadline);
                Outcome::Done
            }
        }
    }

    /// Starts timers for sessions new to this leader (all of them when
    /// `fresh`), drops those gone, and returns the expired ones and the
    /// next deadline.
    fn sweep(&self, fresh: bool) -> (Vec<String>, Option<Instant>) {
        let now = Instant::now();
        let ttls: HashMap<String, u64> = self.state.read(|s| {
            s.sessions()
                .filter(|x| x.ttl_ms > 0)
                .map(|x| (x.id.clone(), x.ttl_ms))
                .collect()
        });
        let mut deadlines = self.deadlines.lock();
        if fresh {
            deadlines.clear();
        }
        deadlines.retain(|id, _| ttls.contains_key(id));
        for (id, ms) in &ttls {
            deadlines
                .entry(id.clone())
                .or_insert(now + Duration::from_millis(*ms) * TTL_MULTIPLIER);
        }
        let expired = deadlines
            .iter()
            .filter(|(_, t)| **t <= now)
            .map(|(id, _)| id.clone())
            .collect();
        let next = deadlines.values().filter(|t| **t > now).min().copied();
        (expired, next)
    }
}

/// On the leader: destroys sessions whose TTL ran out.
pub(crate) async fn run(
    timers: Arc<SessionTimers>,
    raft: RaftNode,
    mut shutdown: watch::Receiver<Stop>,
) -> anyhow::Result<()> {
    let mut leading = false;
    loop {
        let mut changed = timers.state.hub().subscribe(Table::Sessions);
        let mut next = None;
        if raft.is_leader() {
            let (expired, soonest) = timers.sweep(!leading);
            leading = true;
            next = soonest;
            for id in expired {
                tracing::info!(session = %id, "session TTL expired; destroying it");
                match raft
                    .propose(&Command::SessionDestroy { id: id.clone() })
                    .await
                {
                    Ok(_) => {
                        timers.deadlines.lock().remove(&id);
                    }
                    Err(e) => {
                        tracing::warn!(session = %id, error = %e, "destroying an expired session")
                    }
                }
            }
        } else if leading {
            leading = false;
            timers.deadlines.lock().clear();
        }
        let wait = next
            .map(|t| t.saturating_duration_since(Instant::now()))
            .unwrap_or(SWEEP_EVERY)
            .min(SWEEP_EVERY);
        tokio::select! {
            _ = changed.changed() => {}
            _ = tokio::time::sleep(wait) => {}
            _ = shutdown.wait_for(|s| *s != Stop::Running) => return Ok(()),
        }
    }
}
