//! Bad input gets a clear error and a non-zero exit, and nothing on disk is damaged.

use std::path::Path;
use std::process::Output;
use std::time::Duration;

use mesh_testkit::{eventually, mesh_bin, AgentSpec, TestAgent};

use crate::http;

/// Run `mesh agent ARGS` expecting it to fail fast.
async fn agent_fails(args: &[&str]) -> (i32, String) {
    let out: Output = tokio::time::timeout(
        Duration::from_secs(20),
        tokio::process::Command::new(mesh_bin())
            .arg("agent")
            .args(args)
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("agent exits on bad input instead of running")
    .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

fn base_args(dir: &Path) -> Vec<String> {
    vec![
        "-server".into(),
        "-bootstrap-expect=1".into(),
        format!("-data-dir={}", dir.display()),
        "-bind=127.0.0.1".into(),
        "-client=127.0.0.1".into(),
        "-http-port=0".into(),
        "-serf-lan-port=0".into(),
        "-server-port=0".into(),
        "-dns-port=-1".into(),
        "-grpc-port=-1".into(),
    ]
}

fn with(base: &[String], extra: &[&str]) -> Vec<String> {
    let mut v = base.to_vec();
    v.extend(extra.iter().map(|s| s.to_string()));
    v
}

async fn fails_with(args: Vec<String>, needle: &str) -> String {
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let (code, text) = agent_fails(&refs).await;
    assert_ne!(code, 0, "expected failure, got success: {text}");
    assert!(
        text.to_lowercase().contains(&needle.to_lowercase()),
        "error should mention {needle:?}: {text}"
    );
    text
}

#[tokio::test]
async fn port_in_use_is_a_clear_error_and_touches_no_data() {
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = busy.local_addr().unwrap().port();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut args = base_args(&data);
    args.retain(|a| !a.starts_with("-http-port"));
    args.push(format!("-http-port={port}"));
    fails_with(args, &format!("127.0.0.1:{port}")).await;
    assert!(
        !data.exists(),
        "nothing is written before listeners are bound"
    );
}

#[tokio::test]
async fn invalid_flag_values_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let base = base_args(&dir.path().join("d"));
    fails_with(with(&base, &["-bootstrap-expect=abc"]), "bootstrap-expect").await;
    fails_with(with(&base, &["-encrypt=not-base64!"]), "encrypt").await;
    fails_with(with(&base, &["-datacenter=Bad DC"]), "datacenter").await;
    fails_with(with(&base, &["-no-such-flag"]), "no-such-flag").await;
}

#[tokio::test]
async fn a_server_without_a_data_dir_is_refused() {
    fails_with(
        vec![
            "-server".into(),
            "-http-port=0".into(),
            "-serf-lan-port=0".into(),
            "-server-port=0".into(),
            "-dns-port=-1".into(),
            "-grpc-port=-1".into(),
            "-bind=127.0.0.1".into(),
        ],
        "data",
    )
    .await;
}

#[tokio::test]
async fn corrupt_data_dir_is_refused_and_left_as_it_was() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let raft = data.join("raft");
    std::fs::create_dir_all(&raft).unwrap();
    std::fs::write(raft.join("CURRENT"), b"garbage-manifest\n").unwrap();
    fails_with(base_args(&data), "raft store").await;
    assert_eq!(
        std::fs::read(raft.join("CURRENT")).unwrap(),
        b"garbage-manifest\n"
    );

    // A node-id file that is not a UUID.
    let data2 = dir.path().join("data2");
    std::fs::create_dir_all(&data2).unwrap();
    std::fs::write(data2.join("node-id"), b"???").unwrap();
    fails_with(base_args(&data2), "node ID").await;
    assert_eq!(std::fs::read(data2.join("node-id")).unwrap(), b"???");
}

#[tokio::test]
async fn a_data_dir_in_use_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("a");
    let _running = TestAgent::start(AgentSpec::server("a", 1), &data)
        .await
        .unwrap();
    fails_with(base_args(&data), "in use").await;
}

#[tokio::test]
async fn a_node_with_the_wrong_gossip_key_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut spec = AgentSpec::server("a", 1);
    spec.encrypt = Some("pUqJrVyVRj5jsiYEkM/tFQYfWyJIv4s3XkvDwy7Cu5s=".into());
    let a = TestAgent::start(spec, &dir.path().join("a")).await.unwrap();
    let mut spec = AgentSpec::client("intruder");
    spec.encrypt = Some("T9jncgl9mbLus+baTTa7q7nPSUrXwbDi2dhbtqir37s=".into());
    spec.retry_join = vec![a.serf];
    let b = TestAgent::start(spec, &dir.path().join("b")).await.unwrap();
    let c = http();
    // The intruder's log says why it cannot join: the server refused its
    // push/pull because no installed key decrypts it.
    eventually(
        "intruder logs a key mismatch",
        Duration::from_secs(15),
        || async {
            let log = std::fs::read_to_string(&b.log).ok()?;
            log.contains("encryption key mismatch").then_some(())
        },
    )
    .await;
    let server_log = std::fs::read_to_string(&a.log).unwrap();
    assert!(
        server_log.contains("could not decrypt the push/pull with any installed -encrypt key"),
        "the server says why it refused: {server_log}"
    );
    let m: serde_json::Value = c
        .get(a.url("/v1/agent/members"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        m.as_array().unwrap().len(),
        1,
        "the intruder is never a member: {m}"
    );
    // The same key joins fine.
    let mut spec = AgentSpec::client("friend");
    spec.encrypt = Some("pUqJrVyVRj5jsiYEkM/tFQYfWyJIv4s3XkvDwy7Cu5s=".into());
    spec.retry_join = vec![a.serf];
    let _friend = TestAgent::start(spec, &dir.path().join("f")).await.unwrap();
    eventually("friend joins", Duration::from_secs(15), || async {
        let m: serde_json::Value = c
            .get(a.url("/v1/agent/members"))
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        m.as_array()?
            .iter()
            .any(|m| m["Name"] == "friend")
            .then_some(())
    })
    .await;
}

#[tokio::test]
async fn bad_tls_setups_stop_the_agent_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let base = base_args(&dir.path().join("data"));
    let text = fails_with(with(&base, &["-https-port=0"]), "ports.https").await;
    assert!(text.contains("cert_file"), "{text}");

    let conf = dir.path().join("tls.hcl");
    std::fs::write(&conf, "tls {\n  defaults {\n    cert_file = \"/nonexistent/server.pem\"\n    key_file = \"/nonexistent/server.key\"\n  }\n}\n").unwrap();
    let conf_flag = format!("-config-file={}", conf.display());
    fails_with(
        with(&base, &["-https-port=0", &conf_flag]),
        "/nonexistent/server.pem",
    )
    .await;
}
