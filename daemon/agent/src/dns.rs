//! The DNS interface: listeners bound at build time, served from the local
//! state (no Raft round trip per query) with the agent's DNS settings.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use tokio::net::{TcpListener, UdpSocket};

use crate::stop::Stop;
use crate::writes::Writes;

/// UDP and TCP sockets on one port.
pub(crate) struct DnsListeners {
    pub udp: UdpSocket,
    pub tcp: TcpListener,
}

/// Bind UDP, then TCP on the same port (with port 0, UDP picks it).
pub(crate) async fn bind(addr: SocketAddr) -> anyhow::Result<DnsListeners> {
    let flag = "choose another with -dns-port";
    for _ in 0..5 {
        let udp = UdpSocket::bind(addr).await.with_context(|| {
            format!("cannot listen for DNS on udp {addr} (port in use? {flag})")
        })?;
        let port = udp.local_addr()?.port();
        match TcpListener::bind(SocketAddr::new(addr.ip(), port)).await {
            Ok(tcp) => return Ok(DnsListeners { udp, tcp }),
            // A port picked for UDP may be taken for TCP; pick again.
            Err(_) if addr.port() == 0 => continue,
            Err(e) => {
                return Err(e).with_context(|| {
                    format!("cannot listen for DNS on tcp {addr} (port in use? {flag})")
                })
            }
        }
    }
    anyhow::bail!("no free port for DNS on {} for both UDP and TCP", addr.ip())
}

/// The DNS server's settings from the agent config.
pub(crate) fn settings(datacenter: &str, config: &mesh_config::LiveConfig) -> mesh_dns::DnsConfig {
    let d = &config.dns;
    mesh_dns::DnsConfig {
        domain: d.domain.clone(),
        alt_domain: d.alt_domain.clone(),
        datacenter: datacenter.to_string(),
        node_ttl: d.node_ttl,
        service_ttl: d.service_ttl.iter().map(|(k, v)| (k.clone(), *v)).collect(),
        udp_answer_limit: d.udp_answer_limit as usize,
        enable_truncate: d.enable_truncate,
        only_passing: d.only_passing,
        recursors: d.recursors.clone(),
        acl: config.acl.enabled.then(|| mesh_dns::DnsAcl {
            default_allow: config.acl.default_policy == mesh_config::AclPolicy::Allow,
            token: config.acl.default_token.clone(),
            datacenter: datacenter.to_string(),
        }),
        ..Default::default()
    }
}

/// A server's DNS address, from the gossip tags.
fn server_dns(writes: &Writes) -> Option<SocketAddr> {
    writes
        .server_tags(crate::tags::DNS)
        .into_iter()
        .find_map(|a| a.parse().ok())
}

/// SERVFAIL for `query` (no server to ask): the query's header and question,
/// flagged as a response with rcode 2.
fn servfail(query: &[u8]) -> Option<Vec<u8>> {
    if query.len() < 12 {
        return None;
    }
    let mut out = query.to_vec();
    out[2] |= 0x80;
    out[3] = (out[3] & 0xF0) | 2;
    Some(out)
}

/// UDP queries relayed at once; past this, queries are dropped (clients
/// retry), so a flood costs no more than this many sockets and tasks.
const MAX_UDP_RELAYS: usize = 512;
/// TCP connections relayed at once; past this, new ones are closed.
const MAX_TCP_RELAYS: usize = 128;
/// Longest a relayed TCP connection stays open.
const TCP_RELAY_LIFETIME: std::time::Duration = std::time::Duration::from_secs(30);

/// Client agents hold no catalog: they relay DNS to a server, over UDP and
/// TCP, so `dig @<client>:8600` works as it does with Consul.
pub(crate) async fn relay(
    writes: Arc<Writes>,
    listeners: DnsListeners,
    mut stop: tokio::sync::watch::Receiver<Stop>,
) -> anyhow::Result<()> {
    let udp = Arc::new(listeners.udp);
    let tcp = listeners.tcp;
    let mut buf = vec![0u8; 4096];
    let udp_slots = Arc::new(tokio::sync::Semaphore::new(MAX_UDP_RELAYS));
    let tcp_slots = Arc::new(tokio::sync::Semaphore::new(MAX_TCP_RELAYS));
    loop {
        tokio::select! {
            _ = stop.wait_for(|s| *s != Stop::Running) => return Ok(()),
            got = udp.recv_from(&mut buf) => {
                let Ok((n, peer)) = got else { continue };
                let Ok(slot) = udp_slots.clone().try_acquire_owned() else {
                    tracing::debug!(%peer, "DNS relay busy: query dropped");
                    continue;
                };
                let query = buf[..n].to_vec();
                let (writes, udp) = (writes.clone(), udp.clone());
                tokio::spawn(async move {
                    let _slot = slot;
                    let answer = match server_dns(&writes) {
                        Some(server) => udp_exchange(server, &query).await.ok(),
                        None => None,
                    };
                    if let Some(bytes) = answer.or_else(|| servfail(&query)) {
                        let _ = udp.send_to(&bytes, peer).await;
                    }
                });
            }
            conn = tcp.accept() => {
                let Ok((mut client, _)) = conn else { continue };
                let Ok(slot) = tcp_slots.clone().try_acquire_owned() else { continue };
                let Some(server) = server_dns(&writes) else { continue };
                tokio::spawn(async move {
                    let _slot = slot;
                    let relay = async {
                        let mut upstream = tokio::net::TcpStream::connect(server).await?;
                        tokio::io::copy_bidirectional(&mut client, &mut upstream).await
                    };
                    let _ = tokio::time::timeout(TCP_RELAY_LIFETIME, relay).await;
                });
            }
        }
    }
}

async fn udp_exchange(server: SocketAddr, query: &[u8]) -> anyhow::Result<Vec<u8>> {
    let local: SocketAddr = if server.is_ipv4() {
        "0.0.0.0:0"
    } else {
        "[::]:0"
    }
    .parse()?;
    let socket = UdpSocket::bind(local).await?;
    socket.connect(server).await?;
    socket.send(query).await?;
    let mut buf = vec![0u8; 65535];
    let n =
        tokio::time::timeout(std::time::Duration::from_secs(2), socket.recv(&mut buf)).await??;
    buf.truncate(n);
    Ok(buf)
}
