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
pub(crate) async fn echo_server() -> SocketAddr {
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

/// Registers `body` on a client agent, retrying while it joins the cluster.
pub(crate) async fn register_on_client(a: &TestAgent, body: Value) {
    let (c, url) = (http(), a.url("/v1/agent/service/register"));
    eventually(
        "register on a client agent",
        Duration::from_secs(15),
        || async {
            let r = c.put(&url).json(&body).send().await.ok()?;
            (r.status() == 200).then_some(())
        },
    )
    .await
}

pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A `mesh connect proxy` process, killed when dropped.
pub(crate) struct Sidecar {
    _child: tokio::process::Child,
    /// Its upstream listeners: (destination, address).
    pub(crate) upstreams: Vec<(String, SocketAddr)>,
    /// Its admin listener (`/metrics`).
    pub(crate) admin: Option<SocketAddr>,
}

impl Sidecar {
    /// The local listener for `destination`.
    pub(crate) fn upstream(&self, destination: &str) -> SocketAddr {
        self.upstreams
            .iter()
            .find(|(n, _)| n == destination)
            .unwrap_or_else(|| panic!("no {destination} upstream in {:?}", self.upstreams))
            .1
    }

    /// Connections its public listener has refused by intention so far.
    pub(crate) async fn denied(&self) -> u64 {
        let admin = self.admin.expect("sidecar started with an admin listener");
        let text = crate::fetch_text(&http(), format!("http://{admin}/metrics")).await;
        metric(&text, "mesh_proxy_inbound_connections_denied_total")
    }
}

/// `mesh connect proxy -sidecar-for ID`, running until dropped.
async fn sidecar(a: &TestAgent, service_id: &str) -> Sidecar {
    connect_proxy(a, &["-sidecar-for", service_id]).await
}

/// `mesh connect proxy ARGS` against agent `a`, once it is ready; running
/// until dropped. It gets an admin listener on a free port, so tests can
/// read its counters.
pub(crate) async fn connect_proxy(a: &TestAgent, args: &[&str]) -> Sidecar {
    let mut with_admin = args.to_vec();
    with_admin.extend(["-admin-bind", "127.0.0.1:0"]);
    connect_proxy_as_given(a, &with_admin).await
}

/// `mesh connect proxy ARGS` with nothing added (an admin listener only if
/// ARGS or the registration name one).
pub(crate) async fn connect_proxy_as_given(a: &TestAgent, args: &[&str]) -> Sidecar {
    let mut cmd = tokio::process::Command::new(mesh_bin());
    cmd.args(["connect", "proxy"]).args(args);
    let mut child = cmd
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
    let field = |key: &str| {
        line.split_whitespace()
            .find_map(|w| w.strip_prefix(key))
            .unwrap_or_default()
            .to_string()
    };
    let upstreams = field("upstreams=")
        .split(',')
        .filter(|s| !s.is_empty())
        .map(|u| {
            let (n, a) = u.split_once('@').unwrap();
            (n.to_string(), a.parse().unwrap())
        })
        .collect();
    let admin = field("admin=").parse().ok();
    Sidecar {
        _child: child,
        upstreams,
        admin,
    }
}

/// Whether a new connection through `upstream` is refused the way an
/// intention refuses it, and not the way a dead or absent proxy would: the
/// local listener accepts, then the connection closes (EOF or reset) with no
/// answer.
pub(crate) async fn refused_by_policy(upstream: SocketAddr) -> bool {
    let Ok(mut s) = TcpStream::connect(upstream).await else {
        return false;
    };
    if s.write_all(b"denied?").await.is_err() {
        return false;
    }
    let mut buf = [0u8; 8];
    match tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf)).await {
        Ok(Ok(0)) => true,
        Ok(Err(e)) => e.kind() == std::io::ErrorKind::ConnectionReset,
        _ => false,
    }
}

/// Waits (at most 10 s) until new connections through `upstream` are
/// refused by policy, and `dest` (the destination's sidecar) counted the
/// refusal.
pub(crate) async fn expect_denied(upstream: SocketAddr, dest: &Sidecar) {
    let before = dest.denied().await;
    eventually("denied by intention", Duration::from_secs(10), || async {
        refused_by_policy(upstream).await.then_some(())
    })
    .await;
    let after = dest.denied().await;
    assert!(
        after > before,
        "the destination's sidecar counted no denial ({before} → {after})"
    );
}

/// The value of the Prometheus sample `series` (name and labels) in `text`.
fn metric(text: &str, series: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no sample {series} in:\n{text}"))
}

pub(crate) async fn roundtrip(addr: SocketAddr, msg: &[u8]) -> std::io::Result<()> {
    let mut s = TcpStream::connect(addr).await?;
    s.write_all(msg).await?;
    let mut buf = vec![0; msg.len()];
    tokio::time::timeout(Duration::from_secs(5), s.read_exact(&mut buf)).await??;
    if buf != msg {
        return Err(std::io::Error::other("echo mismatch"));
    }
    Ok(())
}

/// A stream through the proxies that has carried data both ways.
pub(crate) async fn live_stream(upstream: SocketAddr) -> TcpStream {
    let mut live = TcpStream::connect(upstream).await.unwrap();
    live.write_all(b"ping").await.unwrap();
    let mut buf = [0u8; 4];
    live.read_exact(&mut buf).await.unwrap();
    live
}

/// Waits (at most 5 s) for the proxy to close `live`; panics with `why` if it
/// does not, or if more data arrives instead.
pub(crate) async fn expect_cut(live: &mut TcpStream, why: &str) {
    let mut buf = [0u8; 4];
    let n = tokio::time::timeout(Duration::from_secs(5), live.read(&mut buf))
        .await
        .unwrap_or_else(|_| panic!("live connection not closed: {why}"));
    assert!(matches!(n, Ok(0) | Err(_)), "closed, not more data: {why}");
}

/// Sets CA configuration `config` (a new key: a rotation) and waits until a
/// root other than `previous` is active and every leaf is re-issued from
/// it; returns the new root's ID.
pub(crate) async fn rotate_until_reissued(
    c: &reqwest::Client,
    a: &TestAgent,
    config: &Value,
    previous: &str,
) -> String {
    let r = c
        .put(a.url("/v1/connect/ca/configuration"))
        .json(config)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    let active = eventually("rotated", Duration::from_secs(20), || async {
        let v: Value = c
            .get(a.url("/v1/connect/ca/roots"))
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        let id = v["ActiveRootID"].as_str()?.to_string();
        (id != previous).then_some(id)
    })
    .await;
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
    active
}

/// Round trips through `upstream` every 20 ms until stopped.
pub(crate) struct Traffic {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    task: tokio::task::JoinHandle<(u32, Vec<String>)>,
}

impl Traffic {
    pub(crate) fn start(upstream: SocketAddr) -> Traffic {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = stop.clone();
        let task = tokio::spawn(async move {
            let (mut ok, mut failed) = (0u32, Vec::new());
            while !flag.load(std::sync::atomic::Ordering::Relaxed) {
                match roundtrip(upstream, b"continuous").await {
                    Ok(()) => ok += 1,
                    Err(e) => failed.push(e.to_string()),
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            (ok, failed)
        });
        Traffic { stop, task }
    }

    /// Stops; asserts the traffic ran and not one round trip failed.
    pub(crate) async fn expect_no_failures(self, during: &str) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let (ok, failed) = self.task.await.unwrap();
        assert!(ok > 20, "traffic ran ({ok} ok)");
        assert!(
            failed.is_empty(),
            "{} failed connections during {during}: {failed:?}",
            failed.len()
        );
    }
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
    let db_proxy = sidecar(&a, "db").await;
    let web_proxy = sidecar(&a, "web").await;
    let upstream = web_proxy.upstream("db");

    // Default allow: traffic flows web → db through two sidecars and mTLS.
    eventually("traffic flows", Duration::from_secs(15), || async {
        roundtrip(upstream, b"hello").await.ok()
    })
    .await;

    // A live stream, then a deny: closed within the bound, new connections refused.
    let mut live = live_stream(upstream).await;
    let r = c
        .put(a.url("/v1/connect/intentions/exact?source=web&destination=db"))
        .json(&json!({"Action": "deny"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let denied_at = Instant::now();
    expect_cut(&mut live, "after deny").await;
    let cut = denied_at.elapsed();
    assert!(cut < Duration::from_secs(2), "cut took {cut:?}");
    expect_denied(upstream, &db_proxy).await;

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
    let traffic = Traffic::start(upstream);
    // Generated (P-256) → user-supplied → generated (P-384), each rotation
    // activated, its leaves re-issued, and the old root retired.
    let td = old["TrustDomain"].as_str().unwrap().to_string();
    let (cert, key) = crate::ca::user_ca(dir.path(), "user", &td, true);
    let configs = [
        json!({"Provider": "consul", "Config": {"PrivateKey": key, "RootCert": cert},
               "RotationPendingPeriod": "2s", "RotationSpreadWindow": "2s"}),
        json!({"Provider": "consul", "Config": {"PrivateKeyType": "ec", "PrivateKeyBits": 384},
               "RotationPendingPeriod": "2s", "RotationSpreadWindow": "2s"}),
    ];
    let mut active = old_id.clone();
    for config in configs {
        active = rotate_until_reissued(&c, &a, &config, &active).await;
        // Margin for the proxies to apply the snapshots carrying their new
        // leaves; the zero-failure assertion below is what checks it.
        tokio::time::sleep(Duration::from_millis(500)).await;
        c.post(a.url("/v1/connect/ca/rotation/retire"))
            .send()
            .await
            .unwrap();
        let until = Instant::now() + Duration::from_secs(1);
        while Instant::now() < until {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let new_id = active;
    traffic
        .expect_no_failures(&format!("rotation to {new_id}"))
        .await;
    roundtrip(upstream, b"after retirement").await.unwrap();
}

#[tokio::test]
async fn the_agent_runs_managed_sidecars_itself() {
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("agent.hcl");
    std::fs::write(&conf, "connect {\n  managed_sidecars = true\n}\n").unwrap();
    let mut spec = mesh_testkit::AgentSpec::server("node1", 1);
    spec.extra = vec!["-dev".into(), format!("-config-file={}", conf.display())];
    let a = TestAgent::start(spec, &dir.path().join("data"))
        .await
        .unwrap();
    let c = http();
    let db = echo_server().await;
    let up = free_port();
    register(
        &c,
        &a,
        json!({"Name": "db", "ID": "db", "Port": db.port(), "Address": "127.0.0.1",
        "Connect": {"SidecarService": {"Port": free_port(), "Address": "127.0.0.1"}}}),
    )
    .await;
    // web's sidecar asks for an admin listener with Consul's key for it.
    let public = free_port();
    let web = |admin: u16| {
        json!({"Name": "web", "ID": "web", "Port": 1,
        "Connect": {"SidecarService": {"Port": public, "Address": "127.0.0.1",
            "Proxy": {"Upstreams": [{"DestinationName": "db", "LocalBindPort": up}],
                "Config": {"envoy_prometheus_bind_addr": format!("127.0.0.1:{admin}")}}}}})
    };
    let admin = free_port();
    register(&c, &a, web(admin)).await;
    let upstream: SocketAddr = format!("127.0.0.1:{up}").parse().unwrap();
    eventually(
        "traffic through managed sidecars",
        Duration::from_secs(15),
        || async { roundtrip(upstream, b"managed").await.ok() },
    )
    .await;
    // The sidecar's proxy config is kept, and its admin listener serves
    // readiness and metrics that count the traffic just sent.
    let def = crate::fetch_json(&c, a.url("/v1/agent/service/web-sidecar-proxy")).await;
    assert_eq!(
        def["Proxy"]["Config"]["envoy_prometheus_bind_addr"],
        format!("127.0.0.1:{admin}"),
        "{def}"
    );
    let get = |port: u16, path: &'static str| {
        let c = c.clone();
        async move {
            let r = c
                .get(format!("http://127.0.0.1:{port}{path}"))
                .send()
                .await
                .ok()?;
            let status = r.status();
            Some((status, r.text().await.ok()?))
        }
    };
    let (status, _) = eventually("admin /ready", Duration::from_secs(15), || {
        get(admin, "/ready")
    })
    .await;
    assert_eq!(status, reqwest::StatusCode::OK);
    let (_, metrics) = get(admin, "/metrics").await.unwrap();
    let sent = metric(
        &metrics,
        "mesh_proxy_upstream_bytes_sent_total{upstream=\"db\"}",
    );
    assert!(sent >= b"managed".len() as u64, "{metrics}");
    // Re-registered with another admin address: the sidecar moves there.
    let moved = free_port();
    register(&c, &a, web(moved)).await;
    eventually("admin listener moved", Duration::from_secs(15), || async {
        let now = get(moved, "/ready").await;
        let old = get(admin, "/ready").await;
        (now.is_some_and(|(s, _)| s.is_success()) && old.is_none()).then_some(())
    })
    .await;
    // The sidecar restarted with its new settings: its upstream listener is
    // back once it has rebound.
    eventually(
        "traffic flows after the move",
        Duration::from_secs(15),
        || async { roundtrip(upstream, b"still managed").await.ok() },
    )
    .await;
    // Deregistering the service stops its sidecar.
    c.put(a.url("/v1/agent/service/deregister/web"))
        .send()
        .await
        .unwrap();
    eventually(
        "managed sidecar stopped",
        Duration::from_secs(15),
        || async {
            let refused = TcpStream::connect(upstream).await.err()?;
            (refused.kind() == std::io::ErrorKind::ConnectionRefused).then_some(())
        },
    )
    .await;
}

/// A registration whose proxy config names a bad admin address: the CLI
/// proxy refuses to start and says which service, key and value.
#[tokio::test]
async fn a_bad_admin_address_in_the_proxy_config_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let a = crate::dev_agent("node1", &dir.path().join("data")).await;
    register(
        &http(),
        &a,
        json!({"Name": "db", "ID": "db", "Port": 1, "Address": "127.0.0.1",
        "Connect": {"SidecarService": {"Port": free_port(), "Address": "127.0.0.1",
            "Proxy": {"Config": {"envoy_prometheus_bind_addr": "metrics:9102:x"}}}}}),
    )
    .await;
    let out = tokio::time::timeout(
        Duration::from_secs(20),
        tokio::process::Command::new(mesh_bin())
            .args(["connect", "proxy", "-sidecar-for", "db"])
            .env("MESH_HTTP_ADDR", a.http.to_string())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("the proxy exits at once")
    .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains(
            "service db-sidecar-proxy: proxy config envoy_prometheus_bind_addr = \"metrics:9102:x\": expected \"HOST:PORT\""
        ),
        "{stderr}"
    );
}

/// Envoy as a client of the built-in proxy's public listener, with a leaf
/// from our CA and our trust bundle: the two interoperate over mTLS.
#[tokio::test]
async fn envoy_dials_the_builtin_proxy_with_a_leaf_from_our_ca() {
    let out = tokio::process::Command::new("bash")
        .arg(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("compat/envoy.sh"))
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "envoy setup: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let envoy = String::from_utf8(out.stdout)
        .unwrap()
        .trim()
        .lines()
        .last()
        .unwrap()
        .to_string();

    let dir = tempfile::tempdir().unwrap();
    let a = crate::dev_agent("node1", &dir.path().join("data")).await;
    let c = http();
    let db = echo_server().await;
    let public = free_port();
    let admin = free_port();
    register(
        &c,
        &a,
        json!({"Name": "db", "ID": "db", "Port": db.port(), "Address": "127.0.0.1",
        "Connect": {"SidecarService": {"Port": public, "Address": "127.0.0.1",
            "Proxy": {"Config": {"admin_bind_addr": format!("127.0.0.1:{admin}")}}}}}),
    )
    .await;
    // A worker pool instead of the one-thread default: both runtimes carry
    // traffic. The admin listener comes from the registration's proxy config.
    let db_proxy = connect_proxy_as_given(&a, &["-sidecar-for", "db", "-workers", "2"]).await;
    assert_eq!(
        db_proxy.admin,
        Some(format!("127.0.0.1:{admin}").parse().unwrap())
    );

    let leaf: Value = c
        .get(a.url("/v1/agent/connect/ca/leaf/web"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let roots = c
        .get(a.url("/v1/connect/ca/roots?pem=true"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let td = c
        .get(a.url("/v1/connect/ca/roots"))
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap()["TrustDomain"]
        .as_str()
        .unwrap()
        .to_string();
    std::fs::write(
        dir.path().join("leaf.pem"),
        leaf["CertPEM"].as_str().unwrap(),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("key.pem"),
        leaf["PrivateKeyPEM"].as_str().unwrap(),
    )
    .unwrap();
    std::fs::write(dir.path().join("roots.pem"), roots).unwrap();
    let listen = free_port();
    let d = dir.path().display();
    let yaml = format!(
        r#"
static_resources:
  listeners:
  - name: out
    address: {{socket_address: {{address: 127.0.0.1, port_value: {listen}}}}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.tcp_proxy
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy
          stat_prefix: out
          cluster: db
  clusters:
  - name: db
    type: STATIC
    connect_timeout: 2s
    load_assignment:
      cluster_name: db
      endpoints: [{{lb_endpoints: [{{endpoint: {{address: {{socket_address: {{address: 127.0.0.1, port_value: {public}}}}}}}}}]}}]
    transport_socket:
      name: envoy.transport_sockets.tls
      typed_config:
        "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext
        common_tls_context:
          tls_params: {{tls_minimum_protocol_version: TLSv1_3, tls_maximum_protocol_version: TLSv1_3}}
          tls_certificates: [{{certificate_chain: {{filename: {d}/leaf.pem}}, private_key: {{filename: {d}/key.pem}}}}]
          validation_context:
            trusted_ca: {{filename: {d}/roots.pem}}
            match_typed_subject_alt_names:
            - san_type: URI
              matcher: {{exact: "spiffe://{td}/ns/default/dc/dc1/svc/db"}}
"#
    );
    std::fs::write(dir.path().join("envoy.yaml"), yaml).unwrap();
    let _envoy = tokio::process::Command::new(&envoy)
        .args([
            "-c",
            &format!("{d}/envoy.yaml"),
            "--disable-hot-restart",
            "-l",
            "warning",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let via_envoy: SocketAddr = format!("127.0.0.1:{listen}").parse().unwrap();
    eventually(
        "echo through envoy → mesh sidecar",
        Duration::from_secs(30),
        || async { roundtrip(via_envoy, b"from envoy").await.ok() },
    )
    .await;
    let metrics = crate::fetch_text(&c, format!("http://127.0.0.1:{admin}/metrics")).await;
    let accepted = metric(&metrics, "mesh_proxy_inbound_connections_accepted_total");
    assert!(accepted >= 1, "{metrics}");
    // Our intentions apply to Envoy's identity too.
    c.put(a.url("/v1/connect/intentions/exact?source=web&destination=db"))
        .json(&json!({"Action": "deny"}))
        .send()
        .await
        .unwrap();
    expect_denied(via_envoy, &db_proxy).await;
}

/// Across a 3-server cluster: the app and its sidecar on one server, the
/// client's sidecar on another; the upstream endpoint comes from the
/// replicated catalog, and a deny written on the third server cuts traffic.
#[tokio::test]
async fn sidecars_on_different_servers_of_a_cluster() {
    let cluster = mesh_testkit::TestCluster::start(3).await.unwrap();
    let c = http();
    let (s0, s1, s2) = (&cluster.agents[0], &cluster.agents[1], &cluster.agents[2]);
    let db = echo_server().await;
    register(
        &c,
        s0,
        json!({"Name": "db", "ID": "db", "Port": db.port(), "Address": "127.0.0.1",
        "Connect": {"SidecarService": {"Port": free_port(), "Address": "127.0.0.1"}}}),
    )
    .await;
    register(
        &c,
        s1,
        json!({"Name": "web", "ID": "web", "Port": 1,
        "Connect": {"SidecarService": {"Port": free_port(), "Address": "127.0.0.1",
            "Proxy": {"Upstreams": [{"DestinationName": "db", "LocalBindPort": 0}]}}}}),
    )
    .await;
    let db_proxy = sidecar(s0, "db").await;
    let web_proxy = sidecar(s1, "web").await;
    let upstream = web_proxy.upstream("db");
    eventually(
        "traffic across servers",
        Duration::from_secs(20),
        || async { roundtrip(upstream, b"across").await.ok() },
    )
    .await;
    let r = c
        .put(s2.url("/v1/connect/intentions/exact?source=web&destination=db"))
        .json(&json!({"Action": "deny"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    expect_denied(upstream, &db_proxy).await;
}

/// Sidecars whose local agents are client agents: a client holds no catalog
/// and no CA, so a server computes each snapshot from the catalog copy of
/// the client's proxy registration and the client relays it, blocking
/// included, so intention changes still reach the proxy.
#[tokio::test]
async fn sidecars_on_client_agents() {
    let mut cluster = mesh_testkit::TestCluster::start(3).await.unwrap();
    let c = http();
    for name in ["app1", "app2"] {
        cluster
            .add(mesh_testkit::AgentSpec::client(name))
            .await
            .unwrap();
    }
    let (c1, c2) = (&cluster.agents[3], &cluster.agents[4]);
    let db = echo_server().await;
    let registered = register_on_client;
    registered(
        c1,
        json!({"Name": "db", "ID": "db", "Port": db.port(), "Address": "127.0.0.1",
        "Connect": {"SidecarService": {"Port": free_port(), "Address": "127.0.0.1"}}}),
    )
    .await;
    registered(
        c2,
        json!({"Name": "web", "ID": "web", "Port": 1,
        "Connect": {"SidecarService": {"Port": free_port(), "Address": "127.0.0.1",
            "Proxy": {"Upstreams": [{"DestinationName": "db", "LocalBindPort": 0}]}}}}),
    )
    .await;
    let db_proxy = sidecar(c1, "db").await;
    let web_proxy = sidecar(c2, "web").await;
    let upstream = web_proxy.upstream("db");
    eventually(
        "traffic between client agents' sidecars",
        Duration::from_secs(20),
        || async { roundtrip(upstream, b"clients").await.ok() },
    )
    .await;

    // The client made db's key: its relayed snapshot carries it, while a
    // server never has it: without the client's CSR there is no leaf at all,
    // and with one the leaf comes back without a key.
    let relayed: Value =
        crate::fetch_json(&c, c1.url("/v1/agent/connect/proxy/db-sidecar-proxy")).await;
    let key = relayed["Leaf"]["PrivateKeyPEM"]
        .as_str()
        .unwrap_or_default();
    assert!(key.contains("PRIVATE KEY"), "{relayed}");
    let server_view = |csr: Option<&str>| {
        let mut query = vec![("node", "app1")];
        query.extend(csr.map(|c| ("csr", c)));
        let url = reqwest::Url::parse_with_params(
            &cluster.agents[0].url("/v1/agent/connect/proxy/db-sidecar-proxy"),
            &query,
        )
        .unwrap();
        let c = c.clone();
        async move { c.get(url).send().await.unwrap() }
    };
    let r: Value = server_view(None).await.json().await.unwrap();
    assert!(r["Leaf"].is_null(), "no leaf without a CSR: {r}");
    let id = format!(
        "spiffe://{}/ns/default/dc/dc1/svc/db",
        relayed["TrustDomain"].as_str().unwrap()
    );
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::default();
    params.subject_alt_names = vec![rcgen::SanType::URI(id.as_str().try_into().unwrap())];
    let csr = params.serialize_request(&key).unwrap().pem().unwrap();
    let signed: Value = server_view(Some(&csr)).await.json().await.unwrap();
    assert!(
        signed["Leaf"]["CertPEM"]
            .as_str()
            .unwrap()
            .contains("CERTIFICATE"),
        "{signed}"
    );
    assert_eq!(signed["Leaf"]["PrivateKeyPEM"], "", "{signed}");
    let r = server_view(Some("garbage")).await;
    assert_eq!(r.status(), 400, "a bad CSR is the caller's error");

    // An unknown proxy is the client's own 404, not a server's.
    let r = c
        .get(c1.url("/v1/agent/connect/proxy/nope"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    assert!(r.text().await.unwrap().contains("on this agent"));

    // A deny written on a server reaches both relayed snapshots.
    let mut live = live_stream(upstream).await;
    let r = c
        .put(cluster.agents[0].url("/v1/connect/intentions/exact?source=web&destination=db"))
        .json(&json!({"Action": "deny"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    expect_cut(&mut live, "after deny").await;
    expect_denied(upstream, &db_proxy).await;
}

/// mesh.d all the way to the data plane: services with managed sidecars and
/// an allow intention declared in files, default deny; deleting the
/// intention's file cuts the live connection and refuses new ones.
#[tokio::test]
async fn deleting_an_intention_file_stops_traffic_through_the_proxy() {
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("mesh.d");
    std::fs::create_dir_all(&conf).unwrap();
    let db = echo_server().await;
    let (db_public, web_public, up) = (free_port(), free_port(), free_port());
    std::fs::write(
        conf.join("agent.hcl"),
        "acl {\n  default_policy = \"deny\"\n}\nconnect {\n  managed_sidecars = true\n}\n",
    )
    .unwrap();
    std::fs::write(
        conf.join("services.hcl"),
        format!(
            r#"
service {{
  name = "db"
  id = "db"
  address = "127.0.0.1"
  port = {}
  connect {{
    sidecar_service {{
      address = "127.0.0.1"
      port = {db_public}
    }}
  }}
}}
service {{
  name = "web"
  id = "web"
  port = 1
  connect {{
    sidecar_service {{
      address = "127.0.0.1"
      port = {web_public}
      proxy {{
        upstreams = [{{ destination_name = "db", local_bind_port = {up} }}]
      }}
    }}
  }}
}}
"#,
            db.port()
        ),
    )
    .unwrap();
    std::fs::write(
        conf.join("intentions.hcl"),
        "intention \"web\" \"db\" {\n  action = \"allow\"\n}\n",
    )
    .unwrap();
    let mut spec = mesh_testkit::AgentSpec::server("node1", 1);
    spec.extra = vec!["-dev".into(), format!("-config-dir={}", conf.display())];
    let a = TestAgent::start(spec, &dir.path().join("data"))
        .await
        .unwrap();
    let upstream: SocketAddr = format!("127.0.0.1:{up}").parse().unwrap();
    eventually(
        "traffic allowed by the file's intention",
        Duration::from_secs(20),
        || async { roundtrip(upstream, b"declared").await.ok() },
    )
    .await;
    let mut live = live_stream(upstream).await;
    std::fs::remove_file(conf.join("intentions.hcl")).unwrap();
    expect_cut(&mut live, "once the file is gone").await;
    // Default deny: refused by the managed db sidecar, which runs in the
    // agent's process and logs the refusal there.
    eventually("denied by default", Duration::from_secs(10), || async {
        refused_by_policy(upstream).await.then_some(())
    })
    .await;
    let log = std::fs::read_to_string(&a.log).unwrap();
    assert!(
        log.contains("inbound connection refused: intention denies"),
        "no refusal in the agent's log:\n{log}"
    );
}
