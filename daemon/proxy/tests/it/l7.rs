//! HTTP protocol: per-request permissions, h2, WebSocket upgrade.

use std::convert::Infallible;
use std::net::SocketAddr;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use mesh_proxy::Protocol;
use mesh_types::{HttpMatch, Intention, IntentionAction as Action, Permission};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::harness::*;
use crate::pki::Ca;

/// Answers `"<method> <path>"`; on `Upgrade` answers 101 and echoes the tunnel.
async fn http_backend() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (tcp, _) = l.accept().await.unwrap();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(
                    |mut req: Request<hyper::body::Incoming>| async move {
                        if req.headers().contains_key("upgrade") {
                            let on = hyper::upgrade::on(&mut req);
                            tokio::spawn(async move {
                                let mut io = TokioIo::new(on.await.unwrap());
                                let mut buf = [0u8; 1024];
                                loop {
                                    let n = io.read(&mut buf).await.unwrap_or(0);
                                    if n == 0 || io.write_all(&buf[..n]).await.is_err() {
                                        break;
                                    }
                                }
                            });
                            let r = Response::builder()
                                .status(StatusCode::SWITCHING_PROTOCOLS)
                                .header("upgrade", "websocket")
                                .header("connection", "upgrade")
                                .body(Full::new(Bytes::new()))
                                .unwrap();
                            return Ok::<_, Infallible>(r);
                        }
                        let body = format!("{} {}", req.method(), req.uri().path());
                        Ok(Response::new(Full::new(Bytes::from(body))))
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tcp), svc)
                    .with_upgrades()
                    .await;
            });
        }
    });
    addr
}

async fn l7_pair() -> (Sidecar, Sidecar) {
    let ca = Ca::new("root");
    let (a, b) = pair(&ca, http_backend().await, Protocol::Http).await;
    let prefix = |p: &str| HttpMatch {
        path_prefix: Some(p.into()),
        ..Default::default()
    };
    b.update(|s| {
        s.intentions.default_allow = false;
        s.intentions.rules = vec![Intention {
            source: "a".into(),
            destination: "b".into(),
            action: None,
            permissions: vec![
                Permission {
                    action: Action::Deny,
                    http: Some(prefix("/admin")),
                },
                Permission {
                    action: Action::Allow,
                    http: Some(prefix("/")),
                },
            ],
            ..Default::default()
        }];
    })
    .await;
    (a, b)
}

#[tokio::test]
async fn http1_permissions_allow_and_deny_per_request() {
    let (a, b) = l7_pair().await;
    let up = a.upstream("b");
    assert_eq!(
        http_get(up, "/hello").await,
        (200, "GET /hello".to_string())
    );
    let (status, body) = http_get(up, "/admin/users").await;
    assert_eq!(status, 403, "{body}");
    let m = b.handle.metrics();
    assert_eq!(m.http_denied.load(std::sync::atomic::Ordering::Relaxed), 1);
}

#[tokio::test]
async fn h2_prior_knowledge_works() {
    let (a, _b) = l7_pair().await;
    let tcp = TcpStream::connect(a.upstream("b")).await.unwrap();
    let (mut send, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
            .await
            .unwrap();
    tokio::spawn(conn);
    for (path, want) in [("/x", 200), ("/admin", 403), ("/y", 200)] {
        let req = Request::get(format!("http://b.local{path}"))
            .body(Empty::<Bytes>::new())
            .unwrap();
        let resp = send.send_request(req).await.unwrap();
        assert_eq!(resp.status().as_u16(), want, "{path}");
        if want == 200 {
            let body = resp.into_body().collect().await.unwrap().to_bytes();
            assert_eq!(&body[..], format!("GET {path}").as_bytes());
        }
    }
}

#[tokio::test]
async fn websocket_upgrade_passes_through() {
    let (a, _b) = l7_pair().await;
    let mut s = TcpStream::connect(a.upstream("b")).await.unwrap();
    s.write_all(
        b"GET /ws HTTP/1.1\r\nHost: b\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
          Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
    )
    .await
    .unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        s.read_exact(&mut byte).await.unwrap();
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head);
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    assert_eq!(roundtrip(&mut s, b"frame-1").await.unwrap(), b"frame-1");
    assert_eq!(roundtrip(&mut s, b"frame-2").await.unwrap(), b"frame-2");
}

#[tokio::test]
async fn a_deny_closes_a_live_http_connection() {
    let (a, b) = l7_pair().await;
    let tcp = TcpStream::connect(a.upstream("b")).await.unwrap();
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .unwrap();
    let conn = tokio::spawn(conn);
    let req = || {
        Request::get("/ok")
            .header("host", "b")
            .body(Empty::<Bytes>::new())
            .unwrap()
    };
    assert_eq!(send.send_request(req()).await.unwrap().status(), 200);
    b.update(|s| s.intentions.rules[0].permissions.clear())
        .await; // plain L4 allow
    assert_eq!(send.send_request(req()).await.unwrap().status(), 200);
    b.update(|s| s.intentions.rules[0].action = Some(Action::Deny))
        .await;
    tokio::time::timeout(WAIT, conn)
        .await
        .expect("keep-alive connection closed by the deny")
        .unwrap()
        .ok();
}

/// h2-only backend: echoes the version and `te` it saw, ends with a gRPC trailer.
async fn grpc_backend() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (tcp, _) = l.accept().await.unwrap();
            tokio::spawn(async move {
                let svc =
                    hyper::service::service_fn(|req: Request<hyper::body::Incoming>| async move {
                        let te = req.headers().get("te").cloned();
                        let version = format!("{:?}", req.version());
                        let path = req.uri().path().to_string();
                        let mut trailers = hyper::HeaderMap::new();
                        trailers.insert("grpc-status", "0".parse().unwrap());
                        let body = Full::new(Bytes::from(path))
                            .with_trailers(async move { Some(Ok(trailers)) });
                        let mut resp = Response::new(body);
                        resp.headers_mut()
                            .insert("x-version", version.parse().unwrap());
                        if let Some(te) = te {
                            resp.headers_mut().insert("x-te", te);
                        }
                        Ok::<_, Infallible>(resp)
                    });
                let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tcp), svc)
                    .await;
            });
        }
    });
    addr
}

#[tokio::test]
async fn grpc_reaches_the_app_over_h2_with_trailers() {
    let ca = Ca::new("root");
    let (a, _b) = pair(&ca, grpc_backend().await, Protocol::Grpc).await;
    let tcp = TcpStream::connect(a.upstream("b")).await.unwrap();
    let (mut send, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
            .await
            .unwrap();
    tokio::spawn(conn);
    let req = Request::post("http://b.local/pkg.Greeter/SayHello")
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(Full::new(Bytes::from_static(b"\0\0\0\0\0")))
        .unwrap();
    let resp = send.send_request(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-version"], "HTTP/2.0");
    assert_eq!(resp.headers()["x-te"], "trailers");
    let collected = resp.into_body().collect().await.unwrap();
    assert_eq!(collected.trailers().unwrap()["grpc-status"], "0");
    assert_eq!(&collected.to_bytes()[..], b"/pkg.Greeter/SayHello");
}

#[tokio::test]
async fn shutdown_closes_idle_keep_alive_http_connections_at_once() {
    let (a, b) = l7_pair().await;
    let tcp = TcpStream::connect(a.upstream("b")).await.unwrap();
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .unwrap();
    tokio::spawn(conn);
    let req = Request::get("/ok")
        .header("host", "b")
        .body(Empty::<Bytes>::new())
        .unwrap();
    assert_eq!(send.send_request(req).await.unwrap().status(), 200);
    // The keep-alive connection is idle; shutdown must not wait DRAIN_TIMEOUT for it.
    b.handle.shutdown();
    let Sidecar { handle, .. } = b;
    tokio::time::timeout(mesh_proxy::DRAIN_TIMEOUT / 2, handle.join())
        .await
        .expect("idle HTTP connections close gracefully, well before the drain timeout");
}
