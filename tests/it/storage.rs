//! A full disk under one server of three: its Raft storage fails, it says
//! so and refuses requests, the other two keep committing, and once space
//! is freed it exits, restarts and catches up with nothing acknowledged lost.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mesh_testkit::{eventually, TestCluster};
use serde_json::Value;

use crate::http;

/// A small tmpfs mounted over a directory, unmounted on drop.
struct SmallDisk {
    at: PathBuf,
}

impl SmallDisk {
    /// Mount a `size` tmpfs at `at`, keeping what `at` held.
    fn mount_over(at: &Path, size: &str) -> SmallDisk {
        let saved = at.with_extension("saved");
        run(&[
            "mv",
            &at.display().to_string(),
            &saved.display().to_string(),
        ]);
        std::fs::create_dir_all(at).unwrap();
        run(&[
            "mount",
            "-t",
            "tmpfs",
            "-o",
            &format!("size={size}"),
            "tmpfs",
            &at.display().to_string(),
        ]);
        run(&[
            "cp",
            "-a",
            &format!("{}/.", saved.display()),
            &at.display().to_string(),
        ]);
        SmallDisk {
            at: at.to_path_buf(),
        }
    }

    /// Fill what is left with one file.
    fn fill(&self) -> PathBuf {
        use std::io::Write;
        let path = self.at.join("filler");
        let mut f = std::fs::File::create(&path).unwrap();
        let chunk = vec![0u8; 1 << 20];
        while f.write_all(&chunk).is_ok() {}
        // The last partial chunk, byte-sized, so nothing at all is left.
        let small = [0u8; 4096];
        while f.write_all(&small).is_ok() {}
        let _ = f.sync_all();
        path
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.at).status();
    }
}

fn run(args: &[&str]) {
    let out = Command::new(args[0]).args(&args[1..]).output().unwrap();
    assert!(
        out.status.success(),
        "{}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn a_full_disk_stops_one_server_and_loses_nothing() {
    assert!(
        nix_is_root(),
        "this test mounts a tmpfs: run it as root (CI does)"
    );
    let mut cluster = TestCluster::start(3).await.unwrap();
    let c = http();
    let leader = cluster.wait_for_leader(Duration::from_secs(20)).await;
    let victim = (leader + 1) % 3;
    let writer = (leader + 2) % 3;
    // Move the victim's data onto a 48 MiB disk (stopped while it moves).
    cluster.agents[victim].kill().await;
    let disk = SmallDisk::mount_over(&cluster.agents[victim].data_dir, "48m");
    cluster.agents[victim].restart().await.unwrap();

    // Writes through another server, every acknowledged key recorded.
    let acked = Arc::new(Mutex::new(BTreeSet::new()));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load = {
        let (c, acked, stop) = (c.clone(), acked.clone(), stop.clone());
        let url = cluster.agents[writer].url("/v1/kv/load/");
        tokio::spawn(async move {
            let value = vec![b'x'; 64 << 10];
            let mut i = 0u32;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let key = format!("{i:06}");
                let ok = c
                    .put(format!("{url}{key}"))
                    .body(value.clone())
                    .send()
                    .await
                    .is_ok_and(|r| r.status() == 200);
                if ok {
                    acked.lock().unwrap().insert(key);
                }
                i += 1;
            }
        })
    };
    eventually(
        "some writes acknowledged",
        Duration::from_secs(20),
        || async { (acked.lock().unwrap().len() > 20).then_some(()) },
    )
    .await;
    let filler = disk.fill();

    // The victim notices, says why, and refuses requests.
    let victim_agent = &cluster.agents[victim];
    let reason = eventually(
        "the victim reports itself unhealthy",
        Duration::from_secs(60),
        || async {
            let v: Value = crate::try_json(&c, &victim_agent.url("/v1/agent/self")).await?;
            (v["Health"]["Healthy"] == false).then(|| v["Health"]["Reason"].to_string())
        },
    )
    .await;
    assert!(reason.contains("raft storage failed"), "{reason}");
    let r = c
        .put(victim_agent.url("/v1/kv/through-victim"))
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    assert!(r.text().await.unwrap().contains("raft storage failed"));

    // The other two keep committing.
    let before = acked.lock().unwrap().len();
    eventually(
        "writes still committing on the others",
        Duration::from_secs(30),
        || async { (acked.lock().unwrap().len() > before + 20).then_some(()) },
    )
    .await;

    // Space freed: the victim exits with a clear message, restarts, catches up.
    std::fs::remove_file(&filler).unwrap();
    let status = cluster.agents[victim]
        .wait_exit(Duration::from_secs(30))
        .await
        .expect("the victim exits once its disk has room");
    assert!(!status.success());
    let log = std::fs::read_to_string(&cluster.agents[victim].log).unwrap();
    assert!(log.contains("takes writes again"), "{log}");
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    load.await.unwrap();
    cluster.agents[victim].restart().await.unwrap();
    let acked = acked.lock().unwrap().clone();
    let victim_agent = &cluster.agents[victim];
    eventually(
        "the victim holds every acknowledged write",
        Duration::from_secs(60),
        || async {
            let keys: Vec<String> =
                crate::try_json(&c, &victim_agent.url("/v1/kv/load/?keys&stale")).await?;
            let have: BTreeSet<String> = keys
                .iter()
                .filter_map(|k| k.strip_prefix("load/").map(str::to_string))
                .collect();
            acked.is_subset(&have).then_some(())
        },
    )
    .await;
    drop(cluster);
    drop(disk);
}

/// Whether this process runs as root (it may mount).
fn nix_is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .map(|v| v.split_whitespace().next() == Some("0"))
        })
        .unwrap_or(false)
}
