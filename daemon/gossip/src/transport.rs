//! How packets and push/pull streams reach other members: real UDP+TCP, or [`crate::mem`].

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream, UdpSocket};

use crate::GossipError;

/// A boxed future, as returned by [`Transport`] methods.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A reliable byte stream for push/pull (a TCP connection or an in-memory pipe).
pub trait Conn: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Conn for T {}

/// An already-bound endpoint gossip runs over: unreliable packets plus reliable streams.
pub trait Transport: Send + Sync + 'static {
    /// The address this endpoint is bound to (packets and streams share it).
    fn local_addr(&self) -> SocketAddr;

    /// Sends one datagram, best effort: never blocks, may silently drop.
    fn send_packet(&self, to: SocketAddr, packet: &[u8]);

    /// The next datagram and its sender; `ErrorKind::NotConnected` once closed.
    fn recv_packet(&self) -> BoxFuture<'_, io::Result<(SocketAddr, Vec<u8>)>>;

    /// Opens a stream to `to`.
    fn connect(&self, to: SocketAddr) -> BoxFuture<'_, io::Result<Box<dyn Conn>>>;

    /// The next incoming stream and its peer; `ErrorKind::NotConnected` once closed.
    fn accept(&self) -> BoxFuture<'_, io::Result<(SocketAddr, Box<dyn Conn>)>>;

    /// Stops delivery to this endpoint (called by `Gossip::shutdown`).
    fn close(&self) {}
}

/// UDP and TCP sockets bound to the same address.
#[derive(Debug)]
pub struct NetTransport {
    udp: UdpSocket,
    tcp: TcpListener,
    addr: SocketAddr,
}

/// Biggest datagram we accept; foca's own limit is checked after decryption.
const MAX_DATAGRAM: usize = 65_536;

impl NetTransport {
    /// Binds TCP then UDP on `addr`; with port 0 both end up on the same free port.
    pub async fn bind(addr: SocketAddr) -> Result<NetTransport, GossipError> {
        let bind_err = |proto, source| GossipError::Bind {
            addr,
            proto,
            source,
        };
        // With port 0 the OS picks a TCP port whose UDP twin may be taken; retry a few times.
        let attempts = if addr.port() == 0 { 16 } else { 1 };
        let mut last = None;
        for _ in 0..attempts {
            let tcp = TcpListener::bind(addr)
                .await
                .map_err(|e| bind_err("tcp", e))?;
            let local = tcp.local_addr().map_err(|e| bind_err("tcp", e))?;
            match UdpSocket::bind(local).await {
                Ok(udp) => {
                    return Ok(NetTransport {
                        udp,
                        tcp,
                        addr: local,
                    })
                }
                Err(e) => last = Some(e),
            }
        }
        Err(bind_err("udp", last.expect("at least one attempt")))
    }
}

impl Transport for NetTransport {
    fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    fn send_packet(&self, to: SocketAddr, packet: &[u8]) {
        // UDP is lossy anyway: a full socket buffer drops the packet like the network would.
        if let Err(e) = self.udp.try_send_to(packet, to) {
            tracing::debug!(%to, error = %e, "gossip packet not sent");
        }
    }

    fn recv_packet(&self) -> BoxFuture<'_, io::Result<(SocketAddr, Vec<u8>)>> {
        Box::pin(async move {
            let mut buf = vec![0u8; MAX_DATAGRAM];
            let (len, from) = self.udp.recv_from(&mut buf).await?;
            buf.truncate(len);
            Ok((from, buf))
        })
    }

    fn connect(&self, to: SocketAddr) -> BoxFuture<'_, io::Result<Box<dyn Conn>>> {
        Box::pin(async move {
            let stream = TcpStream::connect(to).await?;
            stream.set_nodelay(true)?;
            Ok(Box::new(stream) as Box<dyn Conn>)
        })
    }

    fn accept(&self) -> BoxFuture<'_, io::Result<(SocketAddr, Box<dyn Conn>)>> {
        Box::pin(async move {
            let (stream, peer) = self.tcp.accept().await?;
            stream.set_nodelay(true)?;
            Ok((peer, Box::new(stream) as Box<dyn Conn>))
        })
    }
}
