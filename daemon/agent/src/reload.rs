//! Config reload: a file watcher (debounced), SIGHUP and `PUT
//! /v1/agent/reload` all funnel into one task that re-reads every config
//! file, plans, and applies all of it or none of it. The last good config
//! stays in force when anything is wrong, and the status says why.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mesh_config::{LiveConfig, RawConfig, RuntimeConfig, Source};
use mesh_types::CheckStatus;
use serde::Serialize;
use tokio::sync::{mpsc, oneshot, watch};

use crate::connect_ca::ConnectCa;
use crate::reconcile::{self, Change, Reconciler, ReloadError};
use crate::stop::Stop;

/// Files change in bursts (editors write, rename, chmod): wait this long for
/// quiet. A burst from one save lasts a few milliseconds; 50 ms covers it and
/// keeps an edit visible within 100 ms on one node.
const DEBOUNCE: Duration = Duration::from_millis(50);

/// Changes the log level of the running process.
pub type SetLogLevel = Arc<dyn Fn(&str) -> Result<(), String> + Send + Sync>;

/// Where the agent's config came from, so a reload can read it again.
#[derive(Clone, Default)]
pub struct ConfigSource {
    /// `-config-file` / `-config-dir`, in command-line order.
    pub sources: Vec<Source>,
    /// The flags, which win over files.
    pub overlay: RawConfig,
    /// Applies a new log level live.
    pub set_log_level: Option<SetLogLevel>,
}

/// The outcome of the last reload, shown in `/v1/agent/self`.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ConfigStatus {
    /// Whether the last reload was applied.
    pub ok: bool,
    /// Why it was refused (file:line:col and reason), if it was.
    pub errors: Vec<String>,
    /// What started it: start, file change, SIGHUP, API.
    pub trigger: String,
    /// Unix milliseconds when it finished.
    pub finished_at_ms: u64,
    /// How long it took.
    pub duration_ms: f64,
    /// What it changed.
    pub changes: Vec<Change>,
    /// Settings that changed in the files but only take effect after a restart.
    pub needs_restart: Vec<String>,
    /// Reloads since start.
    pub count: u64,
}

/// A request to reload, answered with the resulting status.
pub(crate) struct ReloadRequest {
    pub trigger: &'static str,
    pub reply: Option<oneshot::Sender<ConfigStatus>>,
}

/// Everything read from disk, validated, before anything is applied.
struct Loaded {
    config: RuntimeConfig,
    decls: Vec<mesh_config::Decl>,
}

fn load(source: &ConfigSource) -> Result<Loaded, String> {
    let files = mesh_config::expand(&source.sources).map_err(|e| e.to_string())?;
    let (raw, decls) = mesh_config::load_all(&files).map_err(|e| e.to_string())?;
    let config =
        RuntimeConfig::build(raw.merge(source.overlay.clone())).map_err(|e| e.to_string())?;
    Ok(Loaded { config, decls })
}

/// Settings that cannot change without a restart, with old and new values.
fn needs_restart(old: &RuntimeConfig, new: &RuntimeConfig) -> Vec<String> {
    let mut out = Vec::new();
    let mut cmp = |name: &str, a: String, b: String| {
        if a != b {
            out.push(format!("{name} ({a} -> {b})"));
        }
    };
    cmp("node_name", old.node_name.clone(), new.node_name.clone());
    cmp("datacenter", old.datacenter.clone(), new.datacenter.clone());
    cmp("server", old.server.to_string(), new.server.to_string());
    cmp(
        "bootstrap_expect",
        old.bootstrap_expect.to_string(),
        new.bootstrap_expect.to_string(),
    );
    cmp(
        "data_dir",
        format!("{:?}", old.data_dir),
        format!("{:?}", new.data_dir),
    );
    cmp(
        "bind_addr",
        old.bind_addr.to_string(),
        new.bind_addr.to_string(),
    );
    cmp(
        "advertise_addr",
        old.advertise_addr.to_string(),
        new.advertise_addr.to_string(),
    );
    cmp(
        "client_addr",
        old.client_addr.to_string(),
        new.client_addr.to_string(),
    );
    cmp(
        "addresses",
        format!("{:?}", old.addresses),
        format!("{:?}", new.addresses),
    );
    cmp(
        "ports",
        format!("{:?}", old.ports),
        format!("{:?}", new.ports),
    );
    cmp(
        "performance.raft_multiplier",
        old.raft_multiplier.to_string(),
        new.raft_multiplier.to_string(),
    );
    cmp(
        "enable_script_checks",
        old.enable_script_checks.to_string(),
        new.enable_script_checks.to_string(),
    );
    cmp(
        "connect.enabled",
        old.connect_enabled.to_string(),
        new.connect_enabled.to_string(),
    );
    cmp("ui", old.ui.to_string(), new.ui.to_string());
    // Which files and checks: the files' contents reload live.
    cmp("tls", format!("{:?}", old.tls), format!("{:?}", new.tls));
    cmp(
        "autopilot",
        format!("{:?}", old.autopilot),
        format!("{:?}", new.autopilot),
    );
    cmp(
        "limits",
        format!("{:?}", old.limits),
        format!("{:?}", new.limits),
    );
    out
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The reload component: it owns the live settings (the only writer of
/// the `watch` that every other component reads) and the status of the
/// last reload.
pub(crate) struct Reloads {
    /// Where the config came from (none: nothing to re-read).
    source: Option<ConfigSource>,
    /// The settings the agent started with: everything that is not live
    /// holds until a restart.
    started_with: RuntimeConfig,
    status: parking_lot::Mutex<ConfigStatus>,
    requests: mpsc::Sender<ReloadRequest>,
    reconciler: Reconciler,
    ca: Arc<ConnectCa>,
    live: watch::Sender<Arc<LiveConfig>>,
    dns_settings: watch::Sender<mesh_dns::DnsConfig>,
    /// Where the agent's own token goes when it changes.
    networks: Vec<mesh_raft::Network>,
    tls: Vec<Arc<mesh_tls::SurfaceTls>>,
    gossip: mesh_gossip::Gossip,
    shutdown: watch::Receiver<Stop>,
    /// The tokens `PUT /v1/agent/token/<kind>` set since the files were
    /// last read; held while the live settings are written, so a reload
    /// and a token change never interleave.
    api_tokens: parking_lot::Mutex<ApiTokens>,
}

/// The kinds of `PUT /v1/agent/token/<kind>`: Consul's names, the legacy
/// ones too.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TokenKind {
    /// For requests that carry no token (`acl.tokens.default`).
    Default,
    /// For the agent's own writes (`acl.tokens.agent`).
    Agent,
    /// Kept, no effect: mesh has no agent recovery token.
    AgentRecovery,
    /// Kept, no effect: one datacenter, nothing to replicate.
    Replication,
    /// Kept, no effect: services from config files are written with the agent token.
    ConfigFileServiceRegistration,
    /// Kept, no effect: DNS answers with the default token.
    Dns,
}

impl TokenKind {
    /// The kind a path names, if Consul knows it.
    pub(crate) fn parse(kind: &str) -> Option<TokenKind> {
        Some(match kind {
            "default" | "acl_token" => TokenKind::Default,
            "agent" | "acl_agent_token" => TokenKind::Agent,
            "agent_recovery" | "agent_master" | "acl_agent_master_token" => {
                TokenKind::AgentRecovery
            }
            "replication" | "acl_replication_token" => TokenKind::Replication,
            "config_file_service_registration" => TokenKind::ConfigFileServiceRegistration,
            "dns" | "dns_token" => TokenKind::Dns,
            _ => return None,
        })
    }

    /// Whether mesh uses a token of this kind.
    pub(crate) fn applies(self) -> bool {
        matches!(self, TokenKind::Default | TokenKind::Agent)
    }
}

/// Tokens set through the API (`None` inside: cleared).
#[derive(Default)]
struct ApiTokens {
    default: Option<Option<String>>,
    agent: Option<Option<String>>,
    /// The kinds mesh keeps without using.
    unused: std::collections::BTreeMap<&'static str, Option<String>>,
}

/// The trigger of the reload every agent makes as it starts.
const START: &str = "start";

/// What `Reloads::new` takes.
pub(crate) struct ReloadInputs {
    pub source: Option<ConfigSource>,
    pub started_with: RuntimeConfig,
    pub reconciler: Reconciler,
    pub ca: Arc<ConnectCa>,
    pub live: watch::Sender<Arc<LiveConfig>>,
    pub networks: Vec<mesh_raft::Network>,
    /// The agent's own TLS (RPC, HTTPS): certificates re-read on reload.
    pub tls: Vec<Arc<mesh_tls::SurfaceTls>>,
    /// Gossip: encryption turned on and the verify flags changed live.
    pub gossip: mesh_gossip::Gossip,
    pub shutdown: watch::Receiver<Stop>,
}

impl Reloads {
    /// The component and the queue its task serves (`reload_loop`).
    pub(crate) fn new(inputs: ReloadInputs) -> (Reloads, mpsc::Receiver<ReloadRequest>) {
        let (requests, rx) = mpsc::channel(16);
        let dns = crate::dns::settings(&inputs.started_with.datacenter, &inputs.live.borrow());
        let reloads = Reloads {
            source: inputs.source,
            started_with: inputs.started_with,
            status: Default::default(),
            requests,
            reconciler: inputs.reconciler,
            ca: inputs.ca,
            live: inputs.live,
            dns_settings: watch::Sender::new(dns),
            networks: inputs.networks,
            tls: inputs.tls,
            gossip: inputs.gossip,
            shutdown: inputs.shutdown,
            api_tokens: Default::default(),
        };
        (reloads, rx)
    }

    /// The live settings, as reloads change them.
    pub(crate) fn live(&self) -> watch::Receiver<Arc<LiveConfig>> {
        self.live.subscribe()
    }

    /// DNS settings as reloads change them.
    pub(crate) fn dns_settings(&self) -> watch::Receiver<mesh_dns::DnsConfig> {
        self.dns_settings.subscribe()
    }

    /// The outcome of the last reload.
    pub(crate) fn status(&self) -> ConfigStatus {
        self.status.lock().clone()
    }

    /// Asks for a reload without waiting (SIGHUP, a file change).
    pub(crate) fn soon(&self, trigger: &'static str) {
        // A full queue already holds a reload that will read the same files.
        let _ = self.requests.try_send(ReloadRequest {
            trigger,
            reply: None,
        });
    }

    /// Read, plan and apply once. `Err` only when the cluster could not be
    /// reached (worth retrying); a bad file is an `Ok` status with errors.
    async fn reload_once(&self, trigger: &'static str) -> Result<ConfigStatus, ReloadError> {
        let started = Instant::now();
        let source = self.source.clone().unwrap_or_default();
        let mut status = ConfigStatus {
            trigger: trigger.into(),
            ..Default::default()
        };
        let result: Result<(), ReloadError> = async {
            let loaded = load(&source).map_err(|e| ReloadError::Invalid(vec![e]))?;
            let plan = reconcile::plan_now(&self.reconciler, &loaded.decls).await?;
            // Against the settings the agent started with: those are the
            // ones in force until a restart, however many reloads since.
            status.needs_restart = needs_restart(&self.started_with, &loaded.config);
            reconcile::apply(&self.reconciler, &plan).await?;
            if let Some((ca, loc)) = &plan.ca {
                self.ca.apply_ca_block(ca, loc).await?;
            }
            self.apply_live_settings(&source, loaded.config.live(), trigger);
            status.changes = plan.changes;
            self.reload_certificates()?;
            self.apply_gossip_encryption(&loaded.config)?;
            Ok(())
        }
        .await;
        match result {
            Ok(()) => status.ok = true,
            Err(e @ ReloadError::Unavailable(_)) => return Err(e),
            Err(e) => status.errors = e.errors(),
        }
        status.duration_ms = started.elapsed().as_secs_f64() * 1000.0;
        status.finished_at_ms = now_ms();
        Ok(status)
    }

    /// Re-reads the agent's certificate files; bad ones keep the
    /// certificates in use and fail the reload, naming the file.
    fn reload_certificates(&self) -> Result<(), ReloadError> {
        let mut errors = Vec::new();
        for tls in &self.tls {
            match tls.reload() {
                Ok(true) => {
                    tracing::info!(surface = %tls.surface().key, "TLS certificates reloaded")
                }
                Ok(false) => {}
                Err(e) => errors.push(format!("{e} (keeping the certificates in use)")),
            }
        }
        match errors.is_empty() {
            true => Ok(()),
            false => Err(ReloadError::Invalid(errors)),
        }
    }

    /// `encrypt` turns gossip encryption on where it was off (keys already
    /// in use change through `mesh keyring`); the verify flags apply as set.
    fn apply_gossip_encryption(&self, new: &RuntimeConfig) -> Result<(), ReloadError> {
        let fail =
            |e: mesh_gossip::GossipError| ReloadError::Invalid(vec![format!("encrypt: {e}")]);
        if let Some(key) = &new.encrypt {
            let ring = mesh_gossip::Keyring::from_base64(key).map_err(fail)?;
            let had = self.gossip.encryption().map_err(fail)?;
            if !self.gossip.enable_encryption(ring).map_err(fail)? {
                let raw = mesh_gossip::decode_base64(key).map_err(fail)?;
                if had
                    .keyring
                    .as_ref()
                    .is_some_and(|r| !r.keys().any(|k| k == raw))
                {
                    tracing::warn!("encrypt names a key this agent does not have; rotate keys with `mesh keyring -install/-use`");
                }
            }
        }
        self.gossip
            .set_verify(new.encrypt_verify_incoming, new.encrypt_verify_outgoing)
            .map_err(fail)
    }

    /// Log level, DNS settings, ACL settings (the intention default, the
    /// agent's token) and the CA settings change in place. Tokens set
    /// through the API give way to the files' (as in Consul without
    /// `acl.enable_token_persistence`), except at the start reload, which
    /// may run after the API has set some.
    fn apply_live_settings(&self, source: &ConfigSource, mut new: LiveConfig, trigger: &str) {
        let mut api_tokens = self.api_tokens.lock();
        if trigger == START {
            if let Some(token) = &api_tokens.default {
                new.acl.default_token = token.clone();
            }
            if let Some(token) = &api_tokens.agent {
                new.acl.agent_token = token.clone();
            }
        } else {
            *api_tokens = ApiTokens::default();
        }
        let old = self.live.borrow().clone();
        if old.log_level != new.log_level {
            if let Some(set) = &source.set_log_level {
                if let Err(e) = set(&new.log_level) {
                    tracing::warn!(error = %e, "could not change the log level");
                }
            }
        }
        self.publish(new);
    }

    /// Sets one of the agent's ACL tokens in memory (`PUT
    /// /v1/agent/token/<kind>`; `None` clears it) until the next reload or
    /// restart. Kinds mesh does not use are kept with no effect.
    pub(crate) fn set_token(&self, kind: TokenKind, token: Option<String>) {
        let mut api_tokens = self.api_tokens.lock();
        let mut new = (**self.live.borrow()).clone();
        match kind {
            TokenKind::Default => {
                new.acl.default_token = token.clone();
                api_tokens.default = Some(token);
            }
            TokenKind::Agent => {
                new.acl.agent_token = token.clone();
                api_tokens.agent = Some(token);
            }
            TokenKind::AgentRecovery => {
                api_tokens.unused.insert("agent_recovery", token);
                return;
            }
            TokenKind::Replication => {
                api_tokens.unused.insert("replication", token);
                return;
            }
            TokenKind::ConfigFileServiceRegistration => {
                let name = "config_file_service_registration";
                api_tokens.unused.insert(name, token);
                return;
            }
            TokenKind::Dns => {
                api_tokens.unused.insert("dns", token);
                return;
            }
        }
        self.publish(new);
    }

    /// Makes `new` the live settings: the DNS settings, the token on the
    /// agent's own writes, then every watcher of the live settings.
    fn publish(&self, new: LiveConfig) {
        let dns = crate::dns::settings(&self.started_with.datacenter, &new);
        self.dns_settings.send_if_modified(|current| {
            let changed = *current != dns;
            *current = dns;
            changed
        });
        // The agent token applies live, to the writes this agent forwards.
        for network in &self.networks {
            network.set_token(new.acl.own_token());
        }
        // Watchers (the snapshot hub: the intention default) wake on a change.
        self.live.send_if_modified(|current| {
            let changed = **current != new;
            *current = Arc::new(new);
            changed
        });
    }

    /// Ask for a reload and wait for its status.
    pub(crate) async fn request(&self, trigger: &'static str) -> Option<ConfigStatus> {
        let (tx, rx) = oneshot::channel();
        self.requests
            .send(ReloadRequest {
                trigger,
                reply: Some(tx),
            })
            .await
            .ok()?;
        rx.await.ok()
    }
}

/// The single task that performs reloads, one at a time; requests that
/// arrive during one are answered by the next.
/// The node check that carries this agent's last reload.
pub const CONFIG_CHECK_ID: &str = "mesh-config";

/// The last reload in words, for the check's output: what started it, what
/// changed, and every error at file:line:col.
fn status_summary(status: &ConfigStatus) -> String {
    use std::fmt::Write as _;
    let mut out = if status.ok {
        format!(
            "applied ({}, reload {}): {} change(s)",
            status.trigger,
            status.count,
            status.changes.len()
        )
    } else {
        format!(
            "refused ({}, reload {}); the last good config stays in force",
            status.trigger, status.count
        )
    };
    for c in &status.changes {
        let _ = write!(out, "\n{} {} ({})", c.action, c.resource, c.at);
    }
    for e in &status.errors {
        let _ = write!(out, "\nerror: {e}");
    }
    for r in &status.needs_restart {
        let _ = write!(out, "\nneeds a restart: {r}");
    }
    out
}

pub(crate) async fn reload_loop(
    reloads: Arc<Reloads>,
    mut rx: mpsc::Receiver<ReloadRequest>,
    local: Arc<crate::local::LocalState>,
) -> anyhow::Result<()> {
    let mut pending: Vec<ReloadRequest> = vec![ReloadRequest {
        trigger: START,
        reply: None,
    }];
    let mut backoff = Duration::from_millis(200);
    let mut stop = reloads.shutdown.clone();
    loop {
        if pending.is_empty() {
            tokio::select! {
                req = rx.recv() => match req {
                    Some(req) => pending.push(req),
                    None => return Ok(()),
                },
                _ = stop.wait_for(|s| *s != Stop::Running) => return Ok(()),
            }
        }
        while let Ok(req) = rx.try_recv() {
            pending.push(req);
        }
        let trigger = pending.last().map_or(START, |r| r.trigger);
        match reloads.reload_once(trigger).await {
            Ok(mut status) => {
                backoff = Duration::from_millis(200);
                {
                    let mut current = reloads.status.lock();
                    status.count = current.count + 1;
                    if status.ok {
                        tracing::info!(
                            trigger,
                            changes = status.changes.len(),
                            ms = status.duration_ms,
                            "config applied"
                        );
                        for c in &status.changes {
                            tracing::info!(action = c.action, resource = %c.resource, at = %c.at, "config change");
                        }
                        for r in &status.needs_restart {
                            tracing::warn!(setting = %r, "config change needs a restart to take effect");
                        }
                    } else {
                        for e in &status.errors {
                            tracing::error!(
                                trigger,
                                "config reload refused, keeping the last good config: {e}"
                            );
                        }
                    }
                    *current = status.clone();
                }
                // Every agent's outcome, cluster-wide, as a node check that
                // the UI's mesh.d view reads from the catalog. Always
                // passing: a node check's status is every service's on the
                // node, and a typo in a file must not take them out of
                // service (the output says "refused"; alert on
                // mesh.reconcile.refused).
                local.set_builtin_check(
                    CONFIG_CHECK_ID,
                    "mesh.d configuration",
                    CheckStatus::Passing,
                    status_summary(&status),
                );
                if status.ok {
                    mesh_telemetry::counter!(mesh_telemetry::MESH_RECONCILE_APPLIED).increment(1);
                } else {
                    mesh_telemetry::counter!(mesh_telemetry::MESH_RECONCILE_REFUSED).increment(1);
                }
                for req in pending.drain(..) {
                    if let Some(reply) = req.reply {
                        let _ = reply.send(status.clone());
                    }
                }
            }
            Err(why) => {
                // No leader yet (start-up, election): try again soon.
                tracing::debug!(%why, "config reload waiting for the cluster");
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    Some(req) = rx.recv() => pending.push(req),
                    _ = stop.wait_for(|s| *s != Stop::Running) => return Ok(()),
                }
                backoff = (backoff * 2).min(Duration::from_secs(2));
            }
        }
    }
}

/// Paths to watch: each config dir, and the directory of each config file
/// (editors replace files by rename, which a watch on the file itself misses).
/// Directories to watch and files that matter, as absolute paths: the
/// watcher reports absolute paths, so a relative `-config-dir=mesh.d`
/// compared as given would never match.
fn watch_targets(sources: &[Source]) -> (BTreeSet<PathBuf>, BTreeSet<PathBuf>) {
    let mut dirs = BTreeSet::new();
    let mut files = BTreeSet::new();
    for s in sources {
        match s {
            Source::Dir(d) => {
                dirs.insert(absolute(d));
            }
            Source::File(f) => {
                let f = absolute(f);
                if let Some(parent) = f.parent() {
                    dirs.insert(parent.to_path_buf());
                }
                files.insert(f);
            }
        }
    }
    (dirs, files)
}

fn absolute(path: &std::path::Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}

/// Watch the config files and ask for a reload after each burst of changes.
pub(crate) async fn watch_files(reloads: Arc<Reloads>) -> anyhow::Result<()> {
    use notify::Watcher;
    let Some(source) = reloads.source.clone() else {
        return Ok(());
    };
    let (mut dirs, mut files) = watch_targets(&source.sources);
    // Certificate files: a renewal on disk applies without a signal.
    for tls in &reloads.tls {
        let surface = tls.surface();
        let named = [&surface.cert_file, &surface.key_file, &surface.ca_file];
        for file in named.into_iter().flatten() {
            let file = absolute(file);
            if let Some(parent) = file.parent() {
                dirs.insert(parent.to_path_buf());
            }
            files.insert(file);
        }
        if let Some(dir) = &surface.ca_path {
            dirs.insert(absolute(dir));
        }
    }
    if dirs.is_empty() {
        return Ok(());
    }
    let (tx, mut rx) = mpsc::unbounded_channel::<()>();
    let dir_sources: BTreeSet<PathBuf> = source
        .sources
        .iter()
        .filter_map(|s| match s {
            Source::Dir(d) => Some(absolute(d)),
            Source::File(_) => None,
        })
        .collect();
    let relevant = move |path: &std::path::Path| {
        files.contains(path)
            || path.parent().is_some_and(|p| dir_sources.contains(p))
                && mesh_config::Format::from_path(path).is_some()
    };
    let mut watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
        if let Ok(event) = res {
            if event.kind.is_access() {
                return;
            }
            if event.paths.iter().any(|p| relevant(p)) {
                let _ = tx.send(());
            }
        }
    })?;
    for dir in &dirs {
        if let Err(e) = watcher.watch(dir, notify::RecursiveMode::NonRecursive) {
            tracing::warn!(dir = %dir.display(), error = %e, "cannot watch config directory; use SIGHUP or `mesh reload`");
        }
    }
    let mut stop = reloads.shutdown.clone();
    loop {
        tokio::select! {
            got = rx.recv() => if got.is_none() { return Ok(()) },
            _ = stop.wait_for(|s| *s != Stop::Running) => return Ok(()),
        }
        // Debounce: wait until the burst is over.
        while let Ok(Some(())) = tokio::time::timeout(DEBOUNCE, rx.recv()).await {}
        let _ = reloads
            .requests
            .send(ReloadRequest {
                trigger: "file change",
                reply: None,
            })
            .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_kinds_are_consuls_names_legacy_ones_included() {
        let cases = [
            ("default", TokenKind::Default),
            ("acl_token", TokenKind::Default),
            ("agent", TokenKind::Agent),
            ("acl_agent_token", TokenKind::Agent),
            ("agent_recovery", TokenKind::AgentRecovery),
            ("agent_master", TokenKind::AgentRecovery),
            ("acl_agent_master_token", TokenKind::AgentRecovery),
            ("replication", TokenKind::Replication),
            ("acl_replication_token", TokenKind::Replication),
            (
                "config_file_service_registration",
                TokenKind::ConfigFileServiceRegistration,
            ),
            ("dns", TokenKind::Dns),
            ("dns_token", TokenKind::Dns),
        ];
        for (name, kind) in cases {
            assert_eq!(TokenKind::parse(name), Some(kind), "{name}");
        }
        for unknown in ["", "Default", "master", "recovery", "agent/x"] {
            assert_eq!(TokenKind::parse(unknown), None, "{unknown}");
        }
        assert!(TokenKind::Default.applies() && TokenKind::Agent.applies());
        assert!(!TokenKind::Dns.applies() && !TokenKind::Replication.applies());
    }
}
