//! `/v1/agent/health/service/id/:id` and `/name/:name`: a local service's
//! health from this agent's own view, as load balancers poll it. The HTTP
//! status says it too: 200 passing, 429 warning, 503 critical.

use std::sync::Arc;

use axum::extract::Path;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use mesh_api::{ApiError, Params};
use mesh_types::{CheckStatus, Service};
use mesh_wire::{check_json, service_json};
use serde_json::{json, Value};

use crate::node::Node;

fn status_code(status: CheckStatus) -> StatusCode {
    match status {
        CheckStatus::Passing => StatusCode::OK,
        CheckStatus::Warning => StatusCode::TOO_MANY_REQUESTS,
        CheckStatus::Critical => StatusCode::SERVICE_UNAVAILABLE,
    }
}

/// The service's checks and the node's own (maintenance included), and
/// the worst of their statuses.
fn health_of(agent: &Node, id: &str, service: &Service) -> (CheckStatus, Value) {
    let node = agent.config.node_name.clone();
    let checks: Vec<_> = agent
        .local
        .checks_with_tags()
        .into_iter()
        .filter(|(_, c, _)| c.service_id.is_empty() || c.service_id == id)
        .collect();
    let status = checks
        .iter()
        .map(|(_, c, _)| c.status)
        .max()
        .unwrap_or(CheckStatus::Passing);
    let body = json!({
        "AggregatedStatus": status.as_str(),
        "Service": service_json(service),
        "Checks": checks.iter().map(|(_, c, tags)| check_json(&node, c, tags)).collect::<Vec<_>>(),
    });
    (status, body)
}

fn text_format(params: &Params) -> Result<bool, ApiError> {
    match params.map().get("format").map(String::as_str) {
        None | Some("") | Some("json") => Ok(false),
        Some("text") => Ok(true),
        Some(other) => Err(ApiError::bad_request(format!(
            "Invalid format {other:?}: text or json"
        ))),
    }
}

pub(crate) async fn by_id(
    Extension(agent): Extension<Arc<Node>>,
    Path(id): Path<String>,
    params: Params,
) -> Result<Response, ApiError> {
    let text = text_format(&params)?;
    let Some(service) = agent.local.service(&id) else {
        let body = format!("ServiceId {id} not found");
        return Ok((StatusCode::NOT_FOUND, body).into_response());
    };
    let (status, body) = health_of(&agent, &id, &service);
    Ok(if text {
        (status_code(status), status.as_str().to_string()).into_response()
    } else {
        (status_code(status), Json(body)).into_response()
    })
}

pub(crate) async fn by_name(
    Extension(agent): Extension<Arc<Node>>,
    Path(name): Path<String>,
    params: Params,
) -> Result<Response, ApiError> {
    let text = text_format(&params)?;
    let found: Vec<(CheckStatus, Value)> = agent
        .local
        .services()
        .iter()
        .filter(|(_, s)| s.name == name)
        .map(|(id, s)| health_of(&agent, id, s))
        .collect();
    if found.is_empty() {
        let body = format!("ServiceName {name} Not Found");
        return Ok((StatusCode::NOT_FOUND, body).into_response());
    }
    let worst = found
        .iter()
        .map(|(s, _)| *s)
        .max()
        .unwrap_or(CheckStatus::Passing);
    Ok(if text {
        (status_code(worst), worst.as_str().to_string()).into_response()
    } else {
        let list: Vec<Value> = found.into_iter().map(|(_, v)| v).collect();
        (status_code(worst), Json(list)).into_response()
    })
}
