//! Trust on every port: certificates made with `mesh tls` as a user makes
//! them, a 3-server cluster whose RPC port takes only mTLS from callers
//! that prove who they are, voters admitted by proof, HTTPS with client
//! verification, a client agent talking to servers over TLS, and
//! certificates replaced on disk without a restart.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use mesh_testkit::{eventually, mesh_bin, AgentSpec, TestAgent, TestCluster};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};

use crate::acl::MANAGEMENT;

/// A certificate and its key, as `mesh tls` saved them.
#[derive(Clone, Debug)]
pub(crate) struct Pair {
    pub(crate) cert: PathBuf,
    pub(crate) key: PathBuf,
}

/// Runs `mesh tls ARGS` in `dir`; the files it says it saved.
fn mesh_tls(dir: &Path, args: &[&str]) -> Vec<PathBuf> {
    let out = std::process::Command::new(mesh_bin())
        .arg("tls")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "mesh tls {args:?}: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
        .lines()
        .filter_map(|l| l.strip_prefix("==> Saved "))
        .map(|name| dir.join(name))
        .collect()
}

/// The agents' CA and a way to make certificates under it.
pub(crate) struct Pki {
    pub(crate) dir: PathBuf,
    pub(crate) ca: PathBuf,
}

impl Pki {
    pub(crate) fn new(dir: &Path) -> Pki {
        std::fs::create_dir_all(dir).unwrap();
        let saved = mesh_tls(dir, &["ca", "create"]);
        assert_eq!(
            saved,
            vec![
                dir.join("consul-agent-ca.pem"),
                dir.join("consul-agent-ca-key.pem")
            ]
        );
        Pki {
            dir: dir.to_path_buf(),
            ca: saved[0].clone(),
        }
    }

    pub(crate) fn cert(&self, args: &[&str]) -> Pair {
        let mut full = vec!["cert", "create"];
        full.extend_from_slice(args);
        let saved = mesh_tls(&self.dir, &full);
        Pair {
            cert: saved[0].clone(),
            key: saved[1].clone(),
        }
    }
}

/// An agent config with ACLs, gossip encryption and TLS on every port.
pub(crate) fn agent_config(
    dir: &Path,
    name: &str,
    ca: &Path,
    own: &Pair,
    verify_incoming: bool,
) -> PathBuf {
    let path = dir.join(format!("{name}.hcl"));
    std::fs::write(
        &path,
        format!(
            r#"
acl {{
  enabled = true
  default_policy = "deny"
  tokens {{
    initial_management = "{MANAGEMENT}"
    agent = "{MANAGEMENT}"
  }}
}}
tls {{
  defaults {{
    ca_file = "{ca}"
    cert_file = "{cert}"
    key_file = "{key}"
    verify_incoming = {verify_incoming}
    verify_outgoing = true
  }}
  internal_rpc {{
    verify_server_hostname = true
  }}
}}
"#,
            ca = ca.display(),
            cert = own.cert.display(),
            key = own.key.display(),
        ),
    )
    .unwrap();
    path
}

/// A gossip key, as `mesh keygen` prints it.
pub(crate) fn gossip_key() -> String {
    let out = std::process::Command::new(mesh_bin())
        .arg("keygen")
        .output()
        .unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// Three TLS servers (HTTPS too), each with its own server certificate.
async fn tls_cluster(pki: &Pki, key: &str) -> TestCluster {
    let configs: Vec<PathBuf> = (0..3)
        .map(|i| {
            let name = format!("s{i}");
            let pair = pki.cert(&["-server", "-node", &name]);
            agent_config(&pki.dir, &name, &pki.ca, &pair, true)
        })
        .collect();
    TestCluster::start_with(3, |i, spec| {
        spec.encrypt = Some(key.to_string());
        spec.extra = vec![
            format!("-config-file={}", configs[i].display()),
            "-https-port=0".into(),
        ];
    })
    .await
    .unwrap()
}

/// A rustls client config trusting `ca`, presenting `own` when given.
pub(crate) fn client_tls(ca: &Path, own: Option<&Pair>) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots);
    Arc::new(match own {
        None => builder.with_no_client_auth(),
        Some(pair) => builder
            .with_client_auth_cert(
                CertificateDer::pem_file_iter(&pair.cert)
                    .unwrap()
                    .map(Result::unwrap)
                    .collect(),
                PrivateKeyDer::from_pem_file(&pair.key).unwrap(),
            )
            .unwrap(),
    })
}

/// An HTTP client for the agents' HTTPS API.
fn https_client(ca: &Path, own: Option<&Pair>) -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .tls_backend_preconfigured((*client_tls(ca, own)).clone())
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

pub(crate) async fn kv_put(c: &reqwest::Client, base: &str, key: &str, value: &str) -> bool {
    let r = c
        .put(format!("{base}/v1/kv/{key}"))
        .header("x-consul-token", MANAGEMENT)
        .body(value.to_string())
        .send()
        .await;
    matches!(r, Ok(r) if r.status().is_success())
}

async fn kv_get(c: &reqwest::Client, base: &str, key: &str) -> Option<String> {
    let r = c
        .get(format!("{base}/v1/kv/{key}?raw&stale"))
        .header("x-consul-token", MANAGEMENT)
        .send()
        .await
        .ok()?;
    r.status().is_success().then_some(())?;
    r.text().await.ok()
}

#[tokio::test]
async fn a_tls_cluster_with_a_client_agent_replicates_fails_over_and_verifies_https_callers() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(&dir.path().join("pki"));
    let key = gossip_key();
    let mut cluster = tls_cluster(&pki, &key).await;

    // A client agent with a client certificate: its writes reach the
    // servers over the RPC port and its forwarded requests over HTTPS.
    let client_pair = pki.cert(&["-client"]);
    let client_config = agent_config(&pki.dir, "c0", &pki.ca, &client_pair, false);
    let mut spec = AgentSpec::client("c0");
    spec.encrypt = Some(key.clone());
    spec.extra = vec![format!("-config-file={}", client_config.display())];
    cluster.add(spec).await.unwrap();
    let http = crate::http();
    let client_base = format!("http://{}", cluster.agents[3].http);
    eventually(
        "a write through the client agent",
        Duration::from_secs(30),
        || async {
            kv_put(&http, &client_base, "tls/one", "1")
                .await
                .then_some(())
        },
    )
    .await;
    for server in &cluster.agents[..3] {
        let base = format!("http://{}", server.http);
        eventually(
            "the write on every server",
            Duration::from_secs(10),
            || async {
                (kv_get(&http, &base, "tls/one").await.as_deref() == Some("1")).then_some(())
            },
        )
        .await;
    }
    // The client agent registered itself through the RPC port.
    let nodes: serde_json::Value =
        eventually("c0 in the catalog", Duration::from_secs(20), || async {
            let r = http
                .get(format!(
                    "http://{}/v1/catalog/nodes",
                    cluster.agents[0].http
                ))
                .header("x-consul-token", MANAGEMENT)
                .send()
                .await
                .ok()?;
            let v: serde_json::Value = r.json().await.ok()?;
            v.as_array()?.iter().any(|n| n["Node"] == "c0").then_some(v)
        })
        .await;
    assert_eq!(nodes.as_array().unwrap().len(), 4, "{nodes}");

    // HTTPS verifies its callers: no certificate, no answer; the CLI with
    // a `-cli` certificate gets one.
    let https = format!("https://{}", cluster.agents[0].https.unwrap());
    let bare = https_client(&pki.ca, None);
    assert!(
        bare.get(format!("{https}/v1/status/leader"))
            .send()
            .await
            .is_err(),
        "an HTTPS caller without a certificate is refused"
    );
    let cli = pki.cert(&["-cli"]);
    let out = std::process::Command::new(mesh_bin())
        .args([
            "kv",
            "get",
            &format!("-http-addr={https}"),
            &format!("-ca-file={}", pki.ca.display()),
            &format!("-client-cert={}", cli.cert.display()),
            &format!("-client-key={}", cli.key.display()),
            &format!("-token={MANAGEMENT}"),
            "tls/one",
        ])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "1",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // kill -9 of the leader: the others elect one over mTLS and the client
    // agent's writes carry on.
    let leader = cluster.wait_for_leader(Duration::from_secs(10)).await;
    cluster.agents[leader].kill().await;
    cluster
        .wait_for_new_leader(leader, Duration::from_secs(30))
        .await;
    eventually(
        "a write after failover",
        Duration::from_secs(30),
        || async {
            kv_put(&http, &client_base, "tls/two", "2")
                .await
                .then_some(())
        },
    )
    .await;
    for (i, server) in cluster.agents[..3].iter().enumerate() {
        if i == leader {
            continue;
        }
        let base = format!("http://{}", server.http);
        eventually(
            "the second write replicated",
            Duration::from_secs(10),
            || async {
                (kv_get(&http, &base, "tls/two").await.as_deref() == Some("2")).then_some(())
            },
        )
        .await;
    }
}

/// A client of one server's RPC port, dialing with `tls` (plaintext when none).
struct Dialer(Option<Arc<rustls::ClientConfig>>);

impl mesh_raft::RpcTls for Dialer {
    fn dial(&self) -> Option<Arc<rustls::ClientConfig>> {
        self.0.clone()
    }
    fn proof(&self) -> Option<Arc<rustls::ClientConfig>> {
        None
    }
    fn server_name(&self) -> String {
        "server.dc1.consul".into()
    }
}

/// What the RPC port answers a Raft message from `tls`'s caller: the gRPC
/// code, or `None` when the connection itself was refused.
pub(crate) async fn raft_call(
    addr: &str,
    tls: Option<Arc<rustls::ClientConfig>>,
    which: &str,
) -> Option<tonic::Code> {
    let network = mesh_raft::Network::default();
    if tls.is_some() {
        network.set_tls(Arc::new(Dialer(tls)));
    }
    let mut client = network.client(addr).unwrap();
    // Not a valid message: were it decoded, the answer would be InvalidArgument.
    let request = || {
        let mut r = tonic::Request::new(mesh_proto::raft::Payload {
            data: vec![0xff; 16],
        });
        r.set_timeout(Duration::from_secs(5));
        r
    };
    let result = match which {
        "AppendEntries" => client.append_entries(request()).await,
        "Vote" => client.vote(request()).await,
        "InstallSnapshot" => client.install_snapshot(request()).await,
        "Propose" => client.propose(request()).await,
        _ => client.read_index(request()).await,
    };
    match result {
        Ok(_) => Some(tonic::Code::Ok),
        // The connection was closed or never made: no answer at all.
        Err(status) if is_transport(&status) => None,
        Err(status) => Some(status.code()),
    }
}

/// Whether the call failed on the connection rather than being answered.
fn is_transport(status: &tonic::Status) -> bool {
    use std::error::Error as _;
    status.code() == tonic::Code::Unavailable
        || status
            .source()
            .is_some_and(|s| s.downcast_ref::<tonic::transport::Error>().is_some())
}

/// The certificate an agent's HTTPS port presents now.
async fn served_certificate(addr: std::net::SocketAddr, ca: &Path, own: &Pair) -> Option<Vec<u8>> {
    let tcp = tokio::net::TcpStream::connect(addr).await.ok()?;
    let name = ServerName::try_from("server.dc1.consul").unwrap();
    let stream = tokio_rustls::TlsConnector::from(client_tls(ca, Some(own)))
        .connect(name, tcp)
        .await
        .ok()?;
    Some(stream.get_ref().1.peer_certificates()?.first()?.to_vec())
}

fn der_of(pem: &Path) -> Vec<u8> {
    CertificateDer::from_pem_file(pem).unwrap().to_vec()
}

async fn voters(c: &reqwest::Client, agent: &TestAgent) -> Option<Vec<String>> {
    let v: serde_json::Value = c
        .get(agent.url("/v1/operator/raft/configuration"))
        .header("x-consul-token", MANAGEMENT)
        .send()
        .await
        .ok()?
        .json()
        .await
        .ok()?;
    Some(
        v["Servers"]
            .as_array()?
            .iter()
            .filter(|s| s["Voter"] == true)
            .filter_map(|s| s["Node"].as_str().map(str::to_string))
            .collect(),
    )
}

#[tokio::test]
async fn only_proven_servers_vote_the_rpc_port_refuses_the_unproven_and_certificates_reload() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(&dir.path().join("pki"));
    let key = gossip_key();
    let mut cluster = tls_cluster(&pki, &key).await;
    let http = crate::http();
    let leader = cluster.wait_for_leader(Duration::from_secs(10)).await;
    let rpc = cluster.agents[leader].rpc.unwrap().to_string();

    // Callers that do not prove they are servers get nothing through.
    let client_pair = pki.cert(&["-client"]);
    let other_dir = dir.path().join("other");
    let other = Pki::new(&other_dir);
    let other_server = other.cert(&["-server"]);
    for which in ["AppendEntries", "Vote", "InstallSnapshot", "ReadIndex"] {
        assert_eq!(
            raft_call(&rpc, None, which).await,
            None,
            "{which} in plaintext: the connection is refused"
        );
        assert_eq!(
            raft_call(&rpc, Some(client_tls(&pki.ca, Some(&other_server))), which).await,
            None,
            "{which} with another CA's server certificate: the handshake fails"
        );
        assert_eq!(
            raft_call(&rpc, Some(client_tls(&pki.ca, Some(&client_pair))), which).await,
            Some(tonic::Code::PermissionDenied),
            "{which} with a client certificate: refused before it is read"
        );
    }
    let log = std::fs::read_to_string(&cluster.agents[leader].log).unwrap();
    assert!(log.contains("Raft RPC refused"), "refusals are logged");

    // A member that claims the server role with a client certificate never
    // becomes a voter; a real server that joins after it does.
    let rogue_config = agent_config(&pki.dir, "rogue", &pki.ca, &client_pair, true);
    let mut rogue = AgentSpec::server("rogue", 3);
    rogue.encrypt = Some(key.clone());
    rogue.extra = vec![format!("-config-file={}", rogue_config.display())];
    cluster.add(rogue).await.unwrap();
    eventually(
        "the leader refuses the rogue",
        Duration::from_secs(20),
        || async {
            let log = std::fs::read_to_string(&cluster.agents[leader].log).ok()?;
            log.contains("not admitting a server to raft").then_some(())
        },
    )
    .await;
    let s3_pair = pki.cert(&["-server", "-node", "s3"]);
    let s3_config = agent_config(&pki.dir, "s3", &pki.ca, &s3_pair, true);
    let mut s3 = AgentSpec::server("s3", 3);
    s3.encrypt = Some(key.clone());
    s3.extra = vec![format!("-config-file={}", s3_config.display())];
    cluster.add(s3).await.unwrap();
    let seen = eventually("s3 becomes a voter", Duration::from_secs(30), || async {
        let v = voters(&http, &cluster.agents[leader]).await?;
        v.contains(&"s3".to_string()).then_some(v)
    })
    .await;
    assert!(!seen.contains(&"rogue".to_string()), "{seen:?}");
    assert_eq!(seen.len(), 4, "{seen:?}");

    // A certificate renewed on disk is served to new connections without
    // a restart; a bad file keeps the last good one.
    let s0 = &cluster.agents[0];
    let https = s0.https.unwrap();
    let s0_files = Pair {
        cert: pki.dir.join("dc1-server-consul-0.pem"),
        key: pki.dir.join("dc1-server-consul-0-key.pem"),
    };
    assert_eq!(
        served_certificate(https, &pki.ca, &client_pair).await,
        Some(der_of(&s0_files.cert)),
        "s0 serves its first certificate"
    );
    let renewed = pki.cert(&["-server", "-node", "s0"]);
    std::fs::copy(&renewed.key, &s0_files.key).unwrap();
    std::fs::copy(&renewed.cert, &s0_files.cert).unwrap();
    let new_der = der_of(&renewed.cert);
    eventually(
        "the renewed certificate is served",
        Duration::from_secs(20),
        || async {
            (served_certificate(https, &pki.ca, &client_pair)
                .await
                .as_ref()
                == Some(&new_der))
            .then_some(())
        },
    )
    .await;
    std::fs::write(&s0_files.cert, "not a certificate").unwrap();
    let status: serde_json::Value = eventually(
        "the bad file is refused",
        Duration::from_secs(20),
        || async {
            let v: serde_json::Value = http
                .get(s0.url("/v1/agent/self"))
                .header("x-consul-token", MANAGEMENT)
                .send()
                .await
                .ok()?
                .json()
                .await
                .ok()?;
            let errors = v["ConfigStatus"]["Errors"].as_array()?.clone();
            errors
                .iter()
                .any(|e| {
                    e.as_str()
                        .is_some_and(|e| e.contains("dc1-server-consul-0.pem"))
                })
                .then_some(v)
        },
    )
    .await;
    assert!(
        status["ConfigStatus"]["Errors"][0]
            .as_str()
            .unwrap()
            .contains("keeping the certificates in use"),
        "{status}"
    );
    assert_eq!(
        served_certificate(https, &pki.ca, &client_pair).await,
        Some(new_der),
        "the last good certificate is still served"
    );
    // The cluster still replicates with the renewed certificate.
    let base = format!("http://{}", s0.http);
    eventually(
        "a write after the renewal",
        Duration::from_secs(20),
        || async {
            kv_put(&http, &base, "tls/renewed", "yes")
                .await
                .then_some(())
        },
    )
    .await;
}

/// The fenced blocks of `lang` in `doc`, in order.
fn fenced(doc: &str, lang: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in doc.lines() {
        match (&mut current, line.trim_start()) {
            (None, l) if l == format!("```{lang}") => current = Some(String::new()),
            (Some(block), "```") => {
                blocks.push(std::mem::take(block));
                current = None;
            }
            (Some(block), _) => {
                block.push_str(line);
                block.push('\n');
            }
            _ => {}
        }
    }
    blocks
}

#[tokio::test]
async fn the_set_up_in_docs_tls_md_works_as_written() {
    let doc = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/tls.md"),
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    // The first shell block, each line as a user runs it.
    let setup = &fenced(&doc, "sh")[0];
    for line in setup.lines().filter(|l| !l.trim().is_empty()) {
        let words: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(words[0], "mesh", "{line}");
        let out = std::process::Command::new(mesh_bin())
            .args(&words[1..])
            .current_dir(dir.path())
            .output()
            .unwrap();
        assert!(out.status.success(), "{line}: {out:?}");
    }
    // The config block, with its file names found in that directory.
    let mut config = fenced(&doc, "hcl")[0].clone();
    for name in [
        "consul-agent-ca.pem",
        "dc1-server-consul-0.pem",
        "dc1-server-consul-0-key.pem",
    ] {
        let path = dir.path().join(name);
        assert!(path.exists(), "the set-up wrote {name}");
        config = config.replace(&format!("\"{name}\""), &format!("\"{}\"", path.display()));
    }
    let config_file = dir.path().join("server.hcl");
    std::fs::write(&config_file, config).unwrap();
    let mut spec = AgentSpec::server("docs", 1);
    spec.extra = vec![format!("-config-file={}", config_file.display())];
    let agent = TestAgent::start(spec, &dir.path().join("data"))
        .await
        .unwrap();
    let rpc = agent.rpc.unwrap().to_string();
    // The RPC port takes only TLS now, and only servers may replicate.
    assert_eq!(raft_call(&rpc, None, "Vote").await, None);
    let ca = dir.path().join("consul-agent-ca.pem");
    let cli = Pair {
        cert: mesh_tls(dir.path(), &["cert", "create", "-client"])[0].clone(),
        key: dir.path().join("dc1-client-consul-0-key.pem"),
    };
    assert_eq!(
        raft_call(&rpc, Some(client_tls(&ca, Some(&cli))), "Vote").await,
        Some(tonic::Code::PermissionDenied)
    );
    let log = std::fs::read_to_string(&agent.log).unwrap();
    assert!(
        !log.contains("servers join raft on gossip's word"),
        "TLS is on"
    );
    // The auto_encrypt blocks, server and client, are configs mesh takes.
    let blocks = fenced(&doc, "hcl");
    assert!(
        blocks.len() >= 3,
        "docs/tls.md lost its auto_encrypt blocks"
    );
    for (i, block) in blocks[1..3].iter().enumerate() {
        let file = dir.path().join(format!("auto_encrypt{i}.hcl"));
        let mut text = block.replace("\"consul-agent-ca.pem\"", &format!("\"{}\"", ca.display()));
        let data_dir = dir.path().join("validate-data");
        text = format!("data_dir = \"{}\"\n{text}", data_dir.display());
        if i == 0 {
            // A server's: on top of the TLS it already has.
            let tls = std::fs::read_to_string(&config_file).unwrap();
            text = format!("server = true\n{tls}\n{text}");
        }
        std::fs::write(&file, text).unwrap();
        let mut validate = std::process::Command::new(mesh_bin());
        validate.arg("validate").arg(&file);
        let out = validate.output().unwrap();
        assert!(out.status.success(), "{block}: {out:?}");
    }
}
