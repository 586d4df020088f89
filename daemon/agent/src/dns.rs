//! The DNS interface: listeners bound at build time, served from the local
//! state (no Raft round trip per query) with the agent's DNS settings.

use std::net::SocketAddr;

use anyhow::Context;
use mesh_config::RuntimeConfig;
use tokio::net::{TcpListener, UdpSocket};

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
pub(crate) fn settings(config: &RuntimeConfig) -> mesh_dns::DnsConfig {
    let d = &config.dns;
    mesh_dns::DnsConfig {
        domain: d.domain.clone(),
        alt_domain: d.alt_domain.clone(),
        datacenter: config.datacenter.clone(),
        node_ttl: d.node_ttl,
        service_ttl: d.service_ttl.iter().map(|(k, v)| (k.clone(), *v)).collect(),
        udp_answer_limit: d.udp_answer_limit as usize,
        enable_truncate: d.enable_truncate,
        only_passing: d.only_passing,
        recursors: d.recursors.clone(),
        ..Default::default()
    }
}
