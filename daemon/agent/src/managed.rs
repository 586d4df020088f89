//! Managed sidecars: with `connect { managed_sidecars = true }`, the agent
//! runs the built-in proxy itself for every sidecar registered through
//! `connect { sidecar_service {} }`, so users need no second command. Each
//! one reads its snapshot from this agent like `mesh connect proxy` does,
//! and runs on a thread of its own with the same one-thread runtime, so its
//! data path neither waits on the agent's work nor slows it.

use std::collections::BTreeMap;
use std::sync::Arc;

use mesh_proxy::{Proxy, SourceConfig};
use tokio::sync::oneshot;

use crate::build::{Agent, Stop};

/// A sidecar's thread; firing `stop` starts its graceful shutdown.
struct Running {
    stop: oneshot::Sender<()>,
}

/// Starts one sidecar on its own thread; it drains and ends when `stop` fires.
fn start(id: &str, source: SourceConfig) -> std::io::Result<Running> {
    let (stop, stopped) = oneshot::channel::<()>();
    let runtime = mesh_proxy::runtime(mesh_proxy::DEFAULT_WORKERS)?;
    std::thread::Builder::new()
        .name(format!("sidecar {id}"))
        .spawn(move || {
            runtime.block_on(async move {
                let (snapshots, _poller) = mesh_proxy::source::spawn(source);
                let handle = Proxy::spawn(snapshots, None, async move {
                    let _ = stopped.await;
                });
                handle.join().await;
            })
        })?;
    Ok(Running { stop })
}

/// Sidecar services this agent manages: registered from a `sidecar_service` block.
fn managed_ids(agent: &Agent) -> Vec<String> {
    agent
        .local
        .inner
        .lock()
        .services
        .iter()
        .filter(|(_, s)| s.service.kind == "connect-proxy" && s.definition.is_null())
        .map(|(id, _)| id.clone())
        .collect()
}

/// Start and stop in-process sidecars as local registrations come and go.
pub(crate) async fn run(agent: Arc<Agent>) -> anyhow::Result<()> {
    if !agent.config.connect_managed_sidecars {
        return Ok(());
    }
    let Some(mut http) = agent.http_addr else {
        tracing::warn!("managed sidecars need the HTTP API (ports.http), none started");
        return Ok(());
    };
    if http.ip().is_unspecified() {
        http.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
    }
    let mut running: BTreeMap<String, Running> = BTreeMap::new();
    let mut stop = agent.shutdown.subscribe();
    let mut versions = agent.local.versions.subscribe();
    loop {
        versions.borrow_and_update();
        let wanted = managed_ids(&agent);
        for id in &wanted {
            if running.contains_key(id) {
                continue;
            }
            let mut source = SourceConfig::new(format!("http://{http}"), id.clone());
            source.token = agent.live.lock().acl.own_token();
            match start(id, source) {
                Ok(r) => {
                    tracing::info!(proxy = %id, "managed sidecar started");
                    running.insert(id.clone(), r);
                }
                Err(e) => tracing::error!(proxy = %id, error = %e, "managed sidecar not started"),
            }
        }
        let gone: Vec<String> = running
            .keys()
            .filter(|id| !wanted.contains(id))
            .cloned()
            .collect();
        for id in gone {
            if let Some(r) = running.remove(&id) {
                let _ = r.stop.send(());
                tracing::info!(proxy = %id, "managed sidecar stopped");
            }
        }
        // Woken by local registrations, not by polling.
        tokio::select! {
            _ = versions.changed() => {}
            _ = stop.wait_for(|s| *s != Stop::Running) => break,
        }
    }
    for (_, r) in running {
        let _ = r.stop.send(());
    }
    Ok(())
}
