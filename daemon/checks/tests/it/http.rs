use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use axum::extract::Request;
use axum::http::StatusCode;
use axum::response::Redirect;
use axum::routing::{any, get};
use axum::Router;
use mesh_checks::{CheckKind, CheckStatus};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::{fast, next, start};

/// A server with one route per behaviour a check must handle.
async fn server() -> SocketAddr {
    let app = Router::new()
        .route("/ok", get(|| async { "all good" }))
        .route(
            "/busy",
            get(|| async { (StatusCode::TOO_MANY_REQUESTS, "slow down") }),
        )
        .route(
            "/fail",
            get(|| async { (StatusCode::INTERNAL_SERVER_ERROR, "db down") }),
        )
        .route("/missing", get(|| async { StatusCode::NOT_FOUND }))
        .route(
            "/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_secs(60)).await;
                "late"
            }),
        )
        .route("/big", get(|| async { "x".repeat(10_000) }))
        .route("/moved", get(|| async { Redirect::temporary("/ok") }))
        .route("/loop", get(|| async { Redirect::temporary("/loop") }))
        .route(
            "/echo",
            any(|req: Request| async move {
                let (parts, body) = req.into_parts();
                let body = axum::body::to_bytes(body, 1 << 20).await.unwrap();
                let header = |name: &str| {
                    parts
                        .headers
                        .get_all(name)
                        .iter()
                        .map(|v| v.to_str().unwrap().to_string())
                        .collect::<Vec<_>>()
                        .join(",")
                };
                format!(
                    "method={} token={} ua={} host={} body={}",
                    parts.method,
                    header("x-token"),
                    header("user-agent"),
                    header("host"),
                    String::from_utf8_lossy(&body)
                )
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

fn get_check(url: String) -> CheckKind {
    CheckKind::Http {
        url,
        method: "GET".into(),
        headers: BTreeMap::new(),
        body: String::new(),
        tls_skip_verify: false,
    }
}

#[tokio::test]
async fn http_2xx_is_passing_with_consuls_output() {
    let addr = server().await;
    let url = format!("http://{addr}/ok");
    let (_runner, mut rx) = start(fast("web", get_check(url.clone())));
    let update = next(&mut rx).await;
    assert_eq!(update.check_id, "web");
    assert_eq!(update.status, CheckStatus::Passing);
    assert_eq!(
        update.output,
        format!("HTTP GET {url}: 200 OK Output: all good")
    );
}

#[tokio::test]
async fn http_429_is_warning_and_other_codes_critical() {
    let addr = server().await;
    let (_busy, mut busy) = start(fast("busy", get_check(format!("http://{addr}/busy"))));
    let update = next(&mut busy).await;
    assert_eq!(update.status, CheckStatus::Warning);
    assert!(
        update
            .output
            .ends_with(": 429 Too Many Requests Output: slow down"),
        "{}",
        update.output
    );

    let (_fail, mut fail) = start(fast("fail", get_check(format!("http://{addr}/fail"))));
    let update = next(&mut fail).await;
    assert_eq!(update.status, CheckStatus::Critical);
    assert!(
        update
            .output
            .ends_with(": 500 Internal Server Error Output: db down"),
        "{}",
        update.output
    );

    let (_missing, mut missing) =
        start(fast("missing", get_check(format!("http://{addr}/missing"))));
    let update = next(&mut missing).await;
    assert_eq!(update.status, CheckStatus::Critical);
    assert!(
        update.output.contains(": 404 Not Found"),
        "{}",
        update.output
    );
}

#[tokio::test]
async fn http_timeout_and_refused_connection_are_critical() {
    let addr = server().await;
    let mut def = fast("slow", get_check(format!("http://{addr}/slow")));
    def.timeout = Duration::from_millis(200);
    let (_slow, mut slow) = start(def);
    let update = next(&mut slow).await;
    assert_eq!(update.status, CheckStatus::Critical);
    assert!(
        update.output.contains("timed out after 200ms"),
        "{}",
        update.output
    );

    let closed = closed_port().await;
    let url = format!("http://{closed}/ok");
    let (_refused, mut refused) = start(fast("refused", get_check(url.clone())));
    let update = next(&mut refused).await;
    assert_eq!(update.status, CheckStatus::Critical);
    assert!(
        update.output.starts_with(&format!("HTTP GET {url}: ")),
        "{}",
        update.output
    );
    assert!(
        update.output.to_lowercase().contains("refused"),
        "{}",
        update.output
    );
}

#[tokio::test]
async fn http_sends_method_headers_and_body() {
    let addr = server().await;
    let url = format!("http://{addr}/echo");
    let mut headers = BTreeMap::new();
    headers.insert(
        "X-Token".to_string(),
        vec!["a".to_string(), "b".to_string()],
    );
    let kind = CheckKind::Http {
        url: url.clone(),
        method: "PUT".into(),
        headers,
        body: "{\"ping\":1}".into(),
        tls_skip_verify: false,
    };
    let (_runner, mut rx) = start(fast("echo", kind));
    let update = next(&mut rx).await;
    assert_eq!(update.status, CheckStatus::Passing, "{}", update.output);
    assert_eq!(
        update.output,
        format!(
            "HTTP PUT {url}: 200 OK Output: method=PUT token=a,b ua=Consul Health Check host={addr} body={{\"ping\":1}}"
        )
    );
}

#[tokio::test]
async fn http_host_header_overrides_the_url_host() {
    let addr = server().await;
    let mut headers = BTreeMap::new();
    headers.insert("Host".to_string(), vec!["web.example".to_string()]);
    let kind = CheckKind::Http {
        url: format!("http://{addr}/echo"),
        method: "GET".into(),
        headers,
        body: String::new(),
        tls_skip_verify: false,
    };
    let (_runner, mut rx) = start(fast("host", kind));
    let update = next(&mut rx).await;
    assert!(
        update.output.contains("host=web.example "),
        "{}",
        update.output
    );
}

#[tokio::test]
async fn http_follows_redirects_but_not_forever() {
    let addr = server().await;
    let url = format!("http://{addr}/moved");
    let (_moved, mut moved) = start(fast("moved", get_check(url.clone())));
    let update = next(&mut moved).await;
    assert_eq!(update.status, CheckStatus::Passing);
    assert_eq!(
        update.output,
        format!("HTTP GET {url}: 200 OK Output: all good")
    );

    let (_looping, mut looping) = start(fast("loop", get_check(format!("http://{addr}/loop"))));
    let update = next(&mut looping).await;
    assert_eq!(update.status, CheckStatus::Critical);
    assert!(
        update.output.ends_with("stopped after 10 redirects"),
        "{}",
        update.output
    );
}

#[tokio::test]
async fn http_output_keeps_the_first_4k_of_the_body() {
    let addr = server().await;
    let url = format!("http://{addr}/big");
    let (_runner, mut rx) = start(fast("big", get_check(url.clone())));
    let update = next(&mut rx).await;
    assert_eq!(update.status, CheckStatus::Passing);
    let prefix = format!("HTTP GET {url}: 200 OK Output: ");
    assert_eq!(update.output, format!("{prefix}{}", "x".repeat(4096)));
}

#[tokio::test]
async fn https_verifies_the_certificate_unless_told_to_skip() {
    let addr = tls_server().await;
    let url = format!("https://localhost:{}/", addr.port());
    let mut kind = get_check(url.clone());
    let (_verified, mut verified) = start(fast("verified", kind.clone()));
    let update = next(&mut verified).await;
    assert_eq!(update.status, CheckStatus::Critical);
    // Which error depends on the machine's roots (Debian's snakeoil cert is also CN=localhost).
    assert!(
        update.output.contains("invalid peer certificate"),
        "{}",
        update.output
    );

    if let CheckKind::Http {
        tls_skip_verify, ..
    } = &mut kind
    {
        *tls_skip_verify = true;
    }
    let (_skipped, mut skipped) = start(fast("skipped", kind));
    let update = next(&mut skipped).await;
    assert_eq!(update.status, CheckStatus::Passing, "{}", update.output);
    assert_eq!(
        update.output,
        format!("HTTP GET {url}: 200 OK Output: secure")
    );
}

/// A port with nothing listening: bound, then released.
pub async fn closed_port() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    listener.local_addr().unwrap()
}

/// An HTTPS server answering every request with 200 "secure", one request per connection.
async fn tls_server() -> SocketAddr {
    let acceptor = tokio_rustls::TlsAcceptor::from(crate::tls_server_config(&[b"http/1.1"]));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                // A client that rejects our certificate fails here: that is the point.
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let mut request = Vec::new();
                let mut buf = [0u8; 1024];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    match tls.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => request.extend_from_slice(&buf[..n]),
                    }
                }
                let reply =
                    b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\nConnection: close\r\n\r\nsecure";
                let _ = tls.write_all(reply).await;
                let _ = tls.shutdown().await;
            });
        }
    });
    addr
}
