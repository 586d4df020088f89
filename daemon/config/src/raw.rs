//! The agent config as written in files and flags: every key optional, unknown keys rejected.
//!
//! Several sources (files, then flags) are merged into one `RawConfig` before
//! `RuntimeConfig::build` applies defaults and validates it.

use std::collections::BTreeMap;
use std::fmt;
use std::marker::PhantomData;
use std::path::PathBuf;

use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::Origin;
use crate::tls::RawTls;

/// One `watches` entry (Consul's keys).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct RawWatch {
    /// key, keyprefix, services, nodes, service, checks or event.
    #[serde(rename = "type")]
    pub kind: Option<String>,
    /// The key (type key).
    pub key: Option<String>,
    /// The key prefix (type keyprefix).
    pub prefix: Option<String>,
    /// The service (types service and checks).
    pub service: Option<String>,
    /// Only instances with these tags (type service).
    pub tag: Option<Vec<String>>,
    /// Only passing instances (type service).
    pub passingonly: Option<bool>,
    /// Only checks in this state (type checks).
    pub state: Option<String>,
    /// The event name (type event).
    pub name: Option<String>,
    /// The handler as a program and its arguments.
    pub args: Option<Vec<String>>,
    /// The handler as a shell command line (Consul's older form).
    pub handler: Option<String>,
    /// `script` (the only kind mesh runs).
    pub handler_type: Option<String>,
    /// The ACL token the watch reads with (default: the agent's default token).
    pub token: Option<String>,
}

/// Consul agent configuration keys, all optional (`None` = not set by this source).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    /// `-dev` mode; only settable by the flag, as in Consul.
    #[serde(skip)]
    pub dev: bool,
    /// Datacenter name (`dc1`).
    pub datacenter: Option<String>,
    /// Node name (hostname).
    pub node_name: Option<String>,
    /// Run as a Raft server.
    pub server: Option<bool>,
    /// Servers to wait for before bootstrapping.
    pub bootstrap_expect: Option<u32>,
    /// Single-server bootstrap mode (`bootstrap_expect = 1`).
    pub bootstrap: Option<bool>,
    /// The datacenter that holds ACLs and the CA; only this one for now.
    pub primary_datacenter: Option<String>,
    /// Deprecated (Consul before 1.4): read as `primary_datacenter`, with a warning.
    pub acl_datacenter: Option<String>,
    /// Deprecated: read as `acl.default_policy` (and turns ACLs on), with a warning.
    pub acl_default_policy: Option<String>,
    /// Deprecated: read as `acl.tokens.initial_management`, with a warning.
    pub acl_master_token: Option<String>,
    /// Deprecated: read as `acl.tokens.default`, with a warning.
    pub acl_token: Option<String>,
    /// Deprecated: read as `acl.tokens.agent`, with a warning.
    pub acl_agent_token: Option<String>,
    /// IP for gossip and server RPC.
    pub bind_addr: Option<String>,
    /// IP other agents use to reach this one.
    pub advertise_addr: Option<String>,
    /// IP for HTTP, DNS and gRPC.
    pub client_addr: Option<String>,
    /// Directory for state.
    pub data_dir: Option<String>,
    /// Gossip key, base64 of 16/24/32 bytes.
    pub encrypt: Option<String>,
    /// Refuse plaintext gossip (default true); false stages a switch to encryption.
    pub encrypt_verify_incoming: Option<bool>,
    /// Encrypt gossip sent (default true).
    pub encrypt_verify_outgoing: Option<bool>,
    /// Agents to join at start.
    pub retry_join: Option<Vec<String>>,
    /// Go-style duration (`"30s"`).
    pub retry_interval: Option<String>,
    /// `trace|debug|info|warn|error`.
    pub log_level: Option<String>,
    /// Serve the web UI.
    pub ui: Option<bool>,
    /// `telemetry { }`: the metrics prefix and Consul's sink settings.
    pub telemetry: Option<RawTelemetry>,
    /// Logs as JSON lines.
    pub log_json: Option<bool>,
    /// Also log to this file (a directory gets `mesh.log` in it).
    pub log_file: Option<String>,
    /// Rotate the log file past this many bytes (0: no size limit).
    pub log_rotate_bytes: Option<u64>,
    /// Rotate the log file at this age (Go duration; Consul's default 24h).
    pub log_rotate_duration: Option<String>,
    /// Rotated files to keep (0: all; -1: none).
    pub log_rotate_max_files: Option<i64>,
    /// Consul's syslog switch: accepted with a warning (mesh logs to stderr and `log_file`).
    pub enable_syslog: Option<bool>,
    /// Consul's syslog facility: accepted, no effect.
    pub syslog_facility: Option<String>,
    /// `ui_config { }` (Consul 1.9+): enabled, dir, content_path.
    pub ui_config: Option<RawUiConfig>,
    /// Consul's older `ui_dir`: serve the UI from this directory.
    pub ui_dir: Option<String>,
    /// Consul's older `ui_content_path`.
    pub ui_content_path: Option<String>,
    /// Allow checks that run commands (`Args`); off by default, as in Consul.
    pub enable_script_checks: Option<bool>,
    /// `ports { }`.
    pub ports: Option<RawPorts>,
    /// `addresses { }`.
    pub addresses: Option<RawAddresses>,
    /// `performance { }`.
    pub performance: Option<RawPerformance>,
    /// `limits { }`.
    pub limits: Option<RawLimits>,
    /// `autopilot { }`.
    pub autopilot: Option<crate::autopilot::RawAutopilot>,
    /// `connect { }`.
    pub connect: Option<RawConnect>,
    /// `dns_config { }`.
    pub dns_config: Option<RawDnsConfig>,
    /// DNS domain (`consul`).
    pub domain: Option<String>,
    /// Second DNS domain.
    pub alt_domain: Option<String>,
    /// Upstream DNS resolvers, `ip` or `ip:port`.
    pub recursors: Option<Vec<String>>,
    /// `acl { }`.
    pub acl: Option<RawAcl>,
    /// `tls { defaults { } internal_rpc { } https { } }`.
    pub tls: Option<RawTls>,
    /// `auto_encrypt { allow_tls tls }`.
    pub auto_encrypt: Option<crate::tls::RawAutoEncrypt>,
    /// Consul's pre-1.12 form of `tls.defaults.ca_file` (a `tls` block wins).
    pub ca_file: Option<String>,
    /// Pre-1.12 form of `tls.defaults.ca_path`.
    pub ca_path: Option<String>,
    /// Pre-1.12 form of `tls.defaults.cert_file`.
    pub cert_file: Option<String>,
    /// Pre-1.12 form of `tls.defaults.key_file`.
    pub key_file: Option<String>,
    /// Pre-1.12 form of `tls.defaults.verify_incoming`.
    pub verify_incoming: Option<bool>,
    /// Pre-1.12 form of `tls.defaults.verify_outgoing`.
    pub verify_outgoing: Option<bool>,
    /// Pre-1.12 form of `tls.internal_rpc.verify_server_hostname`.
    pub verify_server_hostname: Option<bool>,
    /// Pre-1.12 form of `tls.defaults.tls_min_version`.
    pub tls_min_version: Option<String>,
    /// Pre-1.12 form of `tls.defaults.tls_cipher_suites`.
    pub tls_cipher_suites: Option<String>,
    /// `config_entries { }`.
    pub config_entries: Option<RawConfigEntries>,
    /// A service registered by this agent (Consul's service definition); a mesh.d resource, applied on every reload.
    pub service: Option<Value>,
    /// Several service definitions at once; mesh.d resources.
    pub services: Option<Value>,
    /// `intention "src" "dst" { action = "allow" }`: a mesh.d resource.
    pub intention: Option<Value>,
    /// `config_entry { kind = ... name = ... }`: a mesh.d resource.
    pub config_entry: Option<Value>,
    /// `ca { }`: the Connect CA's settings as a mesh.d resource.
    pub ca: Option<Value>,
    /// `watches = [{ type = "key", key = "…", args = ["handler"] }]`: each
    /// runs its handler on every change, as `mesh watch` does; files append.
    pub watches: Option<Vec<RawWatch>>,

    /// Files this config was read from, in merge order.
    #[serde(skip)]
    pub config_files: Vec<PathBuf>,
    /// Where each set key came from (`"ports.http"` → file:line:col or flag).
    #[serde(skip)]
    pub origins: BTreeMap<String, Origin>,
    /// Consul keys mesh does not implement, dropped while reading: one
    /// warning each, with file:line:col.
    #[serde(skip)]
    pub ignored: Vec<String>,
}

/// `ports { ... }`: `-1` disables a listener, `0` picks a free port.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct RawPorts {
    /// The HTTP API (default 8500).
    pub http: Option<i64>,
    /// The HTTPS API (default -1: off; needs `tls.https` certificates).
    pub https: Option<i64>,
    /// xDS for Envoy and proxyless gRPC, plaintext (default 8502).
    pub grpc: Option<i64>,
    /// xDS over TLS (`tls.grpc`), beside the plaintext `grpc` port.
    pub grpc_tls: Option<i64>,
    /// DNS, UDP and TCP (default 8600).
    pub dns: Option<i64>,
    /// LAN gossip, UDP and TCP (default 8301).
    pub serf_lan: Option<i64>,
    /// Server RPC: Raft and forwarding (default 8300; servers only).
    pub server: Option<i64>,
}

/// `addresses { ... }`: per-interface overrides of `client_addr`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct RawAddresses {
    /// The IP the HTTP (and HTTPS) API binds to.
    pub http: Option<String>,
    /// The IP DNS binds to.
    pub dns: Option<String>,
    /// The IP xDS binds to.
    pub grpc: Option<String>,
}

/// `telemetry { }`. mesh serves metrics itself (`/v1/agent/metrics`, JSON
/// or Prometheus text); Consul's push sinks are accepted with a warning so a
/// Consul config loads.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct RawTelemetry {
    /// Replaces `consul` at the start of every metric name.
    pub metrics_prefix: Option<String>,
    /// Consul needs it above 0 to serve Prometheus text; mesh always does.
    pub prometheus_retention_time: Option<String>,
    /// Consul prefixes gauges with the host name unless set; mesh never does.
    pub disable_hostname: Option<bool>,
    /// Consul's metric filter: accepted with a warning (every metric is served).
    pub filter_default: Option<bool>,
    /// Consul's metric filter: accepted with a warning (every metric is served).
    pub prefix_filter: Option<Vec<String>>,
    /// Consul setting: accepted, no effect.
    pub disable_per_tenancy_usage_metrics: Option<bool>,
    /// Consul setting: accepted, no effect.
    pub enable_host_metrics: Option<bool>,
    /// Consul setting: accepted, no effect.
    pub retry_failed_connection: Option<bool>,
    /// Push sink: accepted with a warning (scrape `/v1/agent/metrics?format=prometheus`).
    pub statsd_address: Option<String>,
    /// Push sink: accepted with a warning.
    pub statsite_address: Option<String>,
    /// Push sink: accepted with a warning.
    pub dogstatsd_addr: Option<String>,
    /// Push sink setting: accepted, no effect.
    pub dogstatsd_tags: Option<Vec<String>>,
    /// Circonus sink: accepted with a warning.
    pub circonus_api_token: Option<String>,
    /// Circonus sink setting: accepted, no effect.
    pub circonus_api_app: Option<String>,
    /// Circonus sink setting: accepted, no effect.
    pub circonus_api_url: Option<String>,
    /// Circonus sink setting: accepted, no effect.
    pub circonus_submission_interval: Option<String>,
    /// Circonus sink setting: accepted, no effect.
    pub circonus_submission_url: Option<String>,
    /// Circonus sink setting: accepted, no effect.
    pub circonus_check_id: Option<String>,
    /// Circonus sink setting: accepted, no effect.
    pub circonus_check_force_metric_activation: Option<String>,
    /// Circonus sink setting: accepted, no effect.
    pub circonus_check_instance_id: Option<String>,
    /// Circonus sink setting: accepted, no effect.
    pub circonus_check_search_tag: Option<String>,
    /// Circonus sink setting: accepted, no effect.
    pub circonus_check_display_name: Option<String>,
    /// Circonus sink setting: accepted, no effect.
    pub circonus_check_tags: Option<String>,
    /// Circonus sink setting: accepted, no effect.
    pub circonus_broker_id: Option<String>,
    /// Circonus sink setting: accepted, no effect.
    pub circonus_broker_select_tag: Option<String>,
}

/// `ui_config { }`. The metrics keys are Consul's dashboard settings, kept
/// so a Consul config loads; mesh's UI reads metrics from the agent itself.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct RawUiConfig {
    /// Serve the UI.
    pub enabled: Option<bool>,
    /// Serve the UI's files from this directory instead of the built-in ones.
    pub dir: Option<String>,
    /// The URL path the UI lives under (default `/ui/`).
    pub content_path: Option<String>,
    /// Consul's UI metrics source: accepted with a warning.
    pub metrics_provider: Option<String>,
    /// Consul UI setting: accepted, no effect.
    pub metrics_provider_files: Option<Vec<String>>,
    /// Consul UI setting: accepted, no effect.
    pub metrics_provider_options_json: Option<String>,
    /// Consul UI setting: accepted with a warning.
    pub metrics_proxy: Option<Value>,
    /// Consul UI setting: accepted, no effect.
    pub dashboard_url_templates: Option<Value>,
}

/// `performance { raft_multiplier = N }`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct RawPerformance {
    /// Raft timing multiplier, 1-10.
    pub raft_multiplier: Option<u32>,
}

/// `limits { }`: bounds on what one client may hold or send (Consul's names).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct RawLimits {
    /// Open HTTP(S) connections from one IP (Consul: 200).
    pub http_max_conns_per_client: Option<u32>,
    /// Open server RPC connections from one IP (Consul: 100).
    pub rpc_max_conns_per_client: Option<u32>,
    /// Longest wait for a request's headers, or for the next request on an
    /// idle connection (Go duration, default `"10s"`).
    pub http_read_header_timeout: Option<String>,
    /// Blocking queries one IP may have parked at once (default 1024).
    pub http_max_blocking_queries_per_client: Option<u32>,
    /// Proxies whose snapshots one agent keeps at once (default 50,000);
    /// past it, a new proxy's snapshot request gets 429.
    pub proxy_snapshots_max_watched: Option<u32>,
    /// Largest KV value in bytes (Consul: 512 KiB).
    pub kv_max_value_size: Option<u64>,
    /// Largest JSON request body (a transaction, a registration) in bytes
    /// (Consul: 512 KiB).
    pub txn_max_req_len: Option<u64>,
    /// Requests per second a client agent sends to servers (default: no limit).
    pub rpc_rate: Option<f64>,
    /// Burst of `rpc_rate` (Consul: 1000).
    pub rpc_max_burst: Option<u32>,
}

/// `connect { enabled = bool }`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct RawConnect {
    /// Turn Connect on or off.
    pub enabled: Option<bool>,
    /// CA provider (`consul`).
    pub ca_provider: Option<String>,
    /// The provider's settings (LeafCertTTL, PrivateKeyType, ...), as for
    /// `PUT /v1/connect/ca/configuration`'s `Config`.
    pub ca_config: Option<Value>,
    /// Run the built-in proxy inside the agent for every `sidecar_service`.
    pub managed_sidecars: Option<bool>,
    /// Run the built-in proxy inside the agent for every ingress or
    /// terminating gateway registered from the agent's config files.
    pub managed_gateways: Option<bool>,
}

/// `dns_config { ... }`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct RawDnsConfig {
    /// Answer from any server's state.
    pub allow_stale: Option<bool>,
    /// TTL of node answers (duration).
    pub node_ttl: Option<String>,
    /// Service name (or `"*"`) → TTL duration.
    pub service_ttl: Option<BTreeMap<String, String>>,
    /// Most records in a UDP answer.
    pub udp_answer_limit: Option<u32>,
    /// Set TC when records were left out.
    pub enable_truncate: Option<bool>,
    /// Leave out instances with any non-passing check.
    pub only_passing: Option<bool>,
}

/// `acl { enabled default_policy }`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct RawAcl {
    /// Check tokens.
    pub enabled: Option<bool>,
    /// `allow` or `deny`.
    pub default_policy: Option<String>,
    /// `tokens { initial_management agent default }`.
    pub tokens: Option<RawAclTokens>,
}

/// `acl { tokens { } }`: secrets known from config.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct RawAclTokens {
    /// A management token every server accepts from the start.
    pub initial_management: Option<String>,
    /// What the agent itself uses for its requests to servers.
    pub agent: Option<String>,
    /// Used for requests that carry no token.
    pub default: Option<String>,
    /// Deprecated (Consul 1.4–1.10): read as `acl.tokens.initial_management`, with a warning.
    pub master: Option<String>,
}

/// `config_entries { bootstrap = [...] }`: entries written at first leadership.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct RawConfigEntries {
    /// Kept as JSON until the config-entry types exist; one block or many.
    pub bootstrap: Option<OneOrMany<Value>>,
}

// === impl RawConfig ===

impl RawConfig {
    /// An overlay with only `-dev` set, for tests and `mesh agent -dev`.
    pub fn dev() -> RawConfig {
        RawConfig {
            dev: true,
            ..RawConfig::default()
        }
    }

    /// Merges `over` on top of `self`: scalars from `over` win, maps merge
    /// key by key and lists are appended (as Consul merges its sources).
    pub fn merge(self, over: RawConfig) -> RawConfig {
        let mut base_value = to_value(&self);
        let over_value = to_value(&over);
        let mut origins = self.origins;
        let mut over_origins = over.origins;
        reindex_appended(&base_value, &over_value, "", &mut over_origins);
        merge_values(&mut base_value, over_value);
        origins.extend(over_origins);
        let mut merged: RawConfig = serde_json::from_value(base_value)
            .expect("merging two valid configs gives a valid config");
        merged.dev = self.dev || over.dev;
        merged.config_files = self.config_files;
        merged.config_files.extend(over.config_files);
        merged.origins = origins;
        merged.ignored = self.ignored;
        merged.ignored.extend(over.ignored);
        merged
    }

    /// Records `origin` for every key set in this config (used for flag overlays).
    pub fn mark_origin(&mut self, origin_of: impl Fn(&str) -> Origin) {
        let value = to_value(self);
        let mut paths = Vec::new();
        leaf_paths(&value, String::new(), &mut paths);
        for path in paths {
            let origin = origin_of(&path);
            self.origins.insert(path, origin);
        }
    }

    /// Where `key` (`"ports.http"`) was set, if it was.
    pub fn origin(&self, key: &str) -> Option<&Origin> {
        self.origins.get(key)
    }
}

fn to_value(raw: &RawConfig) -> Value {
    serde_json::to_value(raw).expect("RawConfig always serializes")
}

/// Objects merge recursively, arrays concatenate, nulls in `over` leave `base` alone.
fn merge_values(base: &mut Value, over: Value) {
    match (base, over) {
        (_, Value::Null) => {}
        (Value::Object(base), Value::Object(over)) => {
            for (key, value) in over {
                match base.get_mut(&key) {
                    Some(existing) if !existing.is_null() => merge_values(existing, value),
                    _ => {
                        base.insert(key, value);
                    }
                }
            }
        }
        (Value::Array(base), Value::Array(over)) => base.extend(over),
        (base, over) => *base = over,
    }
}

/// Shifts origins of list elements in `over` past the elements `base` already has,
/// so that `retry_join[0]` of a second file becomes `retry_join[2]` after appending.
fn reindex_appended(
    base: &Value,
    over: &Value,
    path: &str,
    over_origins: &mut BTreeMap<String, Origin>,
) {
    match (base, over) {
        (Value::Object(base), Value::Object(over)) => {
            for (key, over_child) in over {
                if let Some(base_child) = base.get(key) {
                    let child_path = join(path, key);
                    reindex_appended(base_child, over_child, &child_path, over_origins);
                }
            }
        }
        (Value::Array(base), Value::Array(_)) if !base.is_empty() => {
            let prefix = format!("{path}[");
            let moved: Vec<String> = over_origins
                .keys()
                .filter(|k| k.starts_with(&prefix))
                .cloned()
                .collect();
            let mut renamed = Vec::new();
            for key in moved {
                let origin = over_origins.remove(&key).expect("key was just listed");
                let rest = &key[prefix.len()..];
                let Some((index, tail)) = rest.split_once(']') else {
                    continue;
                };
                let Ok(index) = index.parse::<usize>() else {
                    continue;
                };
                renamed.push((format!("{prefix}{}]{tail}", index + base.len()), origin));
            }
            over_origins.extend(renamed);
        }
        _ => {}
    }
}

fn leaf_paths(value: &Value, path: String, out: &mut Vec<String>) {
    match value {
        Value::Null => {}
        Value::Object(map) => {
            for (key, child) in map {
                leaf_paths(child, join(&path, key), out);
            }
        }
        _ => out.push(path),
    }
}

/// Joins a key onto a dotted path (`ports` + `http` → `ports.http`).
pub(crate) fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

// === impl OneOrMany ===

/// A list that may also be written as a single value: HCL gives one block as an
/// object and repeated blocks as a list.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(transparent)]
pub struct OneOrMany<T>(pub Vec<T>);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for OneOrMany<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct OneOrManyVisitor<T>(PhantomData<T>);

        impl<'de, T: Deserialize<'de>> Visitor<'de> for OneOrManyVisitor<T> {
            type Value = OneOrMany<T>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object or a list of objects")
            }

            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut items = Vec::new();
                while let Some(item) = seq.next_element()? {
                    items.push(item);
                }
                Ok(OneOrMany(items))
            }

            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                let one = T::deserialize(de::value::MapAccessDeserializer::new(map))?;
                Ok(OneOrMany(vec![one]))
            }
        }

        deserializer.deserialize_any(OneOrManyVisitor(PhantomData))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Pos;

    fn at(line: usize) -> Origin {
        Origin::File {
            file: "f.hcl".into(),
            pos: Pos { line, col: 1 },
        }
    }

    #[test]
    fn later_scalars_win_lists_append_maps_merge() {
        let mut a = RawConfig {
            datacenter: Some("a".into()),
            node_name: Some("n1".into()),
            retry_join: Some(vec!["x".into()]),
            ports: Some(RawPorts {
                http: Some(1),
                dns: Some(2),
                ..Default::default()
            }),
            ..Default::default()
        };
        a.origins.insert("retry_join[0]".into(), at(1));
        let mut b = RawConfig {
            datacenter: Some("b".into()),
            retry_join: Some(vec!["y".into()]),
            ports: Some(RawPorts {
                http: Some(10),
                ..Default::default()
            }),
            ..Default::default()
        };
        b.origins.insert("retry_join[0]".into(), at(2));
        let m = a.merge(b);
        assert_eq!(m.datacenter.as_deref(), Some("b"));
        assert_eq!(m.node_name.as_deref(), Some("n1"));
        assert_eq!(m.retry_join, Some(vec!["x".into(), "y".into()]));
        let ports = m.ports.clone().unwrap();
        assert_eq!((ports.http, ports.dns), (Some(10), Some(2)));
        assert_eq!(m.origin("retry_join[0]"), Some(&at(1)));
        assert_eq!(m.origin("retry_join[1]"), Some(&at(2)));
    }

    #[test]
    fn one_or_many_accepts_both() {
        let one: OneOrMany<Value> = serde_json::from_str(r#"{"kind":"a"}"#).unwrap();
        assert_eq!(one.0.len(), 1);
        let many: OneOrMany<Value> =
            serde_json::from_str(r#"[{"kind":"a"},{"kind":"b"}]"#).unwrap();
        assert_eq!(many.0.len(), 2);
    }

    #[test]
    fn mark_origin_covers_nested_keys() {
        let mut raw = RawConfig {
            bind_addr: Some("1.2.3.4".into()),
            ports: Some(RawPorts {
                dns: Some(53),
                ..Default::default()
            }),
            ..Default::default()
        };
        raw.mark_origin(|key| Origin::Flag(format!("-{key}")));
        assert_eq!(
            raw.origin("bind_addr"),
            Some(&Origin::Flag("-bind_addr".into()))
        );
        assert_eq!(
            raw.origin("ports.dns"),
            Some(&Origin::Flag("-ports.dns".into()))
        );
        assert_eq!(raw.origin("ports.http"), None);
    }
}
