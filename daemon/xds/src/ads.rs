//! The Aggregated Discovery Service: one stream per Envoy, state of the
//! world or delta. Each stream watches its proxy's snapshot, renders it
//! once per new snapshot, and pushes each resource type whose content
//! changed; ACKs and NACKs are recorded per type in [`Streams`].

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::hash::{Hash, Hasher};
use std::pin::Pin;
use std::sync::Arc;

use envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_server::AggregatedDiscoveryService;
use envoy_types::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse, DiscoveryRequest, DiscoveryResponse, Resource,
};
use envoy_types::pb::google::protobuf::Any;
use envoy_types::pb::google::rpc::Status as RpcStatus;
use futures::stream::BoxStream;
use futures::{Stream, StreamExt};
use mesh_proxy::ProxySnapshot;
use tokio::sync::mpsc;
use tonic::{Request, Response, Status, Streaming};

use crate::render::{render, type_url, Resources};
use crate::status::{Streams, TypeReport};

/// The most resource names one request may subscribe to.
pub const MAX_RESOURCE_NAMES: usize = 10_000;

/// Where snapshots come from: the agent's hub, behind its ACL check.
pub trait SnapshotSource: Send + Sync + 'static {
    /// The snapshots of proxy `proxy_id` for a caller with `token`, each
    /// new one as it is computed; refused with `PermissionDenied` (no
    /// `service:write` on the proxied service) or `NotFound`, at once or
    /// (a client agent asks a server) as the stream's first item.
    fn watch(&self, proxy_id: &str, token: Option<&str>) -> Result<Snapshots, Status>;
}

/// A proxy's snapshots as they change; an error ends the stream.
pub type Snapshots = BoxStream<'static, Result<Arc<ProxySnapshot>, Status>>;

/// The ADS service.
pub struct Ads {
    source: Arc<dyn SnapshotSource>,
    streams: Arc<Streams>,
}

impl Ads {
    pub fn new(source: Arc<dyn SnapshotSource>, streams: Arc<Streams>) -> Self {
        Ads { source, streams }
    }
}

type Outgoing<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

/// The token a stream carries, as Consul's Envoy bootstrap sends it.
fn token_of<T>(request: &Request<T>) -> Option<String> {
    request
        .metadata()
        .get("x-consul-token")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .filter(|t| !t.is_empty())
}

fn proxy_id(
    node: Option<&envoy_types::pb::envoy::config::core::v3::Node>,
) -> Result<String, Status> {
    match node.map(|n| n.id.as_str()) {
        Some(id) if !id.is_empty() => Ok(id.to_string()),
        _ => Err(Status::invalid_argument(
            "the first request of a stream must carry node.id (the proxy's service ID)",
        )),
    }
}

fn check_names(names: &[String]) -> Result<(), Status> {
    if names.len() > MAX_RESOURCE_NAMES {
        return Err(Status::invalid_argument(format!(
            "{} resource names in one request; at most {MAX_RESOURCE_NAMES} (MAX_RESOURCE_NAMES)",
            names.len()
        )));
    }
    Ok(())
}

fn known_type(t: &str) -> Option<&'static str> {
    type_url::ALL.into_iter().find(|k| *k == t)
}

/// Listeners and clusters are sent whole; the others by name.
fn is_wildcard_type(t: &str) -> bool {
    t == type_url::LISTENER || t == type_url::CLUSTER
}

fn nack_detail(error: &Option<RpcStatus>) -> Option<String> {
    error.as_ref().map(|e| e.message.clone())
}

#[tonic::async_trait]
impl AggregatedDiscoveryService for Ads {
    type StreamAggregatedResourcesStream = Outgoing<DiscoveryResponse>;
    type DeltaAggregatedResourcesStream = Outgoing<DeltaDiscoveryResponse>;

    async fn stream_aggregated_resources(
        &self,
        request: Request<Streaming<DiscoveryRequest>>,
    ) -> Result<Response<Self::StreamAggregatedResourcesStream>, Status> {
        let token = token_of(&request);
        let mut incoming = request.into_inner();
        let first = incoming
            .message()
            .await?
            .ok_or_else(|| Status::invalid_argument("the stream ended before its first request"))?;
        let id = proxy_id(first.node.as_ref())?;
        let snapshots = self.source.watch(&id, token.as_deref())?;
        let (tx, rx) = mpsc::channel(16);
        let streams = self.streams.clone();
        tokio::spawn(async move {
            let mut stream = Sotw::new(id, streams);
            if let Err(status) = stream.run(first, incoming, snapshots, &tx).await {
                let _ = tx.send(Err(status)).await;
            }
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }

    async fn delta_aggregated_resources(
        &self,
        request: Request<Streaming<DeltaDiscoveryRequest>>,
    ) -> Result<Response<Self::DeltaAggregatedResourcesStream>, Status> {
        let token = token_of(&request);
        let mut incoming = request.into_inner();
        let first = incoming
            .message()
            .await?
            .ok_or_else(|| Status::invalid_argument("the stream ended before its first request"))?;
        let id = proxy_id(first.node.as_ref())?;
        let snapshots = self.source.watch(&id, token.as_deref())?;
        let (tx, rx) = mpsc::channel(16);
        let streams = self.streams.clone();
        tokio::spawn(async move {
            let mut stream = Delta::new(id, streams);
            if let Err(status) = stream.run(first, incoming, snapshots, &tx).await {
                let _ = tx.send(Err(status)).await;
            }
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }
}

/// The resources of `type_url` this stream should hold: all of a wildcard
/// type, else those subscribed by name.
fn selection(
    resources: &Resources,
    type_url: &str,
    wildcard: bool,
    names: &BTreeSet<String>,
) -> BTreeMap<String, Any> {
    let Some(all) = resources.of(type_url) else {
        return BTreeMap::new();
    };
    if wildcard {
        return all.clone();
    }
    names
        .iter()
        .filter_map(|n| all.get(n).map(|r| (n.clone(), r.clone())))
        .collect()
}

/// One state-of-the-world type on one stream.
#[derive(Default)]
struct SotwType {
    wildcard: bool,
    names: BTreeSet<String>,
    /// What was last sent, its version and nonce.
    sent: Option<BTreeMap<String, Any>>,
    version: u64,
    nonce: String,
}

struct Sotw {
    proxy: String,
    streams: Arc<Streams>,
    types: HashMap<&'static str, SotwType>,
    resources: Option<Resources>,
    nonces: u64,
}

impl Sotw {
    fn new(proxy: String, streams: Arc<Streams>) -> Self {
        Sotw {
            proxy,
            streams,
            types: HashMap::new(),
            resources: None,
            nonces: 0,
        }
    }

    async fn run(
        &mut self,
        first: DiscoveryRequest,
        mut incoming: Streaming<DiscoveryRequest>,
        mut snapshots: Snapshots,
        tx: &mpsc::Sender<Result<DiscoveryResponse, Status>>,
    ) -> Result<(), Status> {
        let _open = self.streams.open(&self.proxy, "sotw");
        self.request(first, tx).await?;
        loop {
            tokio::select! {
                next = incoming.message() => match next? {
                    Some(req) => self.request(req, tx).await?,
                    None => return Ok(()),
                },
                snapshot = snapshots.next() => match snapshot.transpose()? {
                    Some(s) => {
                        self.resources = Some(render(&s));
                        self.streams.snapshot(&self.proxy, s.index);
                        for t in type_url::ALL {
                            self.push(t, tx).await?;
                        }
                    }
                    None => return Err(Status::unavailable("the agent stopped watching this proxy")),
                },
                _ = tx.closed() => return Ok(()),
            }
        }
    }

    async fn request(
        &mut self,
        req: DiscoveryRequest,
        tx: &mpsc::Sender<Result<DiscoveryResponse, Status>>,
    ) -> Result<(), Status> {
        check_names(&req.resource_names)?;
        let Some(t) = known_type(&req.type_url) else {
            tracing::warn!(proxy = %self.proxy, type_url = %req.type_url, "xDS: a request for a type mesh does not serve; ignored");
            return Ok(());
        };
        let state = self.types.entry(t).or_default();
        if !req.response_nonce.is_empty() {
            if req.response_nonce != state.nonce {
                // An answer to an older response: a newer one is on its way.
                return Ok(());
            }
            match nack_detail(&req.error_detail) {
                Some(detail) => {
                    tracing::warn!(proxy = %self.proxy, type_url = t, version = state.version, %detail, "Envoy rejected a config (NACK); it keeps its last accepted one");
                    self.streams.report(
                        &self.proxy,
                        t,
                        TypeReport::Nack {
                            version: state.version.to_string(),
                            detail,
                        },
                    );
                }
                None => self.streams.report(
                    &self.proxy,
                    t,
                    TypeReport::Ack {
                        version: req.version_info.clone(),
                    },
                ),
            }
        }
        state.wildcard = is_wildcard_type(t)
            && (req.resource_names.is_empty() || req.resource_names.iter().any(|n| n == "*"));
        state.names = req.resource_names.into_iter().collect();
        // A first request, or a new subscription list, is answered even
        // when its content equals what was sent.
        if req.response_nonce.is_empty() {
            state.sent = None;
        }
        self.push(t, tx).await
    }

    /// Sends type `t` if its selection differs from what was last sent.
    async fn push(
        &mut self,
        t: &'static str,
        tx: &mpsc::Sender<Result<DiscoveryResponse, Status>>,
    ) -> Result<(), Status> {
        let Some(resources) = &self.resources else {
            return Ok(());
        };
        let Some(state) = self.types.get_mut(t) else {
            return Ok(());
        };
        let want = selection(resources, t, state.wildcard, &state.names);
        if state.sent.as_ref() == Some(&want) {
            return Ok(());
        }
        self.nonces += 1;
        state.version += 1;
        state.nonce = self.nonces.to_string();
        let response = DiscoveryResponse {
            version_info: state.version.to_string(),
            resources: want.values().cloned().collect(),
            type_url: t.to_string(),
            nonce: state.nonce.clone(),
            ..Default::default()
        };
        self.streams.report(
            &self.proxy,
            t,
            TypeReport::Sent {
                version: state.version.to_string(),
            },
        );
        state.sent = Some(want);
        tx.send(Ok(response))
            .await
            .map_err(|_| Status::cancelled("the stream closed"))
    }
}

/// One delta type on one stream.
#[derive(Default)]
struct DeltaType {
    wildcard: bool,
    names: BTreeSet<String>,
    /// The version of each resource Envoy holds (as we last sent it).
    held: HashMap<String, String>,
    nonce: String,
    /// Whether the first request for this type has been seen.
    started: bool,
}

struct Delta {
    proxy: String,
    streams: Arc<Streams>,
    types: HashMap<&'static str, DeltaType>,
    resources: Option<Resources>,
    nonces: u64,
}

/// A resource's version: a digest of its bytes.
fn version_of(resource: &Any) -> String {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    resource.value.hash(&mut h);
    format!("{:016x}", h.finish())
}

impl Delta {
    fn new(proxy: String, streams: Arc<Streams>) -> Self {
        Delta {
            proxy,
            streams,
            types: HashMap::new(),
            resources: None,
            nonces: 0,
        }
    }

    async fn run(
        &mut self,
        first: DeltaDiscoveryRequest,
        mut incoming: Streaming<DeltaDiscoveryRequest>,
        mut snapshots: Snapshots,
        tx: &mpsc::Sender<Result<DeltaDiscoveryResponse, Status>>,
    ) -> Result<(), Status> {
        let _open = self.streams.open(&self.proxy, "delta");
        self.request(first, tx).await?;
        loop {
            tokio::select! {
                next = incoming.message() => match next? {
                    Some(req) => self.request(req, tx).await?,
                    None => return Ok(()),
                },
                snapshot = snapshots.next() => match snapshot.transpose()? {
                    Some(s) => {
                        self.resources = Some(render(&s));
                        self.streams.snapshot(&self.proxy, s.index);
                        for t in type_url::ALL {
                            self.push(t, tx).await?;
                        }
                    }
                    None => return Err(Status::unavailable("the agent stopped watching this proxy")),
                },
                _ = tx.closed() => return Ok(()),
            }
        }
    }

    async fn request(
        &mut self,
        req: DeltaDiscoveryRequest,
        tx: &mpsc::Sender<Result<DeltaDiscoveryResponse, Status>>,
    ) -> Result<(), Status> {
        check_names(&req.resource_names_subscribe)?;
        check_names(&req.resource_names_unsubscribe)?;
        let Some(t) = known_type(&req.type_url) else {
            tracing::warn!(proxy = %self.proxy, type_url = %req.type_url, "xDS: a request for a type mesh does not serve; ignored");
            return Ok(());
        };
        let state = self.types.entry(t).or_default();
        if !state.started {
            state.started = true;
            // A first request with no names subscribes to everything of a wildcard type.
            state.wildcard = is_wildcard_type(t) && req.resource_names_subscribe.is_empty();
            state.held = req.initial_resource_versions.clone();
        }
        if !req.response_nonce.is_empty() && req.response_nonce == state.nonce {
            match nack_detail(&req.error_detail) {
                Some(detail) => {
                    tracing::warn!(proxy = %self.proxy, type_url = t, %detail, "Envoy rejected a config (NACK); it keeps its last accepted one");
                    self.streams.report(
                        &self.proxy,
                        t,
                        TypeReport::Nack {
                            version: state.nonce.clone(),
                            detail,
                        },
                    );
                }
                None => self.streams.report(
                    &self.proxy,
                    t,
                    TypeReport::Ack {
                        version: state.nonce.clone(),
                    },
                ),
            }
        }
        for name in req.resource_names_subscribe {
            if name == "*" {
                state.wildcard = true;
            } else {
                state.names.insert(name);
            }
        }
        for name in req.resource_names_unsubscribe {
            if name == "*" {
                state.wildcard = false;
            } else {
                state.names.remove(&name);
                state.held.remove(&name);
            }
        }
        self.push(t, tx).await
    }

    /// Sends the resources of type `t` Envoy does not hold at their
    /// current version, and the names of those it holds that are gone.
    async fn push(
        &mut self,
        t: &'static str,
        tx: &mpsc::Sender<Result<DeltaDiscoveryResponse, Status>>,
    ) -> Result<(), Status> {
        let Some(resources) = &self.resources else {
            return Ok(());
        };
        let Some(state) = self.types.get_mut(t) else {
            return Ok(());
        };
        let want = selection(resources, t, state.wildcard, &state.names);
        let mut changed = Vec::new();
        for (name, resource) in &want {
            let version = version_of(resource);
            if state.held.get(name) != Some(&version) {
                changed.push(Resource {
                    name: name.clone(),
                    version: version.clone(),
                    resource: Some(resource.clone()),
                    ..Default::default()
                });
            }
        }
        let removed: Vec<String> = state
            .held
            .keys()
            .filter(|n| !want.contains_key(*n))
            .cloned()
            .collect();
        if changed.is_empty() && removed.is_empty() {
            return Ok(());
        }
        for r in &changed {
            state.held.insert(r.name.clone(), r.version.clone());
        }
        for n in &removed {
            state.held.remove(n);
        }
        self.nonces += 1;
        state.nonce = self.nonces.to_string();
        self.streams.report(
            &self.proxy,
            t,
            TypeReport::Sent {
                version: state.nonce.clone(),
            },
        );
        let response = DeltaDiscoveryResponse {
            resources: changed,
            removed_resources: removed,
            type_url: t.to_string(),
            nonce: state.nonce.clone(),
            ..Default::default()
        };
        tx.send(Ok(response))
            .await
            .map_err(|_| Status::cancelled("the stream closed"))
    }
}
