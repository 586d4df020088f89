//! Agent telemetry and logs: `/v1/agent/metrics` in Consul's JSON and in
//! Prometheus text, scraped by a real Prometheus 2.42 from three servers;
//! a Consul-style config (`telemetry {}`, `log_json`, `log_file`,
//! `ui_config {}`) starting mesh; `mesh monitor` streaming log lines.

use std::process::Stdio;
use std::time::Duration;

use mesh_testkit::{eventually, AgentSpec, TestAgent, TestCluster};
use serde_json::Value;

use crate::{fetch_json, fetch_text, http};

async fn kv_put(c: &reqwest::Client, agent: &TestAgent, key: &str) {
    let r = c
        .put(agent.url(&format!("/v1/kv/{key}")))
        .body("v")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

fn sample<'a>(json: &'a Value, kind: &str, name: &str) -> Option<&'a Value> {
    json[kind].as_array()?.iter().find(|s| s["Name"] == name)
}

#[tokio::test]
async fn metrics_in_consul_json_and_prometheus_text() {
    let dir = tempfile::tempdir().unwrap();
    let a = crate::dev_agent("node1", &dir.path().join("a")).await;
    let c = http();
    for i in 0..5 {
        kv_put(&c, &a, &format!("m/{i}")).await;
    }
    let json = fetch_json(&c, a.url("/v1/agent/metrics")).await;
    let kvs = sample(&json, "Samples", "consul.kvs.apply").expect("consul.kvs.apply");
    assert!(kvs["Count"].as_f64().unwrap() >= 5.0, "{kvs}");
    let raft = sample(&json, "Counters", "consul.raft.apply").expect("consul.raft.apply");
    assert!(raft["Count"].as_f64().unwrap() >= 5.0, "{raft}");
    assert!(json["Samples"]
        .as_array()
        .unwrap()
        .iter()
        .any(|s| s["Name"] == "consul.api.http" && s["Labels"]["path"] == "/v1/kv/{*key}"));
    assert!(json["Timestamp"].as_str().unwrap().ends_with("+0000 UTC"));
    // Raft's gauges are sampled once a second.
    eventually("raft gauges", Duration::from_secs(10), || async {
        let j = fetch_json(&c, a.url("/v1/agent/metrics")).await;
        let applied = sample(&j, "Gauges", "consul.raft.applied_index")?;
        (applied["Value"].as_f64()? >= 5.0).then_some(())
    })
    .await;

    let text = fetch_text(&c, a.url("/v1/agent/metrics?format=prometheus")).await;
    for want in [
        "# TYPE consul_kvs_apply summary",
        "consul_kvs_apply_count ",
        "consul_raft_apply ",
        "consul_runtime_alloc_bytes ",
        "mesh_api_queries_blocking ",
    ] {
        assert!(text.contains(want), "{want:?} missing from:\n{text}");
    }
    let r = c
        .get(a.url("/v1/agent/metrics?format=xml"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
}

#[tokio::test]
async fn a_consul_style_config_with_telemetry_logs_and_ui_starts() {
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("logs");
    let config = dir.path().join("consul.hcl");
    std::fs::write(
        &config,
        format!(
            r#"
log_json = true
log_file = "{}/"
log_rotate_bytes = 4096
log_rotate_max_files = 2
telemetry {{
  prometheus_retention_time = "24h"
  disable_hostname          = true
  metrics_prefix            = "edge"
  statsd_address            = "127.0.0.1:8125"
}}
ui_config {{
  enabled = true
}}
"#,
            logs.display()
        ),
    )
    .unwrap();
    let mut spec = AgentSpec::server("node1", 1);
    spec.extra.push("-dev".into());
    spec.extra
        .push(format!("-config-file={}", config.display()));
    let a = TestAgent::start(spec, &dir.path().join("a")).await.unwrap();
    let c = http();
    for i in 0..50 {
        kv_put(&c, &a, &format!("cfg/{i}")).await;
    }
    let text = fetch_text(&c, a.url("/v1/agent/metrics?format=prometheus")).await;
    assert!(text.contains("edge_kvs_apply_count "), "{text}");
    assert!(!text.contains("consul_kvs_apply"), "{text}");
    let json = fetch_json(&c, a.url("/v1/agent/metrics")).await;
    assert!(
        sample(&json, "Samples", "edge.kvs.apply").is_some(),
        "{json}"
    );

    // JSON lines on stderr, one warning naming the push sink mesh lacks.
    let stderr = std::fs::read_to_string(&a.log).unwrap();
    let lines: Vec<Value> = stderr
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    assert!(lines.len() >= 2, "{stderr}");
    assert!(
        lines.iter().any(|l| l["fields"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("telemetry.statsd_address"))),
        "{stderr}"
    );
    // The log file gets the same lines.
    let file = logs.join("mesh.log");
    let first = std::fs::read_to_string(&file).unwrap();
    assert!(
        first.lines().any(|l| l.contains("starting agent")),
        "{first}"
    );

    // The UI is served.
    let r = c.get(a.url("/ui/")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap().contains("<html"));
    let r = c.get(a.url("/")).send().await.unwrap();
    assert_eq!(r.url().path(), "/ui/", "/ redirects to the UI");
}

#[tokio::test]
async fn mesh_monitor_streams_log_lines_at_its_own_level() {
    let dir = tempfile::tempdir().unwrap();
    let a = crate::dev_agent("node1", &dir.path().join("a")).await;
    let mut child = tokio::process::Command::new(mesh_testkit::mesh_bin())
        .args(["monitor", "-log-level", "debug", "-http-addr"])
        .arg(a.http.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut out = child.stdout.take().unwrap();
    let c = http();
    // Reloads log at info; keep triggering until the stream shows a line
    // (bounded: 40 tries of 500 ms).
    let mut seen = String::new();
    for _ in 0..40 {
        let _ = c.put(a.url("/v1/agent/reload")).send().await;
        let mut buf = vec![0u8; 64 * 1024];
        let read = tokio::time::timeout(
            Duration::from_millis(500),
            tokio::io::AsyncReadExt::read(&mut out, &mut buf),
        )
        .await;
        if let Ok(Ok(n)) = read {
            seen.push_str(&String::from_utf8_lossy(&buf[..n]));
        }
        if seen.contains("] mesh") {
            break;
        }
    }
    assert!(seen.contains("] mesh"), "{seen}");
    let _ = child.kill().await;

    let r = c
        .get(a.url("/v1/agent/monitor?loglevel=loud"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
}

/// Prometheus 2.42 (Debian's) scrapes three servers; PromQL sees Raft on
/// every server and `consul_kvs_apply` move with writes.
#[tokio::test]
async fn prometheus_scrapes_three_servers() {
    let prometheus = mesh_testkit::require_tool(
        "prometheus",
        "install Debian's prometheus package (scripts/setup.sh does)",
    );
    let cluster = TestCluster::start(3).await.unwrap();
    let leader = cluster.wait_for_leader(Duration::from_secs(30)).await;
    let dir = tempfile::tempdir().unwrap();
    let port = crate::proxy::free_port();
    let targets: Vec<String> = cluster
        .agents
        .iter()
        .map(|a| format!("\"{}\"", a.http))
        .collect();
    let config = dir.path().join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: mesh\n    metrics_path: /v1/agent/metrics\n    params:\n      format: [prometheus]\n    static_configs:\n      - targets: [{}]\n",
            targets.join(", ")
        ),
    )
    .unwrap();
    let _prom = tokio::process::Command::new(prometheus)
        .arg(format!("--config.file={}", config.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.path().join("data").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.path().join("prometheus.log")).unwrap())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let c = http();
    let query = |q: &str| {
        let url = format!(
            "http://127.0.0.1:{port}/api/v1/query?query={}",
            q.replace(' ', "%20").replace('+', "%2B")
        );
        let c = c.clone();
        async move {
            let v: Value = c.get(url).send().await.ok()?.json().await.ok()?;
            v["data"]["result"].as_array().cloned()
        }
    };
    eventually("every server scraped", Duration::from_secs(60), || async {
        let r = query("consul_raft_applied_index").await?;
        (r.len() == 3).then_some(())
    })
    .await;
    let kvs = |r: Vec<Value>| -> f64 {
        r.iter()
            .filter_map(|s| s["value"][1].as_str()?.parse::<f64>().ok())
            .sum()
    };
    let before = query("sum(consul_kvs_apply_count)")
        .await
        .map(kvs)
        .unwrap_or(0.0);
    for i in 0..20 {
        kv_put(&c, &cluster.agents[leader], &format!("prom/{i}")).await;
    }
    eventually(
        "the write counter moves",
        Duration::from_secs(30),
        || async {
            let now = kvs(query("sum(consul_kvs_apply_count)").await?);
            (now >= before + 20.0).then_some(())
        },
    )
    .await;
    let leaders = query("consul_raft_state_leader").await.unwrap_or_default();
    assert!(!leaders.is_empty(), "a leader transition was counted");
    // Gossip, autopilot and the leader's reconcile, under Consul's names.
    eventually("cluster health series", Duration::from_secs(30), || async {
        let members = query("consul_memberlist_health_members == 3").await?;
        let healthy = query("consul_autopilot_healthy == 1").await?;
        let joins = query("consul_serf_member_join").await?;
        let reconcile = query("consul_leader_reconcile_count").await?;
        (members.len() == 3 && healthy.len() == 1 && !joins.is_empty() && !reconcile.is_empty())
            .then_some(())
    })
    .await;
}
