//! The agent's side of xDS: Envoy streams subscribe to the snapshot hub,
//! as the HTTP snapshot endpoint and managed sidecars do, after the same
//! ACL check (`service:write` on the proxied service). Proxyless gRPC
//! clients follow services' healthy instances (`service:read`): from the
//! state store on a server, by blocking queries to a server on a client
//! agent.

use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use mesh_acl::{Access, Authorizer, Resource};
use mesh_proxy::Endpoint;
use mesh_state::{State, Table};
use mesh_types::CheckStatus;
use mesh_xds::{ServiceEndpoints, SnapshotSource, Snapshots};
use tokio::sync::mpsc;
use tonic::Status;

use crate::node::{acl_settings, Node};
use crate::snapshot_hub::{self, ProxyKey, Watched};

/// How long a stream waits before watching again after a failure that may
/// pass (no leader, a leaf not yet signed).
const RETRY: Duration = Duration::from_secs(1);

/// Longest a client agent's blocking query for a service's instances waits.
const INSTANCES_WAIT: Duration = Duration::from_secs(300);

/// The hub and the catalog, as the ADS server sees them.
pub(crate) struct XdsSource {
    pub node: Arc<Node>,
    /// Requests to servers (client agents).
    pub http: reqwest::Client,
}

impl XdsSource {
    /// On a server, the token is checked here; a client agent's relay
    /// carries it to a server, which checks it the same way.
    fn authorize(&self, service: &str, access: Access, token: Option<&str>) -> Result<(), Status> {
        let settings = acl_settings(&self.node.live.borrow().acl, &self.node.config.datacenter);
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
        if authz.allows(Resource::Service, service, access) {
            Ok(())
        } else {
            let wanted = if access == Access::Write {
                "write"
            } else {
                "read"
            };
            Err(Status::permission_denied(format!(
                "Permission denied: the token lacks service:{wanted} on {service:?}"
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
        // A sidecar needs write on the service it fronts; a gateway, on itself.
        let destination = match (service.kind.as_str(), service.proxy) {
            ("ingress-gateway" | "terminating-gateway", _) => service.name,
            (_, Some(p)) => p.destination_service_name,
            (_, None) => {
                return Err(Status::invalid_argument(format!(
                    "service {proxy_id:?} is not a connect proxy or a gateway"
                )))
            }
        };
        let key = if self.node.raft.is_some() {
            self.authorize(&destination, Access::Write, token)?;
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

    fn watch_service(
        &self,
        service: &str,
        token: Option<&str>,
    ) -> Result<ServiceEndpoints, Status> {
        let (tx, rx) = mpsc::channel(1);
        if self.node.raft.is_some() {
            self.authorize(service, Access::Read, token)?;
            self.watch_local(service.to_string(), tx);
        } else {
            self.watch_remote(service.to_string(), token.map(str::to_string), tx);
        }
        Ok(Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx)))
    }
}

/// The instances a proxyless client (or a terminating gateway) may call:
/// those with no critical check (passing or warning, Consul's rule for
/// proxies), at the service's address or else its node's.
pub(crate) fn healthy_instances(state: &State, service: &str) -> Vec<Endpoint> {
    state
        .service_health(service)
        .into_iter()
        .filter(|h| h.checks.iter().all(|c| c.status != CheckStatus::Critical))
        .map(|h| Endpoint {
            address: if h.service.address.is_empty() {
                h.node.address.clone()
            } else {
                h.service.address.clone()
            },
            port: h.service.port,
            ..Default::default()
        })
        .collect()
}

/// One entry of `/v1/health/service/<name>`, as far as a proxyless client
/// needs it.
#[derive(serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
struct HealthEntry {
    node: HealthNode,
    service: HealthService,
    #[serde(default)]
    checks: Vec<HealthCheckStatus>,
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
struct HealthNode {
    address: String,
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
struct HealthService {
    #[serde(default)]
    address: String,
    port: u16,
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
struct HealthCheckStatus {
    status: String,
}

impl HealthEntry {
    fn endpoint(self) -> Option<Endpoint> {
        if self.checks.iter().any(|c| c.status == "critical") {
            return None;
        }
        let address = if self.service.address.is_empty() {
            self.node.address
        } else {
            self.service.address
        };
        Some(Endpoint {
            address,
            port: self.service.port,
            ..Default::default()
        })
    }
}

/// What a client agent's blocking query to a server brought back.
enum Fetched {
    Instances(Vec<Endpoint>, u64),
    /// The server refused the token or the name: the stream ends.
    Refused(Status),
    /// The server is unreachable or busy: ask again later.
    Retry(String),
}

impl XdsSource {
    /// Server: instances from the state store, again on each change of
    /// the catalog or of health.
    fn watch_local(&self, service: String, tx: mpsc::Sender<Result<Vec<Endpoint>, Status>>) {
        let state = self.node.state.clone();
        tokio::spawn(async move {
            let mut services = state.hub().subscribe(Table::Services);
            let mut checks = state.hub().subscribe(Table::Checks);
            let mut last = None;
            loop {
                services.borrow_and_update();
                checks.borrow_and_update();
                let now = state.read(|s| healthy_instances(s, &service));
                if last.as_ref() != Some(&now) {
                    if tx.send(Ok(now.clone())).await.is_err() {
                        return;
                    }
                    last = Some(now);
                }
                tokio::select! {
                    r = services.changed() => if r.is_err() { return },
                    r = checks.changed() => if r.is_err() { return },
                    _ = tx.closed() => return,
                }
            }
        });
    }

    /// Client agent: blocking queries to a server's health endpoint, with
    /// the client's token (the server checks it).
    fn watch_remote(
        &self,
        service: String,
        token: Option<String>,
        tx: mpsc::Sender<Result<Vec<Endpoint>, Status>>,
    ) {
        let node = self.node.clone();
        let http = self.http.clone();
        tokio::spawn(async move {
            let mut index = 0;
            loop {
                let fetched = tokio::select! {
                    f = fetch_instances(&node, &http, &service, token.as_deref(), index) => f,
                    _ = tx.closed() => return,
                };
                match fetched {
                    Fetched::Instances(instances, next) => {
                        // An index that goes back (another server) starts over.
                        index = if next < index { 0 } else { next };
                        if tx.send(Ok(instances)).await.is_err() {
                            return;
                        }
                    }
                    Fetched::Refused(status) => {
                        let _ = tx.send(Err(status)).await;
                        return;
                    }
                    Fetched::Retry(why) => {
                        tracing::debug!(%service, %why, "xDS: a service's instances are unavailable; asking again");
                        tokio::select! {
                            _ = tokio::time::sleep(RETRY) => {}
                            _ = tx.closed() => return,
                        }
                    }
                }
            }
        });
    }
}

async fn fetch_instances(
    node: &Node,
    http: &reqwest::Client,
    service: &str,
    token: Option<&str>,
    index: u64,
) -> Fetched {
    let Some(server) = node.writes.server_base_url() else {
        return Fetched::Retry("no known server".into());
    };
    let query = [
        ("index", index.to_string()),
        ("wait", format!("{}s", INSTANCES_WAIT.as_secs())),
    ];
    let mut url = match reqwest::Url::parse(&format!("{server}/v1/health/service")) {
        Ok(url) => url,
        Err(e) => return Fetched::Retry(format!("server address {server:?}: {e}")),
    };
    // The name as one path segment, percent-encoded by the URL itself.
    if let Ok(mut segments) = url.path_segments_mut() {
        segments.push(service);
    }
    url.query_pairs_mut().extend_pairs(query);
    let mut request = http
        .get(url)
        .timeout(INSTANCES_WAIT + INSTANCES_WAIT / 16 + RETRY * 10);
    if let Some(token) = token {
        request = request.header("x-consul-token", token);
    }
    let response = match request.send().await {
        Ok(r) => r,
        Err(e) => return Fetched::Retry(e.to_string()),
    };
    let code = response.status();
    let index = response
        .headers()
        .get("x-consul-index")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let body = match response.bytes().await {
        Ok(b) => b,
        Err(e) => return Fetched::Retry(e.to_string()),
    };
    if !code.is_success() {
        let text = String::from_utf8_lossy(&body);
        return match status_of(code, &text) {
            Some(status) => Fetched::Refused(status),
            None => Fetched::Retry(format!("{code}: {}", text.trim())),
        };
    }
    match serde_json::from_slice::<Vec<HealthEntry>>(&body) {
        Ok(entries) => Fetched::Instances(
            entries
                .into_iter()
                .filter_map(HealthEntry::endpoint)
                .collect(),
            index,
        ),
        Err(e) => Fetched::Retry(format!("the server's answer: {e}")),
    }
}
