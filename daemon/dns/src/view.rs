//! A read-optimised index of the catalog for the query path: instances by
//! service name with their health folded in, and nodes by name. Built from
//! one consistent read of the state, reusing every group of the previous
//! view whose inputs did not change, so a write costs a scan, not a rebuild
//! (a catalog taking 100 writes/s must not stall answers).

use std::borrow::Cow;
use std::net::IpAddr;
use std::str::FromStr;
use std::sync::Arc;

use hickory_server::proto::rr::Name;
use mesh_acl::{Access, Authorizer, Resource};
use mesh_state::{State, Table};
use mesh_types::{CheckStatus, Node, Service};

use crate::config::DnsAcl;
use rustc_hash::FxHashMap;

/// The service Consul servers register; its nodes answer NS queries.
const SERVER_SERVICE: &str = "consul";

/// Where an instance or node is reached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Address {
    Ip(IpAddr),
    /// A DNS name, used as an SRV target as is.
    Host(Name),
    None,
}

impl Address {
    fn parse(text: &str) -> Address {
        let text = text.trim();
        if text.is_empty() {
            return Address::None;
        }
        if let Ok(ip) = IpAddr::from_str(text) {
            return Address::Ip(ip);
        }
        match Name::from_ascii(text) {
            Ok(mut name) => {
                name.set_fqdn(true);
                Address::Host(name)
            }
            Err(_) => Address::None,
        }
    }

    pub fn ip(&self) -> Option<IpAddr> {
        match self {
            Address::Ip(ip) => Some(*ip),
            _ => None,
        }
    }
}

/// One service instance as DNS answers it.
#[derive(Debug, Clone)]
pub(crate) struct Instance {
    /// The node's name as registered.
    pub node: Arc<str>,
    /// The service's address if it has one, else the node's.
    pub addr: Address,
    /// True when `addr` is the service's own address (SRV target `.addr.`).
    pub own_address: bool,
    pub port: u16,
    /// Lowercase tags.
    pub tags: Vec<String>,
    /// Worst of the node's checks and the instance's own checks.
    pub health: CheckStatus,
    /// SRV weight: the service's `Weights.Passing` or `Weights.Warning` by health.
    pub weight: u16,
}

impl Instance {
    /// Whether `only_passing`/critical filtering keeps this instance.
    pub fn healthy(&self, only_passing: bool) -> bool {
        match self.health {
            CheckStatus::Passing => true,
            CheckStatus::Warning => !only_passing,
            CheckStatus::Critical => false,
        }
    }

    pub fn has_tag(&self, tag: &str) -> bool {
        self.tags.iter().any(|t| t == tag)
    }
}

/// What a group's answer depends on: how many records fed it and the
/// newest of their modify indexes. Writes raise an index; deletes lower the
/// count; so an equal stamp means an equal group.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Stamp {
    count: u32,
    newest: u64,
}

impl Stamp {
    fn add(&mut self, index: u64) {
        self.count += 1;
        self.newest = self.newest.max(index);
    }

    fn merge(&mut self, other: Stamp) {
        self.count += other.count;
        self.newest = self.newest.max(other.newest);
    }
}

/// The instances answering one name (a service, or the proxies of one).
#[derive(Debug)]
pub(crate) struct Group {
    /// The service's name as registered (for PTR answers).
    pub name: Arc<str>,
    pub instances: Vec<Instance>,
    stamp: Stamp,
}

/// A node as DNS answers it.
#[derive(Debug, Clone)]
pub(crate) struct NodeEntry {
    /// The name as registered.
    pub name: Arc<str>,
    pub addr: Address,
    /// Node meta as TXT strings (`key=value`; `rfc1035-` keys give the value alone).
    pub txt: Vec<String>,
    modify_index: u64,
}

/// What an address is known as, for PTR answers.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Known {
    Node(Arc<str>),
    Service(Arc<str>),
}

/// The whole index; immutable once built, shared behind an `Arc`.
#[derive(Debug, Default)]
pub(crate) struct View {
    /// The node, service and check table indexes it was built from, and
    /// the ACL stamp (0: ACLs off) of what it may show.
    pub built_from: [u64; 5],
    /// Keyed by lowercase service name.
    pub services: FxHashMap<Arc<str>, Arc<Group>>,
    /// Connect proxies keyed by the lowercase name of the service they front.
    pub proxies: FxHashMap<Arc<str>, Arc<Group>>,
    /// Keyed by lowercase node name.
    pub nodes: FxHashMap<Arc<str>, Arc<NodeEntry>>,
    /// Ingress gateways keyed by the lowercase name of a service their
    /// `ingress-gateway` entry exposes (`<svc>.ingress.<domain>`).
    pub ingress: FxHashMap<Arc<str>, Arc<Group>>,
}

/// What a view depends on: the catalog tables, and with ACLs on, the ACL
/// data and settings (a stamp that changes with either).
pub(crate) fn built_from(state: &State, acl: Option<&DnsAcl>) -> [u64; 5] {
    let stamp = acl.map_or(0, |acl| {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        (acl, state.acl_index()).hash(&mut h);
        h.finish() | 1
    });
    [
        state.table_index(Table::Nodes),
        state.table_index(Table::Services),
        state.table_index(Table::Checks),
        stamp,
        // Ingress entries say which gateways answer `<svc>.ingress`.
        state.table_index(Table::Config),
    ]
}

/// What DNS may show with ACLs on: the default token's rules (else the
/// anonymous token's) over the default policy.
fn dns_authorizer(state: &State, acl: &DnsAcl) -> Authorizer {
    let token = acl
        .token
        .as_deref()
        .and_then(|secret| state.acl_resolve(Some(secret), &acl.datacenter))
        .or_else(|| state.acl_resolve(None, &acl.datacenter));
    match token {
        Some(t) => Authorizer::from_rule_texts(t.management, &t.rules, acl.default_allow),
        None => Authorizer::from_rules([], acl.default_allow),
    }
}

pub(crate) fn lower(s: &str) -> Cow<'_, str> {
    if s.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(s.to_ascii_lowercase())
    } else {
        Cow::Borrowed(s)
    }
}

type Health = (CheckStatus, Stamp);

impl View {
    /// Index the catalog, reusing what `previous` already holds; with
    /// `acl`, only the nodes and services its token may read.
    pub fn build(state: &State, previous: Option<&View>, acl: Option<&DnsAcl>) -> View {
        let built_from = built_from(state, acl);
        // A view shown to other ACL rules has nothing to lend.
        let previous = previous.filter(|p| p.built_from[3] == built_from[3]);
        let authz = acl.map(|acl| dns_authorizer(state, acl));
        let readable = |r: Resource, name: &str| {
            authz
                .as_ref()
                .is_none_or(|a| a.allows(r, name, Access::Read))
        };
        let mut node_checks: FxHashMap<&str, Health> = FxHashMap::default();
        let mut service_checks: FxHashMap<(&str, &str), Health> = FxHashMap::default();
        for (node, check) in state.checks() {
            let slot = if check.service_id.is_empty() {
                node_checks.entry(node).or_default()
            } else {
                service_checks
                    .entry((node, check.service_id.as_str()))
                    .or_default()
            };
            slot.0 = slot.0.max(check.status);
            slot.1.add(check.modify_index);
        }

        let mut view = View {
            built_from,
            ..View::default()
        };
        let mut by_name: FxHashMap<&str, (&Node, Arc<NodeEntry>)> = FxHashMap::default();
        for node in state.nodes().filter(|n| readable(Resource::Node, &n.name)) {
            let key = lower(&node.name);
            let reused = previous
                .and_then(|p| p.nodes.get_key_value(&*key))
                .filter(|(_, e)| e.modify_index == node.modify_index && *e.name == node.name);
            let (key, entry) = match reused {
                Some((k, e)) => (k.clone(), e.clone()),
                None => (Arc::from(&*key), Arc::new(node_entry(node))),
            };
            by_name.insert(node.name.as_str(), (node, entry.clone()));
            view.nodes.insert(key, entry);
        }

        // Pass 1: stamp every group; keep those the previous view has as is.
        let mut stamps: FxHashMap<Cow<'_, str>, Stamp> = FxHashMap::default();
        let mut proxy_stamps: FxHashMap<Cow<'_, str>, Stamp> = FxHashMap::default();
        for (node_name, service) in state.services() {
            let Some((node, _)) = by_name.get(node_name) else {
                continue;
            };
            if !readable(Resource::Service, &service.name) {
                continue;
            }
            let mut stamp = Stamp::default();
            stamp.add(service.modify_index);
            stamp.add(node.modify_index);
            for health in [
                node_checks.get(node_name),
                service_checks.get(&(node_name, service.id.as_str())),
            ]
            .into_iter()
            .flatten()
            {
                stamp.merge(health.1);
            }
            stamps.entry(lower(&service.name)).or_default().merge(stamp);
            if let Some(dest) =
                proxy_destination(service).filter(|d| readable(Resource::Service, d))
            {
                proxy_stamps.entry(lower(dest)).or_default().merge(stamp);
            }
        }
        let previous_services = previous.map(|p| &p.services);
        let mut fresh = keep_unchanged(stamps, previous_services, &mut view.services);
        let previous_proxies = previous.map(|p| &p.proxies);
        let mut fresh_proxies = keep_unchanged(proxy_stamps, previous_proxies, &mut view.proxies);

        view.ingress = ingress_groups(state, &by_name, &node_checks, &service_checks, &readable);

        // Pass 2: build only the groups that changed.
        if fresh.is_empty() && fresh_proxies.is_empty() {
            return view;
        }
        for (node_name, service) in state.services() {
            let Some((node, entry)) = by_name.get(node_name) else {
                continue;
            };
            if !readable(Resource::Service, &service.name) {
                continue;
            }
            let group = fresh.get_mut(&*lower(&service.name));
            let dest = proxy_destination(service);
            let proxy_group = dest.and_then(|d| fresh_proxies.get_mut(&*lower(d)));
            if group.is_none() && proxy_group.is_none() {
                continue;
            }
            let health = worst(&node_checks, &service_checks, node_name, &service.id);
            let instance = instance(entry.name.clone(), node, service, health);
            if let Some(g) = proxy_group {
                g.push(&service.name, instance.clone());
            }
            if let Some(g) = group {
                g.push(&service.name, instance);
            }
        }
        for (into, fresh) in [
            (&mut view.services, fresh),
            (&mut view.proxies, fresh_proxies),
        ] {
            for (key, pending) in fresh {
                into.insert(Arc::from(&*key), Arc::new(pending.finish()));
            }
        }
        view
    }

    /// Names for an address, for PTR: nodes, then services with their own
    /// address. A scan: PTR queries are rare, and this keeps writes cheap.
    pub fn known_as(&self, ip: IpAddr) -> Vec<Known> {
        let mut known: Vec<Known> = self
            .nodes
            .values()
            .filter(|n| n.addr == Address::Ip(ip))
            .map(|n| Known::Node(n.name.clone()))
            .collect();
        for group in self.services.values() {
            let own = |i: &Instance| i.own_address && i.addr == Address::Ip(ip);
            if group.instances.iter().any(own) {
                known.push(Known::Service(group.name.clone()));
            }
        }
        known.sort();
        known
    }

    /// Nodes with a healthy `consul` service, with their addresses: our
    /// nameservers, as in Consul.
    pub fn nameservers(&self) -> Vec<(Arc<str>, IpAddr)> {
        let Some(servers) = self.services.get(SERVER_SERVICE) else {
            return Vec::new();
        };
        let mut out: Vec<(Arc<str>, IpAddr)> = servers
            .instances
            .iter()
            .filter(|i| i.healthy(false))
            .filter_map(|i| {
                let node = self.nodes.get(&*lower(&i.node))?;
                Some((node.name.clone(), node.addr.ip()?))
            })
            .collect();
        out.sort();
        out.dedup();
        out
    }
}

/// The worst status of an instance's node checks and its own.
fn worst(
    node_checks: &FxHashMap<&str, Health>,
    service_checks: &FxHashMap<(&str, &str), Health>,
    node: &str,
    service_id: &str,
) -> CheckStatus {
    [
        node_checks.get(node),
        service_checks.get(&(node, service_id)),
    ]
    .into_iter()
    .flatten()
    .map(|h| h.0)
    .max()
    .unwrap_or_default()
}

/// The ingress gateways exposing each service, by the lowercase service
/// name: a gateway instance whose entry lists the service on a listener.
fn ingress_groups(
    state: &State,
    by_name: &FxHashMap<&str, (&Node, Arc<NodeEntry>)>,
    node_checks: &FxHashMap<&str, Health>,
    service_checks: &FxHashMap<(&str, &str), Health>,
    readable: &dyn Fn(Resource, &str) -> bool,
) -> FxHashMap<Arc<str>, Arc<Group>> {
    let mut exposed: FxHashMap<&str, Vec<String>> = FxHashMap::default();
    for e in state.config_entries("ingress-gateway") {
        let Ok(entry) = mesh_chain::entries::parse::<mesh_chain::entries::IngressGateway>(
            &e.kind,
            &e.name,
            &e.body_json,
        ) else {
            continue;
        };
        let services = entry.listeners.into_iter().flat_map(|l| l.services);
        exposed.insert(
            e.name.as_str(),
            services.map(|s| s.name.to_ascii_lowercase()).collect(),
        );
    }
    let mut groups: FxHashMap<String, Pending> = FxHashMap::default();
    if exposed.is_empty() {
        return FxHashMap::default();
    }
    for (node_name, service) in state.services() {
        if service.kind != "ingress-gateway" || !readable(Resource::Service, &service.name) {
            continue;
        }
        let (Some(names), Some((node, entry))) =
            (exposed.get(service.name.as_str()), by_name.get(node_name))
        else {
            continue;
        };
        let health = worst(node_checks, service_checks, node_name, &service.id);
        for name in names.iter().filter(|n| readable(Resource::Service, n)) {
            let instance = instance(entry.name.clone(), node, service, health);
            groups
                .entry(name.clone())
                .or_default()
                .push(&service.name, instance);
        }
    }
    groups
        .into_iter()
        .map(|(k, pending)| (Arc::from(k.as_str()), Arc::new(pending.finish())))
        .collect()
}

/// A group being rebuilt.
#[derive(Default)]
struct Pending {
    name: Option<Arc<str>>,
    instances: Vec<Instance>,
    stamp: Stamp,
}

impl Pending {
    fn push(&mut self, name: &str, instance: Instance) {
        self.name.get_or_insert_with(|| Arc::from(name));
        self.instances.push(instance);
    }

    fn finish(self) -> Group {
        Group {
            name: self.name.unwrap_or_else(|| Arc::from("")),
            instances: self.instances,
            stamp: self.stamp,
        }
    }
}

/// Move unchanged groups from `previous` into `into`; return the rest, to build.
fn keep_unchanged<'a>(
    stamps: FxHashMap<Cow<'a, str>, Stamp>,
    previous: Option<&FxHashMap<Arc<str>, Arc<Group>>>,
    into: &mut FxHashMap<Arc<str>, Arc<Group>>,
) -> FxHashMap<Cow<'a, str>, Pending> {
    let mut fresh = FxHashMap::default();
    for (name, stamp) in stamps {
        match previous.and_then(|p| p.get_key_value(&*name)) {
            Some((key, group)) if group.stamp == stamp => {
                into.insert(key.clone(), group.clone());
            }
            _ => {
                let pending = Pending {
                    stamp,
                    ..Pending::default()
                };
                fresh.insert(name, pending);
            }
        }
    }
    fresh
}

fn node_entry(node: &Node) -> NodeEntry {
    let txt = node
        .meta
        .iter()
        .map(|(k, v)| match k.strip_prefix("rfc1035-") {
            Some(_) => v.clone(),
            None => format!("{k}={v}"),
        })
        .collect();
    NodeEntry {
        name: node.name.as_str().into(),
        addr: Address::parse(&node.address),
        txt,
        modify_index: node.modify_index,
    }
}

pub(crate) fn instance(
    node_name: Arc<str>,
    node: &Node,
    service: &Service,
    health: CheckStatus,
) -> Instance {
    let own = Address::parse(&service.address);
    let (addr, own_address) = match own {
        Address::None => (Address::parse(&node.address), false),
        own => (own, true),
    };
    Instance {
        node: node_name,
        addr,
        own_address,
        port: service.port,
        tags: service
            .tags
            .iter()
            .map(|t| t.to_ascii_lowercase())
            .collect(),
        health,
        weight: srv_weight(service, health),
    }
}

/// Consul's SRV weights: `Weights.Passing` (default 1) for passing
/// instances, `Weights.Warning` (default 1) for warning ones.
fn srv_weight(service: &Service, health: CheckStatus) -> u16 {
    let w = match health {
        CheckStatus::Warning => service.weights.warning,
        _ => service.weights.passing,
    };
    if w == 0 {
        1
    } else {
        w.min(u16::MAX as u32) as u16
    }
}

/// The service a connect proxy fronts: its `Proxy.DestinationServiceName`,
/// else `meta.destination_service`, else the `<svc>-sidecar-proxy` name.
fn proxy_destination(service: &Service) -> Option<&str> {
    if service.kind != "connect-proxy" {
        return None;
    }
    service
        .proxy
        .as_ref()
        .map(|p| p.destination_service_name.as_str())
        .filter(|d| !d.is_empty())
        .or_else(|| {
            service
                .meta
                .get("destination_service")
                .map(String::as_str)
                .filter(|d| !d.is_empty())
        })
        .or_else(|| service.name.strip_suffix("-sidecar-proxy"))
}

#[cfg(test)]
mod tests;
