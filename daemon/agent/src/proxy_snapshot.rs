//! `GET /v1/agent/connect/proxy/:id`: the snapshot a sidecar runs on (its
//! listeners, leaf, trust bundle, intentions and healthy upstream
//! endpoints), served from the snapshot hub as a blocking query that
//! returns when the snapshot's version moves past `?index`.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::Path;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Extension;
use mesh_api::{ApiError, Params, QueryOptions};

use crate::node::Node;
use crate::snapshot_hub::{self, ProxyKey, Watched};

/// How long past its wait a query may stay for a first snapshot still
/// being computed (a relayed one waits on a server).
const FIRST_SNAPSHOT_WAIT: Duration = Duration::from_secs(30);

/// The handler: answers at once without `?index`, else when the snapshot's
/// version differs from it (or the wait ends).
pub(crate) async fn handler(
    Extension(agent): Extension<Arc<Node>>,
    Path(id): Path<String>,
    Extension(caller): Extension<mesh_api::Caller>,
    params: Params,
) -> Result<Response, ApiError> {
    let query = params.map();
    let opts = QueryOptions::parse(&query)?;
    let key = if agent.raft.is_none() {
        // A client agent relays from a server with the caller's token.
        ProxyKey {
            token: caller.secret.clone(),
            ..ProxyKey::local(&id)
        }
    } else {
        // A client agent asking on behalf of its own node's proxy.
        let node = query
            .get("node")
            .filter(|n| **n != agent.config.node_name)
            .cloned();
        ProxyKey {
            csr: node.as_ref().and(query.get("csr").cloned()),
            node,
            ..ProxyKey::local(&id)
        }
    };
    let mut rx = snapshot_hub::subscribe(&agent.snapshots, key);
    let deadline = tokio::time::Instant::now() + opts.wait;
    loop {
        let seen = rx.borrow_and_update().clone();
        let now = tokio::time::Instant::now();
        match seen {
            Watched::Failed(f) => return Ok((f.status, f.body.clone()).into_response()),
            Watched::Ready(p)
                if opts.index == 0 || p.snapshot.index != opts.index || now >= deadline =>
            {
                let headers = [
                    ("X-Consul-Index", p.snapshot.index.to_string()),
                    ("Content-Type", "application/json".to_string()),
                ];
                return Ok((headers, p.json()).into_response());
            }
            Watched::Pending if now >= deadline + FIRST_SNAPSHOT_WAIT => {
                return Err(ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!("the snapshot of proxy {id:?} is not ready yet"),
                ));
            }
            _ => {}
        }
        let wake = match seen {
            Watched::Pending => deadline + FIRST_SNAPSHOT_WAIT,
            _ => deadline,
        };
        tokio::select! {
            changed = rx.changed() => if changed.is_err() {
                return Err(ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "the agent is stopping"));
            },
            _ = tokio::time::sleep_until(wake) => {}
        }
    }
}
