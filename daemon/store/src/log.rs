//! Raft log storage. Every append is written with `sync`, so an entry
//! counted toward a quorum survives a crash of this process or machine.

use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::sync::Arc;

use mesh_raft::raft_types::{Entry, LogId, LogState, StorageError, Vote};
use mesh_raft::TypeConfig;
use openraft::storage::{LogFlushed, RaftLogReader, RaftLogStorage};
use openraft::{AnyError, OptionalSend, RaftLogId, StorageIOError};
use rocksdb::{WriteBatch, WriteOptions, DB};
use serde::{de::DeserializeOwned, Serialize};

use crate::{cf, CF_LOGS, CF_META};

const KEY_VOTE: &[u8] = b"vote";
const KEY_COMMITTED: &[u8] = b"committed";
const KEY_PURGED: &[u8] = b"last_purged";

/// The Raft log, vote and commit marker in rocksdb.
#[derive(Clone)]
pub struct LogStore {
    db: Arc<DB>,
}

fn index_key(index: u64) -> [u8; 8] {
    index.to_be_bytes()
}

fn synced() -> WriteOptions {
    let mut w = WriteOptions::default();
    w.set_sync(true);
    w
}

fn io_err(e: impl std::error::Error + 'static) -> AnyError {
    AnyError::new(&e)
}

impl LogStore {
    pub(crate) fn new(db: Arc<DB>) -> Self {
        LogStore { db }
    }

    fn get_meta<T: DeserializeOwned>(&self, key: &[u8]) -> Result<Option<T>, StorageError> {
        let raw = self
            .db
            .get_cf(cf(&self.db, CF_META), key)
            .map_err(|e| StorageIOError::read(io_err(e)))?;
        raw.map(|bytes| postcard::from_bytes(&bytes))
            .transpose()
            .map_err(|e| StorageIOError::read(io_err(e)).into())
    }

    fn put_meta<T: Serialize>(
        &self,
        key: &[u8],
        value: &T,
        sync: bool,
    ) -> Result<(), StorageError> {
        let bytes = postcard::to_stdvec(value).map_err(|e| StorageIOError::write(io_err(e)))?;
        let opts = if sync {
            synced()
        } else {
            WriteOptions::default()
        };
        self.db
            .put_cf_opt(cf(&self.db, CF_META), key, bytes, &opts)
            .map_err(|e| StorageIOError::write(io_err(e)).into())
    }

    fn last_entry_id(&self) -> Result<Option<LogId>, StorageError> {
        let mut iter = self.db.raw_iterator_cf(cf(&self.db, CF_LOGS));
        iter.seek_to_last();
        match iter.value() {
            Some(bytes) => {
                let entry: Entry = postcard::from_bytes(bytes)
                    .map_err(|e| StorageIOError::read_logs(io_err(e)))?;
                Ok(Some(*entry.get_log_id()))
            }
            None => {
                iter.status()
                    .map_err(|e| StorageIOError::read_logs(io_err(e)))?;
                Ok(None)
            }
        }
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        let start = match range.start_bound() {
            Bound::Included(i) => *i,
            Bound::Excluded(i) => i + 1,
            Bound::Unbounded => 0,
        };
        let mut out = Vec::new();
        let mut iter = self.db.raw_iterator_cf(cf(&self.db, CF_LOGS));
        iter.seek(index_key(start));
        while let (Some(key), Some(value)) = (iter.key(), iter.value()) {
            let index =
                u64::from_be_bytes(key.try_into().map_err(|_| {
                    StorageIOError::read_logs(AnyError::error("malformed log key"))
                })?);
            if !range.contains(&index) {
                break;
            }
            out.push(
                postcard::from_bytes(value).map_err(|e| StorageIOError::read_logs(io_err(e)))?,
            );
            iter.next();
        }
        iter.status()
            .map_err(|e| StorageIOError::read_logs(io_err(e)))?;
        Ok(out)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState, StorageError> {
        let last_purged: Option<LogId> = self.get_meta(KEY_PURGED)?;
        let last_log_id = self.last_entry_id()?.or(last_purged);
        Ok(LogState {
            last_purged_log_id: last_purged,
            last_log_id,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), StorageError> {
        self.put_meta(KEY_VOTE, vote, true)
            .map_err(|e| StorageIOError::write_vote(AnyError::new(&e)).into())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, StorageError> {
        self.get_meta(KEY_VOTE)
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageError> {
        // Not synced: losing it only means re-applying from the snapshot.
        self.put_meta(KEY_COMMITTED, &committed, false)
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError> {
        Ok(self.get_meta::<Option<LogId>>(KEY_COMMITTED)?.flatten())
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut batch = WriteBatch::default();
        let logs = cf(&self.db, CF_LOGS);
        for entry in entries {
            let bytes =
                postcard::to_stdvec(&entry).map_err(|e| StorageIOError::write_logs(io_err(e)))?;
            batch.put_cf(logs, index_key(entry.get_log_id().index), bytes);
        }
        let result = self.db.write_opt(batch, &synced());
        let io_result = match &result {
            Ok(()) => Ok(()),
            Err(e) => Err(std::io::Error::other(e.to_string())),
        };
        callback.log_io_completed(io_result);
        result.map_err(|e| StorageIOError::write_logs(io_err(e)).into())
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        let mut batch = WriteBatch::default();
        batch.delete_range_cf(
            cf(&self.db, CF_LOGS),
            index_key(log_id.index),
            index_key(u64::MAX),
        );
        // The last possible key is excluded by delete_range; delete it too.
        batch.delete_cf(cf(&self.db, CF_LOGS), index_key(u64::MAX));
        self.db
            .write_opt(batch, &synced())
            .map_err(|e| StorageIOError::write_logs(io_err(e)).into())
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        self.put_meta(KEY_PURGED, &log_id, true)?;
        self.db
            .delete_range_cf(
                cf(&self.db, CF_LOGS),
                index_key(0),
                index_key(log_id.index + 1),
            )
            .map_err(|e| StorageIOError::write_logs(io_err(e)).into())
    }
}
