//! The server bench/dns/run.sh measures: mesh-dns over a catalog holding
//! `web` (10 healthy instances) and 1,000 other services, optionally taking
//! catalog writes on a timer while it answers.
//!
//! ```text
//! dns_bench_server [--addr 127.0.0.1:8600] [--writes-per-sec 0]
//!                  [--udp-answer-limit 3] [--threads 2] [--zone FILE]
//! ```
//! `--zone FILE` writes the same records as an NSD zone file and exits.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use mesh_dns::{DnsConfig, DnsServer};
use mesh_state::StateStore;
use mesh_types::{CheckStatus, Command, HealthCheck, Node, Service};

const OTHER_SERVICES: usize = 1000;
const WEB_INSTANCES: usize = 10;

struct Args {
    addr: SocketAddr,
    writes_per_sec: u64,
    udp_answer_limit: usize,
    threads: usize,
    zone: Option<String>,
}

fn parse_args() -> Args {
    let mut args = Args {
        addr: "127.0.0.1:8600".parse().unwrap(),
        writes_per_sec: 0,
        udp_answer_limit: 3,
        threads: 2,
        zone: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--addr" => args.addr = value.parse().expect("--addr host:port"),
            "--writes-per-sec" => args.writes_per_sec = value.parse().expect("a number"),
            "--udp-answer-limit" => args.udp_answer_limit = value.parse().expect("a number"),
            "--threads" => args.threads = value.parse().expect("a number"),
            "--zone" => args.zone = Some(value),
            other => panic!("unknown flag {other}"),
        }
    }
    args
}

fn web_ip(i: usize) -> String {
    format!("10.0.0.{}", i + 1)
}

fn svc_ip(i: usize) -> String {
    format!("10.1.{}.{}", i / 250, i % 250 + 1)
}

/// The catalog as Raft would write it: nodes, services, passing checks.
fn populate(store: &StateStore, index: &AtomicU64) {
    let apply = |cmd: Command| {
        let i = index.fetch_add(1, Ordering::SeqCst) + 1;
        store.apply_command(i, cmd);
    };
    for i in 0..WEB_INSTANCES + OTHER_SERVICES {
        let (node, address) = if i < WEB_INSTANCES {
            (format!("web-{i}"), web_ip(i))
        } else {
            (
                format!("node-{}", i - WEB_INSTANCES),
                svc_ip(i - WEB_INSTANCES),
            )
        };
        apply(Command::NodeRegister {
            node: Node {
                name: node.clone(),
                address: address.clone(),
                datacenter: "dc1".into(),
                ..Node::default()
            },
        });
        let name = if i < WEB_INSTANCES {
            "web".to_string()
        } else {
            format!("svc-{:04}", i - WEB_INSTANCES)
        };
        apply(Command::ServiceRegister {
            node: node.clone(),
            service: Service {
                id: name.clone(),
                name: name.clone(),
                port: 8080,
                ..Service::default()
            },
        });
        apply(Command::CheckRegister {
            node,
            check: HealthCheck {
                check_id: format!("{name}-alive"),
                service_id: name,
                status: CheckStatus::Passing,
                ..HealthCheck::default()
            },
        });
    }
}

/// The same records as an NSD zone.
fn zone() -> String {
    let mut z = String::from(
        "$ORIGIN consul.\n$TTL 0\n\
         @ IN SOA ns.consul. hostmaster.consul. 1 3600 600 86400 0\n\
         @ IN NS ns.consul.\nns IN A 127.0.0.1\n",
    );
    for i in 0..WEB_INSTANCES {
        writeln!(z, "web.service IN A {}", web_ip(i)).unwrap();
    }
    for i in 0..OTHER_SERVICES {
        writeln!(z, "svc-{i:04}.service IN A {}", svc_ip(i)).unwrap();
    }
    z
}

/// Check output updates, the most common write in a Consul catalog: each
/// one changes the checks table, so every write rebuilds the DNS view.
async fn write_load(store: Arc<StateStore>, index: Arc<AtomicU64>, per_sec: u64) {
    let mut tick = tokio::time::interval(Duration::from_nanos(1_000_000_000 / per_sec));
    let mut n: u64 = 0;
    loop {
        tick.tick().await;
        n += 1;
        let svc = format!("svc-{:04}", n as usize % OTHER_SERVICES);
        let cmd = Command::CheckRegister {
            node: format!("node-{}", n as usize % OTHER_SERVICES),
            check: HealthCheck {
                check_id: format!("{svc}-alive"),
                service_id: svc,
                status: CheckStatus::Passing,
                output: format!("HTTP 200 OK (probe {n})"),
                ..HealthCheck::default()
            },
        };
        let i = index.fetch_add(1, Ordering::SeqCst) + 1;
        store.apply_command(i, cmd);
    }
}

async fn terminated() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

fn main() -> std::io::Result<()> {
    let args = parse_args();
    if let Some(path) = &args.zone {
        return std::fs::write(path, zone());
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.threads)
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let store = Arc::new(StateStore::new());
        let index = Arc::new(AtomicU64::new(0));
        populate(&store, &index);
        let config = DnsConfig {
            udp_answer_limit: args.udp_answer_limit,
            ..DnsConfig::default()
        };
        let (_config_tx, config_rx) = tokio::sync::watch::channel(config);
        let udp = tokio::net::UdpSocket::bind(args.addr).await?;
        let tcp = tokio::net::TcpListener::bind(args.addr).await?;
        let start = index.load(Ordering::SeqCst);
        if args.writes_per_sec > 0 {
            tokio::spawn(write_load(
                store.clone(),
                index.clone(),
                args.writes_per_sec,
            ));
        }
        println!("dns_bench_server: serving on {}", args.addr);
        let result = DnsServer::new(store, config_rx)
            .serve(udp, tcp, terminated())
            .await;
        eprintln!(
            "dns_bench_server: {} catalog writes applied while serving",
            index.load(Ordering::SeqCst) - start
        );
        result
    })
}
