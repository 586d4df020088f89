//! Gossip keys rotated on a running 3+1 cluster (`mesh keyring` and
//! `/v1/operator/keyring`) with no member ever marked failed, the keys
//! kept across a restart, and a plaintext pool switched to encryption by
//! config reloads alone.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use mesh_testkit::{eventually, AgentSpec, TestAgent, TestCluster};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::acl::{acl_config, call, token_with_policy, MANAGEMENT};
use crate::mesh_cli;

fn keygen() -> String {
    let out = std::process::Command::new(mesh_testkit::mesh_bin())
        .arg("keygen")
        .output()
        .unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// Polls every agent's member list until stopped; names any member seen
/// in a state other than alive (Consul's status 1).
struct FailureWatch {
    stop: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<Vec<String>>,
}

impl FailureWatch {
    fn start(urls: Vec<String>, token: Option<&str>) -> FailureWatch {
        let (stop, mut stopped) = tokio::sync::watch::channel(false);
        let token = token.map(str::to_string);
        let task = tokio::spawn(async move {
            let c = crate::http();
            let mut seen = Vec::new();
            loop {
                for url in &urls {
                    let mut req = c.get(url);
                    if let Some(t) = &token {
                        req = req.header("x-consul-token", t);
                    }
                    let Ok(resp) = req.send().await else { continue };
                    let Ok(members) = resp.json::<Value>().await else {
                        continue;
                    };
                    for m in members.as_array().into_iter().flatten() {
                        if m["Status"] != 1 {
                            let what = format!("{} status {}", m["Name"], m["Status"]);
                            if !seen.contains(&what) {
                                seen.push(what);
                            }
                        }
                    }
                }
                tokio::select! {
                    _ = stopped.changed() => return seen,
                    _ = tokio::time::sleep(Duration::from_millis(50)) => {}
                }
            }
        });
        FailureWatch { stop, task }
    }

    async fn failures(self) -> Vec<String> {
        self.stop.send(true).unwrap();
        self.task.await.unwrap()
    }
}

fn members_urls(agents: &[TestAgent]) -> Vec<String> {
    agents.iter().map(|a| a.url("/v1/agent/members")).collect()
}

/// The keyring list, or `None` while the agent cannot answer it: a client
/// that has just (re)joined may not know a server to check the token
/// with yet (503).
async fn keyring_answer(agent: &TestAgent) -> Option<Value> {
    let (st, text) = call(
        Method::GET,
        agent,
        "/v1/operator/keyring",
        Some(MANAGEMENT),
        None,
    )
    .await;
    (st == StatusCode::OK).then(|| serde_json::from_str(&text).unwrap())
}

async fn keyring_list(agent: &TestAgent) -> Value {
    let (st, text) = call(
        Method::GET,
        agent,
        "/v1/operator/keyring",
        Some(MANAGEMENT),
        None,
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{text}");
    serde_json::from_str(&text).unwrap()
}

#[tokio::test]
async fn gossip_keys_rotate_on_a_live_cluster_and_persist() {
    let dir = tempfile::tempdir().unwrap();
    let acl = acl_config(dir.path());
    let k1 = keygen();
    let mut cluster = TestCluster::start_with(3, |_, spec| {
        spec.encrypt = Some(k1.clone());
        spec.extra = vec![format!("-config-file={}", acl.display())];
    })
    .await
    .unwrap();
    let mut client = AgentSpec::client("c0");
    client.encrypt = Some(k1.clone());
    client.extra = vec![format!("-config-file={}", acl.display())];
    cluster.add(client).await.unwrap();
    let all = &cluster.agents;
    for agent in all {
        eventually(
            "every agent sees four members",
            Duration::from_secs(20),
            || async {
                let v = keyring_answer(agent).await?;
                (v[0]["NumNodes"] == 4 && v[0]["NumErr"] == 0).then_some(())
            },
        )
        .await;
    }
    let watch = FailureWatch::start(members_urls(all), Some(MANAGEMENT));

    // Install through the CLI, as an operator would.
    let k2 = keygen();
    let (code, out) = mesh_cli(
        &all[3],
        &["keyring", "-install", &k2, &format!("-token={MANAGEMENT}")],
    )
    .await;
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("Installing new gossip encryption key"),
        "{out}"
    );
    let (code, out) = mesh_cli(
        &all[1],
        &["keyring", "-list", &format!("-token={MANAGEMENT}")],
    )
    .await;
    assert_eq!(code, 0, "{out}");
    assert!(out.contains(&format!("{k1} [4/4] (primary)")), "{out}");
    assert!(out.contains(&format!("{k2} [4/4]")), "{out}");

    // The body in other key cases; without keyring:write, refused and nothing changes.
    let reader = token_with_policy(&all[0], "keyring-reader", r#"keyring = "read""#).await;
    let (st, text) = call(
        Method::PUT,
        &all[0],
        "/v1/operator/keyring",
        Some(&reader),
        Some(json!({ "key": k2 })),
    )
    .await;
    assert_eq!(st, StatusCode::FORBIDDEN, "{text}");
    assert_eq!(keyring_list(&all[2]).await[0]["PrimaryKeys"][&k1], 4);
    let (st, text) = call(
        Method::PUT,
        &all[0],
        "/v1/operator/keyring",
        Some(MANAGEMENT),
        Some(json!({ "key": k2 })),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{text}");
    // Bad input names the field and changes nothing.
    let (st, text) = call(
        Method::POST,
        &all[0],
        "/v1/operator/keyring",
        Some(MANAGEMENT),
        Some(json!({ "KEY": "c2hvcnQ=" })),
    )
    .await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{text}");
    assert!(text.contains("Key"), "{text}");
    // Gossip runs on the new primary for a while before the old key goes.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (st, text) = call(
        Method::DELETE,
        &all[2],
        "/v1/operator/keyring",
        Some(MANAGEMENT),
        Some(json!({ "KEY": k1 })),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{text}");
    let list = keyring_list(&all[3]).await;
    assert_eq!(list[0]["Keys"], json!({ k2.clone(): 4 }), "{list}");
    assert_eq!(list[0]["PrimaryKeys"], json!({ k2.clone(): 4 }), "{list}");
    // Removing the primary is refused by every member.
    let (st, text) = call(
        Method::DELETE,
        &all[2],
        "/v1/operator/keyring",
        Some(MANAGEMENT),
        Some(json!({ "Key": k2 })),
    )
    .await;
    assert_eq!(st, StatusCode::INTERNAL_SERVER_ERROR, "{text}");
    assert!(text.contains("4 of 4 nodes reported failure"), "{text}");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let failures = watch.failures().await;
    assert!(
        failures.is_empty(),
        "members failed during the rotation: {failures:?}"
    );

    // The client restarts with `encrypt` still naming the old key: its
    // stored keyring wins and it is back in the pool.
    cluster.agents[3].restart().await.unwrap();
    let all = &cluster.agents;
    eventually(
        "c0 back with the new key",
        Duration::from_secs(30),
        || async {
            let v = keyring_answer(&all[3]).await?;
            (v[0]["NumNodes"] == 4 && v[0]["Keys"] == json!({ k2.clone(): 4 })).then_some(())
        },
    )
    .await;
}

/// A config file an agent is started with and that the test rewrites.
fn gossip_config(path: &PathBuf, key: Option<&str>, incoming: bool, outgoing: bool) {
    let text = match key {
        None => String::new(),
        Some(key) => format!(
            "encrypt = \"{key}\"\nencrypt_verify_incoming = {incoming}\nencrypt_verify_outgoing = {outgoing}\n"
        ),
    };
    std::fs::write(path, text).unwrap();
}

#[tokio::test]
async fn a_plaintext_cluster_switches_to_encrypted_gossip_without_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let configs: Vec<PathBuf> = (0..3)
        .map(|i| dir.path().join(format!("gossip-{i}.hcl")))
        .collect();
    for path in &configs {
        gossip_config(path, None, true, true);
    }
    let configs = Arc::new(configs);
    let paths = configs.clone();
    let cluster = TestCluster::start_with(3, move |i, spec| {
        spec.extra = vec![format!("-config-file={}", paths[i].display())];
    })
    .await
    .unwrap();
    let watch = FailureWatch::start(members_urls(&cluster.agents), None);
    let key = keygen();
    let pids: Vec<_> = cluster.agents.iter().map(|a| a.pid()).collect();
    for (incoming, outgoing) in [(false, false), (false, true), (true, true)] {
        for (agent, path) in cluster.agents.iter().zip(configs.iter()) {
            gossip_config(path, Some(&key), incoming, outgoing);
            let (code, out) = mesh_cli(agent, &["reload"]).await;
            assert_eq!(code, 0, "{out}");
        }
        // A few probe rounds at each stage.
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    let failures = watch.failures().await;
    assert!(
        failures.is_empty(),
        "members failed during the switch: {failures:?}"
    );
    let pids_after: Vec<_> = cluster.agents.iter().map(|a| a.pid()).collect();
    assert_eq!(pids, pids_after, "no agent restarted");
    let v: Value = crate::fetch_json(
        &crate::http(),
        cluster.agents[1].url("/v1/operator/keyring"),
    )
    .await;
    assert_eq!(v[0]["Keys"], json!({ key.clone(): 3 }), "{v}");

    // Gossip is now encrypted: an agent without the key cannot join.
    let mut outsider = AgentSpec::client("outsider");
    outsider.retry_join = vec![cluster.agents[0].serf];
    let outsider = TestAgent::start(outsider, &dir.path().join("outsider"))
        .await
        .unwrap();
    eventually(
        "the outsider is refused",
        Duration::from_secs(20),
        || async {
            let log = std::fs::read_to_string(&outsider.log).ok()?;
            log.contains("key mismatch").then_some(())
        },
    )
    .await;
    let members: Value =
        crate::fetch_json(&crate::http(), cluster.agents[0].url("/v1/agent/members")).await;
    assert_eq!(members.as_array().unwrap().len(), 3, "{members}");
}
