//! Prepared queries (Consul's `/v1/query`): a stored service lookup with
//! filters, run by ID or name over HTTP and DNS (`<name>.query.<domain>`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The longest query name (it becomes a DNS label sequence).
pub const MAX_QUERY_NAME_BYTES: usize = 253;
/// The most tags, meta pairs or ignored check IDs one query may hold.
pub const MAX_QUERY_LIST: usize = 64;
/// The longest template regular expression.
pub const MAX_QUERY_REGEXP_BYTES: usize = 1024;
/// The most prepared queries the cluster stores.
pub const MAX_QUERIES: usize = 10_000;

/// The one template type Consul has.
pub const TEMPLATE_NAME_PREFIX_MATCH: &str = "name_prefix_match";

/// A prepared query, as stored.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PreparedQuery {
    pub id: String,
    /// Unique among queries; empty for a query run by ID only.
    pub name: String,
    /// A session the query lives with: destroyed with it.
    pub session: String,
    /// The token its executions read with (Consul's `Token`); empty: the caller's.
    pub token: String,
    pub service: String,
    /// Accepted and stored; one datacenter has nowhere to fail over to.
    pub failover_nearest_n: u32,
    pub failover_datacenters: Vec<String>,
    pub only_passing: bool,
    pub ignore_check_ids: Vec<String>,
    /// `_agent` or a node name: that node's instances first.
    pub near: String,
    /// Each must be present; `!tag` must be absent.
    pub tags: Vec<String>,
    pub node_meta: BTreeMap<String, String>,
    pub service_meta: BTreeMap<String, String>,
    /// Answer with the service's connect proxies instead.
    pub connect: bool,
    /// The DNS TTL of its answers (Go duration text, empty: the agent's).
    pub dns_ttl: String,
    /// `name_prefix_match` for a template, else empty.
    pub template_type: String,
    pub template_regexp: String,
    pub remove_empty_tags: bool,
    pub create_index: u64,
    pub modify_index: u64,
}

impl PreparedQuery {
    pub fn is_template(&self) -> bool {
        !self.template_type.is_empty()
    }
}
