//! `/v1/operator/keyring`: gossip keys listed, installed, made primary and
//! removed on every live member, with Consul's per-pool answer. Answered by
//! the agent that gets the request, through gossip (every agent has it).

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use mesh_api::ApiError;
use mesh_gossip::{KeyOp, NodeAnswer};
use serde_json::{json, Value};

use crate::node::Node;

pub(crate) async fn keyring(
    Extension(agent): Extension<Arc<Node>>,
    method: Method,
    body: Bytes,
) -> Result<Response, ApiError> {
    let op = match method {
        Method::GET => KeyOp::List,
        Method::POST => KeyOp::Install(key_of(&body)?),
        Method::PUT => KeyOp::Use(key_of(&body)?),
        Method::DELETE => KeyOp::Remove(key_of(&body)?),
        other => {
            return Err(ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                format!("{other} is not a keyring operation"),
            ))
        }
    };
    let listing = op == KeyOp::List;
    let answers = agent
        .gossip
        .key_op(op)
        .await
        .map_err(|e| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string()))?;
    let failed: Vec<String> = answers
        .iter()
        .filter_map(|a| a.answer.error.as_ref().map(|e| format!("{}: {e}", a.node)))
        .collect();
    if listing {
        return Ok(Json(vec![pool_view(&agent.config.datacenter, &answers)]).into_response());
    }
    if !failed.is_empty() {
        return Err(ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!(
                "{} of {} nodes reported failure: {}",
                failed.len(),
                answers.len(),
                failed.join("; ")
            ),
        ));
    }
    Ok(StatusCode::OK.into_response())
}

/// The body's `Key`, checked to be a usable key before it is spread.
fn key_of(body: &Bytes) -> Result<String, ApiError> {
    let value = mesh_wire::decode_json(body, "keyring request")?;
    let map = value
        .as_object()
        .ok_or_else(|| bad("the body must be a JSON object with Key"))?;
    let key = match mesh_wire::field(map, "Key") {
        Some(Value::String(k)) => k.trim().to_string(),
        Some(other) => return Err(bad(format!("Key must be a string, not {other}"))),
        None => return Err(bad("Key is required")),
    };
    mesh_gossip::Keyring::from_base64(&key).map_err(|e| bad(format!("Key: {e}")))?;
    Ok(key)
}

fn bad(message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, message)
}

/// Consul's answer for one pool: how many members hold each key.
fn pool_view(datacenter: &str, answers: &[NodeAnswer]) -> Value {
    let mut keys: BTreeMap<&str, u64> = BTreeMap::new();
    let mut primary: BTreeMap<&str, u64> = BTreeMap::new();
    let mut messages = BTreeMap::new();
    for a in answers {
        if let Some(error) = &a.answer.error {
            messages.insert(a.node.clone(), error.clone());
            continue;
        }
        for key in &a.answer.keys {
            *keys.entry(key).or_default() += 1;
        }
        if let Some(first) = a.answer.keys.first() {
            *primary.entry(first).or_default() += 1;
        }
    }
    json!({
        "WAN": false,
        "Datacenter": datacenter,
        "Segment": "",
        "Partition": "",
        "Keys": keys,
        "PrimaryKeys": primary,
        "NumNodes": answers.len(),
        "NumResp": answers.len() - messages.len(),
        "NumErr": messages.len(),
        "Messages": messages,
    })
}
