//! Gossip tag names other agents read.

pub const NODE_ID: &str = "id";
pub const RAFT_ID: &str = "raft_id";
pub const RPC: &str = "rpc_addr";
pub const HTTP: &str = "http_addr";
pub const HTTPS: &str = "https_addr";
pub const EXPECT: &str = "expect";
pub const INIT: &str = "raft_init";
pub const VERSION: &str = "version";
pub const DNS: &str = "dns_addr";
