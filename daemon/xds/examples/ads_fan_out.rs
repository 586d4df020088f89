//! ADS push fan-out load generator for `bench/xds_fan_out.sh`.
//!
//! Registers PROXIES connect proxies of SERVICES services on one agent
//! (proxy p fronts svc-(p % SERVICES) and calls svc-(p+1 % SERVICES); the
//! proxies of a service are its endpoints), opens one ADS stream per proxy
//! on its own connection, as Envoy does, subscribing to clusters,
//! listeners, secrets and its upstream's endpoints and ACKing every
//! response. Then it reports:
//! - the server's RSS before the streams and with all of them open and
//!   idle, per stream;
//! - per round, one endpoint added to one service: how long until every
//!   stream calling it has the new endpoints (p50, p99, max), how many
//!   responses the server sent in all, and its CPU in the window (summed
//!   over its threads' schedstat), against the same window with no change.
//!
//!   ads_fan_out HTTP_ADDR GRPC_ADDR PID [PROXIES] [SERVICES] [ROUNDS] [delta|sotw|connections]
//!
//! `connections` is the floor: PROXIES idle HTTP/2 connections to the
//! same gRPC port with no stream, and the server's RSS per connection.
//!
//! One JSON object per line: `{"round": …}` per change, then a summary.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::envoy::config::endpoint::v3::ClusterLoadAssignment;
use envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_client::AggregatedDiscoveryServiceClient;
use envoy_types::pb::envoy::service::discovery::v3::{DeltaDiscoveryRequest, DiscoveryRequest};
use mesh_xds::render::type_url;
use prost::Message;
use serde_json::{json, Value};
use tokio::sync::mpsc;

/// How long after a change responses are counted and CPU is summed.
const WINDOW: Duration = Duration::from_secs(2);

fn server_cpu_ns(pid: u32) -> u64 {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .expect("server's /proc task dir")
        .filter_map(|t| t.ok())
        .filter_map(|t| std::fs::read_to_string(t.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .sum()
}

fn rss_kb(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .expect("status")
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// What a stream saw: its proxy, when, and how many endpoints its upstream has.
struct Seen {
    proxy: usize,
    at: Instant,
    endpoints: usize,
}

fn endpoints_in(bytes: &[u8]) -> usize {
    ClusterLoadAssignment::decode(bytes)
        .map(|c| c.endpoints.iter().map(|l| l.lb_endpoints.len()).sum())
        .unwrap_or(0)
}

fn node(proxy: usize) -> Option<Node> {
    Some(Node {
        id: format!("px-{proxy}"),
        ..Default::default()
    })
}

/// A delta stream: wildcard clusters and listeners, the secrets, and the
/// upstream's endpoints by name once the clusters name it.
async fn delta_stream(grpc: String, proxy: usize, responses: mpsc::UnboundedSender<Seen>) {
    let mut client = AggregatedDiscoveryServiceClient::connect(grpc)
        .await
        .expect("connect");
    let (tx, rx) = mpsc::unbounded_channel();
    for t in [type_url::CLUSTER, type_url::LISTENER] {
        tx.send(DeltaDiscoveryRequest {
            node: node(proxy),
            type_url: t.into(),
            ..Default::default()
        })
        .unwrap();
    }
    tx.send(DeltaDiscoveryRequest {
        type_url: type_url::SECRET.into(),
        resource_names_subscribe: vec!["leaf".into(), "roots".into()],
        ..Default::default()
    })
    .unwrap();
    let mut stream = client
        .delta_aggregated_resources(tokio_stream::wrappers::UnboundedReceiverStream::new(rx))
        .await
        .expect("stream")
        .into_inner();
    loop {
        let r = match stream.message().await {
            Ok(Some(r)) => r,
            Ok(None) => return,
            Err(e) => {
                eprintln!("px-{proxy}: stream ended: {e}");
                return;
            }
        };
        let at = Instant::now();
        if r.type_url == type_url::CLUSTER {
            let names: Vec<String> = r
                .resources
                .iter()
                .map(|x| x.name.clone())
                .filter(|n| n.starts_with("svc-"))
                .collect();
            if !names.is_empty() {
                let _ = tx.send(DeltaDiscoveryRequest {
                    type_url: type_url::ENDPOINT.into(),
                    resource_names_subscribe: names,
                    ..Default::default()
                });
            }
        }
        if r.type_url == type_url::ENDPOINT {
            for x in &r.resources {
                let endpoints = x.resource.as_ref().map_or(0, |a| endpoints_in(&a.value));
                if responses
                    .send(Seen {
                        proxy,
                        at,
                        endpoints,
                    })
                    .is_err()
                {
                    return;
                }
            }
        }
        let _ = tx.send(DeltaDiscoveryRequest {
            type_url: r.type_url.clone(),
            response_nonce: r.nonce.clone(),
            ..Default::default()
        });
    }
}

/// A state-of-the-world stream with the same subscriptions.
async fn sotw_stream(grpc: String, proxy: usize, responses: mpsc::UnboundedSender<Seen>) {
    let mut client = AggregatedDiscoveryServiceClient::connect(grpc)
        .await
        .expect("connect");
    let (tx, rx) = mpsc::unbounded_channel();
    for t in [type_url::CLUSTER, type_url::LISTENER] {
        tx.send(DiscoveryRequest {
            node: node(proxy),
            type_url: t.into(),
            ..Default::default()
        })
        .unwrap();
    }
    tx.send(DiscoveryRequest {
        type_url: type_url::SECRET.into(),
        resource_names: vec!["leaf".into(), "roots".into()],
        ..Default::default()
    })
    .unwrap();
    let mut stream = client
        .stream_aggregated_resources(tokio_stream::wrappers::UnboundedReceiverStream::new(rx))
        .await
        .expect("stream")
        .into_inner();
    let mut eds_names: Vec<String> = Vec::new();
    loop {
        let r = match stream.message().await {
            Ok(Some(r)) => r,
            Ok(None) => return,
            Err(e) => {
                eprintln!("px-{proxy}: stream ended: {e}");
                return;
            }
        };
        let at = Instant::now();
        // State of the world: an ACK repeats the subscription.
        let names = match r.type_url.as_str() {
            t if t == type_url::ENDPOINT => eds_names.clone(),
            t if t == type_url::SECRET => vec!["leaf".into(), "roots".into()],
            _ => vec![],
        };
        let _ = tx.send(DiscoveryRequest {
            type_url: r.type_url.clone(),
            version_info: r.version_info.clone(),
            response_nonce: r.nonce.clone(),
            resource_names: names,
            ..Default::default()
        });
        if r.type_url == type_url::CLUSTER && eds_names.is_empty() {
            eds_names = r
                .resources
                .iter()
                .filter_map(|a| {
                    envoy_types::pb::envoy::config::cluster::v3::Cluster::decode(a.value.as_slice())
                        .ok()
                })
                .map(|c| c.name)
                .filter(|n| n.starts_with("svc-"))
                .collect();
            let _ = tx.send(DiscoveryRequest {
                type_url: type_url::ENDPOINT.into(),
                resource_names: eds_names.clone(),
                ..Default::default()
            });
        }
        if r.type_url == type_url::ENDPOINT {
            for a in &r.resources {
                let endpoints = endpoints_in(&a.value);
                if responses
                    .send(Seen {
                        proxy,
                        at,
                        endpoints,
                    })
                    .is_err()
                {
                    return;
                }
            }
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

fn proxy_registration(id: &str, service: usize, upstream: usize, port: usize) -> Value {
    json!({
        "Kind": "connect-proxy", "ID": id,
        "Name": format!("svc-{service}-sidecar-proxy"), "Port": port,
        "Address": "127.0.0.1",
        "Proxy": {
            "DestinationServiceName": format!("svc-{service}"),
            "DestinationServiceID": format!("svc-{service}-{id}"),
            "LocalServicePort": 8080,
            "Upstreams": [{"DestinationName": format!("svc-{upstream}"), "LocalBindPort": 30000 + port % 20000}]
        }
    })
}

/// RSS per idle HTTP/2 connection to the gRPC port, with no stream open.
async fn connections_floor(grpc: &str, pid: u32, n: usize) {
    let before = rss_kb(pid);
    let mut channels = Vec::with_capacity(n);
    for _ in 0..n {
        let channel = tonic::transport::Endpoint::from_shared(grpc.to_string())
            .expect("endpoint")
            .connect()
            .await
            .expect("connect");
        channels.push(channel);
    }
    tokio::time::sleep(WINDOW).await;
    let open = rss_kb(pid);
    println!(
        "{}",
        json!({"summary": true, "mode": "connections", "connections": n, "rss_before_kb": before,
               "rss_open_kb": open, "rss_per_connection_kb": open.saturating_sub(before) as f64 / n as f64})
    );
    drop(channels);
}

/// RSS per idle HTTP/2 connection carrying one ADS stream that has sent
/// nothing yet: what the transport (h2 and tonic) costs per stream before
/// mesh holds any state for it.
async fn bare_streams_floor(grpc: &str, pid: u32, n: usize) {
    let before = rss_kb(pid);
    let mut held = Vec::with_capacity(n);
    for _ in 0..n {
        let mut client = AggregatedDiscoveryServiceClient::connect(grpc.to_string())
            .await
            .expect("connect");
        let (tx, rx) = mpsc::unbounded_channel::<DeltaDiscoveryRequest>();
        // The server answers headers only after the first request, so the
        // call stays pending; the task holds the stream open.
        let call = tokio::spawn(async move {
            let _ = client
                .delta_aggregated_resources(tokio_stream::wrappers::UnboundedReceiverStream::new(
                    rx,
                ))
                .await;
        });
        held.push((tx, call));
    }
    tokio::time::sleep(WINDOW).await;
    let open = rss_kb(pid);
    println!(
        "{}",
        json!({"summary": true, "mode": "bare-streams", "streams": n, "rss_before_kb": before,
               "rss_open_kb": open, "rss_per_stream_kb": open.saturating_sub(before) as f64 / n as f64})
    );
    for (_, call) in held {
        call.abort();
    }
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let usage =
        "usage: ads_fan_out HTTP_ADDR GRPC_ADDR PID [PROXIES] [SERVICES] [ROUNDS] [delta|sotw|connections|bare-streams]";
    let base = format!("http://{}", args.get(1).expect(usage));
    let grpc = format!("http://{}", args.get(2).expect(usage));
    let pid: u32 = args.get(3).expect(usage).parse().expect("PID");
    let proxies: usize = args.get(4).map_or(1000, |s| s.parse().expect("PROXIES"));
    let services: usize = args.get(5).map_or(100, |s| s.parse().expect("SERVICES"));
    let rounds: usize = args.get(6).map_or(5, |s| s.parse().expect("ROUNDS"));
    let delta = args.get(7).is_none_or(|m| m != "sotw");
    if args.get(7).is_some_and(|m| m == "connections") {
        return connections_floor(&grpc, pid, proxies).await;
    }
    if args.get(7).is_some_and(|m| m == "bare-streams") {
        return bare_streams_floor(&grpc, pid, proxies).await;
    }
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("client");

    let mut registering = tokio::task::JoinSet::new();
    for p in 0..proxies {
        let s = p % services;
        let body = proxy_registration(&format!("px-{p}"), s, (s + 1) % services, 20000 + p);
        let (client, url) = (client.clone(), format!("{base}/v1/agent/service/register"));
        registering.spawn(async move { put(&client, url, body).await });
        if registering.len() >= 50 {
            registering.join_next().await;
        }
    }
    registering.join_all().await;
    let rss_before = rss_kb(pid);

    let (tx, mut rx) = mpsc::unbounded_channel();
    for p in 0..proxies {
        let (grpc, tx) = (grpc.clone(), tx.clone());
        if delta {
            tokio::spawn(delta_stream(grpc, p, tx));
        } else {
            tokio::spawn(sotw_stream(grpc, p, tx));
        }
    }
    // Every stream has its upstream's endpoints: the configs are out.
    let mut endpoints: HashMap<usize, usize> = HashMap::new();
    let deadline = Instant::now() + Duration::from_secs(300);
    while endpoints.len() < proxies {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, rx.recv()).await {
            Ok(Some(s)) => {
                endpoints.insert(s.proxy, s.endpoints);
            }
            _ => panic!(
                "only {} of {proxies} streams got endpoints",
                endpoints.len()
            ),
        }
    }
    // Let the ACKs and leaves settle, then measure an idle window.
    tokio::time::sleep(WINDOW).await;
    while let Ok(s) = rx.try_recv() {
        endpoints.insert(s.proxy, s.endpoints);
    }
    let rss_open = rss_kb(pid);
    let idle_cpu = {
        let c0 = server_cpu_ns(pid);
        tokio::time::sleep(WINDOW).await;
        server_cpu_ns(pid) - c0
    };
    while rx.try_recv().is_ok() {}
    println!(
        "{}",
        json!({"streams": proxies, "rss_before_kb": rss_before, "rss_open_kb": rss_open,
               "rss_per_stream_kb": (rss_open.saturating_sub(rss_before)) as f64 / proxies as f64})
    );

    let mut lat_all: Vec<f64> = Vec::new();
    let mut cpus: Vec<f64> = Vec::new();
    let mut responses_all = 0usize;
    for round in 0..rounds {
        // One more endpoint of svc-X: the proxies calling it are those of svc-(X-1).
        let x = (round * 37 + 3) % services;
        let callers: Vec<usize> = (0..proxies)
            .filter(|p| (p % services + 1) % services == x)
            .collect();
        let c0 = server_cpu_ns(pid);
        let t0 = Instant::now();
        put(
            &client,
            format!("{base}/v1/agent/service/register"),
            proxy_registration(
                &format!("extra-{round}"),
                x,
                (x + 1) % services,
                40000 + round,
            ),
        )
        .await;
        let mut got: HashMap<usize, f64> = HashMap::new();
        let mut responses = 0usize;
        let end = t0 + WINDOW;
        while let Ok(Some(s)) = tokio::time::timeout_at(end.into(), rx.recv()).await {
            responses += 1;
            let before = endpoints.insert(s.proxy, s.endpoints).unwrap_or(0);
            if s.endpoints > before {
                got.entry(s.proxy)
                    .or_insert(s.at.duration_since(t0).as_secs_f64() * 1000.0);
            }
        }
        let cpu = (server_cpu_ns(pid) - c0) as f64 / 1e6;
        let missing = callers.iter().filter(|p| !got.contains_key(p)).count();
        let mut lat: Vec<f64> = got.values().copied().collect();
        lat.sort_by(f64::total_cmp);
        println!(
            "{}",
            json!({"round": round, "service": format!("svc-{x}"), "expected": callers.len(),
                   "missing": missing, "responses": responses,
                   "p50_ms": percentile(&lat, 50.0), "p99_ms": percentile(&lat, 99.0),
                   "max_ms": lat.last().copied().unwrap_or(f64::NAN),
                   "cpu_ms": cpu, "idle_cpu_ms": idle_cpu as f64 / 1e6})
        );
        lat_all.extend(lat);
        cpus.push(cpu - idle_cpu as f64 / 1e6);
        responses_all += responses;
    }
    lat_all.sort_by(f64::total_cmp);
    cpus.sort_by(f64::total_cmp);
    println!(
        "{}",
        json!({"summary": true, "mode": if delta { "delta" } else { "sotw" },
               "streams": proxies, "services": services,
               "p50_ms": percentile(&lat_all, 50.0), "p99_ms": percentile(&lat_all, 99.0),
               "median_event_cpu_ms": percentile(&cpus, 50.0),
               "responses_per_change": responses_all as f64 / rounds as f64,
               "rss_per_stream_kb": (rss_open.saturating_sub(rss_before)) as f64 / proxies as f64})
    );
}
