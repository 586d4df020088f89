//! `/v1/coordinate/*`: nodes' network coordinates (Consul's shapes), which
//! estimate round trips for `?near=` sorting and `mesh rtt`.

use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use mesh_acl::{Access, Resource};
use mesh_state::Table;
use mesh_types::{Command, Coordinate, CoordinateUpdate};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::acl_routes::Check;
use crate::decoded::{BodyRequest, Decoded, Head};
use crate::query::QueryOptions;
use crate::{Api, ApiError};

fn node_json(node: &str, coord: &Coordinate) -> Value {
    json!({ "Node": node, "Segment": "", "Coord": coord })
}

/// `GET /v1/coordinate/datacenters`: each datacenter's servers. With one
/// datacenter, its servers' LAN coordinates, named `<node>.<dc>` as Consul
/// names WAN members.
pub(crate) async fn datacenters(State(api): State<Api>) -> Result<Response, ApiError> {
    let dc = api.agent.datacenter();
    let servers: Vec<String> = api
        .agent
        .members()
        .into_iter()
        .filter(|m| m.tags.get("role").map(String::as_str) == Some("consul"))
        .map(|m| m.name)
        .collect();
    let coords: Vec<Value> = api.state.read(|s| {
        servers
            .iter()
            .filter_map(|name| {
                s.coordinate(name)
                    .map(|c| json!({ "Node": format!("{name}.{dc}"), "Coord": c }))
            })
            .collect()
    });
    Ok(Json(json!([{ "Datacenter": dc, "AreaID": "wan", "Coordinates": coords }])).into_response())
}

/// `GET /v1/coordinate/nodes`: every node's coordinate (blocking).
pub(crate) async fn nodes(
    State(api): State<Api>,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let opts = QueryOptions::parse(&params)?;
    let (list, index) = api
        .blocking_read(&opts, Table::Coordinates, |s| {
            let list: Vec<Value> = s.coordinates().map(|(n, c)| node_json(n, c)).collect();
            (list, s.table_index(Table::Coordinates))
        })
        .await?;
    Ok((api.read_headers(index), Json(list)).into_response())
}

/// `GET /v1/coordinate/node/:node`: one node's coordinate; 404 if it has none.
pub(crate) async fn node(
    State(api): State<Api>,
    Path(node): Path<String>,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let opts = QueryOptions::parse(&params)?;
    let (found, index) = api
        .blocking_read(&opts, Table::Coordinates, |s| {
            let found = s.coordinate(&node).map(|c| node_json(&node, c));
            (found, s.table_index(Table::Coordinates))
        })
        .await?;
    match found {
        Some(v) => Ok((api.read_headers(index), Json(vec![v])).into_response()),
        None => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("no coordinate for node {node:?}"),
        )),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UpdateBody {
    node: String,
    #[serde(default)]
    segment: String,
    coord: CoordBody,
    // Accepted as Consul's clients send them; one datacenter.
    #[serde(default)]
    datacenter: String,
    #[serde(default, rename = "partition")]
    _partition: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CoordBody {
    vec: Vec<f64>,
    error: f64,
    adjustment: f64,
    height: f64,
}

/// `PUT /v1/coordinate/update`: one node's coordinate, checked whole
/// before anything is proposed.
pub struct CoordinateWrite(pub CoordinateUpdate);

impl BodyRequest for CoordinateWrite {
    const WHAT: &'static str = "coordinate update";

    fn decode(api: &Api, _: &Head, body: &Value) -> Result<Self, ApiError> {
        let parsed: UpdateBody = crate::wire::parse_value(body.clone(), Self::WHAT)?;
        if parsed.node.is_empty() {
            return Err(ApiError::bad_request("coordinate update: Node is required"));
        }
        if !parsed.segment.is_empty() {
            return Err(ApiError::bad_request(format!(
                "coordinate update: Segment {:?}: mesh has one LAN segment (\"\")",
                parsed.segment
            )));
        }
        if !parsed.datacenter.is_empty() && parsed.datacenter != api.agent.datacenter() {
            return Err(ApiError::bad_request(format!(
                "coordinate update: Datacenter {:?} is not this datacenter",
                parsed.datacenter
            )));
        }
        let coord = Coordinate {
            vec: parsed.coord.vec,
            error: parsed.coord.error,
            adjustment: parsed.coord.adjustment,
            height: parsed.coord.height,
        };
        coord
            .validate()
            .map_err(|e| ApiError::bad_request(format!("coordinate update: Coord.{e}")))?;
        if !api.state.read(|s| s.node(&parsed.node).is_some()) {
            return Err(ApiError::new(
                StatusCode::NOT_FOUND,
                format!(
                    "coordinate update: node {:?} is not in the catalog",
                    parsed.node
                ),
            ));
        }
        Ok(CoordinateWrite(CoordinateUpdate {
            node: parsed.node,
            segment: String::new(),
            coord,
        }))
    }

    fn checks(&self, _: &Api) -> Vec<Check> {
        vec![Check::Named(
            Resource::Node,
            self.0.node.clone(),
            Access::Write,
        )]
    }
}

pub(crate) async fn update(
    State(api): State<Api>,
    Decoded(CoordinateWrite(update)): Decoded<CoordinateWrite>,
) -> Result<Response, ApiError> {
    api.apply(Command::CoordinateBatch {
        updates: vec![update],
    })
    .await?;
    Ok(Json(true).into_response())
}
