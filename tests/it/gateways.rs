//! Gateways on both data planes: an ingress and a terminating gateway
//! started with `mesh connect proxy -gateway ... -register` (the built-in
//! proxy) or `mesh connect envoy -gateway ... -register` (Envoy over xDS),
//! or run by the agent itself from its config files. The ingress gateway
//! is reached with curl from outside the mesh (no client certificate):
//! HTTP routed by host to two services over TLS with a certificate from
//! the Connect CA or from files, and a TCP listener for a third service.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use mesh_testkit::{eventually, mesh_bin, AgentSpec, TestAgent};
use reqwest::Method;
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::net::TcpStream;

use crate::acl::{call, MANAGEMENT};
use crate::chains::{http_backend, named_server, with_sidecar, Behaviour};
use crate::proxy::free_port;

/// A running gateway's process, stopped when dropped.
pub(crate) struct Gateway {
    _process: Box<dyn Send>,
}

/// The proxy a gateway runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Plane {
    Builtin,
    Envoy,
}

/// A gateway registered and started as users do on `plane`: `kind`
/// (`ingress`, `terminating`) for service `name` at `address` (an IP for
/// an ingress gateway, the mTLS listener's IP:PORT for a terminating one).
pub(crate) async fn start_gateway(
    a: &TestAgent,
    plane: Plane,
    kind: &str,
    name: &str,
    address: &str,
    dir: &Path,
) -> Gateway {
    match plane {
        Plane::Builtin => {
            let flag = if kind == "terminating" {
                "-listen"
            } else {
                "-address"
            };
            let args = [
                "-gateway",
                kind,
                "-register",
                "-service",
                name,
                flag,
                address,
            ];
            Gateway {
                _process: Box::new(gateway(a, &args).await),
            }
        }
        Plane::Envoy => {
            let envoy = crate::envoy::envoy_bin().await;
            let args = [
                "-gateway",
                kind,
                "-register",
                "-service",
                name,
                "-address",
                address,
            ];
            let envoy = crate::envoy::Envoy::run(a, &envoy, name, &args, dir).await;
            Gateway {
                _process: Box::new(envoy),
            }
        }
    }
}

/// An HTTP service `name` answering `name <path>`, behind its sidecar.
async fn http_service(a: &TestAgent, name: &'static str) -> crate::proxy::Sidecar {
    let app = http_backend(name, Behaviour::Normal).await;
    with_sidecar(a, name, name, app, json!({})).await
}

/// A single server with DNS, and xDS for Envoy.
async fn gateway_agent(name: &str, dir: &Path, extra: &[String]) -> TestAgent {
    let mut spec = AgentSpec::server(name, 1);
    spec.extra = vec!["-dev".into()];
    spec.extra.extend(extra.iter().cloned());
    spec.dns = true;
    spec.grpc = true;
    TestAgent::start(spec, &dir.join("data")).await.unwrap()
}

/// `mesh connect proxy ARGS` for a gateway, once it is ready.
async fn gateway(a: &TestAgent, args: &[&str]) -> tokio::process::Child {
    let mut child = tokio::process::Command::new(mesh_bin())
        .args(["connect", "proxy"])
        .args(args)
        .env("MESH_HTTP_ADDR", a.http.to_string())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    tokio::time::timeout(Duration::from_secs(20), async {
        while let Some(l) = lines.next_line().await.unwrap() {
            if l.starts_with("==> mesh connect proxy ready") {
                return;
            }
        }
        panic!("the gateway exited before it was ready")
    })
    .await
    .expect("gateway ready in time");
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    child
}

/// curl, as a caller outside the mesh: `(status, body)`.
async fn curl(args: &[&str]) -> (String, String) {
    let out = tokio::process::Command::new("curl")
        .args(["-sS", "--max-time", "5", "-o", "-", "-w", "\n%{http_code}"])
        .args(args)
        .output()
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", ""));
    if !out.status.success() {
        return (
            "000".into(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        );
    }
    (code.to_string(), body.to_string())
}

pub(crate) async fn roots_pem(a: &TestAgent, dir: &Path) -> std::path::PathBuf {
    let v: Value = crate::fetch_json(&crate::http(), a.url("/v1/connect/ca/roots")).await;
    let pems: Vec<String> = v["Roots"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["RootCert"].as_str().unwrap().to_string())
        .collect();
    let path = dir.join("roots.pem");
    std::fs::write(&path, pems.join("\n")).unwrap();
    path
}

/// Sends `bytes` over TLS to `addr` as `host`, verified against the PEM
/// roots in `roots`, and returns what comes back before the server closes
/// (or 2 s pass).
pub(crate) async fn tls_roundtrip(
    addr: std::net::SocketAddr,
    host: &str,
    roots: &Path,
    bytes: &[u8],
) -> std::io::Result<Vec<u8>> {
    use rustls::pki_types::pem::PemObject;
    use tokio::io::AsyncWriteExt;
    let mut store = rustls::RootCertStore::empty();
    for cert in
        rustls::pki_types::CertificateDer::pem_file_iter(roots).map_err(std::io::Error::other)?
    {
        store
            .add(cert.map_err(std::io::Error::other)?)
            .map_err(std::io::Error::other)?;
    }
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(std::io::Error::other)?
        .with_root_certificates(store)
        .with_no_client_auth();
    let name =
        rustls::pki_types::ServerName::try_from(host.to_string()).map_err(std::io::Error::other)?;
    let tcp = TcpStream::connect(addr).await?;
    let mut tls = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config))
        .connect(name, tcp)
        .await?;
    tls.write_all(bytes).await?;
    let mut got = vec![0u8; bytes.len()];
    tokio::time::timeout(Duration::from_secs(2), tls.read_exact(&mut got))
        .await
        .map_err(std::io::Error::other)??;
    Ok(got)
}

#[tokio::test]
async fn an_ingress_gateway_routes_by_host_over_tls_and_carries_tcp() {
    ingress_gateway_carries_traffic(Plane::Builtin).await;
}

#[tokio::test]
async fn envoy_as_an_ingress_gateway_routes_by_host_over_tls_and_carries_tcp() {
    ingress_gateway_carries_traffic(Plane::Envoy).await;
}

/// A CA of its own and a certificate it signed for `host`, as PEM files:
/// `(ca, cert, key)`.
fn certificate_files(dir: &Path, host: &str) -> [String; 3] {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca.key_usages = vec![rcgen::KeyUsagePurpose::KeyCertSign];
    // Names of their own: a leaf named as its issuer looks self-signed.
    ca.distinguished_name
        .push(rcgen::DnType::CommonName, format!("{host} test CA"));
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca, ca_key);
    let key = rcgen::KeyPair::generate().unwrap();
    let mut leaf = rcgen::CertificateParams::new(vec![host.to_string()]).unwrap();
    leaf.distinguished_name
        .push(rcgen::DnType::CommonName, host.to_string());
    let cert = leaf.signed_by(&key, &issuer).unwrap();
    let mut paths = Vec::new();
    for (name, pem) in [
        ("ca", ca_cert.pem()),
        ("cert", cert.pem()),
        ("key", key.serialize_pem()),
    ] {
        let path = dir.join(format!("{host}-{name}.pem"));
        std::fs::write(&path, pem).unwrap();
        paths.push(path.to_str().unwrap().to_string());
    }
    paths.try_into().unwrap()
}

async fn ingress_gateway_carries_traffic(plane: Plane) {
    let dir = tempfile::tempdir().unwrap();
    let a = gateway_agent("ingress", dir.path(), &[]).await;
    for name in ["web", "api"] {
        let (st, text) = call(
            Method::PUT,
            &a,
            "/v1/config",
            Some(MANAGEMENT),
            Some(json!({"Kind": "service-defaults", "Name": name, "Protocol": "http"})),
        )
        .await;
        assert_eq!(st, 200, "{text}");
    }
    let _web = http_service(&a, "web").await;
    let _api = http_service(&a, "api").await;
    let _db = with_sidecar(&a, "db", "db", named_server("db").await, json!({})).await;
    let (https, tcp, files) = (free_port(), free_port(), free_port());
    let [files_ca, cert, key] = certificate_files(dir.path(), "files.example.test");
    let files_listener = json!({"Port": files, "Protocol": "http",
        "TLS": {"Enabled": true, "CertFile": cert, "KeyFile": key},
        "Services": [{"Name": "web", "Hosts": ["files.example.test"]}]});
    let (st, text) = call(
        Method::PUT,
        &a,
        "/v1/config",
        Some(MANAGEMENT),
        Some(
            json!({"Kind": "ingress-gateway", "Name": "edge", "Listeners": [
            {"Port": https, "Protocol": "http", "TLS": {"Enabled": true}, "Services": [
                {"Name": "web"}, {"Name": "api", "Hosts": ["api.example.test"]}]},
            {"Port": tcp, "Protocol": "tcp", "Services": [{"Name": "db"}]},
            files_listener.clone()]}),
        ),
    )
    .await;
    assert_eq!(st, 200, "{text}");
    let _gateway = start_gateway(&a, plane, "ingress", "edge", "127.0.0.1", dir.path()).await;
    let roots = roots_pem(&a, dir.path()).await;
    let roots = roots.to_str().unwrap();

    // By host, over TLS verified against the Connect CA's roots.
    let web_host = format!("web.ingress.consul:{https}:127.0.0.1");
    let web = eventually(
        "web through the gateway",
        Duration::from_secs(20),
        || async {
            let (code, body) = curl(&[
                "--cacert",
                roots,
                "--resolve",
                &web_host,
                &format!("https://web.ingress.consul:{https}/hello"),
            ])
            .await;
            (code == "200").then_some(body)
        },
    )
    .await;
    assert_eq!(web, "web /hello");
    let api_host = format!("api.example.test:{https}:127.0.0.1");
    let (code, body) = curl(&[
        "--cacert",
        roots,
        "--resolve",
        &api_host,
        &format!("https://api.example.test:{https}/v1"),
    ])
    .await;
    assert_eq!((code.as_str(), body.as_str()), ("200", "api /v1"));
    // A host no service answers (and the certificate does not name): 404.
    let (code, _) = curl(&[
        "--cacert",
        roots,
        "--resolve",
        &web_host,
        "-H",
        "Host: other.example.test",
        &format!("https://web.ingress.consul:{https}/"),
    ])
    .await;
    assert_eq!(code, "404");
    let (code, _) = curl(&[&format!("http://127.0.0.1:{https}/")]).await;
    assert_ne!(code, "200");
    // A listener presenting a certificate from files, verified by its own CA.
    let (code, body) = curl(&[
        "--cacert",
        &files_ca,
        "--resolve",
        &format!("files.example.test:{files}:127.0.0.1"),
        &format!("https://files.example.test:{files}/f"),
    ])
    .await;
    assert_eq!((code.as_str(), body.as_str()), ("200", "web /f"));

    // DNS: `<service>.ingress.<domain>` names the gateways exposing it.
    let dns = a.dns.expect("the agent serves DNS");
    for service in ["web", "db"] {
        let name = format!("{service}.ingress.consul");
        let ips = crate::dns::dig(dns, &["+short", &name, "A"]).await;
        assert_eq!(ips.trim(), "127.0.0.1", "{name}");
    }
    assert_eq!(
        crate::dns::dig(dns, &["+short", "nope.ingress.consul", "A"])
            .await
            .trim(),
        ""
    );

    // TCP: the listener splices to db.
    let mut s = TcpStream::connect(("127.0.0.1", tcp)).await.unwrap();
    let mut name = String::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_string(&mut name))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(name, "db");

    // A new service on the listener applies without a restart.
    let (st, text) = call(
        Method::PUT,
        &a,
        "/v1/config",
        Some(MANAGEMENT),
        Some(json!({"Kind": "ingress-gateway", "Name": "edge", "Listeners": [
            {"Port": https, "Protocol": "http", "TLS": {"Enabled": true}, "Services": [
                {"Name": "web"}, {"Name": "api", "Hosts": ["api.example.test", "other.example.test"]}]},
            {"Port": tcp, "Protocol": "tcp", "Services": [{"Name": "db"}]},
            files_listener]})),
    )
    .await;
    assert_eq!(st, 200, "{text}");
    let other = format!("other.example.test:{https}:127.0.0.1");
    // Its certificate is re-issued to name the new host, so TLS verifies.
    eventually("the new host routes", Duration::from_secs(20), || async {
        let (code, body) = curl(&[
            "--cacert",
            roots,
            "--resolve",
            &other,
            &format!("https://other.example.test:{https}/x"),
        ])
        .await;
        (code == "200" && body == "api /x").then_some(())
    })
    .await;
}

#[tokio::test]
async fn bad_gateway_entries_are_refused_with_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let a = crate::dev_agent("ingress-bad", &dir.path().join("data")).await;
    for (body, want) in [
        (
            json!({"Kind": "ingress-gateway", "Name": "edge", "Listeners": [
                {"Port": 8080, "Protocol": "tcp", "Services": [{"Name": "a"}, {"Name": "b"}]}]}),
            "Listeners[0].Services: a tcp listener fronts exactly one service",
        ),
        (
            json!({"Kind": "ingress-gateway", "Name": "edge", "Listeners": [
                {"Port": 8080, "Protocol": "http", "Services": [{"Name": "a"}]},
                {"Port": 8080, "Protocol": "http", "Services": [{"Name": "b"}]}]}),
            "Listeners[1].Port: port 8080 is used by two listeners",
        ),
        (
            json!({"kind": "ingress-gateway", "name": "edge", "listeners": [
                {"port": 8080, "protocol": "http", "services": [{"name": "a", "hosts": ["x y"]}]}]}),
            "is not a host name",
        ),
        (
            json!({"Kind": "ingress-gateway", "Name": "edge", "Listeners": [
                {"Port": 8443, "Protocol": "http", "TLS": {"Enabled": true, "CertFile": "/c.pem"},
                 "Services": [{"Name": "a"}]}]}),
            "Listeners[0].TLS: give CertFile and KeyFile together",
        ),
        (
            json!({"Kind": "ingress-gateway", "Name": "edge",
                   "TLS": {"CertFile": "/c.pem", "KeyFile": "/k.pem"}, "Listeners": [
                {"Port": 8443, "Protocol": "http", "Services": [{"Name": "a"}]}]}),
            "TLS.CertFile: a certificate needs Enabled = true",
        ),
    ] {
        let (st, text) = call(Method::PUT, &a, "/v1/config", Some(MANAGEMENT), Some(body)).await;
        assert_eq!(st, 400, "{text}");
        assert!(text.contains(want), "{text:?} should say {want:?}");
    }
    let (st, _) = call(
        Method::GET,
        &a,
        "/v1/config/ingress-gateway/edge",
        Some(MANAGEMENT),
        None,
    )
    .await;
    assert_eq!(st, 404, "nothing stored");
}

/// A TLS echo server outside the mesh, with its own CA: returns the CA's
/// PEM file and the address.
async fn external_tls_echo(dir: &Path, name: &str) -> (std::path::PathBuf, std::net::SocketAddr) {
    use rustls::pki_types::pem::PemObject;
    let [ca_file, cert, key] = certificate_files(dir, name);
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            rustls::pki_types::CertificateDer::pem_file_iter(&cert)
                .unwrap()
                .map(Result::unwrap)
                .collect(),
            rustls::pki_types::PrivateKeyDer::from_pem_file(&key).unwrap(),
        )
        .unwrap();
    let ca_file = std::path::PathBuf::from(ca_file);
    let acceptor = tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let (mut r, mut w) = tokio::io::split(tls);
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });
    (ca_file, addr)
}

#[tokio::test]
async fn a_terminating_gateway_carries_mesh_traffic_out_over_tls_and_cuts_it_on_deny() {
    terminating_gateway_carries_traffic(Plane::Builtin).await;
}

#[tokio::test]
async fn envoy_as_a_terminating_gateway_carries_mesh_traffic_out_over_tls_and_cuts_it_on_deny() {
    terminating_gateway_carries_traffic(Plane::Envoy).await;
}

async fn terminating_gateway_carries_traffic(plane: Plane) {
    let dir = tempfile::tempdir().unwrap();
    let a = gateway_agent("terminating", dir.path(), &[]).await;
    let (ca_file, external) = external_tls_echo(dir.path(), "billing.external").await;
    // billing lives outside the mesh, on a node of its own.
    let (st, text) = call(
        Method::PUT,
        &a,
        "/v1/catalog/register",
        Some(MANAGEMENT),
        Some(json!({"Node": "external", "Address": "127.0.0.1",
                    "Service": {"Service": "billing", "ID": "billing", "Port": external.port()}})),
    )
    .await;
    assert_eq!(st, 200, "{text}");
    let (st, text) = call(
        Method::PUT,
        &a,
        "/v1/config",
        Some(MANAGEMENT),
        Some(
            json!({"Kind": "terminating-gateway", "Name": "egress", "Services": [
            {"Name": "billing", "CAFile": ca_file.to_str().unwrap(), "SNI": "billing.external"}]}),
        ),
    )
    .await;
    assert_eq!(st, 200, "{text}");
    let listen = format!("127.0.0.1:{}", free_port());
    let _gateway = start_gateway(&a, plane, "terminating", "egress", &listen, dir.path()).await;
    let (st, text) = call(
        Method::PUT,
        &a,
        "/v1/agent/service/register",
        Some(MANAGEMENT),
        Some(json!({"Name": "web", "ID": "web", "Port": 1,
                    "Connect": {"SidecarService": {"Port": free_port(), "Address": "127.0.0.1",
                        "Proxy": {"Upstreams": [{"DestinationName": "billing", "LocalBindPort": 0}]}}}})),
    )
    .await;
    assert_eq!(st, 200, "{text}");
    let web = crate::proxy::connect_proxy(&a, &["-sidecar-for", "web"]).await;
    let upstream = web.upstream("billing");

    // web -> its sidecar -> mTLS -> the gateway (as billing) -> TLS -> billing.
    eventually(
        "an echo from outside the mesh",
        Duration::from_secs(20),
        || async { crate::proxy::roundtrip(upstream, b"invoice").await.ok() },
    )
    .await;
    let mut live = crate::proxy::live_stream(upstream).await;
    // The gateway enforces billing's intentions, live.
    let (st, text) = call(
        Method::PUT,
        &a,
        "/v1/connect/intentions/exact?source=web&destination=billing",
        Some(MANAGEMENT),
        Some(json!({"Action": "deny"})),
    )
    .await;
    assert_eq!(st, 200, "{text}");
    crate::proxy::expect_cut(&mut live, "web => billing denied at the gateway").await;
    eventually(
        "new connections refused",
        Duration::from_secs(10),
        || async {
            crate::proxy::roundtrip(upstream, b"again")
                .await
                .is_err()
                .then_some(())
        },
    )
    .await;
}

/// `connect { managed_gateways = true }`: a gateway declared in the
/// agent's config files runs inside the agent, no second command; its
/// entry's change applies live, and removing the declaration stops it.
#[tokio::test]
async fn the_agent_runs_a_gateway_its_config_files_declare() {
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("mesh.d");
    std::fs::create_dir_all(&conf).unwrap();
    let port = free_port();
    let declared = |host: &str| {
        format!(
            r#"connect {{
  managed_gateways = true
}}

service {{
  name    = "edge"
  kind    = "ingress-gateway"
  address = "127.0.0.1"
}}

config_entry {{
  kind     = "service-defaults"
  name     = "web"
  protocol = "http"
}}

config_entry {{
  kind = "ingress-gateway"
  name = "edge"
  listeners = [{{
    port     = {port}
    protocol = "http"
    services = [{{ name = "web", hosts = ["{host}"] }}]
  }}]
}}
"#
        )
    };
    std::fs::write(conf.join("edge.hcl"), declared("web.example.test")).unwrap();
    let a = gateway_agent(
        "managed-gw",
        dir.path(),
        &[format!("-config-dir={}", conf.display())],
    )
    .await;
    let _web = http_service(&a, "web").await;
    let url = format!("http://127.0.0.1:{port}/m");
    let through = |host: &'static str| {
        let url = url.clone();
        async move {
            let (code, body) = curl(&["-H", &format!("Host: {host}"), &url]).await;
            (code == "200" && body == "web /m").then_some(())
        }
    };
    eventually(
        "the managed gateway routes",
        Duration::from_secs(20),
        || through("web.example.test"),
    )
    .await;
    // A new host in the file applies without a restart.
    let tmp = conf.join(".edge.hcl.tmp");
    std::fs::write(&tmp, declared("www.example.test")).unwrap();
    std::fs::rename(&tmp, conf.join("edge.hcl")).unwrap();
    eventually("the new host routes", Duration::from_secs(20), || {
        through("www.example.test")
    })
    .await;
    // The service gone from the files: the agent stops its gateway.
    std::fs::write(&tmp, "connect {\n  managed_gateways = true\n}\n").unwrap();
    std::fs::rename(&tmp, conf.join("edge.hcl")).unwrap();
    eventually("the gateway stopped", Duration::from_secs(20), || async {
        TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
            .then_some(())
    })
    .await;
}
