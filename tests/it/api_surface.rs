//! The rest of the surface Consul's client libraries call (issue #22): the
//! services a gateway links, the ingress gateways in front of a service,
//! the agent's tokens, operator usage, the agent's stats and config entry
//! cas. Each is asked of a real agent for Consul's shape, with bad input
//! refused and ACLs enforced.

use std::time::{Duration, Instant};

use mesh_testkit::{eventually, AgentSpec, TestAgent, TestCluster};
use reqwest::Method;
use serde_json::{json, Value};

use crate::acl::{acl_config, acl_file, call, register_on_client, token_with_policy, MANAGEMENT};
use crate::http;

fn json_of(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

/// `method path` with `body` and an optional token, expecting a 200; the
/// answer as JSON (null when empty).
pub(crate) async fn ok(
    agent: &TestAgent,
    method: Method,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> Value {
    let (st, text) = call(method.clone(), agent, path, token, body).await;
    assert_eq!(st, 200, "{method} {path}: {text}");
    if text.trim().is_empty() {
        Value::Null
    } else {
        json_of(&text)
    }
}

/// One request with a raw body (so a body may hold a key twice).
async fn raw_put(agent: &TestAgent, path: &str, token: Option<&str>, body: &str) -> (u16, String) {
    let mut req = http().put(agent.url(path)).body(body.to_string());
    if let Some(t) = token {
        req = req.header("X-Consul-Token", t);
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.text().await.unwrap())
}

/// A GET's status, answer and `X-Consul-Index`.
async fn get_indexed(agent: &TestAgent, path: &str, token: Option<&str>) -> (u16, Value, u64) {
    let mut req = http().get(agent.url(path));
    if let Some(t) = token {
        req = req.header("X-Consul-Token", t);
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    let index = r
        .headers()
        .get("X-Consul-Index")
        .map_or(0, |v| v.to_str().unwrap().parse().unwrap());
    let text = r.text().await.unwrap();
    let body = if status == 200 {
        json_of(&text)
    } else {
        Value::String(text)
    };
    (status, body, index)
}

/// A `-dev` agent with ACLs on, default deny, once its management token works.
pub(crate) async fn default_deny_agent(name: &str, dir: &std::path::Path) -> TestAgent {
    let conf = acl_config(dir);
    let mut spec = AgentSpec::server(name, 1);
    spec.extra.push("-dev".into());
    spec.extra.push(format!("-config-file={}", conf.display()));
    let agent = TestAgent::start(spec, &dir.join("a")).await.unwrap();
    eventually("ACLs bootstrapped", Duration::from_secs(10), || async {
        let (st, _) = call(
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

/// A catalog registration of one gateway instance `name` on `node`, with a
/// service check in `status`.
fn gateway_instance(node: &str, name: &str, status: &str) -> Value {
    let id = format!("{name}-{node}");
    json!({
        "Node": node,
        "Address": "10.1.0.1",
        "Service": {"ID": id, "Service": name, "Kind": "ingress-gateway", "Port": 8443},
        "Check": {"CheckID": format!("{id}-alive"), "Name": "alive", "Status": status, "ServiceID": id},
    })
}

/// An `ingress-gateway` entry with one tcp listener per service.
fn ingress_entry(name: &str, services: &[&str]) -> Value {
    let listeners: Vec<Value> = services
        .iter()
        .enumerate()
        .map(|(i, s)| json!({"Port": 9000 + i, "Protocol": "tcp", "Services": [{"Name": s}]}))
        .collect();
    json!({"Kind": "ingress-gateway", "Name": name, "Listeners": listeners})
}

/// `(CreateIndex, ModifyIndex)` of a config entry.
async fn entry_indexes(agent: &TestAgent, kind: &str, name: &str) -> (u64, u64) {
    let e = ok(
        agent,
        Method::GET,
        &format!("/v1/config/{kind}/{name}"),
        Some(MANAGEMENT),
        None,
    )
    .await;
    (
        e["CreateIndex"].as_u64().unwrap(),
        e["ModifyIndex"].as_u64().unwrap(),
    )
}

#[tokio::test]
async fn gateway_services_list_what_each_gateway_entry_links() {
    let dir = tempfile::tempdir().unwrap();
    let agent = crate::dev_agent("surface-gw", &dir.path().join("a")).await;
    let ingress = json!({
        "Kind": "ingress-gateway",
        "Name": "ing",
        "Listeners": [
            {"Port": 8080, "Protocol": "tcp", "Services": [{"Name": "api"}]},
            {"Port": 8081, "Protocol": "http", "Services": [
                {"Name": "web", "Hosts": ["web.example.com"]},
                {"Name": "admin"},
            ]},
        ],
    });
    let terminating = json!({
        "Kind": "terminating-gateway",
        "Name": "term",
        "Services": [
            {"Name": "legacy", "CAFile": "/etc/ssl/legacy-ca.pem", "SNI": "legacy.internal"},
            {"Name": "billing", "CertFile": "/etc/ssl/billing.pem", "KeyFile": "/etc/ssl/billing-key.pem"},
            {"Name": "*"},
        ],
    });
    for entry in [&ingress, &terminating] {
        let written = ok(&agent, Method::PUT, "/v1/config", None, Some(entry.clone())).await;
        assert_eq!(written, true);
    }

    let (ci, mi) = entry_indexes(&agent, "ingress-gateway", "ing").await;
    let (st, rows, index) = get_indexed(&agent, "/v1/catalog/gateway-services/ing", None).await;
    assert_eq!(st, 200);
    assert!(
        index >= mi,
        "X-Consul-Index {index} is behind the entry's {mi}"
    );
    let ing = |service: &str, port: u16, protocol: &str| {
        json!({
            "Gateway": {"Name": "ing"},
            "Service": {"Name": service},
            "GatewayKind": "ingress-gateway",
            "Port": port,
            "Protocol": protocol,
            "CreateIndex": ci,
            "ModifyIndex": mi,
        })
    };
    let mut web = ing("web", 8081, "http");
    web["Hosts"] = json!(["web.example.com"]);
    assert_eq!(
        rows,
        json!([ing("api", 8080, "tcp"), web, ing("admin", 8081, "http")])
    );

    // Terminating: the TLS fields only where set, the wildcard left out.
    let (ci, mi) = entry_indexes(&agent, "terminating-gateway", "term").await;
    let rows = ok(
        &agent,
        Method::GET,
        "/v1/catalog/gateway-services/term",
        None,
        None,
    )
    .await;
    let term = |service: &str| {
        json!({
            "Gateway": {"Name": "term"},
            "Service": {"Name": service},
            "GatewayKind": "terminating-gateway",
            "CreateIndex": ci,
            "ModifyIndex": mi,
        })
    };
    let mut legacy = term("legacy");
    legacy["CAFile"] = "/etc/ssl/legacy-ca.pem".into();
    legacy["SNI"] = "legacy.internal".into();
    let mut billing = term("billing");
    billing["CertFile"] = "/etc/ssl/billing.pem".into();
    billing["KeyFile"] = "/etc/ssl/billing-key.pem".into();
    assert_eq!(rows, json!([legacy, billing]));

    // A name no entry has: an empty list, with an index to block on.
    let (st, rows, index) = get_indexed(&agent, "/v1/catalog/gateway-services/nope", None).await;
    assert_eq!((st, rows), (200, json!([])));
    assert!(index > 0);

    // A blocking read wakes when the gateway's entry changes.
    let (_, _, index) = get_indexed(&agent, "/v1/catalog/gateway-services/ing", None).await;
    let writer = {
        let url = agent.url("/v1/config");
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(300)).await;
            let body = json!({"Kind": "ingress-gateway", "Name": "ing", "Listeners": [
                {"Port": 8080, "Protocol": "tcp", "Services": [{"Name": "api2"}]},
            ]});
            http().put(url).json(&body).send().await.unwrap().status()
        })
    };
    let started = Instant::now();
    let (st, rows, after) = get_indexed(
        &agent,
        &format!("/v1/catalog/gateway-services/ing?index={index}&wait=10s"),
        None,
    )
    .await;
    assert_eq!(writer.await.unwrap(), 200);
    assert_eq!(st, 200);
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "the read waited out its wait"
    );
    assert!(after > index);
    let names: Vec<&str> = rows
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["Service"]["Name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["api2"]);
}

#[tokio::test]
async fn health_ingress_lists_the_gateways_exposing_a_service() {
    let dir = tempfile::tempdir().unwrap();
    let agent = crate::dev_agent("surface-ingress", &dir.path().join("a")).await;
    for entry in [
        ingress_entry("ing", &["api", "web"]),
        ingress_entry("other-ing", &["web"]),
    ] {
        ok(&agent, Method::PUT, "/v1/config", None, Some(entry)).await;
    }
    for reg in [
        gateway_instance("gw1", "ing", "passing"),
        gateway_instance("gw2", "ing", "critical"),
        gateway_instance("gw3", "other-ing", "passing"),
        json!({"Node": "app1", "Address": "10.1.0.9", "Service": {"Service": "api", "Port": 80}}),
    ] {
        ok(&agent, Method::PUT, "/v1/catalog/register", None, Some(reg)).await;
    }
    let nodes = |v: &Value| -> Vec<String> {
        let mut n: Vec<String> = v
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["Node"]["Node"].as_str().unwrap().to_string())
            .collect();
        n.sort();
        n
    };

    // Both instances of the gateway that exposes api, in /v1/health/service's shape.
    let (st, gateways, index) = get_indexed(&agent, "/v1/health/ingress/api", None).await;
    assert_eq!(st, 200);
    assert!(index > 0);
    assert_eq!(nodes(&gateways), ["gw1", "gw2"]);
    let as_service = ok(&agent, Method::GET, "/v1/health/service/ing", None, None).await;
    let mut a = gateways.as_array().unwrap().clone();
    let mut b = as_service.as_array().unwrap().clone();
    let by_node = |e: &Value| e["Node"]["Node"].as_str().unwrap().to_string();
    a.sort_by_key(by_node);
    b.sort_by_key(by_node);
    assert_eq!(a, b);
    for e in &a {
        assert_eq!(e["Service"]["Kind"], "ingress-gateway");
        assert_eq!(e["Service"]["Service"], "ing");
        assert!(e["Checks"].as_array().is_some_and(|c| !c.is_empty()));
    }

    // ?passing leaves out the critical one; web is exposed by both gateways.
    let passing = ok(
        &agent,
        Method::GET,
        "/v1/health/ingress/api?passing",
        None,
        None,
    )
    .await;
    assert_eq!(nodes(&passing), ["gw1"]);
    let web = ok(
        &agent,
        Method::GET,
        "/v1/health/ingress/web?passing=1",
        None,
        None,
    )
    .await;
    assert_eq!(nodes(&web), ["gw1", "gw3"]);
    // ?filter applies as on the other health lists; a bad one is a 400.
    let filtered = ok(
        &agent,
        Method::GET,
        "/v1/health/ingress/web?filter=Node.Node%20%3D%3D%20%22gw3%22",
        None,
        None,
    )
    .await;
    assert_eq!(nodes(&filtered), ["gw3"]);
    let (st, text) = call(
        Method::GET,
        &agent,
        "/v1/health/ingress/web?filter=Node.Node%20%3D%3D",
        None,
        None,
    )
    .await;
    assert_eq!(st, 400, "{text}");
    // A service no gateway exposes, and one that is not registered at all.
    for name in ["admin", "nope"] {
        let none = ok(
            &agent,
            Method::GET,
            &format!("/v1/health/ingress/{name}"),
            None,
            None,
        )
        .await;
        assert_eq!(none, json!([]), "{name}");
    }
}

#[tokio::test]
async fn operator_usage_counts_the_catalog_in_consuls_shape() {
    let dir = tempfile::tempdir().unwrap();
    let agent = crate::dev_agent("surface-usage", &dir.path().join("a")).await;
    // The agent registers its own node just after it is ready: count from there.
    eventually(
        "the agent's own node in the catalog",
        Duration::from_secs(10),
        || async {
            let nodes = ok(&agent, Method::GET, "/v1/catalog/nodes", None, None).await;
            let own = nodes
                .as_array()?
                .iter()
                .any(|n| n["Node"] == "surface-usage");
            own.then_some(())
        },
    )
    .await;
    let usage = |v: &Value| v["Usage"]["dc1"].clone();
    let (st, before, _) = get_indexed(&agent, "/v1/operator/usage", None).await;
    assert_eq!(st, 200);
    let kinds: Vec<&String> = before["Usage"]["dc1"]["ConnectServiceInstances"]
        .as_object()
        .unwrap()
        .keys()
        .collect();
    assert_eq!(
        kinds,
        [
            "api-gateway",
            "connect-native",
            "connect-proxy",
            "ingress-gateway",
            "mesh-gateway",
            "terminating-gateway"
        ]
    );
    let before = usage(&before);

    for reg in [
        json!({"Node": "n1", "Address": "10.2.0.1", "Service": {"ID": "web1", "Service": "web"}}),
        json!({"Node": "n1", "Address": "10.2.0.1", "Service": {
            "ID": "web1-sidecar-proxy", "Service": "web-sidecar-proxy", "Kind": "connect-proxy",
            "Port": 21000, "Proxy": {"DestinationServiceName": "web"}}}),
        json!({"Node": "n2", "Address": "10.2.0.2", "Service": {"ID": "web2", "Service": "web"}}),
        json!({"Node": "n2", "Address": "10.2.0.2", "Service": {"Service": "pay", "Connect": {"Native": true}}}),
        json!({"Node": "n3", "Address": "10.2.0.3", "Service": {"Service": "ing", "Kind": "ingress-gateway"}}),
        // Consul's own service is never billable.
        json!({"Node": "n3", "Address": "10.2.0.3", "Service": {"Service": "consul"}}),
    ] {
        ok(&agent, Method::PUT, "/v1/catalog/register", None, Some(reg)).await;
    }
    let (st, answer, index) = get_indexed(&agent, "/v1/operator/usage", None).await;
    assert_eq!(st, 200);
    assert_eq!(answer["Index"], index, "{answer}");
    let after = usage(&answer);
    let grew = |field: &str| after[field].as_u64().unwrap() - before[field].as_u64().unwrap();
    assert_eq!(grew("Services"), 5, "{after}");
    assert_eq!(grew("ServiceInstances"), 6, "{after}");
    assert_eq!(grew("BillableServiceInstances"), 3, "{after}");
    assert_eq!(grew("Nodes"), 3, "{after}");
    let nodes = ok(&agent, Method::GET, "/v1/catalog/nodes", None, None).await;
    assert_eq!(after["Nodes"], nodes.as_array().unwrap().len(), "{after}");
    let connect = |v: &Value, kind: &str| v["ConnectServiceInstances"][kind].as_u64().unwrap();
    for (kind, n) in [
        ("connect-proxy", 1),
        ("connect-native", 1),
        ("ingress-gateway", 1),
        ("terminating-gateway", 0),
        ("mesh-gateway", 0),
        ("api-gateway", 0),
    ] {
        assert_eq!(
            connect(&after, kind) - connect(&before, kind),
            n,
            "{kind}: {after}"
        );
    }

    // A blocking read wakes on the next registration.
    let writer = {
        let url = agent.url("/v1/catalog/register");
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(300)).await;
            let reg = json!({"Node": "n4", "Address": "10.2.0.4", "Service": {"Service": "late"}});
            http().put(url).json(&reg).send().await.unwrap().status()
        })
    };
    // Another change to the catalog may wake it first: ask again from there.
    let started = Instant::now();
    let want = after["ServiceInstances"].as_u64().unwrap() + 1;
    let mut index = index;
    loop {
        let (st, woke, later) = get_indexed(
            &agent,
            &format!("/v1/operator/usage?index={index}&wait=10s"),
            None,
        )
        .await;
        assert_eq!(st, 200);
        if usage(&woke)["ServiceInstances"] == want {
            assert!(later > index);
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(8),
            "no wake-up with the registration: {woke}"
        );
        index = later;
    }
    assert_eq!(writer.await.unwrap(), 200);
}

#[tokio::test]
async fn agent_self_stats_have_consuls_sections_as_strings() {
    let dir = tempfile::tempdir().unwrap();
    let agent = crate::dev_agent("surface-stats", &dir.path().join("a")).await;
    ok(
        &agent,
        Method::PUT,
        "/v1/agent/service/register",
        None,
        Some(json!({"Name": "web", "Port": 80, "Check": {"TTL": "30s"}})),
    )
    .await;
    let stats = eventually("the dev agent leads", Duration::from_secs(10), || async {
        let me = ok(&agent, Method::GET, "/v1/agent/self", None, None).await;
        (me["Stats"]["consul"]["leader"] == "true").then(|| me["Stats"].clone())
    })
    .await;
    for section in ["agent", "build", "consul", "raft", "runtime", "serf_lan"] {
        let fields = stats[section]
            .as_object()
            .unwrap_or_else(|| panic!("no Stats.{section}: {stats}"));
        for (k, v) in fields {
            assert!(v.is_string(), "Stats.{section}.{k} is not a string: {v}");
        }
    }
    let s = |section: &str, key: &str| -> String {
        stats[section][key]
            .as_str()
            .unwrap_or_else(|| panic!("no Stats.{section}.{key}: {stats}"))
            .to_string()
    };
    let n = |section: &str, key: &str| -> u64 {
        s(section, key)
            .parse()
            .unwrap_or_else(|e| panic!("Stats.{section}.{key}: {e}"))
    };
    assert_eq!(s("consul", "server"), "true");
    assert_eq!(s("consul", "bootstrap"), "true");
    assert_eq!(s("consul", "known_datacenters"), "1");
    assert!(s("consul", "leader_addr").contains(':'), "{stats}");
    assert_eq!(s("raft", "state"), "Leader");
    assert_eq!(s("raft", "num_peers"), "0");
    assert_eq!(s("raft", "last_contact"), "0");
    assert!(n("raft", "term") >= 1);
    assert!(n("raft", "applied_index") <= n("raft", "last_log_index"));
    assert_eq!(n("raft", "commit_index"), n("raft", "applied_index"));
    assert_eq!(s("serf_lan", "members"), "1");
    assert_eq!(s("serf_lan", "failed"), "0");
    assert_eq!(s("serf_lan", "left"), "0");
    assert_eq!(s("serf_lan", "encrypted"), "false");
    assert_eq!(s("serf_lan", "health_score"), "0");
    assert_eq!(s("agent", "services"), "1");
    assert_eq!(s("agent", "check_ttls"), "1");
    assert_eq!(s("agent", "check_monitors"), "0");
    assert!(n("agent", "checks") >= 1);
    assert!(!s("runtime", "os").is_empty() && !s("runtime", "arch").is_empty());
    assert!(n("runtime", "cpu_count") >= 1);
    assert!(n("runtime", "tokio_tasks") >= 1);
    assert!(stats["runtime"].get("goroutines").is_none());
}

/// `PUT /v1/config{query}` of a service-defaults entry for web: status
/// and answer.
async fn put_web_defaults(agent: &TestAgent, query: &str, protocol: &str) -> (u16, String) {
    let entry = json!({"Kind": "service-defaults", "Name": "web", "Protocol": protocol});
    let path = format!("/v1/config{query}");
    let (st, text) = call(Method::PUT, agent, &path, None, Some(entry)).await;
    (st.as_u16(), text.trim().to_string())
}

/// The stored protocol of web's service-defaults.
async fn web_protocol(agent: &TestAgent) -> Value {
    let path = "/v1/config/service-defaults/web";
    ok(agent, Method::GET, path, None, None).await["Protocol"].clone()
}

#[tokio::test]
async fn config_entry_cas_writes_only_over_the_index_it_names() {
    let dir = tempfile::tempdir().unwrap();
    let agent = crate::dev_agent("surface-cas", &dir.path().join("a")).await;
    let answer = |st: u16, text: &str| (st, text.to_string());
    // Absent: only cas=0 writes.
    let (st, text) = put_web_defaults(&agent, "?cas=5", "http").await;
    assert_eq!((st, text), answer(200, "false"));
    let (st, _) = call(
        Method::GET,
        &agent,
        "/v1/config/service-defaults/web",
        None,
        None,
    )
    .await;
    assert_eq!(st, 404);
    let (st, text) = put_web_defaults(&agent, "?cas=0", "http").await;
    assert_eq!((st, text), answer(200, "true"));
    let (st, text) = put_web_defaults(&agent, "?cas=0", "grpc").await;
    assert_eq!((st, text), answer(200, "false"));
    assert_eq!(web_protocol(&agent).await, "http");

    // Present: only its ModifyIndex writes; a stale one changes nothing.
    let (_, modify) = entry_indexes(&agent, "service-defaults", "web").await;
    let stale = format!("?cas={}", modify + 100);
    let (st, text) = put_web_defaults(&agent, &stale, "grpc").await;
    assert_eq!((st, text), answer(200, "false"));
    assert_eq!(web_protocol(&agent).await, "http");
    let current = format!("?cas={modify}");
    let (st, text) = put_web_defaults(&agent, &current, "grpc").await;
    assert_eq!((st, text), answer(200, "true"));
    assert_eq!(web_protocol(&agent).await, "grpc");
    assert!(entry_indexes(&agent, "service-defaults", "web").await.1 > modify);
    // The index it replaced is stale now.
    let (st, text) = put_web_defaults(&agent, &current, "tcp").await;
    assert_eq!((st, text), answer(200, "false"));

    // A cas that is not a number is a 400 that names it, and writes nothing.
    for bad in ["?cas=abc", "?cas=-1", "?cas=", "?cas=1.5"] {
        let (st, text) = put_web_defaults(&agent, bad, "tcp").await;
        assert_eq!(st, 400, "{bad}: {text}");
        assert!(text.contains("cas"), "{bad}: {text}");
    }
    assert_eq!(web_protocol(&agent).await, "grpc");
}

/// Every new route under default deny: a token without the permission is
/// refused, one with it is answered, and list answers are cut to what the
/// token may read.
#[tokio::test]
async fn the_new_routes_are_checked_and_filtered_under_default_deny() {
    let dir = tempfile::tempdir().unwrap();
    let agent = default_deny_agent("surface-acl", dir.path()).await;
    let m = Some(MANAGEMENT);
    for entry in [
        ingress_entry("ing", &["api", "db"]),
        ingress_entry("other-ing", &["api"]),
    ] {
        ok(&agent, Method::PUT, "/v1/config", m, Some(entry)).await;
    }
    for reg in [
        gateway_instance("gw1", "ing", "passing"),
        gateway_instance("gw2", "other-ing", "passing"),
    ] {
        ok(&agent, Method::PUT, "/v1/catalog/register", m, Some(reg)).await;
    }
    let gateway_and_api = token_with_policy(
        &agent,
        "ing-and-api",
        "service \"ing\" { policy = \"read\" }\nservice \"api\" { policy = \"read\" }\n",
    )
    .await;
    let api_only = token_with_policy(
        &agent,
        "api-only",
        "service \"api\" { policy = \"read\" }\n",
    )
    .await;
    let operator = token_with_policy(&agent, "op-read", "operator = \"read\"\n").await;

    // gateway-services: service:read on the gateway, rows cut to readable services.
    let path = "/v1/catalog/gateway-services/ing";
    let all = ok(&agent, Method::GET, path, m, None).await;
    assert_eq!(all.as_array().unwrap().len(), 2, "{all}");
    let resp = http()
        .get(agent.url(path))
        .header("X-Consul-Token", &gateway_and_api)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-consul-results-filtered-by-acls"], "true");
    let rows: Value = resp.json().await.unwrap();
    let services: Vec<&str> = rows
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["Service"]["Name"].as_str().unwrap())
        .collect();
    assert_eq!(services, ["api"]);
    let (st, text) = call(Method::GET, &agent, path, Some(&api_only), None).await;
    assert_eq!(st, 403, "{text}");
    assert!(text.contains("'service:read' on \"ing\""), "{text}");
    let (st, _) = call(Method::GET, &agent, path, None, None).await;
    assert_eq!(st, 403);

    // health/ingress: service:read on the service, gateways cut to readable ones.
    let path = "/v1/health/ingress/api";
    let all = ok(&agent, Method::GET, path, m, None).await;
    assert_eq!(all.as_array().unwrap().len(), 2, "{all}");
    let seen = ok(&agent, Method::GET, path, Some(&gateway_and_api), None).await;
    let gateways: Vec<&str> = seen
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["Service"]["Service"].as_str().unwrap())
        .collect();
    assert_eq!(gateways, ["ing"]);
    let none = ok(&agent, Method::GET, path, Some(&api_only), None).await;
    assert_eq!(none, json!([]));
    let (st, text) = call(
        Method::GET,
        &agent,
        "/v1/health/ingress/db",
        Some(&api_only),
        None,
    )
    .await;
    assert_eq!(st, 403, "{text}");
    assert!(text.contains("'service:read' on \"db\""), "{text}");

    // operator/usage: operator:read.
    let usage = ok(
        &agent,
        Method::GET,
        "/v1/operator/usage",
        Some(&operator),
        None,
    )
    .await;
    assert!(usage["Usage"]["dc1"]["ServiceInstances"].as_u64().unwrap() >= 2);
    let (st, text) = call(
        Method::GET,
        &agent,
        "/v1/operator/usage",
        Some(&gateway_and_api),
        None,
    )
    .await;
    assert_eq!(st, 403, "{text}");
    assert!(text.contains("'operator:read'"), "{text}");

    // Config entry cas: the entry's own permission, cas or not.
    let web_writer = token_with_policy(
        &agent,
        "web-write",
        "service \"web\" { policy = \"write\" }\n",
    )
    .await;
    let defaults = |name: &str| Some(json!({"Kind": "service-defaults", "Name": name}));
    let (st, text) = call(
        Method::PUT,
        &agent,
        "/v1/config?cas=0",
        Some(&web_writer),
        defaults("web"),
    )
    .await;
    assert_eq!((st.as_u16(), text.trim()), (200, "true"));
    let (st, text) = call(
        Method::PUT,
        &agent,
        "/v1/config?cas=0",
        Some(&web_writer),
        defaults("db"),
    )
    .await;
    assert_eq!(st, 403, "{text}");
}

/// `PUT /v1/agent/token/<kind>` under default deny: `agent:write` on the
/// node; `default` changes what a request without a token may do, at once;
/// the body's key in any case; bad bodies and kinds refused, changing nothing.
#[tokio::test]
async fn the_default_token_is_set_through_the_api_in_any_key_case() {
    let dir = tempfile::tempdir().unwrap();
    let agent = default_deny_agent("surface-token", dir.path()).await;
    let m = Some(MANAGEMENT);
    let writer = token_with_policy(
        &agent,
        "agent-write",
        "agent_prefix \"\" { policy = \"write\" }\n",
    )
    .await;
    let reader = token_with_policy(
        &agent,
        "agent-read",
        "agent_prefix \"\" { policy = \"read\" }\n",
    )
    .await;
    let kv_reader =
        token_with_policy(&agent, "kv-read", "key_prefix \"\" { policy = \"read\" }\n").await;
    ok(
        &agent,
        Method::PUT,
        "/v1/kv/shared/motd",
        m,
        Some(json!("hello")),
    )
    .await;
    // What a request without a token gets: 403 while the default token is
    // the anonymous one, 200 once it can read keys.
    let anonymous_reads = || async {
        let (st, _) = call(Method::GET, &agent, "/v1/kv/shared/motd", None, None).await;
        match st.as_u16() {
            200 => true,
            403 => false,
            other => panic!("GET without a token: {other}"),
        }
    };
    assert!(!anonymous_reads().await);

    let set = |kind: &str, body: String, token: Option<String>| {
        let path = format!("/v1/agent/token/{kind}");
        let agent = &agent;
        async move { raw_put(agent, &path, token.as_deref(), &body).await }
    };
    let w = || Some(writer.clone());
    let body = |key: &str, value: &str| format!(r#"{{"{key}": "{value}"}}"#);

    // agent:read is not enough, and no token at all neither.
    let (st, text) = set("default", body("Token", &kv_reader), Some(reader.clone())).await;
    assert_eq!(st, 403, "{text}");
    assert!(text.contains("'agent:write'"), "{text}");
    let (st, _) = set("default", body("Token", &kv_reader), None).await;
    assert_eq!(st, 403);
    assert!(!anonymous_reads().await);

    // Consul's key, and the same key in other cases, set and clear it.
    for (key, set_to) in [
        ("Token", kv_reader.as_str()),
        ("token", ""),
        ("TOKEN", kv_reader.as_str()),
        ("tOkEn", ""),
    ] {
        let (st, text) = set("default", body(key, set_to), w()).await;
        assert_eq!(st, 200, "{key}: {text}");
        assert_eq!(anonymous_reads().await, !set_to.is_empty(), "{key}");
    }
    // The legacy name of the kind works too.
    let (st, text) = set("acl_token", body("Token", &kv_reader), w()).await;
    assert_eq!(st, 200, "{text}");
    assert!(anonymous_reads().await);

    // Refused, each with a 400 or 404 that says why, changing nothing.
    let twice = format!(r#"{{"Token": "{kv_reader}", "token": ""}}"#);
    let huge = format!(r#"{{"Token": "{}"}}"#, "x".repeat(600 << 10));
    let cases: Vec<(&str, String, u16, &str)> = vec![
        ("default", twice, 400, "duplicate key"),
        ("default", body("Tokn", ""), 400, "unknown key \"Tokn\""),
        ("default", "{}".into(), 400, "Token is missing"),
        ("default", r#"{"Token": 7}"#.into(), 400, "must be a string"),
        ("default", body("Token", "not-a-secret"), 400, "a UUID"),
        ("default", "".into(), 400, "not a JSON object"),
        ("default", "[]".into(), 400, "not a JSON object"),
        ("default", "{".into(), 400, "Request decode failed"),
        ("default", huge, 413, "txn_max_req_len"),
        ("nope", body("Token", ""), 404, "Token \"nope\" is unknown"),
        ("Default", body("Token", ""), 404, "is unknown"),
    ];
    for (kind, body, want, says) in cases {
        let (st, text) = set(kind, body.clone(), w()).await;
        let shown: String = body.chars().take(80).collect();
        assert_eq!(st, want, "{kind} {shown}: {text}");
        assert!(text.contains(says), "{kind} {shown}: {text}");
        assert!(
            !text.contains("not-a-secret"),
            "the value was echoed: {text}"
        );
        assert!(anonymous_reads().await, "{kind} {shown} changed the token");
    }

    // Kinds mesh keeps without using: accepted, no effect on requests.
    for kind in [
        "agent_recovery",
        "agent_master",
        "replication",
        "config_file_service_registration",
        "dns",
    ] {
        let (st, text) = set(kind, body("Token", ""), w()).await;
        assert_eq!(st, 200, "{kind}: {text}");
        assert!(anonymous_reads().await, "{kind}");
    }

    // A reload puts the config files' tokens back (none here).
    ok(&agent, Method::PUT, "/v1/agent/reload", m, None).await;
    assert!(!anonymous_reads().await);
}

/// With ACLs off the agent has no tokens to set: 401, as in Consul.
#[tokio::test]
async fn agent_tokens_need_acls_on() {
    let dir = tempfile::tempdir().unwrap();
    let agent = crate::dev_agent("surface-noacl", &dir.path().join("a")).await;
    let (st, text) = raw_put(
        &agent,
        "/v1/agent/token/default",
        None,
        r#"{"Token": "6d3f6a39-2b1e-4c61-9a51-0e3cbb0f1c11"}"#,
    )
    .await;
    assert_eq!(st, 401, "{text}");
    assert!(text.contains("ACL support disabled"), "{text}");
}

/// The `agent` token is what a client agent writes its own registrations
/// with: without one the servers refuse them; set through the API, they
/// reach the catalog without a restart.
#[tokio::test]
async fn the_agent_token_set_through_the_api_carries_a_client_agents_writes() {
    let dir = tempfile::tempdir().unwrap();
    let conf = acl_config(dir.path());
    let flag = format!("-config-file={}", conf.display());
    let mut cluster = TestCluster::start_with(1, |_, spec| spec.extra.push(flag.clone()))
        .await
        .unwrap();
    let m = Some(MANAGEMENT);
    let server = &cluster.agents[0];
    eventually("ACLs bootstrapped", Duration::from_secs(10), || async {
        let (st, _) = call(Method::GET, server, "/v1/acl/tokens", m, None).await;
        (st == 200).then_some(())
    })
    .await;
    let agent_secret = token_with_policy(
        server,
        "agent-app7",
        "node \"app7\" { policy = \"write\" }\nservice \"api7\" { policy = \"write\" }\n",
    )
    .await;
    // ACLs on, no agent token.
    let client_conf = acl_file(dir.path(), "client.hcl", &[]);
    let mut spec = AgentSpec::client("app7");
    spec.extra
        .push(format!("-config-file={}", client_conf.display()));
    cluster.add(spec).await.unwrap();
    let (server, client) = (&cluster.agents[0], &cluster.agents[1]);
    let (st, text) = register_on_client(client, m, "api7").await;
    assert_eq!(st, 200, "{text}");
    let in_catalog = || async {
        let (st, text) = call(Method::GET, server, "/v1/catalog/service/api7", m, None).await;
        assert_eq!(st, 200, "{text}");
        text.contains("app7")
    };
    // Anti-entropy retries every second; none of its writes gets through.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(!in_catalog().await, "written without an agent token");

    let (st, text) = raw_put(
        client,
        "/v1/agent/token/agent",
        m,
        &format!(r#"{{"token": "{agent_secret}"}}"#),
    )
    .await;
    assert_eq!(st, 200, "{text}");
    eventually(
        "the client's service reaches the catalog",
        Duration::from_secs(15),
        || async { in_catalog().await.then_some(()) },
    )
    .await;

    // The client's own stats: no Raft, the servers it knows.
    let me = ok(client, Method::GET, "/v1/agent/self", m, None).await;
    let consul = &me["Stats"]["consul"];
    assert_eq!(consul["server"], "false", "{me}");
    assert_eq!(consul["known_servers"], "1", "{me}");
    assert!(me["Stats"].get("raft").is_none(), "{me}");
}

/// Force-leave needs operator:write, node maintenance node:write on this
/// node, service maintenance service:write on the service; without them
/// each is a 403 and nothing changes.
#[tokio::test]
async fn force_leave_and_maintenance_are_checked_under_default_deny() {
    let dir = tempfile::tempdir().unwrap();
    let agent = default_deny_agent("maint-acl", dir.path()).await;
    let m = Some(MANAGEMENT);
    ok(
        &agent,
        Method::PUT,
        "/v1/agent/service/register",
        m,
        Some(json!({"Name": "web", "Port": 80})),
    )
    .await;
    let node_writer = token_with_policy(
        &agent,
        "node-w",
        "node \"maint-acl\" { policy = \"write\" }\n",
    )
    .await;
    let web_writer =
        token_with_policy(&agent, "web-w", "service \"web\" { policy = \"write\" }\n").await;
    let operator_read = token_with_policy(&agent, "op-r", "operator = \"read\"\n").await;

    let node_on = "/v1/agent/maintenance?enable=true&reason=swap";
    let web_on = "/v1/agent/service/maintenance/web?enable=true";
    for (path, token) in [
        (node_on, None),
        (node_on, Some(web_writer.as_str())),
        (web_on, None),
        (web_on, Some(node_writer.as_str())),
        ("/v1/agent/force-leave/nobody", None),
        ("/v1/agent/force-leave/nobody", Some(operator_read.as_str())),
    ] {
        let (st, text) = call(Method::PUT, &agent, path, token, None).await;
        assert_eq!(st, 403, "{path} with {token:?}: {text}");
    }
    let checks = ok(&agent, Method::GET, "/v1/agent/checks", m, None).await;
    let maintenance = checks
        .as_object()
        .unwrap()
        .keys()
        .filter(|id| id.contains("maintenance"))
        .count();
    assert_eq!(
        maintenance, 0,
        "no refused request changed anything: {checks}"
    );

    ok(&agent, Method::PUT, node_on, Some(&node_writer), None).await;
    ok(&agent, Method::PUT, web_on, Some(&web_writer), None).await;
    let checks = ok(&agent, Method::GET, "/v1/agent/checks", m, None).await;
    assert!(checks["_node_maintenance"].is_object(), "{checks}");
    assert!(checks["_service_maintenance:web"].is_object(), "{checks}");
    // With operator:write the request gets through to gossip: no such member.
    let (st, text) = call(Method::PUT, &agent, "/v1/agent/force-leave/nobody", m, None).await;
    assert_eq!(st, 404, "{text}");
}
