//! The Raft state machine: applies entries to the shared in-memory
//! `StateStore` and keeps the latest snapshot in rocksdb.

use std::io::Cursor;
use std::sync::Arc;

use mesh_raft::raft_types::{Entry, LogId, Snapshot, SnapshotMeta, StorageError, StoredMembership};
use mesh_raft::TypeConfig;
use mesh_state::StateStore;
use mesh_types::Outcome;
use openraft::storage::{RaftSnapshotBuilder, RaftStateMachine};
use openraft::{AnyError, EntryPayload, OptionalSend, RaftLogId, StorageIOError};
use rocksdb::{WriteOptions, DB};
use serde::{Deserialize, Serialize};

use crate::{cf, CF_META};

const KEY_SNAPSHOT: &[u8] = b"snapshot";

/// A snapshot as stored: its metadata and the encoded state.
#[derive(Serialize, Deserialize)]
struct StoredSnapshot {
    meta: SnapshotMeta,
    data: Vec<u8>,
}

/// Applies committed entries and manages snapshots.
pub struct StateMachine {
    db: Arc<DB>,
    state: Arc<StateStore>,
    applied: Option<LogId>,
    membership: StoredMembership,
    snapshots_built: u64,
}

fn read_stored(db: &DB) -> Result<Option<StoredSnapshot>, String> {
    let raw = db
        .get_cf(cf(db, CF_META), KEY_SNAPSHOT)
        .map_err(|e| e.to_string())?;
    raw.map(|bytes| postcard::from_bytes(&bytes).map_err(|e| e.to_string()))
        .transpose()
}

fn write_stored(db: &DB, snap: &StoredSnapshot) -> Result<(), StorageError> {
    let bytes = postcard::to_stdvec(snap).map_err(|e| {
        StorageIOError::write_snapshot(Some(snap.meta.signature()), AnyError::new(&e))
    })?;
    let mut opts = WriteOptions::default();
    opts.set_sync(true);
    db.put_cf_opt(cf(db, CF_META), KEY_SNAPSHOT, bytes, &opts)
        .map_err(|e| {
            StorageIOError::write_snapshot(Some(snap.meta.signature()), AnyError::new(&e)).into()
        })
}

impl StateMachine {
    /// Load the last snapshot (if any) into `state`.
    pub(crate) fn open(db: Arc<DB>, state: Arc<StateStore>) -> Result<Self, String> {
        let mut sm = StateMachine {
            db,
            state,
            applied: None,
            membership: StoredMembership::default(),
            snapshots_built: 0,
        };
        if let Some(stored) = read_stored(&sm.db)? {
            sm.state.restore(&stored.data).map_err(|e| e.to_string())?;
            sm.applied = stored.meta.last_log_id;
            sm.membership = stored.meta.last_membership;
        }
        Ok(sm)
    }

    fn current(&self) -> Result<Option<Snapshot>, StorageError> {
        let stored = read_stored(&self.db)
            .map_err(|e| StorageIOError::read_snapshot(None, AnyError::error(e)))?;
        Ok(stored.map(|s| Snapshot {
            meta: s.meta,
            snapshot: Box::new(Cursor::new(s.data)),
        }))
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), StorageError> {
        Ok((self.applied, self.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Outcome>, StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut out = Vec::new();
        for entry in entries {
            let log_id = *entry.get_log_id();
            let outcome = match entry.payload {
                EntryPayload::Normal(proposal) => self.state.apply(log_id.index, &proposal.0),
                EntryPayload::Membership(m) => {
                    self.membership = StoredMembership::new(Some(log_id), m);
                    self.state.advance(log_id.index);
                    Outcome::Done
                }
                EntryPayload::Blank => {
                    self.state.advance(log_id.index);
                    Outcome::Done
                }
            };
            self.applied = Some(log_id);
            out.push(outcome);
        }
        Ok(out)
    }

    async fn get_snapshot_builder(&mut self) -> SnapshotBuilder {
        // Capture the state now, between applies, so the data matches `applied` exactly.
        self.snapshots_built += 1;
        SnapshotBuilder {
            db: self.db.clone(),
            data: self.state.snapshot(),
            applied: self.applied,
            membership: self.membership.clone(),
            seq: self.snapshots_built,
        }
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, StorageError> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError> {
        let data = snapshot.into_inner();
        self.state.restore(&data).map_err(|e| {
            StorageIOError::read_snapshot(Some(meta.signature()), AnyError::new(&e))
        })?;
        self.applied = meta.last_log_id;
        self.membership = meta.last_membership.clone();
        write_stored(
            &self.db,
            &StoredSnapshot {
                meta: meta.clone(),
                data,
            },
        )
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot>, StorageError> {
        self.current()
    }
}

/// Persists a snapshot captured by [`StateMachine::get_snapshot_builder`].
pub struct SnapshotBuilder {
    db: Arc<DB>,
    data: Vec<u8>,
    applied: Option<LogId>,
    membership: StoredMembership,
    seq: u64,
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    async fn build_snapshot(&mut self) -> Result<Snapshot, StorageError> {
        let snapshot_id = match self.applied {
            Some(id) => format!("{}-{}-{}", id.leader_id.term, id.index, self.seq),
            None => format!("0-0-{}", self.seq),
        };
        let meta = SnapshotMeta {
            last_log_id: self.applied,
            last_membership: self.membership.clone(),
            snapshot_id,
        };
        let stored = StoredSnapshot {
            meta: meta.clone(),
            data: std::mem::take(&mut self.data),
        };
        write_stored(&self.db, &stored)?;
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(stored.data)),
        })
    }
}
