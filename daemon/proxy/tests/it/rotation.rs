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

#[tokio::test]
async fn leaves_signed_by_an_intermediate_chain_to_the_root() {
    let root = Ca::new("root");
    let inter = root.intermediate("intermediate");
    let backend = echo_server().await;
    let mut sb = snapshot(&root, "b", backend, Protocol::Tcp);
    sb.leaf = Some(inter.leaf_with_chain(TD, DC, "b"));
    let b = Sidecar::start(sb).await;
    let mut sa = snapshot(&root, "a", backend, Protocol::Tcp);
    sa.leaf = Some(inter.leaf_with_chain(TD, DC, "a"));
    sa.upstreams = vec![upstream("b", b.public())];
    let a = Sidecar::start(sa).await;
    // Roots hold only the root: the intermediate comes from the presented chain.
    let mut s = TcpStream::connect(a.upstream("b")).await.unwrap();
    assert_eq!(roundtrip(&mut s, b"chain").await.unwrap(), b"chain");
    // Without the intermediate in the chain, the same leaf is refused.
    assert!(crate::rawtls::refused(b.public(), Some(&inter.leaf(TD, DC, "a"))).await);
}
