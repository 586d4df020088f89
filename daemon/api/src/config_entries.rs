//! `/v1/config`: config entries stored as given, served with their indexes.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use mesh_state::Table;
use mesh_types::{Command, ConfigEntry, CONFIG_KINDS};
use serde_json::Value;

use crate::catalog::json_read;
use crate::decoded::{ConfigPut, Decoded};
use crate::intention_wire::service_intentions_json;
use crate::params::Params;
use crate::write::{owner, takeover};
use crate::{Api, ApiError, QueryOptions};

/// The entry as served: its body with canonical Kind/Name and the indexes.
pub(crate) fn entry_json(e: &ConfigEntry) -> Value {
    let mut v: Value =
        serde_json::from_str(&e.body_json).unwrap_or_else(|_| Value::Object(Default::default()));
    if let Some(map) = v.as_object_mut() {
        map.retain(|k, _| {
            !matches!(
                k.to_ascii_lowercase().as_str(),
                "kind" | "name" | "createindex" | "modifyindex" | "owner"
            )
        });
        map.insert("Kind".into(), e.kind.clone().into());
        map.insert("Name".into(), e.name.clone().into());
        // Who manages it (api, terraform, file:<node>:<path>), as on services and intentions.
        map.insert("Owner".into(), e.owner.clone().into());
        map.insert("CreateIndex".into(), e.create_index.into());
        map.insert("ModifyIndex".into(), e.modify_index.into());
    }
    v
}

/// Stored as intentions, served as config entries.
pub(crate) const INTENTIONS: &str = "service-intentions";

fn intention_entries(s: &mesh_state::State) -> Value {
    let mut by_dest: std::collections::BTreeMap<&str, Vec<&mesh_types::Intention>> =
        Default::default();
    for i in s.intentions() {
        by_dest.entry(i.destination.as_str()).or_default().push(i);
    }
    Value::Array(
        by_dest
            .into_iter()
            .map(|(d, list)| service_intentions_json(d, list))
            .collect(),
    )
}

pub(crate) fn check_kind(kind: &str) -> Result<(), ApiError> {
    if CONFIG_KINDS.contains(&kind) {
        return Ok(());
    }
    Err(ApiError::bad_request(format!(
        "invalid config entry kind {kind:?} (one of: {})",
        CONFIG_KINDS.join(", ")
    )))
}

pub(crate) async fn put(
    State(api): State<Api>,
    Decoded(put): Decoded<ConfigPut>,
) -> Result<Json<bool>, ApiError> {
    match put {
        ConfigPut::Intentions {
            destination,
            intentions,
            owner,
            cas,
            takeover,
        } => {
            if cas.is_some_and(|want| {
                api.state.read(|s| {
                    s.intentions_for_destination(&destination)
                        .map(|i| i.modify_index)
                        .max()
                        .unwrap_or(0)
                }) != want
            }) {
                return Ok(Json(false));
            }
            let intentions = intentions
                .into_iter()
                .map(|mut i| {
                    i.id = uuid::Uuid::new_v4().to_string();
                    i
                })
                .collect();
            api.apply(Command::IntentionsReplace {
                destination,
                intentions,
                owner,
                takeover,
            })
            .await?;
            Ok(Json(true))
        }
        ConfigPut::Entry {
            entry,
            cas,
            takeover,
        } => {
            check_chains(&api, &entry.kind, &entry.name, Some(&entry.body_json))?;
            let written = api
                .apply(Command::ConfigSet {
                    entry,
                    cas,
                    takeover,
                })
                .await?;
            Ok(Json(written.as_bool()))
        }
    }
}

pub(crate) async fn list(
    State(api): State<Api>,
    Path(kind): Path<String>,
    params: Params,
) -> Result<Response, ApiError> {
    check_kind(&kind)?;
    json_read(&api, &params, Table::Config, |s| {
        if kind == INTENTIONS {
            return (intention_entries(s), s.table_index(Table::Config));
        }
        (
            Value::Array(s.config_entries(&kind).map(entry_json).collect()),
            s.table_index(Table::Config),
        )
    })
    .await
}

pub(crate) async fn get(
    State(api): State<Api>,
    Path((kind, name)): Path<(String, String)>,
    params: Params,
) -> Result<Response, ApiError> {
    check_kind(&kind)?;
    let opts = QueryOptions::parse(&params.map())?;
    let (entry, index) = api
        .blocking_read(&opts, Table::Config, |s| {
            if kind == INTENTIONS {
                let list: Vec<_> = s.intentions_for_destination(&name).collect();
                let index = list.iter().map(|i| i.modify_index).max();
                return (
                    index.map(|_| service_intentions_json(&name, list)),
                    index.unwrap_or(s.table_index(Table::Config)),
                );
            }
            let e = s.config_entry(&kind, &name);
            (
                e.map(entry_json),
                e.map_or(s.table_index(Table::Config), |e| e.modify_index),
            )
        })
        .await?;
    let headers = api.read_headers(index);
    Ok(match entry {
        Some(v) => (headers, Json(v)).into_response(),
        None => (
            StatusCode::NOT_FOUND,
            headers,
            format!("Config entry not found for {kind:?} / {name:?}\n"),
        )
            .into_response(),
    })
}

pub(crate) async fn delete(
    State(api): State<Api>,
    headers: HeaderMap,
    Path((kind, name)): Path<(String, String)>,
    params: Params,
) -> Result<Json<bool>, ApiError> {
    check_kind(&kind)?;
    if kind == INTENTIONS {
        api.apply(Command::IntentionsReplace {
            destination: name,
            intentions: Vec::new(),
            owner: owner(&headers),
            takeover: takeover(&params.map()),
        })
        .await?;
        return Ok(Json(true));
    }
    check_chains(&api, &kind, &name, None)?;
    let cmd = Command::ConfigDelete {
        kind,
        name,
        owner: owner(&headers),
        takeover: takeover(&params.map()),
    };
    api.apply(cmd).await?;
    Ok(Json(true))
}

/// Refuses a write (`Some(body)`) or delete of entry `kind`/`name` that
/// is bad on its own or breaks a discovery chain that compiled before.
pub(crate) fn check_chains(
    api: &Api,
    kind: &str,
    name: &str,
    body: Option<&str>,
) -> Result<(), ApiError> {
    let datacenter = api.agent.datacenter();
    api.state
        .read(|s| chain_change_allowed(s, kind, name, body, &datacenter))
        .map_err(|e| ApiError::bad_request(e.to_string()))
}

/// [`check_chains`] on a state: every service with a router, splitter or
/// resolver has its chain compiled with and without the change.
pub fn chain_change_allowed(
    s: &mesh_state::State,
    kind: &str,
    name: &str,
    body: Option<&str>,
    datacenter: &str,
) -> Result<(), mesh_chain::ChainError> {
    let services = ["service-router", "service-splitter", "service-resolver"]
        .iter()
        .flat_map(|k| s.config_entries(k).map(|e| e.name.clone()))
        .collect();
    let stored = |k: &str, n: &str| s.config_entry(k, n).map(|e| e.body_json.clone());
    mesh_chain::check_change(&stored, kind, name, body, &services, datacenter)
}

/// `GET /v1/discovery-chain/<service>`: the compiled chain, as Consul
/// answers it (`?compile-dc=` names the datacenter to compile for).
pub(crate) async fn discovery_chain(
    State(api): State<Api>,
    Path(service): Path<String>,
    params: Params,
) -> Result<Response, ApiError> {
    let map = params.map();
    let opts = QueryOptions::parse(&map)?;
    let datacenter = map
        .get("compile-dc")
        .filter(|dc| !dc.is_empty())
        .cloned()
        .unwrap_or_else(|| api.agent.datacenter());
    let trust_domain = api.agent.trust_domain().unwrap_or_default();
    let (chain, index) = api
        .blocking_read(&opts, Table::Config, |s| {
            let stored = |k: &str, n: &str| s.config_entry(k, n).map(|e| e.body_json.clone());
            (
                mesh_chain::compile(&stored, &service, &datacenter, &trust_domain),
                s.table_index(Table::Config),
            )
        })
        .await?;
    let chain = chain.map_err(|e| ApiError::bad_request(e.to_string()))?;
    let headers = api.read_headers(index);
    Ok((headers, Json(serde_json::json!({ "Chain": chain }))).into_response())
}
