//! The one write path: every change is a `Command` proposed through Raft;
//! refusals become Consul's status codes.

use axum::http::{HeaderMap, StatusCode};
use mesh_types::{Command, KvEntry, Outcome, DEFAULT_OWNER};

use crate::{Api, ApiError};

/// A command that took effect.
pub enum Written {
    Done,
    Bool(bool),
    Txn(Vec<KvEntry>),
    /// A transaction with catalog or session operations.
    TxnAll(Vec<mesh_types::TxnResult>),
}

impl Written {
    /// Consul's `true`/`false` answer.
    pub fn as_bool(&self) -> bool {
        !matches!(self, Written::Bool(false))
    }
}

impl Api {
    /// Propose `cmd` and map its outcome: rejected → 400, owned by another → 409.
    pub async fn apply(&self, cmd: Command) -> Result<Written, ApiError> {
        let raft = self.raft.as_ref().ok_or_else(|| {
            ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "no server available")
        })?;
        let (_, outcome) = raft.propose(&cmd).await?;
        match outcome {
            Outcome::Done => Ok(Written::Done),
            Outcome::Bool(b) => Ok(Written::Bool(b)),
            Outcome::Rejected(why) => Err(ApiError::bad_request(why)),
            Outcome::Conflict { what, owner } => Err(ApiError::new(
                StatusCode::CONFLICT,
                format!(
                    "{what} is managed by {owner}; change it there, or retry with ?takeover=true to take it over"
                ),
            )),
            Outcome::Txn { results, errors } if errors.is_empty() => Ok(Written::Txn(results)),
            Outcome::Txn { errors, .. } => Err(ApiError::txn(errors)),
            Outcome::TxnAll { results, errors } if errors.is_empty() => {
                Ok(Written::TxnAll(results))
            }
            Outcome::TxnAll { errors, .. } => Err(ApiError::txn(errors)),
            // Batches are split into single outcomes inside mesh-raft.
            Outcome::Batch(_) => Err(ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "unexpected batch outcome",
            )),
        }
    }
}

/// Who is writing: `X-Mesh-Owner` (api, terraform, file:<node>:<path>), default `api`.
pub fn owner(headers: &HeaderMap) -> String {
    headers
        .get("x-mesh-owner")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty())
        .unwrap_or(DEFAULT_OWNER)
        .to_string()
}

/// Whether the writer asks to take over an object another owner manages.
pub fn takeover(params: &std::collections::HashMap<String, String>) -> bool {
    params
        .get("takeover")
        .is_some_and(|v| v.is_empty() || v == "true" || v == "1")
}
