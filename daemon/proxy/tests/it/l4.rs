//! Two sidecars, one TCP backend: bytes, bulk and half-close.

use mesh_proxy::Protocol;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::harness::*;
use crate::pki::Ca;

#[tokio::test]
async fn bytes_echo_through_two_hops() {
    let ca = Ca::new("root");
    let (a, _b) = pair(&ca, echo_server().await, Protocol::Tcp).await;
    let mut s = TcpStream::connect(a.upstream("b")).await.unwrap();
    for msg in [&b"hello"[..], b"mesh", &[7u8; 10_000]] {
        assert_eq!(roundtrip(&mut s, msg).await.unwrap(), msg);
    }
}

#[tokio::test]
async fn large_transfer_is_intact_and_half_close_works() {
    let ca = Ca::new("root");
    let (a, b) = pair(&ca, echo_server().await, Protocol::Tcp).await;
    let s = TcpStream::connect(a.upstream("b")).await.unwrap();
    let (mut r, mut w) = s.into_split();
    const LEN: usize = 64 << 20;
    let writer = tokio::spawn(async move {
        let mut chunk = vec![0u8; 1 << 16];
        let mut sent = 0usize;
        while sent < LEN {
            for (i, byte) in chunk.iter_mut().enumerate() {
                *byte = ((sent + i) % 251) as u8;
            }
            w.write_all(&chunk).await.unwrap();
            sent += chunk.len();
        }
        // Half-close: the echo server sees EOF, finishes echoing, closes its side.
        w.shutdown().await.unwrap();
        w
    });
    let mut got = 0usize;
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = tokio::time::timeout(WAIT * 6, r.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        if n == 0 {
            break;
        }
        for (i, byte) in buf[..n].iter().enumerate() {
            assert_eq!(
                *byte,
                ((got + i) % 251) as u8,
                "corrupt byte at {}",
                got + i
            );
        }
        got += n;
    }
    assert_eq!(got, LEN, "EOF arrived only after every byte was echoed");
    writer.await.unwrap();
    let m = b.handle.metrics();
    eventually("bytes counted", || {
        let m = m.clone();
        async move {
            (m.bytes_in.load(std::sync::atomic::Ordering::Relaxed) == LEN as u64).then_some(())
        }
    })
    .await;
}

#[tokio::test]
async fn upstream_round_robins_and_skips_a_dead_endpoint() {
    let ca = Ca::new("root");
    let backend = echo_server().await;
    let b1 = Sidecar::start(snapshot(&ca, "b", backend, Protocol::Tcp)).await;
    let b2 = Sidecar::start(snapshot(&ca, "b", backend, Protocol::Tcp)).await;
    // A port with nothing listening: bind, note, drop.
    let dead = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap();
    let mut sa = snapshot(&ca, "a", backend, Protocol::Tcp);
    let mut up = upstream("b", b1.public());
    up.endpoints.push(upstream("b", dead).endpoints[0].clone());
    up.endpoints
        .push(upstream("b", b2.public()).endpoints[0].clone());
    sa.upstreams = vec![up];
    let a = Sidecar::start(sa).await;
    for _ in 0..6 {
        let mut s = TcpStream::connect(a.upstream("b")).await.unwrap();
        assert_eq!(roundtrip(&mut s, b"x").await.unwrap(), b"x");
    }
    let accepted = |s: &Sidecar| {
        s.handle
            .metrics()
            .accepted
            .load(std::sync::atomic::Ordering::Relaxed)
    };
    assert!(
        accepted(&b1) >= 2 && accepted(&b2) >= 2,
        "{} {}",
        accepted(&b1),
        accepted(&b2)
    );
    let um = a.handle.metrics().upstream("b");
    assert!(
        um.attempt_failures
            .load(std::sync::atomic::Ordering::Relaxed)
            >= 1
    );
    assert_eq!(um.failures.load(std::sync::atomic::Ordering::Relaxed), 0);
}
