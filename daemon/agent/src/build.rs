//! Building an agent from its config (`Config::build`: listeners bound,
//! store open, gossip started) and running it (`Built::spawn`: every
//! component's tasks, until shutdown).

use std::collections::BTreeMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use mesh_checks::{CheckUpdate, RunnerOptions};
use mesh_config::RuntimeConfig;
use mesh_gossip::{Gossip, GossipConfig, Keyring, Role, Timing};
use mesh_raft::{RaftNode, RaftTiming};
use mesh_state::StateStore;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio::task::{JoinHandle, JoinSet};

use crate::dns::DnsListeners;
use crate::handle::AgentView;
use crate::local::LocalState;
use crate::node::{Addrs, Node};
use crate::reload::{ConfigSource, ReloadInputs, ReloadRequest, Reloads};
use crate::stop::Stop;
use crate::{duties, identity, tags};
use uuid::Uuid;

/// What an agent is built from: its settings and where they came from.
pub struct Config {
    runtime: RuntimeConfig,
    source: Option<ConfigSource>,
}

/// A built agent: listeners bound, store open, gossip started; no task
/// runs until `spawn`.
pub struct Built {
    node: Arc<Node>,
    http: Option<TcpListener>,
    https: Option<(TcpListener, Arc<mesh_tls::SurfaceTls>)>,
    dns: Option<DnsListeners>,
    grpc: Option<TcpListener>,
    /// `ports.grpc_tls`: xDS over TLS, with `tls.grpc`.
    grpc_tls: Option<(TcpListener, Arc<mesh_tls::SurfaceTls>)>,
    /// Only servers have one.
    server: Option<ServerParts>,
    check_updates: mpsc::Receiver<CheckUpdate>,
    reload_requests: mpsc::Receiver<ReloadRequest>,
    /// Client agents propose through servers over this.
    rpc_network: mesh_raft::Network,
    /// What a client's auto_encrypt certificate goes to: RPC and HTTPS.
    client_tls: Vec<Arc<mesh_tls::SurfaceTls>>,
    dev_dir: Option<tempfile::TempDir>,
}

/// What exists only on a server.
struct ServerParts {
    raft: RaftNode,
    rpc: TcpListener,
    /// Where Raft keeps its log and state.
    dir: PathBuf,
    /// `tls.internal_rpc`, when the RPC port speaks TLS.
    tls: Option<Arc<mesh_tls::SurfaceTls>>,
    /// `tls.https`, when the HTTPS API is served.
    https_tls: Option<Arc<mesh_tls::SurfaceTls>>,
}

/// A running agent: wait for it to finish, or ask it to reload.
pub struct Drain {
    reloads: Reloader,
    task: JoinHandle<anyhow::Result<()>>,
}

/// Asks a running agent to reload (what SIGHUP does).
#[derive(Clone)]
pub struct Reloader(Arc<Reloads>);

impl Reloader {
    /// A reload runs in the background; its outcome shows in `/v1/agent/self`.
    pub fn reload_soon(&self, trigger: &'static str) {
        self.0.soon(trigger);
    }
}

impl Drain {
    pub fn reloader(&self) -> Reloader {
        self.reloads.clone()
    }

    /// Waits until the agent has stopped: after the shutdown future
    /// resolved, a leave, or a failed task (its error).
    pub async fn wait(self) -> anyhow::Result<()> {
        self.task.await.context("the agent's task panicked")?
    }
}

impl Config {
    pub fn new(runtime: RuntimeConfig) -> Config {
        Config {
            runtime,
            source: None,
        }
    }

    /// Where the config came from, so reloads can read it again.
    pub fn with_source(mut self, source: ConfigSource) -> Config {
        self.source = Some(source);
        self
    }

    /// Bind listeners, open storage and start gossip and Raft. Nothing is
    /// written to the data dir until every listener is bound.
    pub async fn build(self) -> anyhow::Result<Built> {
        let Config {
            runtime: config,
            source,
        } = self;
        let started = Instant::now();
        let http = bind(config.http_addr(), "HTTP", "-http-port").await?;
        // Certificate problems stop the start, naming the file.
        let server_name = mesh_tls::server_name(&config.datacenter, &config.dns.domain);
        let https = match config.https_addr() {
            Some(addr) => {
                let tls = mesh_tls::SurfaceTls::load(&config.tls.https, &server_name)?;
                bind(Some(addr), "HTTPS", "-https-port")
                    .await?
                    .map(|l| (l, Arc::new(tls)))
            }
            None => None,
        };
        let rpc_tls = match config.tls.rpc_enabled() {
            true => Some(Arc::new(mesh_tls::SurfaceTls::load(
                &config.tls.internal_rpc,
                &server_name,
            )?)),
            false => None,
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
        let grpc = bind(config.grpc_addr(), "gRPC (xDS)", "-grpc-port").await?;
        let grpc_addr = grpc.as_ref().map(|l| l.local_addr()).transpose()?;
        let grpc_tls = match config.grpc_tls_addr() {
            Some(addr) => {
                let tls = mesh_tls::SurfaceTls::load(&config.tls.grpc, &server_name)?;
                bind(Some(addr), "gRPC over TLS (xDS)", "-grpc-tls-port")
                    .await?
                    .map(|l| (l, Arc::new(tls)))
            }
            None => None,
        };
        let grpc_tls_addr = grpc_tls.as_ref().map(|(l, _)| l.local_addr()).transpose()?;
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
        let state = Arc::new(StateStore::new());
        let raft = match (config.server, &data_dir) {
            (false, _) => None,
            (true, None) => bail!("a server needs a data dir"),
            (true, Some(data)) => {
                let dir = data.join("raft");
                let (log, sm) = mesh_store::open(&dir, state.clone())?;
                let timing = if config.dev {
                    RaftTiming::dev()
                } else {
                    RaftTiming::lan(config.raft_multiplier)
                };
                let node =
                    RaftNode::start(identity::raft_id(&node_id), timing, log, sm, state.clone())
                        .await
                        .context("starting raft")?;
                Some((node, dir))
            }
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
        if let (true, Some(addr)) = (config.server, https_addr) {
            gossip_tags.insert(
                tags::HTTPS.into(),
                advertised(addr.ip(), config.advertise_addr, addr.port()).to_string(),
            );
        }
        if let (true, Some(addr)) = (config.server, dns_addr) {
            gossip_tags.insert(
                tags::DNS.into(),
                advertised(addr.ip(), config.advertise_addr, addr.port()).to_string(),
            );
        }
        if let (Some((raft, _)), Some(rpc)) = (&raft, rpc_addr) {
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
        // Keys changed with `mesh keyring` persist in the data dir and win
        // over `encrypt`, as Consul's keyring file does.
        let keyring_file = data_dir.as_ref().map(|d| d.join("keyring"));
        let keyring = match &keyring_file {
            Some(file) if file.exists() => {
                if config.encrypt.is_some() {
                    tracing::info!(file = %file.display(), "using the stored gossip keyring; encrypt applies only to a new data dir");
                }
                Some(mesh_gossip::load_keyring_file(file)?)
            }
            _ => config
                .encrypt
                .as_deref()
                .map(Keyring::from_base64)
                .transpose()
                .context("invalid -encrypt key")?,
        };
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
            verify_incoming: config.encrypt_verify_incoming,
            verify_outgoing: config.encrypt_verify_outgoing,
            keyring_file,
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
        // The HTTPS surface's CA lets this agent call servers over HTTPS.
        let https_client = match (&https, config.tls.https.has_ca()) {
            (Some((_, tls)), true) => Some(tls.clone()),
            (None, true) => Some(Arc::new(mesh_tls::SurfaceTls::load(
                &config.tls.https,
                &server_name,
            )?)),
            (_, false) => None,
        };
        let rpc_network = mesh_raft::Network::default();
        let writes = Arc::new(crate::writes::Writes::new(
            raft.as_ref().map(|(r, _)| r.clone()),
            rpc_network.clone(),
            rpc_limiter,
            gossip.clone(),
            https_client.is_some(),
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
        let server_http = crate::handle::server_client(https_client.as_ref());
        let client_tls: Vec<_> = rpc_tls.iter().chain(&https_client).cloned().collect();
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
                max_watched: config.limits.proxy_snapshots_max_watched as usize,
            },
        ));
        let reconciler = crate::reconcile::Reconciler {
            node_name: config.node_name.clone(),
            datacenter: config.datacenter.clone(),
            server: config.server,
            state: state.clone(),
            local: local.clone(),
            writes: writes.clone(),
            http: server_http.clone(),
            live: live.subscribe(),
        };
        let mut networks = vec![rpc_network.clone()];
        networks.extend(raft.as_ref().map(|(r, _)| r.network().clone()));
        if let Some(tls) = &rpc_tls {
            for network in &networks {
                network.set_tls(Arc::new(crate::rpc_listener::AgentRpcTls {
                    tls: tls.clone(),
                }));
            }
        }
        let tls_surfaces: Vec<_> = rpc_tls
            .iter()
            .chain(https.as_ref().map(|(_, tls)| tls))
            .chain(grpc_tls.as_ref().map(|(_, tls)| tls))
            .cloned()
            .collect();
        let (reloads, reload_requests) = Reloads::new(ReloadInputs {
            source,
            started_with: config.clone(),
            reconciler: reconciler.clone(),
            ca: ca.clone(),
            live,
            networks,
            tls: tls_surfaces,
            gossip: gossip.clone(),
            shutdown: shutdown.subscribe(),
        });
        let server = match (raft.clone(), rpc) {
            (Some((raft, dir)), Some(rpc)) => Some(ServerParts {
                raft,
                rpc,
                dir,
                tls: rpc_tls.clone(),
                https_tls: https.as_ref().map(|(_, t)| t.clone()),
            }),
            _ => None,
        };
        let live = reloads.live();
        let autopilot = server.as_ref().map(|s| {
            Arc::new(crate::autopilot::Autopilot::new(
                s.raft.clone(),
                gossip.clone(),
                config.autopilot,
            ))
        });
        let node = Arc::new(Node {
            addrs: Addrs {
                http: http_addr,
                https: https_addr,
                rpc: rpc_addr,
                dns: dns_addr,
                grpc: grpc_addr,
                grpc_tls: grpc_tls_addr,
            },
            raft: raft.map(|(r, _)| r),
            config,
            node_id,
            state,
            gossip,
            event_intake: Default::default(),
            local,
            synced: Arc::new(watch::channel(0).0),
            writes,
            ca,
            snapshots,
            reconciler,
            reloads: Arc::new(reloads),
            xds: Default::default(),
            live,
            shutdown,
            server_http,
            autopilot,
        });
        Ok(Built {
            node,
            http,
            https,
            dns,
            grpc,
            grpc_tls,
            server,
            check_updates: updates_rx,
            reload_requests,
            rpc_network,
            client_tls,
            dev_dir,
        })
    }
}

impl Built {
    /// Starts every component's tasks and returns at once; the agent runs
    /// until `shutdown` resolves (the binary's signals), it is asked to
    /// leave, or a task fails.
    pub fn spawn(self, shutdown: impl Future<Output = ()> + Send + 'static) -> Drain {
        let reloads = Reloader(self.node.reloads.clone());
        let task = tokio::spawn(self.run(shutdown));
        Drain { reloads, task }
    }

    async fn run(mut self, shutdown: impl Future<Output = ()> + Send) -> anyhow::Result<()> {
        let node = self.node.clone();
        // A -dev agent's data dir lives as long as the agent, not as long as
        // start-up: removed once everything has stopped.
        let _dev_dir = self.dev_dir.take();
        let mut tasks = JoinSet::new();
        self.spawn_tasks(&mut tasks);
        let reason = wait_for_stop(&node, &mut tasks, shutdown).await?;
        if reason == Stop::Leave || (reason == Stop::Signal && !node.config.server) {
            node.leave().await;
        }
        let _ = node.shutdown.send(Stop::Signal);
        if let Some(raft) = &node.raft {
            raft.shutdown().await;
        }
        node.gossip.shutdown().await;
        tasks.abort_all();
        tracing::info!("agent stopped");
        Ok(())
    }

    fn spawn_tasks(self, tasks: &mut JoinSet<anyhow::Result<()>>) {
        let node = self.node;
        let stopping = || {
            let mut stop = node.shutdown.subscribe();
            async move {
                let _ = stop.wait_for(|s| *s != Stop::Running).await;
            }
        };
        // Writes this agent forwards on its own behalf carry its token; the
        // RPC port checks what peers send (see `Node::check_proposal`).
        let agent_token = node.live.borrow().acl.own_token();
        self.rpc_network.set_token(agent_token.clone());
        if node.config.tls.auto_encrypt.tls {
            tasks.spawn(crate::auto_encrypt::client(
                node.clone(),
                self.rpc_network.clone(),
                self.client_tls.clone(),
                node.shutdown.subscribe(),
            ));
        }
        let router = mesh_api::Api::new(
            node.raft.clone(),
            node.state.clone(),
            Arc::new(AgentView::new(node.clone())),
        )
        .router(
            crate::endpoints::routes(node.clone()),
            crate::ca_endpoints::routes(node.clone()),
        );
        let router = if node.config.ui {
            router.merge(mesh_ui::router(
                &node.config.ui_content_path,
                node.config.ui_dir.clone(),
            ))
        } else {
            router
        };
        let limits = node.config.limits;
        let per_client = crate::conn_limit::PerClient::new(limits.http_max_conns_per_client);
        let servers = [
            self.https.map(|(l, tls)| (l, Some(tls), "HTTPS server")),
            self.http.map(|l| (l, None, "HTTP server")),
        ];
        for (listener, tls, name) in servers.into_iter().flatten() {
            let server = crate::http_server::HttpServer {
                router: router.clone(),
                tls,
                // One budget across HTTP and HTTPS, as in Consul.
                per_client: per_client.clone(),
                header_timeout: limits.http_read_header_timeout,
            };
            let stop = stopping();
            tasks.spawn(async move { server.serve(listener, stop).await.context(name) });
        }
        let xds = || {
            let source = Arc::new(crate::xds::XdsSource {
                node: node.clone(),
                http: node.server_http.clone(),
            });
            mesh_xds::service(source, node.xds.clone())
        };
        // One per-client budget across the plaintext and TLS ports.
        let limit = crate::conn_limit::PerClient::new(limits.http_max_conns_per_client);
        if let Some(listener) = self.grpc {
            let service = xds();
            let (limit, stop) = (limit.clone(), stopping());
            tasks.spawn(async move {
                tonic::transport::Server::builder()
                    .add_service(service)
                    .serve_with_incoming_shutdown(
                        crate::conn_limit::rpc_incoming(listener, limit),
                        stop,
                    )
                    .await
                    .context("gRPC (xDS) server")
            });
        }
        if let Some((listener, tls)) = self.grpc_tls {
            let service = xds();
            let stop = stopping();
            let policy = crate::rpc_listener::TlsPolicy::tls_only(tls, "tls.grpc");
            tasks.spawn(async move {
                tonic::transport::Server::builder()
                    .add_service(service)
                    .serve_with_incoming_shutdown(
                        crate::rpc_listener::incoming(listener, limit, Some(policy)),
                        stop,
                    )
                    .await
                    .context("gRPC over TLS (xDS) server")
            });
        }
        if let Some(server) = self.server {
            spawn_server(&node, server, tasks);
        }
        tasks.spawn(duties::retry_join(
            node.gossip.clone(),
            node.config.retry_join.clone(),
            node.config.retry_interval,
            node.shutdown.subscribe(),
        ));
        tasks.spawn(crate::sync::check_results(
            node.local.clone(),
            self.check_updates,
        ));
        tasks.spawn(crate::coordinates::run(
            crate::coordinates::CoordinateReports {
                node_name: node.config.node_name.clone(),
                gossip: node.gossip.clone(),
                writes: node.writes.clone(),
                synced: node.synced.subscribe(),
                shutdown: node.shutdown.subscribe(),
            },
        ));
        tasks.spawn(crate::sync::anti_entropy(crate::sync::AntiEntropy {
            local: node.local.clone(),
            writes: node.writes.clone(),
            node: crate::sync::catalog_node(
                &node.node_id,
                &node.config,
                node.gossip.local_addr().ip(),
            ),
            synced: node.synced.clone(),
            shutdown: node.shutdown.subscribe(),
        }));
        if let Some(listeners) = self.dns {
            if node.config.server {
                let server =
                    mesh_dns::DnsServer::new(node.state.clone(), node.reloads.dns_settings());
                let stop = stopping();
                tasks.spawn(async move {
                    server
                        .serve(listeners.udp, listeners.tcp, stop)
                        .await
                        .context("DNS server")
                });
            } else {
                // Client agents hold no catalog: they relay to a server.
                tasks.spawn(crate::dns::relay(
                    node.writes.clone(),
                    listeners,
                    node.shutdown.subscribe(),
                ));
            }
        }
        node.local.restore();
        tasks.spawn(crate::reload::reload_loop(
            node.reloads.clone(),
            self.reload_requests,
            node.local.clone(),
        ));
        tasks.spawn(crate::reload::watch_files(node.reloads.clone()));
        if node.config.connect_managed_sidecars || node.config.connect_managed_gateways {
            tasks.spawn(crate::managed::run(crate::managed::Sidecars {
                sidecars: node.config.connect_managed_sidecars,
                gateways: node.config.connect_managed_gateways,
                hub: node.snapshots.clone(),
                local: node.local.clone(),
                server: node.raft.is_some(),
                live: node.live.clone(),
                shutdown: node.shutdown.subscribe(),
            }));
        }
        tasks.spawn(crate::events::intake(
            node.clone(),
            node.shutdown.subscribe(),
        ));
        tasks.spawn(crate::watches::run(
            node.addrs.http,
            node.live.clone(),
            node.shutdown.subscribe(),
        ));
        tasks.spawn(announce_ready(node));
    }
}

/// A server's own tasks: the RPC port, bootstrap and membership, the CA's
/// leader loop, the snapshot hub, the storage watch.
fn spawn_server(node: &Arc<Node>, server: ServerParts, tasks: &mut JoinSet<anyhow::Result<()>>) {
    let ServerParts {
        raft,
        rpc,
        dir,
        tls,
        https_tls,
    } = server;
    raft.network().set_token(node.live.borrow().acl.own_token());
    let guard = Arc::downgrade(node);
    raft.set_propose_guard(Arc::new(move |token, cmd| match guard.upgrade() {
        Some(node) => node.check_proposal(token, cmd),
        None => Err("the agent is stopping".into()),
    }));
    tasks.spawn(crate::acl_expiry::run(
        node.state.clone(),
        raft.clone(),
        node.shutdown.subscribe(),
    ));
    let timers = crate::session_ttl::SessionTimers::new(node.state.clone());
    let renewals = timers.clone();
    raft.set_leader_answer(Arc::new(move |cmd| renewals.renew(cmd)));
    tasks.spawn(crate::session_ttl::run(
        timers,
        raft.clone(),
        node.shutdown.subscribe(),
    ));
    if let (true, Some(tls)) = (node.config.tls.auto_encrypt.allow_tls, &tls) {
        // Callers without a certificate get through the handshake (to ask
        // for one) before the listener starts.
        if let Err(e) = tls.update_extra(|e| e.unauthenticated_callers = true) {
            tracing::error!(error = %e, "auto_encrypt: the RPC listener");
        }
        let signing = Arc::downgrade(node);
        raft.set_auto_encrypt(Arc::new(move |token, request| {
            let node = signing.upgrade();
            Box::pin(async move {
                match node {
                    Some(node) => crate::auto_encrypt::sign(node, token, request).await,
                    None => Err("the agent is stopping".into()),
                }
            })
        }));
        tasks.spawn(crate::auto_encrypt::serve_roots(
            node.clone(),
            std::iter::once(tls.clone()).chain(https_tls).collect(),
            node.shutdown.subscribe(),
        ));
    }
    let rpc_limit = crate::conn_limit::PerClient::new(node.config.limits.rpc_max_conns_per_client);
    let mut stop = node.shutdown.subscribe();
    let service = raft.service().into_server();
    let listener_tls = tls.clone();
    tasks.spawn(async move {
        tonic::transport::Server::builder()
            .add_service(service)
            .serve_with_incoming_shutdown(
                crate::rpc_listener::incoming(
                    rpc,
                    rpc_limit,
                    listener_tls.map(crate::rpc_listener::TlsPolicy::internal_rpc),
                ),
                async move {
                    let _ = stop.wait_for(|s| *s != Stop::Running).await;
                },
            )
            .await
            .context("server RPC")
    });
    let duties = Arc::new(duties::ServerDuties {
        raft: raft.clone(),
        gossip: node.gossip.clone(),
        state: node.state.clone(),
        writes: node.writes.clone(),
        live: node.live.clone(),
        shutdown: node.shutdown.subscribe(),
        node_name: node.config.node_name.clone(),
        datacenter: node.config.datacenter.clone(),
        bootstrap_expect: node.config.bootstrap_expect as usize,
        me: node.mesh_node(),
        rpc_tls: tls.as_ref().map(|t| t.surface().clone()),
    });
    tasks.spawn(duties::bootstrap(duties.clone()));
    if let Some(autopilot) = node.autopilot.clone() {
        tasks.spawn(crate::autopilot::run(autopilot, node.shutdown.subscribe()));
    }
    tasks.spawn(duties::membership(duties));
    tasks.spawn(crate::connect_ca::leader_loop(
        node.ca.clone(),
        raft.clone(),
        node.shutdown.subscribe(),
    ));
    tasks.spawn(crate::snapshot_hub::run(node.snapshots.clone()));
    tasks.spawn(crate::storage::watch(raft, dir, node.shutdown.subscribe()));
}

async fn wait_for_stop(
    node: &Node,
    tasks: &mut JoinSet<anyhow::Result<()>>,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<Stop> {
    let mut stop = node.shutdown.subscribe();
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

/// Print one line once the agent serves: for people, and for tests that
/// started it on port 0 to learn its addresses.
async fn announce_ready(node: Arc<Node>) -> anyhow::Result<()> {
    // A single-server cluster is ready once it leads; larger ones once serving.
    if let Some(raft) = &node.raft {
        if node.config.bootstrap_expect == 1 {
            let mut m = raft.raft().metrics();
            let _ = m.wait_for(|m| m.current_leader.is_some()).await;
        }
    }
    let fmt = |a: Option<SocketAddr>| a.map_or("-".to_string(), |a| a.to_string());
    println!(
        "==> mesh agent ready: node={} dc={} server={} http={} https={} rpc={} serf_lan={} dns={} grpc={} grpc_tls={}",
        node.config.node_name,
        node.config.datacenter,
        node.config.server,
        fmt(node.addrs.http),
        fmt(node.addrs.https),
        fmt(node.addrs.rpc),
        node.gossip.local_addr(),
        fmt(node.addrs.dns),
        fmt(node.addrs.grpc),
        fmt(node.addrs.grpc_tls),
    );
    Ok(())
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
