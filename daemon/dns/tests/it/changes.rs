//! Catalog writes and configuration reloads show in the very next answer.

use mesh_dns::DnsConfig;
use mesh_types::{CheckStatus, Command};

use crate::names::populated;
use crate::support::{have_dig, svc};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registration_is_in_the_next_answer() {
    if !have_dig() {
        return;
    }
    let dns = populated(DnsConfig::default()).await;
    assert_eq!(dns.dig(&["web.service.consul"]).await.data("A").len(), 2);

    dns.node("n4", "10.0.0.4", &[]);
    dns.service("n4", svc("web4", "web", "", 8084, &[]));
    let d = dns.dig(&["web.service.consul"]).await;
    assert_eq!(d.data("A"), ["10.0.0.1", "10.0.0.2", "10.0.0.4"]);
    let d = dns.dig(&["db.service.consul"]).await;
    assert_eq!(d.status, "NXDOMAIN");
    dns.service("n4", svc("db", "db", "", 5432, &[]));
    let d = dns.dig(&["db.service.consul"]).await;
    assert_eq!(d.data("A"), ["10.0.0.4"], "{}", d.output);

    // Failing, recovering and leaving are just as immediate.
    dns.check("n4", "web4-http", "web4", CheckStatus::Critical);
    assert_eq!(
        dns.dig(&["web.service.consul"]).await.data("A"),
        ["10.0.0.1", "10.0.0.2"]
    );
    dns.check("n4", "web4-http", "web4", CheckStatus::Passing);
    assert_eq!(dns.dig(&["web.service.consul"]).await.data("A").len(), 3);
    dns.apply(Command::NodeDeregister { node: "n4".into() });
    assert_eq!(
        dns.dig(&["web.service.consul"]).await.data("A"),
        ["10.0.0.1", "10.0.0.2"]
    );
    assert_eq!(dns.dig(&["n4.node.consul"]).await.status, "NXDOMAIN");
    dns.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configuration_reloads_without_restart() {
    if !have_dig() {
        return;
    }
    let dns = populated(DnsConfig::default()).await;
    assert_eq!(dns.dig(&["web.service.mesh"]).await.status, "REFUSED");

    dns.config.send_modify(|c| {
        c.domain = "mesh.".into();
        c.service_ttl = [("*".to_string(), std::time::Duration::from_secs(42))].into();
        c.node_ttl = std::time::Duration::from_secs(7);
    });
    let d = dns.dig(&["web.service.mesh"]).await;
    assert_eq!(d.data("A").len(), 2, "{}", d.output);
    assert!(d.answers.iter().all(|r| r[1] == "42"), "{}", d.output);
    assert_eq!(dns.dig(&["n1.node.mesh"]).await.answers[0][1], "7");
    assert_eq!(dns.dig(&["web.service.consul"]).await.status, "REFUSED");

    // TCP connections pick the change up too.
    dns.config.send_modify(|c| c.domain = "consul.".into());
    let d = dns.dig(&["+tcp", "web.service.consul"]).await;
    assert_eq!(d.data("A").len(), 2, "{}", d.output);
    dns.stop().await;
}
