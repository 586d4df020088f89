//! Entry points for the cargo-fuzz targets (feature `fuzzing`): the whole
//! request path, from datagram bytes to response bytes, without sockets.

use std::cell::RefCell;
use std::sync::{Arc, OnceLock};

use hickory_server::net::xfer::Protocol;
use mesh_state::StateStore;
use mesh_types::{CheckStatus, Command, HealthCheck, Node, Service};

use crate::reply::Reply;
use crate::server::Local;
use crate::{DnsConfig, DnsServer};

/// A server over a small catalog: `web` on two nodes, one of them critical.
fn server() -> &'static DnsServer {
    static SERVER: OnceLock<DnsServer> = OnceLock::new();
    SERVER.get_or_init(|| {
        let store = Arc::new(StateStore::new());
        let commands = [
            Command::NodeRegister {
                node: Node {
                    name: "n1".into(),
                    address: "10.0.0.1".into(),
                    meta: [("k".to_string(), "v".to_string())].into(),
                    ..Node::default()
                },
            },
            Command::NodeRegister {
                node: Node {
                    name: "n2".into(),
                    address: "fd00::2".into(),
                    ..Node::default()
                },
            },
            Command::ServiceRegister {
                node: "n1".into(),
                service: Service {
                    id: "web".into(),
                    name: "web".into(),
                    tags: vec!["v1".into()],
                    port: 80,
                    ..Service::default()
                },
            },
            Command::ServiceRegister {
                node: "n2".into(),
                service: Service {
                    id: "web".into(),
                    name: "web".into(),
                    address: "web.example.com".into(),
                    port: 81,
                    ..Service::default()
                },
            },
            Command::CheckRegister {
                node: "n2".into(),
                check: HealthCheck {
                    check_id: "c".into(),
                    status: CheckStatus::Critical,
                    ..HealthCheck::default()
                },
            },
        ];
        for (i, cmd) in commands.iter().enumerate() {
            store.apply_command(i as u64 + 1, cmd.clone());
        }
        let config = DnsConfig {
            alt_domain: Some("alt.consul.".into()),
            ..DnsConfig::default()
        };
        let (tx, rx) = tokio::sync::watch::channel(config);
        std::mem::forget(tx);
        DnsServer::new(store, rx)
    })
}

/// Answer one message as the UDP (or TCP) transport would; None when the
/// server stays silent. Over UDP the message is answered twice by the same
/// worker, so the second answer comes from the answer cache when it can.
pub fn respond(packet: &[u8], udp: bool) -> Option<Vec<u8>> {
    thread_local! {
        static RUNTIME: tokio::runtime::Runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        static LOCAL: RefCell<Local> = RefCell::new(server().local(None));
    }
    let protocol = if udp { Protocol::Udp } else { Protocol::Tcp };
    let src = "127.0.0.1:5353".parse().expect("address");
    let mut answer = None;
    for _ in 0..if udp { 2 } else { 1 } {
        let out = Arc::new(parking_lot::Mutex::new(None));
        let reply = Reply::Capture {
            out: out.clone(),
            udp,
        };
        RUNTIME.with(|rt| {
            LOCAL.with(|local| {
                let mut local = local.borrow_mut();
                rt.block_on(local.handle(packet.to_vec(), src, protocol, reply));
            })
        });
        answer = out.lock().take();
    }
    answer
}
