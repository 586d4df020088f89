//! The agent's `watches`: each runs as `mesh watch` would, against this
//! agent's HTTP API, and all restart when a reload changes them.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use mesh_config::{LiveConfig, WatchConfig, WatchHandler};
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::stop::Stop;

/// Where a watch reaches this agent: its HTTP address, loopback when it
/// listens on every interface.
fn reach(http: SocketAddr) -> SocketAddr {
    match http.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => {
            SocketAddr::new(Ipv4Addr::LOCALHOST.into(), http.port())
        }
        IpAddr::V6(ip) if ip.is_unspecified() => {
            SocketAddr::new(Ipv6Addr::LOCALHOST.into(), http.port())
        }
        _ => http,
    }
}

fn start(set: &mut JoinSet<()>, http: SocketAddr, w: &WatchConfig, live: &LiveConfig) {
    let token = w.token.clone().or_else(|| live.acl.default_token.clone());
    let client = match mesh_client::Client::new(&reach(http).to_string()) {
        Ok(c) => c.with_token(token),
        Err(e) => {
            tracing::error!(error = %e, "watch: no client for the agent's HTTP address");
            return;
        }
    };
    let handler = match &w.handler {
        WatchHandler::Args(args) => mesh_watch::Handler::Args(args.clone()),
        WatchHandler::Shell(line) => mesh_watch::Handler::Shell(line.clone()),
    };
    let watch = mesh_watch::Watch::new(client, w.kind.clone());
    set.spawn(mesh_watch::run(watch, handler));
}

/// Runs the configured watches until shutdown; a reload that changes them
/// stops every running one (and its handler) and starts the new set.
pub(crate) async fn run(
    http: Option<SocketAddr>,
    mut live: watch::Receiver<Arc<LiveConfig>>,
    mut shutdown: watch::Receiver<Stop>,
) -> anyhow::Result<()> {
    let mut running: Option<(Vec<WatchConfig>, JoinSet<()>)> = None;
    loop {
        let config = live.borrow_and_update().clone();
        if running.as_ref().map(|(w, _)| w) != Some(&config.watches) {
            let mut set = JoinSet::new();
            match http {
                Some(http) => {
                    for w in &config.watches {
                        start(&mut set, http, w, &config);
                    }
                }
                None if !config.watches.is_empty() => {
                    tracing::warn!("watches need the HTTP API (ports.http); none run");
                }
                None => {}
            }
            if !config.watches.is_empty() {
                tracing::info!(count = config.watches.len(), "watches started");
            }
            // Dropping the old set aborts its watches and kills their handlers.
            running = Some((config.watches.clone(), set));
        }
        tokio::select! {
            changed = live.changed() => if changed.is_err() { return Ok(()) },
            _ = shutdown.wait_for(|s| *s != Stop::Running) => return Ok(()),
        }
    }
}
