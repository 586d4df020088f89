use std::collections::BTreeMap;

use mesh_types::{HealthCheck, KvEntry, Node, Service};
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
    pub(crate) indexes: TableIndexes,
    pub(crate) last_index: u64,
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
        }
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

    /// Every check with its node.
    pub fn checks(&self) -> impl Iterator<Item = (&str, &HealthCheck)> {
        self.checks.iter().map(|((node, _), c)| (node.as_str(), c))
    }
}
