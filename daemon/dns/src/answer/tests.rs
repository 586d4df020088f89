use hickory_server::proto::op::ResponseCode;
use mesh_types::CheckStatus;

use super::*;
use crate::config::{DnsConfig, Settings};
use crate::name::{parse, split_labels};
use crate::test_fixture::Fixture;
use crate::view::View;

/// `web` on three nodes: n1 passing, n2 warning, n3 critical; n1 has a tag.
fn web() -> Fixture {
    let mut f = Fixture::new();
    f.node(
        "n1",
        "10.0.0.1",
        &[("rack", "r1"), ("rfc1035-raw", "plain")],
    )
    .node("n2", "10.0.0.2", &[])
    .node("n3", "10.0.0.3", &[])
    .service("n1", "web1", "web", "", 80, &["v1", "Primary"])
    .service("n2", "web2", "web", "", 81, &["v2"])
    .service("n3", "web3", "web", "", 82, &["v1"])
    .check("n2", "c2", "web2", CheckStatus::Warning)
    .check("n3", "c3", "web3", CheckStatus::Critical);
    f
}

fn ask(
    view: &View,
    config: &DnsConfig,
    qname: &str,
    qtype: RecordType,
    udp: bool,
) -> Option<Answer> {
    let settings = Settings::new(config);
    let lower = qname.to_ascii_lowercase();
    let lookup = parse(&split_labels(&lower), &settings.domains);
    let domain = match lookup {
        Lookup::Apex { domain }
        | Lookup::Nameserver { domain }
        | Lookup::Missing { domain }
        | Lookup::Service { domain, .. }
        | Lookup::Connect { domain, .. }
        | Lookup::Node { domain, .. }
        | Lookup::Addr { domain, .. } => domain,
        _ => 0,
    };
    let zone = Zone {
        query: None,
        settings: &settings,
        view,
        domain,
        own_ip: Some("127.0.0.1".parse().unwrap()),
    };
    let name = Name::from_ascii(qname).unwrap();
    let q = Question {
        name: &name,
        qtype,
        udp,
    };
    answer(&zone, &lookup, &q)
}

fn must(view: &View, qname: &str, qtype: RecordType) -> Answer {
    ask(view, &DnsConfig::default(), qname, qtype, false).expect("answered locally")
}

fn ips(answer: &Answer) -> Vec<String> {
    let mut out: Vec<String> = answer
        .answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(a) => Some(a.0.to_string()),
            RData::AAAA(a) => Some(a.0.to_string()),
            _ => None,
        })
        .collect();
    out.sort();
    out
}

fn has_soa(answer: &Answer) -> bool {
    matches!(answer.authorities.as_slice(), [r] if r.record_type() == RecordType::SOA)
}

#[test]
fn critical_instances_are_left_out_and_only_passing_drops_warnings() {
    let view = web().view();
    let a = must(&view, "web.service.consul.", RecordType::A);
    assert_eq!(a.rcode, ResponseCode::NoError);
    assert!(a.authoritative);
    assert_eq!(ips(&a), ["10.0.0.1", "10.0.0.2"]);

    let strict = DnsConfig {
        only_passing: true,
        ..DnsConfig::default()
    };
    let a = ask(&view, &strict, "web.service.consul.", RecordType::A, false).unwrap();
    assert_eq!(ips(&a), ["10.0.0.1"]);
}

#[test]
fn a_node_level_check_applies_to_every_service_on_the_node() {
    let mut f = web();
    f.check("n1", "serfHealth", "", CheckStatus::Critical);
    let a = must(&f.view(), "web.service.consul.", RecordType::A);
    assert_eq!(ips(&a), ["10.0.0.2"]);
}

#[test]
fn tags_filter_in_both_name_forms_and_ignore_case() {
    let view = web().view();
    // web3 has v1 too, but it is critical.
    assert_eq!(
        ips(&must(&view, "v1.web.service.consul.", RecordType::A)),
        ["10.0.0.1"]
    );
    assert_eq!(
        ips(&must(&view, "PRIMARY.Web.service.consul.", RecordType::A)),
        ["10.0.0.1"]
    );
    assert_eq!(
        ips(&must(&view, "_web._v2.service.consul.", RecordType::A)),
        ["10.0.0.2"]
    );
    assert_eq!(
        ips(&must(&view, "_web._tcp.service.consul.", RecordType::A)),
        ["10.0.0.1", "10.0.0.2"]
    );
    let none = must(&view, "v9.web.service.consul.", RecordType::A);
    assert_eq!(none.rcode, ResponseCode::NXDomain);
    assert!(has_soa(&none));
}

#[test]
fn unknown_names_are_nxdomain_and_known_names_without_the_type_are_nodata() {
    let view = web().view();
    for name in [
        "db.service.consul.",
        "n9.node.consul.",
        "what.consul.",
        "web.service.dc9.consul.",
    ] {
        let a = must(&view, name, RecordType::A);
        assert_eq!(a.rcode, ResponseCode::NXDomain, "{name}");
        assert!(has_soa(&a), "{name}");
    }
    for (name, qtype) in [
        ("web.service.consul.", RecordType::AAAA),
        ("web.service.consul.", RecordType::MX),
        ("web.service.consul.", RecordType::Unknown(65400)),
        ("n1.node.consul.", RecordType::SRV),
        ("consul.", RecordType::A),
    ] {
        let a = must(&view, name, qtype);
        assert_eq!(a.rcode, ResponseCode::NoError, "{name} {qtype}");
        assert!(a.answers.is_empty(), "{name} {qtype}");
        assert!(has_soa(&a), "{name} {qtype}");
    }
    // Our datacenter by name is the same as no datacenter.
    assert_eq!(
        ips(&must(&view, "web.service.dc1.consul.", RecordType::A)).len(),
        2
    );
}

#[test]
fn udp_answers_are_limited_with_tc_and_tcp_answers_are_whole() {
    let mut f = Fixture::new();
    for i in 0..10 {
        f.node(&format!("n{i}"), &format!("10.0.1.{i}"), &[])
            .service(&format!("n{i}"), "web", "web", "", 80, &[]);
    }
    let view = f.view();
    let config = DnsConfig::default();
    let udp = ask(&view, &config, "web.service.consul.", RecordType::A, true).unwrap();
    assert_eq!(udp.answers.len(), 3);
    assert!(udp.truncated);
    let tcp = ask(&view, &config, "web.service.consul.", RecordType::A, false).unwrap();
    assert_eq!(tcp.answers.len(), 10);
    assert!(!tcp.truncated);
    let srv = ask(&view, &config, "web.service.consul.", RecordType::SRV, true).unwrap();
    assert_eq!(
        (srv.answers.len(), srv.additionals.len(), srv.truncated),
        (3, 3, true)
    );

    let silent = DnsConfig {
        enable_truncate: false,
        ..DnsConfig::default()
    };
    let udp = ask(&view, &silent, "web.service.consul.", RecordType::A, true).unwrap();
    assert_eq!((udp.answers.len(), udp.truncated), (3, false));

    // a_record_limit is a deliberate cap: no TC, over any transport.
    let capped = DnsConfig {
        a_record_limit: 2,
        ..DnsConfig::default()
    };
    let udp = ask(&view, &capped, "web.service.consul.", RecordType::A, true).unwrap();
    assert_eq!((udp.answers.len(), udp.truncated), (2, false));
    let tcp = ask(&view, &capped, "web.service.consul.", RecordType::A, false).unwrap();
    assert_eq!(tcp.answers.len(), 2);
}

#[test]
fn order_is_random_per_answer() {
    let mut f = Fixture::new();
    for i in 0..10 {
        f.node(&format!("n{i}"), &format!("10.0.1.{i}"), &[])
            .service(&format!("n{i}"), "web", "web", "", 80, &[]);
    }
    let view = f.view();
    let firsts: std::collections::HashSet<String> = (0..200)
        .map(|_| {
            must(&view, "web.service.consul.", RecordType::A).answers[0]
                .data
                .to_string()
        })
        .collect();
    // 200 draws from 10 equally likely: all 10 appear unless the RNG is broken.
    assert!(firsts.len() >= 8, "{firsts:?}");
}

#[test]
fn srv_targets_resolve_in_the_additional_section() {
    let mut f = web();
    f.node("n4", "10.0.0.4", &[])
        .service("n4", "web4", "web", "192.168.9.9", 8443, &[])
        .service("n4", "web5", "web", "web.example.com", 9000, &[]);
    let view = f.view();
    let a = must(&view, "web.service.consul.", RecordType::SRV);
    let mut srvs: Vec<String> = a
        .answers
        .iter()
        .map(|r| match &r.data {
            RData::SRV(s) => format!("{} {}", s.port, s.target),
            other => panic!("not SRV: {other:?}"),
        })
        .collect();
    srvs.sort();
    assert_eq!(
        srvs,
        [
            "80 n1.node.dc1.consul.",
            "81 n2.node.dc1.consul.",
            "8443 c0a80909.addr.dc1.consul.",
            "9000 web.example.com."
        ]
    );
    let mut extra: Vec<String> = a
        .additionals
        .iter()
        .map(|r| format!("{} {}", r.name, r.data))
        .collect();
    extra.sort();
    assert_eq!(
        extra,
        [
            "c0a80909.addr.dc1.consul. 192.168.9.9",
            "n1.node.dc1.consul. 10.0.0.1",
            "n2.node.dc1.consul. 10.0.0.2",
        ]
    );
    // The targets answer on their own too.
    assert_eq!(
        ips(&must(&view, "c0a80909.addr.dc1.consul.", RecordType::A)),
        ["192.168.9.9"]
    );
    assert_eq!(
        ips(&must(&view, "n1.node.dc1.consul.", RecordType::A)),
        ["10.0.0.1"]
    );
}

#[test]
fn nodes_answer_addresses_and_meta_as_txt() {
    let view = web().view();
    let a = must(&view, "N1.node.consul.", RecordType::ANY);
    let mut data: Vec<String> = a.answers.iter().map(|r| r.data.to_string()).collect();
    data.sort();
    assert_eq!(data, ["10.0.0.1", "plain", "rack=r1"]);
    assert!(a
        .answers
        .iter()
        .all(|r| r.name.to_ascii() == "N1.node.consul."));
}

#[test]
fn connect_names_answer_the_sidecar_proxies() {
    let mut f = web();
    f.proxy("n1", "p1", "web-sidecar-proxy", 21000, None)
        .proxy("n2", "p2", "edge", 21001, Some("web"))
        .proxy("n3", "p3", "db-sidecar-proxy", 21002, None);
    let view = f.view();
    let a = must(&view, "web.connect.consul.", RecordType::SRV);
    let mut ports: Vec<u16> = a
        .answers
        .iter()
        .map(|r| match &r.data {
            RData::SRV(s) => s.port,
            _ => 0,
        })
        .collect();
    ports.sort();
    assert_eq!(ports, [21000, 21001]);
    assert_eq!(
        must(&view, "api.connect.consul.", RecordType::A).rcode,
        ResponseCode::NXDomain
    );
}

#[test]
fn ptr_answers_known_addresses_only() {
    let mut f = web();
    f.service("n1", "api", "api", "10.9.9.9", 90, &[]);
    let view = f.view();
    let a = must(&view, "1.0.0.10.in-addr.arpa.", RecordType::PTR);
    assert_eq!(a.answers[0].data.to_string(), "n1.node.dc1.consul.");
    let a = must(&view, "9.9.9.10.in-addr.arpa.", RecordType::PTR);
    assert_eq!(a.answers[0].data.to_string(), "api.service.dc1.consul.");
    assert!(ask(
        &view,
        &DnsConfig::default(),
        "7.7.7.10.in-addr.arpa.",
        RecordType::PTR,
        true
    )
    .is_none());
    assert!(ask(
        &view,
        &DnsConfig::default(),
        "example.com.",
        RecordType::A,
        true
    )
    .is_none());
}

#[test]
fn the_apex_has_soa_and_ns_with_glue() {
    let view = web().view();
    let soa = must(&view, "consul.", RecordType::SOA);
    assert_eq!(soa.answers[0].record_type(), RecordType::SOA);
    let ns = must(&view, "consul.", RecordType::NS);
    assert_eq!(ns.answers[0].data.to_string(), "ns.consul.");
    assert_eq!(ns.additionals[0].data.to_string(), "127.0.0.1");
    assert_eq!(
        ips(&must(&view, "ns.consul.", RecordType::A)),
        ["127.0.0.1"]
    );

    // Servers registered as `consul` become the nameservers.
    let mut f = web();
    f.service("n2", "consul", "consul", "", 8300, &[]);
    let ns = must(&f.view(), "consul.", RecordType::NS);
    assert_eq!(ns.answers[0].data.to_string(), "n2.node.dc1.consul.");
    assert_eq!(ns.additionals[0].data.to_string(), "10.0.0.2");
}

#[test]
fn ttls_come_from_the_configuration() {
    let view = web().view();
    let config = DnsConfig {
        node_ttl: std::time::Duration::from_secs(30),
        service_ttl: [("web".to_string(), std::time::Duration::from_secs(5))].into(),
        ..DnsConfig::default()
    };
    let a = ask(&view, &config, "web.service.consul.", RecordType::A, false).unwrap();
    assert!(a.answers.iter().all(|r| r.ttl == 5));
    let a = ask(&view, &config, "n1.node.consul.", RecordType::A, false).unwrap();
    assert_eq!(a.answers[0].ttl, 30);
}

#[test]
fn the_alt_domain_answers_like_the_domain_with_its_own_names() {
    let view = web().view();
    let config = DnsConfig {
        alt_domain: Some("mesh.".into()),
        ..DnsConfig::default()
    };
    let a = ask(&view, &config, "web.service.mesh.", RecordType::SRV, false).unwrap();
    assert!(a
        .answers
        .iter()
        .all(|r| r.data.to_string().ends_with(".node.dc1.mesh.")));
}

#[test]
fn srv_weights_follow_the_service_weights_by_health() {
    let mut f = web();
    // web2 is warning and web3 critical (see `web`); give every instance weights.
    for (node, id, port) in [("n1", "web1", 80), ("n2", "web2", 81), ("n3", "web3", 82)] {
        f.apply(mesh_types::Command::ServiceRegister {
            node: node.into(),
            service: mesh_types::Service {
                id: id.into(),
                name: "web".into(),
                port,
                weights: mesh_types::Weights {
                    passing: 10,
                    warning: 3,
                },
                ..Default::default()
            },
        });
    }
    let view = f.view();
    let a = must(&view, "web.service.consul.", RecordType::SRV);
    let mut weights: Vec<(u16, u16)> = a
        .answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::SRV(s) => Some((s.port, s.weight)),
            _ => None,
        })
        .collect();
    weights.sort();
    assert_eq!(
        weights,
        [(80, 10), (81, 3)],
        "passing 10, warning 3, critical left out"
    );
}
