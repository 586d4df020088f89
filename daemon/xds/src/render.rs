//! A proxy snapshot rendered as Envoy resources: the same snapshot the
//! built-in proxy runs on, so both data planes enforce one model.
//!
//! Names follow Consul's, so dashboards and habits carry over: the
//! `public_listener:<addr>:<port>` listener and `local_app` cluster, one
//! `<upstream>:<addr>:<port>` listener and one
//! `<service>.default.<dc>.internal.<trust-domain>` cluster per upstream.
//! Certificates travel by SDS (`leaf`, `roots`), so a rotation changes no
//! listener or cluster and drains no connection.

use std::collections::BTreeMap;
use std::time::Duration;

use envoy_types::pb::envoy::config::cluster::v3::{cluster, Cluster};
use envoy_types::pb::envoy::config::core::v3::{
    address, config_source, socket_address, transport_socket, AggregatedConfigSource, ApiVersion,
    ConfigSource, DataSource, Http2ProtocolOptions, SocketAddress, TransportSocket,
};
use envoy_types::pb::envoy::config::core::v3::{data_source, Address};
use envoy_types::pb::envoy::config::endpoint::v3::{
    lb_endpoint, ClusterLoadAssignment, Endpoint, LbEndpoint, LocalityLbEndpoints,
};
use envoy_types::pb::envoy::config::listener::v3::{filter, Filter, FilterChain, Listener};
use envoy_types::pb::envoy::config::route::v3::{
    route, route_action, route_match, Route, RouteAction, RouteConfiguration, RouteMatch,
    VirtualHost,
};
use envoy_types::pb::envoy::extensions::filters::http::rbac::v3::Rbac as HttpRbac;
use envoy_types::pb::envoy::extensions::filters::http::router::v3::Router;
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
    http_connection_manager, http_filter, HttpConnectionManager, HttpFilter,
};
use envoy_types::pb::envoy::extensions::filters::network::rbac::v3::Rbac as NetworkRbac;
use envoy_types::pb::envoy::extensions::filters::network::tcp_proxy::v3::{tcp_proxy, TcpProxy};
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::{
    common_tls_context, secret, subject_alt_name_matcher, tls_parameters,
    CertificateValidationContext, CommonTlsContext, DownstreamTlsContext, SdsSecretConfig, Secret,
    SubjectAltNameMatcher, TlsCertificate, TlsParameters, UpstreamTlsContext,
};
use envoy_types::pb::envoy::extensions::upstreams::http::v3::{
    http_protocol_options, HttpProtocolOptions,
};
use envoy_types::pb::google::protobuf::{Any, BoolValue};
use envoy_types::util::pack_any;
use mesh_policy::Policy;
use mesh_proxy::{Protocol, ProxySnapshot};

use crate::chain_routes::{chain_route_config, lb_policy, target_cluster_name, target_lb};
use crate::rbac::{exact, l4_rbac, l7_rbac};

/// The xDS resource types mesh serves, by type URL.
pub mod type_url {
    pub const LISTENER: &str = "type.googleapis.com/envoy.config.listener.v3.Listener";
    pub const CLUSTER: &str = "type.googleapis.com/envoy.config.cluster.v3.Cluster";
    pub const ENDPOINT: &str = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment";
    pub const ROUTE: &str = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration";
    pub const SECRET: &str = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret";
    /// Every type, in the order a change is pushed (clusters before their
    /// endpoints, listeners before their routes, as ADS wants).
    pub const ALL: [&str; 5] = [CLUSTER, ENDPOINT, LISTENER, ROUTE, SECRET];
}

/// The SDS names of this proxy's certificate and trust bundle.
pub const LEAF_SECRET: &str = "leaf";
pub const ROOTS_SECRET: &str = "roots";
/// The cluster of the application the sidecar fronts.
pub const LOCAL_APP: &str = "local_app";

/// One proxy's resources: per type URL, by name.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Resources {
    pub by_type: BTreeMap<&'static str, BTreeMap<String, Any>>,
    /// Each resource's version, computed once here rather than per stream
    /// request.
    versions: BTreeMap<&'static str, BTreeMap<String, String>>,
}

impl Resources {
    /// The resources of one type (empty if none).
    pub fn of(&self, type_url: &str) -> Option<&BTreeMap<String, Any>> {
        self.by_type.get(type_url)
    }

    /// The version of resource `name` of `type_url`: a digest of its bytes.
    pub fn version(&self, type_url: &str, name: &str) -> Option<&str> {
        self.versions.get(type_url)?.get(name).map(String::as_str)
    }

    /// No resources, with every type present (so each is answered, empty).
    pub(crate) fn empty() -> Self {
        let mut out = Resources::default();
        for t in type_url::ALL {
            out.by_type.insert(t, BTreeMap::new());
        }
        out
    }

    pub(crate) fn add(&mut self, type_url: &'static str, name: String, resource: Any) {
        self.versions
            .entry(type_url)
            .or_default()
            .insert(name.clone(), version_of(&resource));
        self.by_type
            .entry(type_url)
            .or_default()
            .insert(name, resource);
    }
}

/// A resource's version: a digest of its bytes (SHA-256, so no crafted
/// name or address can make two contents look alike).
fn version_of(resource: &Any) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(&resource.value);
    digest[..16].iter().map(|b| format!("{b:02x}")).collect()
}

/// Renders every resource of `snapshot`.
pub fn render(snapshot: &ProxySnapshot) -> Resources {
    let mut out = Resources::empty();
    let public = &snapshot.public;
    if snapshot.kind == "terminating-gateway" {
        crate::gateways::terminating(&mut out, snapshot);
    } else if public.bind_port != 0 {
        let name = format!(
            "public_listener:{}:{}",
            or(&public.bind_address, "0.0.0.0"),
            public.bind_port
        );
        out.add(
            type_url::LISTENER,
            name.clone(),
            pack_any(public_listener(snapshot, &name)),
        );
        out.add(
            type_url::CLUSTER,
            LOCAL_APP.into(),
            pack_any(local_app(snapshot)),
        );
        if public.protocol.is_l7() {
            out.add(
                type_url::ROUTE,
                LOCAL_APP.into(),
                pack_any(route_to(LOCAL_APP, LOCAL_APP)),
            );
        }
    }
    for up in &snapshot.upstreams {
        let cluster = upstream_cluster_name(snapshot, up.service());
        let listener = format!(
            "{}:{}:{}",
            up.destination_name,
            or(&up.local_bind_address, "127.0.0.1"),
            up.local_bind_port
        );
        out.add(
            type_url::LISTENER,
            listener.clone(),
            pack_any(upstream_listener(&listener, up, &cluster)),
        );
        if !up.ingress.is_empty() {
            // An ingress gateway's HTTP listener: routed by host.
            crate::gateways::ingress_routes(&mut out, snapshot, up);
            continue;
        }
        if let Some(chain) = up.chain.as_ref().filter(|_| up.protocol.is_l7()) {
            // Routes and splits: one cluster per target the chain reaches.
            out.add(
                type_url::ROUTE,
                up.destination_name.clone(),
                pack_any(chain_route_config(&up.destination_name, snapshot, chain)),
            );
            chain_clusters(&mut out, snapshot, up, chain, &up.targets);
            continue;
        }
        if up.protocol.is_l7() {
            out.add(
                type_url::ROUTE,
                up.destination_name.clone(),
                pack_any(route_to(&up.destination_name, &cluster)),
            );
        }
        out.add(
            type_url::CLUSTER,
            cluster.clone(),
            pack_any(upstream_cluster(snapshot, up, &cluster)),
        );
        out.add(
            type_url::ENDPOINT,
            cluster.clone(),
            pack_any(assignment(&cluster, &up.endpoints)),
        );
    }
    if let Some(leaf) = &snapshot.leaf {
        out.add(
            type_url::SECRET,
            LEAF_SECRET.into(),
            pack_any(leaf_secret(LEAF_SECRET, leaf)),
        );
    }
    let roots = Secret {
        name: ROOTS_SECRET.into(),
        r#type: Some(secret::Type::ValidationContext(
            CertificateValidationContext {
                trusted_ca: Some(inline(&snapshot.roots.join("\n"))),
                ..Default::default()
            },
        )),
    };
    out.add(type_url::SECRET, ROOTS_SECRET.into(), pack_any(roots));
    out
}

/// One cluster (and its endpoints) per target a chain reaches.
pub(crate) fn chain_clusters(
    out: &mut Resources,
    snapshot: &ProxySnapshot,
    up: &mesh_proxy::Upstream,
    chain: &mesh_chain::CompiledChain,
    targets: &BTreeMap<String, Vec<mesh_proxy::Endpoint>>,
) {
    for (id, endpoints) in targets {
        let Some(target) = chain.targets.get(id) else {
            continue;
        };
        let name = target_cluster_name(snapshot, target);
        let identity = vec![snapshot.spiffe_id_for(&target.service)];
        let timeout = target.connect_timeout.0.as_millis() as u64;
        let mut cluster = tls_cluster(&name, identity, timeout, up.protocol);
        cluster.lb_policy = lb_policy(target_lb(chain, id));
        with_limits(&mut cluster, up);
        out.add(type_url::CLUSTER, name.clone(), pack_any(cluster));
        out.add(
            type_url::ENDPOINT,
            name.clone(),
            pack_any(assignment(&name, endpoints)),
        );
    }
}

/// A leaf certificate and key as SDS secret `name`.
pub(crate) fn leaf_secret(name: &str, leaf: &mesh_proxy::Leaf) -> Secret {
    Secret {
        name: name.into(),
        r#type: Some(secret::Type::TlsCertificate(TlsCertificate {
            certificate_chain: Some(inline(&leaf.cert_pem)),
            private_key: Some(inline(&leaf.private_key_pem)),
            ..Default::default()
        })),
    }
}

/// Consul's name (and SNI) for the cluster of an upstream service.
pub fn upstream_cluster_name(snapshot: &ProxySnapshot, service: &str) -> String {
    format!(
        "{service}.default.{}.internal.{}",
        snapshot.datacenter, snapshot.trust_domain
    )
}

pub(crate) fn or<'a>(value: &'a str, fallback: &'a str) -> &'a str {
    if value.is_empty() {
        fallback
    } else {
        value
    }
}

pub(crate) fn inline(pem: &str) -> DataSource {
    DataSource {
        specifier: Some(data_source::Specifier::InlineString(pem.to_string())),
        ..Default::default()
    }
}

pub(crate) fn socket(address: &str, port: u16) -> Address {
    Address {
        address: Some(address::Address::SocketAddress(SocketAddress {
            address: address.to_string(),
            port_specifier: Some(socket_address::PortSpecifier::PortValue(port.into())),
            ..Default::default()
        })),
    }
}

/// Config delivered over the same ADS stream.
pub(crate) fn ads() -> ConfigSource {
    ConfigSource {
        resource_api_version: ApiVersion::V3 as i32,
        config_source_specifier: Some(config_source::ConfigSourceSpecifier::Ads(
            AggregatedConfigSource {},
        )),
        ..Default::default()
    }
}

pub(crate) fn sds(name: &str) -> SdsSecretConfig {
    SdsSecretConfig {
        name: name.into(),
        sds_config: Some(ads()),
    }
}

pub(crate) fn duration(d: Duration) -> envoy_types::pb::google::protobuf::Duration {
    envoy_types::pb::google::protobuf::Duration {
        seconds: d.as_secs() as i64,
        nanos: d.subsec_nanos() as i32,
    }
}

pub(crate) fn tls_socket(context: Any) -> TransportSocket {
    TransportSocket {
        name: "envoy.transport_sockets.tls".into(),
        config_type: Some(transport_socket::ConfigType::TypedConfig(context)),
    }
}

/// Our leaf, and trust in our roots (with a SAN check when `peer` is set).
pub(crate) fn common_tls(peers: &[String]) -> CommonTlsContext {
    common_tls_as(LEAF_SECRET, peers)
}

/// [`common_tls`] presenting the leaf in SDS secret `leaf` (a terminating
/// gateway presents each linked service's own).
pub(crate) fn common_tls_as(leaf: &str, peers: &[String]) -> CommonTlsContext {
    let validation = match peers {
        [] => common_tls_context::ValidationContextType::ValidationContextSdsSecretConfig(sds(
            ROOTS_SECRET,
        )),
        peers => common_tls_context::ValidationContextType::CombinedValidationContext(
            common_tls_context::CombinedCertificateValidationContext {
                default_validation_context: Some(CertificateValidationContext {
                    match_typed_subject_alt_names: peers
                        .iter()
                        .map(|spiffe| SubjectAltNameMatcher {
                            san_type: subject_alt_name_matcher::SanType::Uri as i32,
                            matcher: Some(exact(spiffe)),
                            ..Default::default()
                        })
                        .collect(),
                    ..Default::default()
                }),
                validation_context_sds_secret_config: Some(sds(ROOTS_SECRET)),
                ..Default::default()
            },
        ),
    };
    // TLS 1.3 only, as the built-in proxy: every hop is between our proxies.
    let v13 = tls_parameters::TlsProtocol::TlSv13 as i32;
    CommonTlsContext {
        tls_params: Some(TlsParameters {
            tls_minimum_protocol_version: v13,
            tls_maximum_protocol_version: v13,
            ..Default::default()
        }),
        tls_certificate_sds_secret_configs: vec![sds(leaf)],
        validation_context_type: Some(validation),
        ..Default::default()
    }
}

pub(crate) fn network_filter(name: &str, config: Any) -> Filter {
    Filter {
        name: name.into(),
        config_type: Some(filter::ConfigType::TypedConfig(config)),
    }
}

fn public_listener(snapshot: &ProxySnapshot, name: &str) -> Listener {
    let public = &snapshot.public;
    let policy = Policy::compile(&snapshot.intentions);
    let tls = DownstreamTlsContext {
        common_tls_context: Some(common_tls(&[])),
        require_client_certificate: Some(BoolValue { value: true }),
        ..Default::default()
    };
    let filters = if public.protocol.is_l7() {
        let manager = HttpConnectionManager {
            stat_prefix: "public_listener".into(),
            codec_type: http_connection_manager::CodecType::Auto as i32,
            route_specifier: Some(http_connection_manager::RouteSpecifier::Rds(
                envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::Rds {
                    config_source: Some(ads()),
                    route_config_name: LOCAL_APP.into(),
                },
            )),
            http_filters: vec![
                HttpFilter {
                    name: "envoy.filters.http.rbac".into(),
                    config_type: Some(http_filter::ConfigType::TypedConfig(pack_any(HttpRbac {
                        rules: Some(l7_rbac(&policy, snapshot)),
                        ..Default::default()
                    }))),
                    ..Default::default()
                },
                router_filter(),
            ],
            ..Default::default()
        };
        vec![network_filter(
            "envoy.filters.network.http_connection_manager",
            pack_any(manager),
        )]
    } else {
        vec![
            network_filter(
                "envoy.filters.network.rbac",
                pack_any(NetworkRbac {
                    stat_prefix: "connect_authz".into(),
                    rules: Some(l4_rbac(&policy, snapshot)),
                    ..Default::default()
                }),
            ),
            network_filter(
                "envoy.filters.network.tcp_proxy",
                pack_any(TcpProxy {
                    stat_prefix: "public_listener".into(),
                    cluster_specifier: Some(tcp_proxy::ClusterSpecifier::Cluster(LOCAL_APP.into())),
                    ..Default::default()
                }),
            ),
        ]
    };
    Listener {
        name: name.into(),
        address: Some(socket(
            or(&public.bind_address, "0.0.0.0"),
            public.bind_port,
        )),
        filter_chains: vec![FilterChain {
            filters,
            transport_socket: Some(tls_socket(pack_any(tls))),
            ..Default::default()
        }],
        enable_reuse_port: exclusive_port(),
        ..Default::default()
    }
}

/// No SO_REUSEPORT: a port another process holds is a bind error (a NACK
/// the API shows), not traffic silently shared with that process.
pub(crate) fn exclusive_port() -> Option<BoolValue> {
    Some(BoolValue { value: false })
}

fn local_app(snapshot: &ProxySnapshot) -> Cluster {
    let public = &snapshot.public;
    let mut cluster = Cluster {
        name: LOCAL_APP.into(),
        connect_timeout: Some(duration(Duration::from_secs(5))),
        cluster_discovery_type: Some(cluster::ClusterDiscoveryType::Type(
            cluster::DiscoveryType::Static as i32,
        )),
        load_assignment: Some(ClusterLoadAssignment {
            cluster_name: LOCAL_APP.into(),
            endpoints: vec![LocalityLbEndpoints {
                lb_endpoints: vec![lb_endpoint_at(
                    or(&public.local_service_address, "127.0.0.1"),
                    public.local_service_port,
                )],
                ..Default::default()
            }],
            ..Default::default()
        }),
        ..Default::default()
    };
    if speaks_h2(public.protocol) {
        with_http2(&mut cluster);
    }
    cluster
}

fn speaks_h2(protocol: Protocol) -> bool {
    matches!(protocol, Protocol::Http2 | Protocol::Grpc)
}

/// HTTP/2 to the cluster's hosts (gRPC needs it).
fn with_http2(cluster: &mut Cluster) {
    let options = HttpProtocolOptions {
        upstream_protocol_options: Some(
            http_protocol_options::UpstreamProtocolOptions::ExplicitHttpConfig(
                http_protocol_options::ExplicitHttpConfig {
                    protocol_config: Some(
                        http_protocol_options::explicit_http_config::ProtocolConfig::Http2ProtocolOptions(
                            Http2ProtocolOptions::default(),
                        ),
                    ),
                },
            ),
        ),
        ..Default::default()
    };
    cluster.typed_extension_protocol_options.insert(
        "envoy.extensions.upstreams.http.v3.HttpProtocolOptions".into(),
        pack_any(options),
    );
}

/// The HTTP filter that ends every chain: it sends the request on.
pub(crate) fn router_filter() -> HttpFilter {
    HttpFilter {
        name: "envoy.filters.http.router".into(),
        config_type: Some(http_filter::ConfigType::TypedConfig(pack_any(
            Router::default(),
        ))),
        ..Default::default()
    }
}

/// Route configuration `name`: every request to `cluster`.
pub(crate) fn route_to(name: &str, cluster: &str) -> RouteConfiguration {
    RouteConfiguration {
        name: name.into(),
        virtual_hosts: vec![VirtualHost {
            name: name.into(),
            domains: vec!["*".into()],
            routes: vec![Route {
                r#match: Some(RouteMatch {
                    path_specifier: Some(route_match::PathSpecifier::Prefix("/".into())),
                    ..Default::default()
                }),
                action: Some(route::Action::Route(RouteAction {
                    cluster_specifier: Some(route_action::ClusterSpecifier::Cluster(
                        cluster.into(),
                    )),
                    // Streams (gRPC, long polls) are the app's to end.
                    timeout: Some(duration(Duration::ZERO)),
                    ..Default::default()
                })),
                ..Default::default()
            }],
            ..Default::default()
        }],
        ..Default::default()
    }
}

pub(crate) fn lb_endpoint_at(address: &str, port: u16) -> LbEndpoint {
    LbEndpoint {
        host_identifier: Some(lb_endpoint::HostIdentifier::Endpoint(Endpoint {
            address: Some(socket(address, port)),
            ..Default::default()
        })),
        ..Default::default()
    }
}

fn upstream_listener(name: &str, up: &mesh_proxy::Upstream, cluster: &str) -> Listener {
    let filter = if up.protocol.is_l7() {
        // Per-request routing (and, later, routers and splitters) by RDS.
        let manager = HttpConnectionManager {
            stat_prefix: format!("upstream.{cluster}"),
            codec_type: http_connection_manager::CodecType::Auto as i32,
            route_specifier: Some(http_connection_manager::RouteSpecifier::Rds(
                envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::Rds {
                    config_source: Some(ads()),
                    route_config_name: up.destination_name.clone(),
                },
            )),
            http_filters: vec![router_filter()],
            ..Default::default()
        };
        network_filter(
            "envoy.filters.network.http_connection_manager",
            pack_any(manager),
        )
    } else {
        network_filter(
            "envoy.filters.network.tcp_proxy",
            pack_any(TcpProxy {
                stat_prefix: format!("upstream.{cluster}"),
                cluster_specifier: Some(tcp_proxy::ClusterSpecifier::Cluster(cluster.into())),
                ..Default::default()
            }),
        )
    };
    Listener {
        name: name.into(),
        address: Some(socket(
            or(&up.local_bind_address, "127.0.0.1"),
            up.local_bind_port,
        )),
        filter_chains: vec![FilterChain {
            filters: vec![filter],
            // An ingress gateway's listener may speak TLS to its callers.
            transport_socket: up.tls.then(|| crate::gateways::listener_tls(up)),
            ..Default::default()
        }],
        enable_reuse_port: exclusive_port(),
        ..Default::default()
    }
}

fn upstream_cluster(snapshot: &ProxySnapshot, up: &mesh_proxy::Upstream, name: &str) -> Cluster {
    let identities = upstream_identities(snapshot, up);
    let mut cluster = tls_cluster(name, identities, up.connect_timeout_ms, up.protocol);
    cluster.lb_policy = lb_policy(up.load_balancer.as_ref());
    with_limits(&mut cluster, up);
    cluster
}

/// The calling service's limits and passive health check for an upstream.
pub(crate) fn with_limits(cluster: &mut Cluster, up: &mesh_proxy::Upstream) {
    use envoy_types::pb::envoy::config::cluster::v3::{
        circuit_breakers, CircuitBreakers, OutlierDetection,
    };
    use envoy_types::pb::google::protobuf::UInt32Value;
    let limit = |n: u32| (n > 0).then_some(UInt32Value { value: n });
    if up.max_connections > 0 || up.max_concurrent_requests > 0 {
        cluster.circuit_breakers = Some(CircuitBreakers {
            thresholds: vec![circuit_breakers::Thresholds {
                max_connections: limit(up.max_connections),
                max_requests: limit(up.max_concurrent_requests),
                ..Default::default()
            }],
            ..Default::default()
        });
    }
    if let Some(o) = &up.outlier {
        cluster.outlier_detection = Some(OutlierDetection {
            consecutive_5xx: limit(o.max_failures),
            base_ejection_time: Some(duration(Duration::from_millis(o.base_ejection_ms))),
            max_ejection_percent: Some(UInt32Value {
                value: o.max_ejection_percent,
            }),
            ..Default::default()
        });
    }
}

/// An EDS cluster of sidecars reached with mTLS: SNI `name`, and a peer
/// that proves one of `identities`.
pub(crate) fn tls_cluster(
    name: &str,
    identities: Vec<String>,
    timeout_ms: u64,
    protocol: Protocol,
) -> Cluster {
    let timeout = match timeout_ms {
        0 => Duration::from_secs(5),
        ms => Duration::from_millis(ms),
    };
    let tls = UpstreamTlsContext {
        common_tls_context: Some(common_tls(&identities)),
        sni: name.into(),
        ..Default::default()
    };
    let mut cluster = Cluster {
        name: name.into(),
        connect_timeout: Some(duration(timeout)),
        cluster_discovery_type: Some(cluster::ClusterDiscoveryType::Type(
            cluster::DiscoveryType::Eds as i32,
        )),
        eds_cluster_config: Some(cluster::EdsClusterConfig {
            eds_config: Some(ads()),
            service_name: name.into(),
        }),
        transport_socket: Some(tls_socket(pack_any(tls))),
        ..Default::default()
    };
    if speaks_h2(protocol) {
        with_http2(&mut cluster);
    }
    cluster
}

/// The identities an upstream's endpoints prove: its own service's, or
/// (a resolver redirected or failed over) those of the services its
/// endpoints are instances of.
pub(crate) fn upstream_identities(
    snapshot: &ProxySnapshot,
    up: &mesh_proxy::Upstream,
) -> Vec<String> {
    let mut ids: Vec<String> = up.endpoints.iter().map(|e| e.spiffe_id.clone()).collect();
    ids.sort();
    ids.dedup();
    if ids.is_empty() {
        ids.push(snapshot.spiffe_id_for(up.service()));
    }
    ids
}

pub(crate) fn assignment(
    cluster: &str,
    endpoints: &[mesh_proxy::Endpoint],
) -> ClusterLoadAssignment {
    ClusterLoadAssignment {
        cluster_name: cluster.into(),
        endpoints: vec![LocalityLbEndpoints {
            lb_endpoints: endpoints
                .iter()
                .map(|e| lb_endpoint_at(&e.address, e.port))
                .collect(),
            ..Default::default()
        }],
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rbac::{header, principal};
    use envoy_types::pb::envoy::config::listener::v3::Listener;
    use envoy_types::pb::envoy::config::rbac::v3 as rbac;
    use envoy_types::pb::envoy::config::route::v3::header_matcher;
    use envoy_types::pb::envoy::r#type::matcher::v3::string_matcher;
    use mesh_policy::IntentionSet;
    use mesh_proxy::{Endpoint, Leaf, PublicListener, Upstream};
    use mesh_types::{HeaderMatch, HttpMatch};
    use mesh_types::{Intention, IntentionAction};
    use prost::Message;

    fn snapshot(default_allow: bool, rules: Vec<Intention>) -> ProxySnapshot {
        ProxySnapshot {
            proxy_id: "db-sidecar-proxy".into(),
            service: "db".into(),
            trust_domain: "11111111-2222.consul".into(),
            datacenter: "dc1".into(),
            public: PublicListener {
                bind_address: "127.0.0.1".into(),
                bind_port: 21000,
                local_service_port: 5432,
                ..Default::default()
            },
            leaf: Some(Leaf {
                cert_pem: "CERT".into(),
                private_key_pem: "KEY".into(),
            }),
            roots: vec!["ROOT".into()],
            intentions: IntentionSet {
                default_allow,
                rules,
            },
            upstreams: vec![Upstream {
                destination_name: "cache".into(),
                local_bind_port: 9191,
                endpoints: vec![Endpoint {
                    address: "10.0.0.7".into(),
                    port: 21001,
                    ..Default::default()
                }],
                ..Default::default()
            }],
            index: 7,
            ..Default::default()
        }
    }

    fn rule(source: &str, action: IntentionAction) -> Intention {
        Intention {
            source: source.into(),
            destination: "db".into(),
            action: Some(action),
            ..Default::default()
        }
    }

    fn l4_rbac_of(s: &ProxySnapshot) -> rbac::Rbac {
        let r = render(s);
        let any = &r.of(type_url::LISTENER).unwrap()["public_listener:127.0.0.1:21000"];
        let listener = Listener::decode(any.value.as_slice()).unwrap();
        let filter = &listener.filter_chains[0].filters[0];
        assert_eq!(filter.name, "envoy.filters.network.rbac");
        let Some(filter::ConfigType::TypedConfig(config)) = &filter.config_type else {
            panic!("typed config");
        };
        NetworkRbac::decode(config.value.as_slice())
            .unwrap()
            .rules
            .unwrap()
    }

    fn principals(r: &rbac::Rbac) -> usize {
        r.policies.values().map(|p| p.principals.len()).sum()
    }

    #[test]
    fn resources_carry_consuls_names() {
        let r = render(&snapshot(true, vec![]));
        let names = |t| r.of(t).unwrap().keys().cloned().collect::<Vec<_>>();
        assert_eq!(
            names(type_url::LISTENER),
            ["cache:127.0.0.1:9191", "public_listener:127.0.0.1:21000"]
        );
        assert_eq!(
            names(type_url::CLUSTER),
            [
                "cache.default.dc1.internal.11111111-2222.consul",
                "local_app"
            ]
        );
        assert_eq!(
            names(type_url::ENDPOINT),
            ["cache.default.dc1.internal.11111111-2222.consul"]
        );
        assert_eq!(names(type_url::SECRET), ["leaf", "roots"]);
        assert!(names(type_url::ROUTE).is_empty(), "no HTTP listener");
    }

    #[test]
    fn l4_rbac_lists_the_sources_that_differ_from_the_rest() {
        // Default allow, db denies web: deny web only.
        let r = l4_rbac_of(&snapshot(true, vec![rule("web", IntentionAction::Deny)]));
        assert_eq!(r.action, rbac::rbac::Action::Deny as i32);
        assert_eq!(principals(&r), 1);
        // Default deny, one allow: allow that one only.
        let r = l4_rbac_of(&snapshot(false, vec![rule("web", IntentionAction::Allow)]));
        assert_eq!(r.action, rbac::rbac::Action::Allow as i32);
        assert_eq!(principals(&r), 1);
        // `* => db` deny beats the default allow; web is the exception.
        let r = l4_rbac_of(&snapshot(
            true,
            vec![
                rule("web", IntentionAction::Allow),
                rule("*", IntentionAction::Deny),
            ],
        ));
        assert_eq!(r.action, rbac::rbac::Action::Allow as i32);
        assert_eq!(principals(&r), 1);
        // Default allow and nothing named: no policy, everyone connects.
        let r = l4_rbac_of(&snapshot(true, vec![]));
        assert_eq!(r.action, rbac::rbac::Action::Deny as i32);
        assert!(r.policies.is_empty());
    }

    #[test]
    fn principals_match_the_source_in_any_datacenter_of_our_trust_domain() {
        let s = snapshot(true, vec![]);
        let p = principal(&s, "web");
        let Some(rbac::principal::Identifier::Authenticated(a)) = p.identifier else {
            panic!("authenticated principal");
        };
        let Some(string_matcher::MatchPattern::SafeRegex(re)) =
            a.principal_name.unwrap().match_pattern
        else {
            panic!("regex");
        };
        assert_eq!(
            re.regex,
            r"^spiffe://11111111\-2222\.consul/ns/default/dc/[^/]+/svc/web$"
        );
    }

    #[test]
    fn http_services_get_a_route_and_an_l7_allow_list() {
        let mut s = snapshot(false, vec![rule("web", IntentionAction::Allow)]);
        s.public.protocol = Protocol::Http;
        let r = render(&s);
        assert!(r.of(type_url::ROUTE).unwrap().contains_key(LOCAL_APP));
        let policy = Policy::compile(&s.intentions);
        let rules = l7_rbac(&policy, &s);
        assert_eq!(rules.action, rbac::rbac::Action::Allow as i32);
        // web may do anything; nobody else is named and the default denies.
        assert_eq!(
            rules.policies.len(),
            1,
            "one policy: bytes independent of map order"
        );
        let only = &rules.policies["consul-intentions-layer7"];
        assert_eq!(only.principals, vec![principal(&s, "web")]);
        // The same snapshot renders to the same bytes.
        assert_eq!(render(&s), render(&s));
    }

    #[test]
    fn a_header_with_several_matchers_needs_all_of_them_and_invert_negates_the_whole() {
        let h = HeaderMatch {
            name: "X-Env".into(),
            prefix: Some("prod".into()),
            suffix: Some("-eu".into()),
            invert: true,
            ..Default::default()
        };
        let Some(rbac::permission::Rule::NotRule(inner)) = header(&h).rule else {
            panic!("inverted: a not rule");
        };
        let Some(rbac::permission::Rule::AndRules(set)) = inner.rule else {
            panic!("both matchers: an and rule");
        };
        assert_eq!(set.rules.len(), 2);
        for rule in set.rules {
            let Some(rbac::permission::Rule::Header(m)) = rule.rule else {
                panic!("a header rule");
            };
            assert_eq!(m.name, "x-env");
            assert!(!m.invert_match, "the negation is outside");
        }
        let present = HeaderMatch {
            name: "x-debug".into(),
            present: true,
            ..Default::default()
        };
        let Some(rbac::permission::Rule::Header(m)) = header(&present).rule else {
            panic!("a header rule");
        };
        assert_eq!(
            m.header_match_specifier,
            Some(header_matcher::HeaderMatchSpecifier::PresentMatch(true))
        );
    }

    #[test]
    fn an_http_upstream_is_routed_by_rds_and_a_grpc_one_speaks_h2() {
        let mut s = snapshot(true, vec![]);
        s.upstreams[0].protocol = Protocol::Grpc;
        let r = render(&s);
        let cluster_name = "cache.default.dc1.internal.11111111-2222.consul";
        let route =
            RouteConfiguration::decode(r.of(type_url::ROUTE).unwrap()["cache"].value.as_slice())
                .unwrap();
        let Some(route::Action::Route(action)) = &route.virtual_hosts[0].routes[0].action else {
            panic!("a route action");
        };
        assert_eq!(
            action.cluster_specifier,
            Some(route_action::ClusterSpecifier::Cluster(cluster_name.into()))
        );
        let listener = Listener::decode(
            r.of(type_url::LISTENER).unwrap()["cache:127.0.0.1:9191"]
                .value
                .as_slice(),
        )
        .unwrap();
        assert_eq!(
            listener.filter_chains[0].filters[0].name,
            "envoy.filters.network.http_connection_manager"
        );
        let cluster = Cluster::decode(
            r.of(type_url::CLUSTER).unwrap()[cluster_name]
                .value
                .as_slice(),
        )
        .unwrap();
        assert!(cluster
            .typed_extension_protocol_options
            .contains_key("envoy.extensions.upstreams.http.v3.HttpProtocolOptions"));
    }

    #[test]
    fn listeners_hold_their_ports_alone() {
        let r = render(&snapshot(true, vec![]));
        for any in r.of(type_url::LISTENER).unwrap().values() {
            let l = Listener::decode(any.value.as_slice()).unwrap();
            assert_eq!(
                l.enable_reuse_port,
                Some(BoolValue { value: false }),
                "{}",
                l.name
            );
        }
    }

    #[test]
    fn l7_rules_for_several_sources_render_to_the_same_bytes_every_time() {
        let permissions = vec![mesh_types::Permission {
            action: IntentionAction::Deny,
            http: Some(HttpMatch {
                path_prefix: Some("/admin".into()),
                ..Default::default()
            }),
        }];
        let l7 = |source: &str| Intention {
            source: source.into(),
            destination: "db".into(),
            permissions: permissions.clone(),
            ..Default::default()
        };
        let mut s = snapshot(true, vec![l7("web"), l7("api"), l7("cli")]);
        s.public.protocol = Protocol::Http;
        let first = render(&s);
        for _ in 0..20 {
            assert_eq!(render(&s), first);
        }
    }
}
