//! `Proxy::spawn`: binds listeners as the snapshot says and keeps them in step.

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::metrics::Metrics;
use crate::snapshot::ProxySnapshot;
use crate::state::Current;
use crate::Error;

/// Shared by every task of one proxy.
pub(crate) struct Ctx {
    pub current: Current,
    pub metrics: Arc<Metrics>,
    pub acceptor: TlsAcceptor,
    /// HTTP/1.1 client to the local app (protocol `http`).
    pub http: crate::l7::LocalClient,
    /// h2 client to the local app (protocols `http2`, `grpc`).
    pub h2: crate::l7::LocalClient,
    /// Fires when live connections must be cut (end of drain, or abort).
    pub stop: CancellationToken,
    /// Fires when listeners must close (start of shutdown).
    pub closing: CancellationToken,
    /// Every connection task, so `join` can wait for them.
    pub tracker: TaskTracker,
}

/// Addresses the proxy has bound, published after each snapshot is applied.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Bound {
    /// Index of the snapshot these bindings reflect.
    pub index: u64,
    /// The public listener's address, once bound.
    pub public: Option<SocketAddr>,
    /// Upstream listeners by destination name.
    pub upstreams: BTreeMap<String, SocketAddr>,
    /// The admin listener, if one was given.
    pub admin: Option<SocketAddr>,
    /// Bind failures of the last apply (`what: error`).
    pub errors: Vec<String>,
}

/// The built-in sidecar.
pub struct Proxy;

/// Handle on a running proxy: bound addresses, metrics, shutdown.
pub struct ProxyHandle {
    bound: watch::Receiver<Bound>,
    metrics: Arc<Metrics>,
    stop: CancellationToken,
    closing: CancellationToken,
    task: tokio::task::JoinHandle<()>,
    tracker: TaskTracker,
}

/// How soon a failed bind is retried without a new snapshot.
const BIND_RETRY: Duration = Duration::from_secs(1);

/// How long live connections may finish after shutdown before they are cut.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

impl Proxy {
    /// Starts the sidecar driven by `snapshots`; it drains when `shutdown` completes.
    ///
    /// Listeners are bound from the snapshot (port 0 allowed; see
    /// [`ProxyHandle::bound`]). `admin`, if given, serves `/ready` and `/metrics`.
    /// On shutdown listeners close at once and live connections get
    /// [`DRAIN_TIMEOUT`] to finish before they are cut.
    pub fn spawn(
        snapshots: watch::Receiver<Arc<ProxySnapshot>>,
        admin: Option<TcpListener>,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> ProxyHandle {
        let current = Current::new(snapshots);
        let stop = CancellationToken::new();
        let closing = CancellationToken::new();
        let tracker = TaskTracker::new();
        let ctx = Arc::new(Ctx {
            acceptor: TlsAcceptor::from(crate::tls::server_config(&current)),
            current,
            metrics: Arc::new(Metrics::default()),
            http: crate::l7::local_client(false),
            h2: crate::l7::local_client(true),
            stop: stop.clone(),
            closing: closing.clone(),
            tracker: tracker.clone(),
        });
        let (stop2, closing2, tracker2) = (stop.clone(), closing.clone(), tracker.clone());
        tokio::spawn(async move {
            tokio::select! {
                _ = shutdown => {}
                _ = closing2.cancelled() => {}
            }
            closing2.cancel();
            tracker2.close();
            tokio::select! {
                _ = tracker2.wait() => {}
                _ = tokio::time::sleep(DRAIN_TIMEOUT) => {
                    tracing::info!(left = tracker2.len(), "drain timeout: cutting live connections");
                }
                _ = stop2.cancelled() => {}
            }
            stop2.cancel();
        });
        let mut initial = Bound::default();
        if let Some(l) = admin {
            initial.admin = l.local_addr().ok();
            tracker.spawn(crate::admin::serve(ctx.clone(), l, closing.clone()));
        }
        let (bound_tx, bound) = watch::channel(initial);
        let metrics = ctx.metrics.clone();
        let task = tokio::spawn(supervise(ctx, bound_tx));
        ProxyHandle {
            bound,
            metrics,
            stop,
            closing,
            task,
            tracker,
        }
    }
}

impl ProxyHandle {
    /// A receiver of the bound addresses, updated after each snapshot.
    pub fn bound(&self) -> watch::Receiver<Bound> {
        self.bound.clone()
    }

    /// Waits until the bindings satisfy `f` (e.g. an upstream is bound), up to `timeout`.
    pub async fn wait_bound(
        &self,
        timeout: Duration,
        f: impl FnMut(&Bound) -> bool,
    ) -> Option<Bound> {
        let mut rx = self.bound.clone();
        let res = tokio::time::timeout(timeout, rx.wait_for(f)).await;
        match res {
            Ok(Ok(b)) => Some(b.clone()),
            _ => None,
        }
    }

    /// The proxy's counters.
    pub fn metrics(&self) -> Arc<Metrics> {
        self.metrics.clone()
    }

    /// Starts a graceful shutdown: listeners close, live connections drain.
    pub fn shutdown(&self) {
        self.closing.cancel();
    }

    /// Stops at once: listeners close and live connections are cut.
    pub fn abort(&self) {
        self.closing.cancel();
        self.stop.cancel();
    }

    /// Waits until the proxy and all its connection tasks have finished.
    pub async fn join(self) {
        let _ = self.task.await;
        self.tracker.close();
        self.tracker.wait().await;
    }
}

// === supervision ===

/// One bound listener and the token that closes it.
struct Running {
    key: (String, u16),
    addr: SocketAddr,
    stop: CancellationToken,
}

async fn supervise(ctx: Arc<Ctx>, bound_tx: watch::Sender<Bound>) {
    let mut rx = ctx.current.subscribe();
    let mut public: Option<Running> = None;
    let mut upstreams: BTreeMap<String, Running> = BTreeMap::new();
    loop {
        let m = ctx.current.get();
        let snap = &m.snap;
        let mut errors = Vec::new();
        let mut bind_failed = false;

        // Public listener: bound once the snapshot names an address or a port
        // (an empty address means all interfaces, as in Consul).
        let p = &snap.public;
        let want = (!p.bind_address.is_empty() || p.bind_port != 0).then(|| {
            let addr = if p.bind_address.is_empty() {
                "0.0.0.0"
            } else {
                &p.bind_address
            };
            (addr.to_string(), p.bind_port)
        });
        if public.as_ref().map(|r| &r.key) != want.as_ref() {
            if let Some(old) = public.take() {
                old.stop.cancel();
            }
            if let Some(key) = want {
                match bind(&key).await {
                    Ok(l) => public = Some(start(&ctx, key, l, None)),
                    Err(e) => {
                        bind_failed = true;
                        errors.push(format!("public listener: {e}"));
                    }
                }
            }
        }

        // Upstreams: (re)bind changed ones, close removed ones.
        upstreams.retain(|name, r| {
            let keep = snap.upstreams.iter().any(|u| {
                &u.destination_name == name
                    && (u.local_bind_address.clone(), u.local_bind_port) == r.key
            });
            if !keep {
                tracing::info!(upstream = %name, "closing upstream listener");
                r.stop.cancel();
            }
            keep
        });
        let mut seen = std::collections::BTreeSet::new();
        for u in &snap.upstreams {
            if !seen.insert(u.destination_name.as_str()) {
                errors.push(format!(
                    "upstream {}: listed twice; the first entry is used",
                    u.destination_name
                ));
                continue;
            }
            if upstreams.contains_key(&u.destination_name) {
                continue;
            }
            let addr = if u.local_bind_address.is_empty() {
                "127.0.0.1".to_string()
            } else {
                u.local_bind_address.clone()
            };
            let key = (u.local_bind_address.clone(), u.local_bind_port);
            match bind(&(addr, u.local_bind_port)).await {
                Ok(l) => {
                    let r = start(&ctx, key, l, Some(u.destination_name.clone()));
                    upstreams.insert(u.destination_name.clone(), r);
                }
                Err(e) => {
                    bind_failed = true;
                    errors.push(format!("upstream {}: {e}", u.destination_name));
                }
            }
        }
        for e in &errors {
            tracing::error!(index = snap.index, "{e}");
        }
        bound_tx.send_modify(|b| {
            b.index = snap.index;
            b.public = public.as_ref().map(|r| r.addr);
            b.upstreams = upstreams.iter().map(|(n, r)| (n.clone(), r.addr)).collect();
            b.errors = errors;
        });

        tokio::select! {
            // A port still held by a previous process: try again shortly.
            _ = tokio::time::sleep(BIND_RETRY), if bind_failed => {}
            changed = rx.changed() => if changed.is_err() {
                // No more snapshots: keep serving the last one until stopped.
                ctx.closing.cancelled().await;
                break;
            },
            _ = ctx.closing.cancelled() => break,
        }
    }
    if let Some(p) = public {
        p.stop.cancel();
    }
    for r in upstreams.values() {
        r.stop.cancel();
    }
}

async fn bind(key: &(String, u16)) -> Result<TcpListener, Error> {
    let addr = format!("{}:{}", key.0, key.1);
    TcpListener::bind(&addr)
        .await
        .map_err(|source| Error::Bind { addr, source })
}

fn start(ctx: &Arc<Ctx>, key: (String, u16), l: TcpListener, upstream: Option<String>) -> Running {
    let addr = l.local_addr().expect("bound listener has an address");
    let stop = ctx.closing.child_token();
    match upstream {
        None => {
            tracing::info!(%addr, "public listener bound");
            ctx.tracker
                .spawn(crate::inbound::serve(ctx.clone(), l, stop.clone()));
        }
        Some(name) => {
            tracing::info!(%addr, upstream = %name, "upstream listener bound");
            ctx.tracker
                .spawn(crate::outbound::serve(ctx.clone(), name, l, stop.clone()));
        }
    }
    Running { key, addr, stop }
}
