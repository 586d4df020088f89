//! Durable Raft storage on rocksdb: the log (fsynced before a write is
//! acknowledged), vote and commit markers, and state-machine snapshots. The
//! live state is the in-memory `mesh_state::StateStore`; on restart it is
//! rebuilt from the last snapshot plus the committed log.
//! The only crate that links rocksdb.

#![forbid(unsafe_code)]
// openraft fixes the (large) storage error type of the traits we implement.
#![allow(clippy::result_large_err)]

mod log;
mod state_machine;

use std::path::Path;
use std::sync::Arc;

use rocksdb::{ColumnFamilyDescriptor, Options, DB};

pub use log::LogStore;
pub use state_machine::StateMachine;

const CF_LOGS: &str = "logs";
const CF_META: &str = "meta";

/// The data directory could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// Another process holds the data directory.
    #[error("data dir {path} is in use by another process (is another mesh agent running with the same -data-dir?)")]
    Locked { path: String },
    /// rocksdb refused to open the directory (corrupt or not a mesh data dir).
    #[error("cannot open raft store in {path}: {reason}. If the directory is corrupt, restore it from a snapshot or move it aside")]
    Open { path: String, reason: String },
    /// A stored snapshot could not be read back.
    #[error("stored snapshot in {path} is unreadable: {reason}")]
    Snapshot { path: String, reason: String },
}

/// Open (or create) the raft store in `dir` and return its log and state-machine halves.
pub fn open(
    dir: &Path,
    state: Arc<mesh_state::StateStore>,
) -> Result<(LogStore, StateMachine), OpenError> {
    let mut opts = Options::default();
    opts.create_if_missing(true);
    opts.create_missing_column_families(true);
    opts.set_max_background_jobs(2);
    let cfs = [CF_LOGS, CF_META].map(|name| ColumnFamilyDescriptor::new(name, Options::default()));
    let path = dir.display().to_string();
    let db = DB::open_cf_descriptors(&opts, dir, cfs).map_err(|e| {
        let reason = e.to_string();
        if reason.contains("lock") || reason.contains("Resource temporarily unavailable") {
            OpenError::Locked { path: path.clone() }
        } else {
            OpenError::Open {
                path: path.clone(),
                reason,
            }
        }
    })?;
    let db = Arc::new(db);
    let sm = StateMachine::open(db.clone(), state).map_err(|reason| OpenError::Snapshot {
        path: path.clone(),
        reason,
    })?;
    Ok((LogStore::new(db), sm))
}

fn cf<'a>(db: &'a DB, name: &str) -> &'a rocksdb::ColumnFamily {
    db.cf_handle(name).expect("column family created at open")
}
