use std::collections::{BTreeMap, BTreeSet};

use mesh_types::{CheckStatus, ConfigEntry, HealthCheck, Intention, KvEntry, Node, Service};
use serde::{Deserialize, Serialize};

use crate::Table;

/// Highest index that changed each table (deletes included), as Consul's
/// `X-Consul-Index` reports it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct TableIndexes {
    pub kv: u64,
    pub nodes: u64,
    pub services: u64,
    pub checks: u64,
    pub config: u64,
    pub ca: u64,
}

/// The whole replicated state. Mutated only by `apply`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    pub(crate) kv: BTreeMap<String, KvEntry>,
    pub(crate) nodes: BTreeMap<String, Node>,
    /// Keyed by (node, service id).
    pub(crate) services: BTreeMap<(String, String), Service>,
    /// Keyed by (node, check id).
    pub(crate) checks: BTreeMap<(String, String), HealthCheck>,
    /// Keyed by (kind, name).
    pub(crate) config: BTreeMap<(String, String), ConfigEntry>,
    /// Keyed by (destination, source).
    pub(crate) intentions: BTreeMap<(String, String), Intention>,
    /// The CA's state as mesh-ca serializes it; `None` until first created.
    pub(crate) ca: Option<CaRecord>,
    /// Leaf key (`<server>/<service>`) → the root that issued its latest leaf.
    pub(crate) ca_leaves: BTreeMap<String, String>,
    /// Service name -> instances, for name lookups without a scan.
    pub(crate) by_name: BTreeMap<String, BTreeSet<(String, String)>>,
    /// Service name -> last index that changed its instances or their health.
    pub(crate) service_index: BTreeMap<String, u64>,
    pub(crate) indexes: TableIndexes,
    pub(crate) last_index: u64,
    /// Must stay second to last (snapshot format 2 compatibility).
    pub(crate) acl: crate::acl::AclTables,
    /// Must stay second to last (snapshot format 3 compatibility).
    pub(crate) sessions: crate::sessions::SessionTables,
    /// Must stay second to last (snapshot format 5 compatibility).
    pub(crate) queries: crate::queries::QueryTables,
    /// Must stay second to last (snapshot format 6 compatibility).
    pub(crate) coordinates: crate::coordinates::CoordinateTables,
    /// Must stay the last field (snapshot format 7 compatibility).
    pub(crate) acl_ext: crate::acl_ext::AclExtTables,
}

/// The stored CA state and the index that last changed it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CaRecord {
    pub state_json: String,
    pub modify_index: u64,
}

/// A service instance with its node and the checks that apply to it.
#[derive(Debug, Clone)]
pub struct ServiceHealth<'a> {
    pub node: &'a Node,
    pub service: &'a Service,
    /// Node-level checks first, then the service's own.
    pub checks: Vec<&'a HealthCheck>,
}

impl ServiceHealth<'_> {
    /// The worst status among the checks (passing when there are none).
    pub fn status(&self) -> CheckStatus {
        self.checks
            .iter()
            .map(|c| c.status)
            .max()
            .unwrap_or(CheckStatus::Passing)
    }
}

// === reads ===

impl State {
    /// Last applied log index.
    pub fn last_index(&self) -> u64 {
        self.last_index
    }

    /// The index a blocking query on `table` compares against.
    pub fn table_index(&self, table: Table) -> u64 {
        match table {
            Table::Kv => self.indexes.kv,
            Table::Nodes => self.indexes.nodes,
            Table::Services => self.indexes.services,
            Table::Checks => self.indexes.checks,
            Table::Config => self.indexes.config,
            Table::Ca => self.indexes.ca,
            Table::Acl => self.acl.index,
            Table::Sessions => self.sessions.index,
            Table::Queries => self.queries.index,
            Table::Coordinates => self.coordinates.index,
        }
    }

    /// The catalog's overall index (nodes, services, checks).
    pub fn catalog_index(&self) -> u64 {
        self.indexes
            .nodes
            .max(self.indexes.services)
            .max(self.indexes.checks)
    }

    /// Last index that changed instances of `name` or their health (the
    /// catalog index when the name was never seen).
    pub fn service_name_index(&self, name: &str) -> u64 {
        self.service_index
            .get(name)
            .copied()
            .unwrap_or_else(|| self.catalog_index())
    }

    /// One key.
    pub fn kv_get(&self, key: &str) -> Option<&KvEntry> {
        self.kv.get(key)
    }

    /// Every key under a prefix, in key order.
    pub fn kv_list<'a>(&'a self, prefix: &'a str) -> impl Iterator<Item = &'a KvEntry> + 'a {
        self.kv
            .range(prefix.to_string()..)
            .take_while(move |(k, _)| k.starts_with(prefix))
            .map(|(_, v)| v)
    }

    /// Keys under a prefix; with a separator, keys are cut after the first
    /// separator past the prefix and deduplicated (Consul's `?keys&separator=`).
    pub fn kv_keys(&self, prefix: &str, separator: Option<&str>) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for entry in self.kv_list(prefix) {
            let key = match separator.filter(|s| !s.is_empty()) {
                Some(sep) => match entry.key[prefix.len()..].find(sep) {
                    Some(pos) => entry.key[..prefix.len() + pos + sep.len()].to_string(),
                    None => entry.key.clone(),
                },
                None => entry.key.clone(),
            };
            if out.last() != Some(&key) {
                out.push(key);
            }
        }
        out
    }

    /// All nodes, by name.
    pub fn nodes(&self) -> impl Iterator<Item = &Node> {
        self.nodes.values()
    }

    /// One node.
    pub fn node(&self, name: &str) -> Option<&Node> {
        self.nodes.get(name)
    }

    /// Every service instance with the node it runs on.
    pub fn services(&self) -> impl Iterator<Item = (&str, &Service)> {
        self.services
            .iter()
            .map(|((node, _), s)| (node.as_str(), s))
    }

    /// Service names with the union of their tags.
    pub fn service_names(&self) -> BTreeMap<&str, BTreeSet<&str>> {
        let mut out: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
        for s in self.services.values() {
            out.entry(s.name.as_str())
                .or_default()
                .extend(s.tags.iter().map(String::as_str));
        }
        out
    }

    /// Instances of a service, each with its node.
    pub fn service_instances<'a>(
        &'a self,
        name: &str,
    ) -> impl Iterator<Item = (&'a Node, &'a Service)> + 'a {
        self.by_name
            .get(name)
            .into_iter()
            .flatten()
            .filter_map(move |key| Some((self.nodes.get(&key.0)?, self.services.get(key)?)))
    }

    /// Instances of a service with the checks that apply to each.
    pub fn service_health<'a>(&'a self, name: &str) -> Vec<ServiceHealth<'a>> {
        self.service_instances(name)
            .map(|(node, service)| ServiceHealth {
                node,
                service,
                checks: self.checks_for(&node.name, &service.id),
            })
            .collect()
    }

    /// Services registered on one node.
    pub fn node_services<'a>(&'a self, node: &'a str) -> impl Iterator<Item = &'a Service> + 'a {
        self.services
            .range((node.to_string(), String::new())..)
            .take_while(move |((n, _), _)| n == node)
            .map(|(_, s)| s)
    }

    /// Checks registered on one node.
    pub fn node_checks<'a>(&'a self, node: &'a str) -> impl Iterator<Item = &'a HealthCheck> + 'a {
        self.checks
            .range((node.to_string(), String::new())..)
            .take_while(move |((n, _), _)| n == node)
            .map(|(_, c)| c)
    }

    /// Node-level checks plus the checks of one service instance.
    pub fn checks_for<'a>(&'a self, node: &'a str, service_id: &str) -> Vec<&'a HealthCheck> {
        self.node_checks(node)
            .filter(|c| c.service_id.is_empty() || c.service_id == service_id)
            .collect()
    }

    /// Every check with its node.
    pub fn checks(&self) -> impl Iterator<Item = (&str, &HealthCheck)> {
        self.checks.iter().map(|((node, _), c)| (node.as_str(), c))
    }

    /// One service instance.
    pub fn check(&self, node: &str, id: &str) -> Option<&HealthCheck> {
        self.checks.get(&(node.to_string(), id.to_string()))
    }

    pub fn service(&self, node: &str, id: &str) -> Option<&Service> {
        self.services.get(&(node.to_string(), id.to_string()))
    }

    /// Config entries of a kind.
    pub fn config_entries<'a>(
        &'a self,
        kind: &'a str,
    ) -> impl Iterator<Item = &'a ConfigEntry> + 'a {
        self.config
            .range((kind.to_string(), String::new())..)
            .take_while(move |((k, _), _)| k == kind)
            .map(|(_, e)| e)
    }

    /// Every intention, keyed by (destination, source).
    pub fn intentions(&self) -> impl Iterator<Item = &Intention> {
        self.intentions.values()
    }

    /// Intentions whose destination is exactly `destination` (no wildcards).
    pub fn intentions_for_destination<'a>(
        &'a self,
        destination: &'a str,
    ) -> impl Iterator<Item = &'a Intention> + 'a {
        self.intentions
            .range((destination.to_string(), String::new())..)
            .take_while(move |((d, _), _)| d == destination)
            .map(|(_, i)| i)
    }

    /// The intention for one exact pair.
    pub fn intention(&self, source: &str, destination: &str) -> Option<&Intention> {
        self.intentions
            .get(&(destination.to_string(), source.to_string()))
    }

    /// Leaf keys and the root that issued each one's latest leaf.
    pub fn ca_leaves(&self) -> &BTreeMap<String, String> {
        &self.ca_leaves
    }

    /// The CA state, if the CA was created.
    pub fn ca(&self) -> Option<&CaRecord> {
        self.ca.as_ref()
    }

    /// One config entry.
    pub fn config_entry(&self, kind: &str, name: &str) -> Option<&ConfigEntry> {
        self.config.get(&(kind.to_string(), name.to_string()))
    }
}
