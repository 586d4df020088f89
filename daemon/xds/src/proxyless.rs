//! Proxyless gRPC: a gRPC client with an `xds:///<service>` target asks
//! for listener `<service>` and follows it to its route, cluster and
//! endpoints. Each name is served from the catalog's healthy instances of
//! that service (passing or warning), so the client balances across them
//! itself, with no sidecar. These clients speak plaintext to the
//! instances' own addresses: mesh's mTLS and intentions apply to services
//! behind a sidecar, not to them.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use envoy_types::pb::envoy::config::cluster::v3::{cluster, Cluster};
use envoy_types::pb::envoy::config::core::v3::Locality;
use envoy_types::pb::envoy::config::endpoint::v3::{ClusterLoadAssignment, LocalityLbEndpoints};
use envoy_types::pb::envoy::config::listener::v3::{ApiListener, Listener};
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
    http_connection_manager, HttpConnectionManager, Rds,
};
use envoy_types::pb::google::protobuf::UInt32Value;
use envoy_types::util::pack_any;
use futures::StreamExt;
use mesh_proxy::Endpoint;
use tokio_stream::StreamMap;
use tonic::Status;

use crate::ads::{ServiceEndpoints, SnapshotSource};
use crate::render::{ads, duration, lb_endpoint_at, route_to, router_filter, type_url, Resources};

/// The most services one proxyless stream may follow.
pub const MAX_FOLLOWED_SERVICES: usize = 256;

/// The longest resource name a proxyless client may ask for.
const MAX_NAME_LEN: usize = 512;

/// The service a requested name stands for: `greeter` and `greeter:50051`
/// (a target with a port) both name service `greeter`.
fn service_of(name: &str) -> &str {
    match name.rsplit_once(':') {
        Some((service, port)) if port.parse::<u16>().is_ok() => service,
        _ => name,
    }
}

/// The catalog as one proxyless stream follows it: one watch per service
/// its requests name.
pub(crate) struct Catalog {
    source: Arc<dyn SnapshotSource>,
    token: Option<String>,
    watches: StreamMap<String, ServiceEndpoints>,
    /// Each followed service's healthy instances, once known.
    endpoints: BTreeMap<String, Vec<Endpoint>>,
    /// The resource names the client asked for, of any type.
    names: BTreeSet<String>,
}

impl Catalog {
    pub(crate) fn new(source: Arc<dyn SnapshotSource>, token: Option<String>) -> Self {
        Catalog {
            source,
            token,
            watches: StreamMap::new(),
            endpoints: BTreeMap::new(),
            names: BTreeSet::new(),
        }
    }

    /// Follows the services `names` stand for and no others; whether the
    /// resources must be rendered again now (the names changed, and every
    /// service they name is known).
    pub(crate) fn follow(&mut self, names: BTreeSet<String>) -> Result<bool, Status> {
        if let Some(long) = names
            .iter()
            .find(|n| n.len() > MAX_NAME_LEN || n.is_empty())
        {
            return Err(Status::invalid_argument(format!(
                "resource name {:?} is not a service name (1 to {MAX_NAME_LEN} bytes)",
                long.chars().take(64).collect::<String>()
            )));
        }
        let services: BTreeSet<&str> = names.iter().map(|n| service_of(n)).collect();
        if services.len() > MAX_FOLLOWED_SERVICES {
            return Err(Status::resource_exhausted(format!(
                "{} services in one stream; at most {MAX_FOLLOWED_SERVICES} (MAX_FOLLOWED_SERVICES)",
                services.len()
            )));
        }
        for service in &services {
            if !self.watches.contains_key(*service) {
                let watch = self.source.watch_service(service, self.token.as_deref())?;
                self.watches.insert(service.to_string(), watch);
            }
        }
        let gone: Vec<String> = self
            .watches
            .keys()
            .filter(|s| !services.contains(s.as_str()))
            .cloned()
            .collect();
        for service in gone {
            self.watches.remove(&service);
            self.endpoints.remove(&service);
        }
        let changed = names != self.names;
        self.names = names;
        Ok(changed && self.ready())
    }

    /// Whether every followed service's instances are known: until then
    /// nothing is sent, as a state-of-the-world answer without a name
    /// tells the client that name does not exist.
    fn ready(&self) -> bool {
        self.watches.keys().all(|s| self.endpoints.contains_key(s))
    }

    /// The resources after the next change of a followed service's
    /// instances; pending while nothing is followed.
    pub(crate) async fn next(&mut self) -> Result<Resources, Status> {
        loop {
            if self.watches.is_empty() {
                std::future::pending::<()>().await;
            }
            let Some((service, update)) = self.watches.next().await else {
                continue;
            };
            let mut endpoints = update?;
            endpoints.sort_by(|a, b| (&a.address, a.port).cmp(&(&b.address, b.port)));
            if self.endpoints.get(&service) != Some(&endpoints) {
                self.endpoints.insert(service, endpoints);
                if self.ready() {
                    return Ok(self.render());
                }
            }
        }
    }

    /// Listener, route, cluster and endpoints under each name asked for
    /// whose service's instances are known.
    pub(crate) fn render(&self) -> Resources {
        let mut out = Resources::empty();
        for name in &self.names {
            if let Some(endpoints) = self.endpoints.get(service_of(name)) {
                render_name(&mut out, name, endpoints);
            }
        }
        out
    }
}

fn render_name(out: &mut Resources, name: &str, endpoints: &[Endpoint]) {
    let manager = HttpConnectionManager {
        route_specifier: Some(http_connection_manager::RouteSpecifier::Rds(Rds {
            config_source: Some(ads()),
            route_config_name: name.into(),
        })),
        http_filters: vec![router_filter()],
        ..Default::default()
    };
    let listener = Listener {
        name: name.into(),
        api_listener: Some(ApiListener {
            api_listener: Some(pack_any(manager)),
        }),
        ..Default::default()
    };
    out.add(type_url::LISTENER, name.into(), pack_any(listener));
    out.add(type_url::ROUTE, name.into(), pack_any(route_to(name, name)));
    let cluster = Cluster {
        name: name.into(),
        connect_timeout: Some(duration(Duration::from_secs(5))),
        cluster_discovery_type: Some(cluster::ClusterDiscoveryType::Type(
            cluster::DiscoveryType::Eds as i32,
        )),
        eds_cluster_config: Some(cluster::EdsClusterConfig {
            eds_config: Some(ads()),
            service_name: name.into(),
        }),
        lb_policy: cluster::LbPolicy::RoundRobin as i32,
        ..Default::default()
    };
    out.add(type_url::CLUSTER, name.into(), pack_any(cluster));
    let assignment = ClusterLoadAssignment {
        cluster_name: name.into(),
        endpoints: vec![LocalityLbEndpoints {
            locality: Some(Locality::default()),
            // gRPC skips a locality without a weight.
            load_balancing_weight: Some(UInt32Value { value: 1 }),
            lb_endpoints: endpoints
                .iter()
                .map(|e| lb_endpoint_at(&e.address, e.port))
                .collect(),
            ..Default::default()
        }],
        ..Default::default()
    };
    out.add(type_url::ENDPOINT, name.into(), pack_any(assignment));
}

#[cfg(test)]
mod tests {
    use super::*;
    use envoy_types::pb::envoy::config::endpoint::v3::lb_endpoint;
    use prost::Message;

    #[test]
    fn a_port_in_the_target_names_the_same_service() {
        assert_eq!(service_of("greeter"), "greeter");
        assert_eq!(service_of("greeter:50051"), "greeter");
        assert_eq!(service_of("a:b"), "a:b");
    }

    #[test]
    fn each_name_gets_an_api_listener_down_to_weighted_endpoints() {
        let mut out = Resources::empty();
        let endpoints = [Endpoint {
            address: "127.0.0.2".into(),
            port: 7000,
            ..Default::default()
        }];
        render_name(&mut out, "greeter:50051", &endpoints);
        for t in [
            type_url::LISTENER,
            type_url::ROUTE,
            type_url::CLUSTER,
            type_url::ENDPOINT,
        ] {
            assert!(out.of(t).unwrap().contains_key("greeter:50051"), "{t}");
        }
        let any = &out.of(type_url::LISTENER).unwrap()["greeter:50051"];
        let listener = Listener::decode(any.value.as_slice()).unwrap();
        assert!(listener.api_listener.is_some());
        assert!(listener.address.is_none(), "a gRPC client binds nothing");
        let any = &out.of(type_url::ENDPOINT).unwrap()["greeter:50051"];
        let cla = ClusterLoadAssignment::decode(any.value.as_slice()).unwrap();
        let locality = &cla.endpoints[0];
        assert_eq!(locality.load_balancing_weight.as_ref().unwrap().value, 1);
        let Some(lb_endpoint::HostIdentifier::Endpoint(e)) =
            &locality.lb_endpoints[0].host_identifier
        else {
            panic!("no endpoint");
        };
        assert!(format!("{:?}", e.address).contains("127.0.0.2"));
    }
}
