//! Every name form, answered from a populated catalog, as dig sees it.

use mesh_dns::DnsConfig;
use mesh_types::{CheckStatus, Service};

use crate::support::{have_dig, svc, TestDns};

/// web on n1 (passing), n2 (warning), n3 (critical); api with its own
/// address; a v6-only node; sidecar proxies for web; `big` with 10 instances.
pub async fn populated(config: DnsConfig) -> TestDns {
    let dns = TestDns::start(config).await;
    dns.node("n1", "10.0.0.1", &[("rack", "r1")]);
    dns.node("n2", "10.0.0.2", &[]);
    dns.node("n3", "10.0.0.3", &[]);
    dns.node("n6", "fd00::6", &[]);
    dns.service("n1", svc("web1", "web", "", 8080, &["v1", "primary"]));
    dns.service("n2", svc("web2", "web", "", 8081, &["v2"]));
    dns.service("n3", svc("web3", "web", "", 8082, &["v1"]));
    dns.check("n2", "web2-http", "web2", CheckStatus::Warning);
    dns.check("n3", "web3-http", "web3", CheckStatus::Critical);
    dns.service("n1", svc("api", "api", "10.1.0.9", 9090, &[]));
    dns.service("n6", svc("v6", "v6svc", "", 7000, &[]));
    for (node, port) in [("n1", 21000), ("n2", 21001)] {
        dns.service(
            node,
            Service {
                kind: "connect-proxy".into(),
                meta: [("destination_service".to_string(), "web".to_string())].into(),
                ..svc(
                    &format!("web-proxy-{node}"),
                    "web-sidecar-proxy",
                    "",
                    port,
                    &[],
                )
            },
        );
    }
    for i in 0..10 {
        let node = format!("b{i}");
        dns.node(&node, &format!("10.2.0.{i}"), &[]);
        dns.service(&node, svc("big", "big", "", 80, &[]));
    }
    dns
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_names_answer_healthy_instances() {
    if !have_dig() {
        return;
    }
    let dns = populated(DnsConfig::default()).await;
    let a = dns.dig(&["web.service.consul", "A"]).await;
    assert_eq!(a.status, "NOERROR", "{}", a.output);
    assert!(a.has_flag("aa"), "{}", a.output);
    assert_eq!(
        a.data("A"),
        ["10.0.0.1", "10.0.0.2"],
        "critical n3 is left out"
    );

    let a = dns.dig(&["web.service.dc1.consul", "A"]).await;
    assert_eq!(a.data("A"), ["10.0.0.1", "10.0.0.2"]);
    let a = dns.dig(&["v1.web.service.consul", "A"]).await;
    assert_eq!(a.data("A"), ["10.0.0.1"]);
    let a = dns.dig(&["WEB.Service.CONSUL", "A"]).await;
    assert_eq!(a.data("A"), ["10.0.0.1", "10.0.0.2"], "names ignore case");
    let a = dns.dig(&["api.service.consul", "A"]).await;
    assert_eq!(a.data("A"), ["10.1.0.9"], "a service's own address wins");
    let a = dns.dig(&["v6svc.service.consul", "AAAA"]).await;
    assert_eq!(a.data("AAAA"), ["fd00::6"]);

    // Only passing: the warning instance goes too.
    dns.config.send_modify(|c| c.only_passing = true);
    let a = dns.dig(&["web.service.consul", "A"]).await;
    assert_eq!(a.data("A"), ["10.0.0.1"], "{}", a.output);
    dns.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn srv_answers_carry_resolvable_targets() {
    if !have_dig() {
        return;
    }
    let dns = populated(DnsConfig::default()).await;
    for name in ["web.service.consul", "_web._tcp.service.consul"] {
        let d = dns.dig(&[name, "SRV"]).await;
        assert_eq!(
            d.data("SRV"),
            [
                "1 1 8080 n1.node.dc1.consul.",
                "1 1 8081 n2.node.dc1.consul."
            ],
            "{}",
            d.output
        );
        let mut extra: Vec<String> = d
            .additional
            .iter()
            .filter(|r| r[3] == "A")
            .map(|r| format!("{} {}", r[0], r[4]))
            .collect();
        extra.sort();
        assert_eq!(
            extra,
            [
                "n1.node.dc1.consul. 10.0.0.1",
                "n2.node.dc1.consul. 10.0.0.2"
            ]
        );
    }
    let d = dns.dig(&["_web._v2.service.consul", "SRV"]).await;
    assert_eq!(d.data("SRV"), ["1 1 8081 n2.node.dc1.consul."]);

    // A service address gets an `.addr.` target that resolves by itself.
    let d = dns.dig(&["api.service.consul", "SRV"]).await;
    assert_eq!(d.data("SRV"), ["1 1 9090 0a010009.addr.dc1.consul."]);
    let d = dns.dig(&["0a010009.addr.dc1.consul", "A"]).await;
    assert_eq!(d.data("A"), ["10.1.0.9"]);
    dns.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_connect_and_ptr_names() {
    if !have_dig() {
        return;
    }
    let dns = populated(DnsConfig::default()).await;
    let d = dns.dig(&["n1.node.consul", "A"]).await;
    assert_eq!(d.data("A"), ["10.0.0.1"]);
    let d = dns.dig(&["n1.node.dc1.consul", "TXT"]).await;
    assert_eq!(d.data("TXT"), ["\"rack=r1\""]);
    let d = dns.dig(&["n6.node.consul", "AAAA"]).await;
    assert_eq!(d.data("AAAA"), ["fd00::6"]);

    let d = dns.dig(&["web.connect.consul", "SRV"]).await;
    assert_eq!(
        d.data("SRV"),
        [
            "1 1 21000 n1.node.dc1.consul.",
            "1 1 21001 n2.node.dc1.consul."
        ],
        "{}",
        d.output
    );

    let d = dns.dig(&["-x", "10.0.0.2"]).await;
    assert_eq!(d.data("PTR"), ["n2.node.dc1.consul."], "{}", d.output);
    let d = dns.dig(&["-x", "10.1.0.9"]).await;
    assert_eq!(d.data("PTR"), ["api.service.dc1.consul."]);
    let d = dns.dig(&["-x", "fd00::6"]).await;
    assert_eq!(d.data("PTR"), ["n6.node.dc1.consul."]);
    // Not ours, no recursors: refused rather than a made-up NXDOMAIN.
    let d = dns.dig(&["-x", "192.0.2.1"]).await;
    assert_eq!(d.status, "REFUSED");
    dns.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn soa_ns_nxdomain_and_nodata() {
    if !have_dig() {
        return;
    }
    let dns = populated(DnsConfig::default()).await;
    let d = dns.dig(&["consul", "SOA"]).await;
    assert_eq!(d.status, "NOERROR");
    let soa = &d.answers[0];
    assert_eq!(soa[3], "SOA");
    assert_eq!(&soa[4..6], ["ns.consul.", "hostmaster.consul."]);
    let d = dns.dig(&["consul", "NS"]).await;
    assert_eq!(d.data("NS"), ["ns.consul."]);
    assert_eq!(
        d.additional.iter().find(|r| r[3] == "A").unwrap()[4],
        "127.0.0.1"
    );
    let d = dns.dig(&["ns.consul", "A"]).await;
    assert_eq!(d.data("A"), ["127.0.0.1"]);

    for name in [
        "nope.service.consul",
        "v9.web.service.consul",
        "n9.node.consul",
        "web.service.dc2.consul",
        "x.y.consul",
    ] {
        let d = dns.dig(&[name, "A"]).await;
        assert_eq!(d.status, "NXDOMAIN", "{name}: {}", d.output);
        assert!(d.has_flag("aa"));
        assert_eq!(
            d.authority[0][3], "SOA",
            "{name}: negative answers carry the SOA"
        );
    }
    for (name, qtype) in [
        ("web.service.consul", "AAAA"),
        ("web.service.consul", "MX"),
        ("n1.node.consul", "SRV"),
        ("web.service.consul", "TYPE65400"),
    ] {
        let d = dns.dig(&[name, qtype]).await;
        assert_eq!(d.status, "NOERROR", "{name} {qtype}: {}", d.output);
        assert!(d.answers.is_empty(), "{name} {qtype}");
        assert_eq!(d.authority[0][3], "SOA", "{name} {qtype}");
    }
    dns.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_answers_set_tc_and_dig_gets_everything_over_tcp() {
    if !have_dig() {
        return;
    }
    let dns = populated(DnsConfig::default()).await;
    // Over UDP alone: three records and TC, never a silent cut.
    let d = dns.dig(&["+ignore", "big.service.consul", "A"]).await;
    assert!(d.has_flag("tc"), "{}", d.output);
    assert_eq!(d.data("A").len(), 3);
    // dig retries over TCP on TC, as resolvers do, and gets all ten.
    let d = dns.dig(&["big.service.consul", "A"]).await;
    assert!(d.output.contains("retrying in TCP mode"), "{}", d.output);
    assert!(!d.has_flag("tc"));
    assert_eq!(d.data("A").len(), 10, "{}", d.output);
    let d = dns.dig(&["+tcp", "big.service.consul", "SRV"]).await;
    assert_eq!(d.data("SRV").len(), 10);
    assert_eq!(d.additional.iter().filter(|r| r[3] == "A").count(), 10);

    // The limit is live configuration.
    dns.config.send_modify(|c| c.udp_answer_limit = 20);
    let d = dns.dig(&["+ignore", "big.service.consul", "A"]).await;
    assert!(!d.has_flag("tc"), "{}", d.output);
    assert_eq!(d.data("A").len(), 10);
    dns.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edns_is_answered_in_kind() {
    if !have_dig() {
        return;
    }
    let dns = populated(DnsConfig::default()).await;
    let d = dns
        .dig(&["+edns=0", "+bufsize=1232", "web.service.consul"])
        .await;
    assert!(d.output.contains("OPT PSEUDOSECTION"), "{}", d.output);
    assert!(d.output.contains("udp: 1232"), "{}", d.output);
    let d = dns.dig(&["+noedns", "web.service.consul"]).await;
    assert!(!d.output.contains("OPT PSEUDOSECTION"), "{}", d.output);
    assert_eq!(d.status, "NOERROR");
    let d = dns
        .dig(&["+edns=1", "+noednsnegotiation", "web.service.consul"])
        .await;
    assert_eq!(d.status, "BADVERS", "{}", d.output);
    dns.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_alt_domain_answers_too() {
    if !have_dig() {
        return;
    }
    let config = DnsConfig {
        alt_domain: Some("mesh.internal.".into()),
        ..DnsConfig::default()
    };
    let dns = populated(config).await;
    let d = dns.dig(&["web.service.mesh.internal", "SRV"]).await;
    assert_eq!(
        d.data("SRV"),
        [
            "1 1 8080 n1.node.dc1.mesh.internal.",
            "1 1 8081 n2.node.dc1.mesh.internal."
        ],
        "{}",
        d.output
    );
    let d = dns.dig(&["web.service.consul", "A"]).await;
    assert_eq!(d.data("A").len(), 2);
    dns.stop().await;
}
