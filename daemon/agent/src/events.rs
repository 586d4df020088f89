//! `/v1/event/fire/:name` and `/v1/event/list`: user events fired here
//! spread by gossip; each agent lists those whose filters match it.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::Path;
use axum::http::{HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use base64::Engine;
use mesh_api::{ApiError, Params, QueryOptions};
use mesh_gossip::{NewEvent, UserEvent, MAX_EVENT_BYTES};
use regex::Regex;
use serde_json::{json, Value};

use crate::node::Node;

/// The longest filter expression accepted (each of node, service, tag).
pub const MAX_EVENT_FILTER_BYTES: usize = 256;

fn filter_param(params: &Params, key: &str) -> Result<String, ApiError> {
    let value = params.map().get(key).cloned().unwrap_or_default();
    if value.len() > MAX_EVENT_FILTER_BYTES {
        return Err(ApiError::bad_request(format!(
            "{key} filter is {} bytes; at most {MAX_EVENT_FILTER_BYTES} (MAX_EVENT_FILTER_BYTES)",
            value.len()
        )));
    }
    if !value.is_empty() {
        Regex::new(&value)
            .map_err(|e| ApiError::bad_request(format!("Invalid {key} filter {value:?}: {e}")))?;
    }
    Ok(value)
}

fn event_json(e: &UserEvent) -> Value {
    json!({
        "ID": uuid::Uuid::from_bytes(e.id).to_string(),
        "Name": e.name,
        "Payload": (!e.payload.is_empty())
            .then(|| base64::engine::general_purpose::STANDARD.encode(&e.payload)),
        "NodeFilter": e.node_filter,
        "ServiceFilter": e.service_filter,
        "TagFilter": e.tag_filter,
        "Version": 1,
        "LTime": e.ltime,
    })
}

/// `PUT /v1/event/fire/:name?node=&service=&tag=`; the body is the payload.
pub(crate) async fn fire(
    Extension(agent): Extension<Arc<Node>>,
    Path(name): Path<String>,
    params: Params,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    if name.is_empty() {
        return Err(ApiError::bad_request("Missing name"));
    }
    let event = NewEvent {
        name,
        payload: body.to_vec(),
        node_filter: filter_param(&params, "node")?,
        service_filter: filter_param(&params, "service")?,
        tag_filter: filter_param(&params, "tag")?,
    };
    if !event.tag_filter.is_empty() && event.service_filter.is_empty() {
        return Err(ApiError::bad_request(
            "Cannot provide tag filter without service filter",
        ));
    }
    let fired = agent.gossip.fire_event(event).await.map_err(|e| match e {
        mesh_gossip::GossipError::EventTooLarge(n) => ApiError::new(
            axum::http::StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "The event is {n} bytes with its name and filters; at most {MAX_EVENT_BYTES} (MAX_EVENT_BYTES)"
            ),
        ),
        other => ApiError::new(
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            other.to_string(),
        ),
    })?;
    Ok(Json(event_json(&fired)))
}

/// Whether `event` is meant for this agent (Consul's rules: the node name
/// matches, and some local service matches with, if given, one of its tags).
fn for_this_agent(agent: &Node, event: &UserEvent) -> bool {
    let matches = |pattern: &str, text: &str| {
        pattern.is_empty() || mesh_state::cached_regex(pattern).is_some_and(|r| r.is_match(text))
    };
    if !matches(&event.node_filter, &agent.config.node_name) {
        return false;
    }
    if event.service_filter.is_empty() {
        return true;
    }
    agent.local.services().values().any(|s| {
        matches(&event.service_filter, &s.name)
            && (event.tag_filter.is_empty() || s.tags.iter().any(|t| matches(&event.tag_filter, t)))
    })
}

/// Whether each user event is meant for this agent, decided once, when it
/// arrives (as Consul does): a service registered later does not pull in
/// an old event, and one deregistered later does not drop it. Bounded like
/// the gossip's own event buffer.
#[derive(Default)]
pub(crate) struct Intake {
    decided: parking_lot::Mutex<std::collections::HashMap<[u8; 16], bool>>,
}

impl Intake {
    /// The decision for `event`, made now if it is new.
    fn accepts(&self, agent: &Node, event: &UserEvent) -> bool {
        let mut decided = self.decided.lock();
        if let Some(&yes) = decided.get(&event.id) {
            return yes;
        }
        let yes = for_this_agent(agent, event);
        if decided.len() >= 4 * mesh_gossip::EVENT_BUFFER {
            // Keep only what gossip still holds.
            let held: std::collections::HashSet<[u8; 16]> =
                agent.gossip.events().iter().map(|e| e.id).collect();
            decided.retain(|id, _| held.contains(id));
        }
        decided.insert(event.id, yes);
        yes
    }
}

/// Decides on each event as it arrives, until the agent stops.
pub(crate) async fn intake(
    agent: Arc<Node>,
    mut stop: tokio::sync::watch::Receiver<crate::stop::Stop>,
) -> anyhow::Result<()> {
    let mut arrived = agent.gossip.subscribe_events();
    loop {
        for e in agent.gossip.events() {
            agent.event_intake.accepts(&agent, &e);
        }
        tokio::select! {
            changed = arrived.changed() => if changed.is_err() { return Ok(()) },
            _ = stop.wait_for(|s| *s != crate::stop::Stop::Running) => return Ok(()),
        }
    }
}

/// The events for this agent, optionally of one name; their index.
fn listed(agent: &Node, name: Option<&str>) -> (Vec<UserEvent>, u64) {
    let events: Vec<UserEvent> = agent
        .gossip
        .events()
        .into_iter()
        .filter(|e| name.is_none_or(|n| e.name == n))
        .filter(|e| agent.event_intake.accepts(agent, e))
        .collect();
    let index = events.last().map_or(0, UserEvent::index);
    (events, index)
}

/// `GET /v1/event/list?name=` (blocking on `?index=`).
pub(crate) async fn list(
    Extension(agent): Extension<Arc<Node>>,
    params: Params,
) -> Result<Response, ApiError> {
    let map = params.map();
    let opts = QueryOptions::parse(&map)?;
    let name = map
        .get("name")
        .filter(|n| !n.is_empty())
        .map(String::as_str);
    let mut changed = agent.gossip.subscribe_events();
    let (mut events, mut index) = listed(&agent, name);
    // An event list blocks on any index given, 0 (no events yet) too:
    // its index is a hash of the last event's ID.
    if map.contains_key("index") && index == opts.index {
        let deadline = tokio::time::Instant::now() + opts.wait;
        while index == opts.index {
            match tokio::time::timeout_at(deadline, changed.changed()).await {
                Ok(Ok(())) => (events, index) = listed(&agent, name),
                _ => break,
            }
        }
    }
    let mut headers = HeaderMap::new();
    headers.insert("X-Consul-Index", HeaderValue::from(index));
    let body: Vec<Value> = events.iter().map(event_json).collect();
    Ok((headers, Json(Value::Array(body))).into_response())
}
