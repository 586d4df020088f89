//! The UDP transport. Each worker drains the socket into a small stack and
//! answers the newest query first: under overload, the queries dropped are
//! the old ones whose clients have likely given up, and nothing queues
//! without bound (hickory's own server spawns a task per datagram).

use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hickory_server::net::xfer::Protocol;
use tokio::net::UdpSocket;

use crate::reply::Reply;
use crate::server::{Local, Shutdown};

/// Datagrams one worker holds; when full, the oldest is dropped.
const STACK: usize = 512;
/// Datagrams read per drain before answering some.
const DRAIN: usize = 64;
/// Answers between drains, so new arrivals keep jumping the line.
const BATCH: usize = 16;
/// A query older than this is dropped unanswered: its client has retried
/// or given up (resolvers time out after 1-2 s; dig after 5 s).
const MAX_AGE: Duration = Duration::from_secs(2);
/// Largest datagram we read (EDNS allows up to 64 KiB).
const MAX_DATAGRAM: usize = 65535;

struct Pending {
    bytes: Vec<u8>,
    src: SocketAddr,
    received: Instant,
}

/// Answer queries on `socket` until shutdown. Several workers may share one
/// socket.
pub(crate) async fn serve(
    socket: Arc<UdpSocket>,
    mut local: Local,
    mut shutdown: Shutdown,
) -> io::Result<()> {
    let mut stack: VecDeque<Pending> = VecDeque::with_capacity(STACK);
    let mut buf = vec![0; MAX_DATAGRAM];
    let mut dropped: u64 = 0;
    loop {
        if shutdown.requested() {
            return Ok(());
        }
        let now = Instant::now();
        for _ in 0..DRAIN {
            match socket.try_recv_from(&mut buf) {
                Ok((n, src)) => {
                    if stack.len() == STACK {
                        stack.pop_front();
                        dropped += 1;
                    }
                    stack.push_back(Pending {
                        bytes: buf[..n].to_vec(),
                        src,
                        received: now,
                    });
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                // ICMP errors from earlier sends surface here; they concern
                // one client, not the socket.
                Err(e) if is_transient(&e) => continue,
                Err(e) => return Err(e),
            }
        }
        if stack.is_empty() {
            if dropped > 0 {
                tracing::warn!(dropped, "dns: overloaded; dropped the oldest UDP queries");
                dropped = 0;
            }
            tokio::select! {
                ready = socket.readable() => ready?,
                () = shutdown.wait() => return Ok(()),
            }
            continue;
        }
        let now = Instant::now();
        for _ in 0..BATCH {
            let Some(query) = stack.pop_back() else { break };
            if now.duration_since(query.received) > MAX_AGE {
                dropped += 1 + stack.len() as u64;
                stack.clear();
                break;
            }
            if query.src.port() == 0 || query.src.ip().is_unspecified() {
                continue;
            }
            let reply = Reply::Udp {
                socket: socket.clone(),
                dst: query.src,
            };
            local
                .handle(query.bytes, query.src, Protocol::Udp, reply)
                .await;
        }
        // A busy socket never makes the loop wait: give the other tasks on
        // this thread their turn once the budget is spent.
        tokio::task::coop::consume_budget().await;
    }
}

fn is_transient(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::HostUnreachable
            | io::ErrorKind::NetworkUnreachable
            | io::ErrorKind::Interrupted
    )
}
