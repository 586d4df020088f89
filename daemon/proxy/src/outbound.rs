//! Upstream listeners: plain TCP from the local app, mTLS to a destination sidecar.
//!
//! Each accepted connection reads the upstream's *current* endpoints, picks
//! one round robin and falls over to the next on connect or handshake
//! failure (bounded), checking the peer's exact SPIFFE ID.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rustls::ClientConfig;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::client::TlsStream;
use tokio_rustls::{TlsAcceptor, TlsConnector};
use tokio_util::sync::CancellationToken;

use crate::inbound::Wire;
use crate::inbound::COPY_BUF;
use crate::metrics::{Counted, GaugeGuard};
use crate::proxy::Ctx;
use crate::snapshot::Endpoint;
use crate::Error;

/// At most this many endpoints are tried for one connection.
const MAX_ATTEMPTS: usize = 3;
const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_millis(5000);
/// How long a gateway listener's caller has to finish its TLS handshake.
const TLS_HANDSHAKE: Duration = Duration::from_secs(10);

/// State shared by the connections of one upstream listener.
struct Listener {
    name: String,
    next: AtomicUsize,
    /// Client configs by expected SPIFFE ID (each carries its own verifier).
    configs: Mutex<HashMap<String, Arc<ClientConfig>>>,
    /// Pooled clients for connections routed per request.
    routed: Arc<crate::routed::Routed>,
    /// Connections open per endpoint (least request).
    active: Arc<crate::lb::Active>,
    /// Endpoints left out after failing in a row.
    outliers: crate::lb::Outliers,
}

/// Accepts on one upstream listener until `stop` (this listener's token) fires.
pub(crate) async fn serve(
    ctx: Arc<Ctx>,
    name: String,
    listener: TcpListener,
    stop: CancellationToken,
) {
    let state = Arc::new(Listener {
        name,
        next: AtomicUsize::new(0),
        configs: Mutex::new(HashMap::new()),
        routed: Arc::new(crate::routed::Routed::new(&ctx)),
        active: Default::default(),
        outliers: Default::default(),
    });
    loop {
        let (tcp, _peer) = tokio::select! {
            _ = stop.cancelled() => return,
            res = listener.accept() => match res {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!(upstream = %state.name, error = %e, "upstream accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let (ctx2, state2) = (ctx.clone(), state.clone());
        ctx.tracker
            .spawn(async move { handle(ctx2, state2, tcp).await });
    }
}

async fn handle(ctx: Arc<Ctx>, state: Arc<Listener>, local: TcpStream) {
    let um = ctx.metrics.upstream(&state.name);
    um.connections.fetch_add(1, Relaxed);
    let _active = GaugeGuard::inc(&um.active);
    let _ = local.set_nodelay(true);
    // Routes, splits or an ingress gateway's hosts decide per request:
    // parse the caller's HTTP. A gateway listener may speak TLS first.
    let (routed, tls, files, max_connections) = {
        let current = ctx.current.get();
        current
            .snap
            .upstreams
            .iter()
            .find(|u| u.destination_name == state.name)
            .map_or((false, false, None, 0), |u| {
                let files = (!u.tls_cert_file.is_empty())
                    .then(|| (u.tls_cert_file.clone(), u.tls_key_file.clone()));
                (
                    crate::routed::per_request(u),
                    u.tls,
                    files,
                    u.max_connections,
                )
            })
    };
    // The calling service's limit (service-defaults UpstreamConfig.Limits).
    if max_connections > 0 && um.active.load(Relaxed) > u64::from(max_connections) {
        um.failures.fetch_add(1, Relaxed);
        tracing::info!(upstream = %state.name, max_connections, "connection refused: the upstream's connection limit is reached");
        return;
    }
    let name: Arc<str> = state.name.as_str().into();
    let source = local.peer_addr().ok().map(|a| a.ip());
    if tls {
        let config = match files {
            None => crate::tls::gateway_server_config(&ctx.current),
            Some((cert, key)) => match crate::tls::gateway_file_config(&ctx.current, &cert, &key) {
                Ok(config) => config,
                Err(e) => {
                    tracing::warn!(upstream = %state.name, error = %e, "gateway TLS certificate unreadable; connection closed");
                    return;
                }
            },
        };
        let acceptor = TlsAcceptor::from(config);
        let stream = match tokio::time::timeout(TLS_HANDSHAKE, acceptor.accept(local)).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                tracing::debug!(upstream = %state.name, error = %e, "gateway TLS handshake failed");
                return;
            }
            Err(_) => return,
        };
        if routed {
            crate::routed::serve(ctx.clone(), state.routed.clone(), name, stream, source).await;
        } else {
            splice(&ctx, &state, &um, stream, source).await;
        }
        return;
    }
    if routed {
        crate::routed::serve(ctx.clone(), state.routed.clone(), name, local, source).await;
    } else {
        splice(&ctx, &state, &um, local, source).await;
    }
}

/// Copies bytes between the caller and a sidecar of the upstream.
async fn splice<S>(
    ctx: &Arc<Ctx>,
    state: &Listener,
    um: &crate::metrics::UpstreamMetrics,
    local: S,
    source: Option<std::net::IpAddr>,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    // The connection counts against its endpoint while open (least request).
    let (mut remote, _in_flight) = match dial(ctx, state, um, source).await {
        Ok(s) => s,
        Err(e) => {
            um.failures.fetch_add(1, Relaxed);
            tracing::warn!(upstream = %state.name, error = %e, "upstream connection dropped");
            return;
        }
    };
    let mut local = Counted::new(local, &um.bytes_out, &um.bytes_in);
    let copy =
        tokio::io::copy_bidirectional_with_sizes(&mut local, &mut remote, COPY_BUF, COPY_BUF);
    tokio::select! {
        _ = copy => {}
        _ = ctx.stop.cancelled() => {}
    }
}

async fn dial(
    ctx: &Ctx,
    state: &Listener,
    um: &crate::metrics::UpstreamMetrics,
    source: Option<std::net::IpAddr>,
) -> Result<(TlsStream<Wire>, crate::lb::InFlight), Error> {
    let m = ctx.current.get();
    let Some(up) = m
        .snap
        .upstreams
        .iter()
        .find(|u| u.destination_name == state.name)
    else {
        return Err(Error::NoEndpoint {
            upstream: state.name.clone(),
            last: "upstream no longer in the snapshot".into(),
        });
    };
    let n = up.endpoints.len();
    if n == 0 {
        return Err(Error::NoEndpoint {
            upstream: state.name.clone(),
            last: "no healthy endpoints".into(),
        });
    }
    let timeout = match up.connect_timeout_ms {
        0 => DEFAULT_CONNECT_TIMEOUT,
        ms => Duration::from_millis(ms),
    };
    // A connection offers only its source address to hash on.
    let lb = up.load_balancer.as_ref();
    let key = lb.and_then(|lb| {
        let inputs = crate::lb::HashInputs {
            source,
            ..Default::default()
        };
        crate::lb::hash_key(lb, &inputs)
    });
    let start = crate::lb::pick(lb, &up.endpoints, &state.next, &state.active, key);
    let start = state.outliers.skip_ejected(start, &up.endpoints);
    let mut last = String::new();
    for i in 0..n.min(MAX_ATTEMPTS) {
        let ep = &up.endpoints[(start + i) % n];
        let cfg = client_config(ctx, state, &ep.spiffe_id, !ep.sni.is_empty());
        match tokio::time::timeout(timeout, connect(ep, cfg)).await {
            Ok(Ok(s)) => {
                state.outliers.record(ep, true, up.outlier.as_ref(), n);
                return Ok((s, state.active.start(ep)));
            }
            Ok(Err(e)) => {
                let reason = crate::tls::failure_reason(&e);
                last = format!(
                    "{}:{}: {reason}: {}",
                    ep.address,
                    ep.port,
                    crate::tls::describe_failure(&e)
                );
            }
            Err(_) => last = format!("{}:{}: timed out after {timeout:?}", ep.address, ep.port),
        }
        um.attempt_failures.fetch_add(1, Relaxed);
        state.outliers.record(ep, false, up.outlier.as_ref(), n);
        tracing::info!(upstream = %state.name, attempt = i + 1, error = %last, "upstream endpoint failed");
    }
    Err(Error::NoEndpoint {
        upstream: state.name.clone(),
        last,
    })
}

fn client_config(ctx: &Ctx, state: &Listener, expected: &str, sni: bool) -> Arc<ClientConfig> {
    let key = format!("{}{expected}", if sni { "sni:" } else { "" });
    let mut map = state.configs.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(c) = map.get(&key) {
        return c.clone();
    }
    if map.len() > 256 {
        map.clear();
    }
    let cfg = crate::tls::client_config_with_sni(&ctx.current, expected, sni);
    map.insert(key, cfg.clone());
    cfg
}

async fn connect(ep: &Endpoint, cfg: Arc<ClientConfig>) -> std::io::Result<TlsStream<Wire>> {
    let tcp = TcpStream::connect((ep.address.as_str(), ep.port)).await?;
    let _ = tcp.set_nodelay(true);
    let name = if ep.sni.is_empty() {
        &ep.address
    } else {
        &ep.sni
    };
    TlsConnector::from(cfg)
        .connect(crate::tls::server_name(name), crate::inbound::wire(tcp))
        .await
}
