//! `PUT /v1/txn`: atomic transactions over KV, nodes, services, checks
//! and sessions (Consul's verbs), all or nothing.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::Engine;
use mesh_types::{Command, HealthCheck, Node, Service, TxnCatalogOp, TxnOp, TxnResult};
use mesh_wire::ServiceDef;
use serde::Deserialize;
use serde_json::{json, Map, Value};

use crate::decoded::{Decoded, TxnRequest};
use crate::wire::{check_json, node_json, parse_value, service_json};
use crate::write::Written;
use crate::{Api, ApiError};

/// Consul's limit on operations per transaction.
const MAX_OPS: usize = 128;

/// What a transaction's operations take from its request besides the body.
pub(crate) struct Context {
    pub owner: String,
    pub takeover: bool,
    pub datacenter: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Op {
    kv: Option<KvOp>,
    node: Option<NodeOp>,
    service: Option<ServiceOp>,
    check: Option<CheckOp>,
    session: Option<SessionOp>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct KvOp {
    verb: String,
    key: String,
    value: Option<String>,
    flags: u64,
    index: u64,
    session: String,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct NodeOp {
    verb: String,
    node: Map<String, Value>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct ServiceOp {
    verb: String,
    node: String,
    service: Map<String, Value>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct CheckOp {
    verb: String,
    check: Map<String, Value>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct SessionOp {
    verb: String,
    session: Map<String, Value>,
}

fn bad(i: usize, what: impl std::fmt::Display) -> ApiError {
    ApiError::bad_request(format!("operation {i}: {what}"))
}

fn decode_value(i: usize, v: &Option<String>) -> Result<Vec<u8>, ApiError> {
    match v {
        None => Ok(Vec::new()),
        Some(text) => base64::engine::general_purpose::STANDARD
            .decode(text)
            .map_err(|e| bad(i, format!("Value is not valid base64: {e}"))),
    }
}

fn kv_op(i: usize, kv: KvOp) -> Result<TxnOp, ApiError> {
    if !kv.session.is_empty() {
        return Err(bad(i, "lock verbs (lock, unlock, check-session) are not supported in a transaction; use ?acquire= and ?release="));
    }
    let key = kv.key.clone();
    Ok(match kv.verb.as_str() {
        "set" => TxnOp::Set {
            key,
            value: decode_value(i, &kv.value)?,
            flags: kv.flags,
        },
        "cas" => TxnOp::Cas {
            key,
            value: decode_value(i, &kv.value)?,
            flags: kv.flags,
            index: kv.index,
        },
        "get" => TxnOp::Get { key },
        "get-tree" => TxnOp::GetTree { key },
        "check-index" => TxnOp::CheckIndex {
            key,
            index: kv.index,
        },
        "check-not-exists" => TxnOp::CheckNotExists { key },
        "delete" => TxnOp::Delete { key },
        "delete-tree" => TxnOp::DeleteTree { key },
        "delete-cas" => TxnOp::DeleteCas {
            key,
            index: kv.index,
        },
        other => return Err(bad(i, format!("unknown KV verb {other:?}"))),
    })
}

/// A field of an inner object, however its key is cased.
fn text(map: &Map<String, Value>, name: &str) -> String {
    mesh_wire::field(map, name)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

fn modify_index(map: &Map<String, Value>) -> u64 {
    mesh_wire::field(map, "ModifyIndex")
        .and_then(Value::as_u64)
        .unwrap_or(0)
}

/// `cas` and `delete-cas` carry the object's `ModifyIndex`.
fn cas_of(i: usize, verb: &str, map: &Map<String, Value>) -> Result<Option<u64>, ApiError> {
    match verb {
        "cas" | "delete-cas" => Ok(Some(modify_index(map))),
        "set" | "delete" | "get" => Ok(None),
        other => Err(bad(i, format!("unknown verb {other:?}"))),
    }
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct NodeBody {
    id: String,
    node: String,
    address: String,
    datacenter: String,
    #[serde(rename = "taggedaddresses")]
    tagged_addresses: Option<std::collections::BTreeMap<String, String>>,
    meta: Option<std::collections::BTreeMap<String, String>>,
}

fn node_op(i: usize, op: NodeOp, ctx: &Context) -> Result<TxnCatalogOp, ApiError> {
    let cas = cas_of(i, &op.verb, &op.node)?;
    let body: NodeBody =
        parse_value(Value::Object(op.node), "txn node").map_err(|e| bad(i, e.message))?;
    if body.node.is_empty() {
        return Err(bad(i, "Node.Node must name the node"));
    }
    Ok(match op.verb.as_str() {
        "get" => TxnCatalogOp::NodeGet { node: body.node },
        "delete" | "delete-cas" => TxnCatalogOp::NodeDelete {
            node: body.node,
            cas,
        },
        _ => {
            if body.address.is_empty() {
                return Err(bad(i, "Node.Address is required"));
            }
            let node = Node {
                id: body.id,
                name: body.node,
                address: body.address,
                datacenter: if body.datacenter.is_empty() {
                    ctx.datacenter.clone()
                } else {
                    body.datacenter
                },
                tagged_addresses: body.tagged_addresses.unwrap_or_default(),
                meta: body.meta.unwrap_or_default(),
                ..Default::default()
            };
            TxnCatalogOp::NodeSet { node, cas }
        }
    })
}

fn service_op(i: usize, op: ServiceOp, ctx: &Context) -> Result<TxnCatalogOp, ApiError> {
    let cas = cas_of(i, &op.verb, &op.service)?;
    if op.node.is_empty() {
        return Err(bad(i, "Service.Node must name the node"));
    }
    let id = text(&op.service, "ID");
    Ok(match op.verb.as_str() {
        "get" | "delete" | "delete-cas" if id.is_empty() => {
            return Err(bad(i, "Service.Service.ID is required"))
        }
        "get" => TxnCatalogOp::ServiceGet {
            node: op.node,
            service_id: id,
        },
        "delete" | "delete-cas" => TxnCatalogOp::ServiceDelete {
            node: op.node,
            service_id: id,
            cas,
            owner: ctx.owner.clone(),
            takeover: ctx.takeover,
        },
        _ => {
            let mut body = op.service;
            // Read here, not part of a service definition.
            mesh_wire::take_field(&mut body, "ModifyIndex");
            mesh_wire::take_field(&mut body, "CreateIndex");
            let def: ServiceDef =
                parse_value(Value::Object(body), "txn service").map_err(|e| bad(i, e.message))?;
            let service: Service = def.to_service(&ctx.owner).map_err(|e| bad(i, e.message))?;
            TxnCatalogOp::ServiceSet {
                node: op.node,
                service,
                cas,
            }
        }
    })
}

fn check_op(i: usize, op: CheckOp) -> Result<TxnCatalogOp, ApiError> {
    let cas = cas_of(i, &op.verb, &op.check)?;
    let node = text(&op.check, "Node");
    let check_id = text(&op.check, "CheckID");
    if node.is_empty() || check_id.is_empty() {
        return Err(bad(i, "Check.Node and Check.CheckID are required"));
    }
    Ok(match op.verb.as_str() {
        "get" => {
            return Err(bad(
                i,
                "checks have no get verb; read /v1/health/node/:node",
            ))
        }
        "delete" | "delete-cas" => TxnCatalogOp::CheckDelete {
            node,
            check_id,
            cas,
        },
        _ => {
            let status = match text(&op.check, "Status").as_str() {
                "" => mesh_types::CheckStatus::Critical,
                s => mesh_types::CheckStatus::parse(s)
                    .ok_or_else(|| bad(i, format!("Invalid check status {s:?}")))?,
            };
            let name = text(&op.check, "Name");
            let check = HealthCheck {
                name: if name.is_empty() {
                    check_id.clone()
                } else {
                    name
                },
                check_id,
                status,
                notes: text(&op.check, "Notes"),
                output: text(&op.check, "Output"),
                service_id: text(&op.check, "ServiceID"),
                ..Default::default()
            };
            TxnCatalogOp::CheckSet { node, check, cas }
        }
    })
}

fn session_op(i: usize, op: SessionOp) -> Result<TxnCatalogOp, ApiError> {
    if op.verb != "delete" {
        return Err(bad(
            i,
            format!("unknown session verb {:?} (only delete)", op.verb),
        ));
    }
    let id = text(&op.session, "ID");
    if id.is_empty() {
        return Err(bad(i, "Session.ID is required"));
    }
    Ok(TxnCatalogOp::SessionDelete { id })
}

fn to_op(i: usize, op: Op, ctx: &Context) -> Result<TxnOp, ApiError> {
    let given = [
        op.kv.is_some(),
        op.node.is_some(),
        op.service.is_some(),
        op.check.is_some(),
        op.session.is_some(),
    ];
    if given.iter().filter(|g| **g).count() != 1 {
        return Err(bad(
            i,
            "each operation is exactly one of KV, Node, Service, Check or Session",
        ));
    }
    if let Some(kv) = op.kv {
        return kv_op(i, kv);
    }
    let catalog = if let Some(node) = op.node {
        node_op(i, node, ctx)?
    } else if let Some(service) = op.service {
        service_op(i, service, ctx)?
    } else if let Some(check) = op.check {
        check_op(i, check)?
    } else {
        session_op(i, op.session.expect("counted above"))?
    };
    Ok(TxnOp::Catalog(Box::new(catalog)))
}

/// The operations of a `PUT /v1/txn` body, as they will be proposed.
pub(crate) fn decode_ops(body: &Value, ctx: &Context) -> Result<Vec<TxnOp>, ApiError> {
    if body.is_null() {
        return Err(ApiError::bad_request(
            "Request decode failed: txn: empty body",
        ));
    }
    let ops: Vec<Op> = parse_value(body.clone(), "txn")?;
    if ops.len() > MAX_OPS {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "Transaction contains too many operations ({} > {MAX_OPS})",
                ops.len()
            ),
        ));
    }
    ops.into_iter()
        .enumerate()
        .map(|(i, op)| to_op(i, op, ctx))
        .collect()
}

fn kv_json(e: &mesh_types::KvEntry) -> Value {
    json!({"KV": {
        "LockIndex": e.lock_index, "Key": e.key, "Flags": e.flags,
        "Value": (!e.value.is_empty()).then(|| base64::engine::general_purpose::STANDARD.encode(&e.value)),
        "CreateIndex": e.create_index, "ModifyIndex": e.modify_index,
    }})
}

fn result_json(r: &TxnResult) -> Value {
    match r {
        TxnResult::Kv(e) => kv_json(e),
        TxnResult::Node(n) => json!({ "Node": node_json(n) }),
        TxnResult::Service { service, .. } => json!({ "Service": service_json(service) }),
        TxnResult::Check { node, check } => json!({ "Check": check_json(node, check, &[]) }),
    }
}

pub(crate) async fn txn(
    State(api): State<Api>,
    Decoded(TxnRequest(ops)): Decoded<TxnRequest>,
) -> Result<Response, ApiError> {
    let results: Vec<Value> = match api.apply(Command::Txn { ops }).await? {
        Written::Txn(results) => results.iter().map(kv_json).collect(),
        Written::TxnAll(results) => results.iter().map(result_json).collect(),
        _ => return Err(ApiError::bad_request("unexpected transaction outcome")),
    };
    Ok(Json(json!({ "Results": results, "Errors": null })).into_response())
}
