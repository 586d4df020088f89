//! `GET|PUT /v1/snapshot`: save the whole state, or restore it (through Raft,
//! so every server installs the same state).

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use mesh_raft::ReadMode;
use mesh_types::Command;

use crate::params::Params;
use crate::{Api, ApiError, QueryOptions};

pub(crate) async fn save(State(api): State<Api>, params: Params) -> Result<Response, ApiError> {
    let opts = QueryOptions::parse(&params.map())?;
    if let Some(raft) = &api.raft {
        // A saved snapshot should hold every acknowledged write.
        let mode = if opts.mode == ReadMode::Stale {
            ReadMode::Stale
        } else {
            ReadMode::Consistent
        };
        raft.read_barrier(mode).await?;
    }
    let data = api.state.snapshot();
    if data.len() > MAX_RESTORE_BYTES {
        // Still served: a backup is worth having even if it needs an
        // offline restore.
        tracing::warn!(
            bytes = data.len(),
            limit = MAX_RESTORE_BYTES,
            "snapshot is larger than PUT /v1/snapshot can restore (raft_max_entry_bytes)"
        );
    }
    let mut headers = api.read_headers(api.state.last_index().max(1));
    headers.insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/octet-stream"),
    );
    Ok((headers, data).into_response())
}

/// A snapshot is restored as one Raft entry: at most this large.
pub(crate) const MAX_RESTORE_BYTES: usize = mesh_types::MAX_ENTRY_BYTES - 1024;

pub(crate) async fn restore(
    State(api): State<Api>,
    headers: axum::http::HeaderMap,
    body: axum::body::Body,
) -> Result<Response, ApiError> {
    let body =
        crate::read_limited(body, &headers, MAX_RESTORE_BYTES, "raft_max_entry_bytes").await?;
    if body.is_empty() {
        return Err(ApiError::bad_request("empty snapshot"));
    }
    api.apply(Command::Restore {
        snapshot: body.to_vec(),
    })
    .await?;
    Ok(().into_response())
}
