//! What one proxy's snapshot is, computed from the replicated state: a
//! sidecar's public listener, intentions and upstreams; an ingress or
//! terminating gateway's listeners and linked services; and every
//! upstream as its discovery chain resolves it (subsets, failover, routes
//! and splits, load balancing, the caller's upstream limits). The hub
//! decides when to compute and who gets the result.

use std::collections::{BTreeMap, HashMap};

use mesh_proxy::{
    Endpoint, IngressRoute, IntentionSet, Protocol, ProxySnapshot, PublicListener, Upstream,
};
use mesh_state::State;
use mesh_types::{CheckStatus, Service};

/// What every snapshot of one pass shares.
pub(crate) struct Inputs<'a> {
    pub(crate) datacenter: &'a str,
    /// The DNS domain (`consul.`): ingress hosts default under it.
    pub(crate) domain: &'a str,
    pub(crate) trust_domain: &'a str,
    pub(crate) roots: &'a [String],
    pub(crate) default_allow: bool,
}

/// Parts computed once per pass, however many proxies use them.
#[derive(Default)]
pub(crate) struct Parts<'s> {
    pub(crate) intentions: HashMap<String, IntentionSet>,
    pub(crate) protocols: HashMap<String, Protocol>,
    /// Each upstream, as its chain resolves it.
    pub(crate) endpoints: HashMap<String, Resolved>,
    /// Every service's Connect instances, from one scan of the catalog.
    pub(crate) instances: Option<HashMap<&'s str, Vec<(&'s mesh_types::Node, &'s Service)>>>,
}

/// Upstream `name` as its chain resolves it, once per pass.
fn resolved_for<'s>(s: &'s State, inputs: &Inputs, parts: &mut Parts<'s>, name: &str) -> Resolved {
    if let Some(known) = parts.endpoints.get(name) {
        return known.clone();
    }
    let chain = chain_of(s, name, inputs.datacenter);
    let instances = parts
        .instances
        .get_or_insert_with(|| mesh_api::connect_instances_by_service(s));
    let found = chain_endpoints(s, inputs, instances, name, chain);
    parts.endpoints.insert(name.to_string(), found.clone());
    found
}

/// An ingress gateway's entry, if it has a valid one.
fn ingress_entry(s: &State, gateway: &str) -> Option<mesh_chain::entries::IngressGateway> {
    let body = &s.config_entry("ingress-gateway", gateway)?.body_json;
    mesh_chain::entries::parse("ingress-gateway", gateway, body).ok()
}

/// The hosts of an ingress gateway's TLS listeners (its leaf's DNS SANs).
pub(crate) fn tls_hosts(s: &State, gateway: &str, domain: &str, datacenter: &str) -> Vec<String> {
    let Some(entry) = ingress_entry(s, gateway) else {
        return Vec::new();
    };
    // Listeners presenting certificates from files need no names in the leaf.
    let mut hosts: Vec<String> = entry
        .listeners
        .iter()
        .filter(|l| matches!(entry.tls_of(l), (true, cert, _) if cert.is_empty()))
        .flat_map(|l| &l.services)
        .flat_map(|svc| svc.hosts_or_default(domain, datacenter))
        .filter(|h| h != "*")
        .collect();
    hosts.sort();
    hosts.dedup();
    hosts
}

/// An ingress gateway: one listener per entry listener, on the gateway's
/// address; a tcp one splices to its service, an http one routes each
/// request by host to a service and on through its chain.
fn compute_ingress<'s>(
    s: &'s State,
    inputs: &Inputs,
    parts: &mut Parts<'s>,
    id: &str,
    svc: &Service,
) -> ProxySnapshot {
    let entry = ingress_entry(s, &svc.name).unwrap_or_default();
    let bind = or_any(&svc.address);
    let upstreams = entry
        .listeners
        .iter()
        .filter(|l| (1..=u32::from(u16::MAX)).contains(&l.port))
        .map(|l| {
            let protocol = l.protocol();
            let (tls, tls_cert_file, tls_key_file) = entry.tls_of(l);
            let mut up = Upstream {
                destination_name: format!("{protocol}:{}", l.port),
                local_bind_address: bind.clone(),
                local_bind_port: l.port as u16,
                connect_timeout_ms: mesh_chain::DEFAULT_CONNECT_TIMEOUT.as_millis() as u64,
                protocol: match protocol.as_str() {
                    "http" => Protocol::Http,
                    "http2" => Protocol::Http2,
                    "grpc" => Protocol::Grpc,
                    _ => Protocol::Tcp,
                },
                tls,
                tls_cert_file,
                tls_key_file,
                ..Default::default()
            };
            if up.protocol == Protocol::Tcp {
                if let Some(service) = l.services.first() {
                    let resolved = resolved_for(s, inputs, parts, &service.name);
                    up.endpoints = resolved.endpoints;
                    up.connect_timeout_ms = resolved.connect_timeout_ms;
                    up.load_balancer = resolved.load_balancer;
                    up.destination_service = service.name.clone();
                }
                return up;
            }
            up.ingress = l
                .services
                .iter()
                .map(|service| {
                    let resolved = resolved_for(s, inputs, parts, &service.name);
                    IngressRoute {
                        hosts: service.hosts_or_default(inputs.domain, inputs.datacenter),
                        service: service.name.clone(),
                        endpoints: resolved.endpoints,
                        chain: resolved.chain,
                        targets: resolved.targets,
                    }
                })
                .collect();
            up
        })
        .collect();
    ProxySnapshot {
        proxy_id: id.to_string(),
        service: svc.name.clone(),
        kind: svc.kind.clone(),
        trust_domain: inputs.trust_domain.to_string(),
        datacenter: inputs.datacenter.to_string(),
        leaf: None,
        roots: inputs.roots.to_vec(),
        upstreams,
        ..Default::default()
    }
}

/// The snapshot of proxy `id` registered as `svc`, without its leaf.
pub(crate) fn compute<'s>(
    s: &'s State,
    inputs: &Inputs,
    parts: &mut Parts<'s>,
    id: &str,
    svc: &Service,
) -> ProxySnapshot {
    match svc.kind.as_str() {
        "ingress-gateway" => return compute_ingress(s, inputs, parts, id, svc),
        "terminating-gateway" => return compute_terminating(s, inputs, parts, id, svc),
        _ => {}
    }
    let proxy = svc.proxy.clone().unwrap_or_default();
    let dest = proxy.destination_service_name.clone();
    let intentions = parts
        .intentions
        .entry(dest.clone())
        .or_insert_with(|| {
            IntentionSet::for_destination(s.intentions(), &dest, inputs.default_allow)
        })
        .clone();
    let protocol = *parts
        .protocols
        .entry(dest.clone())
        .or_insert_with(|| service_protocol(s, &dest));
    let upstreams = proxy
        .upstreams
        .iter()
        .map(|u| {
            let name = &u.destination_name;
            let resolved = resolved_for(s, inputs, parts, name);
            let (max_connections, max_concurrent_requests, outlier) =
                upstream_settings(s, &dest, name);
            Upstream {
                destination_name: name.clone(),
                local_bind_address: if u.local_bind_address.is_empty() {
                    "127.0.0.1".into()
                } else {
                    u.local_bind_address.clone()
                },
                local_bind_port: u.local_bind_port,
                connect_timeout_ms: resolved.connect_timeout_ms,
                protocol: *parts
                    .protocols
                    .entry(name.clone())
                    .or_insert_with(|| service_protocol(s, name)),
                endpoints: resolved.endpoints,
                chain: resolved.chain,
                targets: resolved.targets,
                load_balancer: resolved.load_balancer,
                max_connections,
                max_concurrent_requests,
                outlier,
                ..Default::default()
            }
        })
        .collect();
    ProxySnapshot {
        proxy_id: id.to_string(),
        service: dest,
        kind: String::new(),
        trust_domain: inputs.trust_domain.to_string(),
        datacenter: inputs.datacenter.to_string(),
        public: PublicListener {
            bind_address: or_any(&svc.address),
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
        roots: inputs.roots.to_vec(),
        intentions,
        upstreams,
        linked: Vec::new(),
        index: 0,
    }
}

/// The stored service-defaults of `service` (its upstream settings shape
/// its proxies' snapshots).
pub(crate) fn service_defaults_body(s: &State, service: &str) -> String {
    s.config_entry("service-defaults", service)
        .map(|e| e.body_json.clone())
        .unwrap_or_default()
}

/// The calling service's limits and passive health check for `upstream`.
fn upstream_settings(
    s: &State,
    caller: &str,
    upstream: &str,
) -> (u32, u32, Option<mesh_proxy::Outlier>) {
    let Some(entry) = s.config_entry("service-defaults", caller) else {
        return (0, 0, None);
    };
    let Ok(defaults) = mesh_chain::entries::parse::<mesh_chain::entries::ServiceDefaults>(
        "service-defaults",
        caller,
        &entry.body_json,
    ) else {
        return (0, 0, None);
    };
    let Some(settings) = defaults
        .upstreamconfig
        .as_ref()
        .and_then(|c| c.for_upstream(upstream))
    else {
        return (0, 0, None);
    };
    let limits = settings.limits.clone().unwrap_or_default();
    let outlier = settings
        .passivehealthcheck
        .as_ref()
        .filter(|p| p.maxfailures > 0)
        .map(|p| mesh_proxy::Outlier {
            max_failures: p.maxfailures,
            base_ejection_ms: match p.baseejectiontime.0.as_millis() as u64 {
                0 => 30_000,
                ms => ms,
            },
            max_ejection_percent: p.maxejectionpercent.unwrap_or(10),
        });
    (limits.maxconnections, limits.maxconcurrentrequests, outlier)
}

/// `service-defaults` protocol of `service`: http, http2 and grpc are L7.
pub(crate) fn service_protocol(s: &State, service: &str) -> Protocol {
    s.config_entry("service-defaults", service)
        .and_then(|e| serde_json::from_str::<serde_json::Value>(&e.body_json).ok())
        .and_then(|v| {
            mesh_wire::field(v.as_object()?, "Protocol")?
                .as_str()
                .map(str::to_ascii_lowercase)
        })
        .map_or(Protocol::Tcp, |p| match p.as_str() {
            "http" => Protocol::Http,
            // h2 to the app: gRPC needs it, and its trailers.
            "http2" => Protocol::Http2,
            "grpc" => Protocol::Grpc,
            _ => Protocol::Tcp,
        })
}

/// The discovery chain of upstream `service`, if its entries compile
/// (they were checked when written; a chain that does not compile now
/// falls back to the service's plain instances).
pub(crate) fn chain_of(
    s: &State,
    service: &str,
    datacenter: &str,
) -> Option<mesh_chain::CompiledChain> {
    let stored = |k: &str, n: &str| s.config_entry(k, n).map(|e| e.body_json.clone());
    match mesh_chain::compile(&stored, service, datacenter, "") {
        Ok(chain) => Some(chain),
        Err(e) => {
            tracing::warn!(%service, error = %e, "discovery chain does not compile; using the service's instances");
            None
        }
    }
}

/// An upstream as its chain resolves it.
#[derive(Clone, Default)]
pub(crate) struct Resolved {
    /// Where a connection goes (see [`chain_endpoints`]).
    endpoints: Vec<Endpoint>,
    connect_timeout_ms: u64,
    /// When routes or splits decide per request: the chain, and the
    /// endpoints of every resolver's target.
    chain: Option<mesh_chain::CompiledChain>,
    targets: BTreeMap<String, Vec<Endpoint>>,
    /// The default resolver's load-balancer policy.
    load_balancer: Option<mesh_chain::entries::LoadBalancer>,
}

/// Where connections to an upstream go, as its chain resolves them: the
/// primary target's healthy instances, or else the first failover target
/// that has some, with that target's connect timeout. A chain that starts
/// with routes or splits also carries every target's endpoints, for the
/// proxy to choose per request (connections that are not HTTP resolve by
/// its catch-all route and heaviest split).
fn chain_endpoints(
    s: &State,
    inputs: &Inputs,
    instances: &HashMap<&str, Vec<(&mesh_types::Node, &Service)>>,
    service: &str,
    chain: Option<mesh_chain::CompiledChain>,
) -> Resolved {
    let default_ms = mesh_chain::DEFAULT_CONNECT_TIMEOUT.as_millis() as u64;
    let Some(chain) = chain else {
        let found = instances.get(service);
        return Resolved {
            endpoints: healthy_endpoints(s, inputs, service, found, None),
            connect_timeout_ms: default_ms,
            ..Default::default()
        };
    };
    let resolve = |primary: &mesh_chain::Target, failover: Vec<&mesh_chain::Target>| {
        for target in std::iter::once(primary).chain(failover) {
            let found = instances.get(target.service.as_str());
            let endpoints = healthy_endpoints(s, inputs, &target.service, found, Some(target));
            if !endpoints.is_empty() {
                return (endpoints, target.connect_timeout.0.as_millis() as u64);
            }
        }
        (Vec::new(), primary.connect_timeout.0.as_millis() as u64)
    };
    let mut out = match chain.default_targets() {
        Some((primary, failover)) => {
            let (endpoints, connect_timeout_ms) = resolve(primary, failover);
            Resolved {
                endpoints,
                connect_timeout_ms,
                ..Default::default()
            }
        }
        None => Resolved {
            connect_timeout_ms: default_ms,
            ..Default::default()
        },
    };
    out.load_balancer = chain
        .default_resolver()
        .and_then(|n| n.load_balancer.clone());
    // Routes, splits, or hashing on a request's header, cookie or query.
    let hashes_requests = out
        .load_balancer
        .as_ref()
        .is_some_and(|lb| lb.hashpolicies.iter().any(|h| !h.field.is_empty()))
        && matches!(chain.protocol.as_str(), "http" | "http2" | "grpc");
    let per_request = hashes_requests
        || chain
            .nodes
            .get(&chain.start_node)
            .is_some_and(|n| n.kind != "resolver");
    if per_request {
        for node in chain.nodes.values() {
            let Some(r) = &node.resolver else { continue };
            let Some(primary) = chain.targets.get(&r.target) else {
                continue;
            };
            let failover = r
                .failover
                .iter()
                .flat_map(|f| &f.targets)
                .filter_map(|t| chain.targets.get(t))
                .collect();
            out.targets
                .insert(r.target.clone(), resolve(primary, failover).0);
        }
        out.chain = Some(chain);
    }
    out
}

/// An instance as subset filters see it (Consul's health entry shape).
fn filter_view(node: &mesh_types::Node, app: &Service) -> serde_json::Value {
    serde_json::json!({
        "Node": {"Node": node.name, "Address": node.address, "Datacenter": node.datacenter, "Meta": node.meta},
        "Service": {"ID": app.id, "Service": app.name, "Tags": app.tags, "Address": app.address,
                    "Port": app.port, "Meta": app.meta},
    })
}

/// Sidecars of `service` whose own checks and whose app's are not
/// critical, and (with a `target`) whose app is in the target's subset.
fn healthy_endpoints(
    s: &State,
    inputs: &Inputs,
    service: &str,
    instances: Option<&Vec<(&mesh_types::Node, &Service)>>,
    target: Option<&mesh_chain::Target>,
) -> Vec<Endpoint> {
    let spiffe_id =
        mesh_types::SpiffeId::service(inputs.trust_domain, inputs.datacenter, service).to_string();
    instances
        .into_iter()
        .flatten()
        .copied()
        .filter(|(node, svc)| {
            let app_id = svc
                .proxy
                .as_ref()
                .map(|p| p.destination_service_id.clone())
                .unwrap_or_default();
            let checks: Vec<_> = s
                .checks_for(&node.name, &svc.id)
                .into_iter()
                .chain(s.checks_for(&node.name, &app_id))
                .collect();
            if checks.iter().any(|c| c.status == CheckStatus::Critical) {
                return false;
            }
            let Some(target) = target else { return true };
            let warning = checks.iter().any(|c| c.status == CheckStatus::Warning);
            // The app's tags and meta (a connect-native service is its own app).
            let app = s.service(&node.name, &app_id).unwrap_or(svc);
            target.admits(&filter_view(node, app), warning)
        })
        .map(|(node, svc)| Endpoint {
            address: if svc.address.is_empty() {
                node.address.clone()
            } else {
                svc.address.clone()
            },
            port: svc.port,
            spiffe_id: spiffe_id.clone(),
            // A terminating gateway fronts several services: it picks by SNI.
            sni: if svc.kind == "terminating-gateway" {
                linked_sni(service, inputs)
            } else {
                String::new()
            },
        })
        .collect()
}

/// A registration's address to bind, or every address when it has none.
fn or_any(address: &str) -> String {
    if address.is_empty() {
        "0.0.0.0".into()
    } else {
        address.to_string()
    }
}

/// The SNI callers send for a service behind a terminating gateway.
fn linked_sni(service: &str, inputs: &Inputs) -> String {
    format!(
        "{service}.default.{}.internal.{}",
        inputs.datacenter, inputs.trust_domain
    )
}

/// The services a terminating gateway's entry links.
pub(crate) fn linked_services(s: &State, gateway: &str) -> Vec<mesh_chain::entries::LinkedService> {
    s.config_entry("terminating-gateway", gateway)
        .and_then(|e| {
            mesh_chain::entries::parse::<mesh_chain::entries::TerminatingGateway>(
                "terminating-gateway",
                gateway,
                &e.body_json,
            )
            .ok()
        })
        .map(|e| e.services)
        .unwrap_or_default()
}

/// A terminating gateway: one mTLS listener that presents, per SNI, the
/// leaf of a linked service, enforces that service's intentions, and
/// carries the connection on to one of its instances.
fn compute_terminating<'s>(
    s: &'s State,
    inputs: &Inputs,
    parts: &mut Parts<'s>,
    id: &str,
    svc: &Service,
) -> ProxySnapshot {
    let linked = linked_services(s, &svc.name)
        .into_iter()
        .map(|l| {
            let intentions = parts
                .intentions
                .entry(l.name.clone())
                .or_insert_with(|| {
                    IntentionSet::for_destination(s.intentions(), &l.name, inputs.default_allow)
                })
                .clone();
            let endpoints = crate::xds::healthy_instances(s, &l.name);
            mesh_proxy::LinkedService {
                sni: linked_sni(&l.name, inputs),
                service: l.name,
                endpoints,
                intentions,
                leaf: None,
                ca_file: l.cafile,
                cert_file: l.certfile,
                key_file: l.keyfile,
                tls_server_name: l.sni,
            }
        })
        .collect();
    ProxySnapshot {
        proxy_id: id.to_string(),
        service: svc.name.clone(),
        kind: svc.kind.clone(),
        trust_domain: inputs.trust_domain.to_string(),
        datacenter: inputs.datacenter.to_string(),
        public: PublicListener {
            bind_address: or_any(&svc.address),
            bind_port: svc.port,
            ..Default::default()
        },
        roots: inputs.roots.to_vec(),
        linked,
        ..Default::default()
    }
}
