use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// A node in the catalog (an agent, or an external node registered directly).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Node {
    pub id: String,
    pub name: String,
    pub address: String,
    pub datacenter: String,
    pub tagged_addresses: BTreeMap<String, String>,
    pub meta: BTreeMap<String, String>,
    pub create_index: u64,
    pub modify_index: u64,
}

/// A service instance on a node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Service {
    pub id: String,
    pub name: String,
    pub tags: Vec<String>,
    pub address: String,
    pub port: u16,
    pub meta: BTreeMap<String, String>,
    pub kind: String,
    pub create_index: u64,
    pub modify_index: u64,
}

/// Health state of a check, ordered from best to worst.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, Default)]
pub enum CheckStatus {
    #[default]
    Passing,
    Warning,
    Critical,
}

impl CheckStatus {
    /// Consul's lowercase spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            CheckStatus::Passing => "passing",
            CheckStatus::Warning => "warning",
            CheckStatus::Critical => "critical",
        }
    }
}

/// A health check on a node, optionally bound to one service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct HealthCheck {
    pub check_id: String,
    pub name: String,
    pub status: CheckStatus,
    pub notes: String,
    pub output: String,
    pub service_id: String,
    pub service_name: String,
    pub create_index: u64,
    pub modify_index: u64,
}
