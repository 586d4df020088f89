//! `DnsServer`: owns what the transports share and runs them until shutdown.

use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use hickory_server::net::runtime::TokioTime;
use hickory_server::net::xfer::Protocol;
use hickory_server::proto::op::{Header, MessageType, Metadata, ResponseCode};
use hickory_server::proto::serialize::binary::{BinDecodable, BinDecoder};
use hickory_server::server::{Request, RequestHandler};
use mesh_state::StateStore;
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::cache::AnswerCache;
use crate::catalog::{Catalog, Watcher};
use crate::config::{DnsConfig, Settings};
use crate::forward::Forwarder;
use crate::handler::Handler;
use crate::reply::{header_only, Reply};

/// UDP workers sharing the socket, at most. Workers beyond half the cores
/// mostly wake each other up: the kernel's per-datagram work and the rest of
/// the agent need the other half.
const MAX_UDP_WORKERS: usize = 4;

/// The DNS interface over one state store; cheap to clone.
#[derive(Clone)]
pub struct DnsServer {
    catalog: Arc<Catalog>,
    config: watch::Receiver<DnsConfig>,
    forwarder: Forwarder,
}

impl DnsServer {
    /// A server answering from `state` with the configuration in `config`;
    /// a new configuration applies to the next query.
    pub fn new(state: Arc<StateStore>, config: watch::Receiver<DnsConfig>) -> Self {
        DnsServer {
            catalog: Arc::new(Catalog::new(state)),
            config,
            forwarder: Forwarder::new(),
        }
    }

    /// Answer on the bound `udp` socket and `tcp` listener until `shutdown`
    /// completes. Fails only if a socket fails for good.
    pub async fn serve(
        self,
        udp: UdpSocket,
        tcp: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> io::Result<()> {
        let own_ip = udp
            .local_addr()
            .ok()
            .map(|a| a.ip())
            .filter(|ip| !ip.is_unspecified());
        tracing::info!(udp = ?udp.local_addr().ok(), tcp = ?tcp.local_addr().ok(), "dns: serving");
        let udp = Arc::new(udp);
        let (stop, stopped) = watch::channel(false);
        let workers = std::thread::available_parallelism()
            .map_or(1, |n| n.get() / 2)
            .clamp(1, MAX_UDP_WORKERS);
        let mut tasks = JoinSet::new();
        for _ in 0..workers {
            let local = self.local(own_ip);
            tasks.spawn(crate::udp::serve(
                udp.clone(),
                local,
                Shutdown(stopped.clone()),
            ));
        }
        tasks.spawn(crate::tcp::serve(
            tcp,
            self.clone(),
            own_ip,
            Shutdown(stopped.clone()),
        ));

        let mut result = Ok(());
        tokio::select! {
            () = shutdown => {}
            Some(ended) = tasks.join_next() => result = flatten(ended),
        }
        let _ = stop.send(true);
        while let Some(ended) = tasks.join_next().await {
            if let Err(error) = flatten(ended) {
                result = result.and(Err(error));
            }
        }
        if let Err(error) = &result {
            tracing::error!(%error, "dns: server stopped");
        }
        result
    }

    /// Per-task state: a handler with its own snapshot of settings and view.
    pub(crate) fn local(&self, own_ip: Option<IpAddr>) -> Local {
        let mut config = self.config.clone();
        let (settings, acl) = {
            let c = config.borrow_and_update();
            (Arc::new(Settings::new(&c)), c.acl.clone())
        };
        let watcher = self.catalog.watcher();
        Local {
            handler: Handler {
                settings,
                view: self.catalog.view(acl.as_ref()),
                own_ip,
                forwarder: self.forwarder.clone(),
                store: self.catalog.store(),
            },
            config,
            acl,
            watcher,
            catalog: self.catalog.clone(),
            cache: AnswerCache::default(),
        }
    }
}

fn flatten(ended: Result<io::Result<()>, tokio::task::JoinError>) -> io::Result<()> {
    ended.map_err(io::Error::other)?
}

/// One transport task's handler, refreshed before each query when the
/// configuration or the catalog changed.
pub(crate) struct Local {
    handler: Handler,
    config: watch::Receiver<DnsConfig>,
    /// The ACL part of `config`, which decides what the view shows.
    acl: Option<crate::config::DnsAcl>,
    watcher: Watcher,
    catalog: Arc<Catalog>,
    cache: AnswerCache,
}

impl Local {
    fn refresh(&mut self) {
        // Err: the sender is gone; keep the last configuration.
        let mut acl_changed = false;
        if self.config.has_changed().unwrap_or(false) {
            let config = self.config.borrow_and_update();
            self.handler.settings = Arc::new(Settings::new(&config));
            acl_changed = config.acl != self.acl;
            self.acl = config.acl.clone();
            drop(config);
            self.cache.clear();
        }
        // Cached answers check their own part of the view on each hit.
        if self.watcher.changed() || acl_changed {
            self.handler.view = self.catalog.view(self.acl.as_ref());
        }
    }

    /// How many answers this worker holds encoded.
    #[cfg(test)]
    pub fn cached(&self) -> usize {
        self.cache.len()
    }

    /// Whether the next answer to `query` would come from the cache.
    #[cfg(test)]
    pub fn cache_holds(&mut self, query: &[u8]) -> bool {
        self.refresh();
        self.cache.holds(query, &self.handler)
    }

    /// Decode one message and answer it through `reply`.
    pub async fn handle(
        &mut self,
        bytes: Vec<u8>,
        src: SocketAddr,
        protocol: Protocol,
        reply: Reply,
    ) {
        self.refresh();
        let started = std::time::Instant::now();
        let udp = protocol == Protocol::Udp;
        if udp {
            if let Some(answer) = self.cache.answer(&bytes, &self.handler) {
                let _ = reply.send_bytes(answer).await;
                mesh_telemetry::histogram!(mesh_telemetry::DNS_DOMAIN_QUERY)
                    .record(mesh_telemetry::ms(started.elapsed()));
                return;
            }
        }
        // Timed on every exit below, as Consul times each question.
        struct Timed(std::time::Instant);
        impl Drop for Timed {
            fn drop(&mut self) {
                mesh_telemetry::histogram!(mesh_telemetry::DNS_DOMAIN_QUERY)
                    .record(mesh_telemetry::ms(self.0.elapsed()));
            }
        }
        let _timed = Timed(started);
        // Shorter than a header: nothing to answer to.
        let Ok(header) = Header::read(&mut BinDecoder::new(&bytes)) else {
            return;
        };
        if header.metadata.message_type == MessageType::Response {
            return;
        }
        match Request::from_bytes(bytes, src, protocol) {
            Ok(request) => {
                self.handler
                    .handle_request::<_, TokioTime>(&request, reply)
                    .await;
                if udp {
                    self.cache
                        .learn(request.as_slice(), &request, &self.handler);
                }
            }
            Err(error) => {
                tracing::debug!(%src, %error, "dns: malformed query; FORMERR");
                let mut metadata = Metadata::response_from_request(&header.metadata);
                metadata.response_code = ResponseCode::FormErr;
                let mut out = Vec::with_capacity(12);
                if header_only(metadata, &mut out).is_ok() {
                    let _ = reply.send_bytes(out).await;
                }
            }
        }
    }
}

/// Resolves when the server is told to stop.
#[derive(Clone)]
pub(crate) struct Shutdown(watch::Receiver<bool>);

impl Shutdown {
    pub fn requested(&self) -> bool {
        *self.0.borrow()
    }

    /// Wait for the stop signal (or for the server to go away).
    pub async fn wait(&mut self) {
        let _ = self.0.wait_for(|stop| *stop).await;
    }
}
