//! Per-client connection limits (`limits.http_max_conns_per_client`,
//! `limits.rpc_max_conns_per_client`): a count of open connections per IP,
//! held by each connection for its lifetime.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use parking_lot::Mutex;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// Open connections per client IP, capped.
#[derive(Clone)]
pub(crate) struct PerClient {
    open: Arc<Mutex<HashMap<IpAddr, u32>>>,
    limit: u32,
    /// Says, at most once a second, that connections are being refused.
    pub(crate) refused: Arc<RateLimitedLog>,
}

/// One counted connection; the count drops with it.
pub(crate) struct Slot {
    open: Arc<Mutex<HashMap<IpAddr, u32>>>,
    ip: IpAddr,
}

impl PerClient {
    pub(crate) fn new(limit: u32) -> Self {
        PerClient {
            open: Arc::default(),
            limit,
            refused: Arc::new(RateLimitedLog::new()),
        }
    }

    /// A slot for one more connection from `ip`, if it is under the limit.
    pub(crate) fn acquire(&self, ip: IpAddr) -> Option<Slot> {
        let mut open = self.open.lock();
        let n = open.entry(ip).or_insert(0);
        if *n >= self.limit {
            return None;
        }
        *n += 1;
        Some(Slot {
            open: self.open.clone(),
            ip,
        })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut open = self.open.lock();
        if let Some(n) = open.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.ip);
            }
        }
    }
}

/// Logs a refusal at most once a second per limit, so a flood cannot fill
/// the log.
pub(crate) struct RateLimitedLog {
    last: Mutex<Option<tokio::time::Instant>>,
}

impl RateLimitedLog {
    pub(crate) const fn new() -> Self {
        RateLimitedLog {
            last: parking_lot::const_mutex(None),
        }
    }

    /// Says why a connection was refused, at most once a second.
    pub(crate) fn warn_with(&self, why: &str, peer: SocketAddr) {
        if self.due() {
            tracing::warn!(%peer, why, "connection refused");
        }
    }

    fn due(&self) -> bool {
        let now = tokio::time::Instant::now();
        let mut last = self.last.lock();
        if last.is_none_or(|t| now.duration_since(t) >= Duration::from_secs(1)) {
            *last = Some(now);
            return true;
        }
        false
    }

    pub(crate) fn warn(&self, limit: &str, peer: SocketAddr) {
        if self.due() {
            tracing::warn!(%peer, limit, "connection refused: over the per-client limit");
        }
    }
}

/// The gRPC (xDS) port's connections: Nagle off, at most `limit` per
/// client IP (more are closed at once).
pub(crate) fn rpc_incoming(
    listener: tokio::net::TcpListener,
    limit: PerClient,
) -> impl futures::Stream<Item = std::io::Result<Counted>> {
    futures::stream::unfold((listener, limit), |(listener, limit)| async move {
        loop {
            let (tcp, peer) = match listener.accept().await {
                Ok(conn) => conn,
                Err(e) => return Some((Err(e), (listener, limit))),
            };
            let Some(slot) = limit.acquire(peer.ip()) else {
                limit.refused.warn("limits.rpc_max_conns_per_client", peer);
                continue;
            };
            let _ = tcp.set_nodelay(true);
            return Some((Ok(Counted::new(tcp, slot)), (listener, limit)));
        }
    })
}

/// A server RPC connection that holds its slot while open.
pub(crate) struct Counted {
    tcp: TcpStream,
    _slot: Slot,
}

impl Counted {
    pub(crate) fn new(tcp: TcpStream, slot: Slot) -> Self {
        Counted { tcp, _slot: slot }
    }
}

impl tonic::transport::server::Connected for Counted {
    type ConnectInfo = tonic::transport::server::TcpConnectInfo;
    fn connect_info(&self) -> Self::ConnectInfo {
        self.tcp.connect_info()
    }
}

impl AsyncRead for Counted {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.tcp).poll_read(cx, buf)
    }
}

impl AsyncWrite for Counted {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.tcp).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.tcp).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.tcp).poll_shutdown(cx)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.tcp).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.tcp.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_client_gets_its_own_count_and_slots_free_on_drop() {
        let limits = PerClient::new(2);
        let a: IpAddr = "127.0.0.2".parse().unwrap();
        let b: IpAddr = "127.0.0.3".parse().unwrap();
        let first = limits.acquire(a).unwrap();
        let _second = limits.acquire(a).unwrap();
        assert!(limits.acquire(a).is_none(), "a third from one client");
        assert!(
            limits.acquire(b).is_some(),
            "another client is not affected"
        );
        drop(first);
        assert!(
            limits.acquire(a).is_some(),
            "a closed connection frees its slot"
        );
    }
}
