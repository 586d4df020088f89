//! The agent's side of xDS: Envoy streams subscribe to the snapshot hub,
//! as the HTTP snapshot endpoint and managed sidecars do, after the same
//! ACL check (`service:write` on the proxied service).

use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use mesh_acl::{Access, Authorizer, Resource};
use mesh_xds::{SnapshotSource, Snapshots};
use tokio::sync::mpsc;
use tonic::Status;

use crate::node::{acl_settings, Node};
use crate::snapshot_hub::{self, ProxyKey, Watched};

/// How long a stream waits before watching again after a failure that may
/// pass (no leader, a leaf not yet signed).
const RETRY: Duration = Duration::from_secs(1);

/// The hub, as the ADS server sees it.
pub(crate) struct XdsSource {
    pub node: Arc<Node>,
}

impl XdsSource {
    /// On a server, the token is checked here; a client agent's relay
    /// carries it to a server, which checks it the same way.
    fn authorize(&self, destination: &str, token: Option<&str>) -> Result<(), Status> {
        let settings = acl_settings(&self.node.live.borrow().acl);
        if !settings.enabled {
            return Ok(());
        }
        let resolved = self
            .node
            .state
            .read(|s| mesh_api::resolve_in(s, &settings, token))
            .ok_or_else(|| {
                Status::permission_denied("ACL not found: the stream's token is unknown")
            })?;
        let authz = Authorizer::from_rule_texts(
            resolved.management,
            &resolved.rules,
            settings.default_allow,
        );
        if authz.allows(Resource::Service, destination, Access::Write) {
            Ok(())
        } else {
            Err(Status::permission_denied(format!(
                "Permission denied: the token lacks service:write on {destination:?}"
            )))
        }
    }
}

fn status_of(code: StatusCode, body: &str) -> Option<Status> {
    let body = body.trim().to_string();
    match code {
        StatusCode::FORBIDDEN | StatusCode::UNAUTHORIZED => Some(Status::permission_denied(body)),
        StatusCode::NOT_FOUND => Some(Status::not_found(body)),
        // Server-side trouble passes, and so does a 429 (the CA's signing
        // budget, or the agent's watched-proxy cap): watch again.
        StatusCode::TOO_MANY_REQUESTS => None,
        c if c.is_client_error() => Some(Status::invalid_argument(body)),
        _ => None,
    }
}

impl SnapshotSource for XdsSource {
    fn watch(&self, proxy_id: &str, token: Option<&str>) -> Result<Snapshots, Status> {
        let service = self.node.local.service(proxy_id).ok_or_else(|| {
            Status::not_found(format!(
                "no service with ID {proxy_id:?} is registered with this agent (Envoy's node.id must be the proxy's service ID)"
            ))
        })?;
        let destination = service
            .proxy
            .map(|p| p.destination_service_name)
            .ok_or_else(|| {
                Status::invalid_argument(format!("service {proxy_id:?} is not a connect proxy"))
            })?;
        let key = if self.node.raft.is_some() {
            self.authorize(&destination, token)?;
            ProxyKey::local(proxy_id)
        } else {
            ProxyKey {
                token: token.map(str::to_string),
                ..ProxyKey::local(proxy_id)
            }
        };
        let (tx, rx) = mpsc::channel(1);
        let hub = self.node.snapshots.clone();
        tokio::spawn(async move {
            loop {
                let mut watched = snapshot_hub::subscribe(&hub, key.clone());
                loop {
                    let seen = watched.borrow_and_update().clone();
                    match seen {
                        Watched::Pending => {}
                        Watched::Ready(p) => {
                            if tx.send(Ok(p.snapshot.clone())).await.is_err() {
                                return;
                            }
                        }
                        Watched::Failed(f) => {
                            if let Some(status) = status_of(f.status, &f.body) {
                                let _ = tx.send(Err(status)).await;
                                return;
                            }
                            tracing::debug!(status = %f.status, body = %f.body.trim(), "xDS: snapshot unavailable; watching again");
                            break;
                        }
                    }
                    tokio::select! {
                        changed = watched.changed() => if changed.is_err() { break },
                        _ = tx.closed() => return,
                    }
                }
                tokio::select! {
                    _ = tokio::time::sleep(RETRY) => {}
                    _ = tx.closed() => return,
                }
            }
        });
        Ok(Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx)))
    }
}
