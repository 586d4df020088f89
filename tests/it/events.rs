//! User events and watches: events spread by gossip between real agents,
//! `mesh event`, `mesh watch`, the agent's `watches` blocks (and their
//! reload), and the event endpoints under ACL default deny.

use std::path::Path;
use std::time::Duration;

use mesh_testkit::{eventually, AgentSpec, TestAgent, TestCluster};
use reqwest::Method;
use serde_json::Value;

use crate::acl::{call, token_with_policy, MANAGEMENT};
use crate::api_surface::default_deny_agent;
use crate::{http, mesh_cli};

const WAIT: Duration = Duration::from_secs(20);

/// The JSON documents a handler appended to `path`, one per line.
fn handed_over(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l:?}: {e}")))
        .collect()
}

/// A handler that appends its stdin (one JSON document) to `out`.
fn appending_handler(out: &Path) -> String {
    format!(
        "args = [\"/bin/sh\", \"-c\", \"tr -d '\\\\n' >> {} && echo >> {}\"]",
        out.display(),
        out.display()
    )
}

async fn fire(agent: &TestAgent, path: &str, payload: &str) -> (u16, Value) {
    let resp = http()
        .put(agent.url(path))
        .body(payload.to_string())
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

#[tokio::test]
async fn an_event_fired_on_one_agent_reaches_a_watch_handler_on_another() {
    let mut cluster = TestCluster::start(1).await.unwrap();
    let out = cluster.dir.path().join("events.jsonl");
    let conf = cluster.dir.path().join("watch.hcl");
    std::fs::write(
        &conf,
        format!(
            "watches = [{{\n  type = \"event\"\n  name = \"deploy\"\n  {}\n}}]\n",
            appending_handler(&out)
        ),
    )
    .unwrap();
    let mut spec = AgentSpec::client("c1");
    spec.extra.push(format!("-config-file={}", conf.display()));
    cluster.add(spec).await.unwrap();
    let (server, client) = (&cluster.agents[0], &cluster.agents[1]);

    // The handler runs once at the start, with no events.
    eventually("the watch's first run", WAIT, || async {
        (handed_over(&out) == vec![Value::Array(vec![])]).then_some(())
    })
    .await;
    eventually("the client in the server's member list", WAIT, || async {
        let (code, text) = mesh_cli(server, &["members"]).await;
        (code == 0 && text.contains("c1") && text.matches("alive").count() == 2).then_some(())
    })
    .await;

    // For another node only: the client lists it not, its handler never sees it.
    let (st, other) = fire(server, "/v1/event/fire/deploy?node=^s0$", "not-for-c1").await;
    assert_eq!(st, 200, "{other}");
    let (st, fired) = fire(server, "/v1/event/fire/deploy?node=^c1$", "v2").await;
    assert_eq!(st, 200, "{fired}");
    assert_eq!(fired["Name"], "deploy");
    assert_eq!(fired["Payload"], "djI=");
    assert_eq!(fired["NodeFilter"], "^c1$");

    eventually("the client's handler to get the event", WAIT, || async {
        let runs = handed_over(&out);
        (runs.len() == 2).then_some(())
    })
    .await;
    let runs = handed_over(&out);
    assert_eq!(runs[1].as_array().unwrap().len(), 1, "{runs:?}");
    assert_eq!(runs[1][0]["ID"], fired["ID"]);
    assert_eq!(runs[1][0]["Payload"], "djI=");

    // Each agent lists what is meant for it.
    let listed = |agent: &TestAgent| {
        let url = agent.url("/v1/event/list?name=deploy");
        async move { crate::fetch_json(&http(), url).await }
    };
    let on_client = listed(client).await;
    assert_eq!(on_client.as_array().unwrap().len(), 1, "{on_client}");
    let on_server = listed(server).await;
    assert_eq!(on_server.as_array().unwrap().len(), 1, "{on_server}");
    assert_eq!(on_server[0]["ID"], other["ID"]);
}

#[tokio::test]
async fn mesh_event_and_mesh_watch_work_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let agent = crate::dev_agent("node1", dir.path()).await;
    let out = dir.path().join("key.json");

    let (code, text) = mesh_cli(&agent, &["event", "-name", "restart", "now"]).await;
    assert_eq!(code, 0, "{text}");
    let id = text
        .trim()
        .strip_prefix("Event ID: ")
        .expect(&text)
        .to_string();
    let (code, text) = mesh_cli(&agent, &["watch", "-type", "event", "-name", "restart"]).await;
    assert_eq!(code, 0, "{text}");
    let shown: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(shown[0]["ID"], id.as_str());
    assert_eq!(shown[0]["Payload"], "bm93");

    let mut watch = tokio::process::Command::new(mesh_testkit::mesh_bin())
        .args(["watch", "-type", "key", "-key", "app/config"])
        .arg(format!("cat > {}", out.display()))
        .env("MESH_HTTP_ADDR", agent.http.to_string())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let view = || {
        std::fs::read_to_string(&out)
            .ok()
            .and_then(|t| serde_json::from_str::<Value>(&t).ok())
    };
    eventually("the first run: no such key", WAIT, || async {
        (view() == Some(Value::Null)).then_some(())
    })
    .await;
    let (code, text) = mesh_cli(&agent, &["kv", "put", "app/config", "hello"]).await;
    assert_eq!(code, 0, "{text}");
    eventually("the handler to get the new entry", WAIT, || async {
        (view()?.get("Value")? == "aGVsbG8=").then_some(())
    })
    .await;
    watch.kill().await.unwrap();

    // Bad settings fail at once, naming what is wrong.
    let (code, text) = mesh_cli(&agent, &["watch", "-type", "key"]).await;
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("a key watch needs key"), "{text}");
    let (code, text) = mesh_cli(&agent, &["watch", "-type", "services", "-key", "x"]).await;
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("does not take \"key\""), "{text}");
    let (code, text) = mesh_cli(&agent, &["event", "-name", "x", "-service", "we["]).await;
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("Invalid service filter"), "{text}");
}

#[tokio::test]
async fn configured_watches_restart_on_reload_and_a_bad_one_keeps_the_last_good_config() {
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("mesh.d");
    std::fs::create_dir_all(&conf).unwrap();
    let (out_a, out_b) = (dir.path().join("a.jsonl"), dir.path().join("b.jsonl"));
    let watch_of = |key: &str, out: &Path| {
        format!(
            "watches = [{{\n  type = \"key\"\n  key  = \"{key}\"\n  {}\n}}]\n",
            appending_handler(out)
        )
    };
    std::fs::write(conf.join("watch.hcl"), watch_of("a", &out_a)).unwrap();
    let mut spec = AgentSpec::server("node1", 1);
    spec.extra = vec!["-dev".into(), format!("-config-dir={}", conf.display())];
    let agent = TestAgent::start(spec, &dir.path().join("data"))
        .await
        .unwrap();

    eventually("the watch on a to run", WAIT, || async {
        (handed_over(&out_a) == vec![Value::Null]).then_some(())
    })
    .await;
    assert_eq!(mesh_cli(&agent, &["kv", "put", "a", "1"]).await.0, 0);
    eventually("the watch on a to see a", WAIT, || async {
        (handed_over(&out_a).last()?.get("Value")? == "MQ==").then_some(())
    })
    .await;

    // A reload that changes the watch stops the old one and starts the new.
    std::fs::write(conf.join("watch.hcl"), watch_of("b", &out_b)).unwrap();
    eventually("the watch on b to run", WAIT, || async {
        (!handed_over(&out_b).is_empty()).then_some(())
    })
    .await;
    let runs_of_a = handed_over(&out_a).len();
    assert_eq!(mesh_cli(&agent, &["kv", "put", "b", "2"]).await.0, 0);
    assert_eq!(mesh_cli(&agent, &["kv", "put", "a", "3"]).await.0, 0);
    eventually("the watch on b to see b", WAIT, || async {
        (handed_over(&out_b).last()?.get("Value")? == "Mg==").then_some(())
    })
    .await;
    assert_eq!(
        handed_over(&out_a).len(),
        runs_of_a,
        "the old watch was stopped"
    );

    // A watch without a handler is refused with its place; b keeps running.
    std::fs::write(
        conf.join("watch.hcl"),
        "watches = [{\n  type = \"key\"\n  key  = \"c\"\n}]\n",
    )
    .unwrap();
    let status = eventually("the reload to be refused", WAIT, || async {
        let me = crate::fetch_json(&http(), agent.url("/v1/agent/self")).await;
        let status = me["ConfigStatus"].clone();
        (status["Ok"] == false).then_some(status)
    })
    .await;
    let error = status["Errors"].to_string();
    assert!(error.contains("watch.hcl:1:"), "{error}");
    assert!(
        error.contains("watches[0]") && error.contains("needs a handler"),
        "{error}"
    );
    assert_eq!(mesh_cli(&agent, &["kv", "put", "b", "4"]).await.0, 0);
    eventually("the watch on b to keep running", WAIT, || async {
        (handed_over(&out_b).last()?.get("Value")? == "NA==").then_some(())
    })
    .await;
}

#[tokio::test]
async fn event_endpoints_check_acls_and_refuse_bad_input_under_default_deny() {
    let dir = tempfile::tempdir().unwrap();
    let agent = default_deny_agent("node1", dir.path()).await;
    let deploy_only = token_with_policy(
        &agent,
        "deploy-events",
        r#"event "deploy" { policy = "write" }"#,
    )
    .await;
    let send = |path: &'static str, token: Option<String>, body: &'static str| {
        let agent = &agent;
        async move {
            let mut req = http().put(agent.url(path)).body(body);
            if let Some(t) = token {
                req = req.header("X-Consul-Token", t);
            }
            let resp = req.send().await.unwrap();
            (resp.status().as_u16(), resp.text().await.unwrap())
        }
    };
    let count = || async {
        let (st, text) = call(
            Method::GET,
            &agent,
            "/v1/event/list",
            Some(MANAGEMENT),
            None,
        )
        .await;
        assert_eq!(st, 200, "{text}");
        serde_json::from_str::<Value>(&text)
            .unwrap()
            .as_array()
            .unwrap()
            .len()
    };

    let (st, text) = send("/v1/event/fire/deploy", None, "x").await;
    assert_eq!(st, 403, "{text}");
    assert!(text.contains("event:write"), "{text}");
    let (st, text) = send("/v1/event/fire/other", Some(deploy_only.clone()), "x").await;
    assert_eq!(st, 403, "{text}");
    assert_eq!(count().await, 0, "a refused event is not fired");

    let (st, text) = send("/v1/event/fire/deploy", Some(deploy_only.clone()), "x").await;
    assert_eq!(st, 200, "{text}");
    let (st, text) = send("/v1/event/fire/other", Some(MANAGEMENT.into()), "y").await;
    assert_eq!(st, 200, "{text}");

    // The list shows only the events the token may read.
    let (st, text) = call(
        Method::GET,
        &agent,
        "/v1/event/list",
        Some(&deploy_only),
        None,
    )
    .await;
    assert_eq!(st, 200, "{text}");
    let names: Vec<Value> = serde_json::from_str::<Value>(&text)
        .unwrap()
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["Name"].clone())
        .collect();
    assert_eq!(names, vec![Value::from("deploy")], "{text}");
    let (st, text) = call(Method::GET, &agent, "/v1/event/list", None, None).await;
    assert_eq!((st.as_u16(), text.trim()), (200, "[]"));

    // Bad input: a 4xx naming the problem, nothing fired.
    let before = count().await;
    for (path, body, status, says) in [
        (
            "/v1/event/fire/deploy?service=we[",
            "x",
            400,
            "Invalid service filter",
        ),
        (
            "/v1/event/fire/deploy?tag=v1",
            "x",
            400,
            "tag filter without service filter",
        ),
        (
            "/v1/event/fire/deploy?node=(",
            "x",
            400,
            "Invalid node filter",
        ),
    ] {
        let (st, text) = send(path, Some(MANAGEMENT.into()), body).await;
        assert_eq!(st, status, "{path}: {text}");
        assert!(text.contains(says), "{path}: {text}");
    }
    let big = "x".repeat(600);
    let resp = http()
        .put(agent.url("/v1/event/fire/deploy"))
        .header("X-Consul-Token", MANAGEMENT)
        .body(big)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 413);
    assert!(resp.text().await.unwrap().contains("MAX_EVENT_BYTES"));
    assert_eq!(count().await, before);

    // A blocking list returns when a new event arrives.
    let (st, index) = {
        let resp = http()
            .get(agent.url("/v1/event/list"))
            .header("X-Consul-Token", MANAGEMENT)
            .send()
            .await
            .unwrap();
        (resp.status(), crate::consul_index(&resp))
    };
    assert_eq!(st, 200);
    let waiting = tokio::spawn({
        let url = agent.url(&format!("/v1/event/list?index={index}&wait=30s"));
        async move {
            let started = std::time::Instant::now();
            let resp = http()
                .get(url)
                .header("X-Consul-Token", MANAGEMENT)
                .send()
                .await
                .unwrap();
            (
                started.elapsed(),
                crate::consul_index(&resp),
                resp.json::<Value>().await.unwrap(),
            )
        }
    });
    // Fire only once the list is parked, so the fire wakes it.
    eventually("the list to park", WAIT, || async {
        let resp = http()
            .get(agent.url("/v1/agent/metrics?format=prometheus"))
            .header("X-Consul-Token", MANAGEMENT)
            .send()
            .await
            .ok()?;
        let text = resp.text().await.ok()?;
        let parked = text
            .lines()
            .find_map(|l| l.strip_prefix("mesh_api_queries_blocking "))?;
        (parked.trim() == "1").then_some(())
    })
    .await;
    let (st, fired) = send("/v1/event/fire/late", Some(MANAGEMENT.into()), "z").await;
    assert_eq!(st, 200, "{fired}");
    let (took, new_index, events) = waiting.await.unwrap();
    assert!(took < Duration::from_secs(20), "the list waited {took:?}");
    assert_ne!(new_index, index);
    assert_eq!(events.as_array().unwrap().last().unwrap()["Name"], "late");
}

/// Whether an event is for this agent is decided when it arrives, as in
/// Consul: registering a matching service later does not pull it in, and
/// deregistering one later does not drop an event already taken.
#[tokio::test]
async fn an_event_is_taken_or_not_when_it_arrives() {
    let dir = tempfile::tempdir().unwrap();
    let agent = crate::dev_agent("intake1", dir.path()).await;
    let names = |agent: &TestAgent| {
        let url = agent.url("/v1/event/list?name=deploy");
        async move {
            let list = crate::fetch_json(&http(), url).await;
            list.as_array()
                .unwrap()
                .iter()
                .map(|e| e["Payload"].as_str().unwrap_or_default().to_string())
                .collect::<Vec<_>>()
        }
    };
    let (st, _) = fire(&agent, "/v1/event/fire/deploy?service=^late$", "early").await;
    assert_eq!(st, 200);
    // Wait until the agent has seen (and decided on) it: an event for
    // every node, fired after it, arrives after it.
    let (st, _) = fire(&agent, "/v1/event/fire/deploy", "marker").await;
    assert_eq!(st, 200);
    eventually("the marker event", WAIT, || async {
        (names(&agent).await == ["bWFya2Vy"]).then_some(())
    })
    .await;
    let reg = http()
        .put(agent.url("/v1/agent/service/register"))
        .json(&serde_json::json!({"Name": "late"}))
        .send()
        .await
        .unwrap();
    assert_eq!(reg.status(), 200);
    let (st, _) = fire(&agent, "/v1/event/fire/deploy?service=^late$", "now").await;
    assert_eq!(st, 200);
    eventually(
        "the event fired after the service was registered",
        WAIT,
        || async { (names(&agent).await == ["bWFya2Vy", "bm93"]).then_some(()) },
    )
    .await;
    let dereg = http()
        .put(agent.url("/v1/agent/service/deregister/late"))
        .send()
        .await
        .unwrap();
    assert_eq!(dereg.status(), 200);
    assert_eq!(
        names(&agent).await,
        ["bWFya2Vy", "bm93"],
        "an event taken stays"
    );
}
