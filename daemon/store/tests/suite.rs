//! mesh-store under openraft's own storage test suite: the log, vote,
//! committed marker, purge/truncate and snapshot contracts that Raft's
//! safety rests on, against real rocksdb in a temp dir.

use std::sync::Arc;

use mesh_raft::TypeConfig;
use mesh_state::StateStore;
use mesh_store::{LogStore, StateMachine};
use openraft::testing::{StoreBuilder, Suite};
use openraft::{StorageError, StorageIOError};

struct RocksBuilder;

impl StoreBuilder<TypeConfig, LogStore, StateMachine, tempfile::TempDir> for RocksBuilder {
    async fn build(
        &self,
    ) -> Result<(tempfile::TempDir, LogStore, StateMachine), StorageError<u64>> {
        let dir = tempfile::tempdir().expect("a temp dir");
        let (log, sm) = mesh_store::open(dir.path(), Arc::new(StateStore::new()))
            .map_err(|e| StorageError::from(StorageIOError::<u64>::write(&e)))?;
        Ok((dir, log, sm))
    }
}

#[test]
fn the_rocksdb_store_passes_openraft_storage_suite() {
    Suite::test_all(RocksBuilder).expect("every storage contract holds");
}
