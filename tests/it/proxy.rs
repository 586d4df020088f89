//! The built-in sidecar end to end: two services with sidecars on a real
//! agent, traffic through upstream → mTLS → public listener → app;
//! intentions enforced on live connections; a CA rotation under continuous
//! traffic without a failed connection.

use std::net::SocketAddr;
use std::process::Stdio;
use std::time::{Duration, Instant};

use mesh_testkit::{eventually, mesh_bin, TestAgent};
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

use crate::http;

/// An echo server; returns its address.
async fn echo_server() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                let (mut r, mut w) = s.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });
    addr
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `mesh connect proxy -sidecar-for ID`, running until dropped; its upstream addresses.
async fn sidecar(
    a: &TestAgent,
    service_id: &str,
) -> (tokio::process::Child, Vec<(String, SocketAddr)>) {
    let mut child = tokio::process::Command::new(mesh_bin())
        .args(["connect", "proxy", "-sidecar-for", service_id])
        .env("MESH_HTTP_ADDR", a.http.to_string())
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let line = tokio::time::timeout(Duration::from_secs(20), async {
        while let Some(l) = lines.next_line().await.unwrap() {
            if l.starts_with("==> mesh connect proxy ready") {
                return l;
            }
        }
        panic!("proxy exited before it was ready")
    })
    .await
    .expect("proxy ready in time");
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    let ups = line
        .split_whitespace()
        .find_map(|w| w.strip_prefix("upstreams="))
        .unwrap_or_default()
        .split(',')
        .filter(|s| !s.is_empty())
        .map(|u| {
            let (n, a) = u.split_once('@').unwrap();
            (n.to_string(), a.parse().unwrap())
        })
        .collect();
    (child, ups)
}

async fn roundtrip(addr: SocketAddr, msg: &[u8]) -> std::io::Result<()> {
    let mut s = TcpStream::connect(addr).await?;
    s.write_all(msg).await?;
    let mut buf = vec![0; msg.len()];
    tokio::time::timeout(Duration::from_secs(5), s.read_exact(&mut buf)).await??;
    if buf != msg {
        return Err(std::io::Error::other("echo mismatch"));
    }
    Ok(())
}

async fn register(c: &reqwest::Client, a: &TestAgent, body: Value) {
    let r = c
        .put(a.url("/v1/agent/service/register"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
}

#[tokio::test]
async fn sidecars_carry_traffic_enforce_intentions_live_and_survive_rotation() {
    let dir = tempfile::tempdir().unwrap();
    let a = crate::dev_agent("node1", dir.path()).await;
    let c = http();
    let db = echo_server().await;
    register(
        &c,
        &a,
        json!({"Name": "db", "ID": "db", "Port": db.port(), "Address": "127.0.0.1",
        "Connect": {"SidecarService": {"Port": free_port(), "Address": "127.0.0.1"}}}),
    )
    .await;
    register(
        &c,
        &a,
        json!({"Name": "web", "ID": "web", "Port": 1,
        "Connect": {"SidecarService": {"Port": free_port(), "Address": "127.0.0.1",
            "Proxy": {"Upstreams": [{"DestinationName": "db", "LocalBindPort": 0}]}}}}),
    )
    .await;
    let (_db_proxy, _) = sidecar(&a, "db").await;
    let (_web_proxy, ups) = sidecar(&a, "web").await;
    let upstream = ups.iter().find(|(n, _)| n == "db").expect("db upstream").1;

    // Default allow: traffic flows web → db through two sidecars and mTLS.
    eventually("traffic flows", Duration::from_secs(15), || async {
        roundtrip(upstream, b"hello").await.ok()
    })
    .await;

    // A live stream, then a deny: closed within the bound, new connections refused.
    let mut live = TcpStream::connect(upstream).await.unwrap();
    live.write_all(b"ping").await.unwrap();
    let mut buf = [0u8; 4];
    live.read_exact(&mut buf).await.unwrap();
    let r = c
        .put(a.url("/v1/connect/intentions/exact?source=web&destination=db"))
        .json(&json!({"Action": "deny"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let denied_at = Instant::now();
    let n = tokio::time::timeout(Duration::from_secs(5), live.read(&mut buf))
        .await
        .expect("live connection closed after deny");
    assert!(matches!(n, Ok(0) | Err(_)), "closed, not more data");
    let cut = denied_at.elapsed();
    assert!(cut < Duration::from_secs(2), "cut took {cut:?}");
    assert!(
        roundtrip(upstream, b"x").await.is_err(),
        "new connection refused"
    );

    // Delete: the default (allow) applies again.
    c.delete(a.url("/v1/connect/intentions/exact?source=web&destination=db"))
        .send()
        .await
        .unwrap();
    eventually("allowed again", Duration::from_secs(10), || async {
        roundtrip(upstream, b"again").await.ok()
    })
    .await;

    // Rotate the CA under continuous traffic: no failed connection.
    let old = c
        .get(a.url("/v1/connect/ca/roots"))
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap();
    let old_id = old["ActiveRootID"].as_str().unwrap().to_string();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let traffic = {
        let stop = stop.clone();
        tokio::spawn(async move {
            let (mut ok, mut failed) = (0u32, Vec::new());
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                match roundtrip(upstream, b"rotating").await {
                    Ok(()) => ok += 1,
                    Err(e) => failed.push(e.to_string()),
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            (ok, failed)
        })
    };
    let r = c
        .put(a.url("/v1/connect/ca/configuration"))
        .json(
            &json!({"Provider": "consul", "Config": {"PrivateKeyType": "ec", "PrivateKeyBits": 384},
                      "RotationPendingPeriod": "2s", "RotationSpreadWindow": "2s"}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    let new_id = eventually("rotated", Duration::from_secs(20), || async {
        let v: Value = c
            .get(a.url("/v1/connect/ca/roots"))
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        let id = v["ActiveRootID"].as_str()?.to_string();
        (id != old_id).then_some(id)
    })
    .await;
    // Both sidecars re-issued from the new root, then retire the old one.
    eventually("leaves re-issued", Duration::from_secs(20), || async {
        let v: Value = c
            .get(a.url("/v1/connect/ca/rotation"))
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        (v["Total"].as_u64()? > 0 && v["Reissued"] == v["Total"]).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    c.post(a.url("/v1/connect/ca/rotation/retire"))
        .send()
        .await
        .unwrap();
    // Keep traffic going past the retirement.
    let until = Instant::now() + Duration::from_secs(2);
    while Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (ok, failed) = traffic.await.unwrap();
    assert!(ok > 20, "traffic ran ({ok} ok)");
    assert!(
        failed.is_empty(),
        "{} failed connections during rotation to {new_id}: {failed:?}",
        failed.len()
    );
    roundtrip(upstream, b"after retirement").await.unwrap();
}
