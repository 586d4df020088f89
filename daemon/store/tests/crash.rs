//! A process killed in the middle of appending loses no acknowledged entry:
//! a child appends entries to the real RocksDB log one by one and prints
//! each index once `append` has acknowledged it; the test kills it with
//! SIGKILL mid-stream, reopens the store, and finds every acknowledged
//! entry intact and the log without gaps. (A process crash, not a power
//! loss: the kernel keeps what was written, so this proves entries reach
//! the WAL before the acknowledgement; fsync is RocksDB's `sync` write.)

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mesh_raft::{Proposal, TypeConfig};
use mesh_state::StateStore;
use openraft::storage::{RaftLogReader, RaftLogStorage, RaftLogStorageExt};
use openraft::{CommittedLeaderId, Entry, EntryPayload, LogId};

const CHILD_DIR: &str = "MESH_STORE_CRASH_CHILD_DIR";

/// The payload of entry `index`: recognisable and 4 KiB long.
fn payload(index: u64) -> Vec<u8> {
    let mut p = index.to_le_bytes().to_vec();
    p.resize(4096, (index % 251) as u8);
    p
}

fn entry(index: u64) -> Entry<TypeConfig> {
    Entry {
        log_id: LogId::new(CommittedLeaderId::new(1, 1), index),
        payload: EntryPayload::Normal(Proposal(payload(index))),
    }
}

/// The child: appends until it is killed, printing each acknowledged index.
async fn append_forever(dir: &str) {
    let (mut log, _sm) = mesh_store::open(dir.as_ref(), Arc::new(StateStore::new())).unwrap();
    for index in 1.. {
        log.blocking_append([entry(index)]).await.unwrap();
        println!("acked {index}");
    }
}

#[tokio::test]
async fn a_kill_mid_append_loses_no_acknowledged_entry() {
    if let Ok(dir) = std::env::var(CHILD_DIR) {
        append_forever(&dir).await;
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "a_kill_mid_append_loses_no_acknowledged_entry",
            "--exact",
            "--nocapture",
        ])
        .env(CHILD_DIR, dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut acked = 0u64;
    let deadline = Instant::now() + Duration::from_secs(60);
    // Kill it while it appends, some way into the stream.
    while acked < 300 {
        assert!(Instant::now() < deadline, "only {acked} appends in 60 s");
        match lines.next() {
            Some(Ok(l)) => {
                if let Some(i) = l.strip_prefix("acked ") {
                    acked = i.parse().unwrap();
                }
            }
            _ => panic!("the appending child stopped by itself after {acked}"),
        }
    }
    child.kill().unwrap();
    child.wait().unwrap();
    // Acknowledgements printed before it died count too.
    for l in lines.map_while(Result::ok) {
        if let Some(i) = l.strip_prefix("acked ") {
            acked = acked.max(i.parse().unwrap());
        }
    }

    let (mut log, _sm) = mesh_store::open(dir.path(), Arc::new(StateStore::new()))
        .expect("the store reopens after the kill");
    let last = log
        .get_log_state()
        .await
        .unwrap()
        .last_log_id
        .expect("entries survived")
        .index;
    assert!(
        last >= acked,
        "acknowledged up to {acked}, log ends at {last}"
    );
    let entries = log.try_get_log_entries(1..=last).await.unwrap();
    assert_eq!(entries.len() as u64, last, "no gaps in 1..={last}");
    for (i, e) in entries.iter().enumerate() {
        let index = i as u64 + 1;
        assert_eq!(e.log_id.index, index);
        match &e.payload {
            EntryPayload::Normal(p) => assert_eq!(p.0, payload(index), "entry {index}"),
            other => panic!("entry {index} is {other:?}"),
        }
    }
}
