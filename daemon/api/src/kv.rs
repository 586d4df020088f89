//! `/v1/kv/:key`: get (single, ?recurse, ?keys, ?raw), put (?cas, ?flags), delete.

use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::Engine;
use mesh_state::Table;
use mesh_types::{Command, KvEntry};
use serde::Serialize;

use crate::{Api, ApiError, QueryOptions};

/// A KV pair in Consul's JSON shape.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct KvPair {
    lock_index: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    session: Option<String>,
    key: String,
    flags: u64,
    value: Option<String>,
    create_index: u64,
    modify_index: u64,
}

impl KvPair {
    /// `e`, with the session holding its lock (`holder`).
    fn of(e: &KvEntry, holder: Option<String>) -> Self {
        KvPair {
            lock_index: e.lock_index,
            session: holder,
            key: e.key.clone(),
            flags: e.flags,
            value: (!e.value.is_empty())
                .then(|| base64::engine::general_purpose::STANDARD.encode(&e.value)),
            create_index: e.create_index,
            modify_index: e.modify_index,
        }
    }
}

/// A key and the session holding its lock.
type Held = (KvEntry, Option<String>);

enum Found {
    One(Option<Held>),
    Many(Vec<Held>),
    Keys(Vec<String>),
}

pub(crate) async fn get_root(
    state: State<Api>,
    query: Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    get(state, Path(String::new()), query).await
}

pub(crate) async fn get(
    State(api): State<Api>,
    Path(key): Path<String>,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let opts = QueryOptions::parse(&params)?;
    let recurse = params.contains_key("recurse");
    let keys = params.contains_key("keys");
    let separator = params.get("separator").cloned();
    if key.is_empty() && !recurse && !keys {
        return Err(ApiError::bad_request(
            "Missing key name (use ?recurse or ?keys to list the whole store)",
        ));
    }
    let (found, index) = api
        .blocking_read(&opts, Table::Kv, |s| {
            if keys {
                (
                    Found::Keys(s.kv_keys(&key, separator.as_deref())),
                    s.table_index(Table::Kv),
                )
            } else if recurse {
                let held = |e: &KvEntry| (e.clone(), s.lock_holder(&e.key).map(str::to_string));
                (
                    Found::Many(s.kv_list(&key).map(held).collect()),
                    s.table_index(Table::Kv),
                )
            } else {
                // A single key blocks on its own modify index, so writes to
                // other keys do not wake it.
                let entry = s.kv_get(&key).cloned();
                let index = entry
                    .as_ref()
                    .map_or(s.table_index(Table::Kv), |e| e.modify_index);
                let holder = s.lock_holder(&key).map(str::to_string);
                (Found::One(entry.map(|e| (e, holder))), index)
            }
        })
        .await?;
    let headers = api.read_headers(index);
    let not_found = || (StatusCode::NOT_FOUND, headers.clone()).into_response();
    Ok(match found {
        Found::One(None) => not_found(),
        Found::One(Some((entry, _))) if params.contains_key("raw") => {
            let mut resp = (headers, entry.value).into_response();
            resp.headers_mut().insert(
                header::CONTENT_TYPE,
                header::HeaderValue::from_static("text/plain; charset=utf-8"),
            );
            resp
        }
        Found::One(Some((entry, holder))) => {
            (headers, Json(vec![KvPair::of(&entry, holder)])).into_response()
        }
        Found::Many(entries) if entries.is_empty() => not_found(),
        Found::Many(entries) => {
            let pairs: Vec<KvPair> = entries
                .into_iter()
                .map(|(e, holder)| KvPair::of(&e, holder))
                .collect();
            (headers, Json(pairs)).into_response()
        }
        Found::Keys(list) if list.is_empty() => not_found(),
        Found::Keys(list) => (headers, Json(list)).into_response(),
    })
}

fn parse_u64(params: &HashMap<String, String>, name: &str) -> Result<Option<u64>, ApiError> {
    params
        .get(name)
        .map(|v| {
            v.parse().map_err(|_| {
                ApiError::bad_request(format!(
                    "Invalid {name} {v:?}: must be a non-negative integer"
                ))
            })
        })
        .transpose()
}

async fn write(api: &Api, cmd: Command) -> Result<Response, ApiError> {
    Ok(Json(api.apply(cmd).await?.as_bool()).into_response())
}

pub(crate) async fn put(
    State(api): State<Api>,
    Path(key): Path<String>,
    Query(params): Query<HashMap<String, String>>,
    headers: axum::http::HeaderMap,
    body: axum::body::Body,
) -> Result<Response, ApiError> {
    if key.is_empty() {
        return Err(ApiError::bad_request("Missing key name"));
    }
    // Refused before it is buffered, as Consul's kv_max_value_size.
    let limit = api.agent.body_limits().kv_max_value_size;
    let body = crate::read_limited(body, &headers, limit, "limits.kv_max_value_size").await?;
    let flags = parse_u64(&params, "flags")?.unwrap_or(0);
    let cmd = match (params.get("acquire"), params.get("release")) {
        (Some(_), Some(_)) => {
            return Err(ApiError::bad_request(
                "Conflicting flags: acquire and release in one request",
            ))
        }
        (Some(session), None) => {
            // A key a lost session held stays out of reach for its lock
            // delay (kept by each server, so checked before proposing).
            if api.state.read(|s| s.lock_delay_left(&key)).is_some() {
                return Ok(Json(false).into_response());
            }
            Command::KvAcquire {
                key,
                value: body.to_vec(),
                flags,
                session: session.clone(),
            }
        }
        (None, Some(session)) => Command::KvRelease {
            key,
            value: body.to_vec(),
            flags,
            session: session.clone(),
        },
        (None, None) => Command::KvSet {
            key,
            value: body.to_vec(),
            flags,
            cas: parse_u64(&params, "cas")?,
        },
    };
    write(&api, cmd).await
}

pub(crate) async fn delete(
    State(api): State<Api>,
    Path(key): Path<String>,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let recurse = params.contains_key("recurse");
    if key.is_empty() && !recurse {
        return Err(ApiError::bad_request("Missing key name"));
    }
    let cmd = Command::KvDelete {
        key,
        recurse,
        cas: parse_u64(&params, "cas")?,
    };
    write(&api, cmd).await
}
