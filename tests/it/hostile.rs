//! Hostile input against real agents: a poison proposal on the server RPC
//! port, oversized writes, bodies whose keys differ only in case, and
//! connections that never finish their request.

use std::time::Duration;

use mesh_testkit::{eventually, TestAgent, TestCluster};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::acl::{acl_config, MANAGEMENT};
use crate::http;

/// The shape that was a poison pill before log entries became typed: a
/// batch inside a batch, thousands deep, in a few hundred KB (the old
/// `Command::Batch` was variant 14, holding encoded commands).
fn old_style_nested_batch() -> Vec<u8> {
    let mut bytes = vec![0u8];
    while bytes.len() < 300_000 {
        let mut outer = vec![14u8, 1];
        push_varint(&mut outer, bytes.len());
        outer.extend_from_slice(&bytes);
        bytes = outer;
    }
    bytes
}

fn push_varint(out: &mut Vec<u8>, mut n: usize) {
    while n >= 0x80 {
        out.push((n as u8) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

/// Send `command` bytes as a forwarded proposal, as a peer server would:
/// the reply's first byte is the outcome's kind (0 applied, 2 refused).
async fn raw_propose(rpc: std::net::SocketAddr, command: &[u8], token: Option<&str>) -> Vec<u8> {
    use mesh_proto::raft::raft_client::RaftClient;
    use mesh_proto::raft::Payload;
    let mut client = RaftClient::connect(format!("http://{rpc}"))
        .await
        .expect("RPC port answers")
        .max_decoding_message_size(64 << 20)
        .max_encoding_message_size(64 << 20);
    // The payload is the command as a length-prefixed byte string.
    let mut data = Vec::new();
    push_varint(&mut data, command.len());
    data.extend_from_slice(command);
    let mut req = tonic::Request::new(Payload { data });
    if let Some(t) = token {
        req.metadata_mut()
            .insert("x-consul-token", t.parse().unwrap());
    }
    match client.propose(req).await {
        Ok(reply) => reply.into_inner().data,
        Err(status) => panic!("the RPC itself failed: {status}"),
    }
}

async fn put_key(c: &reqwest::Client, agent: &TestAgent, key: &str, token: Option<&str>) -> bool {
    let mut req = c.put(agent.url(&format!("/v1/kv/{key}"))).body("v");
    if let Some(t) = token {
        req = req.header("X-Consul-Token", t);
    }
    matches!(req.send().await, Ok(r) if r.status() == 200)
}

async fn poison_leaves_the_cluster_running(acl: bool) {
    let dir = tempfile::tempdir().unwrap();
    let conf = acl_config(dir.path());
    let flag = format!("-config-file={}", conf.display());
    let mut cluster = TestCluster::start_with(3, |_, spec| {
        if acl {
            spec.extra.push(flag.clone());
        }
    })
    .await
    .unwrap();
    let token = acl.then_some(MANAGEMENT);
    let c = http();
    let leader = cluster.wait_for_leader(Duration::from_secs(20)).await;
    let follower = (leader + 1) % 3;
    // Bytes that start with no command's tag, then noise.
    let garbage: Vec<u8> = std::iter::once(0x5a)
        .chain((1..4096u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 11) as u8))
        .collect();
    for target in [leader, follower] {
        let rpc = cluster.agents[target].rpc.unwrap();
        for (what, bytes) in [
            ("nested batch", old_style_nested_batch()),
            ("garbage", garbage.clone()),
            ("huge length claim", vec![1, 0xff, 0xff, 0xff, 0xff, 0x0f]),
        ] {
            let reply = raw_propose(rpc, &bytes, token).await;
            assert_eq!(reply.first(), Some(&2), "{what} to s{target}: refused");
            let text = String::from_utf8_lossy(&reply);
            assert!(text.contains("malformed command"), "{what}: {text}");
        }
    }
    // Every server still runs and commits; nothing was appended for the poison.
    for (i, agent) in cluster.agents.iter().enumerate() {
        assert!(agent.is_alive(), "s{i} still runs");
        let key = format!("after/{i}");
        eventually(
            "a write through every server",
            Duration::from_secs(10),
            || async { put_key(&c, agent, &key, token).await.then_some(()) },
        )
        .await;
    }
    // The log replays: a restarted server comes back with every write.
    cluster.agents[follower].restart().await.unwrap();
    let agent = &cluster.agents[follower];
    eventually(
        "the restarted server has caught up",
        Duration::from_secs(20),
        || async {
            let mut req = c.get(agent.url("/v1/kv/after/?keys&stale"));
            if let Some(t) = token {
                req = req.header("X-Consul-Token", t);
            }
            let keys: Vec<String> = req.send().await.ok()?.json().await.ok()?;
            (keys.len() == 3).then_some(())
        },
    )
    .await;
}

#[tokio::test]
async fn a_poison_proposal_on_the_rpc_port_leaves_every_server_running() {
    poison_leaves_the_cluster_running(false).await;
}

#[tokio::test]
async fn a_poison_proposal_is_refused_under_acls_too() {
    poison_leaves_the_cluster_running(true).await;
}

/// One raw HTTP/1.1 exchange: the status line and headers of the answer.
async fn raw_http(addr: std::net::SocketAddr, request: &str) -> String {
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    tcp.write_all(request.as_bytes()).await.unwrap();
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(5), tcp.read(&mut buf))
        .await
        .expect("an answer before the body is sent")
        .unwrap();
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

#[tokio::test]
async fn oversized_writes_are_refused_with_the_limit_they_cross() {
    let dir = tempfile::tempdir().unwrap();
    let agent = crate::dev_agent("big", dir.path()).await;
    let c = http();
    let r = c
        .put(agent.url("/v1/kv/big"))
        .body(vec![b'x'; 600 << 10])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert!(r.text().await.unwrap().contains("kv_max_value_size"));
    // A declared length far over a limit is refused before any body is
    // sent (a modest one is drained first, so ordinary clients get the 413
    // rather than a reset connection: see the JSON bodies below).
    for (path, length, limit) in [
        ("/v1/kv/claimed", 1 << 30, "kv_max_value_size"),
        ("/v1/snapshot", 33 << 20, "raft_max_entry_bytes"),
    ] {
        let answer = raw_http(
            agent.http,
            &format!("PUT {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {length}\r\n\r\n"),
        )
        .await;
        assert!(answer.starts_with("HTTP/1.1 413"), "{path}: {answer}");
        assert!(answer.contains(limit), "{path}: {answer}");
    }
    for path in ["/v1/txn", "/v1/catalog/register"] {
        let r = c
            .put(agent.url(path))
            .body(vec![b' '; 600 << 10])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE, "{path}");
        assert!(
            r.text().await.unwrap().contains("txn_max_req_len"),
            "{path}"
        );
    }
    // Nothing was written; a value at the limit still is.
    let r = c.get(agent.url("/v1/kv/big")).send().await.unwrap();
    assert_eq!(r.status(), 404);
    let r = c
        .put(agent.url("/v1/kv/big"))
        .body(vec![b'x'; 512 << 10])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn concurrent_large_writes_commit_and_replicate() {
    let cluster = TestCluster::start(3).await.unwrap();
    let c = http();
    let leader = cluster.wait_for_leader(Duration::from_secs(20)).await;
    let value = vec![b'v'; 400 << 10];
    let writes = (0..300).map(|i| {
        let (c, value) = (c.clone(), value.clone());
        // Spread over every server: followers forward to the leader.
        let url = cluster.agents[(leader + i) % 3].url(&format!("/v1/kv/large/{i:03}"));
        async move {
            let r = c.put(url).body(value).send().await.unwrap();
            (r.status(), r.text().await.unwrap())
        }
    });
    for (status, text) in futures::future::join_all(writes).await {
        assert_eq!((status, text.trim()), (StatusCode::OK, "true"));
    }
    // 120 MB through Raft with fsync on every server: on a loaded 2-core
    // machine the followers can take more than 30 s to apply it all.
    for (i, agent) in cluster.agents.iter().enumerate() {
        let deadline = std::time::Instant::now() + Duration::from_secs(90);
        let mut held = 0;
        while held != 300 {
            let keys: Option<Vec<String>> =
                crate::try_json(&c, &agent.url("/v1/kv/large/?keys&stale")).await;
            held = keys.map_or(0, |k| k.len());
            if std::time::Instant::now() > deadline {
                // Say where replication stopped, from every server's log.
                let tails: Vec<String> = cluster
                    .agents
                    .iter()
                    .map(|a| {
                        let log = std::fs::read_to_string(&a.log).unwrap_or_default();
                        let lines: Vec<&str> = log.lines().collect();
                        let tail = lines[lines.len().saturating_sub(30)..].join("\n");
                        format!("--- {} ---\n{tail}", a.spec.name)
                    })
                    .collect();
                panic!(
                    "s{i} holds {held} of 300 values after 90 s (leader s{leader})\n{}",
                    tails.join("\n")
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let r = c
            .get(agent.url("/v1/kv/large/299?raw&stale"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.bytes().await.unwrap().len(), 400 << 10);
    }
}

/// One request with a raw body (so a body may hold a key twice).
async fn raw_call(
    agent: &TestAgent,
    method: Method,
    path: &str,
    token: &str,
    body: &str,
) -> (StatusCode, String) {
    let r = http()
        .request(method, agent.url(path))
        .header("X-Consul-Token", token)
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    let status = r.status();
    (status, r.text().await.unwrap())
}

/// A `-dev` agent with ACLs on, default deny, once its management token works.
async fn default_deny_agent(dir: &std::path::Path) -> TestAgent {
    let conf = acl_config(dir);
    let mut spec = mesh_testkit::AgentSpec::server("acl1", 1);
    spec.extra.push("-dev".into());
    spec.extra.push(format!("-config-file={}", conf.display()));
    let agent = TestAgent::start(spec, &dir.join("a")).await.unwrap();
    eventually("ACLs bootstrapped", Duration::from_secs(10), || async {
        let (st, _) = crate::acl::call(
            Method::GET,
            &agent,
            "/v1/acl/tokens",
            Some(MANAGEMENT),
            None,
        )
        .await;
        (st == 200).then_some(())
    })
    .await;
    agent
}

/// Every route whose target is in its body, under default-deny, with the
/// target spelled canonically, in lower case, snake case, and twice.
#[tokio::test]
async fn body_targets_are_checked_in_every_spelling() {
    let dir = tempfile::tempdir().unwrap();
    let agent = default_deny_agent(dir.path()).await;
    let m = Some(MANAGEMENT);
    use crate::acl::call;
    let rules = r#"
        key_prefix "ok/" { policy = "write" }
        node "n1" { policy = "write" }
        service "web" {
          policy = "write"
          intentions = "write"
        }
        service "web-sidecar-proxy" { policy = "write" }
    "#;
    let (st, text) = call(
        Method::PUT,
        &agent,
        "/v1/acl/policy",
        m,
        Some(json!({"Name": "narrow", "Rules": rules})),
    )
    .await;
    assert_eq!(st, 200, "{text}");
    let (st, text) = call(
        Method::PUT,
        &agent,
        "/v1/acl/token",
        m,
        Some(json!({"Policies": [{"Name": "narrow"}]})),
    )
    .await;
    assert_eq!(st, 200, "{text}");
    let token: Value = serde_json::from_str(&text).unwrap();
    let token = token["SecretID"].as_str().unwrap().to_string();
    let v = "dg==";
    // (route, method, denied bodies, duplicate-key body, allowed body)
    let cases: Vec<(&str, Method, Vec<String>, String, String)> = vec![
        (
            "/v1/txn",
            Method::PUT,
            vec![
                format!(r#"[{{"KV":{{"Verb":"set","Key":"no/x","Value":"{v}"}}}}]"#),
                format!(r#"[{{"kv":{{"verb":"set","key":"no/x","value":"{v}"}}}}]"#),
                format!(r#"[{{"kV":{{"VERB":"delete-tree","KEY":"no/"}}}}]"#),
            ],
            format!(r#"[{{"KV":{{"Verb":"set","Key":"ok/x","key":"no/x","Value":"{v}"}}}}]"#),
            format!(r#"[{{"kv":{{"verb":"set","key":"ok/x","value":"{v}"}}}}]"#),
        ),
        (
            "/v1/catalog/register",
            Method::PUT,
            vec![
                r#"{"Node":"n1","Address":"10.0.0.1","Service":{"Service":"db"}}"#.into(),
                r#"{"node":"n1","address":"10.0.0.1","service":{"service":"db"}}"#.into(),
                r#"{"Node":"n1","Address":"10.0.0.1","Service":{"Name":"db"}}"#.into(),
                r#"{"Node":"n1","Address":"10.0.0.1","SkipNodeUpdate":true,"Service":{"Service":"web","Kind":"connect-proxy","Proxy":{"destination_service_name":"db"}}}"#.into(),
                r#"{"node":"n2","skip_node_update":true,"service":{"service":"web"},"check":{"check_id":"c","name":"c"}}"#.into(),
            ],
            r#"{"Node":"n1","Address":"10.0.0.1","Service":{"Service":"web","service":"db"}}"#.into(),
            r#"{"node":"n1","address":"10.0.0.1","service":{"service":"web"}}"#.into(),
        ),
        (
            "/v1/connect/intentions",
            Method::POST,
            vec![
                r#"{"SourceName":"a","DestinationName":"db","Action":"allow"}"#.into(),
                r#"{"sourcename":"a","destinationname":"db","action":"allow"}"#.into(),
                r#"{"source_name":"a","destination_name":"db","action":"allow"}"#.into(),
            ],
            r#"{"SourceName":"a","DestinationName":"web","destination_name":"db","Action":"allow"}"#.into(),
            r#"{"sourcename":"a","destinationname":"web","action":"allow"}"#.into(),
        ),
        (
            "/v1/config",
            Method::PUT,
            vec![
                r#"{"Kind":"service-defaults","Name":"db"}"#.into(),
                r#"{"kind":"service-defaults","name":"db"}"#.into(),
                r#"{"Kind":"service-intentions","name":"db","Sources":[]}"#.into(),
            ],
            r#"{"Kind":"service-defaults","Name":"web","NAME":"db"}"#.into(),
            r#"{"kind":"service-defaults","name":"web"}"#.into(),
        ),
        (
            "/v1/agent/service/register",
            Method::PUT,
            vec![
                r#"{"Name":"db","Port":80}"#.into(),
                r#"{"name":"db","port":80}"#.into(),
                r#"{"Service":"db","Port":80}"#.into(),
                r#"{"Name":"web","Port":80,"Connect":{"SidecarService":{"Name":"db"}}}"#.into(),
                r#"{"Name":"web","Kind":"connect-proxy","Port":80,"Proxy":{"DestinationServiceName":"db"}}"#.into(),
            ],
            r#"{"Name":"web","name":"db","Port":80}"#.into(),
            r#"{"name":"web","port":80,"connect":{"sidecar_service":{}}}"#.into(),
        ),
        (
            "/v1/agent/check/register",
            Method::PUT,
            vec![
                r#"{"Name":"c","TTL":"10s"}"#.into(),
                r#"{"name":"c","ttl":"10s","serviceid":"nope"}"#.into(),
            ],
            r#"{"Name":"c","TTL":"10s","ServiceID":"web","service_id":"db"}"#.into(),
            r#"{"name":"c","ttl":"10s","service_id":"web"}"#.into(),
        ),
        (
            "/v1/agent/connect/authorize",
            Method::POST,
            vec![
                r#"{"Target":"db","ClientCertURI":"spiffe://x/ns/default/dc/dc1/svc/a"}"#.into(),
                r#"{"target":"db","clientcerturi":"spiffe://x/ns/default/dc/dc1/svc/a"}"#.into(),
            ],
            r#"{"Target":"web","target":"db"}"#.into(),
            r#"{"target":"web","client_cert_uri":"spiffe://x/ns/default/dc/dc1/svc/a"}"#.into(),
        ),
    ];
    for (path, method, denied, twice, allowed) in &cases {
        for body in denied {
            let (st, text) = raw_call(&agent, method.clone(), path, &token, body).await;
            assert_eq!(st, 403, "{path} {body}: {text}");
            assert!(text.contains("Permission denied"), "{path} {body}: {text}");
        }
        let (st, text) = raw_call(&agent, method.clone(), path, &token, twice).await;
        assert_eq!(st, 400, "{path} {twice}: {text}");
        assert!(text.contains("duplicate key"), "{path} {twice}: {text}");
        // The positive control: the same token may do what it is allowed.
        let (st, text) = raw_call(&agent, method.clone(), path, &token, allowed).await;
        assert_eq!(st, 200, "{path} {allowed}: {text}");
    }
    // Nothing denied was written: no key under no/, no service or
    // intention or config entry for db.
    let (st, _) = call(Method::GET, &agent, "/v1/kv/no/x", m, None).await;
    assert_eq!(st, 404);
    let (_, text) = call(Method::GET, &agent, "/v1/catalog/service/db", m, None).await;
    assert_eq!(text.trim(), "[]");
    let (st, _) = call(
        Method::GET,
        &agent,
        "/v1/config/service-defaults/db",
        m,
        None,
    )
    .await;
    assert_eq!(st, 404);
    let (_, text) = call(Method::GET, &agent, "/v1/connect/intentions", m, None).await;
    assert!(!text.contains("\"db\""), "{text}");
    let (_, text) = call(Method::GET, &agent, "/v1/agent/services", m, None).await;
    assert!(!text.contains("\"db\""), "{text}");
    // What was allowed was written under the name that was checked.
    let (st, _) = call(Method::GET, &agent, "/v1/kv/ok/x", m, None).await;
    assert_eq!(st, 200);
    let (_, text) = call(Method::GET, &agent, "/v1/agent/services", m, None).await;
    assert!(text.contains("web-sidecar-proxy"), "{text}");
}

/// `POST /v1/internal/mesh.d/view` under default-deny: a token without
/// management is refused in every spelling of the body, the management
/// token gets the same answer in every spelling (owned objects and the
/// named ones, nothing else), and a duplicated key, a prefix that is not a
/// node's files and too many keys are 400s that say why.
#[tokio::test]
async fn the_mesh_d_view_is_management_only_and_reads_one_body_one_way() {
    let dir = tempfile::tempdir().unwrap();
    let agent = default_deny_agent(dir.path()).await;
    let m = Some(MANAGEMENT);
    use crate::acl::call;
    // Three intentions: one owned by n1's files, one by n2's, one by the API.
    for (src, owner) in [
        ("a", "file:n1:/etc/mesh.d/a.hcl"),
        ("b", "file:n2:/etc/mesh.d/b.hcl"),
        ("c", "api"),
    ] {
        let r = http()
            .put(agent.url(&format!(
                "/v1/connect/intentions/exact?source={src}&destination=db"
            )))
            .header("X-Consul-Token", MANAGEMENT)
            .header("X-Mesh-Owner", owner)
            .json(&json!({"Action": "allow"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    let (st, text) = call(
        Method::PUT,
        &agent,
        "/v1/acl/token",
        m,
        Some(json!({"ServiceIdentities": [{"ServiceName": "db"}]})),
    )
    .await;
    assert_eq!(st, 200, "{text}");
    let narrow: Value = serde_json::from_str(&text).unwrap();
    let narrow = narrow["SecretID"].as_str().unwrap().to_string();
    let path = "/v1/internal/mesh.d/view";
    let spellings = [
        r#"{"OwnerPrefix":"file:n1:","Intentions":[{"Source":"c","Destination":"db"}]}"#,
        r#"{"ownerprefix":"file:n1:","intentions":[{"source":"c","destination":"db"}]}"#,
        r#"{"owner_prefix":"file:n1:","INTENTIONS":[{"SOURCE":"c","DESTINATION":"db"}],"config_entries":[]}"#,
    ];
    let mut answers = Vec::new();
    for body in spellings {
        let (st, text) = raw_call(&agent, Method::POST, path, &narrow, body).await;
        assert_eq!(st, 403, "{body}: {text}");
        assert!(text.contains("Permission denied"), "{body}: {text}");
        let (st, text) = raw_call(&agent, Method::POST, path, MANAGEMENT, body).await;
        assert_eq!(st, 200, "{body}: {text}");
        answers.push(serde_json::from_str::<Value>(&text).unwrap());
    }
    assert!(answers.windows(2).all(|w| w[0] == w[1]), "{answers:?}");
    let mut sources: Vec<&str> = answers[0]["Intentions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["Source"].as_str().unwrap())
        .collect();
    sources.sort();
    assert_eq!(
        sources,
        ["a", "c"],
        "n1's own and the named one: {}",
        answers[0]
    );
    let bad = [
        (
            r#"{"OwnerPrefix":"file:n1:","ownerprefix":"file:n2:"}"#.to_string(),
            "duplicate key",
        ),
        (
            r#"{"OwnerPrefix":""}"#.to_string(),
            "OwnerPrefix must be file:<node>:",
        ),
        (
            r#"{"OwnerPrefix":"api"}"#.to_string(),
            "OwnerPrefix must be file:<node>:",
        ),
        (
            format!(
                r#"{{"OwnerPrefix":"file:n1:","ConfigEntries":[{}]}}"#,
                vec![r#"{"Kind":"service-defaults","Name":"x"}"#; 10_001].join(",")
            ),
            "MAX_VIEW_KEYS",
        ),
    ];
    for (body, why) in bad {
        let (st, text) = raw_call(&agent, Method::POST, path, MANAGEMENT, &body).await;
        assert_eq!(st, 400, "{}: {text}", &body[..body.len().min(80)]);
        assert!(text.contains(why), "{why}: {text}");
    }
}

/// Resident memory of a process, from /proc.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap()
}

/// A connection from `source` (another loopback address, so each attacker
/// address has its own per-client count).
async fn connect_from(source: std::net::IpAddr, to: std::net::SocketAddr) -> tokio::net::TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(std::net::SocketAddr::new(source, 0)).unwrap();
    socket.connect(to).await.unwrap()
}

#[tokio::test]
async fn slow_clients_cannot_starve_a_well_behaved_one() {
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("limits.hcl");
    std::fs::write(&conf, "limits {\n  http_read_header_timeout = \"2s\"\n}\n").unwrap();
    let mut spec = mesh_testkit::AgentSpec::server("slow", 1);
    spec.extra.push("-dev".into());
    spec.extra.push(format!("-config-file={}", conf.display()));
    let agent = TestAgent::start(spec, &dir.path().join("a")).await.unwrap();
    let pid = agent.pid().unwrap();
    let c = http();
    assert!(put_key(&c, &agent, "probe", None).await);
    let rss_before = rss_kib(pid);

    // 200 connections from one address, each waiting on a blocking query:
    // one more from that address is told why and closed.
    let index = c
        .get(agent.url("/v1/kv/probe"))
        .send()
        .await
        .unwrap()
        .headers()["X-Consul-Index"]
        .to_str()
        .unwrap()
        .to_string();
    let full: std::net::IpAddr = [127, 0, 0, 20].into();
    let mut waiting = Vec::new();
    for _ in 0..200 {
        let mut tcp = connect_from(full, agent.http).await;
        let req = format!("GET /v1/kv/probe?index={index}&wait=60s HTTP/1.1\r\nHost: x\r\n\r\n");
        tcp.write_all(req.as_bytes()).await.unwrap();
        waiting.push(tcp);
    }
    let answer = eventually(
        "a 429 for one connection too many",
        Duration::from_secs(15),
        || async {
            let mut extra = connect_from(full, agent.http).await;
            let mut answer = String::new();
            let _ = tokio::time::timeout(Duration::from_secs(1), extra.read_to_string(&mut answer))
                .await;
            answer.starts_with("HTTP/1.1 429").then_some(answer)
        },
    )
    .await;
    assert!(answer.contains("http_max_conns_per_client"), "{answer}");
    drop(waiting);

    // 2,000 connections from ten addresses, 200 each (the per-client limit):
    // half never send a byte, half trickle a request line a byte at a time.
    let mut attackers = Vec::new();
    for a in 0..10u8 {
        let source = std::net::IpAddr::from([127, 0, 0, 2 + a]);
        for i in 0..200 {
            let mut tcp = connect_from(source, agent.http).await;
            let trickle = i % 2 == 0;
            attackers.push(tokio::spawn(async move {
                let started = tokio::time::Instant::now();
                let mut buf = [0u8; 512];
                if trickle {
                    for b in b"GET /v1/kv/probe HTTP/1.1\r\nX-Slow: ".iter().cycle() {
                        if tcp.write_all(&[*b]).await.is_err() {
                            break;
                        }
                        tokio::select! {
                            _ = tokio::time::sleep(Duration::from_millis(200)) => {}
                            n = tcp.read(&mut buf) => { let _ = n; break; }
                        }
                        if started.elapsed() > Duration::from_secs(20) {
                            return None;
                        }
                    }
                } else {
                    let got =
                        tokio::time::timeout(Duration::from_secs(20), tcp.read(&mut buf)).await;
                    if got.is_err() {
                        return None;
                    }
                }
                Some(started.elapsed())
            }));
        }
    }
    // Meanwhile a well-behaved client is served every time.
    for i in 0..50 {
        let r = c.get(agent.url("/v1/kv/probe?raw")).send().await.unwrap();
        assert_eq!(r.status(), 200, "request {i}");
    }
    let rss_during = rss_kib(pid);
    assert!(
        rss_during < rss_before + 150 * 1024,
        "RSS grew from {rss_before} KiB to {rss_during} KiB"
    );
    // Every slow connection is closed by the server after the header timeout.
    let mut open = Vec::new();
    for (i, a) in attackers.into_iter().enumerate() {
        match a.await.unwrap() {
            Some(closed_after) => {
                assert!(closed_after < Duration::from_secs(10), "{closed_after:?}")
            }
            None => open.push(i),
        }
    }
    assert!(
        open.is_empty(),
        "{} connections the server never closed: {:?}",
        open.len(),
        &open[..open.len().min(20)]
    );
}

#[tokio::test]
async fn limits_are_configurable_and_a_client_agent_paces_what_it_forwards() {
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("limits.hcl");
    std::fs::write(
        &conf,
        "limits {\n  kv_max_value_size = 1048576\n  rpc_rate = 1\n  rpc_max_burst = 3\n}\n",
    )
    .unwrap();
    let mut spec = mesh_testkit::AgentSpec::server("big-values", 1);
    spec.extra.push("-dev".into());
    spec.extra.push(format!("-config-file={}", conf.display()));
    let server = TestAgent::start(spec, &dir.path().join("s")).await.unwrap();
    let c = http();
    let r = c
        .put(server.url("/v1/kv/big"))
        .body(vec![b'x'; 900 << 10])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "a value under the configured limit");

    let mut spec = mesh_testkit::AgentSpec::client("paced");
    spec.retry_join = vec![server.serf];
    spec.extra.push(format!("-config-file={}", conf.display()));
    let client = TestAgent::start(spec, &dir.path().join("c")).await.unwrap();
    eventually(
        "the client agent knows a server",
        Duration::from_secs(20),
        || async {
            let r = c.get(client.url("/v1/kv/big?raw")).send().await.ok()?;
            (r.status() == 200).then_some(())
        },
    )
    .await;
    // A burst past rpc_max_burst within a second: the rest wait their turn.
    let mut statuses = Vec::new();
    for _ in 0..6 {
        let r = c.get(client.url("/v1/kv/big?raw")).send().await.unwrap();
        let status = r.status();
        if status == StatusCode::TOO_MANY_REQUESTS {
            assert!(r.text().await.unwrap().contains("limits.rpc_rate"));
        }
        statuses.push(status);
    }
    assert!(
        statuses.contains(&StatusCode::TOO_MANY_REQUESTS),
        "{statuses:?}"
    );
    assert_eq!(statuses[0], 200, "{statuses:?}");
}
