//! `GET|PUT /v1/snapshot`: save the whole state, or restore it (through Raft,
//! so every server installs the same state).

use axum::body::Bytes;
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
    let mut headers = api.read_headers(api.state.last_index().max(1));
    headers.insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/octet-stream"),
    );
    Ok((headers, data).into_response())
}

pub(crate) async fn restore(State(api): State<Api>, body: Bytes) -> Result<Response, ApiError> {
    if body.is_empty() {
        return Err(ApiError::bad_request("empty snapshot"));
    }
    api.apply(Command::Restore {
        snapshot: body.to_vec(),
    })
    .await?;
    Ok(().into_response())
}
