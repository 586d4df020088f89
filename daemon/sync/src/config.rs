//! `mesh sync` configuration: consul-terraform-sync's language (HCL or JSON),
//! read with positions so every error names file:line:col.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use mesh_config::{ConfigError, Document, Format, OneOrMany};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// CTS's API port.
pub const DEFAULT_PORT: u16 = 8558;
/// How many tasks one `mesh sync` runs at most (config files and API together).
pub const MAX_TASKS: usize = 1_000;
/// Default for `max_concurrent_runs`: terraform runs at the same time.
pub const DEFAULT_MAX_CONCURRENT_RUNS: usize = 4;
/// Longest task name; it becomes a directory and a Terraform workspace name.
pub const MAX_TASK_NAME_BYTES: usize = 128;

// === what the files say ===

/// One config file as written.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub log_level: Option<String>,
    pub port: Option<u16>,
    /// Address the API listens on (mesh's addition; CTS listens everywhere).
    pub bind_address: Option<String>,
    pub working_dir: Option<PathBuf>,
    pub id: Option<String>,
    pub consul: Option<MeshConnConfig>,
    /// `mesh { }`: the same as `consul { }`.
    pub mesh: Option<MeshConnConfig>,
    pub driver: Option<DriverConfig>,
    #[serde(default)]
    pub terraform_provider: BTreeMap<String, OneOrMany<Map<String, Value>>>,
    pub buffer_period: Option<BufferPeriodConfig>,
    /// Default drift check for tasks without their own.
    pub drift_check: Option<DriftCheckConfig>,
    pub max_concurrent_runs: Option<usize>,
    #[serde(default)]
    pub task: OneOrMany<TaskConfig>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct MeshConnConfig {
    pub address: Option<String>,
    pub token: Option<String>,
    pub tls: Option<MeshTlsConfig>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct MeshTlsConfig {
    pub enabled: Option<bool>,
    pub ca_cert: Option<PathBuf>,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    pub verify: Option<bool>,
    pub server_name: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DriverConfig {
    pub terraform: Option<TerraformDriverConfig>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TerraformDriverConfig {
    /// The directory that holds `terraform`, or the binary itself.
    pub path: Option<PathBuf>,
    pub log: Option<bool>,
    pub persist_log: Option<bool>,
    pub working_dir: Option<PathBuf>,
    #[serde(default)]
    pub required_providers: BTreeMap<String, Value>,
    #[serde(default)]
    pub backend: BTreeMap<String, Map<String, Value>>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct BufferPeriodConfig {
    pub enabled: Option<bool>,
    pub min: Option<String>,
    pub max: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DriftCheckConfig {
    pub enabled: Option<bool>,
    pub interval: Option<String>,
}

/// A `task { }` block, and the JSON body of `POST /v1/tasks`.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TaskConfig {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub description: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    #[serde(default)]
    pub module: String,
    /// CTS's old name for `module`.
    #[serde(default, skip_serializing)]
    pub source: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    #[serde(default)]
    pub providers: Vec<String>,
    #[serde(default)]
    pub variable_files: Vec<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub buffer_period: Option<BufferPeriodConfig>,
    #[serde(default)]
    pub condition: ConditionConfig,
    #[serde(default)]
    pub module_input: ModuleInputConfig,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub working_dir: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub drift_check: Option<DriftCheckConfig>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ConditionConfig {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub services: Option<ServicesConfig>,
    #[serde(rename = "catalog-services", skip_serializing_if = "Option::is_none")]
    pub catalog_services: Option<CatalogServicesConfig>,
    #[serde(rename = "consul-kv", skip_serializing_if = "Option::is_none")]
    pub consul_kv: Option<KvConfig>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub schedule: Option<ScheduleConfig>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ModuleInputConfig {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub services: Option<ServicesConfig>,
    #[serde(rename = "consul-kv", skip_serializing_if = "Option::is_none")]
    pub consul_kv: Option<KvConfig>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ServicesConfig {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub names: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub regexp: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub filter: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub datacenter: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub use_as_module_input: Option<bool>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub cts_user_defined_meta: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CatalogServicesConfig {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub regexp: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub datacenter: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub node_meta: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub use_as_module_input: Option<bool>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct KvConfig {
    #[serde(default)]
    pub path: String,
    #[serde(default)]
    pub recurse: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub datacenter: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub use_as_module_input: Option<bool>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ScheduleConfig {
    #[serde(default)]
    pub cron: String,
}

// === what mesh sync runs ===

/// A buffer period: wait `min` after the last change, never more than `max`
/// after the first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BufferPeriod {
    pub min: Duration,
    pub max: Duration,
}

/// A place in the catalog or KV a task reads.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SourceSpec {
    /// Healthy instances of these services (`names`), or of every service
    /// whose name matches `regexp`.
    Services {
        names: Vec<String>,
        regexp: Option<String>,
        filter: Option<String>,
        datacenter: Option<String>,
        user_meta: BTreeMap<String, String>,
    },
    /// Service names and their tags.
    CatalogServices {
        regexp: Option<String>,
        datacenter: Option<String>,
        node_meta: BTreeMap<String, String>,
    },
    /// One key, or every key under a prefix.
    Kv {
        path: String,
        recurse: bool,
        datacenter: Option<String>,
    },
}

impl SourceSpec {
    /// The module variable this source fills.
    pub fn variable(&self) -> &'static str {
        match self {
            SourceSpec::Services { .. } => "services",
            SourceSpec::CatalogServices { .. } => "catalog_services",
            SourceSpec::Kv { .. } => "consul_kv",
        }
    }
}

/// What makes a task run.
#[derive(Debug, Clone)]
pub enum Trigger {
    /// A change in this source (after the buffer period).
    Source(SourceSpec),
    /// A cron schedule.
    Schedule(Box<croner::Cron>),
}

/// A validated task.
#[derive(Debug, Clone)]
pub struct Task {
    /// The task as written, shown by the API.
    pub def: TaskConfig,
    pub name: String,
    pub enabled: bool,
    pub module: String,
    pub trigger: Trigger,
    /// Whether the trigger source's data is passed to the module.
    pub trigger_is_input: bool,
    /// Extra inputs (`module_input` blocks): read, never triggering.
    pub inputs: Vec<SourceSpec>,
    pub buffer: Option<BufferPeriod>,
    pub drift_interval: Option<Duration>,
    /// Absolute paths of `variable_files`.
    pub variable_files: Vec<PathBuf>,
    pub working_dir: PathBuf,
}

impl Task {
    /// Every source the task reads: the trigger first, then module inputs.
    pub fn sources(&self) -> Vec<SourceSpec> {
        let mut all = Vec::new();
        if let Trigger::Source(s) = &self.trigger {
            all.push(s.clone());
        }
        all.extend(self.inputs.iter().cloned());
        all
    }
}

/// How to reach the mesh HTTP API.
#[derive(Debug, Clone, Default)]
pub struct MeshConn {
    /// `host:port` or a URL.
    pub address: String,
    pub token: Option<String>,
    pub tls: bool,
    pub ca_file: Option<PathBuf>,
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
}

impl MeshConn {
    /// `http(s)://host:port`.
    pub fn url(&self) -> String {
        if self.address.contains("://") {
            self.address.clone()
        } else if self.tls {
            format!("https://{}", self.address)
        } else {
            format!("http://{}", self.address)
        }
    }
}

/// The Terraform driver settings.
#[derive(Debug, Clone)]
pub struct TerraformSettings {
    pub binary: PathBuf,
    pub log: bool,
    pub persist_log: bool,
    pub required_providers: BTreeMap<String, Value>,
    /// `(kind, arguments)`; `None` means the CTS default: mesh's KV through
    /// Terraform's `consul` backend.
    pub backend: Option<(String, Map<String, Value>)>,
}

/// Everything `mesh sync` runs with.
#[derive(Debug, Clone)]
pub struct Config {
    pub port: u16,
    pub bind: IpAddr,
    pub working_dir: PathBuf,
    pub log_level: String,
    pub mesh: MeshConn,
    pub terraform: TerraformSettings,
    pub providers: BTreeMap<String, Vec<Map<String, Value>>>,
    pub buffer: Option<BufferPeriod>,
    pub drift_check: Option<DriftCheckConfig>,
    pub max_concurrent_runs: usize,
    pub tasks: Vec<Task>,
    /// Deprecated spellings found, one line each.
    pub warnings: Vec<String>,
}

// === loading ===

/// A problem in a config file (with its place) or anywhere else.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("{0}")]
    At(#[from] ConfigError),
    #[error("{0}")]
    Other(String),
}

/// The files `-config-file` and `-config-dir` name, in order.
pub fn config_files(files: &[PathBuf], dirs: &[PathBuf]) -> Result<Vec<PathBuf>, LoadError> {
    let mut all: Vec<PathBuf> = files.to_vec();
    for dir in dirs {
        let listed = mesh_config::dir_files(dir).map_err(|e| LoadError::Other(e.to_string()))?;
        all.extend(listed);
    }
    if all.is_empty() {
        return Err(LoadError::Other(
            "no configuration: give -config-file FILE or -config-dir DIR".into(),
        ));
    }
    Ok(all)
}

/// Reads, merges and checks the files; `lookup_terraform` finds the binary.
pub fn load(files: &[PathBuf]) -> Result<Config, LoadError> {
    let mut parsed = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(file)
            .map_err(|e| LoadError::Other(format!("{}: {e}", file.display())))?;
        let format = Format::from_path(file).ok_or_else(|| {
            ConfigError::at(
                file,
                mesh_config::Pos { line: 1, col: 1 },
                "config files must end in .hcl or .json",
            )
        })?;
        let (cfg, doc): (FileConfig, Document) = mesh_config::parse_document(&text, format, file)?;
        parsed.push((cfg, doc));
    }
    build(parsed)
}

/// Parses one config text (for tests and `mesh sync -validate`).
pub fn parse(text: &str, file: &Path) -> Result<Config, LoadError> {
    let format = Format::from_path(file).unwrap_or(Format::Hcl);
    let (cfg, doc) = mesh_config::parse_document(text, format, file)?;
    build(vec![(cfg, doc)])
}

fn build(parsed: Vec<(FileConfig, Document)>) -> Result<Config, LoadError> {
    let mut warnings = Vec::new();
    let mut port = None;
    let mut bind = None;
    let mut working_dir = None;
    let mut log_level = None;
    let mut conn: Option<(MeshConnConfig, usize)> = None;
    let mut driver: Option<(TerraformDriverConfig, usize)> = None;
    let mut providers: BTreeMap<String, Vec<Map<String, Value>>> = BTreeMap::new();
    let mut buffer_cfg: Option<(BufferPeriodConfig, usize, &'static str)> = None;
    let mut drift_check = None;
    let mut max_runs = None;
    let mut tasks: Vec<(TaskConfig, usize, String)> = Vec::new();

    for (i, (cfg, doc)) in parsed.iter().enumerate() {
        port = cfg.port.or(port);
        if let Some(b) = &cfg.bind_address {
            bind = Some((b.clone(), i));
        }
        working_dir = cfg.working_dir.clone().or(working_dir);
        log_level = cfg.log_level.clone().or(log_level);
        if cfg.consul.is_some() && cfg.mesh.is_some() {
            return Err(doc
                .error_at("mesh", "set `consul { }` or `mesh { }`, not both")
                .into());
        }
        if let Some(c) = cfg.consul.clone().or_else(|| cfg.mesh.clone()) {
            conn = Some((c, i));
        }
        if let Some(d) = cfg.driver.as_ref().and_then(|d| d.terraform.clone()) {
            driver = Some((d, i));
        }
        for (name, blocks) in &cfg.terraform_provider {
            providers.insert(name.clone(), blocks.0.clone());
        }
        if let Some(b) = &cfg.buffer_period {
            buffer_cfg = Some((b.clone(), i, "buffer_period"));
        }
        if let Some(d) = &cfg.drift_check {
            drift_check = Some(d.clone());
        }
        max_runs = cfg.max_concurrent_runs.or(max_runs);
        let many = cfg.task.0.len() > 1;
        for (n, task) in cfg.task.0.iter().enumerate() {
            let path = if many {
                format!("task[{n}]")
            } else {
                "task".to_string()
            };
            tasks.push((task.clone(), i, path));
        }
    }

    let doc = |i: usize| &parsed[i].1;
    let buffer = match &buffer_cfg {
        Some((b, i, path)) => {
            buffer_period(b, true).map_err(|(k, m)| doc(*i).error_at(&join(path, &k), m))?
        }
        None => Some(BufferPeriod {
            min: Duration::from_secs(5),
            max: Duration::from_secs(20),
        }),
    };
    let bind = match bind {
        Some((text, i)) => IpAddr::from_str(&text).map_err(|_| {
            doc(i).error_at(
                "bind_address",
                format!("bind_address {text:?} is not an IP address"),
            )
        })?,
        None => IpAddr::from([127, 0, 0, 1]),
    };
    let max_concurrent_runs = max_runs.unwrap_or(DEFAULT_MAX_CONCURRENT_RUNS);
    if max_concurrent_runs == 0 {
        let i = parsed
            .iter()
            .rposition(|(c, _)| c.max_concurrent_runs.is_some())
            .unwrap_or(0);
        return Err(doc(i)
            .error_at(
                "max_concurrent_runs",
                "max_concurrent_runs must be at least 1",
            )
            .into());
    }
    let working_dir = working_dir
        .or_else(|| driver.as_ref().and_then(|(d, _)| d.working_dir.clone()))
        .unwrap_or_else(|| PathBuf::from("sync-tasks"));
    let working_dir = absolute(&working_dir);

    let mesh = mesh_conn(conn.as_ref().map(|(c, _)| c));
    let terraform = match &driver {
        Some((d, i)) => terraform_settings(d)
            .map_err(|(k, m)| doc(*i).error_at(&join("driver.terraform", &k), m))?,
        None => terraform_settings(&TerraformDriverConfig::default())
            .map_err(|(_, m)| LoadError::Other(m))?,
    };

    let provider_names: BTreeSet<String> = providers.keys().cloned().collect();
    let mut built = Vec::new();
    let mut seen: BTreeMap<String, (usize, String)> = BTreeMap::new();
    if tasks.len() > MAX_TASKS {
        return Err(LoadError::Other(format!(
            "{} tasks configured; at most {MAX_TASKS} (MAX_TASKS)",
            tasks.len()
        )));
    }
    for (task, i, path) in tasks {
        if task.source.is_some() {
            warnings.push(format!(
                "{}: task {:?}: `source` is deprecated; write `module`",
                doc(i).file().display(),
                task.name
            ));
        }
        let checked = check_task(
            &task,
            &provider_names,
            buffer,
            drift_check.as_ref(),
            &working_dir,
        )
        .map_err(|(k, m)| doc(i).error_at(&join(&path, &k), m))?;
        if let Some((first_doc, _)) = seen.get(&checked.name) {
            return Err(doc(i)
                .error_at(
                    &join(&path, "name"),
                    format!(
                        "task {:?} is defined twice (first in {})",
                        checked.name,
                        doc(*first_doc).file().display()
                    ),
                )
                .into());
        }
        seen.insert(checked.name.clone(), (i, path.clone()));
        built.push(checked);
    }

    Ok(Config {
        port: port.unwrap_or(DEFAULT_PORT),
        bind,
        working_dir,
        log_level: log_level.unwrap_or_else(|| "info".into()),
        mesh,
        terraform,
        providers,
        buffer,
        drift_check,
        max_concurrent_runs,
        tasks: built,
        warnings,
    })
}

fn join(a: &str, b: &str) -> String {
    match (a.is_empty(), b.is_empty()) {
        (true, _) => b.to_string(),
        (_, true) => a.to_string(),
        _ => format!("{a}.{b}"),
    }
}

fn absolute(path: &Path) -> PathBuf {
    if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir()
            .map(|d| d.join(path))
            .unwrap_or_else(|_| path.to_path_buf())
    }
}

fn mesh_conn(cfg: Option<&MeshConnConfig>) -> MeshConn {
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    let cfg = cfg.cloned().unwrap_or_default();
    let tls = cfg.tls.clone().unwrap_or_default();
    MeshConn {
        address: cfg
            .address
            .or_else(|| env("CONSUL_HTTP_ADDR"))
            .unwrap_or_else(|| "127.0.0.1:8500".into()),
        token: cfg.token.or_else(|| env("CONSUL_HTTP_TOKEN")),
        tls: tls.enabled.unwrap_or(false),
        ca_file: tls.ca_cert,
        cert_file: tls.cert,
        key_file: tls.key,
    }
}

fn terraform_settings(d: &TerraformDriverConfig) -> Result<TerraformSettings, (String, String)> {
    let binary = match &d.path {
        Some(p) if p.is_dir() => p.join("terraform"),
        Some(p) => p.clone(),
        None => PathBuf::from("terraform"),
    };
    if d.backend.len() > 1 {
        return Err((
            "backend".into(),
            "give one backend block; Terraform uses one backend per root module".into(),
        ));
    }
    Ok(TerraformSettings {
        binary,
        log: d.log.unwrap_or(false),
        persist_log: d.persist_log.unwrap_or(false),
        required_providers: d.required_providers.clone(),
        backend: d.backend.iter().next().map(|(k, v)| (k.clone(), v.clone())),
    })
}

type Problem = (String, String);

fn duration(key: &str, text: &str) -> Result<Duration, Problem> {
    mesh_config::parse_duration(text).map_err(|m| (key.to_string(), m))
}

/// `None` when the buffer is off.
fn buffer_period(
    b: &BufferPeriodConfig,
    default_on: bool,
) -> Result<Option<BufferPeriod>, Problem> {
    if !b.enabled.unwrap_or(default_on) {
        return Ok(None);
    }
    let min = duration("min", b.min.as_deref().unwrap_or("5s"))?;
    let max = match &b.max {
        Some(m) => duration("max", m)?,
        None => (min * 4).max(Duration::from_secs(20)),
    };
    if max < min {
        return Err((
            "max".into(),
            format!("buffer_period max ({max:?}) is less than min ({min:?})"),
        ));
    }
    Ok(Some(BufferPeriod { min, max }))
}

fn valid_task_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_TASK_NAME_BYTES
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        && name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric())
}

fn check_regexp(key: &str, re: &str) -> Result<(), Problem> {
    regex::RegexBuilder::new(re)
        .size_limit(1 << 20)
        .build()
        .map(|_| ())
        .map_err(|e| (key.to_string(), format!("bad regexp: {e}")))
}

fn namespace_ok(key: &str, ns: &Option<String>) -> Result<(), Problem> {
    match ns.as_deref() {
        None | Some("") | Some("default") => Ok(()),
        Some(other) => Err((
            key.to_string(),
            format!("namespace {other:?}: mesh has only the default namespace"),
        )),
    }
}

fn services_source(
    s: &ServicesConfig,
    key: &str,
    is_condition: bool,
) -> Result<SourceSpec, Problem> {
    if !is_condition && s.use_as_module_input.is_some() {
        return Err((
            join(key, "use_as_module_input"),
            "use_as_module_input belongs in a condition block; a module_input is always an input"
                .into(),
        ));
    }
    match (s.names.is_empty(), &s.regexp) {
        (true, None) => {
            return Err((
                key.to_string(),
                "give `names` (a list of services) or `regexp`".into(),
            ))
        }
        (false, Some(_)) => {
            return Err((
                join(key, "regexp"),
                "give `names` or `regexp`, not both".into(),
            ))
        }
        _ => {}
    }
    if let Some(re) = &s.regexp {
        check_regexp(&join(key, "regexp"), re)?;
    }
    if let Some(n) = s.names.iter().find(|n| n.is_empty() || n.contains('/')) {
        return Err((join(key, "names"), format!("{n:?} is not a service name")));
    }
    namespace_ok(&join(key, "namespace"), &s.namespace)?;
    let mut names = s.names.clone();
    names.sort();
    names.dedup();
    Ok(SourceSpec::Services {
        names,
        regexp: s.regexp.clone(),
        filter: s.filter.clone().filter(|f| !f.is_empty()),
        datacenter: s.datacenter.clone().filter(|d| !d.is_empty()),
        user_meta: s.cts_user_defined_meta.clone(),
    })
}

fn kv_source(k: &KvConfig, key: &str, is_condition: bool) -> Result<SourceSpec, Problem> {
    if !is_condition && k.use_as_module_input.is_some() {
        return Err((
            join(key, "use_as_module_input"),
            "use_as_module_input belongs in a condition block".into(),
        ));
    }
    if k.path.is_empty() {
        return Err((key.to_string(), "`path` is required".into()));
    }
    namespace_ok(&join(key, "namespace"), &k.namespace)?;
    Ok(SourceSpec::Kv {
        path: k.path.trim_start_matches('/').to_string(),
        recurse: k.recurse,
        datacenter: k.datacenter.clone().filter(|d| !d.is_empty()),
    })
}

/// Checks one task (from a file or the API). Errors name the key under the
/// task (`condition.services.names`) and what is wrong.
pub fn check_task(
    task: &TaskConfig,
    providers: &BTreeSet<String>,
    default_buffer: Option<BufferPeriod>,
    default_drift: Option<&DriftCheckConfig>,
    working_dir: &Path,
) -> Result<Task, Problem> {
    if !valid_task_name(&task.name) {
        return Err((
            "name".into(),
            format!(
                "task name {:?}: use 1 to {MAX_TASK_NAME_BYTES} letters, digits, `-` or `_`, starting with a letter or digit",
                task.name
            ),
        ));
    }
    let module = match (task.module.is_empty(), &task.source) {
        (false, _) => task.module.clone(),
        (true, Some(s)) if !s.is_empty() => s.clone(),
        _ => return Err(("module".into(), "`module` is required".into())),
    };
    for p in &task.providers {
        let base = p.split('.').next().unwrap_or(p);
        if !providers.contains(base) {
            return Err((
                "providers".into(),
                format!("provider {p:?} has no terraform_provider \"{base}\" block"),
            ));
        }
    }

    let c = &task.condition;
    let count = [
        c.services.is_some(),
        c.catalog_services.is_some(),
        c.consul_kv.is_some(),
        c.schedule.is_some(),
    ]
    .iter()
    .filter(|x| **x)
    .count();
    if count != 1 {
        return Err((
            "condition".into(),
            "give exactly one condition block: \"services\", \"catalog-services\", \"consul-kv\" or \"schedule\"".into(),
        ));
    }
    let (trigger, trigger_is_input) = if let Some(s) = &c.services {
        (
            Trigger::Source(services_source(s, "condition.services", true)?),
            s.use_as_module_input.unwrap_or(true),
        )
    } else if let Some(cs) = &c.catalog_services {
        if let Some(re) = &cs.regexp {
            check_regexp("condition.catalog-services.regexp", re)?;
        }
        namespace_ok("condition.catalog-services.namespace", &cs.namespace)?;
        (
            Trigger::Source(SourceSpec::CatalogServices {
                regexp: cs.regexp.clone(),
                datacenter: cs.datacenter.clone().filter(|d| !d.is_empty()),
                node_meta: cs.node_meta.clone(),
            }),
            cs.use_as_module_input.unwrap_or(true),
        )
    } else if let Some(kv) = &c.consul_kv {
        (
            Trigger::Source(kv_source(kv, "condition.consul-kv", true)?),
            kv.use_as_module_input.unwrap_or(true),
        )
    } else {
        let cron_text = &c.schedule.as_ref().expect("counted").cron;
        let cron = croner::Cron::from_str(cron_text).map_err(|e| {
            (
                "condition.schedule.cron".to_string(),
                format!("bad cron expression {cron_text:?}: {e}"),
            )
        })?;
        (Trigger::Schedule(Box::new(cron)), false)
    };

    let mut inputs = Vec::new();
    if let Some(s) = &task.module_input.services {
        inputs.push(services_source(s, "module_input.services", false)?);
    }
    if let Some(k) = &task.module_input.consul_kv {
        inputs.push(kv_source(k, "module_input.consul-kv", false)?);
    }
    if let Trigger::Source(t) = &trigger {
        if trigger_is_input && inputs.iter().any(|i| i.variable() == t.variable()) {
            return Err((
                "module_input".into(),
                format!(
                    "the condition already fills `{}`; set use_as_module_input = false on it or drop this module_input",
                    t.variable()
                ),
            ));
        }
    }
    if matches!(trigger, Trigger::Schedule(_)) && inputs.is_empty() {
        return Err((
            "module_input".into(),
            "a schedule condition needs a module_input block to give the module its data".into(),
        ));
    }

    // Schedules run on time; a buffer would only delay them.
    let buffer = match (&task.buffer_period, &trigger) {
        (_, Trigger::Schedule(_)) => None,
        (Some(b), _) => buffer_period(b, true).map_err(|(k, m)| (join("buffer_period", &k), m))?,
        (None, _) => default_buffer,
    };
    let drift = task.drift_check.as_ref().or(default_drift);
    let drift_interval = match drift {
        Some(d) if d.enabled.unwrap_or(true) => {
            let text = d.interval.as_deref().unwrap_or("5m");
            let every = duration("drift_check.interval", text)?;
            if every < Duration::from_secs(1) {
                return Err((
                    "drift_check.interval".into(),
                    "drift_check interval must be at least 1s".into(),
                ));
            }
            Some(every)
        }
        _ => None,
    };
    let mut variable_files = Vec::new();
    for (n, f) in task.variable_files.iter().enumerate() {
        let abs = absolute(f);
        if !abs.is_file() {
            return Err((
                format!("variable_files[{n}]"),
                format!("variable file {} does not exist", abs.display()),
            ));
        }
        variable_files.push(abs);
    }
    let dir = task
        .working_dir
        .as_ref()
        .map(|d| absolute(d))
        .unwrap_or_else(|| working_dir.join(&task.name));

    Ok(Task {
        def: task.clone(),
        name: task.name.clone(),
        enabled: task.enabled.unwrap_or(true),
        module,
        trigger,
        trigger_is_input,
        inputs,
        buffer,
        drift_interval,
        variable_files,
        working_dir: dir,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(text: &str) -> String {
        parse(text, Path::new("sync.hcl")).unwrap_err().to_string()
    }

    #[test]
    fn a_cts_config_parses() {
        let cfg = parse(
            r#"
log_level = "debug"
port = 8600
consul { address = "127.0.0.1:8500" }
driver "terraform" {
  log = true
  required_providers {
    mesh = { source = "mesh/mesh" }
  }
}
terraform_provider "mesh" { address = "127.0.0.1:8500" }
buffer_period {
  min = "1s"
  max = "4s"
}
task {
  name = "lb"
  module = "./modules/lb"
  providers = ["mesh"]
  condition "services" { names = ["web", "api"] }
}
task {
  name = "kv"
  module = "./modules/kv"
  buffer_period { enabled = false }
  condition "consul-kv" {
    path    = "cfg/"
    recurse = true
  }
}
task {
  name = "nightly"
  module = "./modules/x"
  condition "schedule" { cron = "*/5 * * * * *" }
  module_input "services" { regexp = "^web" }
}
"#,
            Path::new("sync.hcl"),
        )
        .unwrap();
        assert_eq!(cfg.port, 8600);
        assert_eq!(cfg.tasks.len(), 3);
        assert_eq!(
            cfg.tasks[0].buffer,
            Some(BufferPeriod {
                min: Duration::from_secs(1),
                max: Duration::from_secs(4)
            })
        );
        assert!(cfg.tasks[1].buffer.is_none());
        assert!(matches!(cfg.tasks[2].trigger, Trigger::Schedule(_)));
        let Trigger::Source(SourceSpec::Services { names, .. }) = &cfg.tasks[0].trigger else {
            panic!("services trigger")
        };
        assert_eq!(names, &["api".to_string(), "web".to_string()]);
    }

    #[test]
    fn errors_name_the_place() {
        let e = err("task {\n  name = \"a\"\n  module = \"m\"\n  condition \"services\" { nmes = [\"x\"] }\n}\n");
        assert!(e.starts_with("sync.hcl:4:"), "{e}");
        assert!(e.contains("did you mean `names`"), "{e}");

        let e = err("task {\n  name = \"a\"\n  module = \"m\"\n  providers = [\"aws\"]\n  condition \"services\" { names = [\"x\"] }\n}\n");
        assert!(e.starts_with("sync.hcl:4:3:"), "{e}");
        assert!(e.contains("terraform_provider \"aws\""), "{e}");

        let e = err("task {\n  name = \"a b\"\n  module = \"m\"\n  condition \"services\" { names = [\"x\"] }\n}\n");
        assert!(e.starts_with("sync.hcl:2:3:"), "{e}");

        let e = err("task {\n  name = \"a\"\n  module = \"m\"\n  condition \"schedule\" { cron = \"nope\" }\n  module_input \"services\" { names = [\"x\"] }\n}\n");
        assert!(e.starts_with("sync.hcl:4:"), "{e}");
        assert!(e.contains("cron"), "{e}");

        let e = err("buffer_period {\n  min = \"10s\"\n  max = \"1s\"\n}\n");
        assert!(e.starts_with("sync.hcl:3:3:"), "{e}");

        let e = err("task {\n  name = \"a\"\n  module = \"m\"\n}\ntask {\n  name = \"a\"\n  module = \"m\"\n  condition \"consul-kv\" { path = \"x\" }\n}\n");
        assert!(e.contains("condition"), "{e}");
    }
}
