//! HTTP upstreams whose discovery chain decides per request: the local
//! app's requests are parsed, walked through the chain (routes by path,
//! headers, query and method; weighted splits; the resolver's target) and
//! sent over pooled mTLS connections to a sidecar of that target, with the
//! route's rewrites, header changes, timeout and retries. The chain is read
//! from the current snapshot for every request, so a change of weights or
//! routes applies to keep-alive connections at once.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{HeaderName, HeaderValue};
use hyper::{Request, Response, StatusCode, Uri};
use hyper_util::client::legacy::connect::{Connected, Connection};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use mesh_chain::entries::{HeaderMods, HttpMatch, RouteDestination};
use mesh_chain::CompiledChain;
use rand::Rng;
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

use crate::inbound::Wire;
use crate::proxy::Ctx;
use crate::snapshot::{Endpoint, Protocol, Upstream};

/// The largest request body kept to send again when a route retries; a
/// larger one is refused with 413 rather than sent once unretried.
pub const MAX_RETRY_BODY_BYTES: usize = 1024 * 1024;

type Body = BoxBody<Bytes, hyper::Error>;

/// Per upstream listener: pooled clients and the state of its choices.
pub(crate) struct Routed {
    h1: Client<MeshConnector, Body>,
    h2: Client<MeshConnector, Body>,
    next: AtomicUsize,
    /// Requests in flight per endpoint (least request).
    active: Arc<crate::lb::Active>,
    /// Requests in flight in all (service-defaults MaxConcurrentRequests).
    in_flight: Arc<AtomicUsize>,
    /// Endpoints left out after failing in a row.
    outliers: crate::lb::Outliers,
    identities: Arc<Mutex<HashMap<String, Dial>>>,
    regexes: Mutex<HashMap<String, Option<regex::Regex>>>,
}

impl Routed {
    pub(crate) fn new(ctx: &Arc<Ctx>) -> Self {
        let identities: Arc<Mutex<HashMap<String, Dial>>> = Default::default();
        let connector = MeshConnector {
            ctx: ctx.clone(),
            identities: identities.clone(),
        };
        let client = |h2: bool| {
            Client::builder(TokioExecutor::new())
                .http2_only(h2)
                .pool_idle_timeout(Duration::from_secs(60))
                .build(connector.clone())
        };
        Routed {
            h1: client(false),
            h2: client(true),
            next: AtomicUsize::new(0),
            active: Default::default(),
            in_flight: Default::default(),
            outliers: Default::default(),
            identities,
            regexes: Default::default(),
        }
    }

    /// Whether `pattern` matches all of `text` (Envoy's full match).
    fn full_match(&self, pattern: &str, text: &str) -> bool {
        let mut cache = self.regexes.lock().unwrap_or_else(|p| p.into_inner());
        if cache.len() > 1024 {
            cache.clear();
        }
        cache
            .entry(pattern.to_string())
            .or_insert_with(|| regex::Regex::new(&format!("^(?:{pattern})$")).ok())
            .as_ref()
            .is_some_and(|re| re.is_match(text))
    }
}

/// Serves the local app's HTTP on one accepted connection.
pub(crate) async fn serve<S>(
    ctx: Arc<Ctx>,
    routed: Arc<Routed>,
    name: Arc<str>,
    local: S,
    source: Option<std::net::IpAddr>,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let svc = hyper::service::service_fn(move |req| {
        let (ctx, routed, name) = (ctx.clone(), routed.clone(), name.clone());
        async move { Ok::<_, Infallible>(handle(&ctx, &routed, &name, req, source).await) }
    });
    let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    if let Err(e) = builder.serve_connection(TokioIo::new(local), svc).await {
        tracing::debug!(error = %e, "routed upstream connection ended with error");
    }
}

fn text(status: StatusCode, msg: impl Into<String>) -> Response<Body> {
    let mut r = Response::new(
        Full::new(Bytes::from(msg.into()))
            .map_err(|e: Infallible| match e {})
            .boxed(),
    );
    *r.status_mut() = status;
    r
}

/// What the chain decided for one request.
struct Decision<'c> {
    target: String,
    destination: Option<&'c RouteDestination>,
    /// The path prefix (or exact path) the route matched, for a rewrite.
    matched: Option<&'c str>,
    split_headers: Option<(&'c HeaderMods, &'c HeaderMods)>,
    request_timeout: Option<Duration>,
    load_balancer: Option<&'c mesh_chain::entries::LoadBalancer>,
}

fn matches(routed: &Routed, m: &HttpMatch, req: &Request<Incoming>) -> bool {
    let path = req.uri().path();
    if !m.pathexact.is_empty() && path != m.pathexact {
        return false;
    }
    if !m.pathprefix.is_empty() && !path.starts_with(&m.pathprefix) {
        return false;
    }
    if !m.pathregex.is_empty() && !routed.full_match(&m.pathregex, path) {
        return false;
    }
    if !m.methods.is_empty() && !m.methods.iter().any(|x| x == req.method().as_str()) {
        return false;
    }
    let headers = req.headers();
    for h in &m.header {
        let value = headers.get(h.name.as_str()).and_then(|v| v.to_str().ok());
        let hit = match value {
            None => false,
            Some(v) if !h.exact.is_empty() => v == h.exact,
            Some(v) if !h.prefix.is_empty() => v.starts_with(&h.prefix),
            Some(v) if !h.suffix.is_empty() => v.ends_with(&h.suffix),
            Some(v) if !h.regex.is_empty() => routed.full_match(&h.regex, v),
            Some(_) => true,
        };
        if hit == h.invert {
            return false;
        }
    }
    if !m.queryparam.is_empty() {
        let query: Vec<(String, String)> = req
            .uri()
            .query()
            .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
            .unwrap_or_default();
        for q in &m.queryparam {
            let value = query
                .iter()
                .find(|(k, _)| *k == q.name)
                .map(|(_, v)| v.as_str());
            let hit = match value {
                None => false,
                Some(v) if !q.exact.is_empty() => v == q.exact,
                Some(v) if !q.regex.is_empty() => routed.full_match(&q.regex, v),
                Some(_) => true,
            };
            if !hit {
                return false;
            }
        }
    }
    true
}

/// Walks `chain` for `req`: the first matching route, a weighted split,
/// down to a resolver's target.
fn decide<'c>(
    routed: &Routed,
    chain: &'c CompiledChain,
    req: &Request<Incoming>,
) -> Option<Decision<'c>> {
    let mut d = Decision {
        target: String::new(),
        destination: None,
        matched: None,
        split_headers: None,
        request_timeout: None,
        load_balancer: None,
    };
    let mut node = chain.nodes.get(&chain.start_node)?;
    for _ in 0..=chain.nodes.len() {
        let next = match node.kind.as_str() {
            "router" => {
                let route = node.routes.as_ref()?.iter().find(|r| {
                    r.definition
                        .r#match
                        .as_ref()
                        .and_then(|m| m.http.as_ref())
                        .is_none_or(|m| matches(routed, m, req))
                })?;
                d.destination = route.definition.destination.as_ref();
                let http = route
                    .definition
                    .r#match
                    .as_ref()
                    .and_then(|m| m.http.as_ref());
                d.matched = http.and_then(|h| {
                    [&h.pathprefix, &h.pathexact]
                        .into_iter()
                        .find(|p| !p.is_empty())
                        .map(String::as_str)
                });
                &route.next_node
            }
            "splitter" => {
                let splits = node.splits.as_ref()?;
                let total: f64 = splits.iter().map(|s| s.weight).sum();
                let mut pick = rand::rng().random_range(0.0..total.max(f64::MIN_POSITIVE));
                let split = splits
                    .iter()
                    .find(|s| {
                        pick -= s.weight;
                        pick < 0.0
                    })
                    .or(splits.last())?;
                d.split_headers = Some((&split.request_headers, &split.response_headers));
                &split.next_node
            }
            _ => {
                let resolver = node.resolver.as_ref()?;
                d.target = resolver.target.clone();
                d.request_timeout = resolver.request_timeout.map(|t| t.0);
                d.load_balancer = node.load_balancer.as_ref();
                return Some(d);
            }
        };
        node = chain.nodes.get(next)?;
    }
    None
}

fn apply_headers(headers: &mut hyper::HeaderMap, mods: &HeaderMods) {
    for (k, v) in &mods.add {
        if let (Ok(k), Ok(v)) = (
            HeaderName::try_from(k.as_str()),
            HeaderValue::try_from(v.as_str()),
        ) {
            headers.append(k, v);
        }
    }
    for (k, v) in &mods.set {
        if let (Ok(k), Ok(v)) = (
            HeaderName::try_from(k.as_str()),
            HeaderValue::try_from(v.as_str()),
        ) {
            headers.insert(k, v);
        }
    }
    for k in &mods.remove {
        headers.remove(k.as_str());
    }
}

/// When a response or failure is worth another attempt.
struct RetryPolicy {
    attempts: u32,
    on_connect_failure: bool,
    on_status: Vec<u16>,
}

impl RetryPolicy {
    fn of(d: Option<&RouteDestination>) -> Self {
        let Some(d) = d else {
            return RetryPolicy {
                attempts: 1,
                on_connect_failure: false,
                on_status: Vec::new(),
            };
        };
        // Retries with no condition named retry failures and 5xx answers.
        let unconditional =
            d.numretries > 0 && !d.retryonconnectfailure && d.retryonstatuscodes.is_empty();
        RetryPolicy {
            attempts: 1 + d.numretries.max(u32::from(d.retryonconnectfailure)),
            on_connect_failure: d.retryonconnectfailure || unconditional,
            on_status: if unconditional {
                (500..600).collect()
            } else {
                d.retryonstatuscodes.clone()
            },
        }
    }
}
/// Where one request may go: an upstream's chain, or the chain of the
/// service an ingress listener routes its host to.
struct Way<'u> {
    chain: Option<&'u CompiledChain>,
    targets: &'u std::collections::BTreeMap<String, Vec<Endpoint>>,
    endpoints: &'u [Endpoint],
}

/// The request's host, lowercase and without a port.
fn host_of(req: &Request<Incoming>) -> String {
    let given = req
        .uri()
        .host()
        .map(str::to_string)
        .or_else(|| {
            req.headers()
                .get(hyper::header::HOST)
                .and_then(|h| h.to_str().ok())
                .map(str::to_string)
        })
        .unwrap_or_default();
    let host = match given.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or_default(),
        None => match given.rsplit_once(':') {
            Some((h, port)) if !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) => h,
            _ => given.as_str(),
        },
    };
    host.to_ascii_lowercase()
}

fn way_for<'u>(up: &'u Upstream, req: &Request<Incoming>) -> Option<Way<'u>> {
    if up.ingress.is_empty() {
        return Some(Way {
            chain: up.chain.as_ref(),
            targets: &up.targets,
            endpoints: &up.endpoints,
        });
    }
    let host = host_of(req);
    let route = up
        .ingress
        .iter()
        .find(|r| r.hosts.contains(&host))
        .or_else(|| up.ingress.iter().find(|r| r.hosts.iter().any(|h| h == "*")))?;
    Some(Way {
        chain: route.chain.as_ref(),
        targets: &route.targets,
        endpoints: &route.endpoints,
    })
}

async fn handle(
    ctx: &Arc<Ctx>,
    routed: &Routed,
    name: &str,
    req: Request<Incoming>,
    source: Option<std::net::IpAddr>,
) -> Response<Body> {
    let current = ctx.current.get();
    let Some(up) = current
        .snap
        .upstreams
        .iter()
        .find(|u| u.destination_name == name)
    else {
        return text(
            StatusCode::SERVICE_UNAVAILABLE,
            "upstream no longer in the snapshot\n",
        );
    };
    let Some(way) = way_for(up, &req) else {
        let host = host_of(&req);
        return text(
            StatusCode::NOT_FOUND,
            format!("no service for host {host:?}\n"),
        );
    };
    let decision = way.chain.and_then(|c| decide(routed, c, &req));
    let endpoints: &[Endpoint] = match &decision {
        Some(d) => way
            .targets
            .get(&d.target)
            .map(Vec::as_slice)
            .unwrap_or_default(),
        None => way.endpoints,
    };
    if endpoints.is_empty() {
        return text(StatusCode::SERVICE_UNAVAILABLE, "no healthy upstream\n");
    }
    let limit = up.max_concurrent_requests as usize;
    let _request = InFlightRequest::enter(&routed.in_flight);
    if limit > 0 && _request.count > limit {
        return text(
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "upstream overflow: {limit} requests already in flight (MaxConcurrentRequests)\n"
            ),
        );
    }
    let destination = decision.as_ref().and_then(|d| d.destination);
    let policy = RetryPolicy::of(destination);
    let timeout = destination
        .map(|d| d.requesttimeout.0)
        .filter(|t| !t.is_zero())
        .or(decision.as_ref().and_then(|d| d.request_timeout));

    let (mut parts, body) = req.into_parts();
    crate::l7::strip_hop_by_hop(&mut parts.headers);
    let mut path = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "/".into());
    if let (Some(d), Some(prefix)) = (destination, decision.as_ref().and_then(|d| d.matched)) {
        if !d.prefixrewrite.is_empty() && path.starts_with(prefix) {
            path = format!("{}{}", d.prefixrewrite, &path[prefix.len()..]);
        }
    }
    if let Some(d) = destination {
        apply_headers(&mut parts.headers, &d.requestheaders);
    }
    if let Some((request, _)) = decision.as_ref().and_then(|d| d.split_headers) {
        apply_headers(&mut parts.headers, request);
    }
    // A body sent more than once is kept; otherwise it streams through.
    let (mut streamed, kept) = if policy.attempts > 1 {
        match Limited::new(body, MAX_RETRY_BODY_BYTES).collect().await {
            Ok(b) => (None, Some(b.to_bytes())),
            Err(_) => {
                return text(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!("a retried request's body is at most {MAX_RETRY_BODY_BYTES} bytes (MAX_RETRY_BODY_BYTES)\n"),
                )
            }
        }
    } else {
        (Some(body.boxed()), None)
    };
    let (client, version) = if matches!(up.protocol, Protocol::Http2 | Protocol::Grpc) {
        (&routed.h2, hyper::Version::HTTP_2)
    } else {
        (&routed.h1, hyper::Version::HTTP_11)
    };
    // The resolver's policy picks the first endpoint; retries take the next.
    let lb = decision
        .as_ref()
        .and_then(|d| d.load_balancer)
        .or(up.load_balancer.as_ref());
    let key = lb.and_then(|lb| {
        let inputs = crate::lb::HashInputs {
            headers: Some(&parts.headers),
            query: parts.uri.query(),
            source,
        };
        crate::lb::hash_key(lb, &inputs)
    });
    let first = crate::lb::pick(lb, endpoints, &routed.next, &routed.active, key);
    let first = routed.outliers.skip_ejected(first, endpoints);
    let outlier = up.outlier.as_ref();
    let attempts = async {
        let mut last = text(StatusCode::SERVICE_UNAVAILABLE, "no healthy upstream\n");
        for attempt in 0..policy.attempts {
            let ep = &endpoints[(first + attempt as usize) % endpoints.len()];
            let _in_flight = routed.active.start(ep);
            let authority = Dial::authority(ep);
            routed
                .identities
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(authority.clone(), Dial::to(ep));
            let Ok(uri) = format!("http://{authority}{path}").parse::<Uri>() else {
                return text(StatusCode::BAD_REQUEST, "bad request path\n");
            };
            let body = match (&kept, streamed.take()) {
                (Some(b), _) => Full::new(b.clone())
                    .map_err(|e: Infallible| match e {})
                    .boxed(),
                (None, Some(b)) => b,
                (None, None) => return last,
            };
            let mut out = Request::new(body);
            *out.method_mut() = parts.method.clone();
            *out.uri_mut() = uri;
            *out.headers_mut() = parts.headers.clone();
            *out.version_mut() = version;
            let more = attempt + 1 < policy.attempts;
            let result = client.request(out).await;
            let ok = result.as_ref().is_ok_and(|r| !r.status().is_server_error());
            routed.outliers.record(ep, ok, outlier, endpoints.len());
            match result {
                Ok(resp) if more && policy.on_status.contains(&resp.status().as_u16()) => {
                    tracing::debug!(upstream = name, status = %resp.status(), "retrying");
                    last = resp.map(|b| b.boxed());
                }
                Ok(resp) => return resp.map(|b| b.boxed()),
                Err(e) if more && policy.on_connect_failure && e.is_connect() => {
                    tracing::debug!(upstream = name, error = %e, "retrying after a connect failure");
                    last = text(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "upstream connect failure\n",
                    );
                }
                Err(e) => {
                    tracing::info!(upstream = name, error = %e, "routed request failed");
                    return text(StatusCode::BAD_GATEWAY, "upstream request failed\n");
                }
            }
        }
        last
    };
    let mut resp = match timeout {
        Some(t) => match tokio::time::timeout(t, attempts).await {
            Ok(r) => r,
            Err(_) => text(StatusCode::GATEWAY_TIMEOUT, "upstream request timeout\n"),
        },
        None => attempts.await,
    };
    crate::l7::strip_hop_by_hop(resp.headers_mut());
    if let Some(d) = destination {
        apply_headers(resp.headers_mut(), &d.responseheaders);
    }
    if let Some((_, response)) = decision.as_ref().and_then(|d| d.split_headers) {
        apply_headers(resp.headers_mut(), response);
    }
    resp
}

/// One request counted in [`Routed::in_flight`] until dropped.
struct InFlightRequest {
    counter: Arc<AtomicUsize>,
    count: usize,
}

impl InFlightRequest {
    fn enter(counter: &Arc<AtomicUsize>) -> Self {
        let count = counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
        InFlightRequest {
            counter: counter.clone(),
            count,
        }
    }
}

impl Drop for InFlightRequest {
    fn drop(&mut self) {
        self.counter
            .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Whether connections to `up` are routed per request.
pub(crate) fn per_request(up: &Upstream) -> bool {
    // 5xx answers and concurrent requests are counted per request too.
    let per_request_limits = up.outlier.is_some() || up.max_concurrent_requests > 0;
    up.chain.is_some() || !up.ingress.is_empty() || (up.protocol.is_l7() && per_request_limits)
}

/// How to reach the endpoint a pooled connection's authority stands for.
#[derive(Clone)]
struct Dial {
    address: String,
    port: u16,
    /// The SPIFFE ID its certificate must carry.
    expected: String,
    /// The server name to send (a terminating gateway picks the service by it).
    sni: String,
}

impl Dial {
    fn to(ep: &Endpoint) -> Self {
        Dial {
            address: ep.address.clone(),
            port: ep.port,
            expected: ep.spiffe_id.clone(),
            sni: ep.sni.clone(),
        }
    }

    /// The authority requests to `ep` are pooled under: its address, or,
    /// when it is told a service by SNI (a terminating gateway fronting
    /// several), the address and that name, so each service gets
    /// connections of its own.
    fn authority(ep: &Endpoint) -> String {
        if ep.sni.is_empty() {
            return format!("{}:{}", ep.address, ep.port);
        }
        let address = ep.address.replace(['.', ':', '[', ']'], "-");
        format!("{address}.{}:{}", ep.sni, ep.port)
    }
}

/// Dials a sidecar with mTLS, checking the identity of the endpoint the
/// request was sent to.
#[derive(Clone)]
struct MeshConnector {
    ctx: Arc<Ctx>,
    identities: Arc<Mutex<HashMap<String, Dial>>>,
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl tower_service::Service<Uri> for MeshConnector {
    type Response = MeshConn;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<MeshConn, BoxError>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let this = self.clone();
        Box::pin(async move {
            let host = uri
                .host()
                .ok_or("no host")?
                .trim_matches(['[', ']'])
                .to_string();
            let port = uri.port_u16().ok_or("no port")?;
            let dial = this
                .identities
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get(&format!("{host}:{port}"))
                .cloned()
                .ok_or("no identity for this endpoint")?;
            let sni = !dial.sni.is_empty();
            let cfg = crate::tls::client_config_with_sni(&this.ctx.current, &dial.expected, sni);
            let tcp = TcpStream::connect((dial.address.as_str(), dial.port)).await?;
            let _ = tcp.set_nodelay(true);
            let name = if sni { &dial.sni } else { &dial.address };
            let tls = TlsConnector::from(cfg)
                .connect(crate::tls::server_name(name), crate::inbound::wire(tcp))
                .await?;
            Ok(MeshConn(TokioIo::new(tls)))
        })
    }
}

/// An mTLS connection to a sidecar, as hyper's pool holds it.
struct MeshConn(TokioIo<TlsStream<Wire>>);

impl Connection for MeshConn {
    fn connected(&self) -> Connected {
        Connected::new()
    }
}

impl hyper::rt::Read for MeshConn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_read(cx, buf)
    }
}

impl hyper::rt::Write for MeshConn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().0).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(address: &str, sni: &str) -> Endpoint {
        Endpoint {
            address: address.into(),
            port: 8443,
            spiffe_id: format!("spiffe://td/svc/{sni}"),
            sni: sni.into(),
        }
    }

    #[test]
    fn each_service_behind_one_gateway_is_pooled_apart() {
        let billing = Dial::authority(&at("10.0.0.6", "billing.default.dc1.internal.td"));
        let ledger = Dial::authority(&at("10.0.0.6", "ledger.default.dc1.internal.td"));
        let other_gateway = Dial::authority(&at("10.0.0.7", "billing.default.dc1.internal.td"));
        assert_ne!(billing, ledger);
        assert_ne!(billing, other_gateway);
        assert_eq!(Dial::authority(&at("10.0.0.6", "")), "10.0.0.6:8443");
        for authority in [
            billing,
            ledger,
            other_gateway,
            Dial::authority(&at("::1", "x.td")),
        ] {
            let uri: Uri = format!("http://{authority}/").parse().unwrap();
            assert_eq!(uri.port_u16(), Some(8443), "{authority}");
        }
    }
}
