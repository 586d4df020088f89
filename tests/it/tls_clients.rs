//! The agents' TLS clients: a client agent that gets its RPC certificate
//! by auto_encrypt and follows a root rotation, and Envoy configured over
//! the gRPC TLS port.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use mesh_testkit::{eventually, AgentSpec, TestAgent, TestCluster};
use rustls::pki_types::ServerName;

use crate::acl::MANAGEMENT;
use crate::tls::{agent_config, client_tls, gossip_key, kv_put, raft_call, Pki};

#[tokio::test]
async fn a_client_agent_gets_its_certificate_by_auto_encrypt_and_follows_a_root_rotation() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(&dir.path().join("pki"));
    let key = gossip_key();
    let configs: Vec<PathBuf> = (0..3)
        .map(|i| {
            let name = format!("s{i}");
            let pair = pki.cert(&["-server", "-node", &name]);
            let path = agent_config(&pki.dir, &name, &pki.ca, &pair, true);
            let mut text = std::fs::read_to_string(&path).unwrap();
            text.push_str("auto_encrypt {\n  allow_tls = true\n}\n");
            std::fs::write(&path, text).unwrap();
            path
        })
        .collect();
    let mut cluster = TestCluster::start_with(3, |i, spec| {
        spec.encrypt = Some(key.clone());
        spec.extra = vec![
            format!("-config-file={}", configs[i].display()),
            "-https-port=0".into(),
        ];
    })
    .await
    .unwrap();
    // A caller without a certificate gets through the handshake (to ask
    // for one) and can do nothing else.
    let rpc = cluster.agents[0].rpc.unwrap().to_string();
    for which in ["Propose", "Vote", "AppendEntries"] {
        assert_eq!(
            raft_call(&rpc, Some(client_tls(&pki.ca, None)), which).await,
            Some(tonic::Code::PermissionDenied),
            "{which} without a certificate"
        );
    }
    // The client holds only the servers' CA: no certificate of its own.
    let client_config = pki.dir.join("c0.hcl");
    std::fs::write(
        &client_config,
        format!(
            r#"
acl {{
  enabled = true
  default_policy = "deny"
  tokens {{
    agent = "{MANAGEMENT}"
  }}
}}
tls {{
  defaults {{
    ca_file = "{ca}"
    verify_outgoing = true
  }}
  internal_rpc {{
    verify_server_hostname = true
  }}
}}
auto_encrypt {{
  tls = true
}}
"#,
            ca = pki.ca.display()
        ),
    )
    .unwrap();
    let mut spec = AgentSpec::client("c0");
    spec.encrypt = Some(key.clone());
    spec.extra = vec![format!("-config-file={}", client_config.display())];
    cluster.add(spec).await.unwrap();
    let http = crate::http();
    let client_base = format!("http://{}", cluster.agents[3].http);
    let client_log = cluster.agents[3].log.clone();
    let signed = |log: &str| {
        log.lines()
            .filter(|l| l.contains("got this agent's certificate"))
            .count()
    };
    eventually(
        "the client's certificate",
        Duration::from_secs(30),
        || async {
            let log = std::fs::read_to_string(&client_log).ok()?;
            (signed(&log) >= 1).then_some(())
        },
    )
    .await;
    // With it, the client's writes reach the servers (RPC) and its
    // forwarded requests go over HTTPS, whose servers verify callers.
    eventually(
        "a write through the client agent",
        Duration::from_secs(30),
        || async {
            kv_put(&http, &client_base, "ae/one", "1")
                .await
                .then_some(())
        },
    )
    .await;
    eventually("c0 in the catalog", Duration::from_secs(20), || async {
        let v: serde_json::Value = http
            .get(format!(
                "http://{}/v1/catalog/nodes",
                cluster.agents[0].http
            ))
            .header("x-consul-token", MANAGEMENT)
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        v.as_array()?
            .iter()
            .any(|n| n["Node"] == "c0")
            .then_some(())
    })
    .await;

    // Rotate the Connect CA and retire the old root: the client gets a
    // certificate from the new root and carries on.
    let server = cluster.agents[0].url("/");
    let old_root = fetch_roots(&http, &server).await["ActiveRootID"].clone();
    let r = http
        .put(format!("{server}v1/connect/ca/configuration"))
        .header("x-consul-token", MANAGEMENT)
        .json(&serde_json::json!({
            "Provider": "consul",
            "Config": {"PrivateKeyType": "ec", "PrivateKeyBits": 384},
            "RotationPendingPeriod": "1s",
            "RotationSpreadWindow": "1s"
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    let new_root = eventually("the new root active", Duration::from_secs(30), || async {
        let v = fetch_roots(&http, &server).await;
        (v["ActiveRootID"] != old_root && v["ActiveRootID"] != "")
            .then_some(v["ActiveRootID"].clone())
    })
    .await;
    let r = http
        .post(format!("{server}v1/connect/ca/rotation/retire"))
        .header("x-consul-token", MANAGEMENT)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    let new_root = new_root.as_str().unwrap().to_string();
    eventually(
        "the client re-signed by the new root",
        Duration::from_secs(30),
        || async {
            let log = std::fs::read_to_string(&client_log).ok()?;
            log.lines()
                .any(|l| l.contains("got this agent's certificate") && l.contains(&new_root))
                .then_some(())
        },
    )
    .await;
    eventually(
        "a write after the rotation",
        Duration::from_secs(30),
        || async {
            kv_put(&http, &client_base, "ae/two", "2")
                .await
                .then_some(())
        },
    )
    .await;
}

async fn fetch_roots(c: &reqwest::Client, base: &str) -> serde_json::Value {
    c.get(format!("{base}v1/connect/ca/roots"))
        .header("x-consul-token", MANAGEMENT)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// The first answer of an ADS stream for `proxy`'s listeners from the gRPC
/// TLS port at `addr`, dialed with `tls` (plaintext when none), or why
/// there was none.
async fn ads_over(
    addr: std::net::SocketAddr,
    tls: Option<Arc<rustls::ClientConfig>>,
    proxy: &str,
) -> Result<usize, String> {
    use envoy_types::pb::envoy::config::core::v3::Node;
    use envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_client::AggregatedDiscoveryServiceClient;
    use envoy_types::pb::envoy::service::discovery::v3::DiscoveryRequest;
    let endpoint = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect_timeout(Duration::from_secs(5));
    let channel = match tls {
        None => endpoint.connect().await,
        Some(config) => {
            endpoint
                .connect_with_connector(tower::service_fn(move |_: tonic::codegen::http::Uri| {
                    let config = config.clone();
                    async move {
                        let tcp = tokio::net::TcpStream::connect(addr).await?;
                        let name = ServerName::try_from("server.dc1.consul").unwrap();
                        let tls = tokio_rustls::TlsConnector::from(config)
                            .connect(name, tcp)
                            .await?;
                        Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(tls))
                    }
                }))
                .await
        }
    }
    .map_err(|e| format!("connect: {e:?}"))?;
    let mut client = AggregatedDiscoveryServiceClient::new(channel);
    let first = DiscoveryRequest {
        node: Some(Node {
            id: proxy.into(),
            ..Default::default()
        }),
        type_url: crate::envoy::LISTENER_TYPE.into(),
        ..Default::default()
    };
    use tokio_stream::StreamExt;
    let requests = tokio_stream::iter([first]).chain(tokio_stream::pending());
    let answer = async {
        let mut stream = client
            .stream_aggregated_resources(requests)
            .await?
            .into_inner();
        stream.message().await
    };
    match tokio::time::timeout(Duration::from_secs(20), answer).await {
        Ok(Ok(Some(reply))) => Ok(reply.resources.len()),
        Ok(Ok(None)) => Err("the stream ended".into()),
        Ok(Err(status)) => Err(format!("{status:?}")),
        Err(_) => Err("no answer within 20 s".into()),
    }
}

#[tokio::test]
async fn envoy_gets_its_config_over_the_grpc_tls_port_with_a_client_certificate() {
    use crate::envoy::{envoy_bin, register, sidecar, Envoy};
    use crate::proxy::{echo_server, free_port, roundtrip};
    let envoy = envoy_bin().await;
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(&dir.path().join("pki"));
    let own = pki.cert(&["-server"]);
    let client = pki.cert(&["-client"]);
    let config = dir.path().join("grpc.hcl");
    std::fs::write(
        &config,
        format!(
            "tls {{\n  grpc {{\n    ca_file = \"{}\"\n    cert_file = \"{}\"\n    key_file = \"{}\"\n    verify_incoming = true\n  }}\n}}\n",
            pki.ca.display(),
            own.cert.display(),
            own.key.display()
        ),
    )
    .unwrap();
    let mut spec = AgentSpec::server("xds", 1);
    // xDS only over TLS: no plaintext gRPC port.
    spec.extra = vec![
        "-dev".into(),
        format!("-config-file={}", config.display()),
        "-grpc-tls-port=0".into(),
    ];
    let a = TestAgent::start(spec, &dir.path().join("data"))
        .await
        .unwrap();
    let grpc_tls = a.grpc_tls.expect("the ready line names the gRPC TLS port");
    assert_eq!(a.grpc, None);

    let db_app = echo_server().await;
    register(
        &a,
        sidecar(
            "db",
            "db",
            db_app.port(),
            free_port(),
            serde_json::json!([]),
        ),
    )
    .await;
    let web_db = free_port();
    let upstreams = serde_json::json!([{"DestinationName": "db", "LocalBindPort": web_db}]);
    register(&a, sidecar("web", "web", 1, free_port(), upstreams)).await;

    // The port takes TLS from callers with a certificate from the CA only.
    assert!(ads_over(grpc_tls, None, "db-sidecar-proxy").await.is_err());
    assert!(ads_over(
        grpc_tls,
        Some(client_tls(&pki.ca, None)),
        "db-sidecar-proxy"
    )
    .await
    .is_err());
    let other = Pki::new(&dir.path().join("other"));
    let stranger = other.cert(&["-client"]);
    assert!(ads_over(
        grpc_tls,
        Some(client_tls(&pki.ca, Some(&stranger))),
        "db-sidecar-proxy"
    )
    .await
    .is_err());
    let listeners = ads_over(
        grpc_tls,
        Some(client_tls(&pki.ca, Some(&client))),
        "db-sidecar-proxy",
    )
    .await
    .unwrap();
    assert!(listeners >= 1, "db's public listener");

    // Envoy, started as a user would: the CLI finds the TLS port itself.
    let (ca, cert, key) = (
        pki.ca.to_str().unwrap(),
        client.cert.to_str().unwrap(),
        client.key.to_str().unwrap(),
    );
    let mut envoys = Vec::new();
    for name in ["db", "web"] {
        let args = [
            "-sidecar-for",
            name,
            // The CA of the HTTP client serves the gRPC TLS port too.
            "-ca-file",
            ca,
            "-client-cert",
            cert,
            "-client-key",
            key,
        ];
        envoys.push(Envoy::run(&a, &envoy, name, &args, dir.path()).await);
    }
    let up: std::net::SocketAddr = format!("127.0.0.1:{web_db}").parse().unwrap();
    eventually(
        "echo through Envoys configured over TLS",
        Duration::from_secs(30),
        || async { roundtrip(up, b"xds over tls").await.ok() },
    )
    .await;
}
