//! Gateways as Envoy resources, from the snapshot the built-in gateway
//! runs on: an ingress gateway's HTTP listeners routed by host through
//! each service's chain (its TCP listeners are ordinary upstream
//! listeners), TLS with its leaf or with files, and a terminating
//! gateway's one mTLS listener that picks a linked service by SNI,
//! enforces that service's intentions and carries the connection out.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::time::Duration;

use envoy_types::pb::envoy::config::cluster::v3::{cluster, Cluster};
use envoy_types::pb::envoy::config::core::v3::{data_source, DataSource, TransportSocket};
use envoy_types::pb::envoy::config::listener::v3::{
    listener_filter, FilterChain, FilterChainMatch, Listener, ListenerFilter,
};
use envoy_types::pb::envoy::config::route::v3::{RouteConfiguration, VirtualHost};
use envoy_types::pb::envoy::extensions::filters::listener::tls_inspector::v3::TlsInspector;
use envoy_types::pb::envoy::extensions::filters::network::rbac::v3::Rbac as NetworkRbac;
use envoy_types::pb::envoy::extensions::filters::network::tcp_proxy::v3::{tcp_proxy, TcpProxy};
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::{
    common_tls_context, subject_alt_name_matcher, CertificateValidationContext, CommonTlsContext,
    DownstreamTlsContext, SubjectAltNameMatcher, TlsCertificate, UpstreamTlsContext,
};
use envoy_types::pb::google::protobuf::BoolValue;
use envoy_types::util::pack_any;
use mesh_policy::Policy;
use mesh_proxy::{IngressRoute, LinkedService, ProxySnapshot, Upstream};

use crate::chain_routes::chain_route_config;
use crate::rbac::{exact, l4_rbac};
use crate::render::{
    assignment, chain_clusters, common_tls_as, duration, exclusive_port, leaf_secret,
    network_filter, or, route_to, sds, socket, tls_cluster, tls_socket, type_url,
    upstream_cluster_name, with_limits, Resources, LEAF_SECRET,
};

fn file(path: &str) -> DataSource {
    DataSource {
        specifier: Some(data_source::Specifier::Filename(path.to_string())),
        ..Default::default()
    }
}

/// TLS on an ingress listener: the gateway's leaf (whose DNS SANs name the
/// listener's hosts) or the entry's certificate files; no client
/// certificate, since its callers are outside the mesh.
pub(crate) fn listener_tls(up: &Upstream) -> TransportSocket {
    let mut common = CommonTlsContext::default();
    if up.tls_cert_file.is_empty() {
        common.tls_certificate_sds_secret_configs = vec![sds(LEAF_SECRET)];
    } else {
        common.tls_certificates = vec![TlsCertificate {
            certificate_chain: Some(file(&up.tls_cert_file)),
            private_key: Some(file(&up.tls_key_file)),
            ..Default::default()
        }];
    }
    if up.protocol.is_l7() {
        common.alpn_protocols = vec!["h2".into(), "http/1.1".into()];
    }
    tls_socket(pack_any(DownstreamTlsContext {
        common_tls_context: Some(common),
        require_client_certificate: Some(BoolValue { value: false }),
        ..Default::default()
    }))
}

/// The route configuration of an ingress gateway's HTTP listener: one
/// virtual host per service, named by its hosts (with and without the
/// listener's port, as a Host header may carry it), and the clusters its
/// routes reach.
pub(crate) fn ingress_routes(out: &mut Resources, snapshot: &ProxySnapshot, up: &Upstream) {
    let mut taken_hosts = BTreeSet::new();
    let mut services = BTreeSet::new();
    let mut virtual_hosts = Vec::new();
    for r in &up.ingress {
        if !services.insert(r.service.as_str()) {
            continue;
        }
        let mut domains = Vec::new();
        for host in &r.hosts {
            // The first service to claim a host gets it, as in the built-in gateway.
            if !taken_hosts.insert(host.as_str()) {
                continue;
            }
            domains.push(host.clone());
            if host != "*" {
                domains.push(format!("{host}:{}", up.local_bind_port));
            }
        }
        if domains.is_empty() {
            continue;
        }
        let config = match &r.chain {
            Some(chain) => {
                chain_clusters(out, snapshot, up, chain, &r.targets);
                chain_route_config(&r.service, snapshot, chain)
            }
            None => {
                let cluster = upstream_cluster_name(snapshot, &r.service);
                service_cluster(out, snapshot, up, r, &cluster);
                route_to(&r.service, &cluster)
            }
        };
        let routes = config
            .virtual_hosts
            .into_iter()
            .next()
            .map(|v| v.routes)
            .unwrap_or_default();
        virtual_hosts.push(VirtualHost {
            name: r.service.clone(),
            domains,
            routes,
            ..Default::default()
        });
    }
    out.add(
        type_url::ROUTE,
        up.destination_name.clone(),
        pack_any(RouteConfiguration {
            name: up.destination_name.clone(),
            virtual_hosts,
            ..Default::default()
        }),
    );
}

/// The mTLS cluster of a service behind an ingress listener without routes.
fn service_cluster(
    out: &mut Resources,
    snapshot: &ProxySnapshot,
    up: &Upstream,
    r: &IngressRoute,
    name: &str,
) {
    let mut identities: Vec<String> = r.endpoints.iter().map(|e| e.spiffe_id.clone()).collect();
    identities.sort();
    identities.dedup();
    if identities.is_empty() {
        identities.push(snapshot.spiffe_id_for(&r.service));
    }
    let mut cluster = tls_cluster(name, identities, up.connect_timeout_ms, up.protocol);
    with_limits(&mut cluster, up);
    out.add(type_url::CLUSTER, name.into(), pack_any(cluster));
    out.add(
        type_url::ENDPOINT,
        name.into(),
        pack_any(assignment(name, &r.endpoints)),
    );
}

/// A terminating gateway: one listener (Consul's `default:<addr>:<port>`)
/// with a filter chain per linked service, chosen by the SNI the caller
/// sends, that presents the service's own leaf, requires the caller's,
/// applies the service's intentions and proxies to the service.
pub(crate) fn terminating(out: &mut Resources, snapshot: &ProxySnapshot) {
    let public = &snapshot.public;
    if public.bind_port == 0 {
        return;
    }
    let mut filter_chains = Vec::new();
    for l in &snapshot.linked {
        let secret = format!("{LEAF_SECRET}:{}", l.service);
        if let Some(leaf) = &l.leaf {
            out.add(
                type_url::SECRET,
                secret.clone(),
                pack_any(leaf_secret(&secret, leaf)),
            );
        }
        let tls = DownstreamTlsContext {
            common_tls_context: Some(common_tls_as(&secret, &[])),
            require_client_certificate: Some(BoolValue { value: true }),
            ..Default::default()
        };
        let policy = Policy::compile(&l.intentions);
        filter_chains.push(FilterChain {
            name: l.service.clone(),
            filter_chain_match: Some(FilterChainMatch {
                server_names: vec![l.sni.clone()],
                ..Default::default()
            }),
            filters: vec![
                network_filter(
                    "envoy.filters.network.rbac",
                    pack_any(NetworkRbac {
                        stat_prefix: format!("connect_authz.{}", l.service),
                        rules: Some(l4_rbac(&policy, snapshot)),
                        ..Default::default()
                    }),
                ),
                network_filter(
                    "envoy.filters.network.tcp_proxy",
                    pack_any(TcpProxy {
                        stat_prefix: format!("terminating.{}", l.service),
                        cluster_specifier: Some(tcp_proxy::ClusterSpecifier::Cluster(
                            l.sni.clone(),
                        )),
                        ..Default::default()
                    }),
                ),
            ],
            transport_socket: Some(tls_socket(pack_any(tls))),
            ..Default::default()
        });
        linked_cluster(out, l);
    }
    let address = or(&public.bind_address, "0.0.0.0");
    let name = format!("default:{address}:{}", public.bind_port);
    let listener = Listener {
        name: name.clone(),
        address: Some(socket(address, public.bind_port)),
        // The SNI picks the filter chain: read it before choosing.
        listener_filters: vec![ListenerFilter {
            name: "envoy.filters.listener.tls_inspector".into(),
            config_type: Some(listener_filter::ConfigType::TypedConfig(pack_any(
                TlsInspector::default(),
            ))),
            ..Default::default()
        }],
        filter_chains,
        enable_reuse_port: exclusive_port(),
        ..Default::default()
    };
    out.add(type_url::LISTENER, name, pack_any(listener));
}

/// The cluster of a linked service: its instances' own addresses (by EDS
/// when they are IPs, resolved by Envoy when they are host names), with
/// TLS to them when the entry names a CA file.
fn linked_cluster(out: &mut Resources, l: &LinkedService) {
    let name = l.sni.as_str();
    let by_ip = l
        .endpoints
        .iter()
        .all(|e| e.address.parse::<IpAddr>().is_ok());
    let mut cluster = Cluster {
        name: name.into(),
        connect_timeout: Some(duration(Duration::from_secs(5))),
        ..Default::default()
    };
    if by_ip {
        cluster.cluster_discovery_type = Some(cluster::ClusterDiscoveryType::Type(
            cluster::DiscoveryType::Eds as i32,
        ));
        cluster.eds_cluster_config = Some(cluster::EdsClusterConfig {
            eds_config: Some(crate::render::ads()),
            service_name: name.into(),
        });
        out.add(
            type_url::ENDPOINT,
            name.into(),
            pack_any(assignment(name, &l.endpoints)),
        );
    } else {
        cluster.cluster_discovery_type = Some(cluster::ClusterDiscoveryType::Type(
            cluster::DiscoveryType::StrictDns as i32,
        ));
        cluster.load_assignment = Some(assignment(name, &l.endpoints));
    }
    if !l.ca_file.is_empty() {
        cluster.transport_socket = Some(tls_socket(pack_any(origination(l))));
    }
    out.add(type_url::CLUSTER, name.into(), pack_any(cluster));
}

/// TLS from the gateway to a linked service: trust its CA file, present
/// its client certificate if one is named, send its SNI and check that
/// the certificate names it.
fn origination(l: &LinkedService) -> UpstreamTlsContext {
    let validation = CertificateValidationContext {
        trusted_ca: Some(file(&l.ca_file)),
        match_typed_subject_alt_names: if l.tls_server_name.is_empty() {
            Vec::new()
        } else {
            vec![SubjectAltNameMatcher {
                san_type: subject_alt_name_matcher::SanType::Dns as i32,
                matcher: Some(exact(&l.tls_server_name)),
                ..Default::default()
            }]
        },
        ..Default::default()
    };
    let mut common = CommonTlsContext {
        validation_context_type: Some(
            common_tls_context::ValidationContextType::ValidationContext(validation),
        ),
        ..Default::default()
    };
    if !l.cert_file.is_empty() {
        common.tls_certificates = vec![TlsCertificate {
            certificate_chain: Some(file(&l.cert_file)),
            private_key: Some(file(&l.key_file)),
            ..Default::default()
        }];
    }
    UpstreamTlsContext {
        common_tls_context: Some(common),
        sni: l.tls_server_name.clone(),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use envoy_types::pb::envoy::config::listener::v3::Listener;
    use mesh_proxy::{Endpoint, Leaf, PublicListener};
    use prost::Message;

    fn snapshot() -> ProxySnapshot {
        ProxySnapshot {
            proxy_id: "egress".into(),
            service: "egress".into(),
            kind: "terminating-gateway".into(),
            trust_domain: "td".into(),
            datacenter: "dc1".into(),
            public: PublicListener {
                bind_address: "127.0.0.1".into(),
                bind_port: 8443,
                ..Default::default()
            },
            linked: vec![
                LinkedService {
                    service: "billing".into(),
                    sni: "billing.default.dc1.internal.td".into(),
                    endpoints: vec![Endpoint {
                        address: "127.0.0.1".into(),
                        port: 9000,
                        ..Default::default()
                    }],
                    leaf: Some(Leaf::default()),
                    ca_file: "/etc/billing-ca.pem".into(),
                    tls_server_name: "billing.example".into(),
                    ..Default::default()
                },
                LinkedService {
                    service: "maps".into(),
                    sni: "maps.default.dc1.internal.td".into(),
                    endpoints: vec![Endpoint {
                        address: "maps.example".into(),
                        port: 443,
                        ..Default::default()
                    }],
                    ..Default::default()
                },
            ],
            ..Default::default()
        }
    }

    #[test]
    fn a_terminating_gateway_picks_each_linked_service_by_sni() {
        let out = crate::render::render(&snapshot());
        let listeners = out.of(type_url::LISTENER).unwrap();
        let any = &listeners["default:127.0.0.1:8443"];
        let listener = Listener::decode(any.value.as_slice()).unwrap();
        let names: Vec<Vec<String>> = listener
            .filter_chains
            .iter()
            .map(|c| c.filter_chain_match.clone().unwrap().server_names)
            .collect();
        assert_eq!(
            names,
            [
                vec!["billing.default.dc1.internal.td".to_string()],
                vec!["maps.default.dc1.internal.td".to_string()]
            ]
        );
        assert_eq!(listener.listener_filters.len(), 1, "tls_inspector");
        // No sidecar listener or local_app for a gateway.
        assert_eq!(listeners.len(), 1);
        assert!(out
            .of(type_url::CLUSTER)
            .unwrap()
            .get("local_app")
            .is_none());
        // IPs by EDS; a host name resolved by Envoy.
        let endpoints = out.of(type_url::ENDPOINT).unwrap();
        assert!(endpoints.contains_key("billing.default.dc1.internal.td"));
        assert!(!endpoints.contains_key("maps.default.dc1.internal.td"));
        let secrets = out.of(type_url::SECRET).unwrap();
        assert!(secrets.contains_key("leaf:billing"), "{:?}", secrets.keys());
        let cluster = Cluster::decode(
            out.of(type_url::CLUSTER).unwrap()["billing.default.dc1.internal.td"]
                .value
                .as_slice(),
        )
        .unwrap();
        assert!(cluster.transport_socket.is_some(), "TLS to billing");
    }

    #[test]
    fn an_ingress_listener_routes_each_host_once() {
        let up = Upstream {
            destination_name: "http:8080".into(),
            local_bind_port: 8080,
            protocol: mesh_proxy::Protocol::Http,
            tls: true,
            ingress: vec![
                IngressRoute {
                    hosts: vec!["web.ingress.consul".into(), "shared.test".into()],
                    service: "web".into(),
                    ..Default::default()
                },
                IngressRoute {
                    hosts: vec!["shared.test".into(), "*".into()],
                    service: "api".into(),
                    ..Default::default()
                },
            ],
            ..Default::default()
        };
        let snap = ProxySnapshot {
            kind: "ingress-gateway".into(),
            datacenter: "dc1".into(),
            trust_domain: "td".into(),
            upstreams: vec![up],
            ..Default::default()
        };
        let out = crate::render::render(&snap);
        let config = RouteConfiguration::decode(
            out.of(type_url::ROUTE).unwrap()["http:8080"]
                .value
                .as_slice(),
        )
        .unwrap();
        let domains: Vec<Vec<String>> = config
            .virtual_hosts
            .iter()
            .map(|v| v.domains.clone())
            .collect();
        assert_eq!(
            domains,
            [
                vec![
                    "web.ingress.consul".to_string(),
                    "web.ingress.consul:8080".into(),
                    "shared.test".into(),
                    "shared.test:8080".into()
                ],
                vec!["*".to_string()]
            ]
        );
        let clusters = out.of(type_url::CLUSTER).unwrap();
        assert!(clusters.contains_key("web.default.dc1.internal.td"));
        assert!(clusters.contains_key("api.default.dc1.internal.td"));
        let listener = Listener::decode(
            out.of(type_url::LISTENER)
                .unwrap()
                .values()
                .next()
                .unwrap()
                .value
                .as_slice(),
        )
        .unwrap();
        assert!(listener.filter_chains[0].transport_socket.is_some(), "TLS");
    }
}
