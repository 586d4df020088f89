//! Operator commands against real agents: `mesh force-leave`, `mesh maint`,
//! `mesh snapshot save|inspect` verification, `-datacenter` / `-stale`, and
//! help that shows Consul's single-dash flags.

use std::time::Duration;

use mesh_testkit::{eventually, mesh_bin, AgentSpec, TestCluster};
use serde_json::Value;

use crate::{fetch_json, http, mesh_cli};

fn member_status(out: &str, node: &str) -> Option<String> {
    out.lines()
        .find(|l| l.split_whitespace().next() == Some(node))
        .and_then(|l| l.split_whitespace().nth(2).map(str::to_string))
}

/// A crashed client is listed failed until `force-leave` makes it left
/// everywhere, and the leader then drops it from the catalog; `-prune`
/// also drops it from the member list. A live or unknown node is refused.
#[tokio::test]
async fn force_leave_turns_failed_clients_into_left_and_prune_forgets_them() {
    let mut cluster = TestCluster::start(1).await.unwrap();
    cluster.add(AgentSpec::client("gone")).await.unwrap();
    cluster.add(AgentSpec::client("pruned")).await.unwrap();
    let server = &cluster.agents[0];
    let c = http();
    eventually(
        "both clients in the catalog",
        Duration::from_secs(30),
        || {
            let c = c.clone();
            let url = server.url("/v1/catalog/nodes");
            async move {
                let nodes = fetch_json(&c, url).await;
                (nodes.as_array()?.len() == 3).then_some(())
            }
        },
    )
    .await;

    let (code, out) = mesh_cli(server, &["force-leave", "gone"]).await;
    assert_eq!(code, 1, "a live node is refused: {out}");
    assert!(out.contains("not failed"), "{out}");
    let (code, out) = mesh_cli(server, &["force-leave", "no-such-node"]).await;
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("no member named"), "{out}");

    cluster.agents[1].kill().await;
    cluster.agents[2].kill().await;
    let server = &cluster.agents[0];
    eventually("both clients failed", Duration::from_secs(60), || async {
        let (_, out) = mesh_cli(server, &["members"]).await;
        (member_status(&out, "gone").as_deref() == Some("failed")
            && member_status(&out, "pruned").as_deref() == Some("failed"))
        .then_some(())
    })
    .await;

    let (code, out) = mesh_cli(server, &["force-leave", "gone"]).await;
    assert_eq!(code, 0, "{out}");
    let (code, out) = mesh_cli(server, &["force-leave", "-prune", "pruned"]).await;
    assert_eq!(code, 0, "{out}");
    eventually(
        "gone left, pruned forgotten, both out of the catalog",
        Duration::from_secs(30),
        || async {
            let (_, members) = mesh_cli(server, &["members"]).await;
            let nodes = fetch_json(&c, server.url("/v1/catalog/nodes")).await;
            let names: Vec<&str> = nodes
                .as_array()?
                .iter()
                .filter_map(|n| n["Node"].as_str())
                .collect();
            (member_status(&members, "gone").as_deref() == Some("left")
                && member_status(&members, "pruned").is_none()
                && names == [server.spec.name.as_str()])
            .then_some(())
        },
    )
    .await;
}

fn maintenance_check(checks: &Value, id: &str) -> Option<Value> {
    checks
        .as_array()?
        .iter()
        .find(|c| c["CheckID"] == id)
        .cloned()
}

/// Node and service maintenance: a critical check with the reason takes
/// them out of `?passing` answers, `mesh maint` lists it, it survives an
/// agent restart, and `-disable` puts them back.
#[tokio::test]
async fn maint_takes_node_and_service_out_of_healthy_answers() {
    let dir = tempfile::tempdir().unwrap();
    let mut agent = crate::dev_agent("maint1", &dir.path().join("data")).await;
    let c = http();
    let reg = c
        .put(agent.url("/v1/agent/service/register"))
        .body(r#"{"Name":"web","ID":"web-1","Port":8080}"#)
        .send()
        .await
        .unwrap();
    assert!(reg.status().is_success());
    let passing = |agent: &mesh_testkit::TestAgent| agent.url("/v1/health/service/web?passing");
    assert_eq!(
        fetch_json(&c, passing(&agent))
            .await
            .as_array()
            .unwrap()
            .len(),
        1
    );

    let (code, out) = mesh_cli(&agent, &["maint", "-enable", "-reason", "disk swap"]).await;
    assert_eq!(code, 0, "{out}");
    let checks = fetch_json(&c, agent.url("/v1/health/node/maint1")).await;
    let check = maintenance_check(&checks, "_node_maintenance").expect("node maintenance check");
    assert_eq!(check["Status"], "critical");
    assert_eq!(check["Notes"], "disk swap");
    assert_eq!(fetch_json(&c, passing(&agent)).await, serde_json::json!([]));
    let (_, out) = mesh_cli(&agent, &["maint"]).await;
    assert!(out.contains("Node:") && out.contains("disk swap"), "{out}");

    // Persisted like any local check.
    agent.restart().await.unwrap();
    let c2 = c.clone();
    let url = agent.url("/v1/health/node/maint1");
    eventually(
        "maintenance kept across a restart",
        Duration::from_secs(30),
        || {
            let (c, url) = (c2.clone(), url.clone());
            async move { maintenance_check(&fetch_json(&c, url).await, "_node_maintenance") }
        },
    )
    .await;

    let (code, out) = mesh_cli(&agent, &["maint", "-disable"]).await;
    assert_eq!(code, 0, "{out}");
    let checks = fetch_json(&c, agent.url("/v1/health/node/maint1")).await;
    assert!(maintenance_check(&checks, "_node_maintenance").is_none());

    let (code, out) = mesh_cli(&agent, &["maint", "-enable", "-service", "web-1"]).await;
    assert_eq!(code, 0, "{out}");
    let checks = fetch_json(&c, agent.url("/v1/health/checks/web")).await;
    let check = maintenance_check(&checks, "_service_maintenance:web-1").expect("service check");
    assert_eq!(check["ServiceID"], "web-1");
    assert_eq!(check["Status"], "critical");
    assert_eq!(fetch_json(&c, passing(&agent)).await, serde_json::json!([]));
    let (code, _) = mesh_cli(&agent, &["maint", "-disable", "-service", "web-1"]).await;
    assert_eq!(code, 0);
    assert_eq!(
        fetch_json(&c, passing(&agent))
            .await
            .as_array()
            .unwrap()
            .len(),
        1
    );

    // Bad input changes nothing and says what is wrong.
    let (code, out) = mesh_cli(&agent, &["maint", "-enable", "-service", "nope"]).await;
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("Unknown service ID"), "{out}");
    let r = c
        .put(agent.url("/v1/agent/maintenance?enable=maybe"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let r = c
        .put(agent.url("/v1/agent/maintenance"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let long = "x".repeat(2000);
    let r = c
        .put(agent.url(&format!("/v1/agent/maintenance?enable=true&reason={long}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert!(r
        .text()
        .await
        .unwrap()
        .contains("MAX_MAINTENANCE_REASON_BYTES"));
    let checks = fetch_json(&c, agent.url("/v1/health/node/maint1")).await;
    assert!(maintenance_check(&checks, "_node_maintenance").is_none());
}

/// `snapshot save` reads back and decodes what it wrote; `inspect` counts
/// what a file holds without an agent; a damaged file is refused by
/// `inspect` and by `restore` before anything is sent.
#[tokio::test]
async fn snapshot_save_verifies_and_inspect_reads_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let agent = crate::dev_agent("snap1", &dir.path().join("data")).await;
    for i in 0..5 {
        let (code, out) = mesh_cli(&agent, &["kv", "put", &format!("k{i}"), "v"]).await;
        assert_eq!(code, 0, "{out}");
    }
    let file = dir.path().join("backup.snap");
    let path = file.to_str().unwrap();
    let (code, out) = mesh_cli(&agent, &["snapshot", "save", path]).await;
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("Saved and verified snapshot to index"),
        "{out}"
    );

    let (code, out) = mesh_cli(&agent, &["snapshot", "inspect", path]).await;
    assert_eq!(code, 0, "{out}");
    let kv_row = out
        .lines()
        .find(|l| l.starts_with("KV "))
        .unwrap_or_else(|| panic!("{out}"));
    assert_eq!(kv_row.split_whitespace().nth(1), Some("5"), "{out}");
    assert!(out.contains("Index"), "{out}");

    // One changed byte inside a value: the checksum catches it.
    let bytes = std::fs::read(&file).unwrap();
    let mut flipped = bytes.clone();
    let at = bytes.len() - 10;
    flipped[at] ^= 0x20;
    std::fs::write(&file, &flipped).unwrap();
    let (code, out) = mesh_cli(&agent, &["snapshot", "inspect", path]).await;
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("checksum mismatch"), "{out}");

    // Truncated: inspect and restore refuse it; the store keeps its keys.
    std::fs::write(&file, &bytes[..bytes.len() / 2]).unwrap();
    let (code, out) = mesh_cli(&agent, &["snapshot", "inspect", path]).await;
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("not a readable snapshot"), "{out}");
    let (code, out) = mesh_cli(&agent, &["kv", "put", "after", "x"]).await;
    assert_eq!(code, 0, "{out}");
    let (code, out) = mesh_cli(&agent, &["snapshot", "restore", path]).await;
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("not a snapshot mesh can restore"), "{out}");
    let (code, _) = mesh_cli(&agent, &["kv", "get", "after"]).await;
    assert_eq!(code, 0, "nothing was restored");
}

/// `-datacenter` names the datacenter (another one is refused, not
/// answered from this one), and `-stale` reads work.
#[tokio::test]
async fn datacenter_and_stale_flags_on_reads() {
    let dir = tempfile::tempdir().unwrap();
    let agent = crate::dev_agent("dc1node", &dir.path().join("data")).await;
    let (code, out) = mesh_cli(&agent, &["kv", "put", "k", "v"]).await;
    assert_eq!(code, 0, "{out}");
    let (code, out) = mesh_cli(&agent, &["kv", "get", "-stale", "-datacenter", "dc1", "k"]).await;
    assert_eq!((code, out.trim()), (0, "v"));
    let (code, out) = mesh_cli(&agent, &["catalog", "nodes", "-stale"]).await;
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("dc1node"), "{out}");
    let (code, out) = mesh_cli(&agent, &["kv", "get", "-datacenter", "dc2", "k"]).await;
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("No path to datacenter"), "{out}");
    let r = http()
        .get(agent.url("/v1/catalog/nodes?dc=dc2"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 500);
}

/// Help and usage errors show flags as Consul users type them.
#[test]
fn help_and_usage_errors_show_single_dash_flags() {
    let out = std::process::Command::new(mesh_bin())
        .args(["kv", "get", "-help"])
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0));
    assert!(
        help.contains(" -recurse") && help.contains(" -http-addr"),
        "{help}"
    );
    assert!(!help.contains("--recurse"), "{help}");
    let out = std::process::Command::new(mesh_bin())
        .args(["members", "-bogus"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert!(err.contains("'-bogus'") && err.contains("-help"), "{err}");
    assert!(!err.contains("--"), "{err}");
}

/// `mesh services register FILE` reads the file as the agent reads mesh.d
/// (a typo is an error at file:line:col, nothing registered), and
/// `mesh connect proxy -sidecar-for` a service that is not there fails at
/// once instead of reporting ready.
#[tokio::test]
async fn services_register_checks_keys_and_a_sidecar_needs_its_service() {
    let dir = tempfile::tempdir().unwrap();
    let agent = crate::dev_agent("reg1", &dir.path().join("data")).await;
    let file = dir.path().join("web.hcl");
    std::fs::write(&file, "service {\n  name = \"web\"\n  prot = 1\n}\n").unwrap();
    let (code, out) = mesh_cli(&agent, &["services", "register", file.to_str().unwrap()]).await;
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("web.hcl:3:3") && out.contains("did you mean `port`"),
        "{out}"
    );
    let services = fetch_json(&http(), agent.url("/v1/agent/services")).await;
    assert_eq!(services, serde_json::json!({}), "nothing registered");

    let (code, out) = tokio::time::timeout(
        Duration::from_secs(20),
        mesh_cli(&agent, &["connect", "proxy", "-sidecar-for", "nosuch"]),
    )
    .await
    .expect("fails at once");
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("no sidecar proxy registered for \"nosuch\""),
        "{out}"
    );
    assert!(!out.contains("ready"), "{out}");
}
