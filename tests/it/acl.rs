//! ACLs across a 3-server cluster and a client agent: tokens and policies
//! through the API, enforcement on every kind of route, list filtering,
//! changes taking effect everywhere, and persistence across a restart.

use std::time::Duration;

use mesh_testkit::{eventually, AgentSpec, TestAgent, TestCluster};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::http;

pub(crate) const MANAGEMENT: &str = "6d3f6a39-2b1e-4c61-9a51-0e3cbb0f1c11";

pub(crate) fn acl_config(dir: &std::path::Path) -> std::path::PathBuf {
    acl_file(
        dir,
        "acl.hcl",
        &[("initial_management", MANAGEMENT), ("agent", MANAGEMENT)],
    )
}

/// A token of one new policy `name` with `rules`, made with the management token.
pub(crate) async fn token_with_policy(a: &TestAgent, name: &str, rules: &str) -> String {
    let (st, text) = call(
        reqwest::Method::PUT,
        a,
        "/v1/acl/policy",
        Some(MANAGEMENT),
        Some(serde_json::json!({"Name": name, "Rules": rules})),
    )
    .await;
    assert_eq!(st, 200, "{text}");
    let (st, text) = call(
        reqwest::Method::PUT,
        a,
        "/v1/acl/token",
        Some(MANAGEMENT),
        Some(serde_json::json!({"Policies": [{"Name": name}]})),
    )
    .await;
    assert_eq!(st, 200, "{text}");
    let token: serde_json::Value = serde_json::from_str(&text).unwrap();
    token["SecretID"].as_str().unwrap().to_string()
}

/// `dir/name` holding `acl { }` with ACLs on, default deny, and these tokens.
pub(crate) fn acl_file(
    dir: &std::path::Path,
    name: &str,
    tokens: &[(&str, &str)],
) -> std::path::PathBuf {
    let tokens: String = tokens
        .iter()
        .map(|(k, v)| format!("    {k} = \"{v}\"\n"))
        .collect();
    let conf = dir.join(name);
    std::fs::write(
        &conf,
        format!("acl {{\n  enabled = true\n  default_policy = \"deny\"\n  tokens {{\n{tokens}  }}\n}}\n"),
    )
    .unwrap();
    conf
}

/// One request with an optional token: its status and body text.
pub(crate) async fn call(
    method: Method,
    agent: &TestAgent,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> (StatusCode, String) {
    let mut req = http().request(method, agent.url(path));
    if let Some(t) = token {
        req = req.header("X-Consul-Token", t);
    }
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status();
    (status, resp.text().await.unwrap())
}

/// Registers `name` on a client agent with `token`, retrying while the
/// client cannot resolve tokens yet (503 "no known servers" until gossip
/// shows it a server); registering is idempotent. The final answer.
pub(crate) async fn register_on_client(
    client: &TestAgent,
    token: Option<&str>,
    name: &str,
) -> (StatusCode, String) {
    eventually(
        "the client resolves tokens",
        Duration::from_secs(15),
        || async {
            let (st, text) = call(
                Method::PUT,
                client,
                "/v1/agent/service/register",
                token,
                Some(json!({"Name": name, "Port": 9000})),
            )
            .await;
            (!(st == 503 && text.contains("no known servers"))).then_some((st, text))
        },
    )
    .await
}

fn json_of(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

#[tokio::test]
async fn acl_tokens_and_policies_govern_every_route_across_the_cluster() {
    let dir = tempfile::tempdir().unwrap();
    let conf = acl_config(dir.path());
    let flag = format!("-config-file={}", conf.display());
    let mut cluster = TestCluster::start_with(3, |_, spec| spec.extra.push(flag.clone()))
        .await
        .unwrap();
    let mut client_spec = AgentSpec::client("app1");
    client_spec.extra.push(flag.clone());
    cluster.add(client_spec).await.unwrap();
    let m = Some(MANAGEMENT);
    let (s0, s1, s2, client) = (
        &cluster.agents[0],
        &cluster.agents[1],
        &cluster.agents[2],
        &cluster.agents[3],
    );

    // No token: only the unauthenticated routes answer.
    let (st, _) = call(Method::GET, s0, "/v1/status/leader", None, None).await;
    assert_eq!(st, 200);
    let (st, text) = call(Method::PUT, s0, "/v1/kv/x", None, Some(json!("v"))).await;
    assert_eq!(st, 403, "{text}");
    assert!(text.contains("lacks permission 'key:write'"), "{text}");
    let (st, text) = call(
        Method::GET,
        s0,
        "/v1/kv/x",
        Some("0b5bd3f8-0000-4000-8000-000000000000"),
        None,
    )
    .await;
    assert_eq!((st, text.trim()), (StatusCode::FORBIDDEN, "ACL not found"));

    // The leader stores the configured management token; bootstrap is then closed.
    eventually(
        "initial management token stored",
        Duration::from_secs(10),
        || async {
            let (_, text) = call(Method::GET, s1, "/v1/acl/tokens", m, None).await;
            text.contains("Initial Management Token").then_some(())
        },
    )
    .await;
    let (st, text) = call(Method::PUT, s2, "/v1/acl/bootstrap", None, None).await;
    assert_eq!(st, 403, "{text}");
    assert!(text.contains("no longer allowed"), "{text}");

    // Bad rules: 400 naming line and column; nothing created.
    let before = call(Method::GET, s0, "/v1/acl/policies", m, None).await.1;
    let (st, text) = call(
        Method::PUT,
        s0,
        "/v1/acl/policy",
        m,
        Some(json!({"Name": "bad", "Rules": "key_prefix \"\" { policy = \"read\" }\nservce \"web\" { policy = \"write\" }"})),
    )
    .await;
    assert_eq!(st, 400, "{text}");
    assert!(
        text.contains("rules:2:1") && text.contains("did you mean `service`"),
        "{text}"
    );
    assert_eq!(
        call(Method::GET, s0, "/v1/acl/policies", m, None).await.1,
        before
    );

    let rules = r#"
key_prefix "app/" { policy = "write" }
service "web" {
  policy     = "write"
  intentions = "write"
}
node_prefix "" { policy = "write" }
"#;
    let (st, text) = call(
        Method::PUT,
        s1,
        "/v1/acl/policy",
        m,
        Some(json!({"Name": "app", "Rules": rules})),
    )
    .await;
    assert_eq!(st, 200, "{text}");
    let policy = json_of(&text);
    assert_eq!(policy["Rules"], rules);
    // Created on one server, used at once on another.
    let (st, text) = call(
        Method::PUT,
        s1,
        "/v1/acl/token",
        m,
        Some(json!({"Description": "app", "Policies": [{"Name": "app"}]})),
    )
    .await;
    assert_eq!(st, 200, "{text}");
    let token = json_of(&text);
    let secret = token["SecretID"].as_str().unwrap().to_string();
    let accessor = token["AccessorID"].as_str().unwrap().to_string();
    assert_eq!(token["Policies"][0]["Name"], "app");
    let t = Some(secret.as_str());
    let (st, text) = call(Method::PUT, s2, "/v1/kv/app/x", t, Some(json!("v"))).await;
    assert_eq!(st, 200, "{text}");
    let (st, text) = call(Method::PUT, s2, "/v1/kv/other", t, Some(json!("v"))).await;
    assert_eq!(st, 403);
    assert!(
        text.contains(&accessor) && text.contains("'key:write' on \"other\""),
        "{text}"
    );
    let (st, _) = call(Method::PUT, s0, "/v1/kv/other", m, Some(json!("v"))).await;
    assert_eq!(st, 200);

    // Lists are cut to what the token may read, and say so.
    let resp = http()
        .get(s0.url("/v1/kv/?recurse"))
        .header("X-Consul-Token", &secret)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-consul-results-filtered-by-acls"], "true");
    let keys: Vec<String> = resp
        .json::<Vec<Value>>()
        .await
        .unwrap()
        .iter()
        .map(|e| e["Key"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(keys, ["app/x"]);
    // Filtered answers are reused only while the answer they came from holds.
    let (st, _) = call(Method::PUT, s0, "/v1/kv/app/x2", m, Some(json!("v"))).await;
    assert_eq!(st, 200);
    let (_, text) = call(Method::GET, s0, "/v1/kv/?recurse", t, None).await;
    let listed = json_of(&text);
    let keys: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["Key"].as_str().unwrap())
        .collect();
    assert_eq!(keys, ["app/x", "app/x2"]);
    let (_, text) = call(Method::GET, s0, "/v1/kv/?keys", t, None).await;
    assert_eq!(json_of(&text), json!(["app/x", "app/x2"]));
    let all = json_of(&call(Method::GET, s0, "/v1/kv/?keys", m, None).await.1);
    assert_eq!(all, json!(["app/x", "app/x2", "other"]));
    // A transaction is checked op by op: one forbidden key refuses it all.
    let txn = json!([{"KV": {"Verb": "set", "Key": "app/y", "Value": "dg=="}}, {"KV": {"Verb": "set", "Key": "other", "Value": "dg=="}}]);
    let (st, _) = call(Method::PUT, s0, "/v1/txn", t, Some(txn)).await;
    assert_eq!(st, 403);
    let (st, _) = call(Method::GET, s0, "/v1/kv/app/y", m, None).await;
    assert_eq!(st, 404, "a refused transaction wrote nothing");

    // Catalog: register two services as management; the token sees only web.
    for name in ["web", "db"] {
        let reg = json!({"Node": "ext1", "Address": "10.0.0.9", "Service": {"Service": name, "Port": 80}});
        let (st, text) = call(Method::PUT, s0, "/v1/catalog/register", m, Some(reg)).await;
        assert_eq!(st, 200, "{text}");
    }
    let services = json_of(
        &call(Method::GET, s1, "/v1/catalog/services", t, None)
            .await
            .1,
    );
    assert!(
        services.get("web").is_some() && services.get("db").is_none(),
        "{services}"
    );
    let (st, _) = call(Method::GET, s1, "/v1/health/service/db", t, None).await;
    assert_eq!(st, 403);
    let (st, _) = call(Method::GET, s1, "/v1/health/service/web", t, None).await;
    assert_eq!(st, 200);
    let reg =
        json!({"Node": "ext1", "Address": "10.0.0.9", "Service": {"Service": "db", "Port": 81}});
    let (st, _) = call(Method::PUT, s1, "/v1/catalog/register", t, Some(reg)).await;
    assert_eq!(st, 403);

    // Intentions: write only where the rules grant intentions = write.
    let (st, text) = call(
        Method::PUT,
        s2,
        "/v1/connect/intentions/exact?source=api&destination=web",
        t,
        Some(json!({"Action": "allow"})),
    )
    .await;
    assert_eq!(st, 200, "{text}");
    let (st, _) = call(
        Method::PUT,
        s2,
        "/v1/connect/intentions/exact?source=api&destination=db",
        t,
        Some(json!({"Action": "allow"})),
    )
    .await;
    assert_eq!(st, 403);
    // Operator and ACL routes need their own grants.
    for (method, path) in [
        (Method::GET, "/v1/connect/ca/configuration"),
        (Method::GET, "/v1/acl/tokens"),
        (Method::GET, "/v1/snapshot"),
        (Method::GET, "/v1/agent/metrics"),
    ] {
        let (st, _) = call(method, s0, path, t, None).await;
        assert_eq!(st, 403, "{path}");
    }
    // Secrets are shown to management only.
    let shown = json_of(
        &call(
            Method::GET,
            s0,
            &format!("/v1/acl/token/{accessor}"),
            m,
            None,
        )
        .await
        .1,
    );
    assert_eq!(shown["SecretID"], secret.as_str());
    let me = json_of(&call(Method::GET, s0, "/v1/acl/token/self", t, None).await.1);
    assert_eq!(me["AccessorID"], accessor.as_str());

    // A client agent checks its own routes with a server, and forwards the rest.
    let (st, text) = call(
        Method::PUT,
        client,
        "/v1/agent/service/register",
        t,
        Some(json!({"Name": "web", "Port": 8080})),
    )
    .await;
    assert_eq!(st, 200, "{text}");
    let (st, _) = call(
        Method::PUT,
        client,
        "/v1/agent/service/register",
        t,
        Some(json!({"Name": "db", "Port": 8080})),
    )
    .await;
    assert_eq!(st, 403);
    let (st, _) = call(Method::PUT, client, "/v1/kv/app/z", t, Some(json!("v"))).await;
    assert_eq!(st, 200);
    let (st, _) = call(Method::PUT, client, "/v1/kv/other", t, Some(json!("v"))).await;
    assert_eq!(st, 403);

    // Taking the policy away takes effect on every server.
    let (st, text) = call(
        Method::PUT,
        s0,
        &format!("/v1/acl/token/{accessor}"),
        m,
        Some(json!({"Description": "app", "Policies": []})),
    )
    .await;
    assert_eq!(st, 200, "{text}");
    for server in [s0, s1, s2] {
        eventually("policy removal seen", Duration::from_secs(5), || async {
            let (st, _) = call(Method::PUT, server, "/v1/kv/app/x", t, Some(json!("v"))).await;
            (st == 403).then_some(())
        })
        .await;
    }

    // ACL data is in Raft: a restarted server still knows the token.
    let (st, _) = call(
        Method::PUT,
        s0,
        &format!("/v1/acl/token/{accessor}"),
        m,
        Some(json!({"Policies": [{"ID": policy["ID"]}]})),
    )
    .await;
    assert_eq!(st, 200);
    cluster.agents[2].restart().await.unwrap();
    let s2 = &cluster.agents[2];
    eventually(
        "token works after restart",
        Duration::from_secs(20),
        || async {
            let (st, _) = call(Method::PUT, s2, "/v1/kv/app/x", t, Some(json!("v"))).await;
            (st == 200).then_some(())
        },
    )
    .await;

    // Deleting the token: it is unknown everywhere.
    let s0 = &cluster.agents[0];
    let (st, _) = call(
        Method::DELETE,
        s0,
        &format!("/v1/acl/token/{accessor}"),
        m,
        None,
    )
    .await;
    assert_eq!(st, 200);
    eventually("deleted token refused", Duration::from_secs(5), || async {
        let (st, text) = call(Method::GET, s2, "/v1/kv/app/x", t, None).await;
        (st == 403 && text.contains("ACL not found")).then_some(())
    })
    .await;
}

#[tokio::test]
async fn the_cli_bootstraps_and_manages_policies_and_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let conf = acl_file(dir.path(), "acl.hcl", &[]);
    let mut spec = AgentSpec::server("node1", 1);
    spec.extra = vec!["-dev".into(), format!("-config-file={}", conf.display())];
    let a = TestAgent::start(spec, &dir.path().join("data"))
        .await
        .unwrap();
    let run = |args: &[&str]| {
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        let a = &a;
        async move {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            crate::mesh_cli(a, &args).await
        }
    };
    let (code, out) = run(&["acl", "bootstrap", "-format=json"]).await;
    assert_eq!(code, 0, "{out}");
    let boot = json_of(&out);
    let secret = boot["SecretID"].as_str().unwrap().to_string();
    let token = format!("-token={secret}");
    let (code, out) = run(&["acl", "bootstrap"]).await;
    assert_ne!(code, 0);
    assert!(out.contains("no longer allowed"), "{out}");

    // Rules from a file; a bad file is refused before anything is sent.
    let bad = dir.path().join("bad.hcl");
    std::fs::write(&bad, "key_prefix \"app/\" {\n  policy = \"wirte\"\n}\n").unwrap();
    let (code, out) = run(&[
        "acl",
        "policy",
        "create",
        "-name=app",
        &format!("-rules=@{}", bad.display()),
        &token,
    ])
    .await;
    assert_ne!(code, 0);
    assert!(
        out.contains("rules:2:12") && out.contains("not an access level"),
        "{out}"
    );
    let good = dir.path().join("app.hcl");
    std::fs::write(&good, "key_prefix \"app/\" {\n  policy = \"write\"\n}\n").unwrap();
    let (code, out) = run(&[
        "acl",
        "policy",
        "create",
        "-name=app",
        &format!("-rules=@{}", good.display()),
        &token,
    ])
    .await;
    assert_eq!(code, 0, "{out}");
    let (code, out) = run(&["acl", "policy", "list", &token]).await;
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("app") && out.contains("global-management"),
        "{out}"
    );

    let (code, out) = run(&[
        "acl",
        "token",
        "create",
        "-policy-name=app",
        "-description=ci",
        "-format=json",
        &token,
    ])
    .await;
    assert_eq!(code, 0, "{out}");
    let app = json_of(&out);
    let app_token = format!("-token={}", app["SecretID"].as_str().unwrap());
    let (code, out) = run(&["kv", "put", &app_token, "app/x", "1"]).await;
    assert_eq!(code, 0, "{out}");
    let (code, out) = run(&["kv", "put", &app_token, "other", "1"]).await;
    assert_ne!(code, 0);
    assert!(out.contains("Permission denied"), "{out}");
    let (code, out) = run(&["acl", "token", "read", "-self", &app_token]).await;
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("ci") && out.contains("app"), "{out}");
    let id = format!("-id={}", app["AccessorID"].as_str().unwrap());
    let (code, out) = run(&["acl", "token", "delete", &id, &token]).await;
    assert_eq!(code, 0, "{out}");
    let (code, _) = run(&["kv", "get", &app_token, "app/x"]).await;
    assert_ne!(code, 0);
}

#[tokio::test]
async fn sidecars_need_a_token_that_may_write_their_service() {
    use crate::proxy::{connect_proxy, echo_server, free_port, roundtrip};
    let dir = tempfile::tempdir().unwrap();
    let conf = acl_config(dir.path());
    let mut spec = AgentSpec::server("node1", 1);
    spec.extra = vec!["-dev".into(), format!("-config-file={}", conf.display())];
    let a = TestAgent::start(spec, &dir.path().join("data"))
        .await
        .unwrap();
    let m = Some(MANAGEMENT);
    let db = echo_server().await;
    for body in [
        json!({"Name": "db", "ID": "db", "Port": db.port(), "Address": "127.0.0.1",
            "Connect": {"SidecarService": {"Port": free_port(), "Address": "127.0.0.1"}}}),
        json!({"Name": "web", "ID": "web", "Port": 1,
            "Connect": {"SidecarService": {"Port": free_port(), "Address": "127.0.0.1",
                "Proxy": {"Upstreams": [{"DestinationName": "db", "LocalBindPort": 0}]}}}}),
    ] {
        let (st, text) = call(Method::PUT, &a, "/v1/agent/service/register", m, Some(body)).await;
        assert_eq!(st, 200, "{text}");
    }
    let (st, _) = call(
        Method::PUT,
        &a,
        "/v1/connect/intentions/exact?source=web&destination=db",
        m,
        Some(json!({"Action": "allow"})),
    )
    .await;
    assert_eq!(st, 200);
    let mut secrets = std::collections::HashMap::new();
    for name in ["web", "db"] {
        let rules = format!(
            "service \"{name}\" {{\n  policy = \"write\"\n}}\nservice_prefix \"\" {{\n  policy = \"read\"\n}}\n"
        );
        let (st, text) = call(
            Method::PUT,
            &a,
            "/v1/acl/policy",
            m,
            Some(json!({"Name": name, "Rules": rules})),
        )
        .await;
        assert_eq!(st, 200, "{text}");
        let (_, text) = call(
            Method::PUT,
            &a,
            "/v1/acl/token",
            m,
            Some(json!({"Policies": [{"Name": name}]})),
        )
        .await;
        secrets.insert(
            name,
            json_of(&text)["SecretID"].as_str().unwrap().to_string(),
        );
    }

    // The snapshot holds web's leaf: db's token may not have it.
    let (st, text) = call(
        Method::GET,
        &a,
        "/v1/agent/connect/proxy/web-sidecar-proxy",
        Some(&secrets["db"]),
        None,
    )
    .await;
    assert_eq!(st, 403, "{text}");
    assert!(text.contains("'service:write' on \"web\""), "{text}");
    let (st, _) = call(
        Method::GET,
        &a,
        "/v1/agent/connect/proxy/web-sidecar-proxy",
        None,
        None,
    )
    .await;
    assert_eq!(st, 403);

    // Each sidecar with its own service's token: traffic flows.
    let db_token = format!("-token={}", secrets["db"]);
    let web_token = format!("-token={}", secrets["web"]);
    let _db_proxy = connect_proxy(&a, &["-sidecar-for", "db-sidecar-proxy", &db_token]).await;
    let web_proxy = connect_proxy(&a, &["-sidecar-for", "web-sidecar-proxy", &web_token]).await;
    let upstream = web_proxy.upstream("db");
    eventually("traffic flows", Duration::from_secs(15), || async {
        roundtrip(upstream, b"hello").await.ok()
    })
    .await;
}

#[tokio::test]
async fn the_rpc_port_refuses_writes_whose_token_may_not_make_them() {
    let dir = tempfile::tempdir().unwrap();
    let conf = acl_config(dir.path());
    let flag = format!("-config-file={}", conf.display());
    let mut cluster = TestCluster::start_with(3, |_, spec| spec.extra.push(flag.clone()))
        .await
        .unwrap();
    let m = Some(MANAGEMENT);
    let s1 = &cluster.agents[1];
    let rpc = s1.rpc.expect("a server has an RPC port").to_string();
    let put = mesh_types::Command::KvSet {
        key: "rpc/forged".into(),
        value: b"x".to_vec(),
        flags: 0,
        cas: None,
    };

    // A peer that skips the HTTP API and has no token: refused.
    let anonymous = mesh_raft::Network::default();
    let err = mesh_raft::propose_via_server(&anonymous, &rpc, &put)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("lacks 'key:write'"), "{err}");
    let (st, _) = call(Method::GET, s1, "/v1/kv/rpc/forged", m, None).await;
    assert_eq!(st, 404, "nothing was written");

    // A token for one node's anti-entropy may write that node, nothing else.
    let rules = "node \"app9\" {\n  policy = \"write\"\n}\n";
    let (st, _) = call(
        Method::PUT,
        s1,
        "/v1/acl/policy",
        m,
        Some(json!({"Name": "agent-app9", "Rules": rules})),
    )
    .await;
    assert_eq!(st, 200);
    let (_, text) = call(
        Method::PUT,
        s1,
        "/v1/acl/token",
        m,
        Some(json!({"Policies": [{"Name": "agent-app9"}]})),
    )
    .await;
    let agent_secret = json_of(&text)["SecretID"].as_str().unwrap().to_string();
    let agent_net = mesh_raft::Network::default();
    agent_net.set_token(Some(agent_secret.clone()));
    let err = mesh_raft::propose_via_server(&agent_net, &rpc, &put)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("Permission denied"), "{err}");

    // A client agent running with that token keeps its services registered.
    let client_conf = acl_file(dir.path(), "client.hcl", &[("agent", &agent_secret)]);
    let mut spec = AgentSpec::client("app9");
    spec.extra
        .push(format!("-config-file={}", client_conf.display()));
    cluster.add(spec).await.unwrap();
    let client = &cluster.agents[3];
    // Until gossip has shown the client a server it cannot resolve tokens
    // (503 "no known servers"); registering is idempotent, so retry that.
    let (st, text) = register_on_client(client, m, "api").await;
    assert_eq!(st, 200, "{text}");
    let s1 = &cluster.agents[1];
    eventually(
        "the client's service reaches the catalog",
        Duration::from_secs(15),
        || async {
            let (st, text) = call(Method::GET, s1, "/v1/catalog/service/api", m, None).await;
            (st == 200 && text.contains("app9")).then_some(())
        },
    )
    .await;
}

#[tokio::test]
async fn every_servers_files_apply_under_acls_with_only_an_initial_management_token() {
    let dir = tempfile::tempdir().unwrap();
    let conf = acl_file(dir.path(), "acl.hcl", &[("initial_management", MANAGEMENT)]);
    // Each server declares one intention in its own mesh.d; followers
    // forward theirs to the leader with their own token.
    let dirs: Vec<std::path::PathBuf> = (0..3)
        .map(|i| {
            let d = dir.path().join(format!("mesh.d-{i}"));
            std::fs::create_dir_all(&d).unwrap();
            std::fs::write(
                d.join("intentions.hcl"),
                format!("intention \"src{i}\" \"db\" {{\n  action = \"allow\"\n}}\n"),
            )
            .unwrap();
            d
        })
        .collect();
    let flag = format!("-config-file={}", conf.display());
    let cluster = TestCluster::start_with(3, |i, spec| {
        spec.extra.push(flag.clone());
        spec.extra
            .push(format!("-config-dir={}", dirs[i].display()));
    })
    .await
    .unwrap();
    let m = Some(MANAGEMENT);
    eventually(
        "every server's intention applied",
        Duration::from_secs(20),
        || async {
            let (st, text) = call(
                Method::GET,
                &cluster.agents[0],
                "/v1/connect/intentions",
                m,
                None,
            )
            .await;
            let all = (0..3).all(|i| text.contains(&format!("\"src{i}\"")));
            (st == 200 && all).then_some(())
        },
    )
    .await;
}
