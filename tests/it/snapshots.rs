//! The proxy snapshot hub seen from outside: a snapshot's version moves
//! only when its content does, and every watcher of one proxy gets the one
//! snapshot computed for it.

use std::time::Duration;

use reqwest::Client;
use serde_json::{json, Value};

use crate::{dev_agent, http, wait_parked};
use mesh_testkit::{eventually, TestAgent};

const PROXY: &str = "/v1/agent/connect/proxy/web-sidecar-proxy";

fn metric(text: &str, name: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no sample {name} in:\n{text}"))
}

async fn metrics(c: &Client, a: &TestAgent) -> String {
    crate::fetch_text(c, a.url("/v1/agent/metrics?format=prometheus")).await
}

/// The snapshot's version and body, optionally waiting past `index`.
async fn snapshot(c: &Client, a: &TestAgent, index: Option<u64>) -> (u64, Value) {
    let url = match index {
        Some(i) => a.url(&format!("{PROXY}?index={i}&wait=20s")),
        None => a.url(PROXY),
    };
    let r = c.get(url).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let version = crate::consul_index(&r);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["Index"], version, "the body carries the same version");
    (version, body)
}

async fn put(c: &Client, url: String, body: Value) -> reqwest::Response {
    let r = c.put(url).json(&body).send().await.unwrap();
    assert_eq!(r.status(), 200);
    r
}

async fn agent_with_web_sidecar(dir: &std::path::Path) -> (TestAgent, Client) {
    let a = dev_agent("snaps", dir).await;
    let c = http();
    put(
        &c,
        a.url("/v1/agent/service/register"),
        json!({"Name": "web", "ID": "web", "Port": 8080,
               "Connect": {"SidecarService": {"Port": 21000,
                   "Proxy": {"Upstreams": [{"DestinationName": "db", "LocalBindPort": 0}]}}}}),
    )
    .await;
    // The CA signs the leaf in the background of a fresh agent: wait for it.
    eventually(
        "web's first snapshot with its leaf",
        Duration::from_secs(20),
        || async {
            let (_, body) = snapshot(&c, &a, None).await;
            body["Leaf"]["CertPEM"].as_str().is_some().then_some(())
        },
    )
    .await;
    (a, c)
}

/// Waits until the hub has recomputed from a state at least as new as the
/// intentions' current index.
async fn hub_caught_up(c: &Client, a: &TestAgent) {
    let r = c.get(a.url("/v1/connect/intentions")).send().await.unwrap();
    let index = crate::consul_index(&r);
    eventually(
        "the hub's pass over the latest writes",
        Duration::from_secs(10),
        || async {
            let text = metrics(c, a).await;
            (metric(&text, "mesh_proxy_snapshot_pass_index") >= index).then_some(())
        },
    )
    .await;
}

#[tokio::test]
async fn a_snapshot_version_moves_only_when_its_content_does() {
    let dir = tempfile::tempdir().unwrap();
    let (a, c) = agent_with_web_sidecar(dir.path()).await;
    let (v0, before) = snapshot(&c, &a, None).await;

    // Writes that change nothing in web's snapshot: a key, an unrelated
    // service, an intention for another destination.
    put(&c, a.url("/v1/kv/unrelated"), json!("x")).await;
    put(
        &c,
        a.url("/v1/catalog/register"),
        json!({"Node": "elsewhere", "Address": "10.0.0.9",
               "Service": {"Service": "billing", "Port": 9000}}),
    )
    .await;
    put(
        &c,
        a.url("/v1/connect/intentions/exact?source=web&destination=billing"),
        json!({"Action": "deny"}),
    )
    .await;
    hub_caught_up(&c, &a).await;
    let (v1, after) = snapshot(&c, &a, None).await;
    assert_eq!(v1, v0, "unrelated writes leave the version alone");
    assert_eq!(after, before);

    // A write that does change it: an intention for web.
    let parked = tokio::spawn({
        let (c, url) = (c.clone(), a.url(&format!("{PROXY}?index={v0}&wait=20s")));
        async move { crate::fetch_json(&c, url).await }
    });
    wait_parked(&c, &a, 1).await;
    put(
        &c,
        a.url("/v1/connect/intentions/exact?source=api&destination=web"),
        json!({"Action": "deny"}),
    )
    .await;
    let woken = parked.await.unwrap();
    assert!(woken["Index"].as_u64().unwrap() > v0, "{woken}");
    let rules = woken["Intentions"]["Rules"].as_array().unwrap();
    assert!(
        rules.iter().any(|r| r["Source"] == "api"),
        "the woken watcher has the new intention: {woken}"
    );
}

#[tokio::test]
async fn watchers_of_one_proxy_share_one_computed_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let (a, c) = agent_with_web_sidecar(dir.path()).await;
    let (v0, _) = snapshot(&c, &a, None).await;
    let watchers: Vec<_> = (0..20)
        .map(|_| {
            let (c, a_url) = (c.clone(), a.url(&format!("{PROXY}?index={v0}&wait=20s")));
            tokio::spawn(async move {
                let r = c.get(a_url).send().await.unwrap();
                r.text().await.unwrap()
            })
        })
        .collect();
    wait_parked(&c, &a, 20).await;
    let published = metric(
        &metrics(&c, &a).await,
        "mesh_proxy_snapshots_published_total",
    );
    put(
        &c,
        a.url("/v1/connect/intentions/exact?source=api&destination=web"),
        json!({"Action": "deny"}),
    )
    .await;
    let mut bodies = Vec::new();
    for w in watchers {
        bodies.push(w.await.unwrap());
    }
    assert!(
        bodies.windows(2).all(|w| w[0] == w[1]),
        "every watcher got the same bytes"
    );
    let first: Value = serde_json::from_str(&bodies[0]).unwrap();
    assert!(first["Index"].as_u64().unwrap() > v0);
    hub_caught_up(&c, &a).await;
    let now = metric(
        &metrics(&c, &a).await,
        "mesh_proxy_snapshots_published_total",
    );
    assert_eq!(
        now - published,
        1,
        "one new snapshot for one proxy, however many watch it"
    );
}

/// Past `limits.proxy_snapshots_max_watched`, a new proxy's snapshot is
/// refused with 429 naming the limit; the proxies already watched are
/// still served.
#[tokio::test]
async fn proxies_past_the_watched_limit_get_429_and_the_others_keep_theirs() {
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("conf");
    std::fs::create_dir_all(&conf).unwrap();
    std::fs::write(
        conf.join("limits.hcl"),
        "limits { proxy_snapshots_max_watched = 2 }\n",
    )
    .unwrap();
    let mut spec = mesh_testkit::AgentSpec::server("limited", 1);
    spec.extra = vec!["-dev".into(), format!("-config-dir={}", conf.display())];
    let a = TestAgent::start(spec, &dir.path().join("data"))
        .await
        .unwrap();
    let c = http();
    for name in ["web", "api", "db"] {
        put(
            &c,
            a.url("/v1/agent/service/register"),
            json!({"Name": name, "ID": name, "Port": 8080,
                   "Connect": {"SidecarService": {"Port": 0}}}),
        )
        .await;
    }
    let get = |id: &str| {
        let url = a.url(&format!("/v1/agent/connect/proxy/{id}-sidecar-proxy"));
        let c = c.clone();
        async move { c.get(url).send().await.unwrap() }
    };
    for id in ["web", "api"] {
        eventually(
            &format!("{id}'s snapshot"),
            Duration::from_secs(20),
            || async { (get(id).await.status() == 200).then_some(()) },
        )
        .await;
    }
    let refused = get("db").await;
    assert_eq!(refused.status(), 429);
    let why = refused.text().await.unwrap();
    assert!(
        why.contains("limits.proxy_snapshots_max_watched"),
        "the refusal names the limit: {why}"
    );
    assert_eq!(
        get("web").await.status(),
        200,
        "a watched proxy is still served"
    );
    assert_eq!(
        metric(&metrics(&c, &a).await, "mesh_proxy_snapshots_watched"),
        2
    );
}

/// An upstream's protocol (its `service-defaults`) is in the snapshot, and
/// a change of it alone, a config-only write, reaches the proxies whose
/// upstream it is.
#[tokio::test]
async fn an_upstreams_protocol_change_reaches_the_proxies_that_call_it() {
    let dir = tempfile::tempdir().unwrap();
    let (a, c) = agent_with_web_sidecar(dir.path()).await;
    let (v0, before) = snapshot(&c, &a, None).await;
    assert_eq!(before["Upstreams"][0]["DestinationName"], "db");
    assert_eq!(before["Upstreams"][0]["Protocol"], "tcp");
    put(
        &c,
        a.url("/v1/config"),
        json!({"Kind": "service-defaults", "Name": "db", "Protocol": "grpc"}),
    )
    .await;
    let (v1, after) = snapshot(&c, &a, Some(v0)).await;
    assert_ne!(v1, v0);
    assert_eq!(after["Upstreams"][0]["Protocol"], "grpc", "{after}");
    assert_eq!(
        after["Public"]["Protocol"], "tcp",
        "web's own protocol is unchanged"
    );
}
