use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Who manages an object: `api` (default), `file:<node>:<path>` (mesh.d
/// reconciler), `terraform`, or `agent:<node>` (agent-local registrations).
pub type Owner = String;

/// The owner recorded when a write names none.
pub const DEFAULT_OWNER: &str = "api";

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

/// DNS SRV weights by health.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Weights {
    pub passing: u32,
    pub warning: u32,
}

impl Default for Weights {
    fn default() -> Self {
        Weights {
            passing: 1,
            warning: 1,
        }
    }
}

/// An upstream a sidecar proxy listens for locally.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Upstream {
    pub destination_name: String,
    pub datacenter: String,
    pub local_bind_address: String,
    pub local_bind_port: u16,
}

/// The `Proxy` block of a `connect-proxy` service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Proxy {
    pub destination_service_name: String,
    pub destination_service_id: String,
    pub local_service_address: String,
    pub local_service_port: u16,
    pub upstreams: Vec<Upstream>,
    /// Opaque proxy config as JSON text (`{}` when empty).
    pub config_json: String,
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
    /// "" (typical), "connect-proxy", "ingress-gateway", "terminating-gateway", ...
    pub kind: String,
    pub weights: Weights,
    pub proxy: Option<Proxy>,
    /// `Connect.Native`.
    pub connect_native: bool,
    pub enable_tag_override: bool,
    pub owner: Owner,
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

    /// Parse Consul's spelling.
    pub fn parse(text: &str) -> Option<CheckStatus> {
        match text.to_ascii_lowercase().as_str() {
            "passing" => Some(CheckStatus::Passing),
            "warning" => Some(CheckStatus::Warning),
            "critical" => Some(CheckStatus::Critical),
            _ => None,
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
    /// "http", "tcp", "ttl", "script", "grpc", "serf", or "" for catalog-only checks.
    pub check_type: String,
    pub create_index: u64,
    pub modify_index: u64,
}

/// A config entry (service-defaults, ingress-gateway, ...), stored as given.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct ConfigEntry {
    pub kind: String,
    pub name: String,
    /// The entry's JSON body, keys as the client sent them.
    pub body_json: String,
    pub owner: Owner,
    pub create_index: u64,
    pub modify_index: u64,
}

/// Config entry kinds mesh accepts.
pub const CONFIG_KINDS: &[&str] = &[
    "service-defaults",
    "proxy-defaults",
    "service-intentions",
    "service-router",
    "service-splitter",
    "service-resolver",
    "ingress-gateway",
    "terminating-gateway",
    "mesh",
];
