//! The Aggregated Discovery Service: one stream per Envoy, state of the
//! world or delta. Each stream watches its proxy's snapshot, renders it
//! once per new snapshot, and pushes each resource type whose content
//! changed; ACKs and NACKs are recorded per type in [`Streams`].

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::pin::Pin;
use std::sync::Arc;

use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_server::AggregatedDiscoveryService;
use envoy_types::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse, DiscoveryRequest, DiscoveryResponse, Resource,
};
use envoy_types::pb::google::protobuf::Any;
use envoy_types::pb::google::rpc::Status as RpcStatus;
use futures::stream::BoxStream;
use futures::{Stream, StreamExt};
use mesh_proxy::ProxySnapshot;
use tonic::{Request, Response, Status, Streaming};

use crate::proxyless::Catalog;
use crate::render::{render, type_url, Resources};
use crate::status::{OpenStream, Streams, TypeReport};

/// The most resource names one request may subscribe to.
pub const MAX_RESOURCE_NAMES: usize = 10_000;

/// Where snapshots come from: the agent's hub, behind its ACL check.
pub trait SnapshotSource: Send + Sync + 'static {
    /// The snapshots of proxy `proxy_id` for a caller with `token`, each
    /// new one as it is computed; refused with `PermissionDenied` (no
    /// `service:write` on the proxied service) or `NotFound`, at once or
    /// (a client agent asks a server) as the stream's first item.
    fn watch(&self, proxy_id: &str, token: Option<&str>) -> Result<Snapshots, Status>;

    /// The healthy instances (passing or warning) of `service`, each new
    /// set as it changes, for a proxyless gRPC client with `token`;
    /// refused with `PermissionDenied` (no `service:read`).
    fn watch_service(&self, service: &str, token: Option<&str>)
        -> Result<ServiceEndpoints, Status>;
}

/// A proxy's snapshots as they change; an error ends the stream.
pub type Snapshots = BoxStream<'static, Result<Arc<ProxySnapshot>, Status>>;

/// A service's healthy instances as they change; an error ends the stream.
pub type ServiceEndpoints = BoxStream<'static, Result<Vec<mesh_proxy::Endpoint>, Status>>;

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

/// The token a stream carries: as Consul's Envoy bootstrap sends it, or
/// as a bearer token (what a gRPC client's call credentials send).
fn token_of<T>(request: &Request<T>) -> Option<String> {
    let metadata = request.metadata();
    let consul = metadata.get("x-consul-token").and_then(|v| v.to_str().ok());
    let bearer = || {
        metadata
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
    };
    consul
        .or_else(bearer)
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty())
}

/// Envoy says who it is; a gRPC library names itself otherwise.
fn is_envoy(node: Option<&Node>) -> bool {
    node.is_some_and(|n| n.user_agent_name == "envoy")
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

#[tonic::async_trait]
impl AggregatedDiscoveryService for Ads {
    type StreamAggregatedResourcesStream = Outgoing<DiscoveryResponse>;
    type DeltaAggregatedResourcesStream = Outgoing<DeltaDiscoveryResponse>;

    async fn stream_aggregated_resources(
        &self,
        request: Request<Streaming<DiscoveryRequest>>,
    ) -> Result<Response<Self::StreamAggregatedResourcesStream>, Status> {
        self.serve::<SotwType>(request).await
    }

    async fn delta_aggregated_resources(
        &self,
        request: Request<Streaming<DeltaDiscoveryRequest>>,
    ) -> Result<Response<Self::DeltaAggregatedResourcesStream>, Status> {
        self.serve::<DeltaType>(request).await
    }
}

impl Ads {
    /// Reads the first request, checks the caller, and runs the stream in
    /// its own task.
    async fn serve<P: Protocol>(
        &self,
        request: Request<Streaming<P::Request>>,
    ) -> Result<Response<Outgoing<P::Response>>, Status> {
        let token = token_of(&request);
        let mut incoming = request.into_inner();
        let first = incoming
            .message()
            .await?
            .ok_or_else(|| Status::invalid_argument("the stream ended before its first request"))?;
        let id = proxy_id(P::node(&first))?;
        let feed = match self.source.watch(&id, token.as_deref()) {
            Ok(snapshots) => Feed::Proxy(snapshots),
            // Not a proxy registered here, not Envoy, and asking for
            // resources by name: a proxyless gRPC client.
            Err(e)
                if e.code() == tonic::Code::NotFound
                    && !is_envoy(P::node(&first))
                    && P::names_resources(&first) =>
            {
                Feed::Catalog(Catalog::new(self.source.clone(), token))
            }
            Err(e) => return Err(e),
        };
        let open = self.streams.open(&id, P::MODE);
        let stream = AdsStream::<P> {
            proxy: id,
            streams: self.streams.clone(),
            types: HashMap::new(),
            resources: None,
            nonces: 0,
            outbox: VecDeque::new(),
            first: Some(first),
            incoming,
            feed,
            ended: false,
            _open: open,
        };
        // The response stream drives the stream itself: no task and no
        // channel per stream, so an idle stream costs only its state.
        let responses = futures::stream::unfold(stream, |mut stream| async move {
            let item = stream.next_response().await?;
            Some((item, stream))
        });
        Ok(Response::new(Box::pin(responses)))
    }
}

/// State of the world or delta: what differs between the two is how a
/// request changes a type's state and how a change becomes a response.
trait Protocol: Default + Send + 'static {
    type Request: prost::Message + Default + Send + 'static;
    type Response: Send + 'static;
    /// As the status API shows it.
    const MODE: &'static str;
    fn node(request: &Self::Request) -> Option<&Node>;
    fn type_url(request: &Self::Request) -> &str;
    /// The names this type is subscribed to (beyond a wildcard).
    fn names(&self) -> &BTreeSet<String>;
    /// Whether a request subscribes to resources by name (not wildcard).
    fn names_resources(request: &Self::Request) -> bool;
    /// Applies a request of this type; its ACK or NACK, if it was one.
    fn apply(&mut self, request: Self::Request) -> Result<Option<TypeReport>, Status>;
    /// A new snapshot arrived: what Envoy rejected may be accepted now
    /// (a secret it referenced has changed), so it is offered again.
    fn retry_rejected(&mut self);
    /// The response that brings Envoy to `want`, if it is not there yet.
    fn respond(
        &mut self,
        type_url: &'static str,
        want: &Resources,
        nonce: String,
    ) -> Option<(Self::Response, TypeReport)>;
}

/// One ADS stream: the proxy's newest rendered resources and, per type
/// Envoy asked for, what it holds; responses wait in `outbox` until the
/// transport takes them.
struct AdsStream<P: Protocol> {
    proxy: String,
    streams: Arc<Streams>,
    types: HashMap<&'static str, P>,
    resources: Option<Resources>,
    nonces: u64,
    outbox: VecDeque<P::Response>,
    /// The first request, read before the stream was accepted.
    first: Option<P::Request>,
    incoming: Streaming<P::Request>,
    feed: Feed,
    /// An error was sent: the next poll ends the stream.
    ended: bool,
    _open: OpenStream,
}

impl<P: Protocol> AdsStream<P> {
    /// The next response to send, an error that ends the stream, or
    /// `None` when Envoy closed its side.
    async fn next_response(&mut self) -> Option<Result<P::Response, Status>> {
        if self.ended {
            return None;
        }
        loop {
            if let Some(response) = self.outbox.pop_front() {
                return Some(Ok(response));
            }
            match self.step().await {
                Ok(true) => {}
                Ok(false) => return None,
                Err(status) => {
                    self.ended = true;
                    return Some(Err(status));
                }
            }
        }
    }

    /// Handles one request or one new set of resources; `false` when the
    /// client ended its side.
    async fn step(&mut self) -> Result<bool, Status> {
        if let Some(first) = self.first.take() {
            self.request(first)?;
            return Ok(true);
        }
        tokio::select! {
            next = self.incoming.message() => match next? {
                Some(req) => self.request(req)?,
                None => return Ok(false),
            },
            update = self.feed.next(&self.proxy) => {
                if let Some((resources, index)) = update? {
                    self.update(resources);
                    if let Some(index) = index {
                        // After the pushes: a status at this index has them as sent.
                        self.streams.snapshot(&self.proxy, index);
                    }
                }
            },
        }
        Ok(true)
    }

    /// New resources: every type is pushed where they differ from what
    /// the client holds.
    fn update(&mut self, resources: Resources) {
        self.resources = Some(resources);
        for state in self.types.values_mut() {
            state.retry_rejected();
        }
        for t in type_url::ALL {
            self.push(t);
        }
    }

    fn request(&mut self, req: P::Request) -> Result<(), Status> {
        let Some(t) = known_type(P::type_url(&req)) else {
            tracing::warn!(proxy = %self.proxy, type_url = %P::type_url(&req), "xDS: a request for a type mesh does not serve; ignored");
            return Ok(());
        };
        let report = self.types.entry(t).or_default().apply(req)?;
        if let Some(report) = report {
            if let TypeReport::Nack { version, detail } = &report {
                tracing::warn!(proxy = %self.proxy, type_url = t, %version, %detail, "Envoy rejected a config (NACK); it keeps its last accepted one");
            }
            self.streams.report(&self.proxy, t, report);
        }
        if let Feed::Catalog(catalog) = &mut self.feed {
            let names = self.types.values().flat_map(|s| s.names()).cloned();
            if catalog.follow(names.collect())? {
                let resources = catalog.render();
                self.update(resources);
                return Ok(());
            }
        }
        self.push(t);
        Ok(())
    }

    /// Queues type `t` if what Envoy should hold differs from what it was sent.
    fn push(&mut self, t: &'static str) {
        let (Some(resources), Some(state)) = (&self.resources, self.types.get_mut(t)) else {
            return;
        };
        let nonce = (self.nonces + 1).to_string();
        let Some((response, sent)) = state.respond(t, resources, nonce) else {
            return;
        };
        self.nonces += 1;
        self.streams.report(&self.proxy, t, sent);
        self.outbox.push_back(response);
    }
}

/// Where a stream's resources come from.
enum Feed {
    /// A proxy's snapshots.
    Proxy(Snapshots),
    /// The catalog, for a proxyless gRPC client.
    Catalog(Catalog),
}

impl Feed {
    /// The next resources to serve, with the snapshot index they come
    /// from; `None` while a snapshot is not complete enough to serve.
    async fn next(&mut self, proxy: &str) -> Result<Option<(Resources, Option<u64>)>, Status> {
        match self {
            Feed::Proxy(snapshots) => match snapshots.next().await.transpose()? {
                Some(s) if !complete(&s) => {
                    // Without its leaf and roots, Envoy would get TLS it
                    // cannot build and RBAC naming no trust domain.
                    tracing::debug!(
                        proxy,
                        index = s.index,
                        "xDS: waiting for the proxy's leaf and trust bundle"
                    );
                    Ok(None)
                }
                Some(s) => Ok(Some((render(&s), Some(s.index)))),
                None => Err(Status::unavailable("the agent stopped watching this proxy")),
            },
            Feed::Catalog(catalog) => Ok(Some((catalog.next().await?, None))),
        }
    }
}

/// Whether a snapshot has what every resource needs: the trust domain,
/// the trust bundle and this proxy's leaf.
fn complete(s: &ProxySnapshot) -> bool {
    !s.trust_domain.is_empty()
        && s.roots.iter().any(|r| !r.trim().is_empty())
        && s.leaf
            .as_ref()
            .is_some_and(|l| !l.cert_pem.is_empty() && !l.private_key_pem.is_empty())
}

/// The answer to a response, if `nonce` names the last one sent.
fn answer(
    nonce: &str,
    sent: &str,
    version: String,
    error: &Option<RpcStatus>,
) -> Option<TypeReport> {
    if nonce.is_empty() || nonce != sent {
        // A first request, or an answer to an older response: a newer one is on its way.
        return None;
    }
    Some(match error {
        Some(e) => TypeReport::Nack {
            version,
            detail: e.message.clone(),
        },
        None => TypeReport::Ack { version },
    })
}

/// The resources of `type_url` this stream should hold (all of a wildcard
/// type, else those subscribed by name), by name, with their versions;
/// nothing is copied until it is sent.
fn selection<'r>(
    resources: &'r Resources,
    type_url: &str,
    wildcard: bool,
    names: &BTreeSet<String>,
) -> BTreeMap<&'r str, (&'r Any, &'r str)> {
    let Some(all) = resources.of(type_url) else {
        return BTreeMap::new();
    };
    let entry = |(name, any): (&'r String, &'r Any)| {
        let version = resources.version(type_url, name).unwrap_or_default();
        (name.as_str(), (any, version))
    };
    if wildcard {
        return all.iter().map(entry).collect();
    }
    names
        .iter()
        .filter_map(|n| all.get_key_value(n))
        .map(entry)
        .collect()
}

/// One state-of-the-world type on one stream.
#[derive(Default)]
struct SotwType {
    wildcard: bool,
    names: BTreeSet<String>,
    /// What was last sent (each resource's digest, not a copy), its
    /// version and nonce.
    sent: Option<BTreeMap<String, String>>,
    version: u64,
    nonce: String,
    /// Envoy rejected the last response.
    rejected: bool,
}

impl Protocol for SotwType {
    type Request = DiscoveryRequest;
    type Response = DiscoveryResponse;
    const MODE: &'static str = "sotw";

    fn node(request: &DiscoveryRequest) -> Option<&Node> {
        request.node.as_ref()
    }

    fn type_url(request: &DiscoveryRequest) -> &str {
        &request.type_url
    }

    fn names(&self) -> &BTreeSet<String> {
        &self.names
    }

    fn names_resources(request: &DiscoveryRequest) -> bool {
        !request.resource_names.is_empty() && !request.resource_names.iter().any(|n| n == "*")
    }

    fn apply(&mut self, req: DiscoveryRequest) -> Result<Option<TypeReport>, Status> {
        check_names(&req.resource_names)?;
        let report = answer(
            &req.response_nonce,
            &self.nonce,
            self.version.to_string(),
            &req.error_detail,
        );
        if !req.response_nonce.is_empty() && req.response_nonce != self.nonce {
            return Ok(None);
        }
        self.rejected = matches!(report, Some(TypeReport::Nack { .. }));
        self.wildcard = is_wildcard_type(&req.type_url)
            && (req.resource_names.is_empty() || req.resource_names.iter().any(|n| n == "*"));
        self.names = req.resource_names.into_iter().collect();
        // A first request is answered even when its content equals what was sent.
        if req.response_nonce.is_empty() {
            self.sent = None;
        }
        Ok(report)
    }

    fn retry_rejected(&mut self) {
        if std::mem::take(&mut self.rejected) {
            self.sent = None;
        }
    }

    fn respond(
        &mut self,
        t: &'static str,
        resources: &Resources,
        nonce: String,
    ) -> Option<(DiscoveryResponse, TypeReport)> {
        let want = selection(resources, t, self.wildcard, &self.names);
        let digests: BTreeMap<String, String> = want
            .iter()
            .map(|(n, (_, v))| (n.to_string(), v.to_string()))
            .collect();
        if self.sent.as_ref() == Some(&digests) {
            return None;
        }
        self.version += 1;
        self.nonce = nonce;
        let response = DiscoveryResponse {
            version_info: self.version.to_string(),
            resources: want.values().map(|(any, _)| (*any).clone()).collect(),
            type_url: t.to_string(),
            nonce: self.nonce.clone(),
            ..Default::default()
        };
        self.sent = Some(digests);
        let sent = TypeReport::Sent {
            version: self.version.to_string(),
        };
        Some((response, sent))
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
    /// The names in the last response, and those Envoy rejected with it.
    last_sent: Vec<String>,
    rejected: Vec<String>,
}

impl Protocol for DeltaType {
    type Request = DeltaDiscoveryRequest;
    type Response = DeltaDiscoveryResponse;
    const MODE: &'static str = "delta";

    fn node(request: &DeltaDiscoveryRequest) -> Option<&Node> {
        request.node.as_ref()
    }

    fn type_url(request: &DeltaDiscoveryRequest) -> &str {
        &request.type_url
    }

    fn names(&self) -> &BTreeSet<String> {
        &self.names
    }

    fn names_resources(request: &DeltaDiscoveryRequest) -> bool {
        let names = &request.resource_names_subscribe;
        !names.is_empty() && !names.iter().any(|n| n == "*")
    }

    fn apply(&mut self, req: DeltaDiscoveryRequest) -> Result<Option<TypeReport>, Status> {
        check_names(&req.resource_names_subscribe)?;
        check_names(&req.resource_names_unsubscribe)?;
        if !self.started {
            self.started = true;
            // A first request with no names subscribes to everything of a wildcard type.
            self.wildcard =
                is_wildcard_type(&req.type_url) && req.resource_names_subscribe.is_empty();
            self.held = req.initial_resource_versions.clone();
        }
        let report = answer(
            &req.response_nonce,
            &self.nonce,
            self.nonce.clone(),
            &req.error_detail,
        );
        if let Some(TypeReport::Nack { .. }) = report {
            // Envoy holds none of them at the versions sent.
            self.rejected = self.last_sent.clone();
        }
        for name in req.resource_names_subscribe {
            if name == "*" {
                self.wildcard = true;
            } else {
                self.names.insert(name);
            }
        }
        for name in req.resource_names_unsubscribe {
            if name == "*" {
                self.wildcard = false;
            } else {
                self.names.remove(&name);
                self.held.remove(&name);
            }
        }
        Ok(report)
    }

    fn retry_rejected(&mut self) {
        for name in self.rejected.drain(..) {
            self.held.remove(&name);
        }
    }

    /// The resources Envoy does not hold at their current version, and the
    /// names of those it holds that are gone.
    fn respond(
        &mut self,
        t: &'static str,
        resources: &Resources,
        nonce: String,
    ) -> Option<(DeltaDiscoveryResponse, TypeReport)> {
        let want = selection(resources, t, self.wildcard, &self.names);
        let mut changed = Vec::new();
        for (name, (resource, version)) in &want {
            if self.held.get(*name).map(String::as_str) != Some(*version) {
                changed.push(Resource {
                    name: name.to_string(),
                    version: version.to_string(),
                    resource: Some((*resource).clone()),
                    ..Default::default()
                });
            }
        }
        let removed: Vec<String> = self
            .held
            .keys()
            .filter(|n| !want.contains_key(n.as_str()))
            .cloned()
            .collect();
        if changed.is_empty() && removed.is_empty() {
            return None;
        }
        for r in &changed {
            self.held.insert(r.name.clone(), r.version.clone());
        }
        self.last_sent = changed.iter().map(|r| r.name.clone()).collect();
        for n in &removed {
            self.held.remove(n);
        }
        self.nonce = nonce;
        let response = DeltaDiscoveryResponse {
            resources: changed,
            removed_resources: removed,
            type_url: t.to_string(),
            nonce: self.nonce.clone(),
            ..Default::default()
        };
        let sent = TypeReport::Sent {
            version: self.nonce.clone(),
        };
        Some((response, sent))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mesh_proxy::{Leaf, PublicListener};

    fn snapshot(port: u16) -> ProxySnapshot {
        ProxySnapshot {
            proxy_id: "web-sidecar-proxy".into(),
            service: "web".into(),
            trust_domain: "td.consul".into(),
            datacenter: "dc1".into(),
            public: PublicListener {
                bind_port: port,
                local_service_port: 8080,
                ..Default::default()
            },
            leaf: Some(Leaf {
                cert_pem: "CERT".into(),
                private_key_pem: "KEY".into(),
            }),
            roots: vec!["ROOT".into()],
            ..Default::default()
        }
    }

    fn nack() -> Option<RpcStatus> {
        Some(RpcStatus {
            message: "rejected".into(),
            ..Default::default()
        })
    }

    #[test]
    fn an_incomplete_snapshot_is_not_served() {
        assert!(complete(&snapshot(1)));
        let mut s = snapshot(1);
        s.trust_domain.clear();
        assert!(!complete(&s), "RBAC would name no trust domain");
        let mut s = snapshot(1);
        s.roots.clear();
        assert!(!complete(&s));
        let mut s = snapshot(1);
        s.leaf = None;
        assert!(!complete(&s));
    }

    #[test]
    fn delta_offers_a_rejected_resource_again_after_the_next_snapshot_only() {
        let mut t = DeltaType::default();
        t.apply(DeltaDiscoveryRequest {
            type_url: type_url::LISTENER.into(),
            ..Default::default()
        })
        .unwrap();
        let resources = render(&snapshot(21000));
        let (first, _) = t
            .respond(type_url::LISTENER, &resources, "1".into())
            .unwrap();
        assert_eq!(first.resources.len(), 1);
        let report = t
            .apply(DeltaDiscoveryRequest {
                type_url: type_url::LISTENER.into(),
                response_nonce: "1".into(),
                error_detail: nack(),
                ..Default::default()
            })
            .unwrap();
        assert!(matches!(report, Some(TypeReport::Nack { .. })));
        // Not at once (Envoy would reject the same again) ...
        assert!(t
            .respond(type_url::LISTENER, &resources, "2".into())
            .is_none());
        // ... but after the next snapshot, even with the same listener.
        t.retry_rejected();
        let (again, _) = t
            .respond(type_url::LISTENER, &resources, "3".into())
            .unwrap();
        assert_eq!(again.resources.len(), 1);
    }

    #[test]
    fn sotw_offers_a_rejected_version_again_after_the_next_snapshot_only() {
        let mut t = SotwType::default();
        t.apply(DiscoveryRequest {
            type_url: type_url::LISTENER.into(),
            ..Default::default()
        })
        .unwrap();
        let resources = render(&snapshot(21000));
        let (first, _) = t
            .respond(type_url::LISTENER, &resources, "1".into())
            .unwrap();
        t.apply(DiscoveryRequest {
            type_url: type_url::LISTENER.into(),
            response_nonce: first.nonce.clone(),
            error_detail: nack(),
            ..Default::default()
        })
        .unwrap();
        assert!(t
            .respond(type_url::LISTENER, &resources, "2".into())
            .is_none());
        t.retry_rejected();
        let (again, _) = t
            .respond(type_url::LISTENER, &resources, "3".into())
            .unwrap();
        assert_ne!(again.version_info, first.version_info);
    }
}
