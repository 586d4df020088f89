//! The agent's metrics. Code records through the `metrics` facade under the
//! names below (Consul's, where Consul has the same measure, so existing
//! dashboards work; `mesh.*` for what Consul lacks). This crate installs
//! the Prometheus recorder and renders both of Consul's formats:
//! Prometheus text (`?format=prometheus`) and the JSON of
//! `/v1/agent/metrics`.

use std::collections::BTreeMap;
use std::sync::OnceLock;
use std::time::Duration;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use serde_json::{json, Value};

pub use metrics::{counter, gauge, histogram};

// === names ===

/// HTTP API requests, timed, labelled `method` and `path` (the route).
pub const API_HTTP: &str = "consul.api.http";
/// Raft: entries applied through this leader.
pub const RAFT_APPLY: &str = "consul.raft.apply";
/// Raft: time from proposing a batch to its commit, on the leader.
pub const RAFT_COMMIT_TIME: &str = "consul.raft.commitTime";
/// Raft: this server became leader.
pub const RAFT_STATE_LEADER: &str = "consul.raft.state.leader";
/// Raft: this server became a candidate.
pub const RAFT_STATE_CANDIDATE: &str = "consul.raft.state.candidate";
/// Raft: milliseconds since a follower last heard from the leader.
pub const RAFT_LEADER_LAST_CONTACT: &str = "consul.raft.leader.lastContact";
/// Raft: the last log index, and the last applied one.
pub const RAFT_LAST_INDEX: &str = "consul.raft.last_index";
pub const RAFT_APPLIED_INDEX: &str = "consul.raft.applied_index";
/// Raft: voters in the configuration.
pub const RAFT_PEERS: &str = "consul.raft.peers";
/// Server RPC requests received (Raft, forwarding, reads).
pub const RPC_REQUEST: &str = "consul.rpc.request";
/// Blocking queries started.
pub const RPC_QUERY: &str = "consul.rpc.query";
/// Catalog writes, timed.
pub const CATALOG_REGISTER: &str = "consul.catalog.register";
pub const CATALOG_DEREGISTER: &str = "consul.catalog.deregister";
/// KV writes, timed.
pub const KVS_APPLY: &str = "consul.kvs.apply";
/// Transactions, timed.
pub const TXN_APPLY: &str = "consul.txn.apply";
/// DNS questions answered, timed.
pub const DNS_DOMAIN_QUERY: &str = "consul.dns.domain_query";
/// Autopilot: 1 when every server is healthy; servers that may fail.
pub const AUTOPILOT_HEALTHY: &str = "consul.autopilot.healthy";
pub const AUTOPILOT_FAILURE_TOLERANCE: &str = "consul.autopilot.failure_tolerance";
/// Gossip membership events.
pub const SERF_MEMBER_JOIN: &str = "consul.serf.member.join";
pub const SERF_MEMBER_LEFT: &str = "consul.serf.member.left";
pub const SERF_MEMBER_FAILED: &str = "consul.serf.member.failed";
/// Members of the LAN pool this agent sees alive.
pub const MEMBERLIST_MEMBERS: &str = "consul.memberlist.health.members";
/// The leader's catalog reconcile, timed.
pub const LEADER_RECONCILE: &str = "consul.leader.reconcile";
/// Process: resident memory, live tasks (Consul: goroutines).
pub const RUNTIME_ALLOC_BYTES: &str = "consul.runtime.alloc_bytes";
pub const RUNTIME_NUM_GOROUTINES: &str = "consul.runtime.num_goroutines";
/// mesh.d: reloads applied and refused.
pub const MESH_RECONCILE_APPLIED: &str = "mesh.reconcile.applied";
pub const MESH_RECONCILE_REFUSED: &str = "mesh.reconcile.refused";
/// Connect CA: staged rotations started on this leader.
pub const MESH_CA_ROTATIONS: &str = "mesh.ca.rotations";

/// Every name above, so the JSON format can give each its dotted form back.
pub const NAMES: &[&str] = &[
    API_HTTP,
    RAFT_APPLY,
    RAFT_COMMIT_TIME,
    RAFT_STATE_LEADER,
    RAFT_STATE_CANDIDATE,
    RAFT_LEADER_LAST_CONTACT,
    RAFT_LAST_INDEX,
    RAFT_APPLIED_INDEX,
    RAFT_PEERS,
    RPC_REQUEST,
    RPC_QUERY,
    CATALOG_REGISTER,
    CATALOG_DEREGISTER,
    KVS_APPLY,
    TXN_APPLY,
    DNS_DOMAIN_QUERY,
    AUTOPILOT_HEALTHY,
    AUTOPILOT_FAILURE_TOLERANCE,
    SERF_MEMBER_JOIN,
    SERF_MEMBER_LEFT,
    SERF_MEMBER_FAILED,
    MEMBERLIST_MEMBERS,
    LEADER_RECONCILE,
    RUNTIME_ALLOC_BYTES,
    RUNTIME_NUM_GOROUTINES,
    MESH_RECONCILE_APPLIED,
    MESH_RECONCILE_REFUSED,
    MESH_CA_ROTATIONS,
];

/// Milliseconds, as Consul's timers report.
pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

// === the recorder ===

struct Installed {
    handle: PrometheusHandle,
    prefix: String,
}

static INSTALLED: OnceLock<Installed> = OnceLock::new();

/// Installs the process's recorder (once; later calls keep the first
/// prefix). `prefix` replaces `consul` in every name (`telemetry {
/// metrics_prefix }`). Summaries keep Consul's quantiles.
pub fn install(prefix: &str) {
    INSTALLED.get_or_init(|| {
        let builder = PrometheusBuilder::new()
            .set_quantiles(&[0.5, 0.9, 0.99])
            .expect("fixed quantiles are valid");
        let handle = match builder.install_recorder() {
            Ok(h) => h,
            // Another recorder (a test harness) owns the facade: keep ours
            // private, so rendering still works.
            Err(_) => PrometheusBuilder::new().build_recorder().handle(),
        };
        let upkeep = handle.clone();
        std::thread::Builder::new()
            .name("metrics-upkeep".into())
            .spawn(move || loop {
                std::thread::sleep(Duration::from_secs(5));
                upkeep.run_upkeep();
            })
            .expect("spawn the metrics upkeep thread");
        Installed {
            handle,
            prefix: prefix.to_string(),
        }
    });
}

/// Whether `install` ran.
pub fn installed() -> bool {
    INSTALLED.get().is_some()
}

/// Process gauges read at scrape time.
fn sample_runtime() {
    if let Ok(statm) = std::fs::read_to_string("/proc/self/statm") {
        if let Some(pages) = statm
            .split_whitespace()
            .nth(1)
            .and_then(|p| p.parse::<f64>().ok())
        {
            gauge!(RUNTIME_ALLOC_BYTES).set(pages * 4096.0);
        }
    }
    if let Ok(rt) = tokio::runtime::Handle::try_current() {
        gauge!(RUNTIME_NUM_GOROUTINES).set(rt.metrics().num_alive_tasks() as f64);
    }
}

/// Every metric in Prometheus' text format, with the configured prefix.
pub fn prometheus_text() -> String {
    let Some(inst) = INSTALLED.get() else {
        return String::new();
    };
    sample_runtime();
    let text = inst.handle.render();
    if inst.prefix == "consul" {
        return text;
    }
    let to = format!("{}_", inst.prefix);
    let mut out = String::with_capacity(text.len());
    for line in text.lines() {
        let renamed = match line.strip_prefix("consul_") {
            Some(rest) => format!("{to}{rest}"),
            None => ["# TYPE consul_", "# HELP consul_"]
                .iter()
                .find_map(|p| {
                    line.strip_prefix(p)
                        .map(|rest| format!("{}{to}{rest}", &p[..7]))
                })
                .unwrap_or_else(|| line.to_string()),
        };
        out.push_str(&renamed);
        out.push('\n');
    }
    out
}

// === Consul's JSON ===

/// One parsed sample line.
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

fn parse_line(line: &str) -> Option<Sample> {
    let (head, value) = line.rsplit_once(' ')?;
    let value: f64 = value.parse().ok()?;
    let (name, labels) = match head.split_once('{') {
        Some((n, rest)) => {
            let body = rest.strip_suffix('}')?;
            let mut labels = BTreeMap::new();
            for pair in split_labels(body) {
                let (k, v) = pair.split_once('=')?;
                labels.insert(k.to_string(), v.trim_matches('"').replace("\\\"", "\""));
            }
            (n.to_string(), labels)
        }
        None => (head.to_string(), BTreeMap::new()),
    };
    Some(Sample {
        name,
        labels,
        value,
    })
}

/// Splits `a="x",b="y,z"` at the commas between labels.
fn split_labels(body: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut start, mut quoted, mut escaped) = (0, false, false);
    for (i, c) in body.char_indices() {
        match c {
            '\\' if quoted => escaped = !escaped,
            '"' if !escaped => quoted = !quoted,
            ',' if !quoted => {
                out.push(&body[start..i]);
                start = i + 1;
            }
            _ => escaped = false,
        }
    }
    if start < body.len() {
        out.push(&body[start..]);
    }
    out
}

/// The dotted name for a Prometheus name: the one in `NAMES` it came from,
/// else the Prometheus name itself.
fn dotted(prom: &str, prefix: &str) -> String {
    for n in NAMES {
        let sanitized = n.replace('.', "_");
        let with_prefix = match sanitized.strip_prefix("consul_") {
            Some(rest) => format!("{prefix}_{rest}"),
            None => sanitized.clone(),
        };
        if with_prefix == prom {
            return match n.strip_prefix("consul.") {
                Some(rest) => format!("{prefix}.{rest}"),
                None => n.to_string(),
            };
        }
    }
    prom.to_string()
}

/// A timer's labels, sum and count, gathered from its `_sum`/`_count` lines.
type Summary = (BTreeMap<String, String>, f64, f64);

/// Prometheus text (ours plus `extra`) in the JSON shape of Consul's
/// `/v1/agent/metrics`: Gauges, Counters and Samples (timers).
pub fn consul_json(extra: &str) -> Value {
    let prefix = INSTALLED.get().map_or("consul", |i| i.prefix.as_str());
    let text = format!("{}{extra}", prometheus_text());
    let mut kinds: BTreeMap<String, String> = BTreeMap::new();
    let mut gauges = Vec::new();
    let mut counters = Vec::new();
    let mut summaries: BTreeMap<(String, String), Summary> = BTreeMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut w = rest.split_whitespace();
            if let (Some(n), Some(k)) = (w.next(), w.next()) {
                kinds.insert(n.to_string(), k.to_string());
            }
            continue;
        }
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let Some(s) = parse_line(line) else { continue };
        let base = s
            .name
            .strip_suffix("_sum")
            .or_else(|| s.name.strip_suffix("_count"))
            .filter(|b| {
                kinds
                    .get(*b)
                    .is_some_and(|k| k == "summary" || k == "histogram")
            })
            .map(str::to_string);
        match (base, kinds.get(&s.name).map(String::as_str)) {
            (Some(base), _) => {
                let mut labels = s.labels.clone();
                labels.remove("quantile");
                let key = (
                    base.clone(),
                    serde_json::to_string(&labels).unwrap_or_default(),
                );
                let entry = summaries.entry(key).or_insert((labels, 0.0, 0.0));
                if s.name.ends_with("_sum") {
                    entry.1 = s.value;
                } else {
                    entry.2 = s.value;
                }
            }
            (None, Some("counter")) => counters.push(json!({
                "Name": dotted(&s.name, prefix),
                "Count": s.value,
                "Sum": s.value,
                "Rate": 0.0,
                "Labels": s.labels,
            })),
            (None, Some("gauge")) | (None, None) => gauges.push(json!({
                "Name": dotted(&s.name, prefix),
                "Value": s.value,
                "Labels": s.labels,
            })),
            _ => {}
        }
    }
    let samples: Vec<Value> = summaries
        .into_iter()
        .map(|((name, _), (labels, sum, count))| {
            json!({
                "Name": dotted(&name, prefix),
                "Count": count,
                "Sum": sum,
                "Mean": if count > 0.0 { sum / count } else { 0.0 },
                "Labels": labels,
            })
        })
        .collect();
    json!({
        "Timestamp": timestamp(),
        "Gauges": gauges,
        "Points": [],
        "Counters": counters,
        "Samples": samples,
    })
}

/// Now as Consul writes it (`2006-01-02 15:04:05 +0000 UTC`), to the second.
fn timestamp() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs() as i64;
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} +0000 UTC",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

/// Days since 1970-01-01 → (year, month, day), proleptic Gregorian.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prometheus_text_becomes_consul_json() {
        let text = "# TYPE consul_kvs_apply summary\n\
                    consul_kvs_apply{quantile=\"0.5\"} 1.5\n\
                    consul_kvs_apply_sum 6\n\
                    consul_kvs_apply_count 3\n\
                    # TYPE consul_raft_apply counter\n\
                    consul_raft_apply 7\n\
                    # TYPE consul_runtime_alloc_bytes gauge\n\
                    consul_runtime_alloc_bytes 1024\n\
                    # TYPE consul_api_http summary\n\
                    consul_api_http_sum{method=\"GET\",path=\"/v1/kv/{*key}\"} 2\n\
                    consul_api_http_count{method=\"GET\",path=\"/v1/kv/{*key}\"} 4\n";
        let v = consul_json(text);
        let sample = v["Samples"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["Name"] == "consul.kvs.apply")
            .unwrap();
        assert_eq!(sample["Count"], 3.0);
        assert_eq!(sample["Mean"], 2.0);
        assert!(v["Counters"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["Name"] == "consul.raft.apply" && c["Count"] == 7.0));
        assert!(v["Gauges"]
            .as_array()
            .unwrap()
            .iter()
            .any(|g| g["Name"] == "consul.runtime.alloc_bytes"));
        let http = v["Samples"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["Name"] == "consul.api.http")
            .unwrap();
        assert_eq!(http["Labels"]["path"], "/v1/kv/{*key}");
    }

    #[test]
    fn dates_are_civil() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(20_790), (2026, 12, 3));
    }
}

// === log lines for `/v1/agent/monitor` ===

/// Live log lines, for whoever streams `/v1/agent/monitor`.
pub mod monitor {
    use std::sync::atomic::{AtomicU8, Ordering};
    use std::sync::OnceLock;

    use tokio::sync::broadcast;

    /// Lines buffered per watcher before a slow one starts missing lines.
    pub const BUFFER_LINES: usize = 1024;

    /// A formatted log line and its level (1 error … 5 trace).
    #[derive(Debug, Clone)]
    pub struct Line {
        pub level: u8,
        pub text: String,
    }

    static HUB: OnceLock<broadcast::Sender<Line>> = OnceLock::new();
    /// The most verbose level any watcher asked for (0: nobody watches).
    static WANTED: AtomicU8 = AtomicU8::new(0);

    fn hub() -> &'static broadcast::Sender<Line> {
        HUB.get_or_init(|| broadcast::channel(BUFFER_LINES).0)
    }

    /// Level names as Consul's `-log-level` takes them.
    pub fn level_of(name: &str) -> Option<u8> {
        match name.to_ascii_lowercase().as_str() {
            "error" | "err" => Some(1),
            "warn" | "warning" => Some(2),
            "info" => Some(3),
            "debug" => Some(4),
            "trace" => Some(5),
            _ => None,
        }
    }

    /// Whether a line at `level` has a reader (checked before formatting).
    pub fn wanted(level: u8) -> bool {
        level <= WANTED.load(Ordering::Relaxed)
    }

    pub fn publish(level: u8, text: String) {
        let _ = hub().send(Line { level, text });
    }

    /// A watcher at `level`; drop it to stop.
    pub struct Watch {
        pub rx: broadcast::Receiver<Line>,
        pub level: u8,
    }

    impl Drop for Watch {
        fn drop(&mut self) {
            // The last watcher gone (the receiver count still includes ours).
            if hub().receiver_count() <= 1 {
                WANTED.store(0, Ordering::Relaxed);
            }
        }
    }

    pub fn watch(level: u8) -> Watch {
        WANTED.fetch_max(level, Ordering::Relaxed);
        Watch {
            rx: hub().subscribe(),
            level,
        }
    }

    /// Watchers now streaming.
    pub fn watchers() -> usize {
        hub().receiver_count()
    }
}
