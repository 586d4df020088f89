//! Proxy-snapshot fan-out load generator for `bench/snapshots.sh`.
//!
//! Registers PROXIES connect proxies for SERVICES services on one agent
//! (each with one upstream), parks one blocking snapshot query per proxy
//! (`GET /v1/agent/connect/proxy/ID?index=V&wait=120s`), each re-asking at
//! once when answered as a sidecar does, then makes single intention
//! changes (or, with CHANGE `router`, writes one service-router per round
//! for an upstream service, all services being http) and reports, per
//! change:
//! - how long until every proxy whose snapshot content changed has it
//!   (p50, p99 and max over the changed ones),
//! - how many answers the server sent in all (unchanged ones included),
//! - the server's CPU time in the window (summed over its threads, from
//!   /proc/PID/task/*/schedstat), against the same window with no change.
//!
//!   snapshot_fan_out ADDR PID [PROXIES] [SERVICES] [ROUNDS] [intention|router]
//!
//! One JSON object per line: `{"round": …}` per change, then a summary.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::sync::mpsc;

/// How long after a change answers are counted and CPU is summed.
const WINDOW: Duration = Duration::from_secs(2);

fn server_cpu_ns(pid: u32) -> u64 {
    let dir = format!("/proc/{pid}/task");
    std::fs::read_dir(&dir)
        .expect("server's /proc task dir")
        .filter_map(|t| t.ok())
        .filter_map(|t| std::fs::read_to_string(t.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .sum()
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// A snapshot without its version, for telling content changes apart.
fn content(mut v: Value) -> Value {
    if let Some(o) = v.as_object_mut() {
        o.remove("Index");
    }
    v
}

/// One answer a watcher got.
struct Answer {
    proxy: usize,
    at: Instant,
    body: Value,
}

/// A sidecar's loop: ask, and on every answer ask again with its index.
async fn watcher(
    client: reqwest::Client,
    base: String,
    proxy: usize,
    mut index: u64,
    answers: mpsc::UnboundedSender<Answer>,
) {
    loop {
        let url = format!("{base}/v1/agent/connect/proxy/px-{proxy}?index={index}&wait=120s");
        let Ok(resp) = client.get(&url).send().await else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let at = Instant::now();
        let new_index = resp
            .headers()
            .get("X-Consul-Index")
            .and_then(|v| v.to_str().ok()?.parse().ok())
            .unwrap_or(index);
        let Ok(body) = resp.json::<Value>().await else {
            continue;
        };
        index = new_index;
        if answers.send(Answer { proxy, at, body }).is_err() {
            return;
        }
    }
}

async fn put(client: &reqwest::Client, url: String, body: Value) {
    for _ in 0..100 {
        match client.put(&url).json(&body).send().await {
            Ok(r) if r.status().is_success() => return,
            Ok(r) => eprintln!("PUT {url}: {}", r.status()),
            Err(e) => eprintln!("PUT {url}: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("PUT {url} kept failing");
}

async fn blocking_parked(client: &reqwest::Client, base: &str) -> u64 {
    let text = client
        .get(format!("{base}/v1/agent/metrics?format=prometheus"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("metrics");
    text.lines()
        .find_map(|l| l.strip_prefix("mesh_api_queries_blocking "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let usage = "usage: snapshot_fan_out ADDR PID [PROXIES] [SERVICES] [ROUNDS] [intention|router]";
    let base = format!("http://{}", args.get(1).expect(usage));
    let pid: u32 = args.get(2).expect(usage).parse().expect("PID");
    let proxies: usize = args.get(3).map_or(1000, |s| s.parse().expect("PROXIES"));
    let services: usize = args.get(4).map_or(100, |s| s.parse().expect("SERVICES"));
    let rounds: usize = args.get(5).map_or(5, |s| s.parse().expect("ROUNDS"));
    let routers = args.get(6).is_some_and(|m| m == "router");
    // reqwest is built with rustls and no default crypto provider.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(proxies + 16)
        .tcp_nodelay(true)
        .build()
        .expect("client");

    // Proxy p fronts svc-(p % services) and has svc-(p+1 % services) upstream.
    let service_of = |p: usize| p % services;
    if routers {
        // Routes need http services.
        for s in 0..services {
            let body =
                json!({"Kind": "service-defaults", "Name": format!("svc-{s}"), "Protocol": "http"});
            put(&client, format!("{base}/v1/config"), body).await;
        }
    }
    let mut registering = tokio::task::JoinSet::new();
    for p in 0..proxies {
        let s = service_of(p);
        let (client, url) = (client.clone(), format!("{base}/v1/agent/service/register"));
        let body = json!({
            "Kind": "connect-proxy", "ID": format!("px-{p}"),
            "Name": format!("svc-{s}-sidecar-proxy"), "Port": 20000 + p,
            "Address": "127.0.0.1",
            "Proxy": {
                "DestinationServiceName": format!("svc-{s}"),
                "DestinationServiceID": format!("svc-{s}-{p}"),
                "LocalServicePort": 8080,
                "Upstreams": [{"DestinationName": format!("svc-{}", (s + 1) % services),
                               "LocalBindPort": 30000 + p}]
            }
        });
        registering.spawn(async move { put(&client, url, body).await });
        if registering.len() >= 50 {
            registering.join_next().await;
        }
    }
    registering.join_all().await;
    // Each proxy's current version (the CA signs one leaf per service).
    let mut start = Vec::with_capacity(proxies);
    for p in 0..proxies {
        loop {
            let r = client
                .get(format!("{base}/v1/agent/connect/proxy/px-{p}"))
                .send()
                .await
                .expect("first snapshot");
            if r.status().is_success() {
                let index: u64 = r.headers()["X-Consul-Index"]
                    .to_str()
                    .unwrap()
                    .parse()
                    .unwrap();
                start.push((index, content(r.json().await.expect("snapshot"))));
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let mut last: Vec<Value> = start.iter().map(|(_, c)| c.clone()).collect();
    let (tx, mut rx) = mpsc::unbounded_channel();
    for (p, (index, _)) in start.iter().enumerate() {
        tokio::spawn(watcher(client.clone(), base.clone(), p, *index, tx.clone()));
    }
    let parked = async {
        let deadline = Instant::now() + Duration::from_secs(60);
        while blocking_parked(&client, &base).await < proxies as u64 {
            assert!(Instant::now() < deadline, "watchers did not all park");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    parked.await;
    // Answers that come with nothing changed (none are expected) are drained.
    while rx.try_recv().is_ok() {}

    let idle_cpu = {
        let c0 = server_cpu_ns(pid);
        tokio::time::sleep(WINDOW).await;
        server_cpu_ns(pid) - c0
    };
    let mut changed_lat: Vec<f64> = Vec::new();
    let mut summary = Vec::new();
    // Rounds 0..rounds-1: one destination each; the last: a wildcard one
    // (intentions only).
    let last_round = if routers { rounds - 1 } else { rounds };
    for round in 0..=last_round {
        let wildcard = round == rounds;
        let dest = if wildcard {
            "*".to_string()
        } else {
            format!("svc-{}", (round * 37 + 3) % services)
        };
        // A router changes the proxies calling dest; an intention, those fronting it.
        let affected = |p: usize| {
            let s = if routers {
                (service_of(p) + 1) % services
            } else {
                service_of(p)
            };
            format!("svc-{s}") == dest
        };
        let expected: Vec<usize> = (0..proxies).filter(|&p| wildcard || affected(p)).collect();
        let c0 = server_cpu_ns(pid);
        let t0 = Instant::now();
        if routers {
            let router = json!({"Kind": "service-router", "Name": dest, "Routes": [
                {"Match": {"HTTP": {"PathPrefix": format!("/r{round}")}},
                 "Destination": {"Service": dest, "PrefixRewrite": "/"}}]});
            put(&client, format!("{base}/v1/config"), router).await;
        } else {
            put(
                &client,
                format!(
                    "{base}/v1/connect/intentions/exact?source=bench-{round}&destination={dest}"
                ),
                json!({"Action": "deny"}),
            )
            .await;
        }
        let mut answers = 0usize;
        let mut got: HashMap<usize, f64> = HashMap::new();
        let end = t0 + WINDOW;
        while let Ok(Some(a)) = tokio::time::timeout_at(end.into(), rx.recv()).await {
            answers += 1;
            let c = content(a.body);
            if c != last[a.proxy] {
                got.entry(a.proxy)
                    .or_insert(a.at.duration_since(t0).as_secs_f64() * 1000.0);
                last[a.proxy] = c;
            }
        }
        let cpu = server_cpu_ns(pid) - c0;
        let missing = expected.iter().filter(|p| !got.contains_key(p)).count();
        let mut lat: Vec<f64> = got.values().copied().collect();
        lat.sort_by(f64::total_cmp);
        let line = json!({
            "round": round, "destination": dest, "changed": got.len(),
            "expected": expected.len(), "missing": missing, "answers": answers,
            "p50_ms": percentile(&lat, 50.0), "p99_ms": percentile(&lat, 99.0),
            "max_ms": lat.last().copied().unwrap_or(f64::NAN),
            "cpu_ms": cpu as f64 / 1e6, "idle_cpu_ms": idle_cpu as f64 / 1e6,
        });
        println!("{line}");
        if !wildcard {
            changed_lat.extend(lat);
        }
        summary.push(line);
    }
    changed_lat.sort_by(f64::total_cmp);
    if routers {
        summary.push(json!({"idle_cpu_ms": idle_cpu as f64 / 1e6}));
    }
    let single: Vec<&Value> = summary[..rounds].iter().collect();
    let mut cpus: Vec<f64> = single
        .iter()
        .map(|l| l["cpu_ms"].as_f64().unwrap())
        .collect();
    cpus.sort_by(f64::total_cmp);
    println!(
        "{}",
        json!({
            "summary": true, "proxies": proxies, "services": services,
            "single_p50_ms": percentile(&changed_lat, 50.0),
            "single_p99_ms": percentile(&changed_lat, 99.0),
            "single_median_cpu_ms": percentile(&cpus, 50.0),
            "single_answers": single.iter().map(|l| l["answers"].as_u64().unwrap()).sum::<u64>(),
            "wildcard": summary[rounds],
        })
    );
}
