//! CTS's HTTP API (`/v1/status…`, `/v1/tasks…`) on `port` (8558), with the
//! run history mesh sync keeps.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Map, Value};

use crate::config::{Task, TaskConfig};
use crate::runner::{condition_services, event_json};
use crate::store::TaskRecord;
use crate::{Daemon, Refusal};

/// Largest request body the API reads.
pub const MAX_API_BODY_BYTES: usize = 1024 * 1024;

type Shared = State<Arc<Daemon>>;

fn request_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

fn error(status: u16, message: impl Into<String>) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (
        status,
        Json(json!({"request_id": request_id(), "error": {"message": message.into()}})),
    )
        .into_response()
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        error(self.status, self.message)
    }
}

/// The router; `serve` runs it.
pub fn router(daemon: Arc<Daemon>) -> Router {
    Router::new()
        .route("/v1/health", get(|| async { Json(json!({})) }))
        .route("/v1/status", get(status))
        .route("/v1/status/tasks", get(tasks_status))
        .route("/v1/status/tasks/{name}", get(task_status))
        .route("/v1/tasks", get(list_tasks).post(create_task))
        .route(
            "/v1/tasks/{name}",
            get(get_task).patch(patch_task).delete(delete_task),
        )
        .fallback(|| async { error(404, "no such endpoint") })
        .layer(DefaultBodyLimit::max(MAX_API_BODY_BYTES))
        .with_state(daemon)
}

/// CTS's health rule over the kept apply runs: none → unknown, the last
/// succeeded → successful, the last failed and at least half failed →
/// critical, else errored.
fn health(record: &TaskRecord) -> &'static str {
    let applies: Vec<_> = record
        .events
        .iter()
        .filter(|e| e.kind == "apply" && e.end_time.is_some())
        .collect();
    let Some(last) = applies.last() else {
        return "unknown";
    };
    if last.success {
        return "successful";
    }
    let failed = applies.iter().filter(|e| !e.success).count();
    if failed * 2 >= applies.len() {
        "critical"
    } else {
        "errored"
    }
}

fn task_status_json(task: &Task, enabled: bool, record: &TaskRecord, events: bool) -> Value {
    let name = &task.name;
    let last_drift = record
        .events
        .iter()
        .rev()
        .find(|e| e.kind == "drift-check" && e.success);
    let mut v = json!({
        "task_name": name,
        "status": health(record),
        "enabled": enabled,
        "providers": task.def.providers,
        "services": condition_services(task),
        "events_url": format!("/v1/status/tasks/{name}?include=events"),
        "applied_inputs_hash": record.applied_hash,
        "unchanged_skips": record.unchanged_skips,
        "drift": last_drift.map(|d| json!({
            "detected": d.drift.unwrap_or(false),
            "checked_at": d.end_time,
            "summary": d.plan_summary,
        })),
    });
    if events {
        // Newest first, as CTS lists them.
        let list: Vec<Value> = record
            .events
            .iter()
            .rev()
            .map(|e| event_json(e, task))
            .collect();
        v["events"] = Value::Array(list);
    }
    v
}

#[derive(Deserialize)]
struct StatusQuery {
    include: Option<String>,
    status: Option<String>,
}

impl StatusQuery {
    fn events(&self) -> Result<bool, Refusal> {
        match self.include.as_deref() {
            None => Ok(false),
            Some("events") => Ok(true),
            Some(other) => Err(Refusal::new(
                400,
                format!("include={other:?}: the only value is \"events\""),
            )),
        }
    }
}

async fn status(State(d): Shared) -> Response {
    let mut counts = json!({"successful": 0, "errored": 0, "critical": 0, "unknown": 0});
    let (mut on, mut off) = (0, 0);
    for (_, enabled, record) in d.snapshot().await {
        let h = health(&record);
        counts[h] = json!(counts[h].as_u64().unwrap_or(0) + 1);
        if enabled {
            on += 1;
        } else {
            off += 1;
        }
    }
    Json(json!({"task_summary": {"status": counts, "enabled": {"true": on, "false": off}}}))
        .into_response()
}

async fn tasks_status(State(d): Shared, Query(q): Query<StatusQuery>) -> Response {
    let events = match q.events() {
        Ok(e) => e,
        Err(r) => return r.into_response(),
    };
    if let Some(s) = &q.status {
        if !["successful", "errored", "critical", "unknown"].contains(&s.as_str()) {
            return error(
                400,
                format!("status={s:?}: use successful, errored, critical or unknown"),
            );
        }
    }
    let mut out = Map::new();
    for (task, enabled, record) in d.snapshot().await {
        if q.status.as_deref().is_some_and(|s| s != health(&record)) {
            continue;
        }
        out.insert(
            task.name.clone(),
            task_status_json(&task, enabled, &record, events),
        );
    }
    Json(Value::Object(out)).into_response()
}

async fn task_status(
    State(d): Shared,
    Path(name): Path<String>,
    Query(q): Query<StatusQuery>,
) -> Response {
    let events = match q.events() {
        Ok(e) => e,
        Err(r) => return r.into_response(),
    };
    match d
        .snapshot()
        .await
        .into_iter()
        .find(|(t, _, _)| t.name == name)
    {
        Some((task, enabled, record)) => {
            Json(json!({ name: task_status_json(&task, enabled, &record, events) })).into_response()
        }
        None => error(404, format!("task {name:?} does not exist")),
    }
}

fn task_json(task: &Task, enabled: bool) -> Value {
    let mut v = serde_json::to_value(&task.def).unwrap_or(Value::Null);
    v["enabled"] = json!(enabled);
    v["module"] = json!(task.module);
    v
}

async fn list_tasks(State(d): Shared) -> Response {
    let tasks: Vec<Value> = d
        .snapshot()
        .await
        .iter()
        .map(|(t, on, _)| task_json(t, *on))
        .collect();
    Json(json!({"request_id": request_id(), "tasks": tasks})).into_response()
}

async fn get_task(State(d): Shared, Path(name): Path<String>) -> Response {
    match d
        .snapshot()
        .await
        .into_iter()
        .find(|(t, _, _)| t.name == name)
    {
        Some((task, on, _)) => {
            Json(json!({"request_id": request_id(), "task": task_json(&task, on)})).into_response()
        }
        None => error(404, format!("task {name:?} does not exist")),
    }
}

#[derive(Deserialize)]
struct RunQuery {
    run: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Run {
    Now,
    Inspect,
}

impl RunQuery {
    fn mode(&self) -> Result<Option<Run>, Refusal> {
        match self.run.as_deref() {
            None => Ok(None),
            Some("now") => Ok(Some(Run::Now)),
            Some("inspect") => Ok(Some(Run::Inspect)),
            Some(other) => Err(Refusal::new(
                400,
                format!("run={other:?}: use \"now\" or \"inspect\""),
            )),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateBody {
    task: TaskConfig,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PatchBody {
    enabled: bool,
}

/// Decodes a body once, strictly: unknown keys (any other spelling of a
/// known one included) are refused with the key named.
fn decode<T: serde::de::DeserializeOwned>(body: &Bytes) -> Result<T, Refusal> {
    serde_json::from_slice(body).map_err(|e| Refusal::new(400, format!("request body: {e}")))
}

async fn create_task(State(d): Shared, Query(q): Query<RunQuery>, body: Bytes) -> Response {
    let mode = match q.mode() {
        Ok(m) => m,
        Err(r) => return r.into_response(),
    };
    let CreateBody { task } = match decode(&body) {
        Ok(b) => b,
        Err(r) => return r.into_response(),
    };
    if mode == Some(Run::Inspect) {
        return match d.inspect_new(task).await {
            Ok((task, plan)) => Json(json!({
                "request_id": request_id(),
                "task": task_json(&task, task.enabled),
                "run": {"changes_present": plan.changes_present, "plan": plan.text},
            }))
            .into_response(),
            Err(r) => r.into_response(),
        };
    }
    let task = match d.create(task).await {
        Ok(t) => t,
        Err(r) => return r.into_response(),
    };
    let mut out = json!({"request_id": request_id(), "task": task_json(&task, task.enabled)});
    if mode == Some(Run::Now) {
        match d.run_now(&task.name).await {
            Ok(ev) => out["run"] = json!({"event": ev.map(|e| event_json(&e, &task))}),
            Err(r) => return r.into_response(),
        }
    }
    (StatusCode::CREATED, Json(out)).into_response()
}

async fn patch_task(
    State(d): Shared,
    Path(name): Path<String>,
    Query(q): Query<RunQuery>,
    body: Bytes,
) -> Response {
    let mode = match q.mode() {
        Ok(m) => m,
        Err(r) => return r.into_response(),
    };
    let PatchBody { enabled } = match decode(&body) {
        Ok(b) => b,
        Err(r) => return r.into_response(),
    };
    if mode == Some(Run::Inspect) {
        // Changes nothing: shows what enabling (or the current inputs) would do.
        return match d.inspect(&name).await {
            Ok(plan) => Json(json!({
                "request_id": request_id(),
                "inspect": {"changes_present": plan.changes_present, "plan": plan.text},
            }))
            .into_response(),
            Err(r) => r.into_response(),
        };
    }
    if let Err(r) = d.set_enabled(&name, enabled).await {
        return r.into_response();
    }
    if mode == Some(Run::Now) {
        if let Err(r) = d.run_now(&name).await {
            return r.into_response();
        }
    }
    Json(json!({"request_id": request_id()})).into_response()
}

async fn delete_task(State(d): Shared, Path(name): Path<String>) -> Response {
    match d.delete(&name).await {
        Ok(()) => (
            StatusCode::ACCEPTED,
            Json(json!({"request_id": request_id()})),
        )
            .into_response(),
        Err(r) => r.into_response(),
    }
}

/// Serves the API on `listener` until `shutdown` resolves.
pub async fn serve(
    daemon: Arc<Daemon>,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(daemon))
        .with_graceful_shutdown(shutdown)
        .await
}
