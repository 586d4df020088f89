//! TCP checks, and the dialing HTTP and gRPC checks share.

use std::time::Duration;

use mesh_types::CheckStatus;
use tokio::net::TcpStream;

/// Connects to `addr` (`host:port`): passing on success, critical otherwise.
pub(crate) async fn probe(addr: &str, timeout: Duration) -> (CheckStatus, String) {
    match tokio::time::timeout(timeout, dial_addr(addr)).await {
        Ok(Ok(_stream)) => (CheckStatus::Passing, format!("TCP connect {addr}: Success")),
        // The dial error names the address already ("dial tcp 127.0.0.1:5432: ..."), as Go's does.
        Ok(Err(e)) => (CheckStatus::Critical, e),
        Err(_) => (
            CheckStatus::Critical,
            format!("dial tcp {addr}: timed out after {timeout:?}"),
        ),
    }
}

/// Dials `host:port`, trying each resolved address in turn like Go's net.Dial.
pub(crate) async fn dial_addr(addr: &str) -> Result<TcpStream, String> {
    let (host, port) = addr
        .rsplit_once(':')
        .ok_or_else(|| format!("expected host:port, got {addr:?}"))?;
    let port: u16 = port
        .parse()
        .map_err(|_| format!("invalid port {port:?} in {addr:?}"))?;
    dial(host, port).await
}

/// Dials `host` (name, IPv4, or IPv6 with or without brackets) on `port`.
pub(crate) async fn dial(host: &str, port: u16) -> Result<TcpStream, String> {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    // An empty host means this machine, as in Go.
    let host = if host.is_empty() { "127.0.0.1" } else { host };
    let addrs: Vec<_> = tokio::net::lookup_host((host, port))
        .await
        .map_err(|e| format!("lookup {host}: {e}"))?
        .collect();
    let mut last = format!("lookup {host}: no addresses");
    for sa in addrs {
        match TcpStream::connect(sa).await {
            Ok(stream) => {
                let _ = stream.set_nodelay(true);
                return Ok(stream);
            }
            Err(e) => last = format!("dial tcp {sa}: {e}"),
        }
    }
    Err(last)
}
