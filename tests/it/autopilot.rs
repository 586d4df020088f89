//! Autopilot on a 3-server cluster: server health as the leader sees it,
//! a dead server removed after the stabilization time (and back as a voter
//! when it returns), and `mesh operator raft remove-peer` when cleanup is
//! off.

use std::time::Duration;

use mesh_testkit::{eventually, TestAgent, TestCluster};
use serde_json::Value;

use crate::mesh_cli;

fn autopilot_config(dir: &std::path::Path, cleanup: bool) -> std::path::PathBuf {
    let path = dir.join("autopilot.hcl");
    std::fs::write(
        &path,
        format!(
            "autopilot {{\n  cleanup_dead_servers = {cleanup}\n  server_stabilization_time = \"2s\"\n  last_contact_threshold = \"1s\"\n}}\n"
        ),
    )
    .unwrap();
    path
}

async fn cluster(cleanup: bool) -> (tempfile::TempDir, TestCluster) {
    let dir = tempfile::tempdir().unwrap();
    let config = autopilot_config(dir.path(), cleanup);
    let cluster = TestCluster::start_with(3, |_, spec| {
        spec.extra = vec![format!("-config-file={}", config.display())];
    })
    .await
    .unwrap();
    (dir, cluster)
}

/// `mesh operator autopilot health` through `agent`: exit code and JSON.
async fn health(agent: &TestAgent) -> (i32, Value) {
    let (code, out) = mesh_cli(agent, &["operator", "autopilot", "health"]).await;
    let json = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    (code, json)
}

fn server<'a>(health: &'a Value, name: &str) -> Option<&'a Value> {
    health["Servers"]
        .as_array()?
        .iter()
        .find(|s| s["Name"] == name)
}

async fn raft_names(agent: &TestAgent) -> Vec<String> {
    let v: Value =
        crate::fetch_json(&crate::http(), agent.url("/v1/operator/raft/configuration")).await;
    v["Servers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["Node"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn a_dead_server_is_cleaned_up_after_the_stabilization_time_and_rejoins() {
    let (_dir, mut cluster) = cluster(true).await;
    let leader = cluster.wait_for_leader(Duration::from_secs(10)).await;
    let follower = (leader + 1) % 3;
    let victim = (leader + 2) % 3;
    // Asked through a follower: it passes the question to the leader.
    let ok = eventually("a healthy cluster", Duration::from_secs(20), || async {
        let (code, h) = health(&cluster.agents[follower]).await;
        (code == 0 && h["FailureTolerance"] == 1).then_some(h)
    })
    .await;
    assert_eq!(ok["Servers"].as_array().unwrap().len(), 3, "{ok}");
    let victim_name = cluster.agents[victim].spec.name.clone();

    cluster.agents[victim].kill().await;
    let sick = eventually(
        "the dead server seen unhealthy",
        Duration::from_secs(20),
        || async {
            let (code, h) = health(&cluster.agents[follower]).await;
            let s = server(&h, &victim_name)?;
            (code == 2 && s["Healthy"] == false && s["SerfStatus"] == "failed").then_some(h)
        },
    )
    .await;
    assert_eq!(sick["Healthy"], false, "{sick}");
    assert_eq!(sick["FailureTolerance"], 0, "{sick}");
    eventually(
        "the dead server removed",
        Duration::from_secs(20),
        || async {
            let names = raft_names(&cluster.agents[leader]).await;
            (names.len() == 2 && !names.contains(&victim_name)).then_some(())
        },
    )
    .await;
    let (code, h) = health(&cluster.agents[leader]).await;
    assert_eq!((code, h["Healthy"].clone()), (0, Value::Bool(true)), "{h}");

    // Back from the dead: a voter again.
    cluster.agents[victim].restart().await.unwrap();
    eventually(
        "the server back as a voter",
        Duration::from_secs(30),
        || async {
            let names = raft_names(&cluster.agents[leader]).await;
            names.contains(&victim_name).then_some(())
        },
    )
    .await;
}

#[tokio::test]
async fn remove_peer_takes_out_a_dead_server_when_cleanup_is_off() {
    let (_dir, mut cluster) = cluster(false).await;
    let leader = cluster.wait_for_leader(Duration::from_secs(10)).await;
    let follower = (leader + 1) % 3;
    let victim = (leader + 2) % 3;
    let victim_name = cluster.agents[victim].spec.name.clone();
    let victim_rpc = cluster.agents[victim].rpc.unwrap().to_string();
    cluster.agents[victim].kill().await;
    eventually(
        "the dead server seen failed",
        Duration::from_secs(20),
        || async {
            let (_, h) = health(&cluster.agents[leader]).await;
            (server(&h, &victim_name)?["SerfStatus"] == "failed").then_some(())
        },
    )
    .await;
    // Past the stabilization time, cleanup being off, it stays.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(raft_names(&cluster.agents[leader])
        .await
        .contains(&victim_name));

    // Bad targets are refused with the reason; the leader cannot be removed.
    let (code, out) = mesh_cli(
        &cluster.agents[follower],
        &["operator", "raft", "remove-peer", "-address", "127.0.0.1:1"],
    )
    .await;
    assert_ne!(code, 0);
    assert!(out.contains("not in the Raft configuration"), "{out}");
    let leader_rpc = cluster.agents[leader].rpc.unwrap().to_string();
    let (code, out) = mesh_cli(
        &cluster.agents[follower],
        &["operator", "raft", "remove-peer", "-address", &leader_rpc],
    )
    .await;
    assert_ne!(code, 0);
    assert!(out.contains("is the leader"), "{out}");

    let (code, out) = mesh_cli(
        &cluster.agents[follower],
        &["operator", "raft", "remove-peer", "-address", &victim_rpc],
    )
    .await;
    assert_eq!(code, 0, "{out}");
    let names = raft_names(&cluster.agents[leader]).await;
    assert_eq!(names.len(), 2, "{names:?}");
    assert!(!names.contains(&victim_name));
}
