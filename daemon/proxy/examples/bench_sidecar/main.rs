//! Benchmark helper for bench/proxy/run.sh: sidecars from JSON snapshots,
//! certificates, a 1 KiB HTTP backend, bulk transfer and the live-cut timing.
//!
//! ```text
//! bench_sidecar gen DIR BACKEND_PORT UPSTREAM_PORT PUBLIC_PORT [tcp|http]
//! bench_sidecar sidecar SNAPSHOT.json [ADMIN_ADDR]
//! bench_sidecar backend ADDR
//! bench_sidecar bulk-server ADDR BYTES
//! bench_sidecar bulk-client ADDR BYTES
//! bench_sidecar cut CONNECTIONS
//! ```

#[path = "../../tests/it/pki.rs"]
mod pki;

mod cut;
mod gen;
mod load;

use std::sync::Arc;

use anyhow::{bail, Context};

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .init();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize| -> anyhow::Result<&str> {
        args.get(i)
            .map(String::as_str)
            .with_context(|| format!("missing argument {i}; see the usage in the source"))
    };
    // MESH_PROXY_WORKERS as `mesh connect proxy -workers`: 1 = one thread
    // (the default), 0 = one per core, N = N workers.
    let workers = std::env::var("MESH_PROXY_WORKERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(mesh_proxy::DEFAULT_WORKERS);
    // The load side (backend, bulk pair, cut) keeps a worker per core.
    let rt = tokio::runtime::Runtime::new;
    match arg(0)? {
        "gen" => gen::generate(
            arg(1)?.as_ref(),
            arg(2)?.parse()?,
            arg(3)?.parse()?,
            arg(4)?.parse()?,
            args.get(5).is_some_and(|p| p == "http"),
        ),
        "sidecar" => mesh_proxy::runtime(workers)?.block_on(sidecar(arg(1)?, args.get(2).cloned())),
        "backend" => rt()?.block_on(load::backend(arg(1)?)),
        "bulk-server" => rt()?.block_on(load::bulk_server(arg(1)?, arg(2)?.parse()?)),
        "bulk-client" => rt()?.block_on(load::bulk_client(arg(1)?, arg(2)?.parse()?)),
        "cut" => rt()?.block_on(cut::run(arg(1)?.parse()?)),
        other => bail!("unknown command {other:?}"),
    }
}

/// Runs one sidecar from a snapshot file until SIGINT/SIGTERM.
async fn sidecar(path: &str, admin: Option<String>) -> anyhow::Result<()> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {path}"))?;
    let snap = mesh_proxy::ProxySnapshot::from_json(&bytes).with_context(|| path.to_string())?;
    let (_tx, rx) = tokio::sync::watch::channel(Arc::new(snap));
    let admin = match admin {
        Some(a) => Some(tokio::net::TcpListener::bind(&a).await?),
        None => None,
    };
    let proxy = mesh_proxy::Proxy::spawn(rx, admin, async {
        let mut term =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).unwrap();
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    });
    let b = proxy
        .wait_bound(std::time::Duration::from_secs(10), |b| {
            b.index > 0 || !b.errors.is_empty()
        })
        .await
        .context("snapshot not applied")?;
    if !b.errors.is_empty() {
        bail!("bind errors: {:?}", b.errors);
    }
    eprintln!(
        "sidecar up: public {:?}, upstreams {:?}",
        b.public, b.upstreams
    );
    proxy.join().await;
    Ok(())
}
