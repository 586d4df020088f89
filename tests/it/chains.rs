//! Discovery chains: bad routers, splitters and resolvers are refused when
//! written (nothing stored), `/v1/discovery-chain` answers in Consul's
//! shape under ACLs, and resolvers change where live traffic goes through
//! the built-in proxy: default subsets, redirects, failover and back.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::Duration;

use mesh_testkit::{eventually, TestAgent};
use reqwest::Method;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::acl::{acl_config, call, MANAGEMENT};
use crate::proxy::{connect_proxy, free_port};

async fn put_entry(a: &TestAgent, body: Value) -> (u16, String) {
    let (st, text) = call(Method::PUT, a, "/v1/config", Some(MANAGEMENT), Some(body)).await;
    (st.as_u16(), text)
}

async fn stored(a: &TestAgent, kind: &str, name: &str) -> bool {
    let (st, _) = call(
        Method::GET,
        a,
        &format!("/v1/config/{kind}/{name}"),
        Some(MANAGEMENT),
        None,
    )
    .await;
    st == 200
}

#[tokio::test]
async fn bad_chains_are_refused_when_written_and_nothing_is_stored() {
    let dir = tempfile::tempdir().unwrap();
    let a = crate::dev_agent("chains", dir.path()).await;
    let ok = |(st, text): (u16, String)| assert_eq!(st, 200, "{text}");
    let refused = |(st, text): (u16, String), want: &str| {
        assert_eq!(st, 400, "{text}");
        assert!(text.contains(want), "{text:?} should say {want:?}");
    };

    // A split that sums to 99: the entry and the field are named.
    ok(put_entry(
        &a,
        json!({"Kind": "service-defaults", "Name": "web", "Protocol": "http"}),
    )
    .await);
    refused(
        put_entry(
            &a,
            json!({"Kind": "service-splitter", "Name": "web",
                   "Splits": [{"Weight": 90}, {"Weight": 9}]}),
        )
        .await,
        "service-splitter \"web\": Splits: the weights sum to 99, not 100",
    );
    assert!(!stored(&a, "service-splitter", "web").await);

    // A redirect loop, found across two entries.
    ok(put_entry(
        &a,
        json!({"Kind": "service-resolver", "Name": "a", "Redirect": {"Service": "b"}}),
    )
    .await);
    refused(
        put_entry(
            &a,
            json!({"Kind": "service-resolver", "Name": "b", "Redirect": {"Service": "a"}}),
        )
        .await,
        "redirect loop",
    );
    assert!(!stored(&a, "service-resolver", "b").await);

    // Failover to a subset the other service does not define.
    refused(
        put_entry(
            &a,
            json!({"Kind": "service-resolver", "Name": "db",
                   "Failover": {"*": {"Service": "db-replica", "ServiceSubset": "v9"}}}),
        )
        .await,
        "service-resolver \"db\": Failover[\"*\"]: service \"db-replica\" has no subset named \"v9\"",
    );
    // An unknown protocol, in snake_case keys this time.
    refused(
        put_entry(
            &a,
            json!({"kind": "service-defaults", "name": "db", "protocol": "udp"}),
        )
        .await,
        "service-defaults \"db\": Protocol: unknown protocol \"udp\"",
    );
    assert!(!stored(&a, "service-defaults", "db").await);
    // Routes on a tcp service.
    refused(
        put_entry(
            &a,
            json!({"Kind": "service-router", "Name": "db", "Routes": []}),
        )
        .await,
        "speaks tcp",
    );

    // A change that breaks a chain that works is refused, and so is a
    // delete: the splitter needs the resolver's subset.
    ok(put_entry(
        &a,
        json!({"Kind": "service-resolver", "Name": "web", "Subsets": {"v1": {"Filter": "Service.Meta.version == v1"}}}),
    )
    .await);
    ok(put_entry(
        &a,
        json!({"Kind": "service-splitter", "Name": "web", "Splits": [{"Weight": 100, "ServiceSubset": "v1"}]}),
    )
    .await);
    refused(
        put_entry(
            &a,
            json!({"Kind": "service-resolver", "Name": "web", "Subsets": {}}),
        )
        .await,
        "no subset named \"v1\"",
    );
    let (st, text) = call(
        Method::DELETE,
        &a,
        "/v1/config/service-resolver/web",
        Some(MANAGEMENT),
        None,
    )
    .await;
    assert_eq!(st, 400, "{text}");
    assert!(stored(&a, "service-resolver", "web").await);
    refused(
        put_entry(
            &a,
            json!({"Kind": "service-defaults", "Name": "web", "Protocol": "tcp"}),
        )
        .await,
        "speaks tcp",
    );
}

#[tokio::test]
async fn the_discovery_chain_answers_in_consuls_shape_under_acls() {
    let dir = tempfile::tempdir().unwrap();
    let conf = acl_config(dir.path());
    let mut spec = mesh_testkit::AgentSpec::server("chains-acl", 1);
    spec.extra = vec!["-dev".into(), format!("-config-file={}", conf.display())];
    let a = TestAgent::start(spec, &dir.path().join("data"))
        .await
        .unwrap();
    for entry in [
        json!({"Kind": "service-defaults", "Name": "web", "Protocol": "http"}),
        json!({"Kind": "service-defaults", "Name": "admin", "Protocol": "http"}),
        json!({"Kind": "service-resolver", "Name": "web", "DefaultSubset": "v1", "ConnectTimeout": "3s",
               "Subsets": {"v1": {"Filter": "Service.Meta.version == v1"}, "v2": {"Filter": "Service.Meta.version == v2"}}}),
        // Other key cases than Consul's: the same entry.
        json!({"kind": "service-splitter", "name": "web",
               "splits": [{"weight": 90, "service_subset": "v1"}, {"WEIGHT": 10, "ServiceSubset": "v2"}]}),
        json!({"Kind": "service-router", "Name": "web",
               "Routes": [{"Match": {"HTTP": {"PathPrefix": "/admin"}}, "Destination": {"Service": "admin"}}]}),
    ] {
        let (st, text) = put_entry(&a, entry).await;
        assert_eq!(st, 200, "{text}");
    }
    let path = "/v1/discovery-chain/web";
    let (st, _) = call(Method::GET, &a, path, None, None).await;
    assert_eq!(st, 403, "default deny: service:read on web is needed");
    let (st, text) = call(Method::GET, &a, path, Some(MANAGEMENT), None).await;
    assert_eq!(st, 200, "{text}");
    let v: Value = serde_json::from_str(&text).unwrap();
    let chain = &v["Chain"];
    assert_eq!(chain["ServiceName"], "web");
    assert_eq!(chain["Protocol"], "http");
    assert_eq!(chain["Datacenter"], "dc1");
    assert_eq!(chain["StartNode"], "router:web.default.default");
    let nodes = &chain["Nodes"];
    let routes = nodes["router:web.default.default"]["Routes"]
        .as_array()
        .unwrap();
    assert_eq!(routes.len(), 2, "{routes:?}");
    assert_eq!(routes[0]["NextNode"], "resolver:admin.default.default.dc1");
    assert_eq!(
        routes[0]["Definition"]["Match"]["HTTP"]["PathPrefix"],
        "/admin"
    );
    assert_eq!(routes[1]["NextNode"], "splitter:web.default.default");
    let splits = nodes["splitter:web.default.default"]["Splits"]
        .as_array()
        .unwrap();
    assert_eq!(splits[0]["Weight"], 90.0);
    assert_eq!(splits[0]["NextNode"], "resolver:v1.web.default.default.dc1");
    let v2 = &chain["Targets"]["v2.web.default.default.dc1"];
    assert_eq!(v2["Service"], "web");
    assert_eq!(v2["ServiceSubset"], "v2");
    assert_eq!(v2["Subset"]["Filter"], "Service.Meta.version == v2");
    assert_eq!(v2["ConnectTimeout"], "3s");
    assert!(
        v2["SNI"]
            .as_str()
            .unwrap()
            .starts_with("v2.web.default.dc1.internal."),
        "{v2}"
    );
}

/// A TCP server that answers every connection with its name.
pub(crate) async fn named_server(name: &'static str) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let _ = s.write_all(name.as_bytes()).await;
                let _ = s.shutdown().await;
            });
        }
    });
    addr
}

/// Who answers through `upstream`, if anyone does.
async fn answered_by(upstream: SocketAddr) -> Option<String> {
    let mut s = tokio::time::timeout(Duration::from_secs(3), TcpStream::connect(upstream))
        .await
        .ok()?
        .ok()?;
    let mut name = String::new();
    tokio::time::timeout(Duration::from_secs(3), s.read_to_string(&mut name))
        .await
        .ok()?
        .ok()?;
    (!name.is_empty()).then_some(name)
}

/// Waits until `n` connections in a row are answered by `want`.
async fn served_by(upstream: SocketAddr, want: &str, why: &str) {
    eventually(why, Duration::from_secs(20), || async {
        for _ in 0..5 {
            if answered_by(upstream).await.as_deref() != Some(want) {
                return None;
            }
        }
        Some(())
    })
    .await;
}

#[tokio::test]
async fn resolvers_pick_subsets_redirect_and_fail_over_live_traffic() {
    let dir = tempfile::tempdir().unwrap();
    let a = crate::dev_agent("chains-live", dir.path()).await;
    let register = |body: Value| {
        let a = &a;
        async move {
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
    };
    for (id, name, version) in [
        ("db-v1", named_server("v1").await, "v1"),
        ("db-v2", named_server("v2").await, "v2"),
    ] {
        register(json!({"Name": "db", "ID": id, "Port": name.port(), "Address": "127.0.0.1",
                        "Meta": {"version": version},
                        "Check": {"TTL": "600s", "Status": "passing"},
                        "Connect": {"SidecarService": {"Port": free_port(), "Address": "127.0.0.1"}}}))
        .await;
    }
    register(json!({"Name": "web", "ID": "web", "Port": 1,
                    "Connect": {"SidecarService": {"Port": free_port(), "Address": "127.0.0.1",
                        "Proxy": {"Upstreams": [{"DestinationName": "db", "LocalBindPort": 0},
                                                 {"DestinationName": "legacy-db", "LocalBindPort": 0}]}}}}))
    .await;
    let _db1 = connect_proxy(&a, &["-sidecar-for", "db-v1"]).await;
    let _db2 = connect_proxy(&a, &["-sidecar-for", "db-v2"]).await;
    let web = connect_proxy(&a, &["-sidecar-for", "web"]).await;
    let (db, legacy) = (web.upstream("db"), web.upstream("legacy-db"));
    eventually("db answers", Duration::from_secs(20), || answered_by(db)).await;

    // The default subset: every connection to v1.
    let (st, text) = put_entry(
        &a,
        json!({"Kind": "service-resolver", "Name": "db", "DefaultSubset": "v1",
               "Subsets": {"v1": {"Filter": "Service.Meta.version == v1"},
                           "v2": {"Filter": "Service.Meta.version == v2"}},
               "Failover": {"v1": {"ServiceSubset": "v2"}}}),
    )
    .await;
    assert_eq!(st, 200, "{text}");
    served_by(db, "v1", "the default subset v1").await;

    // A redirect: legacy-db is db (its default subset, v1).
    let (st, text) = put_entry(
        &a,
        json!({"Kind": "service-resolver", "Name": "legacy-db", "Redirect": {"Service": "db"}}),
    )
    .await;
    assert_eq!(st, 200, "{text}");
    served_by(legacy, "v1", "legacy-db redirected to db").await;

    // v1 critical: failover to v2; v1 passing again: back.
    for (verb, want, why) in [
        ("fail", "v2", "failover to v2 while v1 is critical"),
        ("pass", "v1", "back to v1 once it passes"),
    ] {
        let path = format!("/v1/agent/check/{verb}/service:db-v1");
        let (st, text) = call(Method::PUT, &a, &path, Some(MANAGEMENT), None).await;
        assert_eq!(st, 200, "{text}");
        served_by(db, want, why).await;
    }
}

fn canary_file(v1: u32, v2: u32) -> String {
    format!(
        r#"config_entry {{
  kind     = "service-defaults"
  name     = "shop"
  protocol = "http"
}}

config_entry {{
  kind = "service-resolver"
  name = "shop"
  subsets = {{
    v1 = {{ filter = "Service.Meta.version == v1" }}
    v2 = {{ filter = "Service.Meta.version == v2" }}
  }}
}}

config_entry {{
  kind   = "service-splitter"
  name   = "shop"
  splits = [
    {{ weight = {v1}, service_subset = "v1" }},
    {{ weight = {v2}, service_subset = "v2" }},
  ]
}}
"#
    )
}

#[tokio::test]
async fn a_chain_declared_in_mesh_d_is_checked_as_a_whole_and_a_bad_edit_keeps_the_last_good() {
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("mesh.d");
    std::fs::create_dir_all(&conf).unwrap();
    // The splitter needs the resolver's subsets, declared in the same change.
    std::fs::write(conf.join("shop.hcl"), canary_file(90, 10)).unwrap();
    let mut spec = mesh_testkit::AgentSpec::server("node1", 1);
    spec.extra = vec!["-dev".into(), format!("-config-dir={}", conf.display())];
    let a = TestAgent::start(spec, &dir.path().join("data"))
        .await
        .unwrap();
    let weights = || async {
        let (st, text) = call(
            Method::GET,
            &a,
            "/v1/discovery-chain/shop",
            Some(MANAGEMENT),
            None,
        )
        .await;
        (st == 200).then_some(())?;
        let v: Value = serde_json::from_str(&text).ok()?;
        let splits = v["Chain"]["Nodes"]["splitter:shop.default.default"]["Splits"]
            .as_array()?
            .clone();
        Some(
            splits
                .iter()
                .map(|s| s["Weight"].as_f64().unwrap_or(-1.0))
                .collect::<Vec<_>>(),
        )
    };
    let first = eventually("the canary applied", Duration::from_secs(10), weights).await;
    assert_eq!(first, vec![90.0, 10.0]);

    // 50/49: refused at the file and field, the 90/10 chain stays.
    let path = conf.join("shop.hcl");
    let tmp = conf.join(".shop.hcl.tmp");
    std::fs::write(&tmp, canary_file(50, 49)).unwrap();
    std::fs::rename(&tmp, &path).unwrap();
    let status = eventually("the bad edit reported", Duration::from_secs(10), || async {
        let v = crate::fetch_json(&crate::http(), a.url("/v1/agent/self")).await;
        (v["ConfigStatus"]["Ok"] == false).then(|| v["ConfigStatus"].clone())
    })
    .await;
    let error = status["Errors"][0].as_str().unwrap_or_default().to_string();
    assert!(
        error.contains("shop.hcl:") && error.contains("Splits: the weights sum to 99"),
        "{status}"
    );
    assert_eq!(weights().await.unwrap(), vec![90.0, 10.0]);

    // A good edit applies without a restart.
    std::fs::write(&tmp, canary_file(50, 50)).unwrap();
    std::fs::rename(&tmp, &path).unwrap();
    eventually("50/50 applied", Duration::from_secs(10), || async {
        (weights().await? == vec![50.0, 50.0]).then_some(())
    })
    .await;
}

/// How a test HTTP backend answers.
#[derive(Clone, Copy)]
pub(crate) enum Behaviour {
    /// 200 with `<name> <path>`.
    Normal,
    /// 503 on every other request.
    FailEveryOther,
    /// 503 on every request.
    FailAlways,
    /// Answers after this long.
    Slow(Duration),
}

/// An HTTP/1.1 backend with keep-alive, answering `<name> <path>`.
pub(crate) async fn http_backend(name: &'static str, behaviour: Behaviour) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let served = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let served = served.clone();
            tokio::spawn(async move {
                let mut seen = Vec::new();
                let mut buf = [0u8; 4096];
                loop {
                    let end = loop {
                        if let Some(i) = seen.windows(4).position(|w| w == b"\r\n\r\n") {
                            break i + 4;
                        }
                        match s.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => seen.extend_from_slice(&buf[..n]),
                        }
                    };
                    let head = String::from_utf8_lossy(&seen[..end]).to_string();
                    seen.drain(..end);
                    let path = head.split_whitespace().nth(1).unwrap_or("?").to_string();
                    let n = served.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    let (status, body) = match behaviour {
                        Behaviour::FailEveryOther if n.is_multiple_of(2) => {
                            ("503 Service Unavailable", "failed".to_string())
                        }
                        Behaviour::FailAlways => ("503 Service Unavailable", "failed".to_string()),
                        Behaviour::Slow(d) => {
                            tokio::time::sleep(d).await;
                            ("200 OK", format!("{name} {path}"))
                        }
                        _ => ("200 OK", format!("{name} {path}")),
                    };
                    let reply = format!(
                        "HTTP/1.1 {status}\r\nContent-Length: {}\r\n\r\n{body}",
                        body.len()
                    );
                    if s.write_all(reply.as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr
}

/// Registers `id` of service `name` with a sidecar, and starts the sidecar.
pub(crate) async fn with_sidecar(
    a: &TestAgent,
    name: &str,
    id: &str,
    app: SocketAddr,
    meta: Value,
) -> crate::proxy::Sidecar {
    let (st, text) = call(
        Method::PUT,
        a,
        "/v1/agent/service/register",
        Some(MANAGEMENT),
        Some(
            json!({"Name": name, "ID": id, "Port": app.port(), "Address": "127.0.0.1", "Meta": meta,
                    "Connect": {"SidecarService": {"Port": free_port(), "Address": "127.0.0.1"}}}),
        ),
    )
    .await;
    assert_eq!(st, 200, "{text}");
    connect_proxy(a, &["-sidecar-for", id]).await
}

/// The web sidecar, calling `upstream` on a local port.
async fn caller(a: &TestAgent, upstream: &str) -> (crate::proxy::Sidecar, String) {
    let (st, text) = call(
        Method::PUT,
        a,
        "/v1/agent/service/register",
        Some(MANAGEMENT),
        Some(json!({"Name": "web", "ID": "web", "Port": 1,
                    "Connect": {"SidecarService": {"Port": free_port(), "Address": "127.0.0.1",
                        "Proxy": {"Upstreams": [{"DestinationName": upstream, "LocalBindPort": 0}]}}}})),
    )
    .await;
    assert_eq!(st, 200, "{text}");
    let web = connect_proxy(a, &["-sidecar-for", "web"]).await;
    let base = format!("http://{}", web.upstream(upstream));
    (web, base)
}

/// One keep-alive connection's worth of client.
fn keep_alive_client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(1)
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

async fn get(c: &reqwest::Client, url: &str, header: Option<(&str, &str)>) -> (u16, String) {
    let mut r = c.get(url);
    if let Some((k, v)) = header {
        r = r.header(k, v);
    }
    match r.send().await {
        Ok(resp) => (
            resp.status().as_u16(),
            resp.text().await.unwrap_or_default(),
        ),
        Err(e) => (0, e.to_string()),
    }
}

/// Waits until 100 requests in a row all succeed and reach both subsets.
async fn both_subsets_answer(c: &reqwest::Client, base: &str) {
    eventually("both subsets answer", Duration::from_secs(30), || async {
        let mut seen = BTreeSet::new();
        for _ in 0..100 {
            let (st, body) = get(c, base, None).await;
            (st == 200).then_some(())?;
            seen.insert(body.split(' ').next().unwrap_or_default().to_string());
        }
        (seen.len() == 2).then_some(())
    })
    .await;
}

/// The share of `n` requests answered by a body starting with `who`.
async fn share(c: &reqwest::Client, url: &str, who: &str, n: usize) -> f64 {
    let mut hits = 0;
    for _ in 0..n {
        let (st, body) = get(c, url, None).await;
        assert_eq!(st, 200, "{body}");
        hits += usize::from(body.starts_with(who));
    }
    hits as f64 / n as f64
}

#[tokio::test]
async fn a_canary_split_holds_its_weights_and_a_mesh_d_change_applies_to_keep_alive_connections() {
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("mesh.d");
    std::fs::create_dir_all(&conf).unwrap();
    std::fs::write(conf.join("shop.hcl"), canary_file(90, 10)).unwrap();
    let mut spec = mesh_testkit::AgentSpec::server("node1", 1);
    spec.extra = vec!["-dev".into(), format!("-config-dir={}", conf.display())];
    let a = TestAgent::start(spec, &dir.path().join("data"))
        .await
        .unwrap();
    let v1 = http_backend("v1", Behaviour::Normal).await;
    let v2 = http_backend("v2", Behaviour::Normal).await;
    let _s1 = with_sidecar(&a, "shop", "shop-v1", v1, json!({"version": "v1"})).await;
    let _s2 = with_sidecar(&a, "shop", "shop-v2", v2, json!({"version": "v2"})).await;
    let (_web, base) = caller(&a, "shop").await;
    let c = keep_alive_client();
    both_subsets_answer(&c, &base).await;

    let v2_share = share(&c, &base, "v2", 10_000).await;
    assert!(
        (0.08..=0.12).contains(&v2_share),
        "v2 got {v2_share:.4} of 10,000 (weight 10)"
    );

    // 50/50 in the file: the same keep-alive client sees it.
    let path = conf.join("shop.hcl");
    let tmp = conf.join(".shop.hcl.tmp");
    std::fs::write(&tmp, canary_file(50, 50)).unwrap();
    std::fs::rename(&tmp, &path).unwrap();
    eventually("the new weights apply", Duration::from_secs(20), || async {
        let s = share(&c, &base, "v2", 400).await;
        (0.4..=0.6).contains(&s).then_some(())
    })
    .await;
    let v2_share = share(&c, &base, "v2", 2_000).await;
    assert!(
        (0.45..=0.55).contains(&v2_share),
        "v2 got {v2_share:.4} of 2,000 (weight 50)"
    );
}

#[tokio::test]
async fn routes_by_path_and_header_rewrite_retry_and_time_out() {
    let dir = tempfile::tempdir().unwrap();
    let a = crate::dev_agent("routes", dir.path()).await;
    let mut sidecars = Vec::new();
    for (name, behaviour) in [
        ("api", Behaviour::Normal),
        ("admin", Behaviour::Normal),
        ("beta", Behaviour::Normal),
        ("flaky", Behaviour::FailEveryOther),
        ("slow", Behaviour::Slow(Duration::from_secs(5))),
    ] {
        let (st, text) = put_entry(
            &a,
            json!({"Kind": "service-defaults", "Name": name, "Protocol": "http"}),
        )
        .await;
        assert_eq!(st, 200, "{text}");
        let app = http_backend(name, behaviour).await;
        sidecars.push(with_sidecar(&a, name, name, app, json!({})).await);
    }
    let (st, text) = put_entry(
        &a,
        json!({"Kind": "service-router", "Name": "api", "Routes": [
            {"Match": {"HTTP": {"PathPrefix": "/admin/"}},
             "Destination": {"Service": "admin", "PrefixRewrite": "/"}},
            {"Match": {"HTTP": {"Header": [{"Name": "x-beta", "Exact": "1"}]}},
             "Destination": {"Service": "beta"}},
            {"Match": {"HTTP": {"PathPrefix": "/flaky"}},
             "Destination": {"Service": "flaky", "NumRetries": 2, "RetryOnStatusCodes": [503]}},
            {"Match": {"HTTP": {"PathPrefix": "/slow"}},
             "Destination": {"Service": "slow", "RequestTimeout": "500ms"}}
        ]}),
    )
    .await;
    assert_eq!(st, 200, "{text}");
    let (_web, base) = caller(&a, "api").await;
    let c = keep_alive_client();
    eventually("the router applies", Duration::from_secs(20), || async {
        let (st, body) = get(&c, &format!("{base}/admin/users"), None).await;
        (st == 200 && body == "admin /users").then_some(())
    })
    .await;
    assert_eq!(
        get(&c, &format!("{base}/home"), None).await,
        (200, "api /home".into())
    );
    assert_eq!(
        get(&c, &format!("{base}/home"), Some(("x-beta", "1"))).await,
        (200, "beta /home".into())
    );
    // Every other answer of flaky is a 503; with retries the client sees none.
    for i in 0..20 {
        let (st, body) = get(&c, &format!("{base}/flaky/{i}"), None).await;
        assert_eq!(
            (st, body.as_str()),
            (200, format!("flaky /flaky/{i}").as_str())
        );
    }
    // The slow backend answers after 5 s; the route's timeout answers 504 first.
    let started = std::time::Instant::now();
    let (st, _) = get(&c, &format!("{base}/slow"), None).await;
    let took = started.elapsed();
    assert_eq!(st, 504);
    assert!(
        took >= Duration::from_millis(450) && took < Duration::from_secs(4),
        "{took:?}"
    );
}

#[tokio::test]
async fn envoy_follows_the_same_routes_splits_and_retries() {
    let envoy = crate::envoy::envoy_bin().await;
    let dir = tempfile::tempdir().unwrap();
    let a = crate::envoy::xds_agent(&dir.path().join("data"), &[]).await;
    for name in ["shop", "flaky"] {
        let (st, text) = put_entry(
            &a,
            json!({"Kind": "service-defaults", "Name": name, "Protocol": "http"}),
        )
        .await;
        assert_eq!(st, 200, "{text}");
    }
    let v1 = http_backend("v1", Behaviour::Normal).await;
    let v2 = http_backend("v2", Behaviour::Normal).await;
    let flaky = http_backend("flaky", Behaviour::FailEveryOther).await;
    let _s1 = with_sidecar(&a, "shop", "shop-v1", v1, json!({"version": "v1"})).await;
    let _s2 = with_sidecar(&a, "shop", "shop-v2", v2, json!({"version": "v2"})).await;
    let _f = with_sidecar(&a, "flaky", "flaky", flaky, json!({})).await;
    for entry in [
        json!({"Kind": "service-resolver", "Name": "shop",
               "Subsets": {"v1": {"Filter": "Service.Meta.version == v1"}, "v2": {"Filter": "Service.Meta.version == v2"}}}),
        json!({"Kind": "service-splitter", "Name": "shop",
               "Splits": [{"Weight": 90, "ServiceSubset": "v1"}, {"Weight": 10, "ServiceSubset": "v2"}]}),
        json!({"Kind": "service-router", "Name": "shop", "Routes": [
            {"Match": {"HTTP": {"Header": [{"Name": "x-flaky", "Present": true}]}},
             "Destination": {"Service": "flaky", "NumRetries": 2, "RetryOnStatusCodes": [503]}}]}),
    ] {
        let (st, text) = put_entry(&a, entry).await;
        assert_eq!(st, 200, "{text}");
    }
    let port = free_port();
    let (st, text) = call(
        Method::PUT,
        &a,
        "/v1/agent/service/register",
        Some(MANAGEMENT),
        Some(json!({"Name": "web", "ID": "web", "Port": 1,
                    "Connect": {"SidecarService": {"Port": free_port(), "Address": "127.0.0.1",
                        "Proxy": {"Upstreams": [{"DestinationName": "shop", "LocalBindPort": port}]}}}})),
    )
    .await;
    assert_eq!(st, 200, "{text}");
    let _web = crate::envoy::Envoy::start(&a, &envoy, "web", dir.path()).await;
    let base = format!("http://127.0.0.1:{port}");
    let c = keep_alive_client();
    both_subsets_answer(&c, &base).await;
    let v2_share = share(&c, &base, "v2", 2_000).await;
    assert!(
        (0.07..=0.13).contains(&v2_share),
        "v2 got {v2_share:.4} of 2,000 (weight 10)"
    );
    for i in 0..10 {
        let (st, body) = get(&c, &format!("{base}/f/{i}"), Some(("x-flaky", "1"))).await;
        assert_eq!(
            (st, body),
            (200, format!("flaky /f/{i}")),
            "retried past the 503s"
        );
    }
    // New weights reach Envoy over xDS; the same keep-alive client sees them.
    let (st, text) = put_entry(
        &a,
        json!({"Kind": "service-splitter", "Name": "shop",
               "Splits": [{"Weight": 50, "ServiceSubset": "v1"}, {"Weight": 50, "ServiceSubset": "v2"}]}),
    )
    .await;
    assert_eq!(st, 200, "{text}");
    eventually(
        "Envoy takes the new weights",
        Duration::from_secs(20),
        || async {
            let s = share(&c, &base, "v2", 400).await;
            (0.4..=0.6).contains(&s).then_some(())
        },
    )
    .await;
}

#[tokio::test]
async fn a_ring_hash_on_a_header_keeps_each_user_on_one_instance() {
    let dir = tempfile::tempdir().unwrap();
    let a = crate::dev_agent("ring-hash", dir.path()).await;
    for entry in [
        json!({"Kind": "service-defaults", "Name": "cart", "Protocol": "http"}),
        json!({"Kind": "service-resolver", "Name": "cart", "LoadBalancer": {
            "Policy": "ring_hash", "HashPolicies": [{"Field": "header", "FieldValue": "x-user"}]}}),
    ] {
        let (st, text) = put_entry(&a, entry).await;
        assert_eq!(st, 200, "{text}");
    }
    let one = http_backend("one", Behaviour::Normal).await;
    let two = http_backend("two", Behaviour::Normal).await;
    let _s1 = with_sidecar(&a, "cart", "cart-1", one, json!({})).await;
    let _s2 = with_sidecar(&a, "cart", "cart-2", two, json!({})).await;
    let (_web, base) = caller(&a, "cart").await;
    let c = keep_alive_client();
    let who = |user: usize| {
        let (c, base) = (&c, &base);
        async move {
            let user = format!("u{user}");
            let (st, body) = get(c, base, Some(("x-user", &user))).await;
            (st == 200).then(|| body.split(' ').next().unwrap_or_default().to_string())
        }
    };
    eventually("both instances serve", Duration::from_secs(20), || async {
        let mut seen = BTreeSet::new();
        for user in 0..40 {
            seen.insert(who(user).await?);
        }
        (seen.len() == 2).then_some(())
    })
    .await;
    for user in 0..40 {
        let first = who(user).await.expect("answered");
        for _ in 0..5 {
            assert_eq!(
                who(user).await.as_deref(),
                Some(first.as_str()),
                "user u{user}"
            );
        }
    }
}

#[tokio::test]
async fn a_callers_upstream_config_ejects_failing_instances_and_caps_requests_and_connections() {
    let dir = tempfile::tempdir().unwrap();
    let a = crate::dev_agent("upstream-config", dir.path()).await;
    for entry in [
        json!({"Kind": "service-defaults", "Name": "pay", "Protocol": "http"}),
        json!({"Kind": "service-defaults", "Name": "slow", "Protocol": "http"}),
        json!({"Kind": "service-defaults", "Name": "web", "UpstreamConfig": {
            "Defaults": {"PassiveHealthCheck": {"MaxFailures": 3, "BaseEjectionTime": "60s", "MaxEjectionPercent": 50}},
            "Overrides": [
                {"Name": "slow", "Limits": {"MaxConcurrentRequests": 1}},
                {"Name": "db", "Limits": {"MaxConnections": 1}}]}}),
    ] {
        let (st, text) = put_entry(&a, entry).await;
        assert_eq!(st, 200, "{text}");
    }
    let ok = http_backend("ok", Behaviour::Normal).await;
    let bad = http_backend("bad", Behaviour::FailAlways).await;
    let slow = http_backend("slow", Behaviour::Slow(Duration::from_millis(800))).await;
    let _ok = with_sidecar(&a, "pay", "pay-ok", ok, json!({})).await;
    let _bad = with_sidecar(&a, "pay", "pay-bad", bad, json!({})).await;
    let _slow = with_sidecar(&a, "slow", "slow", slow, json!({})).await;
    let _db = with_sidecar(&a, "db", "db", crate::proxy::echo_server().await, json!({})).await;
    let (st, text) = call(
        Method::PUT,
        &a,
        "/v1/agent/service/register",
        Some(MANAGEMENT),
        Some(json!({"Name": "web", "ID": "web", "Port": 1,
                    "Connect": {"SidecarService": {"Port": free_port(), "Address": "127.0.0.1",
                        "Proxy": {"Upstreams": [
                            {"DestinationName": "pay", "LocalBindPort": 0},
                            {"DestinationName": "slow", "LocalBindPort": 0},
                            {"DestinationName": "db", "LocalBindPort": 0}]}}}})),
    )
    .await;
    assert_eq!(st, 200, "{text}");
    let web = connect_proxy(&a, &["-sidecar-for", "web"]).await;
    let c = keep_alive_client();

    // The instance that answers 503 is ejected after 3 in a row.
    let pay = format!("http://{}", web.upstream("pay"));
    eventually(
        "the failing instance is ejected",
        Duration::from_secs(20),
        || async {
            for _ in 0..20 {
                if get(&c, &pay, None).await != (200, "ok /".to_string()) {
                    return None;
                }
            }
            Some(())
        },
    )
    .await;

    // One request at a time to slow: of three at once, the others get 503.
    let slow = format!("http://{}", web.upstream("slow"));
    let (c1, c2, c3) = (
        keep_alive_client(),
        keep_alive_client(),
        keep_alive_client(),
    );
    eventually("slow answers", Duration::from_secs(20), || async {
        (get(&c1, &slow, None).await.0 == 200).then_some(())
    })
    .await;
    let (r1, r2, r3) = tokio::join!(
        get(&c1, &slow, None),
        get(&c2, &slow, None),
        get(&c3, &slow, None)
    );
    let codes = [r1.0, r2.0, r3.0];
    assert!(codes.contains(&200), "{codes:?}");
    assert!(codes.contains(&503), "{codes:?}");
    assert!([r1, r2, r3]
        .iter()
        .any(|(_, b)| b.contains("MaxConcurrentRequests")));

    // One connection at a time to db: a second one is closed at once.
    let db = web.upstream("db");
    eventually("db echoes", Duration::from_secs(20), || async {
        crate::proxy::roundtrip(db, b"one").await.ok()
    })
    .await;
    // (The probes' connections may still be closing: wait for a live one.)
    let _live = eventually("a live connection", Duration::from_secs(10), || async {
        let mut live = TcpStream::connect(db).await.ok()?;
        live.write_all(b"ping").await.ok()?;
        let mut buf = [0u8; 4];
        live.read_exact(&mut buf).await.ok()?;
        Some(live)
    })
    .await;
    eventually(
        "a second connection is refused",
        Duration::from_secs(10),
        || async {
            crate::proxy::roundtrip(db, b"two")
                .await
                .is_err()
                .then_some(())
        },
    )
    .await;
}
