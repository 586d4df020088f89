//! Sidecars, backends and raw TLS clients on 127.0.0.1 port 0.
#![allow(dead_code)]

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use mesh_proxy::{
    Endpoint, IntentionSet, Protocol, Proxy, ProxyHandle, ProxySnapshot, PublicListener, Upstream,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use crate::pki::Ca;

pub const TD: &str = "11111111-2222-3333-4444-555555555555.consul";
pub const DC: &str = "dc1";
/// Upper bound for anything that should happen "at once".
pub const WAIT: Duration = Duration::from_secs(10);

/// Waits until `f` returns `Some`, polling every 10 ms, at most `WAIT`.
pub async fn eventually<T, F, Fut>(what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

pub fn spiffe(service: &str) -> String {
    format!("spiffe://{TD}/ns/default/dc/{DC}/svc/{service}")
}

/// A snapshot for `service` fronting the app at `local`, with a fresh leaf from `ca`.
pub fn snapshot(ca: &Ca, service: &str, local: SocketAddr, protocol: Protocol) -> ProxySnapshot {
    ProxySnapshot {
        proxy_id: format!("{service}-sidecar-proxy"),
        service: service.into(),
        trust_domain: TD.into(),
        datacenter: DC.into(),
        public: PublicListener {
            bind_address: "127.0.0.1".into(),
            bind_port: 0,
            local_service_address: local.ip().to_string(),
            local_service_port: local.port(),
            protocol,
        },
        leaf: Some(ca.leaf(TD, DC, service)),
        roots: vec![ca.pem.clone()],
        intentions: IntentionSet {
            default_allow: true,
            rules: vec![],
        },
        upstreams: vec![],
        index: 1,
        ..Default::default()
    }
}

/// An upstream entry pointing at `target`'s public listener.
pub fn upstream(name: &str, target: SocketAddr) -> Upstream {
    Upstream {
        destination_name: name.into(),
        local_bind_address: "127.0.0.1".into(),
        local_bind_port: 0,
        connect_timeout_ms: 2000,
        protocol: Default::default(),
        endpoints: vec![Endpoint {
            address: target.ip().to_string(),
            port: target.port(),
            spiffe_id: spiffe(name),
            ..Default::default()
        }],
        ..Default::default()
    }
}

/// An L4 intention from `source` to any destination.
pub fn rule(source: &str, allow: bool) -> mesh_types::Intention {
    mesh_types::Intention {
        source: source.into(),
        destination: "*".into(),
        action: Some(if allow {
            mesh_types::IntentionAction::Allow
        } else {
            mesh_types::IntentionAction::Deny
        }),
        ..Default::default()
    }
}

/// One running sidecar and the sender that drives it.
pub struct Sidecar {
    pub tx: watch::Sender<Arc<ProxySnapshot>>,
    pub handle: ProxyHandle,
    pub admin: SocketAddr,
}

impl Sidecar {
    pub async fn start(snap: ProxySnapshot) -> Sidecar {
        // `RUST_LOG=mesh_proxy=info cargo test -p mesh-proxy` shows why things were refused.
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
        let (tx, rx) = watch::channel(Arc::new(snap));
        let admin = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let admin_addr = admin.local_addr().unwrap();
        let handle = Proxy::spawn(rx, Some(admin), std::future::pending());
        let s = Sidecar {
            tx,
            handle,
            admin: admin_addr,
        };
        s.wait_applied().await;
        s
    }

    /// Waits until the proxy has applied the snapshot now in the channel.
    pub async fn wait_applied(&self) {
        let index = self.tx.borrow().index;
        let b = self
            .handle
            .wait_bound(WAIT, |b| b.index == index)
            .await
            .expect("snapshot applied");
        assert!(b.errors.is_empty(), "bind errors: {:?}", b.errors);
    }

    pub fn public(&self) -> SocketAddr {
        self.handle.bound().borrow().public.expect("public bound")
    }

    pub fn upstream(&self, name: &str) -> SocketAddr {
        self.handle.bound().borrow().upstreams[name]
    }

    /// Applies `f` to a copy of the snapshot, bumps the index, publishes it and waits.
    pub async fn update(&self, f: impl FnOnce(&mut ProxySnapshot)) {
        let mut s = (**self.tx.borrow()).clone();
        f(&mut s);
        s.index += 1;
        self.tx.send_replace(Arc::new(s));
        self.wait_applied().await;
    }

    pub fn snap(&self) -> ProxySnapshot {
        (**self.tx.borrow()).clone()
    }
}

/// A TCP echo server that honours half-close; returns its address.
pub async fn echo_server() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (s, _) = l.accept().await.unwrap();
            tokio::spawn(async move {
                let (mut r, mut w) = s.into_split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
                let _ = w.shutdown().await;
            });
        }
    });
    addr
}

/// Writes `msg`, reads the same number of bytes back.
pub async fn roundtrip(s: &mut TcpStream, msg: &[u8]) -> std::io::Result<Vec<u8>> {
    s.write_all(msg).await?;
    let mut buf = vec![0; msg.len()];
    s.read_exact(&mut buf).await?;
    Ok(buf)
}

/// Sidecars `a` (client side, upstream to `b`) and `b` (fronting `backend`).
pub async fn pair(ca: &Ca, backend: SocketAddr, protocol: Protocol) -> (Sidecar, Sidecar) {
    let b = Sidecar::start(snapshot(ca, "b", backend, protocol)).await;
    let unused: SocketAddr = "127.0.0.1:9".parse().unwrap();
    let mut sa = snapshot(ca, "a", unused, Protocol::Tcp);
    sa.upstreams = vec![upstream("b", b.public())];
    let a = Sidecar::start(sa).await;
    (a, b)
}

/// One HTTP/1.1 GET over a fresh connection: (status, body).
pub async fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    use http_body_util::{BodyExt, Empty};
    let tcp = TcpStream::connect(addr).await.unwrap();
    let (mut send, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tcp))
        .await
        .unwrap();
    tokio::spawn(conn);
    let req = hyper::Request::get(path)
        .header("host", "test")
        .body(Empty::<bytes::Bytes>::new())
        .unwrap();
    let resp = send.send_request(req).await.unwrap();
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}
