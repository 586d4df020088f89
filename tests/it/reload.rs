//! mesh.d: resource files applied at start and on every change (watcher,
//! SIGHUP, `mesh reload`), a bad file keeps the last good config, removed
//! declarations are deleted, owners are enforced, restarts change nothing.

use std::path::Path;
use std::time::Duration;

use mesh_testkit::{eventually, AgentSpec, TestAgent, TestCluster};
use serde_json::{json, Value};

use crate::http;

/// Write a file the way editors and config management do: a temp file, then rename.
fn write_atomic(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp~");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

async fn get(c: &reqwest::Client, url: String) -> (u16, Value) {
    let r = c.get(&url).send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

async fn intention_action(
    c: &reqwest::Client,
    a: &TestAgent,
    src: &str,
    dst: &str,
) -> Option<String> {
    let (status, v) = get(
        c,
        a.url(&format!(
            "/v1/connect/intentions/exact?source={src}&destination={dst}"
        )),
    )
    .await;
    (status == 200).then(|| v["Action"].as_str().unwrap_or("L7").to_string())
}

async fn config_status(c: &reqwest::Client, a: &TestAgent) -> Value {
    get(c, a.url("/v1/agent/self")).await.1["ConfigStatus"].clone()
}

const WAIT: Duration = Duration::from_secs(10);

/// A `-dev` agent named node1 whose config dir is `conf`.
async fn dev_agent_reading(conf: &Path, data: &Path) -> TestAgent {
    let mut spec = AgentSpec::server("node1", 1);
    spec.extra = vec!["-dev".into(), format!("-config-dir={}", conf.display())];
    TestAgent::start(spec, data).await.unwrap()
}

#[tokio::test]
async fn files_are_the_truth_and_a_bad_file_keeps_the_last_good_config() {
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("mesh.d");
    std::fs::create_dir_all(&conf).unwrap();
    std::fs::write(
        conf.join("web.hcl"),
        r#"
service {
  name = "web"
  id   = "web-1"
  port = 8080
  connect {
    sidecar_service {
      proxy {
        upstreams = [{ destination_name = "api", local_bind_port = 9191 }]
      }
    }
  }
}
intention "web" "api" {
  action = "allow"
}
config_entry {
  kind     = "service-defaults"
  name     = "api"
  protocol = "http"
}
"#,
    )
    .unwrap();
    let mut a = dev_agent_reading(&conf, &dir.path().join("data")).await;
    let c = http();

    // Applied at start: the intention, the config entry (CamelCase), the service with its sidecar.
    eventually("file intention applied", WAIT, || async {
        (intention_action(&c, &a, "web", "api").await.as_deref() == Some("allow")).then_some(())
    })
    .await;
    let (_, entry) = get(&c, a.url("/v1/config/service-defaults/api")).await;
    assert_eq!(entry["Protocol"], "http");
    assert!(
        entry["Owner"]
            .as_str()
            .is_some_and(|o| o.starts_with("file:node1:") && o.ends_with("mesh.d/web.hcl")),
        "config entries show their owner: {entry}"
    );
    let (_, svcs) = get(&c, a.url("/v1/agent/services")).await;
    assert_eq!(svcs["web-1"]["Service"], "web");
    assert_eq!(
        svcs["web-1-sidecar-proxy"]["Proxy"]["Upstreams"][0]["DestinationName"],
        "api"
    );
    let (_, ixn) = get(
        &c,
        a.url("/v1/connect/intentions/exact?source=web&destination=api"),
    )
    .await;
    let owner = ixn["Owner"].as_str().unwrap().to_string();
    assert!(
        owner.starts_with("file:node1:") && owner.ends_with("mesh.d/web.hcl"),
        "{owner}"
    );

    // The API cannot change a file-owned object without taking it over; the 409 names the file.
    let r = c
        .put(a.url("/v1/connect/intentions/exact?source=web&destination=api"))
        .json(&json!({"Action": "deny"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 409);
    assert!(r.text().await.unwrap().contains("mesh.d/web.hcl"));

    // Edit by atomic rename: the watcher applies it without any command.
    let text = std::fs::read_to_string(conf.join("web.hcl")).unwrap();
    write_atomic(
        &conf.join("web.hcl"),
        &text.replace("action = \"allow\"", "action = \"deny\""),
    );
    eventually("edit applied", WAIT, || async {
        (intention_action(&c, &a, "web", "api").await.as_deref() == Some("deny")).then_some(())
    })
    .await;

    // A new file with an intention, then a broken edit of it: refused, last good stays.
    write_atomic(
        &conf.join("db.hcl"),
        "intention \"api\" \"db\" {\n  action = \"allow\"\n}\n",
    );
    eventually("new file applied", WAIT, || async {
        intention_action(&c, &a, "api", "db").await.map(|_| ())
    })
    .await;
    write_atomic(&conf.join("db.hcl"), "intention \"api\" \"db\" {\n  action = \"allow\"\n}\nintention \"x\" \"db\" {\n  acton = \"deny\"\n}\n");
    let status = eventually("bad file reported", WAIT, || async {
        let s = config_status(&c, &a).await;
        (s["Ok"] == false).then_some(s)
    })
    .await;
    let error = status["Errors"][0].as_str().unwrap();
    assert!(
        error.contains("db.hcl:5:3")
            && error.contains("unknown key `acton`")
            && error.contains("did you mean `action`?"),
        "{error}"
    );
    // The refusal is visible cluster-wide as this node's `mesh-config`
    // check, which stays passing so the node's services stay healthy.
    let check = eventually("the mesh-config check says refused", WAIT, || async {
        let (_, checks) = get(&c, a.url("/v1/health/node/node1")).await;
        let check = checks
            .as_array()?
            .iter()
            .find(|k| k["CheckID"] == "mesh-config")?
            .clone();
        check["Output"]
            .as_str()?
            .starts_with("refused")
            .then_some(check)
    })
    .await;
    assert_eq!(check["Status"], "passing");
    assert!(
        check["Output"].as_str().unwrap().contains("db.hcl:5:3"),
        "{check}"
    );
    assert_eq!(
        intention_action(&c, &a, "api", "db").await.as_deref(),
        Some("allow")
    );
    assert_eq!(
        intention_action(&c, &a, "x", "db").await,
        None,
        "nothing half-applied"
    );
    // `mesh reload` says the same and fails.
    let (code, out) = crate::mesh_cli(&a, &["reload"]).await;
    assert_ne!(code, 0);
    assert!(out.contains("db.hcl:5:3"), "{out}");

    // `mesh config plan` shows what fixing the file would do, without doing it.
    let fixed = "intention \"api\" \"db\" {\n  action = \"allow\"\n}\nintention \"x\" \"db\" {\n  action = \"deny\"\n}\n";
    let plan_dir = dir.path().join("plan");
    std::fs::create_dir_all(&plan_dir).unwrap();
    std::fs::copy(conf.join("web.hcl"), plan_dir.join("web.hcl")).unwrap();
    std::fs::write(plan_dir.join("db.hcl"), fixed).unwrap();
    let (code, out) = crate::mesh_cli(&a, &["config", "plan", conf.to_str().unwrap()]).await;
    assert_eq!(code, 1, "the live dir still has the broken file: {out}");
    write_atomic(&conf.join("db.hcl"), fixed);
    eventually("fixed file applied", WAIT, || async {
        (intention_action(&c, &a, "x", "db").await.as_deref() == Some("deny")).then_some(())
    })
    .await;
    let (code, out) = crate::mesh_cli(&a, &["config", "plan", conf.to_str().unwrap()]).await;
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("No changes"), "{out}");

    // Deleting a file deletes what it declared.
    std::fs::remove_file(conf.join("db.hcl")).unwrap();
    eventually("removed file's intentions deleted", WAIT, || async {
        (intention_action(&c, &a, "api", "db").await.is_none()
            && intention_action(&c, &a, "x", "db").await.is_none())
        .then_some(())
    })
    .await;

    // Removing the service block deregisters the service and its sidecar; SIGHUP also reloads.
    let text = std::fs::read_to_string(conf.join("web.hcl")).unwrap();
    let without_service = &text[text.find("intention").unwrap()..];
    std::fs::write(conf.join("web.hcl"), without_service).unwrap();
    let pid = a.pid().unwrap().to_string();
    std::process::Command::new("kill")
        .args(["-HUP", &pid])
        .status()
        .unwrap();
    eventually("service removed", WAIT, || async {
        let (_, svcs) = get(&c, a.url("/v1/agent/services")).await;
        (svcs.as_object().is_some_and(|m| m.is_empty())).then_some(())
    })
    .await;

    // A restart with the same files changes nothing.
    a.restart().await.unwrap();
    let status = eventually("first reload after restart", WAIT, || async {
        let s = config_status(&a_http(), &a).await;
        (s["Count"].as_u64().unwrap_or(0) >= 1).then_some(s)
    })
    .await;
    assert_eq!(status["Ok"], true, "{status}");
    assert_eq!(status["Changes"], json!([]), "idempotent: {status}");
}

fn a_http() -> reqwest::Client {
    http()
}

#[tokio::test]
async fn live_settings_change_and_others_say_they_need_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("conf");
    std::fs::create_dir_all(&conf).unwrap();
    std::fs::write(
        conf.join("agent.hcl"),
        "log_level = \"info\"\ndns_config {\n  node_ttl = \"5s\"\n}\n",
    )
    .unwrap();
    let mut spec = AgentSpec::server("node1", 1);
    spec.dns = true;
    spec.extra = vec!["-dev".into(), format!("-config-dir={}", conf.display())];
    let a = TestAgent::start(spec, &dir.path().join("data"))
        .await
        .unwrap();
    let c = http();
    eventually("start reload", WAIT, || async {
        (config_status(&c, &a).await["Ok"] == true).then_some(())
    })
    .await;
    std::fs::write(
        conf.join("agent.hcl"),
        "log_level = \"debug\"\ndomain = \"mesh\"\ndatacenter = \"east\"\ndns_config {\n  node_ttl = \"5s\"\n}\n",
    )
    .unwrap();
    let (code, out) = crate::mesh_cli(&a, &["reload"]).await;
    assert_eq!(code, 0, "{out}");
    let status = config_status(&c, &a).await;
    let restart: Vec<&str> = status["NeedsRestart"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(restart, ["datacenter (dc1 -> east)"], "{status}");
    // A second reload of the same files still says so: the running agent
    // keeps dc1 until it restarts.
    let (code, out) = crate::mesh_cli(&a, &["reload"]).await;
    assert_eq!(code, 0, "{out}");
    let again = config_status(&c, &a).await;
    assert!(
        again["Count"].as_u64() > status["Count"].as_u64(),
        "{again}"
    );
    assert_eq!(again["NeedsRestart"], status["NeedsRestart"], "{again}");
    // The DNS domain changed live: the node answers under `.mesh`.
    let dns = a.dns.unwrap();
    let out = tokio::process::Command::new(mesh_testkit::require_tool(
        "dig",
        "scripts/setup.sh installs Debian's bind9-dnsutils",
    ))
    .args([
        format!("@{}", dns.ip()),
        "-p".into(),
        dns.port().to_string(),
        "+short".into(),
        "+time=2".into(),
        "+tries=1".into(),
        "node1.node.mesh".into(),
    ])
    .output()
    .await
    .expect("dig is installed");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "127.0.0.1");
}

#[tokio::test]
async fn two_nodes_declaring_one_intention_differently_are_refused_with_both_files() {
    let root = tempfile::tempdir().unwrap();
    let dirs: Vec<_> = (0..3)
        .map(|i| root.path().join(format!("conf{i}")))
        .collect();
    for d in &dirs {
        std::fs::create_dir_all(d).unwrap();
    }
    std::fs::write(
        dirs[0].join("a.hcl"),
        "intention \"web\" \"api\" {\n  action = \"allow\"\n}\n",
    )
    .unwrap();
    let dirs2 = dirs.clone();
    let cluster = TestCluster::start_with(3, move |i, spec| {
        spec.extra
            .push(format!("-config-dir={}", dirs2[i].display()));
    })
    .await
    .unwrap();
    let c = http();
    // Visible on every node.
    for a in &cluster.agents {
        eventually("intention on every node", WAIT, || async {
            (intention_action(&c, a, "web", "api").await.as_deref() == Some("allow")).then_some(())
        })
        .await;
    }
    // Node 1 declares the same pair as deny: refused, naming both files.
    write_atomic(
        &dirs[1].join("b.hcl"),
        "intention \"web\" \"api\" {\n  action = \"deny\"\n}\n",
    );
    let status = eventually("conflict reported on s1", WAIT, || async {
        let s = config_status(&c, &cluster.agents[1]).await;
        (s["Ok"] == false).then_some(s)
    })
    .await;
    let error = status["Errors"][0].as_str().unwrap();
    assert!(
        error.contains("conf1/b.hcl") && error.contains("conf0/a.hcl"),
        "{error}"
    );
    assert_eq!(
        intention_action(&c, &cluster.agents[2], "web", "api")
            .await
            .as_deref(),
        Some("allow")
    );
    // Declared identically elsewhere is fine (already true), and stays owned by node 0.
    write_atomic(
        &dirs[1].join("b.hcl"),
        "intention \"web\" \"api\" {\n  action = \"allow\"\n}\n",
    );
    eventually("identical declaration accepted", WAIT, || async {
        (config_status(&c, &cluster.agents[1]).await["Ok"] == true).then_some(())
    })
    .await;
}

/// A client agent holds no replica, so it plans its files against the state
/// a server sends: what its files declared is created, updated and deleted
/// cluster-wide like a server's, and its first load waits for the servers.
#[tokio::test]
async fn a_client_agents_files_create_update_and_delete_cluster_objects() {
    let root = tempfile::tempdir().unwrap();
    let conf = root.path().join("client.d");
    std::fs::create_dir_all(&conf).unwrap();
    let file = conf.join("mesh.hcl");
    std::fs::write(
        &file,
        "intention \"web\" \"db\" {\n  action = \"allow\"\n}\n\nconfig_entry {\n  kind     = \"service-defaults\"\n  name     = \"db\"\n  protocol = \"http\"\n}\n",
    )
    .unwrap();
    let mut cluster = TestCluster::start(3).await.unwrap();
    let mut spec = AgentSpec::client("app1");
    spec.extra.push(format!("-config-dir={}", conf.display()));
    cluster.add(spec).await.unwrap();
    let c = http();
    let server = &cluster.agents[0];
    eventually("the client's intention on a server", WAIT, || async {
        (intention_action(&c, server, "web", "db").await.as_deref() == Some("allow")).then_some(())
    })
    .await;
    let (_, entry) = get(&c, server.url("/v1/config/service-defaults/db")).await;
    assert_eq!(entry["Protocol"], "http", "{entry}");

    // An edit updates in place; nothing else is touched.
    write_atomic(
        &file,
        "intention \"web\" \"db\" {\n  action = \"deny\"\n}\n",
    );
    eventually("updated from the client's file", WAIT, || async {
        (intention_action(&c, server, "web", "db").await.as_deref() == Some("deny")).then_some(())
    })
    .await;
    eventually("the dropped config entry deleted", WAIT, || async {
        let (status, _) = get(&c, server.url("/v1/config/service-defaults/db")).await;
        (status == 404).then_some(())
    })
    .await;

    // Deleting the file deletes what it declared.
    std::fs::remove_file(&file).unwrap();
    eventually("deleted with the client's file", WAIT, || async {
        intention_action(&c, server, "web", "db")
            .await
            .is_none()
            .then_some(())
    })
    .await;
    let status = config_status(&c, &cluster.agents[3]).await;
    assert_eq!(status["Ok"], true, "{status}");
}

/// Signals are the binary's: SIGHUP reloads (the status names it), and
/// SIGTERM stops the agent cleanly.
#[tokio::test]
async fn sighup_reloads_and_sigterm_stops_the_agent() {
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("conf");
    std::fs::create_dir_all(&conf).unwrap();
    std::fs::write(conf.join("agent.hcl"), "log_level = \"info\"\n").unwrap();
    let mut a = dev_agent_reading(&conf, &dir.path().join("data")).await;
    let c = http();
    let first = eventually("start reload", WAIT, || async {
        let s = config_status(&c, &a).await;
        (s["Ok"] == true).then_some(s)
    })
    .await;
    let pid = a.pid().unwrap().to_string();
    let kill = |signal: &str| {
        let status = std::process::Command::new("kill")
            .args([signal, &pid])
            .status()
            .unwrap();
        assert!(status.success(), "kill {signal} {pid}");
    };
    kill("-HUP");
    let after = eventually("a reload started by SIGHUP", WAIT, || async {
        let s = config_status(&c, &a).await;
        (s["Trigger"] == "SIGHUP").then_some(s)
    })
    .await;
    assert!(after["Count"].as_u64() > first["Count"].as_u64(), "{after}");
    assert_eq!(after["Ok"], true, "{after}");
    kill("-TERM");
    let status = a.wait_exit(WAIT).await.expect("the agent exits on SIGTERM");
    assert!(status.success(), "a clean stop: {status}");
}

/// `-config-dir` given as a relative path is watched like an absolute one,
/// and a service a file declares cannot be replaced or removed through the
/// agent API without `?takeover=true` (409 naming the file).
#[tokio::test]
async fn a_relative_config_dir_is_watched_and_file_services_are_protected() {
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("mesh.d");
    std::fs::create_dir_all(&conf).unwrap();
    // The same directory, as a path relative to where the agent starts.
    let cwd = std::env::current_dir().unwrap();
    let up = "../".repeat(cwd.components().count() - 1);
    let relative = format!("{up}{}", conf.strip_prefix("/").unwrap().display());
    let mut spec = AgentSpec::server("node1", 1);
    spec.extra = vec!["-dev".into(), format!("-config-dir={relative}")];
    let agent = TestAgent::start(spec, &dir.path().join("data"))
        .await
        .unwrap();
    let c = http();

    write_atomic(
        &conf.join("pay.hcl"),
        "service {\n  name = \"pay\"\n  port = 7000\n}\n",
    );
    let url = agent.url("/v1/agent/service/pay");
    eventually("the new file applied without a signal", WAIT, || async {
        (get(&c, url.clone()).await.0 == 200).then_some(())
    })
    .await;

    let r = c
        .put(agent.url("/v1/agent/service/deregister/pay"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 409);
    let text = r.text().await.unwrap();
    assert!(
        text.contains("managed by file:") && text.contains("takeover"),
        "{text}"
    );
    let r = c
        .put(agent.url("/v1/agent/service/register"))
        .body(r#"{"Name":"pay","Port":9999}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 409);
    let (_, svc) = get(&c, url.clone()).await;
    assert_eq!(svc["Port"], 7000, "nothing changed: {svc}");

    // With takeover the API may; the file's next reload then reports the
    // conflict and keeps the last good config.
    let r = c
        .put(agent.url("/v1/agent/service/register?takeover=true"))
        .body(r#"{"Name":"pay","Port":9999}"#)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.text().await.unwrap());
    let (_, svc) = get(&c, url).await;
    assert_eq!(svc["Port"], 9999);
}
