//! The HTTP(S) API server: hyper with the limits axum's `serve` lacks. A
//! client may hold at most `limits.http_max_conns_per_client` connections
//! (one more is answered 429 and closed); a new connection must send its
//! first request's headers within `limits.http_read_header_timeout` (as
//! must every later request once it starts), a TLS handshake must finish
//! within the same time, and a keep-alive connection with nothing in flight
//! is closed after `IDLE_TIMEOUT` of silence. Each request carries its peer
//! as axum's `ConnectInfo`.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;

use crate::conn_limit::PerClient;

/// How long open connections get to finish their requests at shutdown.
const DRAIN: Duration = Duration::from_secs(5);

/// What the server needs besides its listener.
pub(crate) struct HttpServer {
    pub router: Router,
    /// The HTTPS surface; each connection takes the certificates in force.
    pub tls: Option<Arc<mesh_tls::SurfaceTls>>,
    pub per_client: PerClient,
    pub header_timeout: Duration,
}

impl HttpServer {
    /// Serve `listener` until `shutdown` resolves, then let open connections
    /// finish (up to `DRAIN`).
    pub(crate) async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()>,
    ) -> std::io::Result<()> {
        let this = Arc::new(self);
        let graceful = hyper_util::server::graceful::GracefulShutdown::new();
        tokio::pin!(shutdown);
        loop {
            let (tcp, peer) = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok(conn) => conn,
                    Err(e) => {
                        // Out of file descriptors and the like: back off, keep serving.
                        tracing::warn!(error = %e, "HTTP accept");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
                () = &mut shutdown => break,
            };
            let _ = tcp.set_nodelay(true);
            let Some(slot) = this.per_client.acquire(peer.ip()) else {
                this.per_client
                    .refused
                    .warn("limits.http_max_conns_per_client", peer);
                tokio::spawn(refuse(tcp));
                continue;
            };
            let (this, watcher) = (this.clone(), graceful.watcher());
            tokio::spawn(async move {
                let _slot = slot;
                match this.tls.as_ref().and_then(|t| t.current().server.clone()) {
                    None => this.connection(tcp, peer, watcher).await,
                    Some(config) => {
                        let acceptor = TlsAcceptor::from(config);
                        match tokio::time::timeout(this.header_timeout, acceptor.accept(tcp)).await
                        {
                            Ok(Ok(tls)) => this.connection(tls, peer, watcher).await,
                            Ok(Err(e)) => {
                                tracing::debug!(%peer, error = %e, "HTTPS handshake failed")
                            }
                            Err(_) => tracing::debug!(%peer, "HTTPS handshake timed out"),
                        }
                    }
                }
            });
        }
        drop(listener);
        let _ = tokio::time::timeout(DRAIN, graceful.shutdown()).await;
        Ok(())
    }

    async fn connection<IO>(
        &self,
        io: IO,
        peer: SocketAddr,
        watcher: hyper_util::server::graceful::Watcher,
    ) where
        IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let router = self.router.clone();
        let activity = Arc::new(Activity::default());
        let io = Watched {
            io,
            activity: activity.clone(),
            seen_bytes: false,
        };
        let counted = activity.clone();
        let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
            req.extensions_mut().insert(ConnectInfo(peer));
            let guard = InFlight::start(counted.clone());
            let call = router.clone().oneshot(req);
            async move {
                let answer = call.await;
                drop(guard);
                answer
            }
        });
        let mut builder = auto::Builder::new(TokioExecutor::new());
        // No hyper header timer: the watchdog enforces it (see `Activity`).
        builder.http1().header_read_timeout(None).keep_alive(true);
        builder
            .http2()
            .timer(TokioTimer::new())
            .max_concurrent_streams(128)
            .keep_alive_interval(Some(Duration::from_secs(30)))
            .keep_alive_timeout(self.header_timeout);
        let conn = builder.serve_connection_with_upgrades(TokioIo::new(io), service);
        let conn = watcher.watch(conn.into_owned());
        tokio::pin!(conn);
        tokio::select! {
            ended = &mut conn => if let Err(e) = ended {
                tracing::debug!(%peer, error = %e, "HTTP connection ended");
            },
            () = activity.watchdog(self.header_timeout) => {
                tracing::debug!(%peer, "HTTP connection slow or idle: closed");
            }
        }
    }
}

/// Keep-alive connections with no request in flight are closed after this
/// long without a byte either way.
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// What a connection has done lately, for its watchdog. The watchdog, not
/// hyper, enforces the header timeout: hyper's arms a timer for every
/// request and starts it only at a request's first byte, so a connection
/// that never sends one would stay forever. The I/O path only bumps
/// counters (no clock reads); the watchdog keeps the time.
#[derive(Default)]
struct Activity {
    /// Reads and writes so far.
    events: AtomicU64,
    /// Bytes of a request not yet handed to the service have arrived.
    pending: std::sync::atomic::AtomicBool,
    in_flight: AtomicU64,
    served: AtomicU64,
    /// HTTP/2 frames (pings, settings) arrive between requests; only the
    /// idle rule applies there.
    http2: std::sync::atomic::AtomicBool,
}

impl Activity {
    fn wrote(&self) {
        self.events.fetch_add(1, Ordering::Relaxed);
    }

    fn read(&self, bytes: &[u8], first: bool) {
        self.events.fetch_add(1, Ordering::Relaxed);
        if first && bytes.starts_with(b"PRI * HTTP/2.0") {
            self.http2.store(true, Ordering::Relaxed);
        }
        if self.in_flight.load(Ordering::Relaxed) == 0 {
            self.pending.store(true, Ordering::Relaxed);
        }
    }

    /// Resolves when the connection must close: no request's headers within
    /// `headers` of the connection opening, a started request's headers not
    /// complete within `headers` (give or take half of it: the watchdog
    /// looks twice per period), or nothing in flight and nothing moving for
    /// `IDLE_TIMEOUT`.
    async fn watchdog(&self, headers: Duration) {
        let opened = tokio::time::Instant::now();
        let tick = (headers / 2).max(Duration::from_millis(50));
        let mut seen = self.events.load(Ordering::Relaxed);
        let mut quiet_since = opened;
        let mut pending_since: Option<tokio::time::Instant> = None;
        loop {
            tokio::time::sleep(tick).await;
            let now = tokio::time::Instant::now();
            let events = self.events.load(Ordering::Relaxed);
            if events != seen {
                (seen, quiet_since) = (events, now);
            }
            let in_flight = self.in_flight.load(Ordering::Relaxed) > 0;
            let http1 = !self.http2.load(Ordering::Relaxed);
            if http1 && self.served.load(Ordering::Relaxed) == 0 && now - opened >= headers {
                return;
            }
            if http1 && !in_flight && self.pending.load(Ordering::Relaxed) {
                let since = *pending_since.get_or_insert(now);
                if now - since >= headers {
                    return;
                }
            } else {
                pending_since = None;
            }
            if !in_flight && now - quiet_since >= IDLE_TIMEOUT {
                return;
            }
        }
    }
}

/// A request being answered: its headers are complete, and the connection
/// is not idle meanwhile (a blocking query may be quiet for minutes).
struct InFlight(Arc<Activity>);

impl InFlight {
    fn start(activity: Arc<Activity>) -> Self {
        activity.in_flight.fetch_add(1, Ordering::Relaxed);
        activity.served.fetch_add(1, Ordering::Relaxed);
        activity.pending.store(false, Ordering::Relaxed);
        InFlight(activity)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
        self.0.wrote();
    }
}

/// An I/O stream that records each read and write in its `Activity`.
struct Watched<IO> {
    io: IO,
    activity: Arc<Activity>,
    seen_bytes: bool,
}

impl<IO: AsyncRead + Unpin> AsyncRead for Watched<IO> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.io).poll_read(cx, buf);
        if buf.filled().len() > before {
            let first = !self.seen_bytes;
            self.seen_bytes = true;
            self.activity.read(&buf.filled()[before..], first);
        }
        polled
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for Watched<IO> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.io).poll_write(cx, buf);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.wrote();
        }
        polled
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.io).poll_write_vectored(cx, bufs);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.wrote();
        }
        polled
    }
    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}

/// Tell a client over the connection limit why, then close.
async fn refuse(mut tcp: TcpStream) {
    const BODY: &str = "Too many open connections from your address \
                        (limits.http_max_conns_per_client)\n";
    let answer = format!(
        "HTTP/1.1 429 Too Many Requests\r\nConnection: close\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{BODY}",
        BODY.len()
    );
    let _ = tokio::time::timeout(Duration::from_secs(1), tcp.write_all(answer.as_bytes())).await;
}
