//! `?filter=`: Consul's expression language over the answers of the
//! catalog, health and agent list endpoints. The expression is parsed
//! before the request runs (a bad one is a 400 naming the byte offset);
//! the answer's items (or, for the agent's maps, its values) that do not
//! match are left out.

use axum::body::Body;
use axum::extract::Request;
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use crate::ApiError;

/// The routes whose answers `?filter=` applies to (path prefixes).
const FILTERED: [&str; 11] = [
    "/v1/catalog/nodes",
    "/v1/catalog/service/",
    "/v1/catalog/connect/",
    "/v1/health/service/",
    "/v1/health/connect/",
    "/v1/health/ingress/",
    "/v1/health/checks/",
    "/v1/health/node/",
    "/v1/health/state/",
    "/v1/agent/services",
    "/v1/agent/checks",
];

/// The largest answer filtered (answers are ours; this bounds the copy).
const MAX_FILTERED_BYTES: usize = 256 << 20;

fn filter_param(req: &Request) -> Option<String> {
    let query = req.uri().query()?;
    form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == "filter")
        .map(|(_, v)| v.into_owned())
}

/// Marks an answer the handler has already filtered.
#[derive(Debug, Clone, Copy)]
pub(crate) struct FilterApplied;

/// The request's `?filter=`, parsed; `None` without one (or one that does
/// not parse: the middleware has already answered 400 for those).
pub(crate) fn from_params(params: &crate::Params) -> Option<mesh_filter::Filter> {
    let expression = params.map().remove("filter")?;
    if expression.trim().is_empty() {
        return None;
    }
    mesh_filter::Filter::parse(&expression).ok()
}

/// Keeps the items (or, for the agent's maps, the values) that match.
pub(crate) fn retain(answer: &mut Value, filter: &mesh_filter::Filter) {
    match answer {
        Value::Array(items) => items.retain(|i| filter.matches(i)),
        Value::Object(map) => map.retain(|_, v| filter.matches(v)),
        _ => {}
    }
}

pub(crate) async fn apply(req: Request, next: Next) -> Response {
    let path = req.uri().path();
    if !FILTERED.iter().any(|p| path.starts_with(p)) {
        return next.run(req).await;
    }
    let Some(expression) = filter_param(&req).filter(|e| !e.trim().is_empty()) else {
        return next.run(req).await;
    };
    let filter = match mesh_filter::Filter::parse(&expression) {
        Ok(f) => f,
        Err(e) => {
            return ApiError::bad_request(format!(
                "Failed to create boolean expression evaluator: {e}"
            ))
            .into_response()
        }
    };
    let resp = next.run(req).await;
    // Reads through `catalog::json_read` filter before rendering, and cache
    // the filtered answer.
    if resp.status() != StatusCode::OK || resp.extensions().get::<FilterApplied>().is_some() {
        return resp;
    }
    let (mut parts, body) = resp.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, MAX_FILTERED_BYTES).await else {
        return ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "answer too large to filter",
        )
        .into_response();
    };
    let Ok(mut answer) = serde_json::from_slice::<Value>(&bytes) else {
        return Response::from_parts(parts, Body::from(bytes));
    };
    retain(&mut answer, &filter);
    parts.headers.remove(header::CONTENT_LENGTH);
    let body = serde_json::to_vec(&answer).unwrap_or_default();
    Response::from_parts(parts, Body::from(body))
}
