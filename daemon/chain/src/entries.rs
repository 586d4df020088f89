//! The config entries a chain is compiled from, typed, and the checks one
//! entry must pass on its own. Keys are read however they are spelled
//! (`ServiceSubset`, `service_subset`), except inside user maps (subset
//! names, failover keys, headers to add or set), which are kept as given.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::ChainError;

/// The most routes one service-router may hold.
pub const MAX_ROUTES: usize = 256;
/// The most splits one service-splitter may hold.
pub const MAX_SPLITS: usize = 64;
/// The most subsets (and failover entries) one service-resolver may hold.
pub const MAX_SUBSETS: usize = 64;
/// The most retries a route may ask for.
pub const MAX_RETRIES: u32 = 25;

/// Protocols a service may speak.
pub const PROTOCOLS: [&str; 4] = ["tcp", "http", "http2", "grpc"];

const USER_MAPS: [&str; 5] = ["subsets", "failover", "add", "set", "meta"];

/// Lowercases keys and drops underscores, except the keys of user maps.
fn fold(value: Value, user_map: bool) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.into_iter()
                .map(|(k, v)| {
                    let key = if user_map {
                        k
                    } else {
                        k.to_ascii_lowercase().replace('_', "")
                    };
                    let inner_user = !user_map && USER_MAPS.contains(&key.as_str());
                    let v = if inner_user {
                        // The map's keys are the user's; its values are ours again.
                        match v {
                            Value::Object(m) => Value::Object(
                                m.into_iter().map(|(k, v)| (k, fold(v, false))).collect(),
                            ),
                            other => other,
                        }
                    } else {
                        fold(v, false)
                    };
                    (key, v)
                })
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.into_iter().map(|v| fold(v, false)).collect()),
        other => other,
    }
}

/// Parses an entry's stored JSON body.
pub fn parse<T: for<'de> Deserialize<'de>>(
    kind: &str,
    name: &str,
    body: &str,
) -> Result<T, ChainError> {
    let value: Value = serde_json::from_str(body)
        .map_err(|e| ChainError::entry(kind, name, "", format!("not JSON: {e}")))?;
    serde_json::from_value(fold(value, false))
        .map_err(|e| ChainError::entry(kind, name, "", e.to_string()))
}

/// A duration as Consul writes it: `"5s"`, or nanoseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GoDuration(pub Duration);

impl<'de> Deserialize<'de> for GoDuration {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match Value::deserialize(d)? {
            Value::String(s) if s.is_empty() => Ok(GoDuration::default()),
            Value::String(s) => mesh_types::parse_go_duration(&s)
                .map(GoDuration)
                .map_err(serde::de::Error::custom),
            Value::Number(n) => n
                .as_u64()
                .map(|ns| GoDuration(Duration::from_nanos(ns)))
                .ok_or_else(|| serde::de::Error::custom("a duration must not be negative")),
            Value::Null => Ok(GoDuration::default()),
            other => Err(serde::de::Error::custom(format!(
                "expected a duration like \"5s\", got {other}"
            ))),
        }
    }
}

impl Serialize for GoDuration {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format_duration(self.0))
    }
}

/// `1.5s`, `250ms`, `0s`: as Consul prints durations.
pub fn format_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms.is_multiple_of(1000) {
        format!("{}s", ms / 1000)
    } else if ms >= 1000 {
        format!("{}s", d.as_secs_f64())
    } else {
        format!("{ms}ms")
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct ServiceDefaults {
    pub protocol: String,
    /// How this service's proxies treat their upstreams.
    pub upstreamconfig: Option<UpstreamConfig>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct UpstreamConfig {
    pub defaults: Option<UpstreamSettings>,
    pub overrides: Vec<UpstreamSettings>,
}

/// Settings for upstreams (`Name` set: an override for that one).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct UpstreamSettings {
    pub name: String,
    pub limits: Option<UpstreamLimits>,
    pub passivehealthcheck: Option<PassiveHealthCheck>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct UpstreamLimits {
    pub maxconnections: u32,
    pub maxpendingrequests: u32,
    pub maxconcurrentrequests: u32,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct PassiveHealthCheck {
    pub interval: GoDuration,
    pub maxfailures: u32,
    pub maxejectionpercent: Option<u32>,
    pub baseejectiontime: GoDuration,
}

impl UpstreamConfig {
    /// The settings for upstream `name`: its override, else the defaults.
    pub fn for_upstream(&self, name: &str) -> Option<&UpstreamSettings> {
        self.overrides
            .iter()
            .find(|o| o.name == name)
            .or(self.defaults.as_ref())
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct ProxyDefaults {
    /// Keys as given (`protocol`).
    pub config: BTreeMap<String, Value>,
}

impl ProxyDefaults {
    pub fn protocol(&self) -> Option<String> {
        self.config
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("protocol"))
            .and_then(|(_, v)| v.as_str())
            .map(str::to_ascii_lowercase)
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, rename_all(serialize = "PascalCase"))]
pub struct HeaderMods {
    #[serde(alias = "Add")]
    pub add: BTreeMap<String, String>,
    #[serde(alias = "Set")]
    pub set: BTreeMap<String, String>,
    #[serde(alias = "Remove")]
    pub remove: Vec<String>,
}

impl HeaderMods {
    pub fn is_empty(&self) -> bool {
        self.add.is_empty() && self.set.is_empty() && self.remove.is_empty()
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, rename_all(serialize = "PascalCase"))]
pub struct HeaderMatch {
    #[serde(alias = "Name")]
    pub name: String,
    #[serde(alias = "Present")]
    pub present: bool,
    #[serde(alias = "Exact")]
    pub exact: String,
    #[serde(alias = "Prefix")]
    pub prefix: String,
    #[serde(alias = "Suffix")]
    pub suffix: String,
    #[serde(alias = "Regex")]
    pub regex: String,
    #[serde(alias = "Invert")]
    pub invert: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, rename_all(serialize = "PascalCase"))]
pub struct QueryMatch {
    #[serde(alias = "Name")]
    pub name: String,
    #[serde(alias = "Present")]
    pub present: bool,
    #[serde(alias = "Exact")]
    pub exact: String,
    #[serde(alias = "Regex")]
    pub regex: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default)]
pub struct HttpMatch {
    #[serde(rename(serialize = "PathExact"), alias = "PathExact")]
    pub pathexact: String,
    #[serde(rename(serialize = "PathPrefix"), alias = "PathPrefix")]
    pub pathprefix: String,
    #[serde(rename(serialize = "PathRegex"), alias = "PathRegex")]
    pub pathregex: String,
    #[serde(rename(serialize = "Header"), alias = "Header")]
    pub header: Vec<HeaderMatch>,
    #[serde(rename(serialize = "QueryParam"), alias = "QueryParam")]
    pub queryparam: Vec<QueryMatch>,
    #[serde(rename(serialize = "Methods"), alias = "Methods")]
    pub methods: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default)]
pub struct RouteMatch {
    #[serde(rename(serialize = "HTTP"), alias = "HTTP")]
    pub http: Option<HttpMatch>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default)]
pub struct RouteDestination {
    #[serde(rename(serialize = "Service"), alias = "Service")]
    pub service: String,
    #[serde(rename(serialize = "ServiceSubset"), alias = "ServiceSubset")]
    pub servicesubset: String,
    #[serde(rename(serialize = "PrefixRewrite"), alias = "PrefixRewrite")]
    pub prefixrewrite: String,
    #[serde(rename(serialize = "RequestTimeout"), alias = "RequestTimeout")]
    pub requesttimeout: GoDuration,
    #[serde(rename(serialize = "NumRetries"), alias = "NumRetries")]
    pub numretries: u32,
    #[serde(
        rename(serialize = "RetryOnConnectFailure"),
        alias = "RetryOnConnectFailure"
    )]
    pub retryonconnectfailure: bool,
    #[serde(rename(serialize = "RetryOnStatusCodes"), alias = "RetryOnStatusCodes")]
    pub retryonstatuscodes: Vec<u16>,
    #[serde(rename(serialize = "RequestHeaders"), alias = "RequestHeaders")]
    pub requestheaders: HeaderMods,
    #[serde(rename(serialize = "ResponseHeaders"), alias = "ResponseHeaders")]
    pub responseheaders: HeaderMods,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default)]
pub struct Route {
    #[serde(rename(serialize = "Match"), alias = "Match")]
    pub r#match: Option<RouteMatch>,
    #[serde(rename(serialize = "Destination"), alias = "Destination")]
    pub destination: Option<RouteDestination>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct ServiceRouter {
    pub routes: Vec<Route>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Split {
    pub weight: f64,
    pub service: String,
    pub servicesubset: String,
    pub requestheaders: HeaderMods,
    pub responseheaders: HeaderMods,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct ServiceSplitter {
    pub splits: Vec<Split>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default)]
pub struct Subset {
    #[serde(rename(serialize = "Filter"), alias = "Filter")]
    pub filter: String,
    #[serde(rename(serialize = "OnlyPassing"), alias = "OnlyPassing")]
    pub onlypassing: bool,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Redirect {
    pub service: String,
    pub servicesubset: String,
    pub datacenter: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct FailoverTarget {
    pub service: String,
    pub servicesubset: String,
    pub datacenter: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Failover {
    pub service: String,
    pub servicesubset: String,
    pub datacenters: Vec<String>,
    pub targets: Vec<FailoverTarget>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default)]
pub struct HashPolicy {
    #[serde(rename(serialize = "Field"), alias = "Field")]
    pub field: String,
    #[serde(rename(serialize = "FieldValue"), alias = "FieldValue")]
    pub fieldvalue: String,
    #[serde(rename(serialize = "SourceIP"), alias = "SourceIP")]
    pub sourceip: bool,
    #[serde(rename(serialize = "Terminal"), alias = "Terminal")]
    pub terminal: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default)]
pub struct LoadBalancer {
    #[serde(rename(serialize = "Policy"), alias = "Policy")]
    pub policy: String,
    #[serde(rename(serialize = "HashPolicies"), alias = "HashPolicies")]
    pub hashpolicies: Vec<HashPolicy>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct ServiceResolver {
    pub defaultsubset: String,
    pub subsets: BTreeMap<String, Subset>,
    pub redirect: Option<Redirect>,
    pub failover: BTreeMap<String, Failover>,
    pub connecttimeout: GoDuration,
    pub requesttimeout: GoDuration,
    pub loadbalancer: Option<LoadBalancer>,
}

fn subset_name_ok(name: &str) -> bool {
    let b = name.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b[0] != b'-'
        && b[b.len() - 1] != b'-'
}

/// Checks an entry on its own (what needs other entries is the
/// compiler's); `Ok` for kinds that are not part of a chain.
pub fn validate(kind: &str, name: &str, body: &str) -> Result<(), ChainError> {
    let err = |field: &str, message: String| Err(ChainError::entry(kind, name, field, message));
    match kind {
        "service-defaults" => {
            let e: ServiceDefaults = parse(kind, name, body)?;
            let p = e.protocol.to_ascii_lowercase();
            if !p.is_empty() && !PROTOCOLS.contains(&p.as_str()) {
                return err(
                    "Protocol",
                    format!(
                        "unknown protocol {:?} (one of: {})",
                        e.protocol,
                        PROTOCOLS.join(", ")
                    ),
                );
            }
        }
        "proxy-defaults" => {
            let e: ProxyDefaults = parse(kind, name, body)?;
            if let Some(p) = e.protocol() {
                if !PROTOCOLS.contains(&p.as_str()) {
                    return err(
                        "Config.protocol",
                        format!("unknown protocol {p:?} (one of: {})", PROTOCOLS.join(", ")),
                    );
                }
            }
        }
        "service-router" => {
            let e: ServiceRouter = parse(kind, name, body)?;
            if e.routes.len() > MAX_ROUTES {
                return err(
                    "Routes",
                    format!(
                        "{} routes; at most {MAX_ROUTES} (MAX_ROUTES)",
                        e.routes.len()
                    ),
                );
            }
            for (i, route) in e.routes.iter().enumerate() {
                validate_route(route).map_err(|(field, m)| {
                    ChainError::entry(kind, name, &format!("Routes[{i}].{field}"), m)
                })?;
            }
        }
        "service-splitter" => {
            let e: ServiceSplitter = parse(kind, name, body)?;
            if e.splits.is_empty() || e.splits.len() > MAX_SPLITS {
                return err(
                    "Splits",
                    format!("{} splits; 1 to {MAX_SPLITS} (MAX_SPLITS)", e.splits.len()),
                );
            }
            for (i, s) in e.splits.iter().enumerate() {
                if !(0.0..=100.0).contains(&s.weight) || !s.weight.is_finite() {
                    return err(
                        &format!("Splits[{i}].Weight"),
                        format!("{} is not between 0 and 100", s.weight),
                    );
                }
            }
            let sum: f64 = e.splits.iter().map(|s| s.weight).sum();
            if (sum - 100.0).abs() > 0.01 {
                return err("Splits", format!("the weights sum to {sum}, not 100"));
            }
        }
        "service-resolver" => {
            let e: ServiceResolver = parse(kind, name, body)?;
            if e.subsets.len() > MAX_SUBSETS || e.failover.len() > MAX_SUBSETS {
                return err(
                    "Subsets",
                    format!("at most {MAX_SUBSETS} subsets and failover entries (MAX_SUBSETS)"),
                );
            }
            for (subset, def) in &e.subsets {
                if !subset_name_ok(subset) {
                    return err(
                        &format!("Subsets[{subset:?}]"),
                        "a subset name is 1 to 63 lowercase letters, digits and dashes".into(),
                    );
                }
                if !def.filter.is_empty() {
                    mesh_filter::Filter::parse(&def.filter).map_err(|f| {
                        ChainError::entry(
                            kind,
                            name,
                            &format!("Subsets[{subset:?}].Filter"),
                            f.to_string(),
                        )
                    })?;
                }
            }
            if !e.defaultsubset.is_empty() && !e.subsets.contains_key(&e.defaultsubset) {
                return err(
                    "DefaultSubset",
                    format!("no subset named {:?} in Subsets", e.defaultsubset),
                );
            }
            if let Some(r) = &e.redirect {
                if !e.subsets.is_empty() || !e.failover.is_empty() || !e.defaultsubset.is_empty() {
                    return err(
                        "Redirect",
                        "a redirect cannot be combined with Subsets, DefaultSubset or Failover"
                            .into(),
                    );
                }
                if r.service.is_empty() && r.servicesubset.is_empty() && r.datacenter.is_empty() {
                    return err(
                        "Redirect",
                        "names no Service, ServiceSubset or Datacenter".into(),
                    );
                }
            }
            for key in e.failover.keys() {
                if key != "*" && !e.subsets.contains_key(key) {
                    return err(
                        &format!("Failover[{key:?}]"),
                        format!("no subset named {key:?} in Subsets (use \"*\" for every subset)"),
                    );
                }
            }
            if let Some(lb) = &e.loadbalancer {
                let policies = [
                    "",
                    "random",
                    "round_robin",
                    "least_request",
                    "ring_hash",
                    "maglev",
                ];
                if !policies.contains(&lb.policy.as_str()) {
                    return err(
                        "LoadBalancer.Policy",
                        format!(
                            "unknown policy {:?} (one of: {})",
                            lb.policy,
                            policies[1..].join(", ")
                        ),
                    );
                }
                if !lb.hashpolicies.is_empty()
                    && !matches!(lb.policy.as_str(), "ring_hash" | "maglev")
                {
                    return err(
                        "LoadBalancer.HashPolicies",
                        "hash policies need the ring_hash or maglev policy".into(),
                    );
                }
                for (i, h) in lb.hashpolicies.iter().enumerate() {
                    let fields = ["", "header", "cookie", "query_parameter"];
                    if !fields.contains(&h.field.as_str()) {
                        return err(
                            &format!("LoadBalancer.HashPolicies[{i}].Field"),
                            format!(
                                "unknown field {:?} (header, cookie or query_parameter)",
                                h.field
                            ),
                        );
                    }
                    if h.field.is_empty() != h.fieldvalue.is_empty()
                        || (h.field.is_empty() && !h.sourceip)
                    {
                        return err(
                            &format!("LoadBalancer.HashPolicies[{i}]"),
                            "give Field with FieldValue, or SourceIP".into(),
                        );
                    }
                }
            }
        }
        "ingress-gateway" | "terminating-gateway" => validate_gateway(kind, name, body)?,
        _ => {}
    }
    Ok(())
}

fn validate_route(route: &Route) -> Result<(), (String, String)> {
    let fail = |f: &str, m: String| Err((f.to_string(), m));
    if let Some(http) = route.r#match.as_ref().and_then(|m| m.http.as_ref()) {
        let paths = [&http.pathexact, &http.pathprefix, &http.pathregex]
            .iter()
            .filter(|p| !p.is_empty())
            .count();
        if paths > 1 {
            return fail(
                "Match.HTTP",
                "at most one of PathExact, PathPrefix and PathRegex".into(),
            );
        }
        for (field, p) in [
            ("PathExact", &http.pathexact),
            ("PathPrefix", &http.pathprefix),
        ] {
            if !p.is_empty() && !p.starts_with('/') {
                return fail(
                    &format!("Match.HTTP.{field}"),
                    format!("{p:?} does not start with \"/\""),
                );
            }
        }
        if !http.pathregex.is_empty() {
            regex::Regex::new(&http.pathregex)
                .map_err(|e| ("Match.HTTP.PathRegex".to_string(), e.to_string()))?;
        }
        for (i, h) in http.header.iter().enumerate() {
            if h.name.is_empty() {
                return fail(&format!("Match.HTTP.Header[{i}].Name"), "missing".into());
            }
            let kinds = [
                h.present,
                !h.exact.is_empty(),
                !h.prefix.is_empty(),
                !h.suffix.is_empty(),
                !h.regex.is_empty(),
            ];
            if kinds.iter().filter(|k| **k).count() > 1 {
                return fail(
                    &format!("Match.HTTP.Header[{i}]"),
                    "at most one of Present, Exact, Prefix, Suffix and Regex".into(),
                );
            }
            if !h.regex.is_empty() {
                regex::Regex::new(&h.regex)
                    .map_err(|e| (format!("Match.HTTP.Header[{i}].Regex"), e.to_string()))?;
            }
        }
        for (i, q) in http.queryparam.iter().enumerate() {
            if q.name.is_empty() {
                return fail(
                    &format!("Match.HTTP.QueryParam[{i}].Name"),
                    "missing".into(),
                );
            }
            if !q.regex.is_empty() {
                regex::Regex::new(&q.regex)
                    .map_err(|e| (format!("Match.HTTP.QueryParam[{i}].Regex"), e.to_string()))?;
            }
        }
        let methods = [
            "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH",
        ];
        for m in &http.methods {
            if !methods.contains(&m.as_str()) {
                return fail("Match.HTTP.Methods", format!("unknown method {m:?}"));
            }
        }
    }
    if let Some(d) = &route.destination {
        if d.numretries > MAX_RETRIES {
            return fail(
                "Destination.NumRetries",
                format!("{}; at most {MAX_RETRIES} (MAX_RETRIES)", d.numretries),
            );
        }
        if let Some(c) = d
            .retryonstatuscodes
            .iter()
            .find(|c| !(100..=599).contains(*c))
        {
            return fail(
                "Destination.RetryOnStatusCodes",
                format!("{c} is not an HTTP status"),
            );
        }
        if !d.prefixrewrite.is_empty()
            && !route
                .r#match
                .as_ref()
                .and_then(|m| m.http.as_ref())
                .is_some_and(|h| !h.pathprefix.is_empty() || !h.pathexact.is_empty())
        {
            return fail(
                "Destination.PrefixRewrite",
                "needs a PathPrefix or PathExact match".into(),
            );
        }
    }
    Ok(())
}

/// The most listeners one gateway may have, and services one listener.
pub const MAX_GATEWAY_LISTENERS: usize = 64;
pub const MAX_LISTENER_SERVICES: usize = 256;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct GatewayTls {
    pub enabled: bool,
    /// A certificate and key (PEM files on the gateway's host) presented
    /// instead of a leaf from the Connect CA (a mesh addition).
    pub certfile: String,
    pub keyfile: String,
}

impl GatewayTls {
    /// Checks the fields of a `TLS` block at `at`.
    fn check(&self, at: &str) -> Result<(), (String, String)> {
        if self.certfile.is_empty() != self.keyfile.is_empty() {
            return Err((at.into(), "give CertFile and KeyFile together".into()));
        }
        if !self.enabled && !self.certfile.is_empty() {
            return Err((
                format!("{at}.CertFile"),
                "a certificate needs Enabled = true".into(),
            ));
        }
        Ok(())
    }
}

impl IngressGateway {
    /// Whether listener `l` speaks TLS, and the certificate files it
    /// presents (empty: the gateway's leaf), the listener's over the
    /// gateway's.
    pub fn tls_of(&self, l: &IngressListener) -> (bool, String, String) {
        let own = l.tls.as_ref().filter(|t| t.enabled);
        let all = self.tls.as_ref().filter(|t| t.enabled);
        match own.or(all) {
            None => (false, String::new(), String::new()),
            Some(t) if t.certfile.is_empty() => match all.filter(|a| !a.certfile.is_empty()) {
                Some(a) => (true, a.certfile.clone(), a.keyfile.clone()),
                None => (true, String::new(), String::new()),
            },
            Some(t) => (true, t.certfile.clone(), t.keyfile.clone()),
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct IngressService {
    pub name: String,
    pub hosts: Vec<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct IngressListener {
    pub port: u32,
    pub protocol: String,
    pub services: Vec<IngressService>,
    pub tls: Option<GatewayTls>,
}

/// An `ingress-gateway` entry: listeners that let callers outside the
/// mesh reach services in it.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct IngressGateway {
    pub tls: Option<GatewayTls>,
    pub listeners: Vec<IngressListener>,
}

impl IngressListener {
    pub fn protocol(&self) -> String {
        if self.protocol.is_empty() {
            "tcp".into()
        } else {
            self.protocol.to_ascii_lowercase()
        }
    }
}

impl IngressService {
    /// The hosts a request for this service may name: as given, or
    /// `<service>.ingress.<domain>` and `<service>.ingress.<dc>.<domain>`.
    pub fn hosts_or_default(&self, domain: &str, datacenter: &str) -> Vec<String> {
        if !self.hosts.is_empty() {
            return self.hosts.iter().map(|h| h.to_ascii_lowercase()).collect();
        }
        let domain = domain.trim_end_matches('.');
        vec![
            format!("{}.ingress.{domain}", self.name),
            format!("{}.ingress.{datacenter}.{domain}", self.name),
        ]
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct LinkedService {
    pub name: String,
    pub cafile: String,
    pub certfile: String,
    pub keyfile: String,
    pub sni: String,
}

/// A `terminating-gateway` entry: services outside the mesh that mesh
/// services reach through the gateway.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct TerminatingGateway {
    pub services: Vec<LinkedService>,
}

fn host_ok(host: &str) -> bool {
    host == "*"
        || (!host.is_empty()
            && host.len() <= 253
            && host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.')))
}

/// Checks a gateway entry on its own.
pub fn validate_gateway(kind: &str, name: &str, body: &str) -> Result<(), ChainError> {
    let err = |field: String, message: String| Err(ChainError::entry(kind, name, &field, message));
    match kind {
        "ingress-gateway" => {
            let e: IngressGateway = parse(kind, name, body)?;
            if e.listeners.len() > MAX_GATEWAY_LISTENERS {
                return err(
                    "Listeners".into(),
                    format!("at most {MAX_GATEWAY_LISTENERS} (MAX_GATEWAY_LISTENERS)"),
                );
            }
            if let Some(t) = &e.tls {
                if let Err((f, m)) = t.check("TLS") {
                    return err(f, m);
                }
            }
            let mut ports = std::collections::BTreeSet::new();
            for (i, l) in e.listeners.iter().enumerate() {
                let at = |f: &str| format!("Listeners[{i}]{f}");
                if let Some(t) = &l.tls {
                    if let Err((f, m)) = t.check(&at(".TLS")) {
                        return err(f, m);
                    }
                }
                if l.port == 0 || l.port > 65535 {
                    return err(at(".Port"), format!("{} is not a port", l.port));
                }
                if !ports.insert(l.port) {
                    return err(
                        at(".Port"),
                        format!("port {} is used by two listeners", l.port),
                    );
                }
                let protocol = l.protocol();
                if !PROTOCOLS.contains(&protocol.as_str()) {
                    return err(
                        at(".Protocol"),
                        format!(
                            "unknown protocol {protocol:?} (one of: {})",
                            PROTOCOLS.join(", ")
                        ),
                    );
                }
                if l.services.is_empty() || l.services.len() > MAX_LISTENER_SERVICES {
                    return err(
                        at(".Services"),
                        format!("1 to {MAX_LISTENER_SERVICES} services (MAX_LISTENER_SERVICES)"),
                    );
                }
                if protocol == "tcp" && l.services.len() != 1 {
                    return err(
                        at(".Services"),
                        "a tcp listener fronts exactly one service".into(),
                    );
                }
                let mut seen_hosts = std::collections::BTreeSet::new();
                for (j, s) in l.services.iter().enumerate() {
                    if s.name.is_empty() || s.name == "*" {
                        return err(at(&format!(".Services[{j}].Name")), "name a service".into());
                    }
                    if protocol == "tcp" && !s.hosts.is_empty() {
                        return err(
                            at(&format!(".Services[{j}].Hosts")),
                            "hosts need an http listener".into(),
                        );
                    }
                    for h in &s.hosts {
                        if !host_ok(h) {
                            return err(
                                at(&format!(".Services[{j}].Hosts")),
                                format!("{h:?} is not a host name"),
                            );
                        }
                        if !seen_hosts.insert(h.to_ascii_lowercase()) {
                            return err(
                                at(&format!(".Services[{j}].Hosts")),
                                format!("host {h:?} is routed to two services"),
                            );
                        }
                    }
                }
            }
        }
        "terminating-gateway" => {
            let e: TerminatingGateway = parse(kind, name, body)?;
            for (i, s) in e.services.iter().enumerate() {
                if s.name.is_empty() {
                    return err(format!("Services[{i}].Name"), "name a service".into());
                }
                if s.certfile.is_empty() != s.keyfile.is_empty() {
                    return err(
                        format!("Services[{i}]"),
                        "give CertFile and KeyFile together".into(),
                    );
                }
            }
        }
        _ => {}
    }
    Ok(())
}
