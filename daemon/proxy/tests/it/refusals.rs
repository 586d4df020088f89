//! Everything the public listener must refuse, and why it says so.

use std::sync::atomic::Ordering::Relaxed;

use mesh_proxy::Protocol;
use time::{Duration, OffsetDateTime};
use tokio::net::TcpStream;

use crate::harness::*;
use crate::pki::Ca;
use crate::rawtls::refused;

#[tokio::test]
async fn refuses_bad_clients_and_counts_why() {
    let ca = Ca::new("root");
    let b = Sidecar::start(snapshot(&ca, "b", echo_server().await, Protocol::Tcp)).await;
    let addr = b.public();
    let m = b.handle.metrics();

    // Sanity: a good client gets through.
    assert!(!refused(addr, Some(&ca.leaf(TD, DC, "a"))).await);

    assert!(refused(addr, None).await, "no client cert");
    counted(&m, "no_client_cert", 1).await;

    let other = Ca::new("other root");
    assert!(
        refused(addr, Some(&other.leaf(TD, DC, "a"))).await,
        "unknown CA"
    );
    counted(&m, "unknown_ca", 1).await;

    assert!(
        refused(addr, Some(&ca.leaf("other.consul", DC, "a"))).await,
        "other trust domain"
    );
    counted(&m, "wrong_identity", 1).await;

    let past = OffsetDateTime::now_utc() - Duration::days(2);
    let expired = ca.leaf_with(&spiffe("a"), past - Duration::days(1), past);
    assert!(refused(addr, Some(&expired)).await, "expired");
    counted(&m, "expired", 1).await;

    let not_a_service = ca.leaf_with(
        &format!("spiffe://{TD}/agent/client/dc/{DC}/id/x"),
        OffsetDateTime::now_utc() - Duration::hours(1),
        OffsetDateTime::now_utc() + Duration::hours(1),
    );
    assert!(refused(addr, Some(&not_a_service)).await, "agent identity");
    counted(&m, "wrong_identity", 2).await;
}

#[tokio::test]
async fn intention_deny_refuses_after_handshake() {
    let ca = Ca::new("root");
    let mut sb = snapshot(&ca, "b", echo_server().await, Protocol::Tcp);
    sb.intentions.default_allow = false;
    sb.intentions.rules = vec![rule("c", true), rule("a", false)];
    let b = Sidecar::start(sb).await;
    let addr = b.public();
    assert!(
        refused(addr, Some(&ca.leaf(TD, DC, "a"))).await,
        "explicit deny"
    );
    assert!(
        refused(addr, Some(&ca.leaf(TD, DC, "d"))).await,
        "default deny"
    );
    assert!(
        !refused(addr, Some(&ca.leaf(TD, DC, "c"))).await,
        "explicit allow"
    );
    assert_eq!(b.handle.metrics().denied.load(Relaxed), 2);
}

#[tokio::test]
async fn upstream_refuses_a_sidecar_with_the_wrong_identity() {
    let ca = Ca::new("root");
    let backend = echo_server().await;
    // "c" answers on the address where "a" expects "b".
    let c = Sidecar::start(snapshot(&ca, "c", backend, Protocol::Tcp)).await;
    let mut sa = snapshot(&ca, "a", backend, Protocol::Tcp);
    sa.upstreams = vec![upstream("b", c.public())];
    let a = Sidecar::start(sa).await;

    let mut s = TcpStream::connect(a.upstream("b")).await.unwrap();
    assert!(roundtrip(&mut s, b"x").await.is_err(), "must not reach c");
    let um = a.handle.metrics().upstream("b");
    eventually("upstream failure counted", || {
        let um = um.clone();
        async move { (um.failures.load(Relaxed) == 1).then_some(()) }
    })
    .await;
    assert_eq!(c.handle.metrics().bytes_in.load(Relaxed), 0);
}

async fn counted(m: &std::sync::Arc<mesh_proxy::Metrics>, reason: &'static str, n: u64) {
    eventually(reason, || async move {
        (m.handshake_errors(reason) == n).then_some(())
    })
    .await;
}
