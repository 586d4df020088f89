//! Building an agent from its config, and running it.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use mesh_config::RuntimeConfig;
use mesh_gossip::{Gossip, GossipConfig, Keyring, Role, Timing};
use mesh_raft::{MeshNode, RaftNode, RaftTiming};
use mesh_state::StateStore;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};

use mesh_checks::RunnerOptions;

use crate::local::LocalState;
use uuid::Uuid;

use crate::handle::AgentView;
use crate::stop::Stop;
use crate::tags;
use crate::{duties, identity};

/// A built agent: listeners bound, store open, gossip started.
pub struct Agent {
    pub(crate) config: RuntimeConfig,
    pub(crate) node_id: Uuid,
    pub(crate) state: Arc<StateStore>,
    pub(crate) raft: Option<RaftNode>,
    pub(crate) gossip: Gossip,
    http: parking::Slot<TcpListener>,
    https: parking::Slot<(TcpListener, Arc<rustls::ServerConfig>)>,
    rpc: parking::Slot<TcpListener>,
    /// Actual addresses after binding (port 0 resolved).
    pub http_addr: Option<SocketAddr>,
    pub https_addr: Option<SocketAddr>,
    pub rpc_addr: Option<SocketAddr>,
    pub(crate) shutdown: watch::Sender<Stop>,
    /// Services and checks this agent is authoritative for.
    pub(crate) local: Arc<LocalState>,
    /// Counts completed anti-entropy passes.
    pub(crate) synced: Arc<watch::Sender<u64>>,
    /// Client agents propose through servers over this.
    pub(crate) rpc_network: mesh_raft::Network,
    check_updates: parking::Slot<mpsc::Receiver<mesh_checks::CheckUpdate>>,
    dns: parking::Slot<crate::dns::DnsListeners>,
    /// Where DNS answers (servers only: client agents hold no catalog).
    pub dns_addr: Option<SocketAddr>,
    /// Where the config came from, for reloads (none: nothing to re-read).
    pub(crate) config_source: Option<crate::reload::ConfigSource>,
    /// The settings reloads change in place: from `config` at start, then
    /// from each applied reload. Everything else of `config` holds until a
    /// restart.
    pub(crate) live: watch::Sender<Arc<mesh_config::LiveConfig>>,
    /// DNS settings, changed live by reloads.
    pub(crate) dns_settings: watch::Sender<mesh_dns::DnsConfig>,
    /// The outcome of the last reload.
    pub(crate) config_status: parking_lot::Mutex<crate::reload::ConfigStatus>,
    pub(crate) reload_tx: mpsc::Sender<crate::reload::ReloadRequest>,
    reload_rx: parking::Slot<mpsc::Receiver<crate::reload::ReloadRequest>>,
    /// The Connect CA: stored state, signer, leaf cache (servers).
    pub(crate) ca: Arc<crate::connect_ca::ConnectCa>,
    /// The mesh.d reconciler.
    pub(crate) reconciler: crate::reconcile::Reconciler,
    /// Proxy snapshots, computed once per change for all their watchers.
    pub(crate) snapshots: Arc<crate::snapshot_hub::SnapshotHub>,
    _dev_dir: Option<tempfile::TempDir>,
    /// Where Raft keeps its log and state (servers).
    pub(crate) raft_dir: Option<PathBuf>,
    /// This agent's own writes (through its Raft node, or a server's).
    pub(crate) writes: Arc<crate::writes::Writes>,
}

mod parking {
    /// A value taken once at `run`.
    pub struct Slot<T>(std::sync::Mutex<Option<T>>);
    impl<T> Slot<T> {
        pub fn new(v: Option<T>) -> Self {
            Slot(std::sync::Mutex::new(v))
        }
        pub fn take(&self) -> Option<T> {
            self.0.lock().expect("slot lock").take()
        }
    }
}

async fn bind(
    addr: Option<SocketAddr>,
    what: &str,
    flag: &str,
) -> anyhow::Result<Option<TcpListener>> {
    let Some(addr) = addr else { return Ok(None) };
    TcpListener::bind(addr).await.map(Some).with_context(|| {
        format!("cannot listen for {what} on {addr} (port in use? choose another with {flag})")
    })
}

fn advertised(ip: IpAddr, fallback: IpAddr, port: u16) -> SocketAddr {
    let ip = if ip.is_unspecified() { fallback } else { ip };
    SocketAddr::new(ip, port)
}

impl Agent {
    /// Bind listeners, open storage and start gossip and Raft. Nothing is
    /// written to the data dir until every listener is bound.
    pub async fn build(config: RuntimeConfig) -> anyhow::Result<Agent> {
        let started = Instant::now();
        let http = bind(config.http_addr(), "HTTP", "-http-port").await?;
        // Certificate problems stop the start, naming the file.
        let https = match (config.https_addr(), &config.tls) {
            (Some(addr), Some(files)) => {
                let tls = crate::https::server_config(files)?;
                bind(Some(addr), "HTTPS", "-https-port")
                    .await?
                    .map(|l| (l, tls))
            }
            _ => None,
        };
        let https_addr = https.as_ref().map(|(l, _)| l.local_addr()).transpose()?;
        let rpc = if config.server {
            bind(config.server_addr(), "server RPC", "-server-port").await?
        } else {
            None
        };
        if config.server && rpc.is_none() {
            bail!("a server needs its server RPC port (ports.server must not be -1)");
        }
        // Servers answer DNS from their state; client agents relay to a server.
        let dns = match config.dns_addr() {
            Some(addr) => Some(crate::dns::bind(addr).await?),
            None => None,
        };
        let dns_addr = dns.as_ref().map(|d| d.udp.local_addr()).transpose()?;
        let http_addr = http.as_ref().map(|l| l.local_addr()).transpose()?;
        let rpc_addr = rpc
            .as_ref()
            .map(|l| l.local_addr())
            .transpose()?
            .map(|a| advertised(config.advertise_addr, config.advertise_addr, a.port()));

        let (data_dir, dev_dir) = data_dir(&config)?;
        let node_id = match &data_dir {
            Some(dir) => identity::load_or_create(dir)?,
            None => Uuid::new_v4(),
        };

        let rpc_limiter = rpc_limiter(&config.limits);
        let raft_dir = config
            .server
            .then(|| data_dir.as_ref().map(|d| d.join("raft")))
            .flatten();
        let state = Arc::new(StateStore::new());
        let raft = if config.server {
            let dir = data_dir
                .as_ref()
                .expect("servers have a data dir")
                .join("raft");
            let (log, sm) = mesh_store::open(&dir, state.clone())?;
            let timing = if config.dev {
                RaftTiming::dev()
            } else {
                RaftTiming::lan(config.raft_multiplier)
            };
            let node = RaftNode::start(identity::raft_id(&node_id), timing, log, sm, state.clone())
                .await
                .context("starting raft")?;
            Some(node)
        } else {
            None
        };

        let mut gossip_tags = BTreeMap::new();
        gossip_tags.insert(tags::NODE_ID.into(), node_id.to_string());
        gossip_tags.insert(tags::VERSION.into(), env!("CARGO_PKG_VERSION").into());
        if let Some(addr) = http_addr {
            gossip_tags.insert(
                tags::HTTP.into(),
                advertised(addr.ip(), config.advertise_addr, addr.port()).to_string(),
            );
        }
        if let (true, Some(addr)) = (config.server, dns_addr) {
            gossip_tags.insert(
                tags::DNS.into(),
                advertised(addr.ip(), config.advertise_addr, addr.port()).to_string(),
            );
        }
        if let (Some(raft), Some(rpc)) = (&raft, rpc_addr) {
            gossip_tags.insert(tags::RAFT_ID.into(), raft.id().to_string());
            gossip_tags.insert(tags::RPC.into(), rpc.to_string());
            gossip_tags.insert(tags::EXPECT.into(), config.bootstrap_expect.to_string());
            if raft.is_initialized().await {
                gossip_tags.insert(tags::INIT.into(), "1".into());
            }
        }
        let gossip_bind = config
            .serf_lan_addr()
            .context("the LAN gossip port must not be disabled")?;
        let keyring = config
            .encrypt
            .as_deref()
            .map(Keyring::from_base64)
            .transpose()
            .context("invalid -encrypt key")?;
        let gossip = Gossip::start(GossipConfig {
            name: config.node_name.clone(),
            bind: gossip_bind,
            // Port 0 in the advertise address is filled in with the bound port.
            advertise: gossip_bind
                .ip()
                .is_unspecified()
                .then(|| SocketAddr::new(config.advertise_addr, gossip_bind.port())),
            dc: config.datacenter.clone(),
            role: if config.server { Role::Server } else { Role::Client },
            tags: gossip_tags,
            keyring,
            timing: Timing::lan(),
        })
        .await
        .with_context(|| format!("starting LAN gossip on {gossip_bind} (port in use? choose another with -serf-lan-port)"))?;

        let (updates_tx, updates_rx) = mpsc::channel(1024);
        let local = LocalState::new(
            data_dir.as_ref().map(|d| d.join("local-services.json")),
            updates_tx,
            RunnerOptions {
                enable_script_checks: config.enable_script_checks,
            },
        );
        tracing::info!(
            elapsed_ms = started.elapsed().as_millis() as u64,
            "agent built"
        );
        let (reload_tx, reload_rx) = mpsc::channel(16);
        let rpc_network = mesh_raft::Network::default();
        let writes = Arc::new(crate::writes::Writes::new(
            raft.clone(),
            rpc_network.clone(),
            rpc_limiter,
            gossip.clone(),
        ));
        let live = watch::Sender::new(Arc::new(config.live()));
        let ca = Arc::new(crate::connect_ca::ConnectCa::new(
            &config,
            state.clone(),
            writes.clone(),
            live.subscribe(),
        ));
        let local = Arc::new(local);
        let shutdown = watch::channel(Stop::Running).0;
        let server_http = crate::handle::server_client();
        let snapshots = Arc::new(crate::snapshot_hub::SnapshotHub::new(
            crate::snapshot_hub::HubInputs {
                state: state.clone(),
                local: local.clone(),
                ca: ca.clone(),
                live: live.subscribe(),
                shutdown: shutdown.subscribe(),
                node_name: config.node_name.clone(),
                datacenter: config.datacenter.clone(),
                server: config.server,
                writes: writes.clone(),
                http: server_http.clone(),
            },
        ));
        let reconciler = crate::reconcile::Reconciler {
            node_name: config.node_name.clone(),
            server: config.server,
            state: state.clone(),
            local: local.clone(),
            writes: writes.clone(),
            http: server_http.clone(),
            live: live.subscribe(),
        };
        Ok(Agent {
            reconciler,
            live,
            dns_settings: watch::channel(crate::dns::settings(&config.datacenter, &config.live()))
                .0,
            config_source: None,
            config_status: Default::default(),
            reload_tx,
            reload_rx: parking::Slot::new(Some(reload_rx)),
            ca,
            snapshots,
            config,
            node_id,
            state,
            raft,
            gossip,
            http: parking::Slot::new(http),
            https: parking::Slot::new(https),
            rpc: parking::Slot::new(rpc),
            http_addr,
            https_addr,
            rpc_addr,
            shutdown,
            local,
            synced: Arc::new(watch::channel(0).0),
            rpc_network,
            check_updates: parking::Slot::new(Some(updates_rx)),
            dns: parking::Slot::new(dns),
            dns_addr,
            _dev_dir: dev_dir,
            raft_dir,
            writes,
        })
    }

    /// Remember where the config came from, so reloads can read it again.
    pub fn with_config_source(mut self, source: crate::reload::ConfigSource) -> Agent {
        self.config_source = Some(source);
        self
    }

    /// This server's Raft membership entry.
    pub(crate) fn mesh_node(&self) -> Option<MeshNode> {
        Some(MeshNode {
            name: self.config.node_name.clone(),
            rpc_addr: self.rpc_addr?.to_string(),
            http_addr: self.http_addr.map(|a| a.to_string()).unwrap_or_default(),
        })
    }

    /// Runs until `shutdown` resolves (the binary's signals), the agent is
    /// asked to leave, or a task fails.
    pub async fn run(
        self: Arc<Self>,
        shutdown: impl std::future::Future<Output = ()>,
    ) -> anyhow::Result<()> {
        let mut tasks = tokio::task::JoinSet::new();
        // Writes this agent forwards on its own behalf carry its token; the
        // RPC port checks what peers send (see `Agent::check_proposal`).
        let agent_token = self.live.borrow().acl.own_token();
        self.rpc_network.set_token(agent_token.clone());
        if let Some(raft) = &self.raft {
            raft.network().set_token(agent_token);
            let agent = Arc::downgrade(&self);
            raft.set_propose_guard(Arc::new(move |token, cmd| match agent.upgrade() {
                Some(agent) => agent.check_proposal(token, cmd),
                None => Err("the agent is stopping".into()),
            }));
        }
        let router = mesh_api::Api::new(
            self.raft.clone(),
            self.state.clone(),
            Arc::new(AgentView::new(self.clone())),
        )
        .router(
            crate::endpoints::routes(self.clone()),
            crate::ca_endpoints::routes(self.clone()),
        );
        let limits = self.config.limits;
        let per_client = crate::conn_limit::PerClient::new(limits.http_max_conns_per_client);
        let servers = [
            self.https
                .take()
                .map(|(l, tls)| (l, Some(tls), "HTTPS server")),
            self.http.take().map(|l| (l, None, "HTTP server")),
        ];
        for (listener, tls, name) in servers.into_iter().flatten() {
            let mut stop = self.shutdown.subscribe();
            let server = crate::http_server::HttpServer {
                router: router.clone(),
                tls,
                // One budget across HTTP and HTTPS, as in Consul.
                per_client: per_client.clone(),
                header_timeout: limits.http_read_header_timeout,
            };
            tasks.spawn(async move {
                server
                    .serve(listener, async move {
                        let _ = stop.wait_for(|s| *s != Stop::Running).await;
                    })
                    .await
                    .context(name)
            });
        }
        if let (Some(listener), Some(raft)) = (self.rpc.take(), self.raft.clone()) {
            let mut stop = self.shutdown.subscribe();
            let rpc_limit = crate::conn_limit::PerClient::new(limits.rpc_max_conns_per_client);
            tasks.spawn(async move {
                tonic::transport::Server::builder()
                    .add_service(raft.service().into_server())
                    .serve_with_incoming_shutdown(
                        crate::conn_limit::rpc_incoming(listener, rpc_limit),
                        async move {
                            let _ = stop.wait_for(|s| *s != Stop::Running).await;
                        },
                    )
                    .await
                    .context("server RPC")
            });
        }
        tasks.spawn(duties::retry_join(self.clone()));
        if let Some(raft) = &self.raft {
            let server = Arc::new(duties::ServerDuties {
                raft: raft.clone(),
                gossip: self.gossip.clone(),
                state: self.state.clone(),
                writes: self.writes.clone(),
                live: self.live.subscribe(),
                shutdown: self.shutdown.subscribe(),
                node_name: self.config.node_name.clone(),
                datacenter: self.config.datacenter.clone(),
                bootstrap_expect: self.config.bootstrap_expect as usize,
                me: self.mesh_node(),
            });
            tasks.spawn(duties::bootstrap(server.clone()));
            tasks.spawn(duties::membership(server));
            tasks.spawn(crate::connect_ca::leader_loop(
                self.ca.clone(),
                raft.clone(),
                self.shutdown.subscribe(),
            ));
            tasks.spawn(crate::snapshot_hub::run(self.snapshots.clone()));
            if let Some(dir) = self.raft_dir.clone() {
                tasks.spawn(crate::storage::watch(
                    raft.clone(),
                    dir,
                    self.shutdown.subscribe(),
                ));
            }
        }
        if let Some(updates) = self.check_updates.take() {
            tasks.spawn(crate::sync::check_results(self.local.clone(), updates));
        }
        tasks.spawn(crate::sync::anti_entropy(crate::sync::AntiEntropy {
            local: self.local.clone(),
            writes: self.writes.clone(),
            node: crate::sync::catalog_node(
                &self.node_id,
                &self.config,
                self.gossip.local_addr().ip(),
            ),
            synced: self.synced.clone(),
            shutdown: self.shutdown.subscribe(),
        }));
        if !self.config.server {
            if let Some(listeners) = self.dns.take() {
                tasks.spawn(crate::dns::relay(
                    self.writes.clone(),
                    listeners,
                    self.shutdown.subscribe(),
                ));
            }
        }
        if let Some(listeners) = self.dns.take() {
            let server =
                mesh_dns::DnsServer::new(self.state.clone(), self.dns_settings.subscribe());
            let mut stop = self.shutdown.subscribe();
            tasks.spawn(async move {
                server
                    .serve(listeners.udp, listeners.tcp, async move {
                        let _ = stop.wait_for(|s| *s != Stop::Running).await;
                    })
                    .await
                    .context("DNS server")
            });
        }
        self.local.restore();
        if let Some(rx) = self.reload_rx.take() {
            tasks.spawn(crate::reload::reload_loop(self.clone(), rx));
        }
        tasks.spawn(crate::reload::watch_files(self.clone()));
        if self.config.connect_managed_sidecars {
            tasks.spawn(crate::managed::run(crate::managed::Sidecars {
                hub: self.snapshots.clone(),
                local: self.local.clone(),
                server: self.raft.is_some(),
                live: self.live.subscribe(),
                shutdown: self.shutdown.subscribe(),
            }));
        }
        tasks.spawn(duties::announce_ready(self.clone()));

        let reason = self.wait_for_stop(&mut tasks, shutdown).await?;
        if reason == Stop::Leave || (reason == Stop::Signal && !self.config.server) {
            self.leave().await;
        }
        let _ = self.shutdown.send(Stop::Signal);
        if let Some(raft) = &self.raft {
            raft.shutdown().await;
        }
        self.gossip.shutdown().await;
        tasks.abort_all();
        tracing::info!("agent stopped");
        Ok(())
    }

    async fn wait_for_stop(
        &self,
        tasks: &mut tokio::task::JoinSet<anyhow::Result<()>>,
        shutdown: impl std::future::Future<Output = ()>,
    ) -> anyhow::Result<Stop> {
        let mut stop = self.shutdown.subscribe();
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                _ = &mut shutdown => return Ok(Stop::Signal),
                reason = stop.wait_for(|s| *s != Stop::Running) => {
                    return Ok(reason.map(|r| *r).unwrap_or(Stop::Signal));
                }
                Some(done) = tasks.join_next() => {
                    if let Ok(Err(e)) = done {
                        return Err(e);
                    }
                }
            }
        }
    }

    /// Asks for a config reload (what SIGHUP does); it runs in the
    /// background and its outcome shows in `/v1/agent/self`.
    pub fn reload_soon(&self, trigger: &'static str) {
        let request = crate::reload::ReloadRequest {
            trigger,
            reply: None,
        };
        // A full queue already holds a reload that will read the same files.
        let _ = self.reload_tx.try_send(request);
    }

    /// Graceful leave: a leader hands its seat back first, then gossip says goodbye.
    async fn leave(&self) {
        tracing::info!("leaving the cluster");
        if let Some(raft) = &self.raft {
            if raft.is_leader() {
                if let Err(e) = raft.remove_server(raft.id()).await {
                    tracing::warn!(error = %e, "removing self from raft configuration");
                }
            }
        }
        if let Err(e) = self.gossip.leave(Duration::from_secs(5)).await {
            tracing::warn!(error = %e, "gossip leave");
        }
    }

    /// Ask the agent to leave and stop.
    pub fn request_leave(&self) {
        let _ = self.shutdown.send(Stop::Leave);
    }
}

/// The data dir to use: the configured one, or a temp dir for `-dev`.
/// A token bucket of `rpc_max_burst` refilled at `rpc_rate` per second.
fn rpc_limiter(limits: &mesh_config::Limits) -> Option<governor::DefaultDirectRateLimiter> {
    let rate = limits.rpc_rate?;
    let period = Duration::try_from_secs_f64(1.0 / rate).ok()?;
    let burst = std::num::NonZeroU32::new(limits.rpc_max_burst)?;
    let quota = governor::Quota::with_period(period)?.allow_burst(burst);
    Some(governor::RateLimiter::direct(quota))
}

fn data_dir(
    config: &RuntimeConfig,
) -> anyhow::Result<(Option<PathBuf>, Option<tempfile::TempDir>)> {
    if let Some(dir) = &config.data_dir {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create data dir {}", dir.display()))?;
        if !dir.is_dir() {
            bail!("data dir {} is not a directory", dir.display());
        }
        return Ok((Some(dir.clone()), None));
    }
    if config.dev {
        let tmp = tempfile::Builder::new()
            .prefix("mesh-dev-")
            .tempdir()
            .context("creating a temp data dir for -dev")?;
        return Ok((Some(tmp.path().to_path_buf()), Some(tmp)));
    }
    if config.server {
        bail!("a server needs a data dir: pass -data-dir=PATH (or data_dir in a config file)");
    }
    Ok((None, None))
}
