//! Check definitions, and reading them from Consul's JSON.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use mesh_types::CheckStatus;
use serde_json::Value;

use crate::{duration::parse_duration, CheckError};

/// Timeout of a probe when the definition gives none (Consul's default).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// Timeout of a script check when the definition gives none (Consul's default).
pub const DEFAULT_SCRIPT_TIMEOUT: Duration = Duration::from_secs(30);
/// Shortest interval a parsed definition keeps; shorter ones are raised to it, as Consul does.
pub const MIN_INTERVAL: Duration = Duration::from_secs(1);

/// A health check as registered on the agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckDefinition {
    /// Unique on the node (`CheckID` in the catalog).
    pub id: String,
    /// Human name; may be empty when the JSON had none (the caller fills Consul's default).
    pub name: String,
    /// The service this check belongs to; empty for a node-level check.
    pub service_id: String,
    /// Free text for humans.
    pub notes: String,
    /// What the check probes.
    pub kind: CheckKind,
    /// Time between probes (unused by TTL checks).
    pub interval: Duration,
    /// How long one probe may take before it counts as failed.
    pub timeout: Duration,
    /// Status before the first result (Consul starts checks critical).
    pub status: CheckStatus,
    /// Consecutive successes needed before the check reports passing.
    pub success_before_passing: u32,
    /// Consecutive failures needed before it reports warning (0: same as critical).
    pub failures_before_warning: u32,
    /// Consecutive failures needed before it reports critical.
    pub failures_before_critical: u32,
    /// Deregister the service once this check has been critical this long (acted on by the agent).
    pub deregister_critical_service_after: Option<Duration>,
}

/// The probe a check runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckKind {
    /// An HTTP request: 2xx passing, 429 warning, anything else critical.
    Http {
        /// `http://` or `https://` URL.
        url: String,
        /// Request method, `GET` by default.
        method: String,
        /// Extra request headers.
        headers: BTreeMap<String, Vec<String>>,
        /// Request body, sent when not empty.
        body: String,
        /// Accept any server certificate.
        tls_skip_verify: bool,
    },
    /// A TCP connect to `host:port`.
    Tcp {
        /// `host:port`.
        addr: String,
    },
    /// Status pushed by the application; critical when not refreshed within `ttl`.
    Ttl {
        /// How long a pushed status stays valid.
        ttl: Duration,
    },
    /// A command: exit 0 passing, 1 warning, anything else critical.
    Script {
        /// Program and its arguments, run without a shell.
        args: Vec<String>,
    },
    /// `grpc.health.v1.Health/Check`: SERVING passing, anything else critical.
    Grpc {
        /// `host:port`, optionally followed by `/service`.
        target: String,
        /// Speak TLS (`GRPCUseTLS`), verifying the server against the system's roots.
        use_tls: bool,
        /// With `use_tls`, accept any server certificate (`TLSSkipVerify`).
        tls_skip_verify: bool,
    },
}

// === impl CheckDefinition ===

impl CheckDefinition {
    /// A definition with Consul's defaults: named after its ID, 10s interval, starting critical.
    pub fn new(id: impl Into<String>, kind: CheckKind) -> CheckDefinition {
        let id = id.into();
        let timeout = match kind {
            CheckKind::Script { .. } => DEFAULT_SCRIPT_TIMEOUT,
            _ => DEFAULT_TIMEOUT,
        };
        CheckDefinition {
            name: id.clone(),
            id,
            service_id: String::new(),
            notes: String::new(),
            kind,
            interval: Duration::from_secs(10),
            timeout,
            status: CheckStatus::Critical,
            success_before_passing: 0,
            failures_before_warning: 0,
            failures_before_critical: 0,
            deregister_critical_service_after: None,
        }
    }

    /// Consul's `Type` of the check: "http", "tcp", "ttl", "script" or "grpc".
    pub fn type_name(&self) -> &'static str {
        self.kind.type_name()
    }

    /// Reads Consul's JSON check definition (an `agent/check/register` body, or a
    /// service's `Check`/`Checks` entry).
    ///
    /// Keys match case-insensitively and ignoring underscores, so python-consul's
    /// lowercase keys and HCL's snake_case work. `default_id` is used when the
    /// JSON has neither `ID` nor `CheckID` (then `Name` is). Durations are Go
    /// strings ("10s") or integer nanoseconds. Unknown keys are ignored, as Consul
    /// ignores them; check types mesh does not run are refused by name.
    pub fn from_consul_json(v: &Value, default_id: &str) -> Result<CheckDefinition, CheckError> {
        let obj = v.as_object().ok_or_else(|| {
            CheckError::Invalid(format!("expected a JSON object, got {}", json_type(v)))
        })?;
        let mut fields: HashMap<String, &Value> = HashMap::new();
        for (key, value) in obj {
            if value.is_null() {
                continue;
            }
            fields.entry(normalize(key)).or_insert(value);
        }
        let f = Fields(fields);

        for (key, field, what) in UNSUPPORTED {
            if f.present(key) {
                return Err(CheckError::field(
                    field,
                    format!(
                        "{what} checks are not supported by mesh; use HTTP, TCP, TTL, Args or GRPC"
                    ),
                ));
            }
        }

        let name = f.string("name", "Name")?.unwrap_or_default();
        let id = f
            .string("id", "ID")?
            .or(f.string("checkid", "CheckID")?)
            .filter(|s| !s.is_empty())
            .or_else(|| Some(default_id.to_string()).filter(|s| !s.is_empty()))
            .or_else(|| Some(name.clone()).filter(|s| !s.is_empty()))
            .ok_or_else(|| CheckError::field("ID", "missing: give the check an ID or a Name"))?;

        let kind = parse_kind(&f)?;
        let interval = f.duration("interval", "Interval")?.unwrap_or_default();
        let interval = match kind {
            CheckKind::Ttl { .. } => {
                if !interval.is_zero() {
                    return Err(CheckError::field(
                        "Interval",
                        "must not be set on a TTL check: its status is pushed, not probed",
                    ));
                }
                interval
            }
            _ if interval.is_zero() => {
                return Err(CheckError::field(
                    "Interval",
                    format!("required for {} checks (e.g. \"10s\")", kind_label(&kind)),
                ));
            }
            _ if interval < MIN_INTERVAL => {
                tracing::warn!(check_id = %id, ?interval, "check interval too small, using 1s");
                MIN_INTERVAL
            }
            _ => interval,
        };
        let timeout = f
            .duration("timeout", "Timeout")?
            .filter(|t| !t.is_zero())
            .unwrap_or(match kind {
                CheckKind::Script { .. } => DEFAULT_SCRIPT_TIMEOUT,
                _ => DEFAULT_TIMEOUT,
            });
        let status = match f.string("status", "Status")?.as_deref() {
            None | Some("") => CheckStatus::Critical,
            Some(s) => parse_status(s).ok_or_else(|| {
                CheckError::field(
                    "Status",
                    format!("unknown status {s:?}; expected passing, warning or critical"),
                )
            })?,
        };

        Ok(CheckDefinition {
            id,
            name,
            service_id: f.string("serviceid", "ServiceID")?.unwrap_or_default(),
            notes: f.string("notes", "Notes")?.unwrap_or_default(),
            kind,
            interval,
            timeout,
            status,
            success_before_passing: f.count("successbeforepassing", "SuccessBeforePassing")?,
            failures_before_warning: f.count("failuresbeforewarning", "FailuresBeforeWarning")?,
            failures_before_critical: f
                .count("failuresbeforecritical", "FailuresBeforeCritical")?,
            deregister_critical_service_after: f
                .duration(
                    "deregistercriticalserviceafter",
                    "DeregisterCriticalServiceAfter",
                )?
                .filter(|d| !d.is_zero()),
        })
    }
}

impl CheckKind {
    /// Consul's `Type` for this kind of check.
    pub fn type_name(&self) -> &'static str {
        match self {
            CheckKind::Http { .. } => "http",
            CheckKind::Tcp { .. } => "tcp",
            CheckKind::Ttl { .. } => "ttl",
            CheckKind::Script { .. } => "script",
            CheckKind::Grpc { .. } => "grpc",
        }
    }
}

/// Keys of check types Consul has and mesh does not run: (normalized key, field, type).
const UNSUPPORTED: &[(&str, &str, &str)] = &[
    ("aliasservice", "AliasService", "alias"),
    ("aliasnode", "AliasNode", "alias"),
    ("h2ping", "H2PING", "H2PING"),
    ("udp", "UDP", "UDP"),
    ("dockercontainerid", "DockerContainerID", "Docker"),
    ("osservice", "OSService", "OS service"),
];

fn parse_kind(f: &Fields<'_>) -> Result<CheckKind, CheckError> {
    let http = f.string("http", "HTTP")?.filter(|s| !s.is_empty());
    let tcp = f.string("tcp", "TCP")?.filter(|s| !s.is_empty());
    let ttl = f.duration("ttl", "TTL")?.filter(|d| !d.is_zero());
    let args = match f.strings("args", "Args")? {
        Some(a) if !a.is_empty() => Some(a),
        _ => f
            .strings("scriptargs", "ScriptArgs")?
            .filter(|a| !a.is_empty()),
    };
    let grpc = f.string("grpc", "GRPC")?.filter(|s| !s.is_empty());

    let given: Vec<&str> = [
        http.as_ref().map(|_| "HTTP"),
        tcp.as_ref().map(|_| "TCP"),
        ttl.as_ref().map(|_| "TTL"),
        args.as_ref().map(|_| "Args"),
        grpc.as_ref().map(|_| "GRPC"),
    ]
    .into_iter()
    .flatten()
    .collect();
    if given.len() > 1 {
        return Err(CheckError::Invalid(format!(
            "exactly one of HTTP, TCP, TTL, Args, GRPC may be set, got {}",
            given.join(" and ")
        )));
    }

    if let Some(url) = http {
        check_url(&url)?;
        let method = f.string("method", "Method")?.filter(|m| !m.is_empty());
        let method = method.unwrap_or_else(|| "GET".to_string());
        if hyper::Method::from_bytes(method.as_bytes()).is_err() {
            return Err(CheckError::field(
                "Method",
                format!("invalid HTTP method {method:?}"),
            ));
        }
        return Ok(CheckKind::Http {
            url,
            method,
            headers: f.headers()?,
            body: f.string("body", "Body")?.unwrap_or_default(),
            tls_skip_verify: f.bool("tlsskipverify", "TLSSkipVerify")?,
        });
    }
    if let Some(addr) = tcp {
        check_host_port(&addr).map_err(|m| CheckError::field("TCP", m))?;
        return Ok(CheckKind::Tcp { addr });
    }
    if let Some(ttl) = ttl {
        return Ok(CheckKind::Ttl { ttl });
    }
    if let Some(args) = args {
        if args[0].is_empty() {
            return Err(CheckError::field(
                "Args",
                "the first element (the program) is empty",
            ));
        }
        return Ok(CheckKind::Script { args });
    }
    if let Some(target) = grpc {
        let host_port = target.split_once('/').map_or(target.as_str(), |(hp, _)| hp);
        check_host_port(host_port).map_err(|m| {
            CheckError::field(
                "GRPC",
                format!("{m} (form: host:port or host:port/service)"),
            )
        })?;
        return Ok(CheckKind::Grpc {
            target,
            use_tls: f.bool("grpcusetls", "GRPCUseTLS")?,
            tls_skip_verify: f.bool("tlsskipverify", "TLSSkipVerify")?,
        });
    }
    Err(CheckError::Invalid(
        "no check type: set one of HTTP, TCP, TTL, Args (script) or GRPC".to_string(),
    ))
}

fn check_url(url: &str) -> Result<(), CheckError> {
    let parsed = url::Url::parse(url)
        .map_err(|e| CheckError::field("HTTP", format!("invalid URL {url:?}: {e}")))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(CheckError::field(
            "HTTP",
            format!("invalid URL {url:?}: scheme must be http or https"),
        ));
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err(CheckError::field(
            "HTTP",
            format!("invalid URL {url:?}: no host"),
        ));
    }
    Ok(())
}

/// Validates `host:port` (IPv6 hosts in brackets), as Go's net.SplitHostPort would.
pub(crate) fn check_host_port(addr: &str) -> Result<(), String> {
    let (host, port) = addr
        .rsplit_once(':')
        .ok_or_else(|| format!("expected host:port, got {addr:?}"))?;
    if host.contains(':') && !(host.starts_with('[') && host.ends_with(']')) {
        return Err(format!(
            "expected host:port with an IPv6 host in brackets, got {addr:?}"
        ));
    }
    port.parse::<u16>()
        .map_err(|_| format!("invalid port {port:?} in {addr:?}"))?;
    Ok(())
}

fn parse_status(s: &str) -> Option<CheckStatus> {
    match s.to_ascii_lowercase().as_str() {
        "passing" => Some(CheckStatus::Passing),
        "warning" => Some(CheckStatus::Warning),
        "critical" => Some(CheckStatus::Critical),
        _ => None,
    }
}

fn kind_label(kind: &CheckKind) -> &'static str {
    match kind {
        CheckKind::Http { .. } => "HTTP",
        CheckKind::Tcp { .. } => "TCP",
        CheckKind::Ttl { .. } => "TTL",
        CheckKind::Script { .. } => "script",
        CheckKind::Grpc { .. } => "gRPC",
    }
}

/// `ServiceID`, `service_id` and `serviceid` are the same key.
fn normalize(key: &str) -> String {
    key.chars()
        .filter(|c| *c != '_' && *c != '-')
        .flat_map(char::to_lowercase)
        .collect()
}

fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

// === impl Fields ===

/// The JSON object's non-null values under normalized keys.
struct Fields<'a>(HashMap<String, &'a Value>);

impl Fields<'_> {
    fn present(&self, key: &str) -> bool {
        match self.0.get(key) {
            None => false,
            Some(Value::String(s)) => !s.is_empty(),
            Some(Value::Bool(b)) => *b,
            Some(_) => true,
        }
    }

    fn string(&self, key: &str, field: &str) -> Result<Option<String>, CheckError> {
        match self.0.get(key) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(v) => Err(CheckError::field(
                field,
                format!("expected a string, got {}", json_type(v)),
            )),
        }
    }

    fn bool(&self, key: &str, field: &str) -> Result<bool, CheckError> {
        match self.0.get(key) {
            None => Ok(false),
            Some(Value::Bool(b)) => Ok(*b),
            Some(Value::String(s)) if s.eq_ignore_ascii_case("true") => Ok(true),
            Some(Value::String(s)) if s.eq_ignore_ascii_case("false") || s.is_empty() => Ok(false),
            Some(v) => Err(CheckError::field(
                field,
                format!("expected true or false, got {}", render(v)),
            )),
        }
    }

    fn count(&self, key: &str, field: &str) -> Result<u32, CheckError> {
        let bad = |v: &Value| {
            CheckError::field(
                field,
                format!("expected a non-negative integer, got {}", render(v)),
            )
        };
        match self.0.get(key) {
            None => Ok(0),
            Some(v @ Value::Number(n)) => n
                .as_u64()
                .and_then(|n| u32::try_from(n).ok())
                .ok_or_else(|| bad(v)),
            Some(v @ Value::String(s)) => s.trim().parse().map_err(|_| bad(v)),
            Some(v) => Err(bad(v)),
        }
    }

    fn duration(&self, key: &str, field: &str) -> Result<Option<Duration>, CheckError> {
        match self.0.get(key) {
            None => Ok(None),
            Some(Value::String(s)) if s.is_empty() => Ok(None),
            Some(Value::String(s)) => parse_duration(s)
                .map(Some)
                .map_err(|e| CheckError::field(field, e)),
            // Integers are nanoseconds, as Go's time.Duration marshals them.
            Some(Value::Number(n)) => {
                if let Some(ns) = n.as_u64() {
                    Ok(Some(Duration::from_nanos(ns)))
                } else if let Some(f) = n.as_f64().filter(|f| *f >= 0.0 && f.is_finite()) {
                    Ok(Some(Duration::from_nanos(f as u64)))
                } else {
                    Err(CheckError::field(
                        field,
                        format!("invalid duration {n}: must not be negative"),
                    ))
                }
            }
            Some(v) => Err(CheckError::field(
                field,
                format!(
                    "expected a duration like \"10s\" or integer nanoseconds, got {}",
                    json_type(v)
                ),
            )),
        }
    }

    fn strings(&self, key: &str, field: &str) -> Result<Option<Vec<String>>, CheckError> {
        match self.0.get(key) {
            None => Ok(None),
            Some(Value::Array(items)) => items
                .iter()
                .enumerate()
                .map(|(i, item)| match item {
                    Value::String(s) => Ok(s.clone()),
                    other => Err(CheckError::field(
                        &format!("{field}[{i}]"),
                        format!("expected a string, got {}", json_type(other)),
                    )),
                })
                .collect::<Result<Vec<_>, _>>()
                .map(Some),
            Some(v) => Err(CheckError::field(
                field,
                format!("expected an array of strings, got {}", json_type(v)),
            )),
        }
    }

    /// `Header`: an object of name to a list of values (a lone string is taken as one value).
    fn headers(&self) -> Result<BTreeMap<String, Vec<String>>, CheckError> {
        let Some(v) = self.0.get("header") else {
            return Ok(BTreeMap::new());
        };
        let Value::Object(map) = v else {
            return Err(CheckError::field(
                "Header",
                format!(
                    "expected an object of name to list of values, got {}",
                    json_type(v)
                ),
            ));
        };
        let mut out = BTreeMap::new();
        for (name, values) in map {
            let field = format!("Header.{name}");
            if hyper::header::HeaderName::from_bytes(name.as_bytes()).is_err() {
                return Err(CheckError::field(&field, "invalid header name"));
            }
            let values = match values {
                Value::Null => Vec::new(),
                Value::String(s) => vec![s.clone()],
                Value::Array(items) => items
                    .iter()
                    .map(|item| match item {
                        Value::String(s) => Ok(s.clone()),
                        other => Err(CheckError::field(
                            &field,
                            format!("expected a list of strings, got {} in it", json_type(other)),
                        )),
                    })
                    .collect::<Result<_, _>>()?,
                other => {
                    return Err(CheckError::field(
                        &field,
                        format!("expected a list of strings, got {}", json_type(other)),
                    ))
                }
            };
            for value in &values {
                if hyper::header::HeaderValue::from_str(value).is_err() {
                    return Err(CheckError::field(
                        &field,
                        format!("invalid header value {value:?}"),
                    ));
                }
            }
            out.insert(name.clone(), values);
        }
        Ok(out)
    }
}

/// A JSON value quoted for an error message, kept short.
fn render(v: &Value) -> String {
    let s = v.to_string();
    if s.len() > 40 {
        format!("{}…", crate::output::head(s.as_bytes(), 40))
    } else {
        s
    }
}
