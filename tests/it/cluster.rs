//! Three real server processes: formation, replication, failover without
//! losing acknowledged writes, full restart, client agents, graceful leave.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mesh_testkit::{eventually, AgentSpec, TestAgent, TestCluster};
use tokio::sync::Mutex;

use crate::http;

async fn stale_value(c: &reqwest::Client, agent: &TestAgent, key: &str) -> Option<String> {
    let r = c
        .get(agent.url(&format!("/v1/kv/{key}?stale&raw")))
        .send()
        .await
        .ok()?;
    if r.status() != 200 {
        return None;
    }
    r.text().await.ok()
}

async fn stale_keys(
    c: &reqwest::Client,
    agent: &TestAgent,
    prefix: &str,
) -> Option<BTreeSet<String>> {
    let r = c
        .get(agent.url(&format!("/v1/kv/{prefix}?stale&keys")))
        .send()
        .await
        .ok()?;
    match r.status().as_u16() {
        200 => r
            .json::<Vec<String>>()
            .await
            .ok()
            .map(|v| v.into_iter().collect()),
        404 => Some(BTreeSet::new()),
        _ => None,
    }
}

#[tokio::test]
async fn three_servers_form_elect_and_replicate() {
    let cluster = TestCluster::start(3).await.unwrap();
    let c = http();
    // A write through a follower is forwarded to the leader.
    let leader = cluster.wait_for_leader(Duration::from_secs(10)).await;
    let follower = (leader + 1) % 3;
    let put = c
        .put(cluster.agents[follower].url("/v1/kv/greeting"))
        .body("hi")
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), 200, "{}", put.text().await.unwrap());
    for agent in &cluster.agents {
        // Default consistency reads on a follower see the write at once.
        let r = c
            .get(agent.url("/v1/kv/greeting?raw"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.text().await.unwrap(), "hi");
        let r = c
            .get(agent.url("/v1/kv/greeting?raw&consistent"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.text().await.unwrap(), "hi");
    }
    let conf: serde_json::Value = c
        .get(cluster.agents[0].url("/v1/operator/raft/configuration"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let servers = conf["Servers"].as_array().unwrap();
    assert_eq!(servers.len(), 3);
    assert!(servers.iter().all(|s| s["Voter"] == true));
    assert_eq!(servers.iter().filter(|s| s["Leader"] == true).count(), 1);
    let peers: Vec<String> = c
        .get(cluster.agents[1].url("/v1/status/peers"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(peers.len(), 3);
    let members: serde_json::Value = c
        .get(cluster.agents[2].url("/v1/agent/members"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(members.as_array().unwrap().len(), 3);
}

#[tokio::test]
async fn killing_the_leader_under_load_loses_no_acknowledged_write() {
    let mut cluster = TestCluster::start(3).await.unwrap();
    let c = http();
    let acked = Arc::new(Mutex::new(Vec::<String>::new()));
    let urls: Vec<String> = cluster.agents.iter().map(|a| a.url("")).collect();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut writers = Vec::new();
    for w in 0..4 {
        let (c, acked, urls, stop) = (c.clone(), acked.clone(), urls.clone(), stop.clone());
        writers.push(tokio::spawn(async move {
            let mut n = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let key = format!("load/w{w}-{n}");
                let base = &urls[n % urls.len()];
                let ok = match c
                    .put(format!("{base}/v1/kv/{key}"))
                    .body(key.clone())
                    .send()
                    .await
                {
                    Ok(r) if r.status() == 200 => r.json::<bool>().await.unwrap_or(false),
                    _ => false,
                };
                if ok {
                    acked.lock().await.push(key);
                }
                n += 1;
            }
        }));
    }
    eventually(
        "some writes acknowledged",
        Duration::from_secs(10),
        || async { (acked.lock().await.len() > 50).then_some(()) },
    )
    .await;

    let leader = cluster.wait_for_leader(Duration::from_secs(5)).await;
    let before_kill = acked.lock().await.len();
    let killed_at = Instant::now();
    cluster.agents[leader].kill().await;
    // A new leader serves writes.
    cluster
        .wait_for_new_leader(leader, Duration::from_secs(15))
        .await;
    eventually(
        "writes acknowledged after failover",
        Duration::from_secs(15),
        || async { (acked.lock().await.len() > before_kill + 50).then_some(()) },
    )
    .await;
    eprintln!(
        "failover: writes flowing again {:?} after kill -9",
        killed_at.elapsed()
    );

    cluster.agents[leader].restart().await.unwrap();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for w in writers {
        w.await.unwrap();
    }
    let acked: BTreeSet<String> = acked.lock().await.iter().cloned().collect();
    assert!(acked.len() > 100);
    for (i, agent) in cluster.agents.iter().enumerate() {
        let missing = eventually(
            &format!("server {i} has every acknowledged write"),
            Duration::from_secs(30),
            || async {
                let have = stale_keys(&c, agent, "load/").await?;
                let missing: Vec<&String> = acked.iter().filter(|k| !have.contains(*k)).collect();
                missing.is_empty().then_some(missing.len())
            },
        )
        .await;
        assert_eq!(missing, 0);
    }
}

#[tokio::test]
async fn restarting_every_server_keeps_the_data() {
    let mut cluster = TestCluster::start(3).await.unwrap();
    let c = http();
    for i in 0..20 {
        let r = c
            .put(cluster.agents[i % 3].url(&format!("/v1/kv/persist/{i}")))
            .body(format!("v{i}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    for agent in cluster.agents.iter_mut() {
        agent.kill().await;
    }
    for agent in cluster.agents.iter_mut() {
        agent.restart().await.unwrap();
    }
    cluster.wait_for_leader(Duration::from_secs(30)).await;
    for agent in &cluster.agents {
        for i in 0..20 {
            let key = format!("persist/{i}");
            let v = eventually("value after restart", Duration::from_secs(10), || {
                stale_value(&c, agent, &key)
            })
            .await;
            assert_eq!(v, format!("v{i}"));
        }
    }
    // Writes still work, and the configuration still has three voters (no re-bootstrap).
    let r = c
        .put(cluster.agents[0].url("/v1/kv/after"))
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let conf: serde_json::Value = c
        .get(cluster.agents[1].url("/v1/operator/raft/configuration"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(conf["Servers"].as_array().unwrap().len(), 3);
}

#[tokio::test]
async fn no_leader_until_bootstrap_expect_servers_are_seen() {
    let dir = tempfile::tempdir().unwrap();
    let c = http();
    let a = TestAgent::start(AgentSpec::server("a", 3), &dir.path().join("a"))
        .await
        .unwrap();
    let mut spec = AgentSpec::server("b", 3);
    spec.retry_join = vec![a.serf];
    let b = TestAgent::start(spec, &dir.path().join("b")).await.unwrap();
    // Both see each other, yet there is no leader with two of three.
    eventually(
        "a and b see each other",
        Duration::from_secs(10),
        || async {
            let m: serde_json::Value = c
                .get(a.url("/v1/agent/members"))
                .send()
                .await
                .ok()?
                .json()
                .await
                .ok()?;
            (m.as_array()?.len() == 2).then_some(())
        },
    )
    .await;
    // Watched over several election timeouts (800 ms at most each): a
    // wrongful election would show as a leader on either server.
    let watch_until = tokio::time::Instant::now() + Duration::from_secs(3);
    while tokio::time::Instant::now() < watch_until {
        for agent in [&a, &b] {
            let leader: String = c
                .get(agent.url("/v1/status/leader"))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            assert_eq!(
                leader, "",
                "no leader may be elected before 3 servers are seen"
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut spec = AgentSpec::server("c", 3);
    spec.retry_join = vec![a.serf];
    let cc = TestAgent::start(spec, &dir.path().join("c")).await.unwrap();
    eventually(
        "a leader once the third server joins",
        Duration::from_secs(20),
        || async {
            let l: String = c
                .get(cc.url("/v1/status/leader"))
                .send()
                .await
                .ok()?
                .json()
                .await
                .ok()?;
            (!l.is_empty()).then_some(())
        },
    )
    .await;
}

#[tokio::test]
async fn client_agents_forward_and_servers_that_leave_are_removed() {
    let mut cluster = TestCluster::start(3).await.unwrap();
    let c = http();
    let client = cluster.add(AgentSpec::client("client1")).await.unwrap();
    let client_url = client.url("");
    // The client agent forwards KV to a server once it has joined.
    eventually(
        "write through a client agent",
        Duration::from_secs(15),
        || async {
            let r = c
                .put(format!("{client_url}/v1/kv/via-client"))
                .body("ok")
                .send()
                .await
                .ok()?;
            (r.status() == 200).then_some(())
        },
    )
    .await;
    let r = c
        .get(cluster.agents[0].url("/v1/kv/via-client?raw"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.text().await.unwrap(), "ok");
    let members: serde_json::Value = c
        .get(format!("{client_url}/v1/agent/members"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let roles: BTreeSet<String> = members
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["Tags"]["role"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        roles,
        BTreeSet::from(["consul".to_string(), "node".to_string()])
    );

    // A follower leaves gracefully: it is marked left and removed from Raft.
    let leader = cluster.wait_for_leader(Duration::from_secs(5)).await;
    let leaving = (leader + 1) % 3;
    let name = cluster.agents[leaving].spec.name.clone();
    let r = c
        .put(cluster.agents[leaving].url("/v1/agent/leave"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let status = cluster.agents[leaving]
        .wait_exit(Duration::from_secs(20))
        .await
        .unwrap();
    assert!(
        status.success(),
        "agent exits cleanly after leave: {status:?}"
    );
    let other = cluster.agents[leader].url("");
    eventually(
        "left server removed from raft",
        Duration::from_secs(20),
        || async {
            let conf: serde_json::Value = c
                .get(format!("{other}/v1/operator/raft/configuration"))
                .send()
                .await
                .ok()?
                .json()
                .await
                .ok()?;
            let servers = conf["Servers"].as_array()?;
            (servers.len() == 2 && servers.iter().all(|s| s["Node"] != name.as_str())).then_some(())
        },
    )
    .await;
    eventually(
        "left server shown as left",
        Duration::from_secs(20),
        || async {
            let m: serde_json::Value = c
                .get(format!("{other}/v1/agent/members"))
                .send()
                .await
                .ok()?
                .json()
                .await
                .ok()?;
            m.as_array()?
                .iter()
                .any(|m| m["Name"] == name.as_str() && m["State"] == "left")
                .then_some(())
        },
    )
    .await;
    // The remaining two still accept writes.
    let r = c
        .put(format!("{other}/v1/kv/after-leave"))
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

/// A server that comes back with its data on other ports (a config change,
/// a new IP) keeps its place: the leader points Raft at its new address, so
/// it receives new writes, and can lead again.
#[tokio::test]
async fn a_server_restarted_on_new_ports_rejoins_raft() {
    let mut cluster = TestCluster::start(3).await.unwrap();
    let c = http();
    let leader = cluster.wait_for_leader(Duration::from_secs(30)).await;
    // Servers 1 and 2 retry-join server 0, so either finds the pool again
    // from its new ports (as every server does with a `retry_join` list).
    let moved = if leader == 1 { 2 } else { 1 };
    let old_rpc = cluster.agents[moved].rpc;
    cluster.agents[moved].restart_on_new_ports().await.unwrap();
    assert_ne!(cluster.agents[moved].rpc, old_rpc, "it really moved");

    let url = cluster.agents[leader].url("/v1/kv/moved/after");
    eventually(
        "a write through the leader",
        Duration::from_secs(20),
        || async {
            let r = c.put(&url).body("yes").send().await.ok()?;
            (r.status() == 200).then_some(())
        },
    )
    .await;
    let moved_agent = &cluster.agents[moved];
    eventually(
        "the moved server has the write",
        Duration::from_secs(20),
        || async {
            (stale_value(&c, moved_agent, "moved/after").await.as_deref() == Some("yes"))
                .then_some(())
        },
    )
    .await;
    let peers: Vec<String> = serde_json::from_value(
        crate::fetch_json(&c, cluster.agents[leader].url("/v1/status/peers")).await,
    )
    .unwrap();
    let new_rpc = cluster.agents[moved].rpc.unwrap().to_string();
    assert!(peers.contains(&new_rpc), "{peers:?} lists {new_rpc}");
    assert_eq!(peers.len(), 3, "{peers:?}");
}
