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

/// The Raft ID of the server named `name`, from the configuration.
async fn raft_id(agent: &TestAgent, name: &str) -> String {
    let v: Value =
        crate::fetch_json(&crate::http(), agent.url("/v1/operator/raft/configuration")).await;
    let server = v["Servers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["Node"] == name)
        .unwrap_or_else(|| panic!("{name} not in {v}"));
    server["ID"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn transfer_leader_hands_over_to_the_named_server_without_losing_writes() {
    let (_dir, cluster) = cluster(false).await;
    let leader = cluster.wait_for_leader(Duration::from_secs(10)).await;
    let target = (leader + 1) % 3;
    let other = (leader + 2) % 3;
    let target_name = cluster.agents[target].spec.name.clone();
    let target_id = raft_id(&cluster.agents[leader], &target_name).await;

    // Writes keep coming through the third server while leadership moves.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let url = cluster.agents[other].url("/v1/kv/transfer/");
        let stop = stop.clone();
        tokio::spawn(async move {
            let client = crate::http();
            let mut written = 0u32;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let resp = client
                    .put(format!("{url}{written}"))
                    .body(format!("v{written}"))
                    .send()
                    .await
                    .unwrap();
                let status = resp.status();
                let body = resp.text().await.unwrap();
                assert!(
                    status.is_success() && body.trim() == "true",
                    "write {written}: {status} {body}"
                );
                written += 1;
            }
            written
        })
    };

    let start = std::time::Instant::now();
    let (code, out) = mesh_cli(
        &cluster.agents[other],
        &["operator", "raft", "transfer-leader", "-id", &target_id],
    )
    .await;
    let took = start.elapsed();
    assert_eq!(code, 0, "{out}");
    assert!(out.contains(&format!("server {target_id}")), "{out}");
    assert_eq!(
        cluster.wait_for_leader(Duration::from_secs(10)).await,
        target
    );
    // Won by the handover, not by a leader lost to a timeout.
    let log = std::fs::read_to_string(&cluster.agents[target].log).unwrap();
    assert!(log.contains("the leader hands over"), "{log}");
    // Lease (election_timeout_max) plus catch-up: well under one failover.
    assert!(took < Duration::from_secs(5), "transfer took {took:?}");

    // Without -id: the most caught-up other voter.
    let (code, out) = mesh_cli(
        &cluster.agents[leader],
        &["operator", "raft", "transfer-leader"],
    )
    .await;
    assert_eq!(code, 0, "{out}");
    let now_index = cluster.wait_for_leader(Duration::from_secs(10)).await;
    assert_ne!(now_index, target);

    // Refused with the reason: unknown IDs, the leader itself, bad IDs.
    let now_name = cluster.agents[now_index].spec.name.clone();
    let now_id = raft_id(&cluster.agents[now_index], &now_name).await;
    for (id, why) in [
        ("999", "not a voter"),
        (now_id.as_str(), "already the leader"),
        ("not-a-number", "is not a server ID"),
    ] {
        let (code, out) = mesh_cli(
            &cluster.agents[target],
            &["operator", "raft", "transfer-leader", "-id", id],
        )
        .await;
        assert_ne!(code, 0, "{id}: {out}");
        assert!(out.contains(why), "{id}: {out}");
    }
    assert_eq!(
        cluster.wait_for_leader(Duration::from_secs(10)).await,
        now_index
    );

    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let written = writer.await.unwrap();
    assert!(written > 0);
    // Every acknowledged write is there, read through the new leader.
    let keys = crate::fetch_json(
        &crate::http(),
        cluster.agents[now_index].url("/v1/kv/transfer/?keys"),
    )
    .await;
    assert_eq!(
        keys.as_array().map(Vec::len),
        Some(written as usize),
        "{keys}"
    );
}

#[tokio::test]
async fn transfer_leader_needs_operator_write_under_default_deny() {
    use crate::acl::{acl_config, call, token_with_policy, MANAGEMENT};
    use reqwest::Method;
    let dir = tempfile::tempdir().unwrap();
    let conf = acl_config(dir.path());
    let mut spec = mesh_testkit::AgentSpec::server("node1", 1);
    spec.extra = vec!["-dev".into(), format!("-config-file={}", conf.display())];
    let a = TestAgent::start(spec, &dir.path().join("data"))
        .await
        .unwrap();
    let path = "/v1/operator/raft/transfer-leader";
    let reader = token_with_policy(&a, "op-read", "operator = \"read\"\n").await;
    let writer = token_with_policy(&a, "op-write", "operator = \"write\"\n").await;
    for token in [None, Some(reader.as_str())] {
        let (st, text) = call(Method::POST, &a, path, token, None).await;
        assert_eq!(st, 403, "{token:?}: {text}");
    }
    // Allowed, and refused for what it is: a lone server has no one to hand over to.
    for token in [writer.as_str(), MANAGEMENT] {
        let (st, text) = call(Method::POST, &a, path, Some(token), None).await;
        assert_eq!(st, 400, "{text}");
        assert!(text.contains("no other voter"), "{text}");
    }
    // The query key in other cases is not the ID (Consul's keys are
    // lower case): the request means "any voter" and is refused the same way.
    let (st, text) = call(
        Method::POST,
        &a,
        &format!("{path}?ID=1&Id=1"),
        Some(MANAGEMENT),
        None,
    )
    .await;
    assert_eq!(st, 400, "{text}");
    assert!(text.contains("no other voter"), "{text}");
}
