//! Catalog, health, agent services/checks, config entries, txn, snapshot:
//! the Consul HTTP surface against real agents.

use std::time::Duration;

use mesh_testkit::{eventually, AgentSpec, TestCluster};
use serde_json::{json, Value};

use crate::http;

async fn get_json(c: &reqwest::Client, url: String) -> Value {
    let r = c.get(&url).send().await.unwrap();
    assert!(r.status().is_success(), "{url}: {}", r.status());
    r.json().await.unwrap()
}

async fn put(c: &reqwest::Client, url: String, body: Value) -> reqwest::Response {
    c.put(url).json(&body).send().await.unwrap()
}

#[tokio::test]
async fn agent_services_and_checks_reach_the_catalog_and_health() {
    let dir = tempfile::tempdir().unwrap();
    let a = crate::dev_agent("node1", &dir.path().join("a")).await;
    let c = http();
    let backend = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = backend.local_addr().unwrap().port();

    // CamelCase with a TTL check, and python-consul style lowercase with a TCP check.
    let r = put(
        &c,
        a.url("/v1/agent/service/register"),
        json!({
            "Name": "web", "ID": "web1", "Port": 8080, "Tags": ["v1", "blue"],
            "Meta": {"Team": "Core"}, "Check": {"TTL": "30s"}
        }),
    )
    .await;
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    let r = put(
        &c,
        a.url("/v1/agent/service/register"),
        json!({
            "name": "web", "id": "web2", "port": port, "tags": ["v2"],
            "check": {"tcp": format!("127.0.0.1:{port}"), "interval": "1s"}
        }),
    )
    .await;
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());

    let services = get_json(&c, a.url("/v1/catalog/services")).await;
    let mut tags: Vec<&str> = services["web"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    tags.sort();
    assert_eq!(tags, vec!["blue", "v1", "v2"]);
    let v1 = get_json(&c, a.url("/v1/catalog/service/web?tag=v1")).await;
    assert_eq!(v1.as_array().unwrap().len(), 1);
    assert_eq!(v1[0]["ServiceID"], "web1");
    assert_eq!(v1[0]["ServiceMeta"]["Team"], "Core");

    // web1 is critical until its TTL is passed; web2 passes once its TCP check runs.
    let passing = eventually("web2 passing", Duration::from_secs(15), || async {
        let h = get_json(&c, a.url("/v1/health/service/web?passing")).await;
        (h.as_array()?.len() == 1).then_some(h)
    })
    .await;
    assert_eq!(passing[0]["Service"]["ID"], "web2");
    let r = c
        .put(a.url("/v1/agent/check/pass/service:web1?note=ok"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    eventually("both passing", Duration::from_secs(10), || async {
        let h = get_json(&c, a.url("/v1/health/service/web?passing")).await;
        (h.as_array()?.len() == 2).then_some(())
    })
    .await;
    let checks = get_json(&c, a.url("/v1/agent/checks")).await;
    assert_eq!(checks["service:web1"]["Type"], "ttl");
    assert_eq!(checks["service:web1"]["Name"], "Service 'web' check");

    // Blocking health query wakes when a check fails.
    let first = c.get(a.url("/v1/health/service/web")).send().await.unwrap();
    let index = first.headers()["X-Consul-Index"]
        .to_str()
        .unwrap()
        .to_string();
    let url = a.url(&format!(
        "/v1/health/service/web?passing&index={index}&wait=20s"
    ));
    let waiter = tokio::spawn({
        let c = c.clone();
        async move {
            c.get(url)
                .send()
                .await
                .unwrap()
                .json::<Value>()
                .await
                .unwrap()
        }
    });
    crate::wait_parked(&c, &a, 1).await;
    c.put(a.url("/v1/agent/check/fail/service:web1"))
        .send()
        .await
        .unwrap();
    let after = tokio::time::timeout(Duration::from_secs(10), waiter)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(after.as_array().unwrap().len(), 1);

    // Deregister: gone from agent, catalog and health.
    assert_eq!(
        c.put(a.url("/v1/agent/service/deregister/web1"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let services = get_json(&c, a.url("/v1/agent/services")).await;
    assert!(services.get("web1").is_none() && services.get("web2").is_some());
    let all = get_json(&c, a.url("/v1/catalog/service/web")).await;
    assert_eq!(all.as_array().unwrap().len(), 1);
    assert_eq!(
        c.put(a.url("/v1/agent/service/deregister/nope"))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
    drop(backend);
}

#[tokio::test]
async fn catalog_register_owners_config_entries_txn_and_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let a = crate::dev_agent("node1", &dir.path().join("a")).await;
    let c = http();
    let reg = json!({"Node": "ext", "Address": "10.1.2.3", "Service": {"Service": "db", "Port": 5432},
                     "Check": {"CheckID": "db-ok", "Status": "passing", "ServiceID": "db"}});
    let r = c
        .put(a.url("/v1/catalog/register"))
        .header("X-Mesh-Owner", "terraform")
        .json(&reg)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    // Another owner gets 409 naming the owner, and nothing changes.
    let r = put(
        &c,
        a.url("/v1/catalog/register"),
        json!({"Node": "ext", "Address": "10.1.2.3", "Service": {"Service": "db", "Port": 1}}),
    )
    .await;
    assert_eq!(r.status(), 409);
    assert!(r.text().await.unwrap().contains("terraform"));
    let db = get_json(&c, a.url("/v1/catalog/service/db")).await;
    assert_eq!(db[0]["ServicePort"], 5432);
    let r = put(
        &c,
        a.url("/v1/catalog/register?takeover=true"),
        json!({"Node": "ext", "Address": "10.1.2.3", "Service": {"Service": "db", "Port": 1}}),
    )
    .await;
    assert_eq!(r.status(), 200);
    let node = get_json(&c, a.url("/v1/catalog/node/ext")).await;
    assert_eq!(node["Services"]["db"]["Port"], 1);
    assert_eq!(node["Services"]["db"]["Owner"], "api");
    let state = get_json(&c, a.url("/v1/health/state/passing")).await;
    assert!(state
        .as_array()
        .unwrap()
        .iter()
        .any(|c| c["CheckID"] == "db-ok"));

    // Config entries.
    let entry = json!({"Kind": "service-defaults", "Name": "web", "Protocol": "http"});
    assert_eq!(
        put(&c, a.url("/v1/config"), entry.clone())
            .await
            .json::<bool>()
            .await
            .unwrap(),
        true
    );
    let got = get_json(&c, a.url("/v1/config/service-defaults/web")).await;
    assert_eq!(got["Protocol"], "http");
    let list = get_json(&c, a.url("/v1/config/service-defaults")).await;
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert_eq!(
        put(&c, a.url("/v1/config?cas=0"), entry)
            .await
            .json::<bool>()
            .await
            .unwrap(),
        false
    );
    assert_eq!(
        put(
            &c,
            a.url("/v1/config"),
            json!({"Kind": "bogus", "Name": "x"})
        )
        .await
        .status(),
        400
    );
    assert_eq!(
        c.delete(a.url("/v1/config/service-defaults/web"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        c.get(a.url("/v1/config/service-defaults/web"))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );

    // Transactions: all or nothing.
    let ok = put(
        &c,
        a.url("/v1/txn"),
        json!([
            {"KV": {"Verb": "set", "Key": "t/a", "Value": "MQ=="}},
            {"KV": {"Verb": "get", "Key": "t/a"}}
        ]),
    )
    .await;
    assert_eq!(ok.status(), 200);
    let body: Value = ok.json().await.unwrap();
    assert_eq!(body["Results"][1]["KV"]["Value"], "MQ==");
    let bad = put(
        &c,
        a.url("/v1/txn"),
        json!([
            {"KV": {"Verb": "set", "Key": "t/b", "Value": "Mg=="}},
            {"KV": {"Verb": "check-not-exists", "Key": "t/a"}}
        ]),
    )
    .await;
    assert_eq!(bad.status(), 409);
    let errors: Value = serde_json::from_str(bad.text().await.unwrap().trim()).unwrap();
    assert_eq!(errors["Errors"][0]["OpIndex"], 1);
    assert_eq!(
        c.get(a.url("/v1/kv/t/b")).send().await.unwrap().status(),
        404
    );

    // Snapshot save, change, restore.
    let snap = c
        .get(a.url("/v1/snapshot"))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    c.delete(a.url("/v1/kv/t/a")).send().await.unwrap();
    assert_eq!(
        c.get(a.url("/v1/kv/t/a")).send().await.unwrap().status(),
        404
    );
    assert_eq!(
        c.put(a.url("/v1/snapshot"))
            .body(snap)
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        c.get(a.url("/v1/kv/t/a?raw"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
        "1"
    );
    assert_eq!(
        c.put(a.url("/v1/snapshot"))
            .body("garbage")
            .send()
            .await
            .unwrap()
            .status(),
        400
    );
}

#[tokio::test]
async fn bad_input_is_a_clear_4xx_and_stores_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let a = crate::dev_agent("node1", &dir.path().join("a")).await;
    let c = http();
    let cases: Vec<(&str, &str, String)> = vec![
        ("/v1/agent/service/register", "malformed", "{".into()),
        (
            "/v1/agent/service/register",
            "wrong type",
            r#"{"Name":"x","Port":"eighty"}"#.into(),
        ),
        (
            "/v1/agent/service/register",
            "no name",
            r#"{"Port":80}"#.into(),
        ),
        (
            "/v1/agent/service/register",
            "bad kind",
            r#"{"Name":"x","Kind":"warp-drive"}"#.into(),
        ),
        (
            "/v1/agent/service/register",
            "bad check",
            r#"{"Name":"x","Check":{"HTTP":"http://x","Interval":"5x"}}"#.into(),
        ),
        (
            "/v1/agent/check/register",
            "no kind",
            r#"{"Name":"c"}"#.into(),
        ),
        (
            "/v1/catalog/register",
            "no node",
            r#"{"Address":"1.2.3.4"}"#.into(),
        ),
        (
            "/v1/catalog/register",
            "bad status",
            r#"{"Node":"n","Address":"1.2.3.4","Check":{"CheckID":"c","Status":"sleepy"}}"#.into(),
        ),
        (
            "/v1/txn",
            "bad verb",
            r#"[{"KV":{"Verb":"explode","Key":"k"}}]"#.into(),
        ),
    ];
    for (path, what, body) in cases {
        let r = c.put(a.url(path)).body(body).send().await.unwrap();
        let status = r.status().as_u16();
        let text = r.text().await.unwrap();
        assert!((400..500).contains(&status), "{what}: {status} {text}");
        assert!(!text.trim().is_empty(), "{what}: error says what is wrong");
    }
    let big = vec![b'x'; 512 * 1024 + 1];
    assert_eq!(
        c.put(a.url("/v1/kv/big"))
            .body(big)
            .send()
            .await
            .unwrap()
            .status(),
        413
    );
    assert_eq!(
        c.get(a.url("/v1/kv/big")).send().await.unwrap().status(),
        404
    );
    assert_eq!(
        c.get(a.url("/v1/kv/x?wait=-5s&index=1"))
            .send()
            .await
            .unwrap()
            .status(),
        400
    );
    assert_eq!(
        c.get(a.url("/v1/kv/x?index=abc"))
            .send()
            .await
            .unwrap()
            .status(),
        400
    );
    assert_eq!(
        c.get(a.url("/v1/health/state/sleepy"))
            .send()
            .await
            .unwrap()
            .status(),
        400
    );
    let services = get_json(&c, a.url("/v1/catalog/services")).await;
    assert_eq!(
        services.as_object().unwrap().len(),
        0,
        "nothing stored: {services}"
    );
    // A huge wait is clamped, not an error (index 0 answers at once).
    assert_eq!(
        c.get(a.url("/v1/catalog/services?wait=9999h"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
}

#[tokio::test]
async fn a_client_agents_services_are_everywhere_and_go_critical_when_it_dies() {
    let mut cluster = TestCluster::start(3).await.unwrap();
    let c = http();
    let client = cluster.add(AgentSpec::client("app1")).await.unwrap();
    let url = client.url("/v1/agent/service/register");
    eventually(
        "register through the client agent",
        Duration::from_secs(15),
        || async {
            let r = c
                .put(&url)
                .json(&json!({"Name": "api", "Port": 9000}))
                .send()
                .await
                .ok()?;
            (r.status() == 200).then_some(())
        },
    )
    .await;
    for server in &cluster.agents[..3] {
        let u = server.url("/v1/health/service/api?passing");
        eventually(
            "service passing on every server",
            Duration::from_secs(15),
            || async {
                let h: Value = c.get(&u).send().await.ok()?.json().await.ok()?;
                (h.as_array()?.len() == 1 && h[0]["Node"]["Node"] == "app1").then_some(())
            },
        )
        .await;
    }
    cluster.agents[3].kill().await;
    let u = cluster.agents[0].url("/v1/health/service/api");
    eventually(
        "dead node's service critical and out of ?passing",
        Duration::from_secs(30),
        || async {
            let h: Value = c.get(&u).send().await.ok()?.json().await.ok()?;
            let serf = h[0]["Checks"]
                .as_array()?
                .iter()
                .find(|c| c["CheckID"] == "serfHealth")?
                .clone();
            (serf["Status"] == "critical").then_some(())
        },
    )
    .await;
    let passing: Value = c
        .get(cluster.agents[1].url("/v1/health/service/api?passing"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(passing.as_array().unwrap().len(), 0);
}

/// Identical reads share one rendered answer until the state changes; every
/// read after an acknowledged write must still see that write, whatever the
/// filter, and blocked readers on different filters get their own answers.
#[tokio::test]
async fn shared_answers_never_hide_a_write() {
    let dir = tempfile::tempdir().unwrap();
    let a = crate::dev_agent("node1", dir.path()).await;
    let c = http();
    let register = |i: usize, tag: &'static str, status: &'static str| {
        json!({
            "Node": "n1", "Address": "10.0.0.1",
            "Service": {"ID": format!("s{i}"), "Service": "shared", "Port": 8000 + i, "Tags": [tag]},
            "Check": {"CheckID": format!("c{i}"), "Name": "c", "Status": status, "ServiceID": format!("s{i}")}
        })
    };
    for i in 0..40 {
        let (tag, status) = if i % 2 == 0 {
            ("even", "passing")
        } else {
            ("odd", "critical")
        };
        let r = put(&c, a.url("/v1/catalog/register"), register(i, tag, status)).await;
        assert_eq!(r.status(), 200);
        let all = get_json(&c, a.url("/v1/health/service/shared")).await;
        assert_eq!(all.as_array().unwrap().len(), i + 1, "read after write {i}");
        let passing = get_json(&c, a.url("/v1/health/service/shared?passing")).await;
        assert_eq!(passing.as_array().unwrap().len(), i / 2 + 1);
        let odd = get_json(&c, a.url("/v1/health/service/shared?tag=odd")).await;
        assert_eq!(
            odd.as_array().unwrap().len(),
            (0..=i).filter(|k| k % 2 == 1).count()
        );
    }

    // Two blocked readers with different filters, one write: each wakes with
    // the answer for its own filter.
    let r = c
        .get(a.url("/v1/health/service/shared"))
        .send()
        .await
        .unwrap();
    let index = r.headers()["X-Consul-Index"].to_str().unwrap().to_string();
    let wait = |q: &'static str| {
        let (c, url) = (
            c.clone(),
            a.url(&format!(
                "/v1/health/service/shared?index={index}&wait=30s{q}"
            )),
        );
        tokio::spawn(async move { get_json(&c, url).await })
    };
    let (even, all) = (wait("&tag=even"), wait(""));
    crate::wait_parked(&c, &a, 2).await;
    let r = put(
        &c,
        a.url("/v1/catalog/register"),
        register(40, "even", "passing"),
    )
    .await;
    assert_eq!(r.status(), 200);
    let (even, all) = (even.await.unwrap(), all.await.unwrap());
    assert_eq!(even.as_array().unwrap().len(), 21);
    assert_eq!(all.as_array().unwrap().len(), 41);
}

/// A health read blocks on the catalog's joins: an instance with no checks
/// appearing (no check changes) still wakes it, as Consul's does. mesh sync
/// and consul-template watch health this way.
#[tokio::test]
async fn blocking_health_read_wakes_for_a_checkless_instance() {
    let dir = tempfile::tempdir().unwrap();
    let a = crate::dev_agent("node1", &dir.path().join("a")).await;
    let c = http();
    let reg = |id: &str| json!({"Name": "solo", "ID": id, "Port": 80});
    assert_eq!(
        put(&c, a.url("/v1/agent/service/register"), reg("solo1"))
            .await
            .status(),
        200
    );
    let first = c
        .get(a.url("/v1/health/service/solo"))
        .send()
        .await
        .unwrap();
    let index = first.headers()["X-Consul-Index"]
        .to_str()
        .unwrap()
        .to_string();
    let url = a.url(&format!("/v1/health/service/solo?index={index}&wait=30s"));
    let waiter = tokio::spawn({
        let c = c.clone();
        async move {
            c.get(url)
                .send()
                .await
                .unwrap()
                .json::<Value>()
                .await
                .unwrap()
        }
    });
    crate::wait_parked(&c, &a, 1).await;
    assert_eq!(
        put(&c, a.url("/v1/agent/service/register"), reg("solo2"))
            .await
            .status(),
        200
    );
    let after = tokio::time::timeout(Duration::from_secs(10), waiter)
        .await
        .expect("the blocking read woke for the new instance")
        .unwrap();
    assert_eq!(after.as_array().unwrap().len(), 2, "{after}");
}

/// `/v1/internal/ui/services`: one summary per service (counts, nodes,
/// owners, the sidecar link), blocking, filtered by the token's
/// service:read under default deny.
#[tokio::test]
async fn ui_services_summarise_the_catalog() {
    use crate::acl::{acl_config, token_with_policy, MANAGEMENT};
    let dir = tempfile::tempdir().unwrap();
    let acl = acl_config(dir.path());
    let mut spec = mesh_testkit::AgentSpec::server("node1", 1);
    spec.extra.push("-dev".into());
    spec.extra.push(format!("-config-file={}", acl.display()));
    let a = mesh_testkit::TestAgent::start(spec, &dir.path().join("a"))
        .await
        .unwrap();
    let c = http();
    for (node, id, name) in [
        ("n1", "web-1", "web"),
        ("n2", "web-2", "web"),
        ("n2", "db-1", "db"),
    ] {
        let r = c
            .put(a.url("/v1/catalog/register"))
            .header("X-Consul-Token", MANAGEMENT)
            .json(&json!({"Node": node, "Address": "10.0.0.1",
                "Service": {"ID": id, "Service": name, "Port": 80, "Tags": ["t"]},
                "Check": {"CheckID": format!("{id}-c"), "Name": "c", "ServiceID": id,
                          "Status": if id == "web-2" { "critical" } else { "passing" }}}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    let get = |token: &'static str| {
        let c = c.clone();
        let url = a.url("/v1/internal/ui/services");
        async move {
            let r = c
                .get(url)
                .header("X-Consul-Token", token)
                .send()
                .await
                .unwrap();
            let index = r.headers()["X-Consul-Index"].to_str().unwrap().to_string();
            (r.json::<Value>().await.unwrap(), index)
        }
    };
    let (all, index) = get(MANAGEMENT).await;
    let web = all
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["Name"] == "web")
        .unwrap();
    assert_eq!(web["InstanceCount"], 2);
    assert_eq!(web["ChecksCritical"], 1);
    assert_eq!(web["ChecksPassing"], 1);
    assert_eq!(web["Nodes"], json!(["n1", "n2"]));
    assert_eq!(web["Owners"], json!(["api"]));

    let only_web = token_with_policy(&a, "web-read", "service \"web\" { policy = \"read\" }").await;
    let only_web: &'static str = Box::leak(only_web.into_boxed_str());
    let (seen, _) = get(only_web).await;
    let names: Vec<&str> = seen
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|s| s["Name"].as_str())
        .collect();
    assert_eq!(names, ["web"], "db is filtered out");

    // Blocking: a new instance wakes it.
    let url = a.url(&format!("/v1/internal/ui/services?index={index}&wait=30s"));
    let waiter = tokio::spawn({
        let c = c.clone();
        async move {
            c.get(url)
                .header("X-Consul-Token", MANAGEMENT)
                .send()
                .await
                .unwrap()
                .json::<Value>()
                .await
                .unwrap()
        }
    });
    // Parked or not when the write lands, the answer must carry it.
    let r = c
        .put(a.url("/v1/catalog/register"))
        .header("X-Consul-Token", MANAGEMENT)
        .json(&json!({"Node": "n3", "Address": "10.0.0.3", "Service": {"ID": "web-3", "Service": "web", "Port": 80}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let after = tokio::time::timeout(Duration::from_secs(10), waiter)
        .await
        .unwrap()
        .unwrap();
    let web = after
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["Name"] == "web")
        .unwrap();
    assert_eq!(web["InstanceCount"], 3);
}
