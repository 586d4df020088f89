//! The replicated state machine: catalog and KV tables, deterministic
//! `apply(index, command)`, per-table modify indexes, a watch hub that wakes
//! blocking queries, and snapshot/restore. No I/O.

#![forbid(unsafe_code)]

mod acl;
mod acl_ext;
mod apply;
mod catalog;
mod coordinates;
#[cfg(test)]
mod decode_props;
mod hub;
mod intentions;
mod queries;
mod sessions;
mod snapshot;
mod tables;
#[cfg(test)]
mod tests;

pub use acl::{now_unix_ms, ResolvedToken};
pub use acl_ext::BIND_TYPES;
pub use hub::{Table, WatchHub};
pub use queries::cached_regex;
pub use snapshot::{inspect_snapshot, SnapshotError, SnapshotSummary};
pub use tables::{CaRecord, ServiceHealth, State};

use std::sync::atomic::{AtomicU64, Ordering};

use mesh_types::Outcome;
use parking_lot::RwLock;

/// The state shared by the Raft state machine (writer) and every reader.
#[derive(Default)]
pub struct StateStore {
    state: RwLock<State>,
    hub: WatchHub,
    /// Bumped under the write lock by every change, restores included, so a
    /// reader can tell two reads saw the same state (render caches key on it).
    version: AtomicU64,
}

impl StateStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Apply one encoded log entry (`mesh_types::LogEntry`) at a Raft log
    /// index, then wake watchers of the tables it changed.
    pub fn apply(&self, index: u64, entry: &[u8]) -> Outcome {
        self.change(index, |state| state.apply(index, entry))
    }

    /// Apply one command at an index, as a log entry holding only it would
    /// (for state built without a log: tests and fixtures).
    pub fn apply_command(&self, index: u64, command: mesh_types::Command) -> Outcome {
        self.change(index, |state| state.apply_one(index, command))
    }

    fn change(&self, index: u64, f: impl FnOnce(&mut State) -> apply::Applied) -> Outcome {
        let (outcome, changed) = {
            let mut state = self.state.write();
            self.version.fetch_add(1, Ordering::Release);
            f(&mut state)
        };
        self.hub.notify(index, &changed);
        outcome
    }

    /// Record that a log index was applied without a command (blank or membership entry).
    pub fn advance(&self, index: u64) {
        {
            let mut state = self.state.write();
            self.version.fetch_add(1, Ordering::Release);
            state.advance(index);
        }
        self.hub.notify(index, &[]);
    }

    /// Read the state under a shared lock.
    pub fn read<T>(&self, f: impl FnOnce(&State) -> T) -> T {
        f(&self.state.read())
    }

    /// Read the state under a shared lock, with the version of the state
    /// the read saw: equal versions mean identical state.
    pub fn read_versioned<T>(&self, f: impl FnOnce(&State, u64) -> T) -> T {
        let state = self.state.read();
        f(&state, self.version.load(Ordering::Acquire))
    }

    /// The watch hub for blocking queries.
    pub fn hub(&self) -> &WatchHub {
        &self.hub
    }

    /// Serialize the whole state.
    pub fn snapshot(&self) -> Vec<u8> {
        self.state.read().to_snapshot()
    }

    /// Replace the whole state from a snapshot and wake every watcher.
    pub fn restore(&self, bytes: &[u8]) -> Result<(), SnapshotError> {
        let fresh = State::from_snapshot(bytes)?;
        let index = fresh.last_index();
        {
            let mut state = self.state.write();
            self.version.fetch_add(1, Ordering::Release);
            *state = fresh;
        }
        self.hub.notify_all(index);
        Ok(())
    }

    /// Last applied log index.
    pub fn last_index(&self) -> u64 {
        self.state.read().last_index()
    }
}
