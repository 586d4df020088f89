//! Prepared queries over HTTP and DNS on a real agent: CRUD, execute with
//! health, tag and meta filters, templates, explain, bad input, and ACLs
//! (default deny, bodies in other key cases).

use std::time::Duration;

use mesh_testkit::{eventually, AgentSpec, TestAgent};
use reqwest::Method;
use serde_json::{json, Value};

use crate::acl::{call, token_with_policy, MANAGEMENT};
use crate::api_surface::default_deny_agent;
use crate::dns::dig;

async fn send(
    agent: &TestAgent,
    method: Method,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> (u16, Value) {
    let (st, text) = call(method, agent, path, token, body).await;
    (
        st.as_u16(),
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

/// web1 (primary, passing), web2 (replica, passing), web3 (primary,
/// critical), web4 (primary, warning, meta env=prod), each on its own node.
async fn register_web(agent: &TestAgent, token: Option<&str>) {
    for (id, addr, tag, status, env) in [
        ("web1", "127.0.0.21", "primary", "passing", "dev"),
        ("web2", "127.0.0.22", "replica", "passing", "dev"),
        ("web3", "127.0.0.23", "primary", "critical", "dev"),
        ("web4", "127.0.0.24", "primary", "warning", "prod"),
    ] {
        let body = json!({"Node": format!("n-{id}"), "Address": addr,
            "Service": {"Service": "web", "ID": id, "Port": 80, "Tags": [tag], "Meta": {"env": env}},
            "Check": {"CheckID": format!("{id}-ok"), "ServiceID": id, "Status": status}});
        let (st, text) = send(
            agent,
            Method::PUT,
            "/v1/catalog/register",
            token,
            Some(body),
        )
        .await;
        assert_eq!(st, 200, "{text}");
    }
}

fn nodes_of(answer: &Value) -> Vec<String> {
    let mut ids: Vec<String> = answer["Nodes"]
        .as_array()
        .unwrap_or_else(|| panic!("{answer}"))
        .iter()
        .map(|n| n["Service"]["ID"].as_str().unwrap().to_string())
        .collect();
    ids.sort();
    ids
}

#[tokio::test]
async fn prepared_queries_answer_over_http_and_dns() {
    let dir = tempfile::tempdir().unwrap();
    let mut spec = AgentSpec::server("pq", 1);
    spec.extra.push("-dev".into());
    spec.dns = true;
    let agent = TestAgent::start(spec, &dir.path().join("a")).await.unwrap();
    let dns = agent.dns.expect("DNS");
    register_web(&agent, None).await;

    let (st, created) = send(
        &agent,
        Method::POST,
        "/v1/query",
        None,
        Some(json!({
            "Name": "web-primary",
            "Service": {"Service": "web", "Tags": ["primary", "!replica"], "OnlyPassing": false},
            "DNS": {"TTL": "7s"}
        })),
    )
    .await;
    assert_eq!(st, 200, "{created}");
    let id = created["ID"].as_str().unwrap().to_string();

    let (st, got) = send(&agent, Method::GET, &format!("/v1/query/{id}"), None, None).await;
    assert_eq!(st, 200, "{got}");
    assert_eq!(got[0]["Name"], "web-primary");
    assert_eq!(got[0]["Service"]["Tags"], json!(["primary", "!replica"]));
    assert_eq!(got[0]["DNS"]["TTL"], "7s");

    // Not critical (web3), has primary (not web2): web1 and web4.
    for key in [id.as_str(), "web-primary"] {
        let (st, ran) = send(
            &agent,
            Method::GET,
            &format!("/v1/query/{key}/execute"),
            None,
            None,
        )
        .await;
        assert_eq!(st, 200, "{ran}");
        assert_eq!(nodes_of(&ran), vec!["web1", "web4"], "{key}: {ran}");
        assert_eq!(ran["Service"], "web");
        assert_eq!(ran["Datacenter"], "dc1");
        assert_eq!(ran["Failovers"], 0);
    }
    let (_, limited) = send(
        &agent,
        Method::GET,
        "/v1/query/web-primary/execute?limit=1",
        None,
        None,
    )
    .await;
    assert_eq!(limited["Nodes"].as_array().unwrap().len(), 1);
    let (_, near) = send(
        &agent,
        Method::GET,
        "/v1/query/web-primary/execute?near=n-web4",
        None,
        None,
    )
    .await;
    assert_eq!(
        near["Nodes"][0]["Node"]["Node"], "n-web4",
        "the near node first"
    );

    // Update: only passing ones, in prod.
    let (st, text) = send(
        &agent,
        Method::PUT,
        &format!("/v1/query/{id}"),
        None,
        Some(json!({
            "Name": "web-primary",
            "Service": {"Service": "web", "Tags": ["primary"], "OnlyPassing": true}
        })),
    )
    .await;
    assert_eq!(st, 200, "{text}");
    let (_, ran) = send(
        &agent,
        Method::GET,
        "/v1/query/web-primary/execute",
        None,
        None,
    )
    .await;
    assert_eq!(nodes_of(&ran), vec!["web1"]);

    // A template: any name under geo- runs the service its suffix names.
    let (st, t) = send(
        &agent,
        Method::POST,
        "/v1/query",
        None,
        Some(json!({
            "Name": "geo-",
            "Template": {"Type": "name_prefix_match", "Regexp": "^geo-([a-z]+)$"},
            "Service": {"Service": "${match(1)}", "ServiceMeta": {"env": "prod"}}
        })),
    )
    .await;
    assert_eq!(st, 200, "{t}");
    let (_, ran) = send(&agent, Method::GET, "/v1/query/geo-web/execute", None, None).await;
    assert_eq!(nodes_of(&ran), vec!["web4"], "{ran}");
    let (_, explained) = send(&agent, Method::GET, "/v1/query/geo-web/explain", None, None).await;
    assert_eq!(
        explained["Query"]["Service"]["Service"], "web",
        "{explained}"
    );
    let (st, _) = send(&agent, Method::GET, "/v1/query/nothing/execute", None, None).await;
    assert_eq!(st, 404);

    // DNS: the same answers.
    let a = eventually("web-primary by DNS", Duration::from_secs(10), || async {
        let a = dig(dns, &["+short", "web-primary.query.consul", "A"]).await;
        (!a.trim().is_empty()).then_some(a)
    })
    .await;
    assert_eq!(a.trim(), "127.0.0.21");
    let by_id = dig(dns, &["+short", &format!("{id}.query.consul"), "A"]).await;
    assert_eq!(by_id.trim(), "127.0.0.21");
    let geo = dig(dns, &["+short", "geo-web.query.consul", "A"]).await;
    assert_eq!(geo.trim(), "127.0.0.24");
    let srv = dig(
        dns,
        &["+noall", "+answer", "web-primary.query.consul", "SRV"],
    )
    .await;
    assert!(srv.contains("SRV") && srv.contains(" 80 "), "{srv}");
    let ttl = dig(dns, &["+noall", "+answer", "geo-web.query.consul", "A"]).await;
    assert!(ttl.split_whitespace().nth(1).is_some(), "{ttl}");
    let missing = dig(dns, &["nothing.query.consul", "A"]).await;
    assert!(missing.contains("NXDOMAIN"), "{missing}");

    // Delete: gone from HTTP and DNS.
    let (st, _) = send(
        &agent,
        Method::DELETE,
        &format!("/v1/query/{id}"),
        None,
        None,
    )
    .await;
    assert_eq!(st, 200);
    let (st, _) = send(&agent, Method::GET, &format!("/v1/query/{id}"), None, None).await;
    assert_eq!(st, 404);
    let gone = dig(dns, &["web-primary.query.consul", "A"]).await;
    assert!(gone.contains("NXDOMAIN"), "{gone}");
    let (_, all) = send(&agent, Method::GET, "/v1/query", None, None).await;
    assert_eq!(all.as_array().unwrap().len(), 1, "{all}");
}

#[tokio::test]
async fn bad_prepared_queries_are_refused_and_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let agent = crate::dev_agent("pqbad", dir.path()).await;
    let (st, first) = send(
        &agent,
        Method::POST,
        "/v1/query",
        None,
        Some(json!({"Name": "taken", "Service": {"Service": "web"}})),
    )
    .await;
    assert_eq!(st, 200, "{first}");
    let many: Vec<String> = (0..65).map(|i| format!("t{i}")).collect();
    for (body, says) in [
        (json!({"Name": "x"}), "Must provide a Service name"),
        (
            json!({"Name": "taken", "Service": {"Service": "web"}}),
            "already exists",
        ),
        (
            json!({"Service": {"Service": "web"}, "Template": {"Type": "name_prefix_match", "Regexp": "(("}}),
            "Invalid Template.Regexp",
        ),
        (
            json!({"Service": {"Service": "web"}, "Template": {"Type": "other"}}),
            "Bad Template.Type",
        ),
        (
            json!({"Service": {"Service": "web", "Tags": many}}),
            "MAX_QUERY_LIST",
        ),
        (
            json!({"Service": {"Service": "web"}, "Sesion": "x"}),
            "unknown field",
        ),
        (
            json!({"Service": {"Service": "web"}, "DNS": {"TTL": "soon"}}),
            "Invalid DNS.TTL",
        ),
        (
            json!({"Service": {"Service": "web"}, "Session": "no-such-session"}),
            "does not exist",
        ),
        (
            json!({"Service": {"Service": "web", "Peer": "other"}}),
            "peering",
        ),
        (
            json!({"Name": "n".repeat(300), "Service": {"Service": "web"}}),
            "MAX_QUERY_NAME_BYTES",
        ),
    ] {
        let (st, text) = send(&agent, Method::POST, "/v1/query", None, Some(body.clone())).await;
        assert!((400..500).contains(&st), "{body}: {st} {text}");
        assert!(text.to_string().contains(says), "{body}: {text}");
    }
    let (st, text) = send(
        &agent,
        Method::PUT,
        "/v1/query/not-there",
        None,
        Some(json!({"Service": {"Service": "web"}})),
    )
    .await;
    assert_eq!(st, 404, "{text}");
    let (_, all) = send(&agent, Method::GET, "/v1/query", None, None).await;
    assert_eq!(
        all.as_array().unwrap().len(),
        1,
        "nothing else stored: {all}"
    );
    let (st, text) = send(
        &agent,
        Method::GET,
        "/v1/query/taken/execute?limit=x",
        None,
        None,
    )
    .await;
    assert_eq!(st, 400, "{text}");
}

#[tokio::test]
async fn prepared_queries_follow_acls_under_default_deny() {
    let dir = tempfile::tempdir().unwrap();
    let agent = default_deny_agent("pqacl", dir.path()).await;
    register_web(&agent, Some(MANAGEMENT)).await;
    let writer = token_with_policy(
        &agent,
        "web-queries",
        r#"query_prefix "web-" { policy = "write" }"#,
    )
    .await;
    let runner = token_with_policy(
        &agent,
        "web-reader",
        r#"service "web" { policy = "read" }
node_prefix "" { policy = "read" }
query_prefix "web-" { policy = "read" }"#,
    )
    .await;

    // python-consul sends lowercase keys; HCL users snake_case: the same query.
    let lower = json!({"name": "web-any", "service": {"service": "web", "only_passing": true}});
    let (st, text) = send(&agent, Method::POST, "/v1/query", None, Some(lower.clone())).await;
    assert_eq!(st, 403, "{text}");
    let (st, text) = send(
        &agent,
        Method::POST,
        "/v1/query",
        Some(&writer),
        Some(json!({"NAME": "db-any", "SERVICE": {"SERVICE": "db"}})),
    )
    .await;
    assert_eq!(st, 403, "another prefix: {text}");
    assert!(text.to_string().contains("query:write"), "{text}");
    let (st, created) = send(
        &agent,
        Method::POST,
        "/v1/query",
        Some(&writer),
        Some(lower),
    )
    .await;
    assert_eq!(st, 200, "{created}");
    let id = created["ID"].as_str().unwrap().to_string();
    let (_, all) = send(&agent, Method::GET, "/v1/query", Some(MANAGEMENT), None).await;
    assert_eq!(
        all.as_array().unwrap().len(),
        1,
        "the refusals stored nothing: {all}"
    );
    assert_eq!(all[0]["Service"]["OnlyPassing"], true);

    // Renaming out of the token's prefix is refused.
    let (st, text) = send(
        &agent,
        Method::PUT,
        &format!("/v1/query/{id}"),
        Some(&writer),
        Some(json!({"Name": "db-any", "Service": {"Service": "web"}})),
    )
    .await;
    assert_eq!(st, 403, "{text}");

    // Running it needs service:read; listing shows only readable queries.
    let (st, text) = send(
        &agent,
        Method::GET,
        "/v1/query/web-any/execute",
        Some(&writer),
        None,
    )
    .await;
    assert_eq!(st, 403, "{text}");
    let (st, ran) = send(
        &agent,
        Method::GET,
        "/v1/query/web-any/execute",
        Some(&runner),
        None,
    )
    .await;
    assert_eq!(st, 200, "{ran}");
    assert_eq!(nodes_of(&ran), vec!["web1", "web2"]);

    // A query with its own token runs with that token's rights: anyone may
    // run it, and it shows what the token may read (a node it may not read
    // is left out).
    let (st, text) = send(&agent, Method::GET, "/v1/query/web-any/execute", None, None).await;
    assert_eq!(st, 403, "no token of its own: the caller's rights: {text}");
    let one_node = token_with_policy(
        &agent,
        "web-one-node",
        r#"service "web" { policy = "read" }
node "n-web1" { policy = "read" }"#,
    )
    .await;
    let (st, created) = send(
        &agent,
        Method::POST,
        "/v1/query",
        Some(&writer),
        Some(json!({"Name": "web-tok", "Token": one_node, "Service": {"Service": "web"}})),
    )
    .await;
    assert_eq!(st, 200, "{created}");
    let (st, ran) = send(&agent, Method::GET, "/v1/query/web-tok/execute", None, None).await;
    assert_eq!(st, 200, "{ran}");
    assert_eq!(
        nodes_of(&ran),
        vec!["web1"],
        "only n-web1's instance: {ran}"
    );
    let (_, shown) = send(&agent, Method::GET, "/v1/query", Some(MANAGEMENT), None).await;
    assert!(
        !shown.to_string().contains(&one_node),
        "the stored token is never shown: {shown}"
    );
    let tok_id = created["ID"].as_str().unwrap().to_string();
    let (st, _) = send(
        &agent,
        Method::DELETE,
        &format!("/v1/query/{tok_id}"),
        Some(&writer),
        None,
    )
    .await;
    assert_eq!(st, 200);

    let (st, listed) = send(&agent, Method::GET, "/v1/query", None, None).await;
    assert_eq!((st, listed), (200, json!([])));
    let (st, listed) = send(&agent, Method::GET, "/v1/query", Some(&runner), None).await;
    assert_eq!(st, 200);
    assert_eq!(listed.as_array().unwrap().len(), 1);
    let (st, _) = send(
        &agent,
        Method::DELETE,
        &format!("/v1/query/{id}"),
        Some(&runner),
        None,
    )
    .await;
    assert_eq!(st, 403);
    let (st, _) = send(
        &agent,
        Method::DELETE,
        &format!("/v1/query/{id}"),
        Some(&writer),
        None,
    )
    .await;
    assert_eq!(st, 200);
}
