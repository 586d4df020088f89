//! An append is acknowledged only after its entries are fsynced: a child
//! appends entries to the real RocksDB log one at a time under strace and
//! prints each index once `append` has acknowledged it (openraft's flush
//! callback). In the trace, between one acknowledgement and the next there
//! must be a completed fdatasync/fsync of RocksDB's write-ahead log. An
//! append written without `sync` shows no such call and fails this test.

use std::collections::HashMap;
use std::process::Command;
use std::sync::Arc;

use mesh_raft::{Proposal, TypeConfig};
use mesh_state::StateStore;
use openraft::storage::RaftLogStorageExt;
use openraft::{CommittedLeaderId, Entry, EntryPayload, LogId};

const CHILD_DIR: &str = "MESH_STORE_FSYNC_CHILD_DIR";
const ENTRIES: u64 = 40;

fn entry(index: u64) -> Entry<TypeConfig> {
    Entry {
        log_id: LogId::new(CommittedLeaderId::new(1, 1), index),
        payload: EntryPayload::Normal(Proposal(vec![index as u8; 512])),
    }
}

/// What one line of `strace -f -y` output says, as far as this test cares.
#[derive(Debug, PartialEq)]
enum Event {
    /// An fsync or fdatasync of RocksDB's WAL (`*.log`) returned 0.
    WalSynced,
    /// The child started writing "acked N" to stdout.
    Acked(u64),
    Other,
}

/// Reads one trace line; `pending` holds calls split by another thread's
/// (`<unfinished ...>` now, `<... resumed>` later), by thread id.
fn event(line: &str, pending: &mut HashMap<String, String>) -> Event {
    let (tid, rest) = line.split_once(' ').unwrap_or(("", line));
    let rest = rest.trim_start();
    let call = if let Some(head) = rest.strip_suffix("<unfinished ...>") {
        pending.insert(tid.to_string(), head.to_string());
        // A write's start is what orders it after the sync.
        head.to_string()
    } else if rest.starts_with("<...") {
        let head = pending.remove(tid).unwrap_or_default();
        let tail = rest.split_once("resumed>").map_or("", |(_, t)| t);
        format!("{head}{tail}")
    } else {
        rest.to_string()
    };
    let is_sync = call.starts_with("fdatasync(") || call.starts_with("fsync(");
    if is_sync && call.contains(".log>") && call.trim_end().ends_with("= 0") {
        return Event::WalSynced;
    }
    if let Some(text) = call.strip_prefix("write(1") {
        if let Some(n) = text
            .split("\"acked ")
            .nth(1)
            .and_then(|t| t.split('\\').next())
            .and_then(|n| n.parse().ok())
        {
            return if rest.starts_with("<...") {
                Event::Other
            } else {
                Event::Acked(n)
            };
        }
    }
    Event::Other
}

#[tokio::test]
async fn an_append_is_acknowledged_only_after_its_wal_is_fsynced() {
    if let Ok(dir) = std::env::var(CHILD_DIR) {
        let (mut log, _sm) = mesh_store::open(dir.as_ref(), Arc::new(StateStore::new())).unwrap();
        for index in 1..=ENTRIES {
            log.blocking_append([entry(index)]).await.unwrap();
            println!("acked {index}");
        }
        return;
    }
    let strace = mesh_testkit::require_tool("strace", "scripts/setup.sh installs it");
    let dir = tempfile::tempdir().unwrap();
    let trace = dir.path().join("trace");
    let data = dir.path().join("data");
    let out = Command::new(strace)
        .args([
            "-f",
            "-qq",
            "-y",
            "-s",
            "32",
            "-e",
            "trace=fsync,fdatasync,write",
            "-o",
        ])
        .arg(&trace)
        .arg(std::env::current_exe().unwrap())
        .args([
            "an_append_is_acknowledged_only_after_its_wal_is_fsynced",
            "--exact",
            "--nocapture",
        ])
        .env(CHILD_DIR, &data)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "the traced child failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(&trace).unwrap();
    let mut pending = HashMap::new();
    let mut synced = false;
    let mut acks = Vec::new();
    for line in text.lines() {
        match event(line, &mut pending) {
            Event::WalSynced => synced = true,
            Event::Acked(n) => {
                assert!(
                    synced,
                    "entry {n} was acknowledged with no WAL fsync since the last acknowledgement"
                );
                synced = false;
                acks.push(n);
            }
            Event::Other => {}
        }
    }
    assert_eq!(
        acks,
        (1..=ENTRIES).collect::<Vec<_>>(),
        "every acknowledgement is in the trace:\n{text}"
    );
}

#[test]
fn trace_lines_are_read_whole_or_split() {
    let mut p = HashMap::new();
    assert_eq!(
        event("77 fdatasync(9</tmp/d/000004.log>) = 0", &mut p),
        Event::WalSynced
    );
    assert_eq!(
        event("77 fdatasync(9</tmp/d/MANIFEST-000005>) = 0", &mut p),
        Event::Other,
        "only the WAL counts"
    );
    assert_eq!(
        event("78 fdatasync(9</tmp/d/000004.log> <unfinished ...>", &mut p),
        Event::Other
    );
    assert_eq!(
        event(r#"79 write(1</dev/pts/0>, "acked 3\n", 8) = 8"#, &mut p),
        Event::Acked(3)
    );
    assert_eq!(
        event("78 <... fdatasync resumed>) = 0", &mut p),
        Event::WalSynced
    );
    assert_eq!(
        event(
            "78 fdatasync(9</tmp/d/000004.log>) = -1 EIO (Input/output error)",
            &mut p
        ),
        Event::Other,
        "a failed sync is no sync"
    );
}
