//! Root rotation: old+new roots, leaves re-signed by the new root, no failures.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

use mesh_proxy::Protocol;
use tokio::net::TcpStream;

use crate::harness::*;
use crate::pki::Ca;

#[tokio::test]
async fn rotation_keeps_old_connections_and_fails_no_handshake() {
    let old_ca = Ca::new("root 1");
    let new_ca = Ca::new("root 2");
    let (a, b) = pair(&old_ca, echo_server().await, Protocol::Tcp).await;
    let upstream = a.upstream("b");
    let mut long_lived = TcpStream::connect(upstream).await.unwrap();
    assert_eq!(
        roundtrip(&mut long_lived, b"start").await.unwrap(),
        b"start"
    );

    // New connections opened continuously while the rotation happens.
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let churn = {
        let (stop, ok, failed) = (stop.clone(), ok.clone(), failed.clone());
        tokio::spawn(async move {
            while !stop.load(Relaxed) {
                let res = async {
                    let mut s = TcpStream::connect(upstream).await?;
                    roundtrip(&mut s, b"churn").await
                }
                .await;
                match res {
                    Ok(v) if v == b"churn" => ok.fetch_add(1, Relaxed),
                    _ => failed.fetch_add(1, Relaxed),
                };
            }
        })
    };
    let made = |n: u64| {
        let ok = ok.clone();
        async move {
            let target = ok.load(Relaxed) + n;
            eventually("new connections succeed", || {
                let ok = ok.clone();
                async move { (ok.load(Relaxed) >= target).then_some(()) }
            })
            .await
        }
    };

    // 1. Both trust old + new (+ the cross-signed new root).
    let bundle = vec![
        old_ca.pem.clone(),
        new_ca.pem.clone(),
        old_ca.cross_sign(&new_ca),
    ];
    for s in [&a, &b] {
        let bundle = bundle.clone();
        s.update(|snap| snap.roots = bundle).await;
    }
    made(5).await;
    // 2. Leaves re-signed by the new root, one side at a time.
    b.update(|s| s.leaf = Some(new_ca.leaf(TD, DC, "b"))).await;
    made(5).await;
    a.update(|s| s.leaf = Some(new_ca.leaf(TD, DC, "a"))).await;
    made(5).await;
    // 3. The old root retired.
    for s in [&a, &b] {
        let pem = new_ca.pem.clone();
        s.update(|snap| snap.roots = vec![pem]).await;
    }
    made(5).await;
    stop.store(true, Relaxed);
    churn.await.unwrap();

    assert_eq!(
        failed.load(Relaxed),
        0,
        "no failed connection during rotation"
    );
    assert_eq!(
        roundtrip(&mut long_lived, b"still").await.unwrap(),
        b"still"
    );
    let text = b.handle.metrics().render();
    assert!(!text.contains("handshake_errors_total{"), "{text}");
    println!(
        "rotation: {} connections made while rotating",
        ok.load(Relaxed)
    );
}
