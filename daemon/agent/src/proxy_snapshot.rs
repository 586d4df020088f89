//! `GET /v1/agent/connect/proxy/:id`: the snapshot a sidecar runs on (its
//! listeners, leaf, trust bundle, intentions and healthy upstream
//! endpoints), computed from this agent's state and served as a blocking
//! query that returns when any of its inputs change.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::Path;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use mesh_api::{ApiError, Params, QueryOptions};
use mesh_proxy::{Endpoint, IntentionSet, Leaf, Protocol, ProxySnapshot, PublicListener, Upstream};
use mesh_state::Table;
use mesh_types::{CheckStatus, Service};

use crate::build::Agent;
use crate::connect_ca::CaRequestError;

impl Agent {
    /// This agent's own registration of proxy `id`, if it has one.
    fn local_proxy(&self, id: &str) -> Option<Service> {
        self.local
            .inner
            .lock()
            .services
            .get(id)
            .map(|s| s.service.clone())
            .filter(|s| s.kind == "connect-proxy")
    }

    /// Compute the snapshot for proxy `id`: registered on this agent, or
    /// (`on_node`, for a client agent that asked) in the catalog under that
    /// node. `None` if no such proxy.
    ///
    /// A client agent's proxy gets its leaf only from that agent's `csr`
    /// (no private key in the answer), or none without one.
    pub(crate) async fn proxy_snapshot(
        &self,
        id: &str,
        on_node: Option<&str>,
        csr: Option<&str>,
    ) -> Result<Option<ProxySnapshot>, ApiError> {
        let svc = match on_node {
            None => self.local_proxy(id),
            Some(node) => self
                .state
                .read(|s| s.service(node, id).cloned())
                .filter(|s| s.kind == "connect-proxy"),
        };
        let Some(svc) = svc else {
            return Ok(None);
        };
        let proxy = svc.proxy.clone().unwrap_or_default();
        let dest = proxy.destination_service_name.clone();
        let dc = self.config.datacenter.clone();
        let stored = self.stored_ca();
        let (td, roots) = stored
            .as_ref()
            .map(|(s, _)| (s.state.trust_domain.clone(), s.state.trust_bundle()))
            .unwrap_or_default();
        let leaf_error = |e: CaRequestError| match e {
            CaRequestError::Bad(m) => ApiError::bad_request(format!("csr: {m}")),
            CaRequestError::Unavailable(m) => ApiError::new(StatusCode::SERVICE_UNAVAILABLE, m),
            CaRequestError::RateLimited(m) => ApiError::new(StatusCode::TOO_MANY_REQUESTS, m),
        };
        let cached = match (&stored, on_node, csr) {
            (None, _, _) | (Some(_), Some(_), None) => None,
            (Some(_), None, _) => Some(self.leaf_for(&dest).await.map_err(leaf_error)?),
            (Some(_), Some(node), Some(csr)) => Some(
                self.leaf_for_csr(node, &dest, csr)
                    .await
                    .map_err(leaf_error)?,
            ),
        };
        let default_allow = self.live.lock().acl.default_policy == mesh_config::AclPolicy::Allow;
        let snap = self.state.read(|s| {
            let intentions = IntentionSet::for_destination(s.intentions(), &dest, default_allow);
            let protocol = s
                .config_entry("service-defaults", &dest)
                .and_then(|e| serde_json::from_str::<serde_json::Value>(&e.body_json).ok())
                .and_then(|v| {
                    v.as_object()?
                        .iter()
                        .find(|(k, _)| k.eq_ignore_ascii_case("protocol"))
                        .and_then(|(_, v)| v.as_str().map(str::to_ascii_lowercase))
                })
                .map_or(Protocol::Tcp, |p| {
                    if matches!(p.as_str(), "http" | "http2" | "grpc") {
                        Protocol::Http
                    } else {
                        Protocol::Tcp
                    }
                });
            let upstreams = proxy
                .upstreams
                .iter()
                .map(|u| {
                    let endpoints = mesh_api::connect_instances(s, &u.destination_name)
                        .into_iter()
                        .filter(|(node, svc)| {
                            // The sidecar and the app behind it must both be up.
                            let app = svc
                                .proxy
                                .as_ref()
                                .map(|p| p.destination_service_id.clone())
                                .unwrap_or_default();
                            s.checks_for(&node.name, &svc.id)
                                .into_iter()
                                .chain(s.checks_for(&node.name, &app))
                                .all(|c| c.status != CheckStatus::Critical)
                        })
                        .map(|(node, svc)| Endpoint {
                            address: if svc.address.is_empty() {
                                node.address.clone()
                            } else {
                                svc.address.clone()
                            },
                            port: svc.port,
                            spiffe_id: mesh_types::SpiffeId::service(&td, &dc, &u.destination_name)
                                .to_string(),
                        })
                        .collect();
                    Upstream {
                        destination_name: u.destination_name.clone(),
                        local_bind_address: if u.local_bind_address.is_empty() {
                            "127.0.0.1".into()
                        } else {
                            u.local_bind_address.clone()
                        },
                        local_bind_port: u.local_bind_port,
                        connect_timeout_ms: 5000,
                        endpoints,
                    }
                })
                .collect();
            let index = s.table_index(Table::Services)
                + s.table_index(Table::Checks)
                + s.table_index(Table::Config)
                + s.table_index(Table::Ca);
            ProxySnapshot {
                proxy_id: id.to_string(),
                service: dest.clone(),
                trust_domain: td.clone(),
                datacenter: dc.clone(),
                public: PublicListener {
                    bind_address: if svc.address.is_empty() {
                        "0.0.0.0".into()
                    } else {
                        svc.address.clone()
                    },
                    bind_port: svc.port,
                    local_service_address: if proxy.local_service_address.is_empty() {
                        "127.0.0.1".into()
                    } else {
                        proxy.local_service_address.clone()
                    },
                    local_service_port: proxy.local_service_port,
                    protocol,
                },
                leaf: None,
                roots: roots.clone(),
                intentions,
                upstreams,
                index,
            }
        });
        let mut snap = snap;
        // Local re-registration of the proxy changes the snapshot too (a
        // remote node's shows in the Services index already).
        if on_node.is_none() {
            snap.index += self.local.inner.lock().version;
        }
        if let Some(c) = cached {
            snap.index += c.index;
            snap.leaf = Some(Leaf {
                cert_pem: std::iter::once(c.leaf.cert_pem.clone())
                    .chain(c.chain.iter().cloned())
                    .collect::<Vec<_>>()
                    .join(""),
                private_key_pem: c
                    .leaf
                    .private_key_pem
                    .as_ref()
                    .map(|k| k.expose().to_string())
                    .unwrap_or_default(),
            });
        }
        Ok(Some(snap))
    }
}

/// The handler: answers at once without `?index`, else when the snapshot's
/// index moves past it (or the wait ends).
pub(crate) async fn handler(
    Extension(agent): Extension<Arc<Agent>>,
    Path(id): Path<String>,
    Extension(caller): Extension<mesh_api::Caller>,
    params: Params,
) -> Result<Response, ApiError> {
    let query = params.map();
    let opts = QueryOptions::parse(&query)?;
    if agent.raft.is_none() {
        return from_server(&agent, &id, &params, caller.secret.as_deref()).await;
    }
    // A client agent asking on behalf of its own node's proxy.
    let node = query.get("node").cloned();
    let on_node = node.as_deref().filter(|n| *n != agent.config.node_name);
    let csr = query.get("csr").map(String::as_str);
    let slot_node = on_node.unwrap_or(&agent.config.node_name).to_string();
    let hub = agent.state.hub();
    let mut watches =
        [Table::Services, Table::Checks, Table::Config, Table::Ca].map(|t| hub.subscribe(t));
    let mut local = agent.local.versions.subscribe();
    let deadline = tokio::time::Instant::now() + opts.wait;
    loop {
        for w in &mut watches {
            w.borrow_and_update();
        }
        local.borrow_and_update();
        let Some(snap) = agent.proxy_snapshot(&id, on_node, csr).await? else {
            return Ok((
                StatusCode::NOT_FOUND,
                format!("unknown proxy service ID {id:?} on this agent\n"),
            )
                .into_response());
        };
        let now = tokio::time::Instant::now();
        if opts.index == 0 || snap.index > opts.index || now >= deadline {
            let index = snap.index;
            return Ok(([("X-Consul-Index", index.to_string())], Json(snap)).into_response());
        }
        // Wake on state changes, a local re-registration, or the leaf's
        // renewal or re-issue time: never by polling.
        let leaf_due = agent
            .ca
            .leaves
            .lock()
            .get(&agent.leaf_slot(&slot_node, &snap.service))
            .cloned()
            .map(|c| agent.leaf_changes_at(&c));
        let until_leaf = leaf_due.map_or(Duration::from_secs(3600), |t| {
            Duration::from_secs((t - mesh_ca::unix_now()).clamp(0, 3600) as u64)
        });
        let wake = deadline.min(now + until_leaf);
        let [a, b, c, d] = &mut watches;
        tokio::select! {
            _ = a.changed() => {}
            _ = b.changed() => {}
            _ = c.changed() => {}
            _ = d.changed() => {}
            _ = local.changed() => {}
            _ = tokio::time::sleep_until(wake) => {}
        }
    }
}

/// A client agent holds no catalog and no CA: a server computes the
/// snapshot from the catalog copy of this agent's proxy registration
/// (anti-entropy put it there) and the client relays it, blocking included.
/// The leaf's key is made here and only a CSR goes to the server, so no
/// private key crosses the network. The proxy only ever talks to its agent.
async fn from_server(
    agent: &Agent,
    id: &str,
    params: &Params,
    token: Option<&str>,
) -> Result<Response, ApiError> {
    let Some(proxy) = agent.local_proxy(id) else {
        return Ok((
            StatusCode::NOT_FOUND,
            format!("unknown proxy service ID {id:?} on this agent\n"),
        )
            .into_response());
    };
    let unavailable = |what: String| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, what);
    let server = agent.server_http_addr().ok_or_else(|| {
        unavailable(
            "No known servers: this client agent has not joined a cluster with servers".into(),
        )
    })?;
    let service = proxy
        .proxy
        .map(|p| p.destination_service_name)
        .unwrap_or_default();
    let (key, csr) = client_key(agent, &server, &service).await?;
    let mut query: Vec<(String, String)> = params
        .pairs
        .iter()
        .filter(|(k, _)| k != "node" && k != "csr")
        .cloned()
        .collect();
    query.push(("node".into(), agent.config.node_name.clone()));
    query.push(("csr".into(), csr));
    let url = reqwest::Url::parse_with_params(
        &format!("http://{server}/v1/agent/connect/proxy/{id}"),
        &query,
    )
    .map_err(|e| ApiError::bad_request(format!("proxy ID {id:?}: {e}")))?;
    let mut req = crate::handle::server_http().get(url);
    if let Some(token) = token {
        // The server checks the proxy's own token, not this agent's.
        req = req.header("x-consul-token", token);
    }
    let resp = req
        .send()
        .await
        .map_err(|e| unavailable(format!("asking server {server} for proxy {id:?}: {e}")))?;
    let status = resp.status();
    let index = resp.headers().get("x-consul-index").cloned();
    let body = resp
        .bytes()
        .await
        .map_err(|e| unavailable(format!("reading proxy {id:?} from server {server}: {e}")))?;
    if !status.is_success() {
        let code = StatusCode::from_u16(status.as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
        return Ok((code, body).into_response());
    }
    let mut snap: ProxySnapshot = serde_json::from_slice(&body)
        .map_err(|e| unavailable(format!("server {server} sent a bad snapshot: {e}")))?;
    if let Some(leaf) = &mut snap.leaf {
        leaf.private_key_pem = key.expose().to_string();
    }
    let mut headers = axum::http::HeaderMap::new();
    if let Some(index) = index {
        headers.insert("X-Consul-Index", index);
    }
    Ok((headers, Json(snap)).into_response())
}

/// This client agent's key and CSR for `service`, made once per process
/// (the cluster's trust domain, needed for the SPIFFE ID, from a server).
async fn client_key(
    agent: &Agent,
    server: &str,
    service: &str,
) -> Result<(mesh_ca::SecretPem, String), ApiError> {
    type Keys = parking_lot::Mutex<std::collections::HashMap<String, (mesh_ca::SecretPem, String)>>;
    static KEYS: std::sync::OnceLock<Keys> = std::sync::OnceLock::new();
    let keys = KEYS.get_or_init(Default::default);
    let slot = format!("{}/{service}", agent.config.node_name);
    if let Some(k) = keys.lock().get(&slot) {
        return Ok(k.clone());
    }
    let unavailable = |what: String| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, what);
    let roots: serde_json::Value = crate::handle::server_http()
        .get(format!("http://{server}/v1/connect/ca/roots"))
        .send()
        .await
        .and_then(|r| r.error_for_status())
        .map_err(|e| unavailable(format!("CA roots from server {server}: {e}")))?
        .json()
        .await
        .map_err(|e| unavailable(format!("CA roots from server {server}: {e}")))?;
    let trust_domain = roots["TrustDomain"]
        .as_str()
        .filter(|t| !t.is_empty())
        .ok_or_else(|| unavailable(format!("server {server} has no CA trust domain yet")))?;
    let id =
        mesh_types::SpiffeId::service(trust_domain, &agent.config.datacenter, service).to_string();
    let made = mesh_ca::key_and_csr(&id)
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    Ok(keys.lock().entry(slot).or_insert(made).clone())
}
