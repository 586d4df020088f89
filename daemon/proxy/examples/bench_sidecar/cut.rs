//! Time from a snapshot change (deny) to each affected live connection closed,
//! measured end to end at the client, through two sidecar hops.

use std::sync::Arc;
use std::time::{Duration, Instant};

use mesh_proxy::Protocol;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

#[path = "../../tests/it/harness.rs"]
mod harness;

use crate::pki::Ca;
use harness::*;

/// Opens `n` connections, denies them with one snapshot, prints percentiles.
pub async fn run(n: usize) -> anyhow::Result<()> {
    let ca = Ca::new("cut root");
    let (a, b) = pair(&ca, echo_server().await, Protocol::Tcp).await;
    let mut conns = Vec::with_capacity(n);
    for _ in 0..n {
        let mut s = TcpStream::connect(a.upstream("b")).await?;
        roundtrip(&mut s, b"hi").await?;
        conns.push(s);
    }
    let mut waiters = Vec::with_capacity(n);
    for mut s in conns {
        waiters.push(tokio::spawn(async move {
            let mut buf = [0u8; 8];
            let res = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf)).await;
            let closed_at = Instant::now();
            (matches!(res, Ok(Ok(0)) | Ok(Err(_))), closed_at)
        }));
    }
    // Let every reader park on its socket before the change.
    tokio::task::yield_now().await;
    tokio::time::sleep(Duration::from_millis(100)).await;

    let mut snap = b.snap();
    snap.intentions.rules = vec![rule("a", false)];
    snap.index += 1;
    let t0 = Instant::now();
    b.tx.send_replace(Arc::new(snap));
    let mut lat = Vec::with_capacity(n);
    for w in waiters {
        let (closed, at) = w.await?;
        anyhow::ensure!(closed, "a connection was not closed within 5 s");
        lat.push(at.saturating_duration_since(t0));
    }
    lat.sort();
    let pct = |p: f64| lat[((lat.len() as f64 * p).ceil() as usize).clamp(1, lat.len()) - 1];
    println!(
        "connections={n} p50_ms={:.3} p99_ms={:.3} max_ms={:.3}",
        pct(0.50).as_secs_f64() * 1e3,
        pct(0.99).as_secs_f64() * 1e3,
        lat[lat.len() - 1].as_secs_f64() * 1e3
    );
    Ok(())
}
