use mesh_types::{CheckStatus, Command, HealthCheck, Node, Service};

use super::*;
use crate::test_fixture::Fixture;

/// Everything a view answers with, in a comparable order.
fn summary(view: &View) -> Vec<String> {
    let mut out = Vec::new();
    for (kind, map) in [("svc", &view.services), ("proxy", &view.proxies)] {
        for (key, group) in map {
            out.push(format!("{kind} {key} {} {:?}", group.name, group.instances));
        }
    }
    for (key, node) in &view.nodes {
        out.push(format!(
            "node {key} {} {:?} {:?}",
            node.name, node.addr, node.txt
        ));
    }
    out.sort();
    out
}

/// A reproducible stream of catalog writes over a few nodes and services,
/// with deletes, checks flapping, case variants and proxies.
fn random_command(r: u64) -> Command {
    let node = ["n0", "n1", "N2", "n3"][(r % 4) as usize].to_string();
    let svc = ["web", "Web", "db", "web-sidecar-proxy"][(r / 4 % 4) as usize];
    // Ids shared across names: re-registering one under another name moves
    // the instance between groups (a group shrinks without a delete).
    let id = format!("s{}", r / 16 % 3);
    match r / 48 % 8 {
        0 | 1 => Command::NodeRegister {
            node: Node {
                name: node,
                address: format!("10.0.0.{}", r % 7),
                meta: [("v".to_string(), (r % 3).to_string())].into(),
                ..Node::default()
            },
        },
        2 | 3 | 7 => Command::ServiceRegister {
            node,
            service: Service {
                id,
                name: svc.into(),
                port: (r % 5) as u16,
                address: if r.is_multiple_of(3) {
                    format!("10.9.0.{}", r % 4)
                } else {
                    String::new()
                },
                tags: vec![["a", "B"][(r % 2) as usize].into()],
                kind: if svc.ends_with("proxy") {
                    "connect-proxy".into()
                } else {
                    String::new()
                },
                ..Service::default()
            },
        },
        4 => Command::CheckRegister {
            node,
            check: HealthCheck {
                check_id: format!("c{}", r % 3),
                service_id: if r.is_multiple_of(2) {
                    String::new()
                } else {
                    id
                },
                status: [
                    CheckStatus::Passing,
                    CheckStatus::Warning,
                    CheckStatus::Critical,
                ][(r % 3) as usize],
                output: r.to_string(),
                ..HealthCheck::default()
            },
        },
        5 => Command::CheckDeregister {
            node,
            check_id: format!("c{}", r % 3),
        },
        _ => Command::NodeDeregister { node },
    }
}

#[test]
fn an_incremental_view_equals_a_full_rebuild_after_every_write() {
    let mut f = Fixture::new();
    let mut incremental = f.view();
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    for step in 0..3000 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        // Writes may be refused (a service on a missing node); that is fine.
        f.try_apply(random_command(x));
        let next = f
            .store
            .read(|state| View::build(state, Some(&incremental), None));
        let full = f.view();
        assert_eq!(summary(&next), summary(&full), "step {step}");
        incremental = next;
    }
    assert!(!incremental.services.is_empty());
}

#[test]
fn unchanged_groups_are_shared_not_rebuilt() {
    let mut f = Fixture::new();
    f.node("n1", "10.0.0.1", &[])
        .node("n2", "10.0.0.2", &[])
        .service("n1", "web", "web", "", 80, &[])
        .service("n2", "db", "db", "", 5432, &[]);
    let before = f.view();
    f.check("n2", "db-alive", "db", CheckStatus::Critical);
    let after = f
        .store
        .read(|state| View::build(state, Some(&before), None));
    assert!(Arc::ptr_eq(&before.services["web"], &after.services["web"]));
    assert!(!Arc::ptr_eq(&before.services["db"], &after.services["db"]));
    assert_eq!(
        after.services["db"].instances[0].health,
        CheckStatus::Critical
    );
}

#[test]
fn ptr_names_and_nameservers_are_derived_from_the_groups() {
    let mut f = Fixture::new();
    f.node("n1", "10.0.0.1", &[])
        .service("n1", "api", "api", "10.0.0.1", 80, &[])
        .service("n1", "consul", "consul", "", 8300, &[]);
    let view = f.view();
    let ip: IpAddr = "10.0.0.1".parse().unwrap();
    assert_eq!(
        view.known_as(ip),
        [Known::Node("n1".into()), Known::Service("api".into())]
    );
    assert_eq!(view.nameservers(), [(Arc::from("n1"), ip)]);
}

#[test]
fn with_acls_a_view_shows_only_what_the_default_token_may_read() {
    use crate::config::DnsAcl;
    use mesh_types::{AclPolicy, AclToken};
    let mut f = Fixture::new();
    f.node("n1", "10.0.0.1", &[])
        .node("n2", "10.0.0.2", &[])
        .service("n1", "web", "web", "", 80, &[])
        .service("n2", "db", "db", "", 5432, &[]);
    f.apply(Command::AclPolicySet {
        policy: AclPolicy {
            id: "p1".into(),
            name: "web-readers".into(),
            rules: "service \"web\" { policy = \"read\" }\nnode \"n1\" { policy = \"read\" }"
                .into(),
            ..Default::default()
        },
    });
    f.apply(Command::AclTokenSet {
        token: AclToken {
            accessor_id: "a1".into(),
            secret_id: "s1".into(),
            policies: vec!["p1".into()],
            ..Default::default()
        },
    });
    let open = f.view();
    let acl = DnsAcl {
        default_allow: false,
        token: Some("s1".into()),
        datacenter: "dc1".into(),
    };
    // Built afresh and built from the view without ACLs: the same.
    let fresh = f.store.read(|state| View::build(state, None, Some(&acl)));
    let from_open = f
        .store
        .read(|state| View::build(state, Some(&open), Some(&acl)));
    for v in [&fresh, &from_open] {
        assert!(v.services.contains_key("web") && !v.services.contains_key("db"));
        assert!(v.nodes.contains_key("n1") && !v.nodes.contains_key("n2"));
    }
    assert_ne!(fresh.built_from, open.built_from);
    // No default token and no anonymous token: the default policy decides.
    let nobody = DnsAcl {
        default_allow: false,
        token: None,
        datacenter: "dc1".into(),
    };
    let none = f
        .store
        .read(|state| View::build(state, None, Some(&nobody)));
    assert!(none.services.is_empty() && none.nodes.is_empty());
    let allow = DnsAcl {
        default_allow: true,
        token: None,
        datacenter: "dc1".into(),
    };
    let all = f.store.read(|state| View::build(state, None, Some(&allow)));
    assert_eq!(all.services.len(), open.services.len());
}
