//! Storage faults. When a write to the Raft log or state store fails (disk
//! full, an I/O error), Raft stops on this server: it no longer votes or
//! leads, so the others carry on without it. The agent stays up to say so
//! (`/v1/agent/self` `Health`, 503s naming the fault) and, once the disk
//! takes writes again, exits with a clear message: a restart replays the
//! durable log, which holds every acknowledged write.

use std::path::{Path, PathBuf};
use std::time::Duration;

use mesh_raft::RaftNode;

use crate::stop::Stop;

/// How often a faulted server checks whether its disk has room again.
const PROBE_EVERY: Duration = Duration::from_secs(1);
/// What a probe writes (and removes): room for the log to move on.
const PROBE_BYTES: usize = 4 << 20;

/// Wait for a storage fault; then wait for the disk and end the agent.
pub(crate) async fn watch(
    raft: RaftNode,
    dir: PathBuf,
    mut stop: tokio::sync::watch::Receiver<Stop>,
) -> anyhow::Result<()> {
    let fault = tokio::select! {
        fault = raft.stopped() => fault,
        _ = stop.wait_for(|s| *s != Stop::Running) => return Ok(()),
    };
    if *stop.borrow() != Stop::Running {
        return Ok(());
    }
    tracing::error!(
        %fault,
        dir = %dir.display(),
        "raft storage failed: this server has stopped taking part in the cluster and refuses requests; \
         it will exit once its disk takes writes again, so that a restart recovers from its log"
    );
    loop {
        tokio::select! {
            _ = tokio::time::sleep(PROBE_EVERY) => {}
            _ = stop.wait_for(|s| *s != Stop::Running) => return Ok(()),
        }
        let probe_dir = dir.clone();
        let room = tokio::task::spawn_blocking(move || probe(&probe_dir))
            .await
            .unwrap_or(false);
        if room {
            anyhow::bail!(
                "raft storage failed ({fault}); the disk under {} takes writes again: \
                 restart the agent to recover from its log",
                dir.display()
            );
        }
    }
}

/// Whether `dir` takes a synced write of `PROBE_BYTES` now.
fn probe(dir: &Path) -> bool {
    use std::io::Write;
    let path = dir.join(".mesh-space-probe");
    let ok = std::fs::File::create(&path)
        .and_then(|mut f| {
            f.write_all(&vec![0u8; PROBE_BYTES])?;
            f.sync_all()
        })
        .is_ok();
    let _ = std::fs::remove_file(&path);
    ok
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_writable_dir_has_room_and_the_probe_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        assert!(probe(dir.path()));
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
        assert!(!probe(&dir.path().join("missing")));
    }
}
