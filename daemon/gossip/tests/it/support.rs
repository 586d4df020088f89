//! Helpers: node factories and a bounded `eventually`.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use mesh_gossip::mem::MemNetwork;
use mesh_gossip::{Gossip, GossipConfig, Member, MemberStatus, Role, Timing};

/// Generous bound: the assertion normally holds within a second or two.
pub const PATIENCE: Duration = Duration::from_secs(30);

pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_test_writer()
        .try_init();
}

pub fn config(name: &str, bind: SocketAddr) -> GossipConfig {
    let mut config = GossipConfig::new(name, bind);
    config.timing = Timing::fast();
    config.role = if name.ends_with("00") {
        Role::Server
    } else {
        Role::Client
    };
    config
}

/// Starts `name` on the in-memory network at 10.0.0.<host>:8301.
pub async fn mem_node(net: &MemNetwork, name: &str, host: u8) -> Gossip {
    let bind: SocketAddr = format!("10.0.0.{host}:8301").parse().unwrap();
    let cfg = config(name, bind);
    Gossip::start_with_transport(cfg, net.bind(bind).unwrap())
        .await
        .unwrap()
}

/// Polls `check` until it returns `None`; panics with its last complaint after `PATIENCE`.
pub async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<String>>,
{
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let Some(complaint) = check().await else {
            return;
        };
        if tokio::time::Instant::now() >= deadline {
            panic!("timed out waiting for {what}: {complaint}");
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

pub fn status_of(node: &Gossip, name: &str) -> Option<MemberStatus> {
    node.members()
        .into_iter()
        .find(|m| m.name == name)
        .map(|m| m.status)
}

pub fn alive_count(members: &[Member]) -> usize {
    members
        .iter()
        .filter(|m| m.status == MemberStatus::Alive)
        .count()
}

/// Complains about the first node whose view of `name` is not `status`.
pub fn all_see(nodes: &[&Gossip], name: &str, status: MemberStatus) -> Option<String> {
    nodes.iter().find_map(|n| {
        let seen = status_of(n, name);
        (seen != Some(status)).then(|| format!("{} sees {name} as {seen:?}", n.local_addr()))
    })
}
