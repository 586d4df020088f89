//! The public listener: mTLS termination, intentions, splice to the local app.
//!
//! Every connection keeps a snapshot receiver and re-authorizes its source
//! when the snapshot changes, so a new deny closes it at once.

use std::net::SocketAddr;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::server::TlsStream;
use tokio_util::sync::CancellationToken;

use crate::metrics::{Counted, GaugeGuard};
use crate::proxy::Ctx;
use crate::snapshot::Protocol;
use crate::spiffe::{spiffe_id_of, SpiffeId};
use crate::tls::failure_reason;

/// How long a peer gets to complete the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Copy buffer per direction; large buffers matter for bulk throughput.
pub(crate) const COPY_BUF: usize = 64 * 1024;

/// Connections not yet through their TLS handshake (unauthenticated) held
/// at once; past this, new ones are closed at once.
const MAX_HANDSHAKES: usize = 256;
/// Open inbound connections at once (each holds copy buffers).
const MAX_CONNECTIONS: usize = 4096;

/// Accepts on the public listener until `stop` (this listener's token) fires.
pub(crate) async fn serve(ctx: Arc<Ctx>, listener: TcpListener, stop: CancellationToken) {
    let handshakes = Arc::new(tokio::sync::Semaphore::new(MAX_HANDSHAKES));
    let connections = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    loop {
        let (tcp, peer) = tokio::select! {
            _ = stop.cancelled() => return,
            res = listener.accept() => match res {
                Ok(x) => x,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(error = %e, "public listener accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let (Ok(open), Ok(handshake)) = (
            connections.clone().try_acquire_owned(),
            handshakes.clone().try_acquire_owned(),
        ) else {
            ctx.metrics.handshake_error("overloaded");
            tracing::debug!(%peer, "inbound connection refused: too many open or in handshake");
            continue;
        };
        let ctx2 = ctx.clone();
        ctx.tracker.spawn(async move {
            let _open = open;
            handle(ctx2, tcp, peer, handshake).await
        });
    }
}

async fn handle(
    ctx: Arc<Ctx>,
    tcp: TcpStream,
    peer: SocketAddr,
    handshake: tokio::sync::OwnedSemaphorePermit,
) {
    let metrics = ctx.metrics.clone();
    metrics.accepted.fetch_add(1, Relaxed);
    let _active = GaugeGuard::inc(&metrics.active);
    let _ = tcp.set_nodelay(true);

    let accepted = tokio::time::timeout(HANDSHAKE_TIMEOUT, ctx.acceptor.accept(wire(tcp))).await;
    drop(handshake);
    let tls = match accepted {
        Ok(Ok(tls)) => tls,
        Ok(Err(e)) => {
            let reason = failure_reason(&e);
            metrics.handshake_error(reason);
            tracing::info!(%peer, reason, error = %crate::tls::describe_failure(&e), "inbound connection refused: TLS handshake failed");
            return;
        }
        Err(_) => {
            metrics.handshake_error("timeout");
            tracing::info!(%peer, "inbound connection refused: TLS handshake timed out");
            return;
        }
    };
    // The verifier already insisted on a service SPIFFE ID in our trust domain.
    let Some(source) = tls
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|c| c.first())
        .and_then(|c| spiffe_id_of(c))
        .and_then(|id| SpiffeId::parse(&id))
        .map(|id| id.service)
    else {
        metrics.handshake_error("wrong_identity");
        return;
    };

    let m = ctx.current.get();
    if !m.linked.is_empty() {
        drop(m);
        return crate::terminating::serve(ctx, tls, source, peer).await;
    }
    let protocol = m.snap.public.protocol;
    let verdict = m.policy.connection(&source, protocol.layer());
    if !verdict.allow {
        metrics.denied.fetch_add(1, Relaxed);
        tracing::info!(%peer, %source, reason = %verdict.reason, "inbound connection refused: intention denies");
        close(tls).await;
        return;
    }
    tracing::debug!(%peer, %source, reason = %verdict.reason, "inbound connection allowed");
    match protocol {
        Protocol::Tcp => splice(ctx, tls, source, peer).await,
        Protocol::Http | Protocol::Http2 | Protocol::Grpc => {
            crate::l7::serve(ctx, tls, source, peer).await
        }
    }
}

/// TCP below TLS, with a read buffer: rustls pulls at most 4 KiB per read,
/// so without it a 16 KiB record costs several syscalls.
pub(crate) type Wire = tokio::io::BufReader<TcpStream>;

/// Wraps a connected socket for TLS.
pub(crate) fn wire(tcp: TcpStream) -> Wire {
    tokio::io::BufReader::with_capacity(COPY_BUF, tcp)
}

/// Sends close_notify and closes, without waiting on a slow peer.
pub(crate) async fn close(mut tls: TlsStream<Wire>) {
    let _ = tokio::time::timeout(Duration::from_millis(100), tls.shutdown()).await;
}

/// Address of the local application from the current snapshot.
pub(crate) fn local_addr(ctx: &Ctx) -> (String, u16) {
    let m = ctx.current.get();
    let p = &m.snap.public;
    let host = if p.local_service_address.is_empty() {
        "127.0.0.1".to_string()
    } else {
        p.local_service_address.clone()
    };
    (host, p.local_service_port)
}

async fn splice(ctx: Arc<Ctx>, mut tls: TlsStream<Wire>, source: String, peer: SocketAddr) {
    let (host, port) = local_addr(&ctx);
    let app = match tokio::time::timeout(
        Duration::from_secs(5),
        TcpStream::connect((host.as_str(), port)),
    )
    .await
    {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            tracing::warn!(%peer, %source, local = %format!("{host}:{port}"), error = %e, "local service unreachable");
            return;
        }
        Err(_) => {
            tracing::warn!(%peer, %source, local = %format!("{host}:{port}"), "local service connect timed out");
            return;
        }
    };
    let _ = app.set_nodelay(true);
    // Written to the app = received from the peer, and the other way round.
    let m = &ctx.metrics;
    let mut app = Counted::new(app, &m.bytes_out, &m.bytes_in);
    let _ = guarded(&ctx, &source, peer, Protocol::Tcp, async {
        tokio::io::copy_bidirectional_with_sizes(&mut tls, &mut app, COPY_BUF, COPY_BUF).await
    })
    .await;
}

/// Runs `work` while re-authorizing `source` on every snapshot change.
///
/// Returns `None` when the connection was cut (policy now denies, or the
/// proxy is stopping); dropping `work` closes its streams.
pub(crate) async fn guarded<T>(
    ctx: &Ctx,
    source: &str,
    peer: SocketAddr,
    protocol: Protocol,
    work: impl std::future::Future<Output = T>,
) -> Option<T> {
    let check = |m: &crate::state::Material| m.policy.connection(source, protocol.layer());
    guarded_by(ctx, source, peer, check, work).await
}

/// [`guarded`], with the decision `check` takes on each snapshot (a
/// terminating gateway asks its linked service's intentions).
pub(crate) async fn guarded_by<T>(
    ctx: &Ctx,
    source: &str,
    peer: SocketAddr,
    check: impl Fn(&crate::state::Material) -> mesh_policy::Verdict,
    work: impl std::future::Future<Output = T>,
) -> Option<T> {
    let mut rx = ctx.current.subscribe();
    let mut watching = true;
    // The caller authorized before `subscribe`; a change in between would be
    // missed, so check once more now that changes are being watched.
    let mut recheck = true;
    tokio::pin!(work);
    loop {
        if recheck {
            recheck = false;
            let verdict = check(&ctx.current.get());
            if !verdict.allow {
                ctx.metrics.denied.fetch_add(1, Relaxed);
                ctx.metrics.live_closed.fetch_add(1, Relaxed);
                tracing::info!(%peer, %source, reason = %verdict.reason, "closed: intention now denies");
                return None;
            }
        }
        tokio::select! {
            res = &mut work => return Some(res),
            changed = rx.changed(), if watching => match changed {
                Ok(()) => recheck = true,
                // The snapshot source is gone; keep the last decision.
                Err(_) => watching = false,
            },
            _ = ctx.stop.cancelled() => return None,
        }
    }
}
