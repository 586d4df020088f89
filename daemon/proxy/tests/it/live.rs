//! Snapshot changes applied to live connections and listeners.

use std::sync::Arc;
use std::time::Instant;

use mesh_proxy::Protocol;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

use crate::harness::*;
use crate::pki::Ca;

#[tokio::test]
async fn a_deny_cuts_a_live_stream_at_once() {
    let ca = Ca::new("root");
    let (a, b) = pair(&ca, echo_server().await, Protocol::Tcp).await;
    let mut s = TcpStream::connect(a.upstream("b")).await.unwrap();
    assert_eq!(roundtrip(&mut s, b"before").await.unwrap(), b"before");

    let mut snap = b.snap();
    snap.intentions.rules = vec![rule("a", false)];
    snap.index += 1;
    let t0 = Instant::now();
    b.tx.send_replace(Arc::new(snap));
    let mut buf = [0u8; 16];
    let res = tokio::time::timeout(WAIT, s.read(&mut buf))
        .await
        .expect("cut, not hung");
    let elapsed = t0.elapsed();
    assert!(
        matches!(res, Ok(0) | Err(_)),
        "stream must be closed, got {res:?}"
    );
    println!("live cut observed by the client after {elapsed:?}");
    assert!(
        elapsed < std::time::Duration::from_secs(1),
        "cut took {elapsed:?}"
    );
    assert_eq!(
        b.handle
            .metrics()
            .live_closed
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );

    // New connections are refused too.
    let mut s2 = TcpStream::connect(a.upstream("b")).await.unwrap();
    assert!(roundtrip(&mut s2, b"x").await.is_err());
}

#[tokio::test]
async fn allowed_streams_survive_snapshot_changes() {
    let ca = Ca::new("root");
    let (a, b) = pair(&ca, echo_server().await, Protocol::Tcp).await;
    let mut s = TcpStream::connect(a.upstream("b")).await.unwrap();
    assert_eq!(roundtrip(&mut s, b"0").await.unwrap(), b"0");
    // Unrelated deny, explicit allow for a, default flipped to deny, leaf renewed.
    b.update(|s| s.intentions.rules = vec![rule("c", false)])
        .await;
    assert_eq!(roundtrip(&mut s, b"1").await.unwrap(), b"1");
    b.update(|s| {
        s.intentions.default_allow = false;
        s.intentions.rules.push(rule("a", true));
    })
    .await;
    assert_eq!(roundtrip(&mut s, b"2").await.unwrap(), b"2");
    b.update(|s| s.leaf = Some(ca.leaf(TD, DC, "b"))).await;
    a.update(|s| s.leaf = Some(ca.leaf(TD, DC, "a"))).await;
    assert_eq!(roundtrip(&mut s, b"3").await.unwrap(), b"3");
    // And a new connection works with the renewed leaves.
    let mut s2 = TcpStream::connect(a.upstream("b")).await.unwrap();
    assert_eq!(roundtrip(&mut s2, b"4").await.unwrap(), b"4");
}

#[tokio::test]
async fn upstream_changes_apply_to_new_connections_and_removal_closes_the_listener() {
    let ca = Ca::new("root");
    let backend = echo_server().await;
    let (a, b1) = pair(&ca, backend, Protocol::Tcp).await;
    let b2 = Sidecar::start(snapshot(&ca, "b", backend, Protocol::Tcp)).await;
    let addr = a.upstream("b");
    let mut old = TcpStream::connect(addr).await.unwrap();
    assert_eq!(roundtrip(&mut old, b"x").await.unwrap(), b"x");

    a.update(|s| s.upstreams = vec![upstream("b", b2.public())])
        .await;
    assert_eq!(a.upstream("b"), addr, "same listener keeps its port");
    let mut s = TcpStream::connect(addr).await.unwrap();
    assert_eq!(roundtrip(&mut s, b"y").await.unwrap(), b"y");
    let accepted = |s: &Sidecar| {
        s.handle
            .metrics()
            .accepted
            .load(std::sync::atomic::Ordering::Relaxed)
    };
    assert_eq!((accepted(&b1), accepted(&b2)), (1, 1));

    a.update(|s| s.upstreams.clear()).await;
    eventually("listener closed", || async {
        TcpStream::connect(addr).await.is_err().then_some(())
    })
    .await;
    // The connection made before removal is left alone.
    assert_eq!(roundtrip(&mut old, b"z").await.unwrap(), b"z");
}

#[tokio::test]
async fn shutdown_closes_listeners_and_drains_live_connections() {
    let ca = Ca::new("root");
    let (a, b) = pair(&ca, echo_server().await, Protocol::Tcp).await;
    let public = b.public();
    let mut s = TcpStream::connect(a.upstream("b")).await.unwrap();
    assert_eq!(roundtrip(&mut s, b"x").await.unwrap(), b"x");

    b.handle.shutdown();
    eventually("public listener closed", || async {
        TcpStream::connect(public).await.is_err().then_some(())
    })
    .await;
    // The live connection is still served while draining.
    assert_eq!(roundtrip(&mut s, b"y").await.unwrap(), b"y");
    drop(s);
    let Sidecar { handle, .. } = b;
    tokio::time::timeout(WAIT, handle.join())
        .await
        .expect("join returns once the last connection is gone");

    a.handle.abort();
    let Sidecar { handle, .. } = a;
    tokio::time::timeout(WAIT, handle.join())
        .await
        .expect("abort is immediate");
}

#[tokio::test]
async fn a_port_in_use_is_bound_once_it_frees_up() {
    let ca = Ca::new("root");
    let backend = echo_server().await;
    let blocker = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = blocker.local_addr().unwrap().port();
    let mut sb = snapshot(&ca, "b", backend, Protocol::Tcp);
    sb.public.bind_port = port;
    let (tx, rx) = tokio::sync::watch::channel(Arc::new(sb));
    let handle = mesh_proxy::Proxy::spawn(rx, None, std::future::pending());
    let b = handle
        .wait_bound(WAIT, |b| !b.errors.is_empty())
        .await
        .expect("bind error reported");
    assert!(b.errors[0].contains(&port.to_string()), "{:?}", b.errors);
    drop(blocker);
    let b = handle
        .wait_bound(WAIT, |b| b.public.is_some())
        .await
        .expect("bound after the port was freed, without a new snapshot");
    assert_eq!(b.public.unwrap().port(), port);
    assert!(b.errors.is_empty());
    drop(tx);
}
