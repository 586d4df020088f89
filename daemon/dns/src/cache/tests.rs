use std::collections::BTreeSet;
use std::sync::Arc;

use hickory_server::net::xfer::Protocol;
use hickory_server::proto::op::{Message, ResponseCode};
use mesh_state::StateStore;
use mesh_types::{CheckStatus, Command, HealthCheck, Node, Service};
use tokio::sync::watch;

use crate::reply::Reply;
use crate::server::Local;
use crate::{DnsConfig, DnsServer};

struct Setup {
    store: Arc<StateStore>,
    config: watch::Sender<DnsConfig>,
    local: Local,
    index: u64,
}

impl Setup {
    fn new() -> Setup {
        let store = Arc::new(StateStore::new());
        let (config, rx) = watch::channel(DnsConfig::default());
        let local = DnsServer::new(store.clone(), rx).local(None);
        let mut setup = Setup {
            store,
            config,
            local,
            index: 0,
        };
        for i in 0..10 {
            setup.instance(&format!("n{i}"), &format!("10.0.0.{i}"));
        }
        setup
    }

    fn apply(&mut self, cmd: Command) {
        self.index += 1;
        self.store.apply_command(self.index, cmd);
    }

    fn instance(&mut self, node: &str, address: &str) {
        self.apply(Command::NodeRegister {
            node: Node {
                name: node.into(),
                address: address.into(),
                ..Node::default()
            },
        });
        self.apply(Command::ServiceRegister {
            node: node.into(),
            service: Service {
                id: "web".into(),
                name: "web".into(),
                port: 80,
                ..Service::default()
            },
        });
    }

    async fn ask(&mut self, packet: &[u8]) -> Message {
        let out = Arc::new(parking_lot::Mutex::new(None));
        let reply = Reply::Capture {
            out: out.clone(),
            udp: true,
        };
        let src = "127.0.0.1:5353".parse().unwrap();
        self.local
            .handle(packet.to_vec(), src, Protocol::Udp, reply)
            .await;
        let bytes = out.lock().take().expect("an answer");
        Message::from_vec(&bytes).expect("a well-formed answer")
    }
}

/// A query as resolvers send it: one question, RD, optionally EDNS.
fn query(id: u16, name: &str, qtype: u16, edns: bool) -> Vec<u8> {
    let mut out = id.to_be_bytes().to_vec();
    out.extend_from_slice(&[1, 0, 0, 1, 0, 0, 0, 0, 0, u8::from(edns)]);
    for label in name.split('.').filter(|l| !l.is_empty()) {
        out.push(label.len() as u8);
        out.extend_from_slice(label.as_bytes());
    }
    out.extend_from_slice(&[0]);
    out.extend_from_slice(&qtype.to_be_bytes());
    out.extend_from_slice(&[0, 1]);
    if edns {
        out.extend_from_slice(&[0, 0, 41, 4, 0xd0, 0, 0, 0, 0, 0, 0]);
    }
    out
}

fn ips(msg: &Message) -> Vec<String> {
    msg.answers.iter().map(|r| r.data.to_string()).collect()
}

#[tokio::test]
async fn hits_answer_like_the_slow_path_with_their_own_random_subset() {
    let mut s = Setup::new();
    let all: BTreeSet<String> = (0..10).map(|i| format!("10.0.0.{i}")).collect();
    let mut orders = BTreeSet::new();
    for id in 0..200u16 {
        let msg = s
            .ask(&query(id, "Web.Service.Consul", 1, id % 2 == 0))
            .await;
        assert_eq!(msg.metadata.id, id);
        assert!(msg.metadata.authoritative && msg.metadata.truncation);
        assert!(msg.metadata.recursion_desired);
        assert_eq!(msg.queries[0].name().to_ascii(), "Web.Service.Consul.");
        assert_eq!(msg.edns.is_some(), id % 2 == 0);
        let got = ips(&msg);
        assert_eq!(got.len(), 3);
        assert!(got.iter().all(|ip| all.contains(ip)), "{got:?}");
        assert_eq!(got.iter().collect::<BTreeSet<_>>().len(), 3, "distinct");
        orders.insert(got);
    }
    // 200 draws of 3 from 10 in order (720 possibilities): many distinct.
    assert!(orders.len() > 100, "{}", orders.len());
    // One entry per distinct query (with and without EDNS), all served from it.
    assert_eq!(s.local.cached(), 2);
}

#[tokio::test]
async fn a_write_or_a_reload_is_in_the_next_hit() {
    let mut s = Setup::new();
    let q = query(1, "web.service.consul", 1, false);
    s.config.send_modify(|c| c.udp_answer_limit = 0);
    assert_eq!(s.ask(&q).await.answers.len(), 10);
    assert_eq!(s.ask(&q).await.answers.len(), 10);

    s.instance("n10", "10.0.1.10");
    let msg = s.ask(&q).await;
    assert_eq!(msg.answers.len(), 11);
    assert!(ips(&msg).contains(&"10.0.1.10".to_string()));

    s.apply(Command::CheckRegister {
        node: "n10".into(),
        check: HealthCheck {
            check_id: "down".into(),
            status: CheckStatus::Critical,
            ..HealthCheck::default()
        },
    });
    assert_eq!(s.ask(&q).await.answers.len(), 10);

    s.config.send_modify(|c| c.udp_answer_limit = 4);
    let msg = s.ask(&q).await;
    assert_eq!((msg.answers.len(), msg.metadata.truncation), (4, true));
    s.config.send_modify(|c| c.enable_truncate = false);
    let msg = s.ask(&q).await;
    assert_eq!((msg.answers.len(), msg.metadata.truncation), (4, false));
}

#[tokio::test]
async fn a_write_invalidates_only_the_answers_it_changes() {
    let mut s = Setup::new();
    let web = query(1, "web.service.consul", 1, false);
    let node = query(2, "n1.node.consul", 1, false);
    s.ask(&web).await;
    s.ask(&node).await;
    assert!(s.local.cache_holds(&web) && s.local.cache_holds(&node));

    // Another service on another node: both answers stay cached.
    s.apply(Command::NodeRegister {
        node: Node {
            name: "db1".into(),
            address: "10.0.9.1".into(),
            ..Node::default()
        },
    });
    s.apply(Command::ServiceRegister {
        node: "db1".into(),
        service: Service {
            id: "db".into(),
            name: "db".into(),
            ..Service::default()
        },
    });
    assert!(s.local.cache_holds(&web) && s.local.cache_holds(&node));

    // A check on n1 changes web (one of its instances) but not n1's address.
    s.apply(Command::CheckRegister {
        node: "n1".into(),
        check: HealthCheck {
            check_id: "n1-down".into(),
            status: CheckStatus::Critical,
            ..HealthCheck::default()
        },
    });
    assert!(!s.local.cache_holds(&web));
    assert!(s.local.cache_holds(&node));
    s.config.send_modify(|c| c.udp_answer_limit = 0);
    let msg = s.ask(&web).await;
    assert_eq!(msg.answers.len(), 9);
    assert!(!ips(&msg).contains(&"10.0.0.1".to_string()));
    assert!(s.local.cache_holds(&web), "learned again");
}

#[tokio::test]
async fn other_shapes_take_the_slow_path_every_time() {
    let mut s = Setup::new();
    for _ in 0..3 {
        let msg = s.ask(&query(5, "nope.service.consul", 1, true)).await;
        assert_eq!(msg.metadata.response_code, ResponseCode::NXDomain);
        let msg = s.ask(&query(6, "web.service.consul", 33, false)).await;
        assert_eq!(msg.answers.len(), 3, "SRV, limited");
        assert_eq!(msg.additionals.len(), 3);
        let msg = s.ask(&query(7, "web.service.consul", 28, false)).await;
        assert!(msg.answers.is_empty());
        assert_eq!(msg.authorities.len(), 1, "NODATA carries the SOA");
    }
    assert_eq!(s.local.cached(), 0);
}
