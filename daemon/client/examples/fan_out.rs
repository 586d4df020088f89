//! Watch fan-out load generator for `bench/catalog.sh`: parks N blocking
//! queries (`GET /v1/health/service/NAME?index=I&wait=60s`) on one agent,
//! makes one registration, and reports how long each waiter took to get
//! its answer's headers, timed from just before the write. Written in Rust
//! on one thread so the client's own cost per answer (a few µs) does not
//! dominate the figure the way an interpreter's does.
//!
//!   fan_out ADDR [WAITERS] [SERVICE]   prints one JSON object

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// One HTTP/1.1 request on a fresh connection; returns (status, headers, body).
async fn request(addr: &str, method: &str, path: &str, body: &str) -> (u16, String, String) {
    let mut conn = TcpStream::connect(addr).await.expect("connect");
    conn.set_nodelay(true).expect("nodelay");
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: bench\r\nConnection: close\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    conn.write_all(head.as_bytes()).await.expect("write");
    conn.write_all(body.as_bytes()).await.expect("write");
    let mut out = Vec::new();
    conn.read_to_end(&mut out).await.expect("read");
    let text = String::from_utf8_lossy(&out).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, head.to_string(), body.to_string())
}

fn header(head: &str, name: &str) -> Option<String> {
    head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.eq_ignore_ascii_case(name).then(|| v.trim().to_string())
    })
}

async fn register(addr: &str, service: &str, n: u32) -> Duration {
    let body = format!(
        r#"{{"Node":"fan-node","Address":"10.0.0.1","Service":{{"ID":"{service}-{n}","Service":"{service}","Port":{}}},"Check":{{"CheckID":"{service}-{n}-ok","Name":"ok","Status":"passing","ServiceID":"{service}-{n}"}}}}"#,
        9000 + n
    );
    let t0 = Instant::now();
    let (status, _, out) = request(addr, "PUT", "/v1/catalog/register", &body).await;
    assert_eq!(status, 200, "register failed: {out}");
    t0.elapsed()
}

/// Read until the end of the response headers; the time they arrived.
async fn await_headers(mut conn: TcpStream) -> Instant {
    let mut buf = vec![0u8; 4096];
    let mut seen = Vec::new();
    loop {
        let n = conn.read(&mut buf).await.expect("read");
        assert!(n > 0, "connection closed before an answer");
        seen.extend_from_slice(&buf[..n]);
        if seen.windows(4).any(|w| w == b"\r\n\r\n") {
            return Instant::now();
        }
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let i = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let addr = args
        .get(1)
        .expect("usage: fan_out ADDR [WAITERS] [SERVICE]");
    let waiters: usize = args.get(2).map_or(1000, |s| s.parse().expect("WAITERS"));
    let service = args.get(3).map_or("fan", String::as_str);

    register(addr, service, 0).await;
    let (_, head, _) = request(addr, "GET", &format!("/v1/health/service/{service}"), "").await;
    let index = header(&head, "X-Consul-Index").expect("X-Consul-Index");

    let get = format!(
        "GET /v1/health/service/{service}?index={index}&wait=60s HTTP/1.1\r\nHost: bench\r\n\r\n"
    );
    let mut conns = Vec::with_capacity(waiters);
    for _ in 0..waiters {
        let mut conn = TcpStream::connect(addr).await.expect("connect");
        conn.set_nodelay(true).expect("nodelay");
        conn.write_all(get.as_bytes()).await.expect("write");
        conns.push(conn);
    }
    // The server gives no signal that a query is parked; a second is ample
    // for it to read 1,000 requests on loopback.
    tokio::time::sleep(Duration::from_secs(1)).await;

    let tasks: Vec<_> = conns
        .into_iter()
        .map(|c| tokio::spawn(await_headers(c)))
        .collect();
    let t0 = Instant::now();
    let write = register(addr, service, 1).await;
    let mut lat = Vec::with_capacity(waiters);
    for t in tasks {
        let at = tokio::time::timeout(Duration::from_secs(60), t)
            .await
            .expect("a waiter got no answer in 60 s")
            .expect("waiter");
        lat.push(at.duration_since(t0).as_secs_f64() * 1000.0);
    }
    lat.sort_by(f64::total_cmp);
    println!(
        r#"{{"waiters": {}, "write_ms": {:.2}, "p50_ms": {:.1}, "p99_ms": {:.1}, "max_ms": {:.1}}}"#,
        lat.len(),
        write.as_secs_f64() * 1000.0,
        percentile(&lat, 50.0),
        percentile(&lat, 99.0),
        lat[lat.len() - 1]
    );
}
