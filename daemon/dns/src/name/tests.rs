use super::*;

fn domains() -> Vec<Vec<Vec<u8>>> {
    vec![
        vec![b"consul".to_vec()],
        vec![b"mesh".to_vec(), b"internal".to_vec()],
    ]
}

fn p(name: &str) -> Lookup<'_> {
    parse(&split_labels(name), &domains())
}

fn svc<'a>(name: &'a str, tag: Option<&'a str>, dc: Option<&'a str>) -> Lookup<'a> {
    Lookup::Service {
        domain: 0,
        name,
        tag,
        dc,
    }
}

#[test]
fn service_forms() {
    assert_eq!(p("web.service.consul."), svc("web", None, None));
    assert_eq!(p("web.service.dc1.consul"), svc("web", None, Some("dc1")));
    assert_eq!(p("v1.web.service.consul."), svc("web", Some("v1"), None));
    assert_eq!(
        p("v1.web.service.dc2.consul."),
        svc("web", Some("v1"), Some("dc2"))
    );
    // RFC 2782: `_tcp` means no tag filter, anything else is a tag.
    assert_eq!(p("_web._tcp.service.consul."), svc("web", None, None));
    assert_eq!(p("_web._v1.service.consul."), svc("web", Some("v1"), None));
    assert_eq!(
        p("_web._tcp.service.dc1.consul."),
        svc("web", None, Some("dc1"))
    );
    // A tag that merely starts with `_` in the plain form is still a tag.
    assert_eq!(p("_v1.web.service.consul."), svc("web", Some("_v1"), None));
}

#[test]
fn other_kinds() {
    assert_eq!(
        p("n1.node.consul."),
        Lookup::Node {
            domain: 0,
            name: "n1",
            dc: None
        }
    );
    assert_eq!(
        p("n1.node.dc1.consul."),
        Lookup::Node {
            domain: 0,
            name: "n1",
            dc: Some("dc1")
        }
    );
    assert_eq!(
        p("web.connect.consul."),
        Lookup::Connect {
            domain: 0,
            name: "web",
            dc: None
        }
    );
    assert_eq!(
        p("0a000001.addr.dc1.consul."),
        Lookup::Addr {
            domain: 0,
            ip: "10.0.0.1".parse().unwrap(),
            dc: Some("dc1")
        }
    );
    assert_eq!(
        p("20010db8000000000000000000000001.addr.consul."),
        Lookup::Addr {
            domain: 0,
            ip: "2001:db8::1".parse().unwrap(),
            dc: None
        }
    );
    assert_eq!(p("consul."), Lookup::Apex { domain: 0 });
    assert_eq!(p("ns.consul."), Lookup::Nameserver { domain: 0 });
}

#[test]
fn alt_domain_and_case() {
    assert_eq!(
        p("WEB.Service.Mesh.INTERNAL."),
        Lookup::Service {
            domain: 1,
            name: "WEB",
            tag: None,
            dc: None
        }
    );
    assert_eq!(p("mesh.internal."), Lookup::Apex { domain: 1 });
}

#[test]
fn the_longest_domain_wins() {
    let nested = vec![
        vec![b"consul".to_vec()],
        vec![b"alt".to_vec(), b"consul".to_vec()],
    ];
    assert_eq!(
        parse(&split_labels("web.service.alt.consul"), &nested),
        Lookup::Service {
            domain: 1,
            name: "web",
            tag: None,
            dc: None
        }
    );
}

#[test]
fn prepared_query_names() {
    assert_eq!(
        p("web-primary.query.consul."),
        Lookup::Query {
            domain: 0,
            name: "web-primary",
            dc: None
        }
    );
    assert_eq!(
        p("Geo-Web.QUERY.dc1.consul."),
        Lookup::Query {
            domain: 0,
            name: "Geo-Web",
            dc: Some("dc1")
        }
    );
}

#[test]
fn names_in_our_domain_that_name_nothing() {
    for name in [
        "foo.consul.",
        "service.consul.",
        "a.b.web.service.consul.",
        "x.y.node.consul.",
        "node.consul.",
        "zz.addr.consul.",
        "0a00000g.addr.consul.",
        "a.b.query.consul.",
        "web.service.dc1.extra.consul.",
        "_._tcp.service.consul.",
    ] {
        assert_eq!(p(name), Lookup::Missing { domain: 0 }, "{name}");
    }
    // Non-UTF-8 labels cannot name a service.
    assert_eq!(
        parse(&[&[0xff][..], b"service", b"consul"], &domains()),
        Lookup::Missing { domain: 0 }
    );
}

#[test]
fn reverse_names() {
    assert_eq!(
        p("4.3.2.10.in-addr.arpa."),
        Lookup::Reverse("10.2.3.4".parse().unwrap())
    );
    let v6 = "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa.";
    assert_eq!(p(v6), Lookup::Reverse("2001:db8::1".parse().unwrap()));
    for partial in [
        "3.2.10.in-addr.arpa.",
        "256.3.2.1.in-addr.arpa.",
        "in-addr.arpa.",
        "arpa.",
    ] {
        assert_eq!(p(partial), Lookup::Foreign, "{partial}");
    }
}

#[test]
fn foreign_names() {
    assert_eq!(p("example.com."), Lookup::Foreign);
    assert_eq!(p("."), Lookup::Foreign);
    assert_eq!(p("consul.example."), Lookup::Foreign);
}

#[test]
fn addr_labels_round_trip() {
    for ip in ["10.0.0.1", "2001:db8::1", "0.0.0.0"] {
        let ip: IpAddr = ip.parse().unwrap();
        let label = addr_label(ip);
        assert_eq!(hex_addr(label.as_bytes()), Some(ip));
    }
}

#[test]
fn ingress_names_the_gateways_of_a_service() {
    assert_eq!(
        p("web.ingress.consul."),
        Lookup::Ingress {
            domain: 0,
            name: "web",
            dc: None
        }
    );
    assert_eq!(
        p("web.ingress.dc1.consul."),
        Lookup::Ingress {
            domain: 0,
            name: "web",
            dc: Some("dc1")
        }
    );
    assert!(matches!(p("a.b.ingress.consul."), Lookup::Missing { .. }));
}
