//! Client agents hold no catalog: they forward cluster requests to a server.

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderName, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::{Api, ApiError};

/// Headers copied from a server's answer back to the client.
const PASSED: [&str; 4] = [
    "content-type",
    "x-consul-index",
    "x-consul-knownleader",
    "x-consul-lastcontact",
];

pub(crate) async fn to_server_if_client(
    State(api): State<Api>,
    req: Request,
    next: Next,
) -> Response {
    if api.raft.is_some() {
        return next.run(req).await;
    }
    if !api.agent.rpc_permit() {
        return ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate limit exceeded: this client agent forwards at most limits.rpc_rate requests per second to servers",
        )
        .into_response();
    }
    match forward(&api, req).await {
        Ok(resp) => resp,
        Err(e) => e.into_response(),
    }
}

async fn forward(api: &Api, req: Request) -> Result<Response, ApiError> {
    let server = api.agent.server_base_url().ok_or_else(|| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "No known servers: this client agent has not joined a cluster with servers",
        )
    })?;
    let path = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_default();
    let method = req.method().clone();
    let mut builder = api.http.request(method, format!("{server}{path}"));
    for (name, value) in req.headers() {
        if name == "x-consul-token" || name == "authorization" || name == "content-type" {
            builder = builder.header(name, value);
        }
    }
    // No larger than the server would take, and refused before buffering.
    let limits = api.agent.body_limits();
    let (limit, name) = if path.starts_with("/v1/snapshot") {
        (crate::snapshot::MAX_RESTORE_BYTES, "raft_max_entry_bytes")
    } else if path.starts_with("/v1/kv/") {
        (limits.kv_max_value_size, "limits.kv_max_value_size")
    } else {
        (limits.txn_max_req_len, "limits.txn_max_req_len")
    };
    let headers = req.headers().clone();
    let body = crate::read_limited(req.into_body(), &headers, limit, name).await?;
    let resp = builder.body(body).send().await.map_err(|e| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("forwarding to server {server}: {e}"),
        )
    })?;
    let mut out = Response::builder().status(resp.status().as_u16());
    for name in PASSED {
        if let Some(v) = resp.headers().get(name) {
            out = out.header(HeaderName::from_static(name), v.as_bytes());
        }
    }
    let bytes = resp.bytes().await.map_err(|e| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("reading answer from server {server}: {e}"),
        )
    })?;
    out.body(Body::from(bytes))
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))
}
