//! Managed sidecars: with `connect { managed_sidecars = true }`, the agent
//! runs the built-in proxy itself for every sidecar registered through
//! `connect { sidecar_service {} }`, so users need no second command. Each
//! one subscribes to its snapshot in the agent's snapshot hub (in process,
//! no HTTP), and runs on a thread of its own with the same one-thread
//! runtime, so its data path neither waits on the agent's work nor slows it.
//!
//! The sidecar's proxy config may name an admin listener (`/ready`,
//! `/metrics`): `admin_bind_addr`, or Consul's `envoy_prometheus_bind_addr`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use mesh_proxy::{Proxy, ProxySnapshot};
use tokio::sync::{oneshot, watch};

use crate::local::LocalState;
use crate::snapshot_hub::{self, ProxyKey, SnapshotHub, Watched};
use crate::stop::Stop;

/// What a sidecar's proxy config says of its admin listener: an address,
/// none, or why the value is unusable.
type AdminSetting = Result<Option<SocketAddr>, String>;

/// What managed sidecars need of the agent.
pub(crate) struct Sidecars {
    /// Run the sidecars of `sidecar_service` blocks.
    pub sidecars: bool,
    /// Run the gateways the agent's config files register.
    pub gateways: bool,
    pub hub: Arc<SnapshotHub>,
    pub local: Arc<LocalState>,
    /// On a client agent snapshots are relayed from a server, which checks
    /// this agent's token (a live setting).
    pub server: bool,
    pub live: watch::Receiver<Arc<mesh_config::LiveConfig>>,
    pub shutdown: watch::Receiver<Stop>,
}

/// A sidecar's thread; firing `stop` starts its graceful shutdown.
struct Running {
    admin: AdminSetting,
    stop: oneshot::Sender<()>,
}

/// Starts one sidecar on its own thread; it drains and ends when `stop` fires.
fn start(sidecars: &Arc<Sidecars>, id: &str, setting: &AdminSetting) -> std::io::Result<Running> {
    let admin = match setting {
        Ok(addr) => *addr,
        Err(e) => {
            tracing::warn!(proxy = %id, "{e}; admin listener not started");
            None
        }
    };
    let (stop, stopped) = oneshot::channel::<()>();
    let runtime = mesh_proxy::runtime(mesh_proxy::DEFAULT_WORKERS)?;
    let name = id.to_string();
    let sidecars = sidecars.clone();
    std::thread::Builder::new()
        .name(format!("sidecar {id}"))
        .spawn(move || {
            runtime.block_on(async move {
                let listener = match admin {
                    Some(addr) => bind_admin(&name, addr).await,
                    None => None,
                };
                let (tx, snapshots) = watch::channel(Arc::new(ProxySnapshot::default()));
                let follower = tokio::spawn(follow(sidecars, name, tx));
                let handle = Proxy::spawn(snapshots, listener, async move {
                    let _ = stopped.await;
                });
                handle.join().await;
                follower.abort();
            })
        })?;
    Ok(Running {
        admin: setting.clone(),
        stop,
    })
}

/// Feeds the sidecar its snapshots from the hub. A snapshot that cannot be
/// served (a leaf the CA cannot sign yet, a server out of reach) is asked
/// for again after a pause; the sidecar keeps running on the last one.
async fn follow(sidecars: Arc<Sidecars>, id: String, tx: watch::Sender<Arc<ProxySnapshot>>) {
    let key = match sidecars.server {
        true => ProxyKey::local(&id),
        // Relayed from a server, which checks this agent's token.
        false => ProxyKey {
            token: sidecars.live.borrow().acl.own_token(),
            ..ProxyKey::local(&id)
        },
    };
    let mut pause = Duration::from_millis(250);
    loop {
        let mut rx = snapshot_hub::subscribe(&sidecars.hub, key.clone());
        loop {
            let seen = rx.borrow_and_update().clone();
            match seen {
                Watched::Ready(p) => {
                    pause = Duration::from_millis(250);
                    tx.send_if_modified(|cur| {
                        let changed = **cur != *p.snapshot;
                        if changed {
                            *cur = p.snapshot.clone();
                        }
                        changed
                    });
                }
                Watched::Failed(f) => {
                    tracing::warn!(proxy = %id, status = %f.status, error = %f.body.trim(), retry_in = ?pause, "managed sidecar's snapshot");
                    break;
                }
                Watched::Pending => {}
            }
            if rx.changed().await.is_err() {
                break;
            }
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_secs(10));
    }
}

/// Binds the admin listener, waiting briefly for a sidecar being replaced to let go of it.
async fn bind_admin(id: &str, addr: SocketAddr) -> Option<tokio::net::TcpListener> {
    let mut last = None;
    for _ in 0..40 {
        match tokio::net::TcpListener::bind(addr).await {
            Ok(l) => return Some(l),
            Err(e) => last = Some(e),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    if let Some(e) = last {
        tracing::error!(proxy = %id, %addr, error = %e, "managed sidecar runs without its admin listener");
    }
    None
}

/// The admin address a sidecar's stored proxy config (JSON text) asks for.
fn admin_setting(config_json: &str) -> AdminSetting {
    match serde_json::from_str::<serde_json::Value>(config_json) {
        Ok(config) => mesh_proxy::admin_bind_addr(&config),
        Err(_) => Ok(None),
    }
}

/// Proxies this agent manages (sidecars registered from a
/// `sidecar_service` block, gateways registered from its config files),
/// with the admin address each one's config asks for.
fn managed(sidecars: &Sidecars) -> BTreeMap<String, AdminSetting> {
    let mut proxies = BTreeMap::new();
    if sidecars.sidecars {
        proxies.extend(sidecars.local.sidecars());
    }
    if sidecars.gateways {
        proxies.extend(sidecars.local.declared_gateways());
    }
    proxies
        .into_iter()
        .map(|(id, config)| (id, config.as_deref().map_or(Ok(None), admin_setting)))
        .collect()
}

/// Start and stop in-process sidecars as local registrations come and go.
pub(crate) async fn run(sidecars: Sidecars) -> anyhow::Result<()> {
    let sidecars = Arc::new(sidecars);
    let mut running: BTreeMap<String, Running> = BTreeMap::new();
    let mut stop = sidecars.shutdown.clone();
    let mut versions = sidecars.local.versions.subscribe();
    loop {
        versions.borrow_and_update();
        let wanted = managed(&sidecars);
        // Gone, or re-registered with another admin address: stop (and restart below).
        let stale: Vec<String> = running
            .iter()
            .filter(|(id, r)| wanted.get(*id) != Some(&r.admin))
            .map(|(id, _)| id.clone())
            .collect();
        for id in stale {
            if let Some(r) = running.remove(&id) {
                let _ = r.stop.send(());
                tracing::info!(proxy = %id, "managed sidecar stopped");
            }
        }
        for (id, admin) in &wanted {
            if running.contains_key(id) {
                continue;
            }
            match start(&sidecars, id, admin) {
                Ok(r) => {
                    tracing::info!(proxy = %id, admin = ?admin, "managed sidecar started");
                    running.insert(id.clone(), r);
                }
                Err(e) => tracing::error!(proxy = %id, error = %e, "managed sidecar not started"),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admin_settings_come_from_the_stored_config_text() {
        assert_eq!(
            admin_setting(r#"{"envoy_prometheus_bind_addr": "0.0.0.0:9102"}"#),
            Ok(Some("0.0.0.0:9102".parse().unwrap()))
        );
        assert!(admin_setting(r#"{"admin_bind_addr": "localhost"}"#)
            .unwrap_err()
            .contains("admin_bind_addr"));
        assert_eq!(admin_setting("{}"), Ok(None));
        assert_eq!(admin_setting("not json"), Ok(None));
    }
}
