//! Discovery chains, as Consul compiles them: for a service its callers
//! reach, the graph from the first router (per-request routes), through
//! splitters (weighted shares) to resolvers (which instances: subsets,
//! redirects, failover, timeouts, load balancing), with one target per
//! service and subset. The built-in proxy and Envoy both follow the same
//! compiled chain, and `GET /v1/discovery-chain/<service>` shows it.
//!
//! Entries are checked on their own by [`entries::validate`]; what needs
//! several entries (a redirect loop, a subset another entry asks for, a
//! route on a tcp service) is found by [`compile`], which the API runs on
//! every write that could change a chain, so a bad chain is never stored.

#![forbid(unsafe_code)]

pub mod entries;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use entries::{
    parse, GoDuration, HeaderMods, LoadBalancer, ProxyDefaults, Route, RouteDestination,
    RouteMatch, ServiceDefaults, ServiceResolver, ServiceRouter, ServiceSplitter, Subset,
};

/// The most nodes one chain may have.
pub const MAX_CHAIN_NODES: usize = 512;
/// A connect timeout when no resolver sets one.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Config entry kinds that shape chains.
pub const CHAIN_KINDS: [&str; 5] = [
    "service-defaults",
    "proxy-defaults",
    "service-router",
    "service-splitter",
    "service-resolver",
];

/// Why an entry or a chain is refused: the entry and the field at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind} {name:?}: {}{message}", if field.is_empty() { String::new() } else { format!("{field}: ") })]
pub struct ChainError {
    pub kind: String,
    pub name: String,
    pub field: String,
    pub message: String,
}

impl ChainError {
    pub fn entry(kind: &str, name: &str, field: &str, message: impl Into<String>) -> Self {
        ChainError {
            kind: kind.into(),
            name: name.into(),
            field: field.into(),
            message: message.into(),
        }
    }
}

/// Where the compiler reads entries from: each one's stored JSON body.
pub trait Entries {
    fn body(&self, kind: &str, name: &str) -> Option<String>;
}

impl<F: Fn(&str, &str) -> Option<String>> Entries for F {
    fn body(&self, kind: &str, name: &str) -> Option<String> {
        self(kind, name)
    }
}

/// A compiled chain, in the shape of Consul's `/v1/discovery-chain`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct CompiledChain {
    pub service_name: String,
    pub namespace: String,
    pub partition: String,
    pub datacenter: String,
    pub customization_hash: String,
    /// Nothing but defaults shape this chain.
    pub default: bool,
    pub protocol: String,
    pub start_node: String,
    pub nodes: BTreeMap<String, ChainNode>,
    pub targets: BTreeMap<String, Target>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ChainNode {
    /// `router`, `splitter` or `resolver`.
    #[serde(rename = "Type")]
    pub kind: String,
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub routes: Option<Vec<ChainRoute>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub splits: Option<Vec<ChainSplit>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resolver: Option<ChainResolver>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub load_balancer: Option<LoadBalancer>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ChainRoute {
    pub definition: Route,
    pub next_node: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ChainSplit {
    pub weight: f64,
    pub next_node: String,
    pub request_headers: HeaderMods,
    pub response_headers: HeaderMods,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ChainResolver {
    pub connect_timeout: GoDuration,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_timeout: Option<GoDuration>,
    pub default: bool,
    pub target: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failover: Option<ChainFailover>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ChainFailover {
    pub targets: Vec<String>,
}

/// A service (and subset) in this datacenter that traffic may reach.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Target {
    #[serde(rename = "ID")]
    pub id: String,
    pub service: String,
    pub service_subset: String,
    pub namespace: String,
    pub partition: String,
    pub datacenter: String,
    pub mesh_gateway: Value,
    pub subset: Subset,
    pub connect_timeout: GoDuration,
    #[serde(rename = "SNI")]
    pub sni: String,
    pub name: String,
}

impl Target {
    /// Whether an instance (a health entry: `Node`, `Service`, `Checks`)
    /// belongs to this target's subset. `passing_only` tells whether the
    /// instance has a warning check.
    pub fn admits(&self, instance: &Value, warning: bool) -> bool {
        if self.subset.onlypassing && warning {
            return false;
        }
        if self.subset.filter.is_empty() {
            return true;
        }
        // Checked when the resolver was written; a filter that no longer
        // parses admits nothing rather than everything.
        mesh_filter::Filter::parse(&self.subset.filter).is_ok_and(|f| f.matches(instance))
    }
}

impl CompiledChain {
    /// The resolver connections reach when nothing per request decides
    /// (routes by their catch-all, splits by their heaviest share).
    pub fn default_resolver(&self) -> Option<&ChainNode> {
        let mut node = self.nodes.get(&self.start_node)?;
        for _ in 0..=self.nodes.len() {
            let next = match node.kind.as_str() {
                "router" => &node.routes.as_ref()?.last()?.next_node,
                "splitter" => {
                    &node
                        .splits
                        .as_ref()?
                        .iter()
                        .max_by(|a, b| a.weight.total_cmp(&b.weight))?
                        .next_node
                }
                _ => return node.resolver.is_some().then_some(node),
            };
            node = self.nodes.get(next)?;
        }
        None
    }

    /// The default resolver's target, then its failover targets in order.
    pub fn default_targets(&self) -> Option<(&Target, Vec<&Target>)> {
        let resolver = self.default_resolver()?.resolver.as_ref()?;
        let primary = self.targets.get(&resolver.target)?;
        let failover = resolver
            .failover
            .iter()
            .flat_map(|f| &f.targets)
            .filter_map(|t| self.targets.get(t))
            .collect();
        Some((primary, failover))
    }
}

fn is_l7(protocol: &str) -> bool {
    matches!(protocol, "http" | "http2" | "grpc")
}

/// The protocol of `service`: its service-defaults, else the global
/// proxy-defaults, else tcp.
pub fn protocol_of(entries: &impl Entries, service: &str) -> Result<String, ChainError> {
    if let Some(body) = entries.body("service-defaults", service) {
        let e: ServiceDefaults = parse("service-defaults", service, &body)?;
        if !e.protocol.is_empty() {
            return Ok(e.protocol.to_ascii_lowercase());
        }
    }
    if let Some(body) = entries.body("proxy-defaults", "global") {
        let e: ProxyDefaults = parse("proxy-defaults", "global", &body)?;
        if let Some(p) = e.protocol() {
            return Ok(p);
        }
    }
    Ok("tcp".into())
}

/// Compiles the chain of `service` as seen from `datacenter`.
pub fn compile(
    entries: &impl Entries,
    service: &str,
    datacenter: &str,
    trust_domain: &str,
) -> Result<CompiledChain, ChainError> {
    let protocol = protocol_of(entries, service)?;
    let mut c = Compiler {
        entries,
        service,
        protocol: protocol.clone(),
        datacenter,
        trust_domain,
        nodes: BTreeMap::new(),
        targets: BTreeMap::new(),
        splitting: BTreeSet::new(),
    };
    let router = c.router(service)?;
    let start_node = match router {
        Some(router) => c.router_node(service, router)?,
        None => c.next_for(service, "")?,
    };
    let default = ["service-router", "service-splitter", "service-resolver"]
        .iter()
        .all(|k| entries.body(k, service).is_none());
    Ok(CompiledChain {
        service_name: service.into(),
        namespace: "default".into(),
        partition: "default".into(),
        datacenter: datacenter.into(),
        customization_hash: String::new(),
        default,
        protocol,
        start_node,
        nodes: c.nodes,
        targets: c.targets,
    })
}

struct Compiler<'e, E> {
    entries: &'e E,
    service: &'e str,
    protocol: String,
    datacenter: &'e str,
    trust_domain: &'e str,
    nodes: BTreeMap<String, ChainNode>,
    targets: BTreeMap<String, Target>,
    /// Splitters being compiled, to find a loop.
    splitting: BTreeSet<String>,
}

impl<E: Entries> Compiler<'_, E> {
    fn router(&self, service: &str) -> Result<Option<ServiceRouter>, ChainError> {
        let Some(body) = self.entries.body("service-router", service) else {
            return Ok(None);
        };
        self.needs_l7("service-router", service)?;
        parse("service-router", service, &body).map(Some)
    }

    fn splitter(&self, service: &str) -> Result<Option<ServiceSplitter>, ChainError> {
        let Some(body) = self.entries.body("service-splitter", service) else {
            return Ok(None);
        };
        self.needs_l7("service-splitter", service)?;
        parse("service-splitter", service, &body).map(Some)
    }

    fn resolver(&self, service: &str) -> Result<Option<ServiceResolver>, ChainError> {
        match self.entries.body("service-resolver", service) {
            None => Ok(None),
            Some(body) => parse("service-resolver", service, &body).map(Some),
        }
    }

    /// Routes and splits are per request: only for http, http2 and grpc.
    fn needs_l7(&self, kind: &str, service: &str) -> Result<(), ChainError> {
        let protocol = protocol_of(self.entries, service)?;
        if is_l7(&protocol) {
            return Ok(());
        }
        Err(ChainError::entry(
            kind,
            service,
            "",
            format!("service {service:?} speaks {protocol}; routes and splits need http, http2 or grpc (set Protocol in its service-defaults)"),
        ))
    }

    fn add_node(&mut self, name: String, node: ChainNode) -> Result<String, ChainError> {
        if self.nodes.len() >= MAX_CHAIN_NODES {
            return Err(ChainError::entry(
                "service-router",
                self.service,
                "",
                format!("the chain has more than {MAX_CHAIN_NODES} nodes (MAX_CHAIN_NODES)"),
            ));
        }
        self.nodes.insert(name.clone(), node);
        Ok(name)
    }

    /// Every service a chain reaches speaks the chain's protocol.
    fn same_protocol(&self, kind: &str, from: &str, service: &str) -> Result<(), ChainError> {
        if service == self.service {
            return Ok(());
        }
        let theirs = protocol_of(self.entries, service)?;
        if theirs == self.protocol {
            return Ok(());
        }
        Err(ChainError::entry(
            kind,
            from,
            "",
            format!(
                "service {service:?} speaks {theirs}, but the chain of {:?} speaks {}",
                self.service, self.protocol
            ),
        ))
    }

    /// Where traffic for `service` (and `subset`) goes next: its splitter,
    /// or else its resolver.
    fn next_for(&mut self, service: &str, subset: &str) -> Result<String, ChainError> {
        // A splitter on a tcp service is an error, not ignored.
        if subset.is_empty() {
            if let Some(splitter) = self.splitter(service)? {
                return self.splitter_node(service, splitter);
            }
        }
        self.resolver_node(service, subset, &mut Vec::new())
    }

    fn router_node(&mut self, service: &str, router: ServiceRouter) -> Result<String, ChainError> {
        let mut routes = Vec::new();
        let default_route = Route {
            r#match: Some(RouteMatch {
                http: Some(entries::HttpMatch {
                    pathprefix: "/".into(),
                    ..Default::default()
                }),
            }),
            destination: Some(RouteDestination {
                service: service.into(),
                ..Default::default()
            }),
        };
        for route in router.routes.into_iter().chain([default_route]) {
            let dest = route.destination.clone().unwrap_or_default();
            let to = if dest.service.is_empty() {
                service.to_string()
            } else {
                dest.service.clone()
            };
            self.same_protocol("service-router", service, &to)?;
            let next_node = self.next_for(&to, &dest.servicesubset)?;
            routes.push(ChainRoute {
                definition: route,
                next_node,
            });
        }
        self.add_node(
            format!("router:{service}.default.default"),
            ChainNode {
                kind: "router".into(),
                name: format!("{service}.default.default"),
                routes: Some(routes),
                splits: None,
                resolver: None,
                load_balancer: None,
            },
        )
    }

    fn splitter_node(
        &mut self,
        service: &str,
        splitter: ServiceSplitter,
    ) -> Result<String, ChainError> {
        let name = format!("splitter:{service}.default.default");
        if self.nodes.contains_key(&name) {
            return Ok(name);
        }
        if !self.splitting.insert(service.to_string()) {
            return Err(ChainError::entry(
                "service-splitter",
                service,
                "Splits",
                format!("the splits lead back to {service:?} (a loop)"),
            ));
        }
        let mut splits = Vec::new();
        for split in splitter.splits {
            let to = if split.service.is_empty() {
                service.to_string()
            } else {
                split.service.clone()
            };
            self.same_protocol("service-splitter", service, &to)?;
            // A split to its own service goes to that service's resolver.
            let next_node = if to == service {
                self.resolver_node(&to, &split.servicesubset, &mut Vec::new())?
            } else {
                self.next_for(&to, &split.servicesubset)?
            };
            splits.push(ChainSplit {
                weight: split.weight,
                next_node,
                request_headers: split.requestheaders,
                response_headers: split.responseheaders,
            });
        }
        self.splitting.remove(service);
        self.add_node(
            name,
            ChainNode {
                kind: "splitter".into(),
                name: format!("{service}.default.default"),
                routes: None,
                splits: Some(splits),
                resolver: None,
                load_balancer: None,
            },
        )
    }

    fn target_id(&self, service: &str, subset: &str) -> String {
        if subset.is_empty() {
            format!("{service}.default.default.{}", self.datacenter)
        } else {
            format!("{subset}.{service}.default.default.{}", self.datacenter)
        }
    }

    fn add_target(
        &mut self,
        service: &str,
        subset: &str,
        def: Subset,
        timeout: GoDuration,
    ) -> String {
        let id = self.target_id(service, subset);
        let prefix = if subset.is_empty() {
            String::new()
        } else {
            format!("{subset}.")
        };
        let sni = format!(
            "{prefix}{service}.default.{}.internal.{}",
            self.datacenter, self.trust_domain
        );
        self.targets.insert(
            id.clone(),
            Target {
                id: id.clone(),
                service: service.into(),
                service_subset: subset.into(),
                namespace: "default".into(),
                partition: "default".into(),
                datacenter: self.datacenter.into(),
                mesh_gateway: Value::Object(Default::default()),
                subset: def,
                connect_timeout: timeout,
                sni: sni.clone(),
                name: sni,
            },
        );
        id
    }

    /// The subset `subset` of `service` as its resolver defines it.
    fn subset_of(
        resolver: Option<&ServiceResolver>,
        service: &str,
        subset: &str,
        asker: (&str, &str, &str),
    ) -> Result<Subset, ChainError> {
        if subset.is_empty() {
            return Ok(Subset::default());
        }
        match resolver.and_then(|r| r.subsets.get(subset)) {
            Some(def) => Ok(def.clone()),
            None => Err(ChainError::entry(
                asker.0,
                asker.1,
                asker.2,
                format!("service {service:?} has no subset named {subset:?} (define it in the Subsets of its service-resolver)"),
            )),
        }
    }

    fn local_only(&self, kind: &str, name: &str, field: &str, dc: &str) -> Result<(), ChainError> {
        if dc.is_empty() || dc == self.datacenter {
            return Ok(());
        }
        Err(ChainError::entry(
            kind,
            name,
            field,
            format!(
                "datacenter {dc:?} is not reachable from {:?} (federation comes later)",
                self.datacenter
            ),
        ))
    }

    fn resolver_node(
        &mut self,
        service: &str,
        subset: &str,
        redirects: &mut Vec<String>,
    ) -> Result<String, ChainError> {
        let resolver = self.resolver(service)?;
        let here = format!("{service}/{subset}");
        if redirects.contains(&here) {
            redirects.push(here);
            return Err(ChainError::entry(
                "service-resolver",
                service,
                "Redirect",
                format!("redirect loop: {}", redirects.join(" -> ")),
            ));
        }
        redirects.push(here);
        if let Some(r) = resolver.as_ref().and_then(|r| r.redirect.as_ref()) {
            self.local_only(
                "service-resolver",
                service,
                "Redirect.Datacenter",
                &r.datacenter,
            )?;
            let to = if r.service.is_empty() {
                service
            } else {
                &r.service
            };
            let to = to.to_string();
            self.same_protocol("service-resolver", service, &to)?;
            return self.resolver_node(&to, &r.servicesubset, redirects);
        }
        let subset = match (subset, &resolver) {
            ("", Some(r)) => r.defaultsubset.clone(),
            (s, _) => s.to_string(),
        };
        let asker = ("service-resolver", service, "Subsets");
        let def = Self::subset_of(resolver.as_ref(), service, &subset, asker)?;
        let timeout = resolver
            .as_ref()
            .map(|r| r.connecttimeout)
            .filter(|t| !t.0.is_zero())
            .unwrap_or(GoDuration(DEFAULT_CONNECT_TIMEOUT));
        let target = self.add_target(service, &subset, def, timeout);
        let mut failover_targets = Vec::new();
        let failover = resolver.as_ref().and_then(|r| {
            r.failover
                .get(&subset)
                .or_else(|| r.failover.get("*"))
                .map(|f| {
                    (
                        f.clone(),
                        if r.failover.contains_key(&subset) {
                            subset.clone()
                        } else {
                            "*".into()
                        },
                    )
                })
        });
        if let Some((f, key)) = failover {
            let field = format!("Failover[{key:?}]");
            for dc in &f.datacenters {
                self.local_only("service-resolver", service, &field, dc)?;
            }
            let mut wanted: Vec<(String, String)> = f
                .targets
                .iter()
                .map(|t| {
                    self.local_only("service-resolver", service, &field, &t.datacenter)
                        .map(|()| (t.service.clone(), t.servicesubset.clone()))
                })
                .collect::<Result<_, _>>()?;
            if wanted.is_empty() && (!f.service.is_empty() || !f.servicesubset.is_empty()) {
                wanted.push((f.service.clone(), f.servicesubset.clone()));
            }
            for (to, to_subset) in wanted {
                let to = if to.is_empty() {
                    service.to_string()
                } else {
                    to
                };
                self.same_protocol("service-resolver", service, &to)?;
                let theirs = if to == service {
                    resolver.clone()
                } else {
                    self.resolver(&to)?
                };
                let def = Self::subset_of(
                    theirs.as_ref(),
                    &to,
                    &to_subset,
                    ("service-resolver", service, &field),
                )?;
                let timeout = theirs
                    .as_ref()
                    .map(|r| r.connecttimeout)
                    .filter(|t| !t.0.is_zero())
                    .unwrap_or(GoDuration(DEFAULT_CONNECT_TIMEOUT));
                failover_targets.push(self.add_target(&to, &to_subset, def, timeout));
            }
        }
        let node = ChainNode {
            kind: "resolver".into(),
            name: target.clone(),
            routes: None,
            splits: None,
            resolver: Some(ChainResolver {
                connect_timeout: timeout,
                request_timeout: resolver
                    .as_ref()
                    .map(|r| r.requesttimeout)
                    .filter(|t| !t.0.is_zero()),
                default: resolver.is_none(),
                target: target.clone(),
                failover: (!failover_targets.is_empty()).then_some(ChainFailover {
                    targets: failover_targets,
                }),
            }),
            load_balancer: resolver.and_then(|r| r.loadbalancer),
        };
        self.add_node(format!("resolver:{target}"), node)
    }
}

/// Checks that writing (`Some(body)`) or deleting (`None`) entry
/// `kind`/`name` leaves every chain compiling, as far as it compiled
/// before: `services` are those whose chains to check.
pub fn check_change(
    stored: &impl Entries,
    kind: &str,
    name: &str,
    body: Option<&str>,
    services: &BTreeSet<String>,
    datacenter: &str,
) -> Result<(), ChainError> {
    if let Some(body) = body {
        entries::validate(kind, name, body)?;
    }
    if !CHAIN_KINDS.contains(&kind) {
        return Ok(());
    }
    let after = |k: &str, n: &str| -> Option<String> {
        if k == kind && n == name {
            body.map(str::to_string)
        } else {
            stored.body(k, n)
        }
    };
    let mut all: BTreeSet<String> = services.clone();
    all.insert(name.to_string());
    if kind == "proxy-defaults" {
        all.remove(name);
    }
    for service in &all {
        if let Err(e) = compile(&after, service, datacenter, "") {
            // Already broken before this change: not this change's fault.
            if compile(stored, service, datacenter, "").is_ok() {
                return Err(e);
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
