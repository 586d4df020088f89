//! `POST /v1/internal/mesh.d/view`: what a client agent's mesh.d reconciler
//! needs of the cluster to plan a reload, and nothing more: the intentions
//! and config entries its files own (owner prefix `file:<node>:`) and those
//! its files declare (to find collisions). A server's reconciler reads the
//! same selection from its own replica through [`declared_view`].

use axum::extract::State;
use axum::Json;
use mesh_state::State as Catalog;
use mesh_types::{ConfigEntry, Intention, CONFIG_KINDS};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::acl_routes::Check;
use crate::decoded::{BodyRequest, Decoded, Head};
use crate::{Api, ApiError};

/// The most keys of each kind one view may name (`MAX_VIEW_KEYS`).
pub const MAX_VIEW_KEYS: usize = 10_000;

/// The objects owned under `owner_prefix`, and those named by key.
pub fn declared_view(
    s: &Catalog,
    owner_prefix: &str,
    intentions: &[(String, String)],
    entries: &[(String, String)],
) -> DeclaredView {
    let mut view = DeclaredView::default();
    let owned = s.intentions().filter(|i| i.owner.starts_with(owner_prefix));
    let named = intentions
        .iter()
        .filter_map(|(src, dst)| s.intention(src, dst));
    for i in owned.chain(named) {
        if !view.intentions.iter().any(|v: &Intention| v.id == i.id) {
            view.intentions.push(i.clone());
        }
    }
    let owned = CONFIG_KINDS
        .iter()
        .flat_map(|kind| s.config_entries(kind))
        .filter(|e| e.owner.starts_with(owner_prefix));
    let named = entries
        .iter()
        .filter_map(|(kind, name)| s.config_entry(kind, name));
    for e in owned.chain(named) {
        let seen = |v: &ConfigEntry| v.kind == e.kind && v.name == e.name;
        if !view.config_entries.iter().any(seen) {
            view.config_entries.push(e.clone());
        }
    }
    view
}

/// The answer: the objects as stored.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DeclaredView {
    pub intentions: Vec<Intention>,
    pub config_entries: Vec<ConfigEntry>,
}

/// The request, decoded once (keys in any case, as every body).
pub struct ViewRequest {
    pub owner_prefix: String,
    pub intentions: Vec<(String, String)>,
    pub entries: Vec<(String, String)>,
}

#[derive(Deserialize)]
struct RawView {
    #[serde(rename = "ownerprefix")]
    owner_prefix: String,
    #[serde(default)]
    intentions: Vec<RawIntentionKey>,
    #[serde(default, rename = "configentries")]
    config_entries: Vec<RawEntryKey>,
}

#[derive(Deserialize)]
struct RawIntentionKey {
    source: String,
    destination: String,
}

#[derive(Deserialize)]
struct RawEntryKey {
    kind: String,
    name: String,
}

impl BodyRequest for ViewRequest {
    const WHAT: &'static str = "mesh.d view";
    fn decode(_: &Api, _: &Head, body: &Value) -> Result<Self, ApiError> {
        let raw: RawView = crate::wire::parse_value(body.clone(), Self::WHAT)?;
        // Only a node's file prefix: never everything, never another kind of owner.
        let node = raw
            .owner_prefix
            .strip_prefix("file:")
            .and_then(|rest| rest.strip_suffix(':'));
        if node.is_none_or(|n| n.is_empty() || n.contains(':')) {
            return Err(ApiError::bad_request(format!(
                "{}: OwnerPrefix must be file:<node>:, got {:?}",
                Self::WHAT,
                raw.owner_prefix
            )));
        }
        let too_many = raw.intentions.len().max(raw.config_entries.len());
        if too_many > MAX_VIEW_KEYS {
            return Err(ApiError::bad_request(format!(
                "{}: {too_many} keys of one kind, over MAX_VIEW_KEYS ({MAX_VIEW_KEYS})",
                Self::WHAT
            )));
        }
        Ok(ViewRequest {
            owner_prefix: raw.owner_prefix,
            intentions: raw
                .intentions
                .into_iter()
                .map(|k| (k.source, k.destination))
                .collect(),
            entries: raw
                .config_entries
                .into_iter()
                .map(|k| (k.kind, k.name))
                .collect(),
        })
    }
    fn checks(&self, _: &Api) -> Vec<Check> {
        // What a whole snapshot needs: the view crosses every service's objects.
        vec![Check::Management]
    }
}

pub(crate) async fn handler(
    State(api): State<Api>,
    Decoded(req): Decoded<ViewRequest>,
) -> Json<DeclaredView> {
    Json(
        api.state
            .read(|s| declared_view(s, &req.owner_prefix, &req.intentions, &req.entries)),
    )
}
