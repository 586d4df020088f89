//! Consul's HTTP metrics: every request timed as `consul.api.http` by
//! method and route, and the writes Consul times on its own
//! (`consul.kvs.apply`, `consul.txn.apply`, `consul.catalog.register`, …).

use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::Response;
use mesh_telemetry as t;

/// The timer a write route also feeds, if any.
fn write_timer(method: &axum::http::Method, route: &str) -> Option<&'static str> {
    use axum::http::Method;
    match (method, route) {
        (&Method::PUT | &Method::DELETE, "/v1/kv/{*key}") => Some(t::KVS_APPLY),
        (&Method::PUT, "/v1/txn") => Some(t::TXN_APPLY),
        (&Method::PUT, "/v1/catalog/register" | "/v1/agent/service/register") => {
            Some(t::CATALOG_REGISTER)
        }
        (&Method::PUT, "/v1/catalog/deregister" | "/v1/agent/service/deregister/{id}") => {
            Some(t::CATALOG_DEREGISTER)
        }
        _ => None,
    }
}

pub(crate) async fn track(req: Request, next: Next) -> Response {
    let Some(route) = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_string())
    else {
        return next.run(req).await;
    };
    let method = req.method().clone();
    if req
        .uri()
        .query()
        .is_some_and(|q| q.split('&').any(|p| p.starts_with("index=")))
    {
        t::counter!(t::RPC_QUERY).increment(1);
    }
    let started = std::time::Instant::now();
    let resp = next.run(req).await;
    let elapsed = t::ms(started.elapsed());
    if let Some(timer) = write_timer(&method, &route) {
        if resp.status().is_success() {
            t::histogram!(timer).record(elapsed);
        }
    }
    t::histogram!(t::API_HTTP, "method" => method.to_string(), "path" => route).record(elapsed);
    resp
}
