//! Proxyless gRPC: grpcio (PyPI) clients with an `xds:///greeter` target,
//! bootstrapped by `mesh connect grpc-bootstrap`, resolve through mesh's
//! xDS server to the healthy instances of a service and follow them as
//! they come and go; on a single server and on a cluster's client agent.

use std::collections::{BTreeSet, VecDeque};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::envoy::config::listener::v3::Listener;
use envoy_types::pb::envoy::service::discovery::v3::DiscoveryRequest;
use mesh_testkit::{mesh_bin, AgentSpec, TestAgent};
use prost::Message;
use reqwest::Method;
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout, Command};

use crate::acl::{acl_config, call, MANAGEMENT};
use crate::envoy::{open, open_with, register, xds_agent, xds_status, LISTENER_TYPE};
use crate::proxy::{free_port, register_on_client};

fn compat(file: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("compat")
        .join(file)
}

/// grpcio's python, installed on first use.
async fn python() -> PathBuf {
    let out = Command::new("bash")
        .arg(compat("grpc.sh"))
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "grpcio setup: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
}

/// A process of `grpc_greeter.py` whose output is read line by line;
/// killed when dropped.
struct Greeter {
    _child: Child,
    lines: Lines<BufReader<ChildStdout>>,
}

impl Greeter {
    fn spawn(python: &Path, args: &[&str], env: Option<(&str, &Path)>) -> Greeter {
        let mut command = Command::new(python);
        command
            .arg(compat("grpc_greeter.py"))
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true);
        if let Some((key, value)) = env {
            command.env(key, value);
        }
        let mut child = command.spawn().expect("python starts");
        let lines = BufReader::new(child.stdout.take().unwrap()).lines();
        Greeter {
            _child: child,
            lines,
        }
    }

    /// A server answering every call with `name`, once it listens.
    async fn server(python: &Path, port: u16, name: &str) -> Greeter {
        let mut g = Self::spawn(python, &["server", &port.to_string(), name], None);
        let first = tokio::time::timeout(Duration::from_secs(30), g.lines.next_line())
            .await
            .expect("the gRPC server starts within 30 s")
            .unwrap();
        assert_eq!(first.as_deref(), Some("ready"));
        g
    }

    /// A client calling `xds:///greeter` over and over.
    fn client(python: &Path, bootstrap: &Path) -> Greeter {
        Self::spawn(
            python,
            &["client", "xds:///greeter"],
            Some(("GRPC_XDS_BOOTSTRAP", bootstrap)),
        )
    }

    /// Reads the client's answers until `window` in a row are exactly the
    /// answers in `want` (each seen at least once, no other), within 30 s.
    async fn answers(&mut self, want: &[&str], window: usize) {
        let want: BTreeSet<String> = want.iter().map(|w| w.to_string()).collect();
        let mut last = VecDeque::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let line = tokio::time::timeout_at(deadline, self.lines.next_line())
                .await
                .unwrap_or_else(|_| {
                    panic!("no {window} answers in a row from {want:?} within 30 s; last: {last:?}")
                })
                .unwrap()
                .expect("the client runs");
            last.push_back(line);
            if last.len() > window {
                last.pop_front();
            }
            if last.len() == window && last.iter().cloned().collect::<BTreeSet<_>>() == want {
                return;
            }
        }
    }
}

/// Writes the bootstrap `mesh connect grpc-bootstrap` prints for `agent`.
async fn bootstrap(agent: &TestAgent, dir: &Path) -> PathBuf {
    let out = Command::new(mesh_bin())
        .args(["connect", "grpc-bootstrap", "-node-id", "batch-job"])
        .args(["-http-addr", &agent.http.to_string(), "-token", MANAGEMENT])
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let path = dir.join(format!("grpc-bootstrap-{}.json", agent.http.port()));
    std::fs::write(&path, &out.stdout).unwrap();
    path
}

fn instance(id: &str, port: u16) -> Value {
    json!({"Name": "greeter", "ID": id, "Port": port, "Address": "127.0.0.1"})
}

async fn agent_call(a: &TestAgent, method: Method, path: &str) {
    let (st, text) = call(method, a, path, Some(MANAGEMENT), None).await;
    assert_eq!(st, 200, "{path}: {text}");
}

#[tokio::test]
async fn a_proxyless_grpc_client_balances_across_healthy_instances_and_follows_them() {
    let python = python().await;
    let dir = tempfile::tempdir().unwrap();
    let a = xds_agent(&dir.path().join("data"), &[]).await;
    let (port_a, port_b) = (free_port(), free_port());
    let _a = Greeter::server(&python, port_a, "a").await;
    let _b = Greeter::server(&python, port_b, "b").await;
    register(&a, instance("g1", port_a)).await;
    register(&a, instance("g2", port_b)).await;

    let mut client = Greeter::client(&python, &bootstrap(&a, dir.path()).await);
    client.answers(&["ok a", "ok b"], 20).await;
    // The stream is visible in the agent's xDS status, with its ACKs.
    let status = xds_status(&a, "batch-job").await;
    assert_eq!(status["Streams"], 1, "{status}");
    let acked = status["Types"][LISTENER_TYPE]["AckedVersion"].as_str();
    assert!(acked.is_some_and(|v| !v.is_empty()), "{status}");

    agent_call(&a, Method::PUT, "/v1/agent/service/deregister/g2").await;
    client.answers(&["ok a"], 30).await;

    // A critical instance is not called; once it passes, it is.
    let mut critical = instance("g3", port_b);
    critical["Check"] = json!({"TTL": "60s", "Status": "critical"});
    register(&a, critical).await;
    client.answers(&["ok a"], 30).await;
    agent_call(&a, Method::PUT, "/v1/agent/check/pass/service:g3").await;
    client.answers(&["ok a", "ok b"], 20).await;
}

fn named(names: &[&str]) -> DiscoveryRequest {
    DiscoveryRequest {
        type_url: LISTENER_TYPE.into(),
        node: Some(Node {
            id: "batch-job".into(),
            user_agent_name: "gRPC Python".into(),
            ..Default::default()
        }),
        resource_names: names.iter().map(|n| n.to_string()).collect(),
        ..Default::default()
    }
}

#[tokio::test]
async fn proxyless_streams_need_service_read_and_bound_what_they_follow() {
    let dir = tempfile::tempdir().unwrap();
    let conf = acl_config(dir.path());
    let a = xds_agent(
        &dir.path().join("data"),
        &[format!("-config-file={}", conf.display())],
    )
    .await;
    let grpc = a.grpc.expect("the agent serves gRPC");
    register(&a, instance("g1", free_port())).await;

    let refused = open(grpc, None, named(&["greeter"]))
        .await
        .expect_err("no token");
    assert_eq!(refused.code(), tonic::Code::PermissionDenied, "{refused}");
    assert!(refused.message().contains("service:read"), "{refused}");

    let rules = "service \"greeter\" { policy = \"read\" }";
    let reader = crate::acl::token_with_policy(&a, "greeter-read", rules).await;

    // Readable: served, as a bearer token too (gRPC call credentials).
    let bearer = [("authorization", format!("Bearer {reader}"))];
    let (_tx, listeners, _stream) = open_with(grpc, &bearer, named(&["greeter"]))
        .await
        .expect("served");
    let listener = Listener::decode(listeners.resources[0].value.as_slice()).unwrap();
    assert_eq!(listener.name, "greeter");
    assert!(listener.api_listener.is_some(), "{listener:?}");

    // Another service with the same token: refused, and named.
    let refused = open(grpc, Some(&reader), named(&["greeter", "billing"]))
        .await
        .expect_err("no read on billing");
    assert_eq!(refused.code(), tonic::Code::PermissionDenied, "{refused}");
    assert!(refused.message().contains("billing"), "{refused}");

    // Past the named bound of followed services: refused, nothing watched.
    let many: Vec<String> = (0..=mesh_xds::MAX_FOLLOWED_SERVICES)
        .map(|i| format!("svc-{i}"))
        .collect();
    let many: Vec<&str> = many.iter().map(String::as_str).collect();
    let refused = open(grpc, Some(MANAGEMENT), named(&many))
        .await
        .expect_err("too many");
    assert_eq!(refused.code(), tonic::Code::ResourceExhausted, "{refused}");
    assert!(
        refused.message().contains("MAX_FOLLOWED_SERVICES"),
        "{refused}"
    );

    // Envoy with an unknown ID is still told its proxy does not exist.
    let mut envoy = named(&["greeter"]);
    envoy.node.as_mut().unwrap().user_agent_name = "envoy".into();
    let unknown = open(grpc, Some(MANAGEMENT), envoy)
        .await
        .expect_err("unknown proxy");
    assert_eq!(unknown.code(), tonic::Code::NotFound, "{unknown}");
}

#[tokio::test]
async fn a_proxyless_client_of_a_client_agent_follows_the_servers_catalog() {
    let python = python().await;
    let mut cluster = mesh_testkit::TestCluster::start(3).await.unwrap();
    let mut spec = AgentSpec::client("batch");
    spec.grpc = true;
    cluster.add(spec).await.unwrap();
    let (server, client_agent) = (&cluster.agents[0], &cluster.agents[3]);
    let (port_a, port_b) = (free_port(), free_port());
    let _a = Greeter::server(&python, port_a, "a").await;
    let _b = Greeter::server(&python, port_b, "b").await;
    register_on_client(client_agent, instance("g1", port_a)).await;
    register_on_client(server, instance("g2", port_b)).await;

    let dir = cluster.dir.path().to_path_buf();
    let mut client = Greeter::client(&python, &bootstrap(client_agent, &dir).await);
    client.answers(&["ok a", "ok b"], 20).await;
    let r = crate::http()
        .put(server.url("/v1/agent/service/deregister/g2"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    client.answers(&["ok a"], 30).await;
}
