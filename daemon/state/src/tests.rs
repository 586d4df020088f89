use mesh_types::{
    encode_entry, CheckStatus, Command, ConfigEntry, GroupedCommand, HealthCheck, LogEntry, Node,
    Outcome, Service, TxnOp,
};

use sha2::{Digest as _, Sha256};

use crate::{StateStore, Table};

struct Fixture {
    store: StateStore,
    index: u64,
}

impl Fixture {
    fn new() -> Self {
        Fixture {
            store: StateStore::new(),
            index: 0,
        }
    }
    fn apply(&mut self, cmd: Command) -> Outcome {
        self.index += 1;
        self.store.apply(
            self.index,
            &encode_entry(&LogEntry::One(Box::new(cmd))).unwrap(),
        )
    }
}

fn node(name: &str) -> Node {
    Node {
        name: name.into(),
        address: "10.0.0.1".into(),
        ..Default::default()
    }
}

fn service(id: &str, name: &str, owner: &str) -> Service {
    Service {
        id: id.into(),
        name: name.into(),
        port: 80,
        owner: owner.into(),
        ..Default::default()
    }
}

fn register(n: &str, svc: Service, checks: Vec<HealthCheck>) -> Command {
    Command::Register {
        node: node(n),
        skip_node_update: false,
        service: Some(svc),
        checks,
        takeover: false,
    }
}

#[test]
fn register_then_health_reflects_worst_check() {
    let mut f = Fixture::new();
    let check = HealthCheck {
        check_id: "web-http".into(),
        service_id: "web1".into(),
        status: CheckStatus::Critical,
        ..Default::default()
    };
    assert_eq!(
        f.apply(register("n1", service("web1", "web", "api"), vec![check])),
        Outcome::Done
    );
    f.store.read(|s| {
        let h = s.service_health("web");
        assert_eq!(h.len(), 1);
        assert_eq!(h[0].status(), CheckStatus::Critical);
        assert_eq!(h[0].checks[0].service_name, "web");
        assert_eq!(s.service_name_index("web"), 1);
    });
}

#[test]
fn a_write_from_another_owner_conflicts_unless_it_takes_over() {
    let mut f = Fixture::new();
    f.apply(register("n1", service("web1", "web", "terraform"), vec![]));
    let out = f.apply(register("n1", service("web1", "web", "api"), vec![]));
    assert_eq!(
        out,
        Outcome::Conflict {
            what: "service \"web1\" on node \"n1\"".into(),
            owner: "terraform".into()
        }
    );
    let deregister = Command::ServiceDeregister {
        node: "n1".into(),
        service_id: "web1".into(),
        owner: "api".into(),
        takeover: false,
    };
    assert!(matches!(f.apply(deregister), Outcome::Conflict { .. }));
    let take = Command::Register {
        node: node("n1"),
        skip_node_update: true,
        service: Some(service("web1", "web", "api")),
        checks: vec![],
        takeover: true,
    };
    assert_eq!(f.apply(take), Outcome::Done);
    f.store
        .read(|s| assert_eq!(s.service("n1", "web1").unwrap().owner, "api"));
}

#[test]
fn unchanged_registration_does_not_bump_indexes() {
    let mut f = Fixture::new();
    f.apply(register("n1", service("web1", "web", ""), vec![]));
    let before = f.store.read(|s| s.catalog_index());
    let mut rx = f.store.hub().subscribe(Table::Services);
    rx.borrow_and_update();
    f.apply(register("n1", service("web1", "web", ""), vec![]));
    assert_eq!(f.store.read(|s| s.catalog_index()), before);
    assert!(!rx.has_changed().unwrap());
}

#[test]
fn check_for_unknown_service_is_rejected_and_changes_nothing() {
    let mut f = Fixture::new();
    let check = HealthCheck {
        check_id: "c".into(),
        service_id: "nope".into(),
        ..Default::default()
    };
    let out = f.apply(Command::Register {
        node: node("n1"),
        skip_node_update: false,
        service: None,
        checks: vec![check],
        takeover: false,
    });
    assert!(matches!(out, Outcome::Rejected(_)));
    f.store.read(|s| assert!(s.node("n1").is_none()));
}

#[test]
fn txn_is_all_or_nothing() {
    let mut f = Fixture::new();
    let bad = Command::Txn {
        ops: vec![
            TxnOp::Set {
                key: "a".into(),
                value: b"1".to_vec(),
                flags: 0,
            },
            TxnOp::CheckIndex {
                key: "b".into(),
                index: 99,
            },
        ],
    };
    match f.apply(bad) {
        Outcome::Txn { errors, .. } => assert_eq!(errors[0].0, 1),
        other => panic!("{other:?}"),
    }
    f.store.read(|s| assert!(s.kv_get("a").is_none()));
    let good = Command::Txn {
        ops: vec![
            TxnOp::Set {
                key: "a".into(),
                value: b"1".to_vec(),
                flags: 0,
            },
            TxnOp::CheckNotExists { key: "b".into() },
            TxnOp::Get { key: "a".into() },
        ],
    };
    match f.apply(good) {
        Outcome::Txn { results, errors } => {
            assert!(errors.is_empty());
            assert_eq!(results.len(), 2);
            assert_eq!(results[1].value, b"1");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn config_entries_validate_kind_and_honour_cas() {
    let mut f = Fixture::new();
    let entry = |kind: &str| ConfigEntry {
        kind: kind.into(),
        name: "web".into(),
        body_json: "{}".into(),
        ..Default::default()
    };
    assert!(matches!(
        f.apply(Command::ConfigSet {
            entry: entry("nonsense"),
            cas: None,
            takeover: false
        }),
        Outcome::Rejected(_)
    ));
    assert_eq!(
        f.apply(Command::ConfigSet {
            entry: entry("service-defaults"),
            cas: Some(0),
            takeover: false
        }),
        Outcome::Bool(true)
    );
    assert_eq!(
        f.apply(Command::ConfigSet {
            entry: entry("service-defaults"),
            cas: Some(0),
            takeover: false
        }),
        Outcome::Bool(false)
    );
}

#[test]
fn config_cas_writes_only_over_the_modify_index_it_names() {
    let mut f = Fixture::new();
    let set = |body: &str, cas: Option<u64>| Command::ConfigSet {
        entry: ConfigEntry {
            kind: "service-defaults".into(),
            name: "web".into(),
            body_json: body.into(),
            ..Default::default()
        },
        cas,
        takeover: false,
    };
    let stored = |f: &Fixture| {
        f.store.read(|s| {
            s.config_entry("service-defaults", "web")
                .map(|e| (e.body_json.clone(), e.modify_index))
        })
    };
    // Not there: any index but 0 is refused, and nothing is written.
    assert_eq!(f.apply(set(r#"{"A":1}"#, Some(3))), Outcome::Bool(false));
    assert_eq!(stored(&f), None);
    assert_eq!(f.apply(set(r#"{"A":1}"#, Some(0))), Outcome::Bool(true));
    let (_, first) = stored(&f).unwrap();
    // A stale index is refused and changes nothing, not even the index.
    assert_eq!(
        f.apply(set(r#"{"A":2}"#, Some(first + 7))),
        Outcome::Bool(false)
    );
    assert_eq!(stored(&f), Some((r#"{"A":1}"#.into(), first)));
    let config_index = f.store.read(|s| s.table_index(Table::Config));
    assert_eq!(config_index, first);
    // The current index writes, and moves the index on.
    assert_eq!(f.apply(set(r#"{"A":2}"#, Some(first))), Outcome::Bool(true));
    let (body, second) = stored(&f).unwrap();
    assert_eq!(body, r#"{"A":2}"#);
    assert!(second > first);
    // The index it replaced is stale now.
    assert_eq!(
        f.apply(set(r#"{"A":3}"#, Some(first))),
        Outcome::Bool(false)
    );
    // Without cas, a write always goes through.
    assert_eq!(f.apply(set(r#"{"A":3}"#, None)), Outcome::Bool(true));
}

#[test]
fn snapshot_round_trip_and_restore_command() {
    let mut f = Fixture::new();
    f.apply(register("n1", service("web1", "web", ""), vec![]));
    f.apply(Command::KvSet {
        key: "k".into(),
        value: b"v".to_vec(),
        flags: 0,
        cas: None,
    });
    let snap = f.store.snapshot();
    f.apply(Command::KvDelete {
        key: "k".into(),
        recurse: false,
        cas: None,
    });
    assert_eq!(f.apply(Command::Restore { snapshot: snap }), Outcome::Done);
    f.store.read(|s| {
        assert_eq!(s.kv_get("k").unwrap().value, b"v");
        assert_eq!(s.service_health("web").len(), 1);
        assert_eq!(s.table_index(Table::Kv), 4);
    });
    assert!(matches!(
        f.apply(Command::Restore {
            snapshot: vec![9, 9]
        }),
        Outcome::Rejected(_)
    ));
}

fn intention(
    src: &str,
    dst: &str,
    action: mesh_types::IntentionAction,
    owner: &str,
) -> mesh_types::Intention {
    mesh_types::Intention {
        id: format!("{src}-{dst}"),
        source: src.into(),
        destination: dst.into(),
        action: Some(action),
        owner: owner.into(),
        ..Default::default()
    }
}

#[test]
fn intentions_keep_id_and_owner_and_replace_all_or_nothing() {
    use mesh_types::IntentionAction::*;
    let mut f = Fixture::new();
    let mut rx = f.store.hub().subscribe(Table::Config);
    rx.borrow_and_update();
    assert_eq!(
        f.apply(Command::IntentionSet {
            intention: intention("web", "api", Allow, "api"),
            takeover: false
        }),
        Outcome::Done
    );
    assert!(rx.has_changed().unwrap());
    // An update keeps the first ID.
    let mut again = intention("web", "api", Deny, "api");
    again.id = "other".into();
    f.apply(Command::IntentionSet {
        intention: again,
        takeover: false,
    });
    let stored = f
        .store
        .read(|s| s.intention("web", "api").cloned())
        .unwrap();
    assert_eq!((stored.id.as_str(), stored.action), ("web-api", Some(Deny)));
    assert_eq!(stored.create_index, 1);

    // File-owned intention on the same destination: a replace from api conflicts, nothing changes.
    f.apply(Command::IntentionSet {
        intention: intention("db", "api", Allow, "file:n1:/x.hcl"),
        takeover: false,
    });
    let out = f.apply(Command::IntentionsReplace {
        destination: "api".into(),
        intentions: vec![intention("web", "api", Allow, "api")],
        owner: "api".into(),
        takeover: false,
    });
    assert!(
        matches!(out, Outcome::Conflict { ref owner, .. } if owner == "file:n1:/x.hcl"),
        "{out:?}"
    );
    assert_eq!(
        f.store
            .read(|s| s.intentions_for_destination("api").count()),
        2
    );
    let out = f.apply(Command::IntentionDelete {
        source: "db".into(),
        destination: "api".into(),
        owner: "terraform".into(),
        takeover: false,
    });
    assert!(matches!(out, Outcome::Conflict { .. }));
    // With takeover the replace wins: db goes, web is updated.
    f.apply(Command::IntentionsReplace {
        destination: "api".into(),
        intentions: vec![intention("web", "api", Allow, "api")],
        owner: "api".into(),
        takeover: true,
    });
    let left: Vec<_> = f.store.read(|s| {
        s.intentions_for_destination("api")
            .map(|i| (i.source.clone(), i.action))
            .collect()
    });
    assert_eq!(left, [("web".to_string(), Some(Allow))]);
    // Invalid: neither action nor permissions.
    let mut bad = intention("x", "y", Allow, "api");
    bad.action = None;
    assert!(matches!(
        f.apply(Command::IntentionSet {
            intention: bad,
            takeover: false
        }),
        Outcome::Rejected(_)
    ));
    // Survives a snapshot.
    let snap = f.store.snapshot();
    let other = StateStore::new();
    other.restore(&snap).unwrap();
    assert_eq!(other.read(|s| s.intentions().count()), 1);
}

#[test]
fn ca_state_is_compare_and_set() {
    let mut f = Fixture::new();
    let set = |json: &str, cas| Command::CaSet {
        state_json: json.into(),
        cas,
    };
    assert_eq!(f.apply(set("{\"v\":1}", Some(0))), Outcome::Bool(true));
    assert_eq!(f.apply(set("{\"v\":2}", Some(0))), Outcome::Bool(false));
    assert_eq!(
        f.store.read(|s| s.ca().unwrap().state_json.clone()),
        "{\"v\":1}"
    );
    assert_eq!(f.apply(set("{\"v\":2}", Some(1))), Outcome::Bool(true));
    assert_eq!(f.store.read(|s| s.table_index(Table::Ca)), 3);
}

#[test]
fn all_or_nothing_changes_nothing_when_one_command_is_refused() {
    use mesh_types::IntentionAction::*;
    let mut f = Fixture::new();
    f.apply(Command::IntentionSet {
        intention: intention("db", "api", Allow, "terraform"),
        takeover: false,
    });
    let before = f.store.snapshot();
    let cmds = [
        GroupedCommand::IntentionSet {
            intention: intention("web", "api", Allow, "file:n1:/a.hcl"),
            takeover: false,
        },
        GroupedCommand::ConfigSet {
            entry: ConfigEntry {
                kind: "service-defaults".into(),
                name: "web".into(),
                body_json: "{}".into(),
                owner: "file:n1:/a.hcl".into(),
                ..Default::default()
            },
            cas: None,
            takeover: false,
        },
        GroupedCommand::IntentionSet {
            intention: intention("db", "api", Deny, "file:n1:/a.hcl"),
            takeover: false,
        },
    ];
    let grouped = |cmds: &[GroupedCommand]| Command::AllOrNothing {
        commands: cmds.to_vec(),
    };
    let out = f.apply(grouped(&cmds));
    assert!(
        matches!(out, Outcome::Conflict { ref owner, .. } if owner == "terraform"),
        "{out:?}"
    );
    let after = f.store.snapshot();
    // Only last_index moved.
    assert_eq!(f.store.read(|s| s.intentions().count()), 1);
    assert_eq!(
        f.store
            .read(|s| s.config_entries("service-defaults").count()),
        0
    );
    assert_eq!(before.len(), after.len());
    let out = f.apply(grouped(&cmds[..2]));
    assert_eq!(out, Outcome::Done);
    assert_eq!(f.store.read(|s| s.intentions().count()), 2);
    assert_eq!(
        f.store
            .read(|s| s.config_entries("service-defaults").count()),
        1
    );
}

fn acl_token(accessor: &str, secret: &str, policies: &[&str]) -> mesh_types::AclToken {
    mesh_types::AclToken {
        accessor_id: accessor.into(),
        secret_id: secret.into(),
        policies: policies.iter().map(|p| p.to_string()).collect(),
        ..Default::default()
    }
}

fn acl_policy(id: &str, name: &str) -> mesh_types::AclPolicy {
    mesh_types::AclPolicy {
        id: id.into(),
        name: name.into(),
        rules: "key_prefix \"\" { policy = \"read\" }".into(),
        ..Default::default()
    }
}

#[test]
fn acl_bootstrap_happens_once_and_tokens_keep_references_consistent() {
    let mut f = Fixture::new();
    let boot = acl_token("a1", "s1", &[]);
    assert_eq!(
        f.apply(Command::AclBootstrap {
            token: boot.clone()
        }),
        Outcome::Bool(true)
    );
    // The same secret again (a configured initial management token) is not an error.
    assert_eq!(
        f.apply(Command::AclBootstrap { token: boot }),
        Outcome::Bool(false)
    );
    let again = f.apply(Command::AclBootstrap {
        token: acl_token("a2", "s2", &[]),
    });
    assert!(matches!(again, Outcome::Rejected(ref why) if why.contains("no longer allowed")));
    assert!(f
        .store
        .read(|s| s.acl_token_by_secret("s1").unwrap().is_management()));

    // Unknown policy, duplicate secret and duplicate name are refused.
    let unknown = f.apply(Command::AclTokenSet {
        token: acl_token("a3", "s3", &["p1"]),
    });
    assert!(matches!(unknown, Outcome::Rejected(ref why) if why.contains("does not exist")));
    let dup = f.apply(Command::AclTokenSet {
        token: acl_token("a3", "s1", &[]),
    });
    assert!(matches!(dup, Outcome::Rejected(ref why) if why.contains("already used")));
    assert_eq!(
        f.apply(Command::AclPolicySet {
            policy: acl_policy("p1", "readers")
        }),
        Outcome::Done
    );
    let same_name = f.apply(Command::AclPolicySet {
        policy: acl_policy("p2", "readers"),
    });
    assert!(matches!(same_name, Outcome::Rejected(ref why) if why.contains("already exists")));
    assert_eq!(
        f.apply(Command::AclTokenSet {
            token: acl_token("a3", "s3", &["p1"])
        }),
        Outcome::Done
    );
    // Deleting a policy removes it from the tokens that carried it.
    assert_eq!(
        f.apply(Command::AclPolicyDelete { id: "p1".into() }),
        Outcome::Done
    );
    assert!(f
        .store
        .read(|s| s.acl_token("a3").unwrap().policies.is_empty()));
    let builtin = f.apply(Command::AclPolicyDelete {
        id: mesh_types::GLOBAL_MANAGEMENT_POLICY_ID.into(),
    });
    assert!(matches!(builtin, Outcome::Rejected(_)));
    assert_eq!(
        f.apply(Command::AclTokenDelete {
            accessor_id: "a3".into()
        }),
        Outcome::Done
    );
    assert!(f.store.read(|s| s.acl_token_by_secret("s3").is_none()));

    // ACL data survives a snapshot.
    let restored = StateStore::new();
    restored.restore(&f.store.snapshot()).unwrap();
    assert!(restored.read(|s| s.acl_token_by_secret("s1").is_some()));
    assert_eq!(restored.read(|s| s.acl_bootstrap_index()), Some(1));
}

#[test]
fn a_snapshot_from_before_acls_restores_with_empty_acl_tables() {
    let mut f = Fixture::new();
    f.apply(Command::KvSet {
        key: "k".into(),
        value: b"v".to_vec(),
        flags: 0,
        cas: None,
    });
    let snap = f.store.snapshot();
    // A format-2 snapshot is today's body (after the version byte and the
    // checksum) without the trailing ACL tables.
    let empty_acl = postcard::to_stdvec(&crate::acl::AclTables::default()).unwrap();
    let mut old = vec![2u8];
    old.extend_from_slice(&snap[33..snap.len() - empty_acl.len()]);
    assert_eq!(&snap[snap.len() - empty_acl.len()..], &empty_acl[..]);
    let restored = StateStore::new();
    restored.restore(&old).unwrap();
    assert_eq!(
        restored.read(|s| s.kv_get("k").unwrap().value.clone()),
        b"v"
    );
    assert_eq!(restored.read(|s| s.acl_tokens().count()), 0);
}

#[test]
fn a_changed_byte_anywhere_in_a_snapshot_is_refused() {
    let mut f = Fixture::new();
    f.apply(register("n1", service("web1", "web", ""), vec![]));
    let snap = f.store.snapshot();
    for at in [1, 20, 40, snap.len() / 2, snap.len() - 1] {
        let mut bad = snap.clone();
        bad[at] ^= 0x01;
        let err = crate::State::from_snapshot(&bad).unwrap_err().to_string();
        assert!(err.contains("checksum mismatch"), "byte {at}: {err}");
    }
    let err = crate::State::from_snapshot(&snap[..20])
        .unwrap_err()
        .to_string();
    assert!(err.contains("truncated"), "{err}");
}

#[test]
fn a_format_3_snapshot_reads_with_no_sessions_and_sessions_survive_a_snapshot() {
    let mut f = Fixture::new();
    f.apply(register("n1", service("web1", "web", ""), vec![]));
    let snap = f.store.snapshot();
    assert_eq!(snap[0], 8);
    // Format 7 was format 8 without the extended ACL tables at the end;
    // format 6 was format 7 without the coordinate table;
    // format 5 was format 6 without the prepared query table;
    // format 4 was format 5's body without the checksum; format 3 was
    // format 4 without the session tables at the end.
    let no_coords = postcard::to_stdvec(&crate::coordinates::CoordinateTables::default()).unwrap();
    let no_acl_ext = postcard::to_stdvec(&crate::acl_ext::AclExtTables::default()).unwrap();
    let seven_body = &snap[33..snap.len() - no_acl_ext.len()];
    let mut seven = vec![7];
    seven.extend_from_slice(&Sha256::digest(seven_body));
    seven.extend_from_slice(seven_body);
    let state = crate::State::from_snapshot(&seven).unwrap();
    assert_eq!(state.service_health("web").len(), 1);
    assert_eq!(state.acl_roles().count(), 0);
    let six_body = &seven_body[..seven_body.len() - no_coords.len()];
    let mut six = vec![6];
    six.extend_from_slice(&Sha256::digest(six_body));
    six.extend_from_slice(six_body);
    let state = crate::State::from_snapshot(&six).unwrap();
    assert_eq!(state.service_health("web").len(), 1);
    assert_eq!(state.coordinates().count(), 0);
    let no_queries = postcard::to_stdvec(&crate::queries::QueryTables::default()).unwrap();
    let body = &six_body[..six_body.len() - no_queries.len()];
    let mut five = vec![5];
    five.extend_from_slice(&Sha256::digest(body));
    five.extend_from_slice(body);
    assert_eq!(
        crate::State::from_snapshot(&five)
            .unwrap()
            .service_health("web")
            .len(),
        1
    );
    let mut four = vec![4];
    four.extend_from_slice(body);
    assert_eq!(
        crate::State::from_snapshot(&four)
            .unwrap()
            .service_health("web")
            .len(),
        1
    );
    let empty = postcard::to_stdvec(&crate::sessions::SessionTables::default()).unwrap();
    let mut old = four[..four.len() - empty.len()].to_vec();
    old[0] = 3;
    let state = crate::State::from_snapshot(&old).unwrap();
    assert_eq!(state.sessions().count(), 0);
    assert_eq!(state.service_health("web").len(), 1);

    let session = mesh_types::Session {
        id: "s1".into(),
        node: "n1".into(),
        ..Default::default()
    };
    assert_eq!(f.apply(Command::SessionCreate { session }), Outcome::Done);
    let acquire = Command::KvAcquire {
        key: "lock".into(),
        value: b"me".to_vec(),
        flags: 0,
        session: "s1".into(),
    };
    assert_eq!(f.apply(acquire), Outcome::Bool(true));
    let state = crate::State::from_snapshot(&f.store.snapshot()).unwrap();
    assert_eq!(state.lock_holder("lock"), Some("s1"));
    assert_eq!(state.session("s1").unwrap().node, "n1");
}

#[test]
fn prepared_queries_resolve_by_id_name_and_template_and_go_with_their_session() {
    let mut f = Fixture::new();
    let web = |id: &str, tags: &[&str]| {
        let mut s = service(id, "web", "");
        s.tags = tags.iter().map(|t| t.to_string()).collect();
        s
    };
    f.apply(register("n1", web("web1", &["primary"]), vec![]));
    f.apply(register("n2", web("web2", &["replica"]), vec![]));
    let session = mesh_types::Session {
        id: "s1".into(),
        node: "n1".into(),
        ..Default::default()
    };
    assert_eq!(f.apply(Command::SessionCreate { session }), Outcome::Done);
    let query = |id: &str, name: &str| mesh_types::PreparedQuery {
        id: id.into(),
        name: name.into(),
        service: "web".into(),
        tags: vec!["!replica".into()],
        ..Default::default()
    };
    assert_eq!(
        f.apply(Command::QuerySet {
            query: query("q1", "web-primary")
        }),
        Outcome::Done
    );
    // Names are unique; the session must exist.
    assert!(matches!(
        f.apply(Command::QuerySet { query: query("q2", "web-primary") }),
        Outcome::Rejected(e) if e.contains("already exists")
    ));
    let mut bound = query("q3", "bound");
    bound.session = "nope".into();
    assert!(matches!(
        f.apply(Command::QuerySet {
            query: bound.clone()
        }),
        Outcome::Rejected(_)
    ));
    bound.session = "s1".into();
    assert_eq!(f.apply(Command::QuerySet { query: bound }), Outcome::Done);
    let template = mesh_types::PreparedQuery {
        id: "t1".into(),
        name: "any-".into(),
        service: "${name.suffix}".into(),
        template_type: mesh_types::TEMPLATE_NAME_PREFIX_MATCH.into(),
        ..Default::default()
    };
    assert_eq!(
        f.apply(Command::QuerySet { query: template }),
        Outcome::Done
    );

    f.store.read(|s| {
        for key in ["q1", "web-primary"] {
            let q = s.resolve_query(key).unwrap();
            let nodes: Vec<&str> = s
                .run_query(&q, "")
                .iter()
                .map(|h| h.node.name.as_str())
                .collect();
            assert_eq!(nodes, vec!["n1"], "{key}");
        }
        let q = s.resolve_query("any-web").unwrap();
        assert_eq!(q.service, "web");
        let near: Vec<&str> = s
            .run_query(&q, "n2")
            .iter()
            .map(|h| h.node.name.as_str())
            .collect();
        assert_eq!(near, vec!["n2", "n1"], "the near node first");
        assert!(s.resolve_query("nothing").is_none());
    });
    // A snapshot keeps them.
    let restored = crate::State::from_snapshot(&f.store.snapshot()).unwrap();
    assert_eq!(restored.prepared_queries().count(), 3);
    // Destroying the session deletes the query bound to it.
    assert_eq!(
        f.apply(Command::SessionDestroy { id: "s1".into() }),
        Outcome::Done
    );
    f.store.read(|s| {
        assert!(s.prepared_query("q3").is_none());
        assert!(s.prepared_query("q1").is_some());
    });
    assert_eq!(
        f.apply(Command::QueryDelete { id: "q1".into() }),
        Outcome::Done
    );
    assert!(f.store.read(|s| s.resolve_query("web-primary").is_none()));
}

mod acl_and_coordinates;
