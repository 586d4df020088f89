//! `/v1/session/*`: create, destroy, info, node, list, renew, in Consul's
//! JSON shape. A session is a Raft record; its TTL is the leader's timer
//! (renewals are answered from memory, never logged).

use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use mesh_acl::{Access, Resource};
use mesh_state::Table;
use mesh_types::{
    parse_go_duration, Command, Session, SessionBehavior, DEFAULT_LOCK_DELAY_MS, MAX_LOCK_DELAY_MS,
    MAX_SESSION_CHECKS, MAX_SESSION_NAME_BYTES, MAX_SESSION_TTL_MS, MIN_SESSION_TTL_MS,
};
use serde_json::{json, Map, Value};

use crate::acl_routes::Check;
use crate::decoded::{BodyRequest, Decoded, Head};
use crate::{Api, ApiError, QueryOptions};

/// The node check every session is bound to unless it names its own.
const SERF_CHECK: &str = "serfHealth";

/// A session in Consul's JSON shape.
pub(crate) fn session_json(s: &Session) -> Value {
    let mut checks = s.node_checks.clone();
    checks.extend(s.service_checks.iter().cloned());
    json!({
        "ID": s.id,
        "Name": s.name,
        "Node": s.node,
        "LockDelay": s.lock_delay_ms * 1_000_000,
        "Behavior": s.behavior.as_str(),
        "TTL": if s.ttl_ms == 0 { String::new() } else { mesh_types::format_go_duration(Duration::from_millis(s.ttl_ms)) },
        "Checks": checks,
        "NodeChecks": s.node_checks,
        "ServiceChecks": s.service_checks.iter().map(|id| json!({"ID": id, "Namespace": ""})).collect::<Vec<_>>(),
        "Namespace": "default",
        "CreateIndex": s.create_index,
        "ModifyIndex": s.modify_index,
    })
}

/// `PUT /v1/session/create`: the session as it will be proposed (its ID
/// chosen here, once).
pub struct SessionCreate(pub Session);

fn bad(what: impl Into<String>) -> ApiError {
    ApiError::bad_request(what)
}

/// A duration given as Go text (`"15s"`) or a number: nanoseconds, or, below
/// one second, seconds (Consul's reading of old clients' values).
fn duration_field(v: &Value, field: &str) -> Result<Duration, ApiError> {
    match v {
        Value::Null => Ok(Duration::ZERO),
        Value::String(s) if s.is_empty() => Ok(Duration::ZERO),
        Value::String(s) => {
            parse_go_duration(s).map_err(|e| bad(format!("Invalid {field} {s:?}: {e}")))
        }
        Value::Number(n) => match n.as_u64() {
            Some(n) if n < 1_000_000_000 => Ok(Duration::from_secs(n)),
            Some(n) => Ok(Duration::from_nanos(n)),
            None => Err(bad(format!(
                "Invalid {field} {n}: not a non-negative integer"
            ))),
        },
        other => Err(bad(format!(
            "Invalid {field} {other}: a duration like \"15s\""
        ))),
    }
}

fn strings(v: &Value, field: &str) -> Result<Vec<String>, ApiError> {
    let Value::Array(items) = v else {
        return match v {
            Value::Null => Ok(Vec::new()),
            _ => Err(bad(format!("{field} must be a list"))),
        };
    };
    items
        .iter()
        .map(|i| match i {
            Value::String(s) => Ok(s.clone()),
            // ServiceChecks are objects with an ID.
            Value::Object(m) => mesh_wire::field(m, "ID")
                .and_then(Value::as_str)
                .map(str::to_string)
                .ok_or_else(|| bad(format!("{field}: each needs an ID"))),
            _ => Err(bad(format!("{field}: {i} is not a check ID"))),
        })
        .collect()
}

impl BodyRequest for SessionCreate {
    const WHAT: &'static str = "session";
    fn decode(api: &Api, _: &Head, body: &Value) -> Result<Self, ApiError> {
        let empty = Map::new();
        let map = match body {
            Value::Object(m) => m,
            Value::Null => &empty,
            _ => return Err(bad("session body must be a JSON object")),
        };
        let get = |name: &str| mesh_wire::field(map, name).unwrap_or(&Value::Null);
        let text = |name: &str| -> Result<String, ApiError> {
            match get(name) {
                Value::Null => Ok(String::new()),
                Value::String(s) => Ok(s.clone()),
                other => Err(bad(format!("{name} must be a string, not {other}"))),
            }
        };
        let name = text("Name")?;
        if name.len() > MAX_SESSION_NAME_BYTES {
            return Err(bad(format!(
                "Name is over {MAX_SESSION_NAME_BYTES} bytes (MAX_SESSION_NAME_BYTES)"
            )));
        }
        let node = match text("Node")? {
            n if n.is_empty() => api.agent.node_name(),
            n => n,
        };
        let behavior = match text("Behavior")?.as_str() {
            "" | "release" => SessionBehavior::Release,
            "delete" => SessionBehavior::Delete,
            other => {
                return Err(bad(format!(
                    "Invalid Behavior setting {other:?}: release or delete"
                )))
            }
        };
        let ttl = duration_field(get("TTL"), "TTL")?;
        let ttl_ms = ttl.as_millis() as u64;
        if ttl_ms != 0 && !(MIN_SESSION_TTL_MS..=MAX_SESSION_TTL_MS).contains(&ttl_ms) {
            return Err(bad(format!(
                "Invalid Session TTL '{}', must be between [{}={}]",
                mesh_types::format_go_duration(ttl),
                mesh_types::format_go_duration(Duration::from_millis(MIN_SESSION_TTL_MS)),
                mesh_types::format_go_duration(Duration::from_millis(MAX_SESSION_TTL_MS)),
            )));
        }
        let lock_delay_ms = match get("LockDelay") {
            Value::Null => DEFAULT_LOCK_DELAY_MS,
            v => duration_field(v, "LockDelay")?.as_millis() as u64,
        };
        if lock_delay_ms > MAX_LOCK_DELAY_MS {
            return Err(bad(format!(
                "LockDelay is over {}s (MAX_LOCK_DELAY_MS)",
                MAX_LOCK_DELAY_MS / 1000
            )));
        }
        // `Checks` is the older name of `NodeChecks`; neither given: serfHealth.
        let mut node_checks = strings(get("NodeChecks"), "NodeChecks")?;
        node_checks.extend(strings(get("Checks"), "Checks")?);
        let service_checks = strings(get("ServiceChecks"), "ServiceChecks")?;
        if mesh_wire::field(map, "NodeChecks").is_none()
            && mesh_wire::field(map, "Checks").is_none()
        {
            node_checks.push(SERF_CHECK.into());
        }
        node_checks.sort();
        node_checks.dedup();
        if node_checks.len() + service_checks.len() > MAX_SESSION_CHECKS {
            return Err(bad(format!(
                "a session binds at most {MAX_SESSION_CHECKS} checks (MAX_SESSION_CHECKS)"
            )));
        }
        Ok(SessionCreate(Session {
            id: uuid::Uuid::new_v4().to_string(),
            name,
            node,
            node_checks,
            service_checks,
            lock_delay_ms,
            behavior,
            ttl_ms,
            create_index: 0,
            modify_index: 0,
        }))
    }
    fn checks(&self, _: &Api) -> Vec<Check> {
        vec![Check::Named(
            Resource::Session,
            self.0.node.clone(),
            Access::Write,
        )]
    }
}

pub(crate) async fn create(
    State(api): State<Api>,
    Decoded(SessionCreate(session)): Decoded<SessionCreate>,
) -> Result<Response, ApiError> {
    let id = session.id.clone();
    api.apply(Command::SessionCreate { session }).await?;
    Ok(Json(json!({ "ID": id })).into_response())
}

pub(crate) async fn destroy(
    State(api): State<Api>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    api.apply(Command::SessionDestroy { id }).await?;
    Ok(Json(true).into_response())
}

pub(crate) async fn renew(
    State(api): State<Api>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    match api.apply(Command::SessionRenew { id: id.clone() }).await {
        Ok(_) => {}
        Err(e) if e.status == StatusCode::BAD_REQUEST && e.message.contains("not found") => {
            return Err(ApiError::new(StatusCode::NOT_FOUND, e.message));
        }
        Err(e) => return Err(e),
    }
    let session = api.state.read(|s| s.session(&id).map(session_json));
    match session {
        Some(s) => Ok(Json(vec![s]).into_response()),
        None => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("Session id {id:?} not found"),
        )),
    }
}

/// The sessions `pick` selects, as a blocking read on the session table.
async fn answer(
    api: &Api,
    params: &std::collections::HashMap<String, String>,
    pick: impl Fn(&Session) -> bool,
) -> Result<Response, ApiError> {
    let opts = QueryOptions::parse(params)?;
    let (list, index) = api
        .blocking_read(&opts, Table::Sessions, |s| {
            let list: Vec<Value> = s.sessions().filter(|x| pick(x)).map(session_json).collect();
            (list, s.table_index(Table::Sessions))
        })
        .await?;
    Ok((api.read_headers(index), Json(list)).into_response())
}

pub(crate) async fn info(
    State(api): State<Api>,
    Path(id): Path<String>,
    Query(params): Query<std::collections::HashMap<String, String>>,
) -> Result<Response, ApiError> {
    answer(&api, &params, |s| s.id == id).await
}

pub(crate) async fn node(
    State(api): State<Api>,
    Path(node): Path<String>,
    Query(params): Query<std::collections::HashMap<String, String>>,
) -> Result<Response, ApiError> {
    answer(&api, &params, |s| s.node == node).await
}

pub(crate) async fn list(
    State(api): State<Api>,
    Query(params): Query<std::collections::HashMap<String, String>>,
) -> Result<Response, ApiError> {
    answer(&api, &params, |_| true).await
}
