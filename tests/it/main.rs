//! Integration tests against real `mesh` processes (real Raft across
//! processes, real rocksdb, real gossip on loopback).

// `assert_eq!(body, true)` mirrors the JSON `true`/`false` the API answers.
#![allow(clippy::bool_assert_comparison)]

mod acl;
mod acl_login;
mod api_surface;
mod autopilot;
mod bad_input;
mod ca;
mod catalog;
mod chains;
mod cli;
mod cli_ops;
mod cluster;
mod compat;
mod compat_matrix;
mod coordinates;
mod dev;
mod dns;
mod docs_walkthroughs;
mod envoy;
mod events;
mod faults;
mod filters;
mod gateways;
mod grpc_xds;
mod hostile;
mod https;
mod intentions;
mod keyring;
mod linearizable;
mod partition;
mod prepared_queries;
mod proxy;
mod release;
mod reload;
mod sessions;
mod snapshots;
mod storage;
mod sync;
mod sync_conditions;
mod telemetry;
mod terraform;
mod terraform_acl;
mod terraform_backend;
mod terraform_examples;
mod terraform_owner;
mod terraform_query;
mod tls;
mod tls_clients;
mod token_clone_and_health;
mod tools;
mod txn_catalog;
mod ui;

use std::time::Duration;

/// A `-dev` agent named `name` with its data in `dir`.
pub async fn dev_agent(name: &str, dir: &std::path::Path) -> mesh_testkit::TestAgent {
    let mut spec = mesh_testkit::AgentSpec::server(name, 1);
    spec.extra.push("-dev".into());
    mesh_testkit::TestAgent::start(spec, dir)
        .await
        .expect("dev agent starts")
}

/// Run the `mesh` CLI against `agent` (through `MESH_HTTP_ADDR`): its exit
/// code and its stdout followed by its stderr.
pub async fn mesh_cli(agent: &mesh_testkit::TestAgent, args: &[&str]) -> (i32, String) {
    let out = tokio::process::Command::new(mesh_testkit::mesh_bin())
        .args(args)
        .env("MESH_HTTP_ADDR", agent.http.to_string())
        .kill_on_drop(true)
        .output()
        .await
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

/// The `X-Consul-Index` of an answer.
pub fn consul_index(r: &reqwest::Response) -> u64 {
    r.headers()["X-Consul-Index"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap()
}

/// An HTTP client with a bounded timeout for every request.
pub fn http() -> reqwest::Client {
    // reqwest is built with rustls and no default crypto provider: use ring.
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .timeout(Duration::from_secs(15))
        .build()
        .expect("client")
}

/// GET `url` and decode its JSON answer (panics on a transport or decode error).
pub async fn fetch_json(c: &reqwest::Client, url: String) -> serde_json::Value {
    c.get(&url)
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {url}: {e}"))
        .json()
        .await
        .unwrap_or_else(|e| panic!("GET {url}: {e}"))
}

/// GET `url` and decode its JSON answer; `None` on any error (for polling
/// in `eventually`).
pub async fn try_json<T: serde::de::DeserializeOwned>(c: &reqwest::Client, url: &str) -> Option<T> {
    c.get(url).send().await.ok()?.json().await.ok()
}

/// Run a command; `Err` carries its stderr.
pub fn sh(args: &[&str]) -> Result<(), String> {
    let out = std::process::Command::new(args[0])
        .args(&args[1..])
        .output()
        .map_err(|e| format!("{}: {e}", args[0]))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// GET `url` and return its body as text (panics on a transport error).
pub async fn fetch_text(c: &reqwest::Client, url: String) -> String {
    c.get(&url)
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {url}: {e}"))
        .text()
        .await
        .unwrap_or_else(|e| panic!("GET {url}: {e}"))
}

/// Waits (at most 10 s) until `agent` holds `n` blocking queries open, so
/// that a write which follows wakes parked queries rather than racing ones
/// still on their way in.
pub async fn wait_parked(c: &reqwest::Client, agent: &mesh_testkit::TestAgent, n: u64) {
    let url = agent.url("/v1/agent/metrics?format=prometheus");
    mesh_testkit::eventually(
        &format!("{n} blocking queries parked"),
        Duration::from_secs(10),
        || async {
            let text = c.get(&url).send().await.ok()?.text().await.ok()?;
            let open: u64 = text
                .lines()
                .find_map(|l| l.strip_prefix("mesh_api_queries_blocking "))?
                .parse()
                .ok()?;
            (open == n).then_some(())
        },
    )
    .await;
}
