//! `/v1/connect/intentions` and `POST /v1/agent/connect/authorize`.
//! Intentions are one table; the `service-intentions` config entry is a
//! view of it (see `config_entries.rs`).

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use mesh_state::Table;
use mesh_types::{sort_by_precedence, Command, Intention};
use serde_json::{json, Value};

use crate::catalog::{json_read, json_read_uncached};
use crate::decoded::{AuthorizeRequest, Decoded, IntentionWrite};
use crate::intention_wire::intention_json;
use crate::params::Params;
use crate::write::{owner, takeover};
use crate::{Api, ApiError, QueryOptions};

pub(crate) fn required<'a>(
    map: &'a std::collections::HashMap<String, String>,
    key: &str,
) -> Result<&'a str, ApiError> {
    map.get(key)
        .map(String::as_str)
        .filter(|v| !v.is_empty())
        .ok_or_else(|| {
            ApiError::bad_request(format!("required query parameter {key:?} is missing"))
        })
}

pub(crate) async fn list(State(api): State<Api>, params: Params) -> Result<Response, ApiError> {
    json_read(&api, &params, Table::Config, |s| {
        let mut all: Vec<Intention> = s.intentions().cloned().collect();
        sort_by_precedence(&mut all);
        (
            Value::Array(all.iter().map(intention_json).collect()),
            s.table_index(Table::Config),
        )
    })
    .await
}

pub(crate) async fn get_exact(
    State(api): State<Api>,
    params: Params,
) -> Result<Response, ApiError> {
    let map = params.map();
    let (src, dst) = (required(&map, "source")?, required(&map, "destination")?);
    let opts = QueryOptions::parse(&map)?;
    let (found, index) = api
        .blocking_read(&opts, Table::Config, |s| {
            (
                s.intention(src, dst).map(intention_json),
                s.table_index(Table::Config),
            )
        })
        .await?;
    let headers = api.read_headers(index);
    Ok(match found {
        Some(v) => (headers, Json(v)).into_response(),
        None => (
            StatusCode::NOT_FOUND,
            headers,
            format!("Intention not found for {src} => {dst}\n"),
        )
            .into_response(),
    })
}

/// A new intention gets a fresh ID; an update keeps the stored one (state does).
fn with_new_id(mut i: Intention) -> Intention {
    i.id = uuid::Uuid::new_v4().to_string();
    i
}

pub(crate) async fn put_exact(
    State(api): State<Api>,
    Decoded(write): Decoded<IntentionWrite>,
) -> Result<Json<bool>, ApiError> {
    api.apply(Command::IntentionSet {
        intention: with_new_id(write.intention),
        takeover: write.takeover,
    })
    .await?;
    Ok(Json(true))
}

pub(crate) async fn delete_exact(
    State(api): State<Api>,
    headers: HeaderMap,
    params: Params,
) -> Result<Json<bool>, ApiError> {
    let map = params.map();
    let (src, dst) = (required(&map, "source")?, required(&map, "destination")?);
    api.apply(Command::IntentionDelete {
        source: src.to_string(),
        destination: dst.to_string(),
        owner: owner(&headers),
        takeover: takeover(&map),
    })
    .await?;
    Ok(Json(true))
}

/// Legacy create: `POST /v1/connect/intentions` with Source/DestinationName in the body.
pub(crate) async fn create(
    State(api): State<Api>,
    Decoded(write): Decoded<IntentionWrite>,
) -> Result<Json<Value>, ApiError> {
    let i = write.intention;
    let (src, dst) = (i.source.clone(), i.destination.clone());
    if api.state.read(|s| s.intention(&src, &dst).is_some()) {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            format!("an intention for {src} => {dst} already exists; update it with PUT /v1/connect/intentions/exact"),
        ));
    }
    api.apply(Command::IntentionSet {
        intention: with_new_id(i),
        takeover: write.takeover,
    })
    .await?;
    let id = api
        .state
        .read(|s| s.intention(&src, &dst).map(|i| i.id.clone()))
        .unwrap_or_default();
    Ok(Json(json!({ "ID": id })))
}

fn by_id(api: &Api, id: &str) -> Option<Intention> {
    api.state
        .read(|s| s.intentions().find(|i| i.id == id).cloned())
}

pub(crate) async fn get_id(
    State(api): State<Api>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    by_id(&api, &id)
        .map(|i| Json(intention_json(&i)))
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, format!("Intention not found: {id}")))
}

pub(crate) async fn delete_id(
    State(api): State<Api>,
    headers: HeaderMap,
    Path(id): Path<String>,
    params: Params,
) -> Result<Json<bool>, ApiError> {
    let Some(i) = by_id(&api, &id) else {
        return Ok(Json(true));
    };
    api.apply(Command::IntentionDelete {
        source: i.source,
        destination: i.destination,
        owner: owner(&headers),
        takeover: takeover(&params.map()),
    })
    .await?;
    Ok(Json(true))
}

pub(crate) async fn check(State(api): State<Api>, params: Params) -> Result<Response, ApiError> {
    let map = params.map();
    let (src, dst) = (required(&map, "source")?, required(&map, "destination")?);
    let default_allow = api.agent.intention_default_allow();
    json_read_uncached(&api, &params, Table::Config, |s| {
        let d = l4_verdict(s, src, dst, default_allow);
        (
            json!({ "Allowed": d.allow, "Reason": d.reason }),
            s.table_index(Table::Config),
        )
    })
    .await
}

pub(crate) async fn matches(State(api): State<Api>, params: Params) -> Result<Response, ApiError> {
    let map = params.map();
    let by = required(&map, "by")?.to_string();
    if by != "source" && by != "destination" {
        return Err(ApiError::bad_request(format!(
            "invalid by={by:?} (source or destination)"
        )));
    }
    let names: Vec<String> = params.all("name").into_iter().map(String::from).collect();
    if names.is_empty() {
        return Err(ApiError::bad_request(
            "required query parameter \"name\" is missing",
        ));
    }
    json_read(&api, &params, Table::Config, |s| {
        let mut out = serde_json::Map::new();
        for name in &names {
            let mut list: Vec<Intention> = s
                .intentions()
                .filter(|i| {
                    let side = if by == "source" {
                        &i.source
                    } else {
                        &i.destination
                    };
                    side == name || side == "*"
                })
                .cloned()
                .collect();
            sort_by_precedence(&mut list);
            out.insert(
                name.clone(),
                Value::Array(list.iter().map(intention_json).collect()),
            );
        }
        (Value::Object(out), s.table_index(Table::Config))
    })
    .await
}

/// Whether `source` may open an L4 connection to `destination`: the same
/// compiled policy a proxy of `destination` enforces, so an intention with
/// HTTP permissions denies here as Consul's `intention check` does.
fn l4_verdict(
    s: &mesh_state::State,
    source: &str,
    destination: &str,
    default_allow: bool,
) -> mesh_policy::Verdict {
    let set =
        mesh_policy::IntentionSet::for_destination(s.intentions(), destination, default_allow);
    mesh_policy::Policy::compile(&set).connection(source, mesh_policy::Layer::L4)
}

pub(crate) async fn authorize(
    State(api): State<Api>,
    Decoded(req): Decoded<AuthorizeRequest>,
) -> Result<Json<Value>, ApiError> {
    let (target, uri) = (req.target, req.client_cert_uri);
    let Some(id) = mesh_types::SpiffeId::parse(&uri) else {
        return Err(ApiError::bad_request(format!(
            "ClientCertURI {uri:?} is not a service SPIFFE ID (spiffe://<trust-domain>/ns/<ns>/dc/<dc>/svc/<name>)"
        )));
    };
    if let Some(expected) = api.agent.trust_domain() {
        if id.trust_domain != expected {
            return Ok(Json(json!({
                "Authorized": false,
                "Reason": format!("client certificate is from trust domain {:?}, not ours ({expected:?})", id.trust_domain),
            })));
        }
    }
    let default_allow = api.agent.intention_default_allow();
    let d = api
        .state
        .read(|s| l4_verdict(s, &id.service, &target, default_allow));
    Ok(Json(json!({ "Authorized": d.allow, "Reason": d.reason })))
}
