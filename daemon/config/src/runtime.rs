//! The validated agent configuration the agent is built from.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

/// The settings a reload applies in place; every other setting of
/// [`RuntimeConfig`] takes effect at the next start.
#[derive(Debug, Clone, PartialEq)]
pub struct LiveConfig {
    pub log_level: String,
    pub dns: DnsConfig,
    /// ACL settings: the default policy (the intention default) and the tokens.
    pub acl: AclConfig,
    /// The leader creates the CA only while this is on.
    pub connect_enabled: bool,
    /// The CA configuration a new CA is created with.
    pub connect_ca: Option<serde_json::Value>,
    /// `watches`: restarted when they change.
    pub watches: Vec<WatchConfig>,
}

/// One checked `watches` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchConfig {
    pub kind: mesh_types::watch::WatchKind,
    pub handler: WatchHandler,
    pub token: Option<String>,
}

/// How a watch's handler runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WatchHandler {
    /// `args`: a program and its arguments.
    Args(Vec<String>),
    /// `handler`: a command line for `sh -c`.
    Shell(String),
}

/// Everything `mesh agent` needs to start, after files and flags are merged and checked.
#[derive(Debug, Clone, PartialEq)]
pub struct RuntimeConfig {
    /// Deprecated keys that were read, each with what to write instead.
    pub deprecations: Vec<String>,
    /// `-dev`: single in-memory-ish server that is its own leader.
    pub dev: bool,
    /// Node name (defaults to the hostname).
    pub node_name: String,
    /// Datacenter name, lowercase (default `dc1`).
    pub datacenter: String,
    /// Whether this agent is a Raft server.
    pub server: bool,
    /// Servers to wait for before bootstrapping (0 = never bootstrap automatically; dev uses 1).
    pub bootstrap_expect: u32,
    /// Data directory (dev: a fresh temp dir chosen by the agent when `None`).
    pub data_dir: Option<PathBuf>,
    /// Address gossip and server RPC bind to.
    pub bind_addr: IpAddr,
    /// Address advertised to other agents (defaults to bind_addr).
    pub advertise_addr: IpAddr,
    /// Address the client interfaces (HTTP, DNS, gRPC) bind to.
    pub client_addr: IpAddr,
    /// Ports; `None` = disabled (`-1` in config), `Some(0)` = pick a free port.
    pub ports: Ports,
    /// LAN gossip addresses of agents to join at start, retried until one answers.
    pub retry_join: Vec<String>,
    /// Interval between retry_join attempts.
    pub retry_interval: Duration,
    /// Gossip encryption key (base64, 16/24/32 bytes decoded).
    pub encrypt: Option<String>,
    /// `encrypt_verify_incoming`: refuse plaintext gossip.
    pub encrypt_verify_incoming: bool,
    /// `encrypt_verify_outgoing`: encrypt gossip sent.
    pub encrypt_verify_outgoing: bool,
    /// Log filter (`trace|debug|info|warn|error`).
    pub log_level: String,
    /// Raft timing multiplier (1 = production timing).
    pub raft_multiplier: u32,
    /// Files the config was read from, in order (for reload and status).
    pub config_files: Vec<PathBuf>,
    /// Metric names start with this instead of `consul` (`telemetry.metrics_prefix`).
    pub metrics_prefix: String,
    /// Logs as JSON lines.
    pub log_json: bool,
    /// The log file and its rotation, when set.
    pub log_file: Option<LogFile>,
    /// Serve the web UI on the HTTP port.
    pub ui: bool,
    /// Serve the UI from this directory instead of the built-in files.
    pub ui_dir: Option<PathBuf>,
    /// The URL path of the UI, with leading and trailing `/` (`/ui/`).
    pub ui_content_path: String,
    /// Per-interface overrides of `client_addr` (`addresses { http dns grpc }`).
    pub addresses: Addresses,
    /// Whether Connect (CA, intentions, proxies) is on (`connect { enabled }`).
    pub connect_enabled: bool,
    /// `connect { ca_provider, ca_config }` as a CA configuration body, if set.
    pub connect_ca: Option<serde_json::Value>,
    /// `watches`.
    pub watches: Vec<WatchConfig>,
    /// `connect { managed_sidecars }`: the agent runs sidecars itself.
    pub connect_managed_sidecars: bool,
    /// `connect { managed_gateways }`: the agent runs the gateways its
    /// config files register.
    pub connect_managed_gateways: bool,
    /// DNS interface settings.
    pub dns: DnsConfig,
    /// ACL settings.
    pub acl: AclConfig,
    /// TLS for the server RPC port and the HTTPS API (`tls { }`).
    pub tls: crate::tls::TlsConfig,
    /// Config entries to write when this server first becomes leader, as JSON objects.
    pub config_entries_bootstrap: Vec<serde_json::Value>,
    /// Whether script checks (`Args`) may run.
    pub enable_script_checks: bool,
    /// `limits { }`.
    pub limits: Limits,
    /// `autopilot { }`.
    pub autopilot: crate::autopilot::Autopilot,
}

/// Bounds on what one client may hold (`limits { }`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limits {
    /// `http_max_conns_per_client`.
    pub http_max_conns_per_client: u32,
    /// `rpc_max_conns_per_client`.
    pub rpc_max_conns_per_client: u32,
    /// `http_read_header_timeout`.
    pub http_read_header_timeout: Duration,
    /// `http_max_blocking_queries_per_client`.
    pub http_max_blocking_queries_per_client: u32,
    /// `proxy_snapshots_max_watched`.
    pub proxy_snapshots_max_watched: u32,
    /// `kv_max_value_size`.
    pub kv_max_value_size: usize,
    /// `txn_max_req_len`.
    pub txn_max_req_len: usize,
    /// `rpc_rate` (`None`: no limit).
    pub rpc_rate: Option<f64>,
    /// `rpc_max_burst`.
    pub rpc_max_burst: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            http_max_conns_per_client: 200,
            rpc_max_conns_per_client: 100,
            http_read_header_timeout: Duration::from_secs(10),
            http_max_blocking_queries_per_client: 1024,
            proxy_snapshots_max_watched: 50_000,
            kv_max_value_size: 512 * 1024,
            txn_max_req_len: 512 * 1024,
            rpc_rate: None,
            rpc_max_burst: 1000,
        }
    }
}

/// Addresses that override `client_addr` for one interface.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Addresses {
    /// HTTP API.
    pub http: Option<IpAddr>,
    /// DNS (UDP and TCP).
    pub dns: Option<IpAddr>,
    /// gRPC (xDS).
    pub grpc: Option<IpAddr>,
}

/// How the DNS interface answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsConfig {
    /// Domain served, fully qualified (`consul.`).
    pub domain: String,
    /// A second domain answered like `domain`.
    pub alt_domain: Option<String>,
    /// Upstream resolvers for names outside our domains.
    pub recursors: Vec<SocketAddr>,
    /// Answer from any server's state, not only the leader's.
    pub allow_stale: bool,
    /// TTL of node answers.
    pub node_ttl: Duration,
    /// TTL of service answers by service name; `"*"` matches any.
    pub service_ttl: BTreeMap<String, Duration>,
    /// Most records in one UDP answer.
    pub udp_answer_limit: u32,
    /// Set the TC bit when records were left out of a UDP answer, so clients retry over TCP.
    pub enable_truncate: bool,
    /// Leave out instances with any non-passing check (not only critical).
    pub only_passing: bool,
}

impl Default for DnsConfig {
    fn default() -> Self {
        DnsConfig {
            domain: "consul.".into(),
            alt_domain: None,
            recursors: Vec::new(),
            allow_stale: true,
            node_ttl: Duration::ZERO,
            service_ttl: BTreeMap::new(),
            udp_answer_limit: 3,
            // beyond Consul (REFERENCE.md): truncate visibly instead of dropping records.
            enable_truncate: true,
            only_passing: false,
        }
    }
}

impl AclConfig {
    /// The token for the agent's own writes: `tokens.agent`, else the
    /// initial management token (servers usually have one configured).
    pub fn own_token(&self) -> Option<String> {
        self.agent_token
            .clone()
            .or_else(|| self.initial_management_token.clone())
    }
}

/// ACL settings.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AclConfig {
    /// Whether tokens are checked.
    pub enabled: bool,
    /// What happens when no rule matches.
    pub default_policy: AclPolicy,
    /// `tokens.initial_management`: a management secret every server accepts.
    pub initial_management_token: Option<String>,
    /// `tokens.agent`: the agent's own token for requests to servers.
    pub agent_token: Option<String>,
    /// `tokens.default`: for requests that carry none.
    pub default_token: Option<String>,
}

/// An ACL default policy.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum AclPolicy {
    /// Allow what no rule denies.
    #[default]
    Allow,
    /// Deny what no rule allows.
    Deny,
}

/// Listening ports of an agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ports {
    // One field per listener, named as the `ports { }` keys.
    pub http: Option<u16>,
    pub https: Option<u16>,
    pub grpc: Option<u16>,
    pub grpc_tls: Option<u16>,
    pub dns: Option<u16>,
    pub serf_lan: Option<u16>,
    pub server: Option<u16>,
}

impl Default for Ports {
    fn default() -> Self {
        Ports {
            http: Some(8500),
            https: None,
            grpc: Some(8502),
            grpc_tls: None,
            dns: Some(8600),
            serf_lan: Some(8301),
            server: Some(8300),
        }
    }
}

impl RuntimeConfig {
    /// The part of these settings a reload applies in place.
    pub fn live(&self) -> LiveConfig {
        LiveConfig {
            log_level: self.log_level.clone(),
            dns: self.dns.clone(),
            acl: self.acl.clone(),
            connect_enabled: self.connect_enabled,
            connect_ca: self.connect_ca.clone(),
            watches: self.watches.clone(),
        }
    }
}

impl RuntimeConfig {
    /// HTTP listen address, if HTTP is enabled.
    pub fn http_addr(&self) -> Option<SocketAddr> {
        let ip = self.addresses.http.unwrap_or(self.client_addr);
        self.ports.http.map(|p| SocketAddr::new(ip, p))
    }
    /// HTTPS API listen address, if enabled (same interface as HTTP).
    pub fn https_addr(&self) -> Option<SocketAddr> {
        let ip = self.addresses.http.unwrap_or(self.client_addr);
        self.ports.https.map(|p| SocketAddr::new(ip, p))
    }
    /// DNS listen address (UDP and TCP), if DNS is enabled.
    pub fn dns_addr(&self) -> Option<SocketAddr> {
        let ip = self.addresses.dns.unwrap_or(self.client_addr);
        self.ports.dns.map(|p| SocketAddr::new(ip, p))
    }
    /// gRPC (xDS) listen address, if gRPC is enabled.
    pub fn grpc_addr(&self) -> Option<SocketAddr> {
        let ip = self.addresses.grpc.unwrap_or(self.client_addr);
        self.ports.grpc.map(|p| SocketAddr::new(ip, p))
    }
    /// gRPC over TLS (xDS) listen address, if enabled (same interface as gRPC).
    pub fn grpc_tls_addr(&self) -> Option<SocketAddr> {
        let ip = self.addresses.grpc.unwrap_or(self.client_addr);
        self.ports.grpc_tls.map(|p| SocketAddr::new(ip, p))
    }
    /// Gossip listen address (UDP and TCP).
    pub fn serf_lan_addr(&self) -> Option<SocketAddr> {
        self.ports
            .serf_lan
            .map(|p| SocketAddr::new(self.bind_addr, p))
    }
    /// Server RPC (Raft) listen address.
    pub fn server_addr(&self) -> Option<SocketAddr> {
        self.ports
            .server
            .map(|p| SocketAddr::new(self.bind_addr, p))
    }
}

/// `log_file` and its rotation keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogFile {
    /// The file written to; rotated files get a timestamp suffix.
    pub path: PathBuf,
    /// Rotate past this size (`None`: no size limit).
    pub max_bytes: Option<u64>,
    /// Rotate at this age.
    pub max_age: Duration,
    /// Rotated files kept (`None`: all).
    pub max_files: Option<usize>,
}
