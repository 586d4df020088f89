//! The leader deletes ACL tokens whose expiry has passed (they stopped
//! resolving at that moment; this frees them from the state).

use std::time::Duration;

use mesh_raft::RaftNode;
use mesh_state::StateStore;
use mesh_types::Command;
use std::sync::Arc;
use tokio::sync::watch;

use crate::stop::Stop;

/// How often the leader looks for expired tokens.
const SWEEP: Duration = Duration::from_secs(5);
/// Tokens deleted per log entry, at most.
const BATCH: usize = 256;

pub(crate) async fn run(
    state: Arc<StateStore>,
    raft: RaftNode,
    mut shutdown: watch::Receiver<Stop>,
) -> anyhow::Result<()> {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(SWEEP) => {}
            _ = shutdown.wait_for(|s| *s != Stop::Running) => return Ok(()),
        }
        if !raft.is_leader() {
            continue;
        }
        let now = mesh_state::now_unix_ms();
        let expired = state.read(|s| s.acl_expired_tokens(now));
        for chunk in expired.chunks(BATCH) {
            let cmd = Command::AclTokensExpire {
                accessors: chunk.to_vec(),
                now_unix_ms: now,
            };
            match raft.propose(&cmd).await {
                Ok(_) => tracing::info!(count = chunk.len(), "deleted expired ACL tokens"),
                Err(e) => tracing::warn!(error = %e, "deleting expired ACL tokens"),
            }
        }
    }
}
