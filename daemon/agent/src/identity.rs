//! The node's persistent identity: a UUID kept in the data dir, from which
//! the Raft server ID is derived, so a restarted server is the same voter.

use std::path::Path;

use anyhow::Context;
use uuid::Uuid;

/// Read the node ID from `dir/node-id`, creating it on first start.
pub(crate) fn load_or_create(dir: &Path) -> anyhow::Result<Uuid> {
    let path = dir.join("node-id");
    match std::fs::read_to_string(&path) {
        Ok(text) => Uuid::parse_str(text.trim()).with_context(|| {
            format!(
                "{} does not hold a node ID; the data dir is damaged or not a mesh data dir",
                path.display()
            )
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let id = Uuid::new_v4();
            let tmp = dir.join("node-id.tmp");
            std::fs::write(&tmp, id.to_string())
                .with_context(|| format!("writing {}", tmp.display()))?;
            std::fs::rename(&tmp, &path).with_context(|| format!("writing {}", path.display()))?;
            Ok(id)
        }
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

/// The Raft server ID for a node ID (its first 8 bytes, never 0).
pub(crate) fn raft_id(node_id: &Uuid) -> u64 {
    let bytes: [u8; 8] = node_id.as_bytes()[..8]
        .try_into()
        .expect("uuid has 16 bytes");
    u64::from_be_bytes(bytes).max(1)
}
