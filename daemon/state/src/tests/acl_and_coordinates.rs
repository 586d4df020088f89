//! Coordinates, the extended ACL tables and the regex cache.

use super::*;

#[test]
fn coordinates_are_kept_for_catalog_nodes_only_and_leave_with_their_node() {
    let mut f = Fixture::new();
    f.apply(register("n1", service("web1", "web", ""), vec![]));
    f.apply(register("n2", service("web2", "web", ""), vec![]));
    f.apply(register("n3", service("web3", "web", ""), vec![]));
    let at = |x: f64| {
        let mut c = mesh_types::Coordinate::origin();
        c.vec[0] = x;
        c
    };
    let update = |node: &str, coord| mesh_types::CoordinateUpdate {
        node: node.into(),
        segment: String::new(),
        coord,
    };
    let mut bad = at(0.0);
    bad.vec[2] = f64::NAN;
    let updates = vec![
        update("n1", at(0.0)),
        update("n2", at(0.050)),
        update("n3", at(0.010)),
        update("ghost", at(0.0)),
        update("n3", bad),
    ];
    assert_eq!(f.apply(Command::CoordinateBatch { updates }), Outcome::Done);
    let state = crate::State::from_snapshot(&f.store.snapshot()).unwrap();
    assert_eq!(
        state.coordinates().count(),
        3,
        "the unknown node is skipped"
    );
    assert_eq!(
        state.coordinate("n3").unwrap().vec[0],
        0.010,
        "a bad coordinate is skipped"
    );
    let mut names = vec!["n2", "n1", "n3", "nowhere"];
    state.sort_by_rtt("n1", &mut names, |n| n);
    assert_eq!(names, vec!["n1", "n3", "n2", "nowhere"]);
    let mut unsorted = vec!["n2", "n1"];
    state.sort_by_rtt("nowhere", &mut unsorted, |n| n);
    assert_eq!(
        unsorted,
        vec!["n2", "n1"],
        "no coordinate for near: order kept"
    );
    f.apply(Command::NodeDeregister { node: "n2".into() });
    assert!(f.store.read(|s| s.coordinate("n2").is_none()));
}

#[test]
fn roles_identities_and_expiry_resolve_into_rules_and_deletes_leave_no_dangling_links() {
    use mesh_types::{
        AclAuthMethod, AclNodeIdentity, AclPolicy, AclRole, AclServiceIdentity, AclTemplatedPolicy,
        AclToken, AclTokenLinks,
    };
    let mut f = Fixture::new();
    let policy = AclPolicy {
        id: "p1".into(),
        name: "kv".into(),
        rules: "key_prefix \"app/\" { policy = \"write\" }".into(),
        ..Default::default()
    };
    assert_eq!(f.apply(Command::AclPolicySet { policy }), Outcome::Done);
    let role = AclRole {
        id: "r1".into(),
        name: "app".into(),
        policies: vec!["p1".into()],
        service_identities: vec![AclServiceIdentity {
            service_name: "web".into(),
            datacenters: vec!["dc2".into()],
        }],
        ..Default::default()
    };
    assert_eq!(
        f.apply(Command::AclRoleSet { role: role.clone() }),
        Outcome::Done
    );
    let dup = AclRole {
        id: "r2".into(),
        ..role.clone()
    };
    assert!(
        matches!(f.apply(Command::AclRoleSet { role: dup }), Outcome::Rejected(w) if w.contains("already exists"))
    );
    let token = AclToken {
        accessor_id: "a1".into(),
        secret_id: "s1".into(),
        ..Default::default()
    };
    let links = AclTokenLinks {
        roles: vec!["r1".into()],
        node_identities: vec![AclNodeIdentity {
            node_name: "n1".into(),
            datacenter: "dc1".into(),
        }],
        templated_policies: vec![AclTemplatedPolicy {
            template_name: "builtin/service".into(),
            name: "api".into(),
            datacenters: vec![],
        }],
        expiration_unix_ms: 5_000,
        ..Default::default()
    };
    let cmd = Command::AclTokenSetLinked {
        token: token.clone(),
        links: links.clone(),
    };
    assert_eq!(f.apply(cmd), Outcome::Done);
    let rules = |dc: &str, now: u64| {
        f.store
            .read(|s| s.acl_resolve_at(Some("s1"), dc, now))
            .map(|r| r.rules.join("\n"))
    };
    let in_dc1 = rules("dc1", 1_000).unwrap();
    assert!(
        in_dc1.contains("key_prefix \"app/\""),
        "the role's policy: {in_dc1}"
    );
    assert!(
        in_dc1.contains("node \"n1\""),
        "the node identity: {in_dc1}"
    );
    assert!(
        in_dc1.contains("service \"api-sidecar-proxy\""),
        "the template: {in_dc1}"
    );
    assert!(
        !in_dc1.contains("service \"web\""),
        "the dc2 identity does not apply in dc1"
    );
    assert!(rules("dc2", 1_000).unwrap().contains("service \"web\""));
    assert_eq!(rules("dc1", 5_000), None, "expired at its time");
    assert_eq!(
        f.store.read(|s| s.acl_expired_tokens(5_000)),
        vec!["a1".to_string()]
    );
    let expire = |now| Command::AclTokensExpire {
        accessors: vec!["a1".into()],
        now_unix_ms: now,
    };
    assert_eq!(f.apply(expire(4_000)), Outcome::Done);
    assert!(
        f.store.read(|s| s.acl_token("a1").is_some()),
        "not yet expired at 4000"
    );

    // Bad links are refused and change nothing.
    let bad = AclTokenLinks {
        roles: vec!["nope".into()],
        ..Default::default()
    };
    let cmd = Command::AclTokenSetLinked {
        token: token.clone(),
        links: bad,
    };
    assert!(matches!(f.apply(cmd), Outcome::Rejected(w) if w.contains("nope")));
    let bad = AclTokenLinks {
        service_identities: vec![AclServiceIdentity {
            service_name: "x\" } service_prefix \"".into(),
            datacenters: vec![],
        }],
        ..Default::default()
    };
    let cmd = Command::AclTokenSetLinked {
        token: token.clone(),
        links: bad,
    };
    assert!(matches!(f.apply(cmd), Outcome::Rejected(w) if w.contains("not a valid name")));
    assert_eq!(f.store.read(|s| s.acl_token_links("a1")), links);

    // A deleted role and policy leave no references behind.
    f.apply(Command::AclPolicyDelete { id: "p1".into() });
    assert!(f
        .store
        .read(|s| s.acl_role("r1").unwrap().policies.is_empty()));
    f.apply(Command::AclRoleDelete { id: "r1".into() });
    assert!(f.store.read(|s| s.acl_token_links("a1").roles.is_empty()));

    // Deleting an auth method deletes the tokens its logins made.
    let method = AclAuthMethod {
        name: "jwt1".into(),
        kind: "jwt".into(),
        ..Default::default()
    };
    assert_eq!(f.apply(Command::AclAuthMethodSet { method }), Outcome::Done);
    let login = AclToken {
        accessor_id: "a2".into(),
        secret_id: "s2".into(),
        ..Default::default()
    };
    let links = AclTokenLinks {
        auth_method: "jwt1".into(),
        ..Default::default()
    };
    assert_eq!(
        f.apply(Command::AclTokenSetLinked {
            token: login,
            links
        }),
        Outcome::Done
    );
    f.apply(Command::AclAuthMethodDelete {
        name: "jwt1".into(),
    });
    assert!(f.store.read(|s| s.acl_token("a2").is_none()));
    assert_eq!(f.apply(expire(5_000)), Outcome::Done);
    assert!(
        f.store.read(|s| s.acl_token("a1").is_none()),
        "reaped once expired"
    );
    assert_eq!(
        f.store.read(|s| s.acl_token_links("a1")),
        AclTokenLinks::default()
    );
}

#[test]
fn cached_regexes_compile_once_and_bad_ones_stay_refused() {
    let a = crate::cached_regex("^web-(.*)$").unwrap();
    let b = crate::cached_regex("^web-(.*)$").unwrap();
    assert!(a.is_match("web-1") && b.is_match("web-2"));
    assert!(crate::cached_regex("(unclosed").is_none());
    assert!(
        crate::cached_regex("(unclosed").is_none(),
        "a cached refusal"
    );
    // Past the bound the cache starts over and still answers.
    for i in 0..300 {
        assert!(crate::cached_regex(&format!("^n{i}$"))
            .unwrap()
            .is_match(&format!("n{i}")));
    }
}
