use mesh_checks::{CheckKind, CheckStatus};

use crate::http::closed_port;
use crate::{fast, next, start};

#[tokio::test]
async fn tcp_connect_success_is_passing() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let (_runner, mut rx) = start(fast("db", CheckKind::Tcp { addr: addr.clone() }));
    let update = next(&mut rx).await;
    assert_eq!(update.status, CheckStatus::Passing);
    assert_eq!(update.output, format!("TCP connect {addr}: Success"));
}

#[tokio::test]
async fn tcp_refused_is_critical() {
    let addr = closed_port().await.to_string();
    let (_runner, mut rx) = start(fast("db", CheckKind::Tcp { addr: addr.clone() }));
    let update = next(&mut rx).await;
    assert_eq!(update.status, CheckStatus::Critical);
    assert!(
        update.output.starts_with(&format!("dial tcp {addr}: ")),
        "{}",
        update.output
    );
}

#[tokio::test]
async fn tcp_goes_critical_when_the_listener_goes_away_and_back() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (_runner, mut rx) = start(fast(
        "db",
        CheckKind::Tcp {
            addr: addr.to_string(),
        },
    ));
    assert_eq!(next(&mut rx).await.status, CheckStatus::Passing);
    drop(listener);
    assert_eq!(next(&mut rx).await.status, CheckStatus::Critical);
    let _listener = tokio::net::TcpListener::bind(addr).await.unwrap();
    assert_eq!(next(&mut rx).await.status, CheckStatus::Passing);
}
