//! `PUT /v1/txn`: atomic KV transactions (Consul's KV verbs).

use axum::extract::State;
use axum::Json;
use base64::Engine;
use mesh_types::{Command, TxnOp};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::decoded::{Decoded, TxnRequest};
use crate::wire::parse_value;
use crate::write::Written;
use crate::{Api, ApiError};

/// Consul's limit on operations per transaction.
const MAX_OPS: usize = 128;

#[derive(Deserialize)]
struct Op {
    kv: Option<KvOp>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct KvOp {
    verb: String,
    key: String,
    value: Option<String>,
    flags: u64,
    index: u64,
}

fn decode_value(i: usize, v: &Option<String>) -> Result<Vec<u8>, ApiError> {
    match v {
        None => Ok(Vec::new()),
        Some(text) => base64::engine::general_purpose::STANDARD
            .decode(text)
            .map_err(|e| {
                ApiError::bad_request(format!("operation {i}: Value is not valid base64: {e}"))
            }),
    }
}

fn to_op(i: usize, op: Op) -> Result<TxnOp, ApiError> {
    let kv = op.kv.ok_or_else(|| {
        ApiError::bad_request(format!("operation {i}: only KV operations are supported"))
    })?;
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
        other => {
            return Err(ApiError::bad_request(format!(
                "operation {i}: unknown KV verb {other:?}"
            )))
        }
    })
}

/// The operations of a `PUT /v1/txn` body, as they will be proposed.
pub(crate) fn decode_ops(body: &Value) -> Result<Vec<TxnOp>, ApiError> {
    if body.is_null() {
        return Err(ApiError::bad_request(
            "Request decode failed: txn: empty body",
        ));
    }
    let ops: Vec<Op> = parse_value(body.clone(), "txn")?;
    if ops.len() > MAX_OPS {
        return Err(ApiError::new(
            axum::http::StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "Transaction contains too many operations ({} > {MAX_OPS})",
                ops.len()
            ),
        ));
    }
    ops.into_iter()
        .enumerate()
        .map(|(i, op)| to_op(i, op))
        .collect()
}

pub(crate) async fn txn(
    State(api): State<Api>,
    Decoded(TxnRequest(ops)): Decoded<TxnRequest>,
) -> Result<Json<Value>, ApiError> {
    let Written::Txn(results) = api.apply(Command::Txn { ops }).await? else {
        return Err(ApiError::bad_request("unexpected transaction outcome"));
    };
    let results: Vec<Value> = results
        .iter()
        .map(|e| {
            json!({"KV": {
                "LockIndex": e.lock_index, "Key": e.key, "Flags": e.flags,
                "Value": (!e.value.is_empty()).then(|| base64::engine::general_purpose::STANDARD.encode(&e.value)),
                "CreateIndex": e.create_index, "ModifyIndex": e.modify_index,
            }})
        })
        .collect();
    Ok(Json(json!({ "Results": results, "Errors": null })))
}
