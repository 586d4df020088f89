//! What the operator configures (`DnsConfig`) and the form the handler reads
//! on every query (`Settings`), compiled once per configuration change.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::str::FromStr;
use std::time::Duration;

use hickory_server::proto::rr::Name;

/// How the DNS interface answers (agent `dns_config`, `domain`, `alt_domain`,
/// `recursors`); a new value applies to the next query without a restart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsConfig {
    /// Domain answered from the catalog, e.g. `consul.`.
    pub domain: String,
    /// A second domain answered exactly like `domain`.
    pub alt_domain: Option<String>,
    /// This agent's datacenter: the only one `<name>.<kind>.<dc>.<domain>` answers for.
    pub datacenter: String,
    /// TTL of node answers.
    pub node_ttl: Duration,
    /// TTL of service answers by service name: exact name, then `prefix*`, then `*`.
    pub service_ttl: HashMap<String, Duration>,
    /// Most records in the answer section of a UDP response (0: no limit).
    pub udp_answer_limit: usize,
    /// Set TC when `udp_answer_limit` left records out, so clients retry over TCP.
    pub enable_truncate: bool,
    /// Leave out instances with a warning check too, not only critical ones.
    pub only_passing: bool,
    /// Upstream servers for names outside our domains, tried in order.
    pub recursors: Vec<SocketAddr>,
    /// How long to wait for each recursor.
    pub recursor_timeout: Duration,
    /// Most A/AAAA records in any response (0: no limit).
    pub a_record_limit: usize,
    /// With ACLs on: answers show only what this token may read.
    pub acl: Option<DnsAcl>,
}

/// ACLs as DNS applies them: the agent's default token (else the anonymous
/// token) decides which services and nodes exist, as in Consul.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DnsAcl {
    /// `acl.default_policy = "allow"`.
    pub default_allow: bool,
    /// `acl.tokens.default`.
    pub token: Option<String>,
    /// Where identities scoped to datacenters apply (this agent's).
    pub datacenter: String,
}

impl Default for DnsConfig {
    fn default() -> Self {
        DnsConfig {
            domain: "consul.".into(),
            alt_domain: None,
            datacenter: "dc1".into(),
            node_ttl: Duration::ZERO,
            service_ttl: HashMap::new(),
            udp_answer_limit: 3,
            enable_truncate: true,
            only_passing: false,
            recursors: Vec::new(),
            recursor_timeout: Duration::from_secs(2),
            a_record_limit: 0,
            acl: None,
        }
    }
}

/// One domain we are authoritative for, as labels for matching and as a name
/// for building records.
#[derive(Debug, Clone)]
pub(crate) struct Domain {
    /// Lowercase labels, left to right, without the root.
    pub labels: Vec<Vec<u8>>,
    /// The fully qualified name.
    pub name: Name,
}

impl Domain {
    fn parse(text: &str) -> Option<Domain> {
        let mut name = Name::from_str(text.trim()).ok()?.to_lowercase();
        name.set_fqdn(true);
        if name.is_root() {
            return None;
        }
        let labels = name.iter().map(<[u8]>::to_vec).collect();
        Some(Domain { labels, name })
    }
}

impl AsRef<[Vec<u8>]> for Domain {
    fn as_ref(&self) -> &[Vec<u8>] {
        &self.labels
    }
}

/// `DnsConfig` compiled for the query path.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    /// `domain` first, then `alt_domain`.
    pub domains: Vec<Domain>,
    /// Lowercase datacenter name.
    pub datacenter: String,
    pub node_ttl: u32,
    service_ttl: HashMap<String, u32>,
    /// `prefix*` entries, longest prefix first.
    service_ttl_prefixes: Vec<(String, u32)>,
    service_ttl_default: u32,
    pub udp_answer_limit: usize,
    pub enable_truncate: bool,
    pub only_passing: bool,
    pub recursors: Vec<SocketAddr>,
    pub recursor_timeout: Duration,
    pub a_record_limit: usize,
}

impl Settings {
    /// Compile a configuration. A domain that is not a valid DNS name is
    /// logged and replaced by `consul.` so the server keeps answering.
    pub fn new(config: &DnsConfig) -> Settings {
        let primary = Domain::parse(&config.domain).unwrap_or_else(|| {
            tracing::error!(domain = %config.domain, "dns: invalid domain; serving consul. instead");
            Domain::parse("consul.").expect("consul. is a valid name")
        });
        let mut domains = vec![primary];
        if let Some(alt) = &config.alt_domain {
            match Domain::parse(alt) {
                Some(d) if d.labels != domains[0].labels => domains.push(d),
                Some(_) => {}
                None => tracing::error!(alt_domain = %alt, "dns: invalid alt_domain; ignored"),
            }
        }
        let mut service_ttl = HashMap::new();
        let mut service_ttl_prefixes = Vec::new();
        let mut service_ttl_default = 0;
        for (key, ttl) in &config.service_ttl {
            let key = key.to_ascii_lowercase();
            let secs = ttl_secs(*ttl);
            if key == "*" {
                service_ttl_default = secs;
            } else if let Some(prefix) = key.strip_suffix('*') {
                service_ttl_prefixes.push((prefix.to_string(), secs));
            } else {
                service_ttl.insert(key, secs);
            }
        }
        service_ttl_prefixes.sort_by(|a, b| b.0.len().cmp(&a.0.len()).then(a.0.cmp(&b.0)));
        Settings {
            domains,
            datacenter: config.datacenter.to_ascii_lowercase(),
            node_ttl: ttl_secs(config.node_ttl),
            service_ttl,
            service_ttl_prefixes,
            service_ttl_default,
            udp_answer_limit: config.udp_answer_limit,
            enable_truncate: config.enable_truncate,
            only_passing: config.only_passing,
            recursors: config.recursors.clone(),
            recursor_timeout: config.recursor_timeout,
            a_record_limit: config.a_record_limit,
        }
    }

    /// TTL for answers about `service` (lowercase name).
    pub fn service_ttl(&self, service: &str) -> u32 {
        if let Some(ttl) = self.service_ttl.get(service) {
            return *ttl;
        }
        self.service_ttl_prefixes
            .iter()
            .find(|(prefix, _)| service.starts_with(prefix.as_str()))
            .map_or(self.service_ttl_default, |(_, ttl)| *ttl)
    }
}

fn ttl_secs(ttl: Duration) -> u32 {
    u32::try_from(ttl.as_secs()).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_ttl_prefers_exact_then_longest_prefix_then_star() {
        let config = DnsConfig {
            service_ttl: [("*", 5), ("we*", 7), ("web*", 9), ("Web-Exact", 11)]
                .into_iter()
                .map(|(k, v)| (k.to_string(), Duration::from_secs(v)))
                .collect(),
            ..DnsConfig::default()
        };
        let s = Settings::new(&config);
        assert_eq!(s.service_ttl("web-exact"), 11);
        assert_eq!(s.service_ttl("web-other"), 9);
        assert_eq!(s.service_ttl("west"), 7);
        assert_eq!(s.service_ttl("db"), 5);
        assert_eq!(Settings::new(&DnsConfig::default()).service_ttl("db"), 0);
    }

    #[test]
    fn domains_are_lowercased_fully_qualified_and_deduplicated() {
        let config = DnsConfig {
            domain: "Consul".into(),
            alt_domain: Some("consul.".into()),
            ..DnsConfig::default()
        };
        let s = Settings::new(&config);
        assert_eq!(s.domains.len(), 1);
        assert_eq!(s.domains[0].name.to_ascii(), "consul.");
        assert_eq!(s.domains[0].labels, vec![b"consul".to_vec()]);

        let config = DnsConfig {
            domain: "..".into(),
            alt_domain: Some("mesh.internal".into()),
            ..DnsConfig::default()
        };
        let s = Settings::new(&config);
        assert_eq!(s.domains[0].name.to_ascii(), "consul.");
        assert_eq!(s.domains[1].name.to_ascii(), "mesh.internal.");
    }
}
