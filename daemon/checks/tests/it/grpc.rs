use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};

use mesh_checks::{CheckKind, CheckStatus};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tonic::transport::server::Connected;
use tonic::transport::Server;
use tonic_health::server::HealthReporter;
use tonic_health::ServingStatus;

use crate::http::closed_port;
use crate::{fast, next, start};

fn grpc(target: String, use_tls: bool, tls_skip_verify: bool) -> CheckKind {
    CheckKind::Grpc {
        target,
        use_tls,
        tls_skip_verify,
    }
}

/// A gRPC health server on port 0; "" (the whole server) starts SERVING.
async fn health_server() -> (SocketAddr, HealthReporter) {
    let (reporter, service) = tonic_health::server::health_reporter();
    reporter
        .set_service_status("", ServingStatus::Serving)
        .await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
    tokio::spawn(
        Server::builder()
            .add_service(service)
            .serve_with_incoming(incoming),
    );
    (addr, reporter)
}

#[tokio::test]
async fn grpc_serving_is_passing_and_not_serving_critical() {
    let (addr, reporter) = health_server().await;
    let (_runner, mut rx) = start(fast("api", grpc(addr.to_string(), false, false)));
    let update = next(&mut rx).await;
    assert_eq!(update.status, CheckStatus::Passing, "{}", update.output);
    assert_eq!(update.output, format!("gRPC check {addr}: success"));

    reporter
        .set_service_status("", ServingStatus::NotServing)
        .await;
    let update = next(&mut rx).await;
    assert_eq!(update.status, CheckStatus::Critical);
    assert_eq!(
        update.output,
        format!("gRPC check {addr}: serving status NOT_SERVING")
    );
}

#[tokio::test]
async fn grpc_target_names_the_service() {
    let (addr, reporter) = health_server().await;
    reporter
        .set_service_status("billing", ServingStatus::Serving)
        .await;
    let (_known, mut known) = start(fast(
        "billing",
        grpc(format!("{addr}/billing"), false, false),
    ));
    assert_eq!(next(&mut known).await.status, CheckStatus::Passing);

    let (_unknown, mut unknown) =
        start(fast("ledger", grpc(format!("{addr}/ledger"), false, false)));
    let update = next(&mut unknown).await;
    assert_eq!(update.status, CheckStatus::Critical);
    assert!(update.output.contains("NotFound"), "{}", update.output);
}

#[tokio::test]
async fn grpc_unreachable_is_critical() {
    let addr = closed_port().await;
    let (_runner, mut rx) = start(fast("api", grpc(addr.to_string(), false, false)));
    let update = next(&mut rx).await;
    assert_eq!(update.status, CheckStatus::Critical);
    assert!(
        update
            .output
            .starts_with(&format!("gRPC check {addr}: failed: ")),
        "{}",
        update.output
    );
}

#[tokio::test]
async fn grpc_over_tls() {
    let addr = tls_health_server().await;
    let target = format!("localhost:{}", addr.port());
    let (_skip, mut skip) = start(fast("skip", grpc(target.clone(), true, true)));
    let update = next(&mut skip).await;
    assert_eq!(update.status, CheckStatus::Passing, "{}", update.output);

    // Verified against the system's roots, the self-signed certificate fails.
    let (_verify, mut verify) = start(fast("verify", grpc(target, true, false)));
    let update = next(&mut verify).await;
    assert_eq!(update.status, CheckStatus::Critical);
    // Which error depends on the machine's roots (Debian's snakeoil cert is also CN=localhost).
    assert!(
        update.output.contains("invalid peer certificate"),
        "{}",
        update.output
    );
}

/// The health server behind TLS (ALPN h2), with the fixture certificate.
async fn tls_health_server() -> SocketAddr {
    let (_reporter, service) = tonic_health::server::health_reporter();
    let acceptor = tokio_rustls::TlsAcceptor::from(crate::tls_server_config(&[b"h2"]));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::mpsc::channel::<std::io::Result<Tls>>(8);
    tokio::spawn(async move {
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            let acceptor = acceptor.clone();
            let tx = tx.clone();
            tokio::spawn(async move {
                if let Ok(tls) = acceptor.accept(tcp).await {
                    let _ = tx.send(Ok(Tls(tls))).await;
                }
            });
        }
    });
    let incoming = tokio_stream::wrappers::ReceiverStream::new(rx);
    tokio::spawn(async move {
        // `health_reporter` starts with "" SERVING.
        Server::builder()
            .add_service(service)
            .serve_with_incoming(incoming)
            .await
    });
    addr
}

/// A server-side TLS stream tonic can serve (tonic's own impl needs its TLS feature).
struct Tls(tokio_rustls::server::TlsStream<TcpStream>);

impl Connected for Tls {
    type ConnectInfo = ();
    fn connect_info(&self) -> Self::ConnectInfo {}
}

impl AsyncRead for Tls {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_read(cx, buf)
    }
}

impl AsyncWrite for Tls {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().0).poll_write(cx, buf)
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_flush(cx)
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_shutdown(cx)
    }
}
