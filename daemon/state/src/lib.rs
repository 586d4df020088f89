//! The replicated state machine: catalog and KV tables, deterministic
//! `apply(index, command)`, per-table modify indexes, a watch hub that wakes
//! blocking queries, and snapshot/restore. No I/O.

#![forbid(unsafe_code)]

mod apply;
mod catalog;
mod hub;
mod intentions;
mod snapshot;
mod tables;
#[cfg(test)]
mod tests;

pub use hub::{Table, WatchHub};
pub use snapshot::SnapshotError;
pub use tables::{CaRecord, ServiceHealth, State};

use mesh_types::Outcome;
use parking_lot::RwLock;

/// The state shared by the Raft state machine (writer) and every reader.
#[derive(Default)]
pub struct StateStore {
    state: RwLock<State>,
    hub: WatchHub,
}

impl StateStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Apply one encoded command at a Raft log index, then wake watchers of
    /// the tables it changed.
    pub fn apply(&self, index: u64, command: &[u8]) -> Outcome {
        let (outcome, changed) = self.state.write().apply(index, command);
        self.hub.notify(index, &changed);
        outcome
    }

    /// Record that a log index was applied without a command (blank or membership entry).
    pub fn advance(&self, index: u64) {
        self.state.write().advance(index);
        self.hub.notify(index, &[]);
    }

    /// Read the state under a shared lock.
    pub fn read<T>(&self, f: impl FnOnce(&State) -> T) -> T {
        f(&self.state.read())
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
        *self.state.write() = fresh;
        self.hub.notify_all(index);
        Ok(())
    }

    /// Last applied log index.
    pub fn last_index(&self) -> u64 {
        self.state.read().last_index()
    }
}
