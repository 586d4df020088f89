//! Load-side helpers: a 1 KiB HTTP/1.1 backend and a bulk transfer pair.

use std::convert::Infallible;
use std::time::Instant;

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Serves a fixed 1 KiB body to every request, keep-alive.
pub async fn backend(addr: &str) -> anyhow::Result<()> {
    let l = TcpListener::bind(addr).await?;
    let body = Bytes::from(vec![b'x'; 1024]);
    loop {
        let (tcp, _) = l.accept().await?;
        let _ = tcp.set_nodelay(true);
        let body = body.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |_req: Request<hyper::body::Incoming>| {
                let body = body.clone();
                async move { Ok::<_, Infallible>(Response::new(Full::new(body))) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(tcp), svc)
                .await;
        });
    }
}

/// Sends `bytes` to every connection, then closes it.
pub async fn bulk_server(addr: &str, bytes: u64) -> anyhow::Result<()> {
    let l = TcpListener::bind(addr).await?;
    loop {
        let (mut tcp, _) = l.accept().await?;
        tokio::spawn(async move {
            let chunk = vec![0xa5u8; 256 * 1024];
            let mut left = bytes;
            while left > 0 {
                let n = left.min(chunk.len() as u64) as usize;
                if tcp.write_all(&chunk[..n]).await.is_err() {
                    return;
                }
                left -= n as u64;
            }
            let _ = tcp.shutdown().await;
        });
    }
}

/// Reads from `addr` until EOF; prints bytes, seconds and MiB/s.
pub async fn bulk_client(addr: &str, expect: u64) -> anyhow::Result<()> {
    let t0 = Instant::now();
    let mut tcp = TcpStream::connect(addr).await?;
    let mut buf = vec![0u8; 256 * 1024];
    let mut got = 0u64;
    loop {
        let n = tcp.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        got += n as u64;
    }
    let secs = t0.elapsed().as_secs_f64();
    anyhow::ensure!(got == expect, "received {got} bytes, expected {expect}");
    println!(
        "bytes={got} secs={secs:.3} MiB/s={:.1}",
        got as f64 / secs / (1024.0 * 1024.0)
    );
    Ok(())
}
