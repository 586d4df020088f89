//! `RawConfig` → `RuntimeConfig`: Consul's defaults, then every check a value must pass.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use base64::Engine as _;

use crate::duration::parse_duration;
use crate::error::ValidationError;
use crate::raw::RawConfig;
use crate::runtime::{AclConfig, AclPolicy, Addresses, DnsConfig, Ports, RuntimeConfig};

impl RuntimeConfig {
    /// Applies defaults to merged files and flags and validates the result.
    pub fn build(mut raw: RawConfig) -> Result<RuntimeConfig, ValidationError> {
        let mut deprecations = crate::legacy::apply(&mut raw);
        deprecations.extend(crate::legacy::accepted_only(&raw));
        deprecations.extend(raw.ignored.iter().cloned());
        let v = Check { raw: &raw };
        let dev = raw.dev;

        let datacenter = raw.datacenter.clone().unwrap_or_else(|| "dc1".into());
        if datacenter.is_empty()
            || !datacenter
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        {
            return Err(v.fail(
                "datacenter",
                format!("{datacenter:?} is not a valid datacenter name: use lowercase letters, digits and `-`"),
            ));
        }

        let node_name = match &raw.node_name {
            Some(name) => name.clone(),
            None => default_node_name(),
        };
        if !is_dns_label(&node_name) {
            return Err(v.fail(
                "node_name",
                format!("{node_name:?} is not a valid node name: use 1-63 letters, digits and `-` (it becomes a DNS name)"),
            ));
        }

        let server = raw.server.unwrap_or(dev);
        let bootstrap_expect = match (raw.bootstrap, raw.bootstrap_expect) {
            (Some(true), Some(n)) if n > 1 => {
                return Err(v.fail(
                    "bootstrap",
                    format!("bootstrap (one server) and bootstrap_expect = {n} cannot both be set; keep one"),
                ))
            }
            (Some(true), _) => Some(1),
            (_, n) => n,
        };
        if let Some(primary) = &raw.primary_datacenter {
            if primary != &datacenter {
                return Err(v.fail(
                    "primary_datacenter",
                    format!("{primary:?} is not this datacenter ({datacenter:?}); mesh runs one datacenter for now, so the primary is this one"),
                ));
            }
        }
        let bootstrap_expect = match bootstrap_expect {
            Some(n) if n > 0 && !server => {
                return Err(v.fail(
                    "bootstrap_expect",
                    "only servers bootstrap: set `server = true` (or -server), or remove bootstrap_expect",
                ))
            }
            Some(n) if n > 1 && dev => {
                return Err(v.fail(
                    "bootstrap_expect",
                    format!("-dev runs a single server and cannot wait for {n} servers; remove bootstrap_expect or -dev"),
                ))
            }
            Some(n) => n,
            None if dev && server => 1,
            None => 0,
        };

        let data_dir =
            match raw.data_dir.as_deref() {
                Some("") => return Err(v.fail("data_dir", "must not be empty")),
                Some(dir) => Some(PathBuf::from(dir)),
                None if dev => None,
                None => return Err(v.fail(
                    "data_dir",
                    "is required: set data_dir in a config file or pass -data-dir (or use -dev)",
                )),
            };

        let loopback = IpAddr::V4(Ipv4Addr::LOCALHOST);
        let default_bind = if dev {
            loopback
        } else {
            IpAddr::V4(Ipv4Addr::UNSPECIFIED)
        };
        let bind_addr = v
            .ip("bind_addr", raw.bind_addr.as_deref())?
            .unwrap_or(default_bind);
        let advertise_addr = match v.ip("advertise_addr", raw.advertise_addr.as_deref())? {
            Some(ip) if ip.is_unspecified() => {
                return Err(v.fail(
                    "advertise_addr",
                    format!(
                        "{ip} cannot be advertised: other agents need an address they can reach"
                    ),
                ))
            }
            Some(ip) => ip,
            None if bind_addr.is_unspecified() => loopback,
            None => bind_addr,
        };
        let client_addr = v
            .ip("client_addr", raw.client_addr.as_deref())?
            .unwrap_or(loopback);
        let addresses = match &raw.addresses {
            Some(a) => Addresses {
                http: v.ip("addresses.http", a.http.as_deref())?,
                dns: v.ip("addresses.dns", a.dns.as_deref())?,
                grpc: v.ip("addresses.grpc", a.grpc.as_deref())?,
            },
            None => Addresses::default(),
        };

        let ports = v.ports()?;

        if let Some(i) = raw
            .retry_join
            .iter()
            .flatten()
            .position(|a| a.trim().is_empty())
        {
            return Err(v.fail(&format!("retry_join[{i}]"), "must not be empty"));
        }
        let retry_interval = match &raw.retry_interval {
            Some(text) => match parse_duration(text) {
                Ok(d) if d.is_zero() => return Err(v.fail("retry_interval", "must be more than 0")),
                Ok(d) => d,
                Err(e) => return Err(v.fail("retry_interval", e)),
            },
            None => Duration::from_secs(30),
        };

        if let Some(key) = &raw.encrypt {
            let len = base64::engine::general_purpose::STANDARD
                .decode(key.trim())
                .map_err(|_| {
                    v.fail(
                        "encrypt",
                        "is not valid base64; generate a key with `mesh keygen`",
                    )
                })?
                .len();
            if ![16, 24, 32].contains(&len) {
                return Err(v.fail(
                    "encrypt",
                    format!("decodes to {len} bytes; a key must be 16, 24 or 32 bytes (generate one with `mesh keygen`)"),
                ));
            }
        }

        let log_level = match raw.log_level.as_deref().map(str::to_ascii_lowercase) {
            None if dev => "debug".to_string(),
            None => "info".to_string(),
            Some(level) => match level.as_str() {
                "trace" | "debug" | "info" | "warn" | "error" => level,
                "warning" => "warn".into(),
                "err" => "error".into(),
                _ => {
                    return Err(v.fail(
                        "log_level",
                        format!(
                            "{level:?} is not a log level: use trace, debug, info, warn or error"
                        ),
                    ))
                }
            },
        };

        let raft_multiplier = match raw.performance.as_ref().and_then(|p| p.raft_multiplier) {
            Some(m) if !(1..=10).contains(&m) => {
                return Err(v.fail(
                    "performance.raft_multiplier",
                    format!("{m} is out of range: use 1 (production timing) to 10"),
                ))
            }
            Some(m) => m,
            None => 1,
        };

        let limits = {
            let raw_limits = raw.limits.clone().unwrap_or_default();
            let d = crate::Limits::default();
            let positive = |key: &str, n: Option<u32>, default: u32| match n {
                Some(0) => Err(v.fail(key, "0 is out of range: use at least 1")),
                Some(n) => Ok(n),
                None => Ok(default),
            };
            // A KV value or a JSON body becomes (part of) one Raft entry.
            let max_body = (mesh_types::MAX_ENTRY_BYTES / 2) as u64;
            let size = |key: &str, n: Option<u64>, default: usize| match n {
                Some(n) if n == 0 || n > max_body => Err(v.fail(
                    key,
                    format!("{n} is out of range: use 1 to {max_body} bytes"),
                )),
                Some(n) => Ok(n as usize),
                None => Ok(default),
            };
            crate::Limits {
                kv_max_value_size: size(
                    "limits.kv_max_value_size",
                    raw_limits.kv_max_value_size,
                    d.kv_max_value_size,
                )?,
                txn_max_req_len: size(
                    "limits.txn_max_req_len",
                    raw_limits.txn_max_req_len,
                    d.txn_max_req_len,
                )?,
                rpc_rate: match raw_limits.rpc_rate {
                    Some(r) if !(r > 0.0 && r <= 1e9) => {
                        return Err(v.fail(
                            "limits.rpc_rate",
                            format!(
                                "{r} is out of range: use a rate above 0 (requests per second)"
                            ),
                        ))
                    }
                    other => other,
                },
                rpc_max_burst: positive(
                    "limits.rpc_max_burst",
                    raw_limits.rpc_max_burst,
                    d.rpc_max_burst,
                )?,
                http_max_conns_per_client: positive(
                    "limits.http_max_conns_per_client",
                    raw_limits.http_max_conns_per_client,
                    d.http_max_conns_per_client,
                )?,
                rpc_max_conns_per_client: positive(
                    "limits.rpc_max_conns_per_client",
                    raw_limits.rpc_max_conns_per_client,
                    d.rpc_max_conns_per_client,
                )?,
                http_max_blocking_queries_per_client: positive(
                    "limits.http_max_blocking_queries_per_client",
                    raw_limits.http_max_blocking_queries_per_client,
                    d.http_max_blocking_queries_per_client,
                )?,
                proxy_snapshots_max_watched: positive(
                    "limits.proxy_snapshots_max_watched",
                    raw_limits.proxy_snapshots_max_watched,
                    d.proxy_snapshots_max_watched,
                )?,
                http_read_header_timeout: match &raw_limits.http_read_header_timeout {
                    None => d.http_read_header_timeout,
                    Some(text) => match crate::parse_duration(text) {
                        Ok(t)
                            if t >= Duration::from_millis(100)
                                && t <= Duration::from_secs(3600) =>
                        {
                            t
                        }
                        Ok(_) => {
                            return Err(v.fail(
                                "limits.http_read_header_timeout",
                                format!("{text:?} is out of range: use 100ms to 1h"),
                            ))
                        }
                        Err(e) => return Err(v.fail("limits.http_read_header_timeout", e)),
                    },
                },
            }
        };

        let watches = v.watches()?;
        Ok(RuntimeConfig {
            deprecations,
            watches,
            limits,
            autopilot: v.autopilot()?,
            dev,
            node_name,
            datacenter,
            server,
            bootstrap_expect,
            data_dir,
            bind_addr,
            advertise_addr,
            client_addr,
            ports,
            retry_join: raw.retry_join.clone().unwrap_or_default(),
            retry_interval,
            encrypt: raw.encrypt.as_ref().map(|k| k.trim().to_string()),
            encrypt_verify_incoming: raw.encrypt_verify_incoming.unwrap_or(true),
            encrypt_verify_outgoing: raw.encrypt_verify_outgoing.unwrap_or(true),
            log_level,
            raft_multiplier,
            config_files: raw.config_files.clone(),
            ui: raw
                .ui_config
                .as_ref()
                .and_then(|u| u.enabled)
                .or(raw.ui)
                .unwrap_or(dev),
            ui_dir: raw
                .ui_config
                .as_ref()
                .and_then(|u| u.dir.clone())
                .or_else(|| raw.ui_dir.clone())
                .map(PathBuf::from),
            ui_content_path: ui_content_path(&v)?,
            metrics_prefix: metrics_prefix(&v)?,
            log_json: raw.log_json.unwrap_or(false),
            log_file: log_file(&v)?,
            enable_script_checks: raw.enable_script_checks.unwrap_or(false),
            addresses,
            connect_enabled: raw.connect.as_ref().and_then(|c| c.enabled).unwrap_or(true),
            connect_managed_sidecars: raw
                .connect
                .as_ref()
                .and_then(|c| c.managed_sidecars)
                .unwrap_or(false),
            connect_managed_gateways: raw
                .connect
                .as_ref()
                .and_then(|c| c.managed_gateways)
                .unwrap_or(false),
            connect_ca: raw.connect.as_ref().and_then(|c| {
                (c.ca_provider.is_some() || c.ca_config.is_some()).then(|| {
                    serde_json::json!({
                        "Provider": c.ca_provider.clone().unwrap_or_else(|| "consul".into()),
                        "Config": c.ca_config.clone().unwrap_or_default(),
                    })
                })
            }),
            dns: v.dns()?,
            acl: v.acl()?,
            tls: v.tls_config(ports.https.is_some(), ports.grpc_tls.is_some())?,
            config_entries_bootstrap: raw
                .config_entries
                .as_ref()
                .and_then(|c| c.bootstrap.clone())
                .map(|b| b.0)
                .unwrap_or_default(),
        })
    }
}

/// Validation with access to where each key was set.
pub(crate) struct Check<'a> {
    pub(crate) raw: &'a RawConfig,
}

impl Check<'_> {
    pub(crate) fn fail(&self, key: &str, message: impl Into<String>) -> ValidationError {
        ValidationError {
            key: key.to_string(),
            origin: self.origin(key),
            message: message.into(),
        }
    }

    /// Where `key` or, failing that, its nearest parent (`retry_join` for `retry_join[1]`) was set.
    fn origin(&self, key: &str) -> Option<crate::error::Origin> {
        let mut key = key;
        loop {
            if let Some(origin) = self.raw.origin(key) {
                return Some(origin.clone());
            }
            key = &key[..key.rfind(['.', '['])?];
        }
    }

    fn ip(&self, key: &str, text: Option<&str>) -> Result<Option<IpAddr>, ValidationError> {
        let Some(text) = text else { return Ok(None) };
        text.trim()
            .parse()
            .map(Some)
            .map_err(|_| self.fail(key, format!("{text:?} is not an IP address")))
    }

    fn ports(&self) -> Result<Ports, ValidationError> {
        let defaults = Ports::default();
        let raw = self.raw.ports.clone().unwrap_or_default();
        let port = |key: &str, value: Option<i64>, default: Option<u16>| match value {
            None => Ok(default),
            Some(-1) => Ok(None),
            Some(p) => u16::try_from(p).map(Some).map_err(|_| {
                self.fail(
                    &format!("ports.{key}"),
                    format!(
                        "{p} is not a port: use 1-65535, 0 for any free port, or -1 to disable"
                    ),
                )
            }),
        };
        Ok(Ports {
            http: port("http", raw.http, defaults.http)?,
            https: port("https", raw.https, defaults.https)?,
            grpc: port("grpc", raw.grpc, defaults.grpc)?,
            grpc_tls: port("grpc_tls", raw.grpc_tls, defaults.grpc_tls)?,
            dns: port("dns", raw.dns, defaults.dns)?,
            serf_lan: port("serf_lan", raw.serf_lan, defaults.serf_lan)?,
            server: port("server", raw.server, defaults.server)?,
        })
    }

    fn dns(&self) -> Result<DnsConfig, ValidationError> {
        let mut dns = DnsConfig::default();
        if let Some(domain) = &self.raw.domain {
            dns.domain = self.domain("domain", domain)?;
        }
        if let Some(domain) = &self.raw.alt_domain {
            dns.alt_domain = Some(self.domain("alt_domain", domain)?);
        }
        for (i, text) in self.raw.recursors.iter().flatten().enumerate() {
            let addr = text
                .parse::<SocketAddr>()
                .or_else(|_| text.parse::<IpAddr>().map(|ip| SocketAddr::new(ip, 53)))
                .map_err(|_| {
                    self.fail(
                        &format!("recursors[{i}]"),
                        format!("{text:?} is not an IP address or IP:port"),
                    )
                })?;
            dns.recursors.push(addr);
        }
        let Some(raw) = &self.raw.dns_config else {
            return Ok(dns);
        };
        let duration = |key: &str, text: &str| {
            parse_duration(text).map_err(|e| self.fail(&format!("dns_config.{key}"), e))
        };
        if let Some(v) = raw.allow_stale {
            dns.allow_stale = v;
        }
        if let Some(ttl) = &raw.node_ttl {
            dns.node_ttl = duration("node_ttl", ttl)?;
        }
        let mut service_ttl = BTreeMap::new();
        for (name, ttl) in raw.service_ttl.iter().flatten() {
            service_ttl.insert(name.clone(), duration(&format!("service_ttl.{name}"), ttl)?);
        }
        dns.service_ttl = service_ttl;
        match raw.udp_answer_limit {
            Some(0) => {
                return Err(self.fail("dns_config.udp_answer_limit", "must be at least 1"));
            }
            Some(n) => dns.udp_answer_limit = n,
            None => {}
        }
        if let Some(v) = raw.enable_truncate {
            dns.enable_truncate = v;
        }
        if let Some(v) = raw.only_passing {
            dns.only_passing = v;
        }
        Ok(dns)
    }

    /// A DNS domain, returned fully qualified (`consul` → `consul.`).
    fn domain(&self, key: &str, text: &str) -> Result<String, ValidationError> {
        let trimmed = text.trim_end_matches('.');
        if trimmed.is_empty() || !trimmed.split('.').all(is_dns_label) {
            return Err(self.fail(key, format!("{text:?} is not a DNS domain")));
        }
        Ok(format!("{}.", trimmed.to_ascii_lowercase()))
    }

    fn acl(&self) -> Result<AclConfig, ValidationError> {
        let Some(raw) = &self.raw.acl else {
            return Ok(AclConfig::default());
        };
        let default_policy = match raw.default_policy.as_deref() {
            None | Some("allow") => AclPolicy::Allow,
            Some("deny") => AclPolicy::Deny,
            Some(other) => {
                return Err(self.fail(
                    "acl.default_policy",
                    format!("{other:?} is not a policy: use \"allow\" or \"deny\""),
                ))
            }
        };
        let tokens = raw.tokens.clone().unwrap_or_default();
        let token =
            |name: &str, value: Option<String>| -> Result<Option<String>, ValidationError> {
                match value.filter(|v| !v.is_empty()) {
                    Some(v) if uuid_like(&v) => Ok(Some(v)),
                    Some(_) => Err(self.fail(
                        &format!("acl.tokens.{name}"),
                        "must be a UUID, e.g. from `uuidgen`",
                    )),
                    None => Ok(None),
                }
            };
        Ok(AclConfig {
            enabled: raw.enabled.unwrap_or(false),
            default_policy,
            initial_management_token: token("initial_management", tokens.initial_management)?,
            agent_token: token("agent", tokens.agent)?,
            default_token: token("default", tokens.default)?,
        })
    }
}

/// 1-63 letters, digits and `-`: what Consul accepts in DNS names.
fn metrics_prefix(v: &Check) -> Result<String, ValidationError> {
    let Some(p) = v
        .raw
        .telemetry
        .as_ref()
        .and_then(|t| t.metrics_prefix.clone())
    else {
        return Ok("consul".into());
    };
    let ok = p.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
        && p.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !ok {
        return Err(v.fail(
            "telemetry.metrics_prefix",
            format!("{p:?}: a metric name prefix is a letter then letters, digits or `_`"),
        ));
    }
    Ok(p)
}

fn log_file(v: &Check) -> Result<Option<crate::runtime::LogFile>, ValidationError> {
    let Some(path) = v.raw.log_file.clone() else {
        return Ok(None);
    };
    if path.is_empty() {
        return Err(v.fail("log_file", "give a file or directory path"));
    }
    // Consul: a path ending in `/` is a directory, and the file is named for the agent.
    let path = if path.ends_with('/') || std::path::Path::new(&path).is_dir() {
        PathBuf::from(path).join("mesh.log")
    } else {
        PathBuf::from(path)
    };
    let max_age = match &v.raw.log_rotate_duration {
        Some(d) => parse_duration(d).map_err(|e| v.fail("log_rotate_duration", e))?,
        None => Duration::from_secs(24 * 3600),
    };
    if max_age < Duration::from_secs(1) {
        return Err(v.fail("log_rotate_duration", "rotate at most once a second"));
    }
    let max_files = match v.raw.log_rotate_max_files {
        None | Some(0) => None,
        Some(-1) => Some(0),
        Some(n) if n > 0 => Some(n as usize),
        Some(n) => {
            return Err(v.fail(
                "log_rotate_max_files",
                format!("{n}: give 0 (keep all), -1 (keep none) or a count"),
            ))
        }
    };
    Ok(Some(crate::runtime::LogFile {
        path,
        max_bytes: v.raw.log_rotate_bytes.filter(|b| *b > 0),
        max_age,
        max_files,
    }))
}

/// `ui_config.content_path` (or `ui_content_path`) as `/path/`.
fn ui_content_path(v: &Check) -> Result<String, ValidationError> {
    let (key, path) = match (
        v.raw
            .ui_config
            .as_ref()
            .and_then(|u| u.content_path.clone()),
        v.raw.ui_content_path.clone(),
    ) {
        (Some(p), _) => ("ui_config.content_path", p),
        (None, Some(p)) => ("ui_content_path", p),
        (None, None) => return Ok("/ui/".into()),
    };
    let trimmed = path.trim_matches('/');
    let ok = !trimmed.is_empty()
        && !trimmed.starts_with("v1")
        && trimmed
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '/' | '.'));
    if !ok {
        return Err(v.fail(
            key,
            format!(
                "{path:?}: give a URL path like \"/ui/\" (letters, digits, - _ . /; not under /v1)"
            ),
        ));
    }
    Ok(format!("/{trimmed}/"))
}

fn is_dns_label(s: &str) -> bool {
    !s.is_empty() && s.len() <= 63 && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
}

/// The hostname's first label with characters DNS cannot carry replaced by `-`.
fn default_node_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_default();
    let first = host.trim().split('.').next().unwrap_or_default();
    let name: String = first
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '-'
            }
        })
        .take(63)
        .collect();
    if name.is_empty() {
        "mesh".into()
    } else {
        name
    }
}

/// A UUID: the shape of every ACL secret.
fn uuid_like(v: &str) -> bool {
    uuid::Uuid::try_parse(v).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Origin;
    use crate::raw::{RawPerformance, RawPorts};

    fn base() -> RawConfig {
        RawConfig {
            data_dir: Some("/tmp/x".into()),
            ..Default::default()
        }
    }

    #[test]
    fn defaults_follow_consul() {
        let c = RuntimeConfig::build(base()).unwrap();
        assert_eq!(c.datacenter, "dc1");
        assert!(!c.server);
        assert_eq!(c.bootstrap_expect, 0);
        assert_eq!(c.bind_addr.to_string(), "0.0.0.0");
        assert_eq!(c.advertise_addr.to_string(), "127.0.0.1");
        assert_eq!(c.client_addr.to_string(), "127.0.0.1");
        assert_eq!(c.ports, Ports::default());
        assert_eq!(c.http_addr().unwrap().to_string(), "127.0.0.1:8500");
        assert_eq!(c.server_addr().unwrap().to_string(), "0.0.0.0:8300");
        assert_eq!(c.retry_interval, Duration::from_secs(30));
        assert_eq!(c.raft_multiplier, 1);
        assert_eq!(c.log_level, "info");
        assert_eq!(c.dns.domain, "consul.");
        assert!(c.connect_enabled);
        assert!(!c.node_name.is_empty());
    }

    #[test]
    fn acl_tokens_must_be_uuids() {
        let token = "6d3f6a39-2b1e-4c61-9a51-0e3cbb0f1c11";
        let mut raw = base();
        raw.acl = Some(crate::raw::RawAcl {
            enabled: Some(true),
            tokens: Some(crate::raw::RawAclTokens {
                initial_management: Some(token.into()),
                ..Default::default()
            }),
            ..Default::default()
        });
        let c = RuntimeConfig::build(raw.clone()).unwrap();
        assert_eq!(c.acl.initial_management_token.as_deref(), Some(token));
        assert_eq!(c.acl.agent_token, None);
        raw.acl.as_mut().unwrap().tokens.as_mut().unwrap().agent = Some("root".into());
        let e = RuntimeConfig::build(raw).unwrap_err();
        assert_eq!(e.key, "acl.tokens.agent");
        assert!(e.message.contains("UUID"), "{e}");
    }

    #[test]
    fn dev_is_a_single_server() {
        let c = RuntimeConfig::build(RawConfig::dev()).unwrap();
        assert!(c.dev && c.server && c.ui);
        assert_eq!(c.bootstrap_expect, 1);
        assert_eq!(c.data_dir, None);
        assert_eq!(c.bind_addr.to_string(), "127.0.0.1");
        assert_eq!(c.log_level, "debug");
    }

    #[test]
    fn advertise_defaults_to_a_specific_bind() {
        let raw = RawConfig {
            bind_addr: Some("10.0.0.5".into()),
            ..base()
        };
        let c = RuntimeConfig::build(raw).unwrap();
        assert_eq!(c.advertise_addr.to_string(), "10.0.0.5");
    }

    fn error(raw: RawConfig) -> ValidationError {
        RuntimeConfig::build(raw).unwrap_err()
    }

    #[test]
    fn limits_default_to_consuls_and_refuse_what_cannot_work() {
        assert_eq!(
            RuntimeConfig::build(base()).unwrap().limits,
            crate::Limits::default()
        );
        let with = |l: crate::raw::RawLimits| RawConfig {
            limits: Some(l),
            ..base()
        };
        let ok = RuntimeConfig::build(with(crate::raw::RawLimits {
            http_read_header_timeout: Some("2s".into()),
            kv_max_value_size: Some(1 << 20),
            rpc_rate: Some(50.0),
            ..Default::default()
        }))
        .unwrap()
        .limits;
        assert_eq!(ok.http_read_header_timeout, Duration::from_secs(2));
        assert_eq!((ok.kv_max_value_size, ok.rpc_rate), (1 << 20, Some(50.0)));
        for (raw, key) in [
            (
                crate::raw::RawLimits {
                    http_max_conns_per_client: Some(0),
                    ..Default::default()
                },
                "limits.http_max_conns_per_client",
            ),
            (
                crate::raw::RawLimits {
                    kv_max_value_size: Some(1 << 30),
                    ..Default::default()
                },
                "limits.kv_max_value_size",
            ),
            (
                crate::raw::RawLimits {
                    http_read_header_timeout: Some("1ns".into()),
                    ..Default::default()
                },
                "limits.http_read_header_timeout",
            ),
            (
                crate::raw::RawLimits {
                    rpc_rate: Some(-1.0),
                    ..Default::default()
                },
                "limits.rpc_rate",
            ),
        ] {
            assert_eq!(error(with(raw)).key, key);
        }
    }

    #[test]
    fn bad_values_name_their_key() {
        let cases = [
            (
                RawConfig {
                    datacenter: Some("DC_1".into()),
                    ..base()
                },
                "datacenter",
            ),
            (
                RawConfig {
                    node_name: Some("a.b".into()),
                    ..base()
                },
                "node_name",
            ),
            (
                RawConfig {
                    node_name: Some("".into()),
                    ..base()
                },
                "node_name",
            ),
            (
                RawConfig {
                    bootstrap_expect: Some(3),
                    ..base()
                },
                "bootstrap_expect",
            ),
            (
                RawConfig {
                    bind_addr: Some("10.0.0".into()),
                    ..base()
                },
                "bind_addr",
            ),
            (
                RawConfig {
                    advertise_addr: Some("0.0.0.0".into()),
                    ..base()
                },
                "advertise_addr",
            ),
            (
                RawConfig {
                    encrypt: Some("not base64!".into()),
                    ..base()
                },
                "encrypt",
            ),
            (
                RawConfig {
                    encrypt: Some("AAAA".into()),
                    ..base()
                },
                "encrypt",
            ),
            (
                RawConfig {
                    retry_interval: Some("soon".into()),
                    ..base()
                },
                "retry_interval",
            ),
            (
                RawConfig {
                    log_level: Some("loud".into()),
                    ..base()
                },
                "log_level",
            ),
            (
                RawConfig {
                    data_dir: None,
                    ..base()
                },
                "data_dir",
            ),
            (
                RawConfig {
                    ports: Some(RawPorts {
                        http: Some(70000),
                        ..Default::default()
                    }),
                    ..base()
                },
                "ports.http",
            ),
            (
                RawConfig {
                    performance: Some(RawPerformance {
                        raft_multiplier: Some(11),
                    }),
                    ..base()
                },
                "performance.raft_multiplier",
            ),
            (
                RawConfig {
                    recursors: Some(vec!["8.8.8.8".into(), "x".into()]),
                    ..base()
                },
                "recursors[1]",
            ),
            (
                RawConfig {
                    server: Some(true),
                    bootstrap: Some(true),
                    bootstrap_expect: Some(3),
                    ..base()
                },
                "bootstrap",
            ),
            (
                RawConfig {
                    primary_datacenter: Some("dc2".into()),
                    ..base()
                },
                "primary_datacenter",
            ),
        ];
        for (raw, key) in cases {
            assert_eq!(error(raw).key, key);
        }
    }

    #[test]
    fn dev_rejects_waiting_for_more_servers() {
        let raw = RawConfig {
            bootstrap_expect: Some(3),
            ..RawConfig::dev()
        };
        let e = error(raw);
        assert_eq!(e.key, "bootstrap_expect");
        assert!(e.message.contains("-dev"), "{e}");
    }

    #[test]
    fn errors_point_at_where_the_value_was_set() {
        let mut raw = RawConfig {
            bind_addr: Some("nope".into()),
            ..base()
        };
        raw.origins
            .insert("bind_addr".into(), Origin::Flag("-bind".into()));
        assert_eq!(
            error(raw).to_string(),
            "flag -bind: bind_addr: \"nope\" is not an IP address"
        );
    }

    #[test]
    fn ports_can_be_disabled_or_dynamic() {
        let raw = RawConfig {
            ports: Some(RawPorts {
                dns: Some(-1),
                http: Some(0),
                https: Some(8501),
                ..Default::default()
            }),
            tls: Some(crate::tls::RawTls {
                defaults: Some(crate::tls::RawTlsFiles {
                    cert_file: Some("/etc/mesh/server.pem".into()),
                    key_file: Some("/etc/mesh/server.key".into()),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..base()
        };
        let c = RuntimeConfig::build(raw).unwrap();
        assert_eq!(c.https_addr().unwrap().port(), 8501);
        assert_eq!(
            c.tls.https.cert_file.as_ref().and_then(|p| p.to_str()),
            Some("/etc/mesh/server.pem")
        );
        assert_eq!(
            (c.ports.dns, c.ports.http, c.ports.https),
            (None, Some(0), Some(8501))
        );
        assert_eq!(c.dns_addr(), None);
    }

    #[test]
    fn encrypt_accepts_keygen_keys() {
        let key = base64::engine::general_purpose::STANDARD.encode([7u8; 32]);
        let raw = RawConfig {
            encrypt: Some(key.clone()),
            ..base()
        };
        assert_eq!(RuntimeConfig::build(raw).unwrap().encrypt, Some(key));
    }
}
