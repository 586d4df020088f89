//! An in-memory network for tests: many gossip nodes in one process, no sockets.
//!
//! ```no_run
//! # async fn demo() -> Result<(), mesh_gossip::GossipError> {
//! use mesh_gossip::{mem::MemNetwork, Gossip, GossipConfig, Timing};
//! let net = MemNetwork::new();
//! let mut config = GossipConfig::new("a", "10.0.0.1:0".parse().unwrap());
//! config.timing = Timing::fast();
//! let a = Gossip::start_with_transport(config.clone(), net.bind(config.bind)?).await?;
//! # Ok(()) }
//! ```

use std::collections::{HashMap, HashSet};
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use parking_lot::Mutex;
use tokio::sync::mpsc;

use crate::transport::{BoxFuture, Conn, Transport};
use crate::GossipError;

/// Packets queued per endpoint before new ones are dropped (like a full socket buffer).
const PACKET_QUEUE: usize = 4096;
/// Buffer of each in-memory stream.
const PIPE_BYTES: usize = 256 * 1024;

type Packet = (SocketAddr, Vec<u8>);
type Incoming = (SocketAddr, Box<dyn Conn>);

/// A switch connecting [`MemTransport`]s; clone it freely.
#[derive(Clone, Default)]
pub struct MemNetwork {
    state: Arc<Mutex<NetState>>,
}

#[derive(Default)]
struct NetState {
    endpoints: HashMap<SocketAddr, Endpoint>,
    next_port: u16,
    next_id: u64,
    /// Directed links that drop everything: (from, to).
    cut: HashSet<(SocketAddr, SocketAddr)>,
    /// One-way packet delay on directed links: (from, to).
    delay: HashMap<(SocketAddr, SocketAddr), std::time::Duration>,
}

struct Endpoint {
    id: u64,
    packets: mpsc::Sender<Packet>,
    conns: mpsc::Sender<Incoming>,
}

impl MemNetwork {
    /// An empty network.
    pub fn new() -> MemNetwork {
        MemNetwork::default()
    }

    /// Binds an endpoint; port 0 picks an unused port on that IP.
    pub fn bind(&self, addr: SocketAddr) -> Result<Arc<MemTransport>, GossipError> {
        let mut state = self.state.lock();
        let mut addr = addr;
        if addr.port() == 0 {
            loop {
                state.next_port = state.next_port.wrapping_add(1).max(20_000);
                addr.set_port(state.next_port);
                if !state.endpoints.contains_key(&addr) {
                    break;
                }
            }
        } else if state.endpoints.contains_key(&addr) {
            return Err(GossipError::Bind {
                addr,
                proto: "mem",
                source: io::ErrorKind::AddrInUse.into(),
            });
        }
        let (packets, packets_rx) = mpsc::channel(PACKET_QUEUE);
        let (conns, conns_rx) = mpsc::channel(64);
        state.next_id += 1;
        let id = state.next_id;
        state
            .endpoints
            .insert(addr, Endpoint { id, packets, conns });
        Ok(Arc::new(MemTransport {
            net: self.clone(),
            addr,
            id,
            packets: tokio::sync::Mutex::new(packets_rx),
            conns: tokio::sync::Mutex::new(conns_rx),
        }))
    }

    /// Drops all packets and streams between `a` and `b`, both ways (a partition).
    pub fn cut(&self, a: SocketAddr, b: SocketAddr) {
        let mut state = self.state.lock();
        state.cut.insert((a, b));
        state.cut.insert((b, a));
    }

    /// Restores the link between `a` and `b`.
    pub fn heal(&self, a: SocketAddr, b: SocketAddr) {
        let mut state = self.state.lock();
        state.cut.remove(&(a, b));
        state.cut.remove(&(b, a));
    }

    /// Delays packets between `a` and `b` by `one_way` in each direction
    /// (so the round trip is twice that): distance, for coordinates.
    pub fn set_delay(&self, a: SocketAddr, b: SocketAddr, one_way: std::time::Duration) {
        let mut state = self.state.lock();
        state.delay.insert((a, b), one_way);
        state.delay.insert((b, a), one_way);
    }

    fn route<T>(
        &self,
        from: SocketAddr,
        to: SocketAddr,
        pick: impl FnOnce(&Endpoint) -> T,
    ) -> io::Result<T> {
        let state = self.state.lock();
        if state.cut.contains(&(from, to)) {
            return Err(io::Error::new(io::ErrorKind::TimedOut, "link is cut"));
        }
        match state.endpoints.get(&to) {
            Some(endpoint) => Ok(pick(endpoint)),
            None => Err(io::ErrorKind::ConnectionRefused.into()),
        }
    }
}

/// One endpoint on a [`MemNetwork`]; pass it to `Gossip::start_with_transport`.
pub struct MemTransport {
    net: MemNetwork,
    addr: SocketAddr,
    id: u64,
    packets: tokio::sync::Mutex<mpsc::Receiver<Packet>>,
    conns: tokio::sync::Mutex<mpsc::Receiver<Incoming>>,
}

impl Transport for MemTransport {
    fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    fn send_packet(&self, to: SocketAddr, packet: &[u8]) {
        if let Ok(tx) = self.net.route(self.addr, to, |e| e.packets.clone()) {
            let delay = self.net.state.lock().delay.get(&(self.addr, to)).copied();
            let sent = (self.addr, packet.to_vec());
            match delay {
                Some(delay) => {
                    tokio::spawn(async move {
                        tokio::time::sleep(delay).await;
                        let _ = tx.try_send(sent);
                    });
                }
                // A full queue drops the packet, as a real socket buffer would.
                None => {
                    let _ = tx.try_send(sent);
                }
            }
        }
    }

    fn recv_packet(&self) -> BoxFuture<'_, io::Result<(SocketAddr, Vec<u8>)>> {
        Box::pin(async move {
            let mut rx = self.packets.lock().await;
            rx.recv()
                .await
                .ok_or_else(|| io::ErrorKind::NotConnected.into())
        })
    }

    fn connect(&self, to: SocketAddr) -> BoxFuture<'_, io::Result<Box<dyn Conn>>> {
        Box::pin(async move {
            let tx = self.net.route(self.addr, to, |e| e.conns.clone())?;
            let (ours, theirs) = tokio::io::duplex(PIPE_BYTES);
            tx.try_send((self.addr, Box::new(theirs)))
                .map_err(|_| io::Error::from(io::ErrorKind::ConnectionRefused))?;
            Ok(Box::new(ours) as Box<dyn Conn>)
        })
    }

    fn accept(&self) -> BoxFuture<'_, io::Result<(SocketAddr, Box<dyn Conn>)>> {
        Box::pin(async move {
            let mut rx = self.conns.lock().await;
            rx.recv()
                .await
                .ok_or_else(|| io::ErrorKind::NotConnected.into())
        })
    }

    fn close(&self) {
        let mut state = self.net.state.lock();
        // Only our own registration: the address may have been rebound since.
        if state.endpoints.get(&self.addr).map(|e| e.id) == Some(self.id) {
            state.endpoints.remove(&self.addr);
        }
    }
}

impl Drop for MemTransport {
    fn drop(&mut self) {
        self.close();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[tokio::test]
    async fn packets_streams_and_cuts() {
        let net = MemNetwork::new();
        let a = net.bind(addr("10.0.0.1:0")).unwrap();
        let b = net.bind(addr("10.0.0.2:7000")).unwrap();
        assert_ne!(a.local_addr().port(), 0);
        assert!(net.bind(addr("10.0.0.2:7000")).is_err(), "address in use");

        a.send_packet(b.local_addr(), b"ping");
        assert_eq!(
            b.recv_packet().await.unwrap(),
            (a.local_addr(), b"ping".to_vec())
        );

        let mut out = a.connect(b.local_addr()).await.unwrap();
        let (peer, mut inc) = b.accept().await.unwrap();
        assert_eq!(peer, a.local_addr());
        out.write_all(b"hi").await.unwrap();
        let mut buf = [0u8; 2];
        inc.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"hi");

        net.cut(a.local_addr(), b.local_addr());
        assert!(a.connect(b.local_addr()).await.is_err());
        net.heal(a.local_addr(), b.local_addr());
        assert!(a.connect(b.local_addr()).await.is_ok());

        b.close();
        assert_eq!(
            a.connect(b.local_addr()).await.err().map(|e| e.kind()),
            Some(io::ErrorKind::ConnectionRefused)
        );
        assert_eq!(
            b.recv_packet().await.unwrap_err().kind(),
            io::ErrorKind::NotConnected
        );
    }
}
