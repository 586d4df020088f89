//! DNS through a full agent: a registration is answered by `dig` (bind9-dnsutils).

use std::time::Duration;

use mesh_testkit::{eventually, AgentSpec, TestAgent};
use serde_json::json;

use crate::http;

pub(crate) async fn dig(server: std::net::SocketAddr, args: &[&str]) -> String {
    let out = tokio::process::Command::new(mesh_testkit::require_tool(
        "dig",
        "scripts/setup.sh installs Debian's bind9-dnsutils",
    ))
    .arg(format!("@{}", server.ip()))
    .arg("-p")
    .arg(server.port().to_string())
    .args(["+time=2", "+tries=1"])
    .args(args)
    .kill_on_drop(true)
    .output()
    .await
    .expect("dig is installed (scripts/setup.sh installs bind9-dnsutils)");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Asserts `name` has no `qtype` answer by the server's own word: NXDOMAIN,
/// or NOERROR with no answers. REFUSED, SERVFAIL or no reply at all fail,
/// as they say nothing about the name.
async fn assert_absent(server: std::net::SocketAddr, name: &str, qtype: &str) {
    let out = dig(server, &["+noall", "+comments", name, qtype]).await;
    let status = out
        .split("status: ")
        .nth(1)
        .and_then(|s| s.split(',').next())
        .unwrap_or("no reply");
    assert!(
        status == "NXDOMAIN" || status == "NOERROR",
        "{name} {qtype}: {status}\n{out}"
    );
    assert!(out.contains("ANSWER: 0,"), "{name} {qtype}: {out}");
}

#[tokio::test]
async fn registered_services_answer_by_dns_and_critical_ones_do_not() {
    let dir = tempfile::tempdir().unwrap();
    let mut spec = AgentSpec::server("dnsnode", 1);
    spec.extra.push("-dev".into());
    spec.dns = true;
    let agent = TestAgent::start(spec, &dir.path().join("a")).await.unwrap();
    let dns = agent.dns.expect("agent serves DNS");
    let c = http();
    for (id, addr, status) in [
        ("web1", "127.0.0.11", "passing"),
        ("web2", "127.0.0.12", "critical"),
    ] {
        let r = c
            .put(agent.url("/v1/catalog/register"))
            .json(&json!({"Node": format!("n-{id}"), "Address": addr,
                          "Service": {"Service": "web", "ID": id, "Port": 80, "Tags": ["v1"]},
                          "Check": {"CheckID": format!("{id}-ok"), "ServiceID": id, "Status": status}}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    let answer = eventually("web answers by DNS", Duration::from_secs(10), || async {
        let a = dig(dns, &["+short", "web.service.consul", "A"]).await;
        (!a.trim().is_empty()).then_some(a)
    })
    .await;
    assert_eq!(
        answer.trim(),
        "127.0.0.11",
        "only the healthy instance: {answer}"
    );
    let tagged = dig(dns, &["+short", "v1.web.service.consul", "A"]).await;
    assert_eq!(tagged.trim(), "127.0.0.11");
    let srv = dig(dns, &["web.service.consul", "SRV"]).await;
    assert!(srv.contains("SRV") && srv.contains(" 80 "), "{srv}");
    let missing = dig(dns, &["nope.service.consul", "A"]).await;
    assert!(missing.contains("NXDOMAIN"), "{missing}");
}

/// Client agents hold no catalog; their DNS port relays to a server, over
/// UDP and TCP, so applications on any node resolve services locally.
#[tokio::test]
async fn client_agents_answer_dns_through_a_server() {
    let mut cluster = mesh_testkit::TestCluster::start_with(1, |_, s| s.dns = true)
        .await
        .unwrap();
    let mut spec = AgentSpec::client("c1");
    spec.dns = true;
    let client = cluster.add(spec).await.unwrap();
    let dns = client.dns.expect("client agent DNS address");
    let url = client.url("/v1/agent/service/register");
    let r = http()
        .put(url)
        .json(&json!({"Name": "web", "ID": "web1", "Port": 8080}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    eventually(
        "web answers through the client's DNS",
        Duration::from_secs(20),
        || async {
            let out = dig(dns, &["+short", "web.service.consul", "SRV"]).await;
            out.contains("8080").then_some(())
        },
    )
    .await;
    let out = dig(dns, &["+tcp", "+short", "web.service.consul"]).await;
    assert_eq!(out.trim(), "127.0.0.1", "TCP relays too");
}

#[tokio::test]
async fn with_acls_dns_answers_what_the_anonymous_token_may_read() {
    let dir = tempfile::tempdir().unwrap();
    let conf = crate::acl::acl_config(dir.path());
    let mut spec = AgentSpec::server("dnsacl", 1);
    spec.extra = vec!["-dev".into(), format!("-config-file={}", conf.display())];
    spec.dns = true;
    let agent = TestAgent::start(spec, &dir.path().join("a")).await.unwrap();
    let dns = agent.dns.expect("agent serves DNS");
    let m = Some(crate::acl::MANAGEMENT);
    use reqwest::Method;
    for name in ["web", "db"] {
        let reg = json!({"Node": format!("n-{name}"), "Address": "127.0.0.21",
                         "Service": {"Service": name, "Port": 80}});
        let (st, text) =
            crate::acl::call(Method::PUT, &agent, "/v1/catalog/register", m, Some(reg)).await;
        assert_eq!(st, 200, "{text}");
    }
    // Default deny and no grant for anonymous: nothing resolves.
    assert_absent(dns, "web.service.consul", "A").await;

    // The anonymous token (created with the initial management token) may read web.
    let rules =
        "service \"web\" {\n  policy = \"read\"\n}\nnode_prefix \"\" {\n  policy = \"read\"\n}\n";
    let (st, text) = crate::acl::call(
        Method::PUT,
        &agent,
        "/v1/acl/policy",
        m,
        Some(json!({"Name": "dns", "Rules": rules})),
    )
    .await;
    assert_eq!(st, 200, "{text}");
    let anonymous = "/v1/acl/token/00000000-0000-0000-0000-000000000002";
    let ready = eventually(
        "anonymous token exists",
        Duration::from_secs(10),
        || async {
            let (st, _) = crate::acl::call(Method::GET, &agent, anonymous, m, None).await;
            (st == 200).then_some(())
        },
    );
    ready.await;
    let (st, text) = crate::acl::call(
        Method::PUT,
        &agent,
        anonymous,
        m,
        Some(json!({"Policies": [{"Name": "dns"}]})),
    )
    .await;
    assert_eq!(st, 200, "{text}");
    let web = eventually("web resolves", Duration::from_secs(10), || async {
        let a = dig(dns, &["+short", "web.service.consul", "A"]).await;
        (!a.trim().is_empty()).then_some(a)
    })
    .await;
    assert_eq!(web.trim(), "127.0.0.21");
    // db stays hidden.
    assert_absent(dns, "db.service.consul", "A").await;
    // And HTTP without a token follows the same grant.
    let (st, _) = crate::acl::call(Method::GET, &agent, "/v1/health/service/web", None, None).await;
    assert_eq!(st, 200);
    let (st, _) = crate::acl::call(Method::GET, &agent, "/v1/health/service/db", None, None).await;
    assert_eq!(st, 403);
}
