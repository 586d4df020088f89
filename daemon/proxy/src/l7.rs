//! L7 on the public listener: HTTP/1.1 and h2 after mTLS, permissions per
//! request, forwarding to the local app over a pooled HTTP/1.1 client.
//!
//! `Upgrade` requests (WebSocket) are forwarded with their headers; on 101 both
//! sides are upgraded and bytes are copied until either side closes.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Request, Response, StatusCode, Uri, Version};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio_rustls::server::TlsStream;

use crate::inbound::Wire;
use crate::proxy::Ctx;
use crate::snapshot::Protocol;
use mesh_policy::RequestView;

/// Response body of the L7 path.
type Body = BoxBody<Bytes, hyper::Error>;

/// Pooled HTTP/1.1 client to the local application.
pub(crate) type LocalClient = Client<HttpConnector, Incoming>;

/// Builds the pooled client used to reach the local app (h2 prior knowledge if `h2`).
pub(crate) fn local_client(h2: bool) -> LocalClient {
    let mut conn = HttpConnector::new();
    conn.set_nodelay(true);
    Client::builder(TokioExecutor::new())
        .http2_only(h2)
        .build(conn)
}

/// Serves HTTP on an authenticated connection from `source`.
pub(crate) async fn serve(ctx: Arc<Ctx>, tls: TlsStream<Wire>, source: String, peer: SocketAddr) {
    let svc_ctx = ctx.clone();
    let svc_source: Arc<str> = source.clone().into();
    let svc = hyper::service::service_fn(move |req| {
        let (ctx, source) = (svc_ctx.clone(), svc_source.clone());
        async move { Ok::<_, Infallible>(handle(ctx, &source, peer, req).await) }
    });
    let builder = auto::Builder::new(TokioExecutor::new());
    let conn = builder.serve_connection_with_upgrades(TokioIo::new(tls), svc);
    // On shutdown, finish in-flight requests and close idle keep-alive
    // connections instead of holding the drain until it times out.
    let closing = ctx.closing.clone();
    let work = async move {
        tokio::pin!(conn);
        tokio::select! {
            res = conn.as_mut() => res,
            _ = closing.cancelled() => {
                conn.as_mut().graceful_shutdown();
                conn.await
            }
        }
    };
    if let Some(Err(e)) = crate::inbound::guarded(&ctx, &source, peer, Protocol::Http, work).await {
        tracing::debug!(%peer, %source, error = %e, "http connection ended with error");
    }
}

struct View<'a>(&'a Request<Incoming>);

impl RequestView for View<'_> {
    fn path(&self) -> &str {
        self.0.uri().path()
    }
    fn method(&self) -> &str {
        self.0.method().as_str()
    }
    fn header_values(&self, name: &str) -> Vec<&str> {
        self.0
            .headers()
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect()
    }
}

fn text(status: StatusCode, msg: &'static str) -> Response<Body> {
    let mut r = Response::new(
        Full::new(Bytes::from_static(msg.as_bytes()))
            .map_err(|e: Infallible| match e {})
            .boxed(),
    );
    *r.status_mut() = status;
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    r
}

fn is_upgrade(req: &Request<Incoming>) -> bool {
    req.version() == Version::HTTP_11 && req.headers().contains_key(header::UPGRADE)
}

/// Headers that describe one hop and must not be forwarded.
const HOP_BY_HOP: [&str; 7] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

pub(crate) fn strip_hop_by_hop(headers: &mut hyper::HeaderMap) {
    // Also the headers named by `Connection`.
    let named: Vec<String> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(',').map(|s| s.trim().to_ascii_lowercase()))
        .collect();
    for n in named {
        headers.remove(n.as_str());
    }
    for h in HOP_BY_HOP {
        headers.remove(h);
    }
}

async fn handle(
    ctx: Arc<Ctx>,
    source: &str,
    peer: SocketAddr,
    mut req: Request<Incoming>,
) -> Response<Body> {
    ctx.metrics.http_requests.fetch_add(1, Relaxed);
    let m = ctx.current.get();
    let verdict = m.policy.request(source, &View(&req));
    if !verdict.allow {
        ctx.metrics.http_denied.fetch_add(1, Relaxed);
        tracing::info!(%source, method = %req.method(), path = req.uri().path(), reason = %verdict.reason, "request denied by intention");
        return text(StatusCode::FORBIDDEN, "RBAC: access denied\n");
    }

    let (host, port) = crate::inbound::local_addr(&ctx);
    let pq = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/");
    let Ok(uri) = Uri::try_from(format!("http://{host}:{port}{pq}")) else {
        return text(StatusCode::BAD_REQUEST, "bad request target\n");
    };
    let h2 = matches!(m.snap.public.protocol, Protocol::Http2 | Protocol::Grpc);
    drop(m);
    let upgrade = !h2 && is_upgrade(&req);
    // gRPC needs `te: trailers`, the one TE value h2 allows.
    let te_trailers = req
        .headers()
        .get(header::TE)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"trailers"));
    let upgrade_headers = upgrade.then(|| {
        (
            req.headers().get(header::UPGRADE).cloned(),
            req.headers().get(header::CONNECTION).cloned(),
        )
    });
    let inbound_upgrade = upgrade.then(|| hyper::upgrade::on(&mut req));

    // h2 carries the authority in the URI; the app expects a Host header.
    if !req.headers().contains_key(header::HOST) {
        if let Some(auth) = req
            .uri()
            .authority()
            .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
        {
            req.headers_mut().insert(header::HOST, auth);
        }
    }
    strip_hop_by_hop(req.headers_mut());
    if let Some((up, _conn)) = upgrade_headers {
        if let Some(up) = up {
            req.headers_mut().insert(header::UPGRADE, up);
        }
        req.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    }
    if te_trailers {
        req.headers_mut()
            .insert(header::TE, HeaderValue::from_static("trailers"));
    }
    *req.uri_mut() = uri;
    let client = if h2 {
        // The authority travels in the URI; h2 has no Host header.
        req.headers_mut().remove(header::HOST);
        *req.version_mut() = Version::HTTP_2;
        &ctx.h2
    } else {
        *req.version_mut() = Version::HTTP_11;
        &ctx.http
    };

    let mut resp = match client.request(req).await {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(%source, error = %e, local = %format!("{host}:{port}"), "local service request failed");
            return text(StatusCode::BAD_GATEWAY, "local service unavailable\n");
        }
    };

    if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
        if let Some(inbound) = inbound_upgrade {
            let outbound = hyper::upgrade::on(&mut resp);
            let (ctx2, source) = (ctx.clone(), source.to_string());
            ctx.tracker.spawn(async move {
                match tokio::try_join!(inbound, outbound) {
                    Ok((a, b)) => {
                        let (mut a, mut b) = (TokioIo::new(a), TokioIo::new(b));
                        // The tunnel outlives the HTTP connection: keep enforcing.
                        let copy = tokio::io::copy_bidirectional(&mut a, &mut b);
                        let _ = crate::inbound::guarded(&ctx2, &source, peer, Protocol::Http, copy)
                            .await;
                    }
                    Err(e) => tracing::info!(error = %e, "upgrade failed"),
                }
            });
            return resp.map(|b| b.boxed());
        }
    }
    strip_hop_by_hop(resp.headers_mut());
    resp.map(|b| b.boxed())
}
