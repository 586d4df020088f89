//! A single `-dev` agent: KV semantics, blocking queries, consistency modes.

use std::time::{Duration, Instant};

use crate::http;

#[tokio::test]
async fn dev_agent_serves_kv_with_cas_and_flags() {
    let dir = tempfile::tempdir().unwrap();
    let agent = crate::dev_agent("dev", &dir.path().join("a")).await;
    let c = http();

    let put = c
        .put(agent.url("/v1/kv/app/config?flags=42"))
        .body("hello")
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), 200);
    assert_eq!(put.json::<bool>().await.unwrap(), true);

    let got = c.get(agent.url("/v1/kv/app/config")).send().await.unwrap();
    assert_eq!(got.status(), 200);
    let index = crate::consul_index(&got);
    let body: serde_json::Value = got.json().await.unwrap();
    assert_eq!(body[0]["Key"], "app/config");
    assert_eq!(body[0]["Value"], "aGVsbG8="); // base64("hello")
    assert_eq!(body[0]["Flags"], 42);
    let modify = body[0]["ModifyIndex"].as_u64().unwrap();
    assert_eq!(index, modify);

    // CAS with a stale index fails and changes nothing.
    let stale = c
        .put(agent.url(&format!("/v1/kv/app/config?cas={}", modify - 1)))
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(stale.json::<bool>().await.unwrap(), false);
    let raw = c
        .get(agent.url("/v1/kv/app/config?raw"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(raw, "hello");
    // CAS with the current index succeeds.
    let ok = c
        .put(agent.url(&format!("/v1/kv/app/config?cas={modify}")))
        .body("v2")
        .send()
        .await
        .unwrap();
    assert_eq!(ok.json::<bool>().await.unwrap(), true);
    // cas=0 only creates.
    let create = c
        .put(agent.url("/v1/kv/app/config?cas=0"))
        .body("v3")
        .send()
        .await
        .unwrap();
    assert_eq!(create.json::<bool>().await.unwrap(), false);

    // Listing and keys with a separator.
    for k in ["app/a/1", "app/a/2", "app/b"] {
        c.put(agent.url(&format!("/v1/kv/{k}")))
            .body("v")
            .send()
            .await
            .unwrap();
    }
    let keys: Vec<String> = c
        .get(agent.url("/v1/kv/app/?keys&separator=/"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(keys, vec!["app/a/", "app/b", "app/config"]);
    let all: serde_json::Value = c
        .get(agent.url("/v1/kv/app?recurse"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(all.as_array().unwrap().len(), 4);

    // Delete recursively, then 404.
    let del = c
        .delete(agent.url("/v1/kv/app/a?recurse"))
        .send()
        .await
        .unwrap();
    assert_eq!(del.json::<bool>().await.unwrap(), true);
    assert_eq!(
        c.get(agent.url("/v1/kv/app/a/1"))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
    assert_eq!(
        c.get(agent.url("/v1/kv/app/b"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
}

#[tokio::test]
async fn blocking_query_wakes_on_change_and_times_out_without_one() {
    let dir = tempfile::tempdir().unwrap();
    let agent = crate::dev_agent("dev", &dir.path().join("a")).await;
    let c = http();
    c.put(agent.url("/v1/kv/watched"))
        .body("1")
        .send()
        .await
        .unwrap();
    let first = c.get(agent.url("/v1/kv/watched")).send().await.unwrap();
    let index = crate::consul_index(&first);

    // Times out (with no change) after about the wait, returning the same index.
    let started = Instant::now();
    let timed_out = c
        .get(agent.url(&format!("/v1/kv/watched?index={index}&wait=300ms")))
        .send()
        .await
        .unwrap();
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert_eq!(
        timed_out.headers()["X-Consul-Index"].to_str().unwrap(),
        index.to_string()
    );

    // A write to another key does not wake a single-key watch; a write to it does.
    let url = agent.url(&format!("/v1/kv/watched?index={index}&wait=20s"));
    let waiter = tokio::spawn({
        let c = c.clone();
        async move {
            let resp = c.get(url).send().await.unwrap();
            let idx = crate::consul_index(&resp);
            let body: serde_json::Value = resp.json().await.unwrap();
            (idx, body)
        }
    });
    crate::wait_parked(&c, &agent, 1).await;
    c.put(agent.url("/v1/kv/other"))
        .body("x")
        .send()
        .await
        .unwrap();
    c.put(agent.url("/v1/kv/watched"))
        .body("2")
        .send()
        .await
        .unwrap();
    let (new_index, body) = tokio::time::timeout(Duration::from_secs(10), waiter)
        .await
        .unwrap()
        .unwrap();
    assert!(new_index > index);
    assert_eq!(body[0]["Value"], "Mg=="); // base64("2")
}

#[tokio::test]
async fn dev_agent_reports_itself_as_leader_and_member() {
    let dir = tempfile::tempdir().unwrap();
    let agent = crate::dev_agent("dev", &dir.path().join("a")).await;
    let c = http();
    let leader: String = c
        .get(agent.url("/v1/status/leader"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(leader, agent.rpc.unwrap().to_string());
    let members: serde_json::Value = c
        .get(agent.url("/v1/agent/members"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(members[0]["Name"], "dev");
    assert_eq!(members[0]["Status"], 1);
    assert_eq!(members[0]["Tags"]["role"], "consul");
    let conf: serde_json::Value = c
        .get(agent.url("/v1/operator/raft/configuration"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(conf["Servers"][0]["Leader"], true);
    assert_eq!(conf["Servers"][0]["Voter"], true);
    // ?consistent and ?stale both answer on a single server.
    for q in ["consistent", "stale"] {
        let r = c
            .get(agent.url(&format!("/v1/kv/nothing?{q}")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 404);
        assert_eq!(r.headers()["X-Consul-KnownLeader"], "true");
    }
}

/// `mesh agent -dev` without `-data-dir` keeps its temporary data dir for
/// as long as it runs: registering a service persists without errors.
#[tokio::test]
async fn a_dev_agent_without_a_data_dir_keeps_its_temp_dir() {
    use tokio::io::AsyncBufReadExt as _;
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("dev.log");
    let mut child = tokio::process::Command::new(mesh_testkit::mesh_bin())
        .args([
            "agent",
            "-dev",
            "-node=devtemp",
            "-http-port=0",
            "-dns-port=-1",
            "-grpc-port=-1",
            "-serf-lan-port=0",
            "-server-port=0",
        ])
        .env("TMPDIR", dir.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::fs::File::create(&log).unwrap())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let http = tokio::time::timeout(std::time::Duration::from_secs(30), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if let Some(rest) = line.strip_prefix("==> mesh agent ready:") {
                return rest
                    .split_whitespace()
                    .find_map(|kv| kv.strip_prefix("http="))
                    .map(str::to_string);
            }
        }
        None
    })
    .await
    .unwrap()
    .expect("ready line");
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    let c = crate::http();
    let r = c
        .put(format!("http://{http}/v1/agent/service/register"))
        .body(r#"{"Name":"web","Port":80}"#)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
    // The temp data dir exists while the agent runs, with the saved services.
    let saved = std::fs::read_dir(dir.path())
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.path().join("local-services.json"))
        .find(|p| p.exists());
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        saved.is_some(),
        "no local-services.json in the dev data dir:\n{text}"
    );
    assert!(!text.contains("saving local services"), "{text}");
    child.kill().await.unwrap();
}
