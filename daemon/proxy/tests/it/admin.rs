//! The admin listener.

use mesh_proxy::Protocol;
use tokio::net::TcpStream;

use crate::harness::*;
use crate::pki::Ca;

#[tokio::test]
async fn ready_follows_the_leaf_and_metrics_follow_activity() {
    let ca = Ca::new("root");
    let backend = echo_server().await;
    let mut sb = snapshot(&ca, "b", backend, Protocol::Tcp);
    let leaf = sb.leaf.take();
    let b = Sidecar::start(sb).await;
    assert_eq!(http_get(b.admin, "/ready").await.0, 503);
    b.update(|s| s.leaf = leaf).await;
    let (status, body) = http_get(b.admin, "/ready").await;
    assert_eq!(status, 200, "{body}");

    let mut sa = snapshot(&ca, "a", backend, Protocol::Tcp);
    sa.upstreams = vec![upstream("b", b.public())];
    let a = Sidecar::start(sa).await;
    let mut s = TcpStream::connect(a.upstream("b")).await.unwrap();
    roundtrip(&mut s, b"hello").await.unwrap();
    assert!(crate::rawtls::refused(b.public(), None).await);

    let text = eventually("handshake error counted", || async {
        let (status, t) = http_get(b.admin, "/metrics").await;
        assert_eq!(status, 200);
        t.contains("reason=\"no_client_cert\"} 1").then_some(t)
    })
    .await;
    for line in [
        "mesh_proxy_inbound_connections_accepted_total 2",
        "mesh_proxy_inbound_connections_active 1",
        "mesh_proxy_inbound_handshake_errors_total{reason=\"no_client_cert\"} 1",
    ] {
        assert!(text.contains(line), "missing {line:?} in\n{text}");
    }
    // Counters move while the connection is still open.
    let text = eventually("bytes while open", || async {
        let (_, t) = http_get(a.admin, "/metrics").await;
        t.contains("mesh_proxy_upstream_bytes_sent_total{upstream=\"b\"} 5")
            .then_some(t)
    })
    .await;
    assert!(
        text.contains("mesh_proxy_upstream_connections_total{upstream=\"b\"} 1"),
        "{text}"
    );
    drop(s);
    assert_eq!(http_get(b.admin, "/nope").await.0, 404);
}
