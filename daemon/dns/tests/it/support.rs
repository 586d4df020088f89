//! A DnsServer on 127.0.0.1 port 0 over a real StateStore, queried with the
//! real `dig` and with raw packets.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use mesh_dns::{DnsConfig, DnsServer};
use mesh_state::StateStore;
use mesh_types::{CheckStatus, Command, HealthCheck, Node, Outcome, Service};
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

/// True if `dig` is available, installing it once per test binary. Tests
/// that need it return early, loudly, only when it cannot be installed.
pub fn have_dig() -> bool {
    static HAVE: OnceLock<bool> = OnceLock::new();
    *HAVE.get_or_init(|| {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/setup.sh");
        let ok = std::process::Command::new("bash")
            .arg(script)
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            eprintln!(
                "\n!!!!!!!! mesh-dns: dig is missing and bind9-dnsutils could not be installed \
                 (no apt or no root): dig tests are SKIPPED !!!!!!!!\n"
            );
        }
        ok
    })
}

/// A running server and the handles to change what it serves.
pub struct TestDns {
    pub addr: SocketAddr,
    pub store: Arc<StateStore>,
    pub config: watch::Sender<DnsConfig>,
    index: AtomicU64,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<std::io::Result<()>>>,
}

impl TestDns {
    pub async fn start(config: DnsConfig) -> TestDns {
        let store = Arc::new(StateStore::new());
        let (config, rx) = watch::channel(config);
        let (udp, tcp) = bind_pair().await;
        let addr = udp.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let server = DnsServer::new(store.clone(), rx);
        let task = tokio::spawn(server.serve(udp, tcp, async move {
            let _ = stopped.await;
        }));
        TestDns {
            addr,
            store,
            config,
            index: AtomicU64::new(0),
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// Stop the server and check it stopped cleanly, within a bound.
    pub async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        let task = self.task.take().unwrap();
        let ended = tokio::time::timeout(Duration::from_secs(10), task)
            .await
            .expect("server stops within 10 s");
        ended.unwrap().expect("server ends without error");
    }

    pub fn apply(&self, cmd: Command) {
        let index = self.index.fetch_add(1, Ordering::SeqCst) + 1;
        let outcome = self.store.apply_command(index, cmd.clone());
        assert_eq!(outcome, Outcome::Done, "{cmd:?}");
    }

    pub fn node(&self, name: &str, address: &str, meta: &[(&str, &str)]) {
        let meta: BTreeMap<_, _> = meta
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        self.apply(Command::NodeRegister {
            node: Node {
                name: name.into(),
                address: address.into(),
                datacenter: "dc1".into(),
                meta,
                ..Node::default()
            },
        });
    }

    pub fn service(&self, node: &str, service: Service) {
        self.apply(Command::ServiceRegister {
            node: node.into(),
            service,
        });
    }

    pub fn check(&self, node: &str, id: &str, service_id: &str, status: CheckStatus) {
        self.apply(Command::CheckRegister {
            node: node.into(),
            check: HealthCheck {
                check_id: id.into(),
                service_id: service_id.into(),
                status,
                ..HealthCheck::default()
            },
        });
    }

    /// Run `dig @server -p port <args>` and parse what it printed.
    pub async fn dig(&self, args: &[&str]) -> Dig {
        dig_at(self.addr, args).await
    }
}

impl Drop for TestDns {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// A service instance for `TestDns::service`.
pub fn svc(id: &str, name: &str, address: &str, port: u16, tags: &[&str]) -> Service {
    Service {
        id: id.into(),
        name: name.into(),
        address: address.into(),
        port,
        tags: tags.iter().map(|t| t.to_string()).collect(),
        ..Service::default()
    }
}

/// A UDP socket and a TCP listener on the same 127.0.0.1 port.
async fn bind_pair() -> (UdpSocket, TcpListener) {
    for _ in 0..50 {
        let udp = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = udp.local_addr().unwrap();
        if let Ok(tcp) = TcpListener::bind(addr).await {
            return (udp, tcp);
        }
    }
    panic!("no port free for both UDP and TCP on 127.0.0.1");
}

/// What dig printed, split into the parts tests look at.
#[derive(Debug, Default)]
pub struct Dig {
    pub status: String,
    pub flags: Vec<String>,
    pub answers: Vec<Vec<String>>,
    pub authority: Vec<Vec<String>>,
    pub additional: Vec<Vec<String>>,
    pub output: String,
}

impl Dig {
    /// The data column of answer records of one type, sorted.
    pub fn data(&self, rtype: &str) -> Vec<String> {
        let mut out: Vec<String> = self
            .answers
            .iter()
            .filter(|r| r.get(3).is_some_and(|t| t == rtype))
            .map(|r| r[4..].join(" "))
            .collect();
        out.sort();
        out
    }

    pub fn has_flag(&self, flag: &str) -> bool {
        self.flags.iter().any(|f| f == flag)
    }
}

pub async fn dig_at(addr: SocketAddr, args: &[&str]) -> Dig {
    let out = tokio::process::Command::new(mesh_testkit::require_tool(
        "dig",
        "scripts/setup.sh installs Debian's bind9-dnsutils",
    ))
    .arg(format!("@{}", addr.ip()))
    .args(["-p", &addr.port().to_string(), "+time=3", "+tries=2"])
    .args(args)
    .stdin(Stdio::null())
    .kill_on_drop(true)
    .output();
    let out = tokio::time::timeout(Duration::from_secs(30), out)
        .await
        .expect("dig finishes within 30 s")
        .expect("dig runs");
    parse_dig(&String::from_utf8_lossy(&out.stdout))
}

fn parse_dig(output: &str) -> Dig {
    let mut dig = Dig {
        output: output.to_string(),
        ..Dig::default()
    };
    let mut section: Option<&mut Vec<Vec<String>>> = None;
    for line in output.lines() {
        if let Some(rest) = line.split("status: ").nth(1) {
            dig.status = rest.split(',').next().unwrap_or("").to_string();
        } else if let Some(rest) = line.strip_prefix(";; flags: ") {
            let flags = rest.split(';').next().unwrap_or("");
            dig.flags = flags.split_whitespace().map(str::to_string).collect();
        } else if line.starts_with(";; ANSWER SECTION") {
            section = Some(&mut dig.answers);
        } else if line.starts_with(";; AUTHORITY SECTION") {
            section = Some(&mut dig.authority);
        } else if line.starts_with(";; ADDITIONAL SECTION") {
            section = Some(&mut dig.additional);
        } else if line.trim().is_empty() || line.starts_with(';') {
            section = None;
        } else if let Some(s) = section.as_mut() {
            s.push(line.split_whitespace().map(str::to_string).collect());
        }
    }
    dig
}
