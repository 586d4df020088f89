use std::collections::HashMap;

use serde_json::json;

use super::*;

#[derive(Default)]
struct Stored(HashMap<(String, String), String>);

impl Stored {
    fn with(mut self, kind: &str, name: &str, body: Value) -> Self {
        self.0.insert((kind.into(), name.into()), body.to_string());
        self
    }
}

impl Entries for Stored {
    fn body(&self, kind: &str, name: &str) -> Option<String> {
        self.0.get(&(kind.to_string(), name.to_string())).cloned()
    }
}

fn http(name: &str) -> (String, String, Value) {
    (
        "service-defaults".into(),
        name.into(),
        json!({"Protocol": "http"}),
    )
}

fn stored(entries: &[(String, String, Value)]) -> Stored {
    entries
        .iter()
        .fold(Stored::default(), |s, (k, n, b)| s.with(k, n, b.clone()))
}

#[test]
fn a_service_without_entries_has_a_default_resolver() {
    let c = compile(&Stored::default(), "web", "dc1", "td.consul").unwrap();
    assert!(c.default);
    assert_eq!(c.protocol, "tcp");
    assert_eq!(c.start_node, "resolver:web.default.default.dc1");
    let t = &c.targets["web.default.default.dc1"];
    assert_eq!(t.sni, "web.default.dc1.internal.td.consul");
    assert_eq!(t.connect_timeout.0, DEFAULT_CONNECT_TIMEOUT);
    let v = serde_json::to_value(&c).unwrap();
    assert_eq!(
        v["Nodes"]["resolver:web.default.default.dc1"]["Type"],
        "resolver"
    );
    assert_eq!(
        v["Nodes"]["resolver:web.default.default.dc1"]["Resolver"]["ConnectTimeout"],
        "5s"
    );
}

#[test]
fn router_then_splitter_then_subset_resolvers() {
    let s = stored(&[
        http("web"),
        http("admin"),
        (
            "service-router".into(),
            "web".into(),
            json!({"Routes": [{"Match": {"HTTP": {"PathPrefix": "/admin"}},
                               "Destination": {"Service": "admin", "NumRetries": 2}}]}),
        ),
        (
            "service-splitter".into(),
            "web".into(),
            json!({"Splits": [{"Weight": 90, "ServiceSubset": "v1"}, {"Weight": 10, "service_subset": "v2"}]}),
        ),
        (
            "service-resolver".into(),
            "web".into(),
            json!({"DefaultSubset": "v1", "Subsets": {"v1": {"Filter": "Service.Meta.version == v1"},
                                                         "v2": {"Filter": "Service.Meta.version == v2"}},
                   "ConnectTimeout": "2s"}),
        ),
    ]);
    let c = compile(&s, "web", "dc1", "td").unwrap();
    assert!(!c.default);
    assert_eq!(c.start_node, "router:web.default.default");
    let routes = c.nodes[&c.start_node].routes.as_ref().unwrap();
    assert_eq!(routes.len(), 2, "the route and the default one");
    assert_eq!(routes[0].next_node, "resolver:admin.default.default.dc1");
    assert_eq!(routes[1].next_node, "splitter:web.default.default");
    let splits = c.nodes["splitter:web.default.default"]
        .splits
        .as_ref()
        .unwrap();
    assert_eq!(splits[0].next_node, "resolver:v1.web.default.default.dc1");
    assert_eq!(splits[1].next_node, "resolver:v2.web.default.default.dc1");
    let v2 = &c.targets["v2.web.default.default.dc1"];
    assert_eq!(v2.connect_timeout.0, Duration::from_secs(2));
    assert_eq!(v2.sni, "v2.web.default.dc1.internal.td");
    let instance = json!({"Service": {"Meta": {"version": "v2"}}});
    assert!(v2.admits(&instance, false));
    assert!(!c.targets["v1.web.default.default.dc1"].admits(&instance, false));
}

#[test]
fn redirects_and_failover_resolve_to_targets() {
    let s = stored(&[
        (
            "service-resolver".into(),
            "old".into(),
            json!({"Redirect": {"Service": "db"}}),
        ),
        (
            "service-resolver".into(),
            "db".into(),
            json!({"Subsets": {"primary": {"Filter": "primary in Service.Tags"}, "replica": {}},
                   "DefaultSubset": "primary",
                   "Failover": {"primary": {"ServiceSubset": "replica"}}}),
        ),
    ]);
    let c = compile(&s, "old", "dc1", "td").unwrap();
    let (primary, failover) = c.default_targets().unwrap();
    assert_eq!(primary.id, "primary.db.default.default.dc1");
    assert_eq!(failover.len(), 1);
    assert_eq!(failover[0].id, "replica.db.default.default.dc1");
}

#[test]
fn bad_chains_name_the_entry_and_the_field() {
    // A redirect loop.
    let s = stored(&[
        (
            "service-resolver".into(),
            "a".into(),
            json!({"Redirect": {"Service": "b"}}),
        ),
        (
            "service-resolver".into(),
            "b".into(),
            json!({"Redirect": {"Service": "a"}}),
        ),
    ]);
    let e = compile(&s, "a", "dc1", "").unwrap_err();
    assert_eq!(e.field, "Redirect");
    assert!(e.message.contains("loop"), "{e}");
    // Failover to a subset the other service does not define.
    let s = stored(&[(
        "service-resolver".into(),
        "a".into(),
        json!({"Failover": {"*": {"Service": "b", "ServiceSubset": "v9"}}}),
    )]);
    let e = compile(&s, "a", "dc1", "").unwrap_err();
    assert_eq!(
        (e.kind.as_str(), e.name.as_str()),
        ("service-resolver", "a")
    );
    assert!(e.to_string().contains("no subset named \"v9\""), "{e}");
    // Routes on a tcp service.
    let s = stored(&[("service-router".into(), "a".into(), json!({"Routes": []}))]);
    let e = compile(&s, "a", "dc1", "").unwrap_err();
    assert!(
        e.to_string()
            .starts_with("service-router \"a\": service \"a\" speaks tcp"),
        "{e}"
    );
    // A split to a service of another protocol.
    let s = stored(&[
        http("a"),
        (
            "service-splitter".into(),
            "a".into(),
            json!({"Splits": [{"Weight": 100, "Service": "b"}]}),
        ),
    ]);
    let e = compile(&s, "a", "dc1", "").unwrap_err();
    assert!(e.message.contains("speaks tcp"), "{e}");
}

#[test]
fn entries_are_checked_on_their_own() {
    let e = entries::validate(
        "service-splitter",
        "web",
        r#"{"Splits":[{"Weight":90},{"Weight":9}]}"#,
    )
    .unwrap_err();
    assert_eq!(
        e.to_string(),
        "service-splitter \"web\": Splits: the weights sum to 99, not 100"
    );
    let e = entries::validate("service-defaults", "web", r#"{"Protocol":"udp"}"#).unwrap_err();
    assert_eq!(e.field, "Protocol");
    let e = entries::validate(
        "service-resolver",
        "web",
        r#"{"Subsets":{"v1":{"Filter":"Service.Meta.v =="}}}"#,
    )
    .unwrap_err();
    assert!(e.field.contains("Filter"), "{e}");
    assert!(e.message.contains("offset"), "{e}");
    let e = entries::validate(
        "service-resolver",
        "web",
        r#"{"DefaultSubset":"v2","Subsets":{"v1":{}}}"#,
    )
    .unwrap_err();
    assert_eq!(e.field, "DefaultSubset");
    let e = entries::validate(
        "service-router",
        "web",
        r#"{"Routes":[{"Match":{"HTTP":{"PathPrefix":"x"}}}]}"#,
    )
    .unwrap_err();
    assert_eq!(e.field, "Routes[0].Match.HTTP.PathPrefix");
    let e = entries::validate(
        "service-router",
        "web",
        r#"{"Routes":[{"Destination":{"NumRetries":99}}]}"#,
    )
    .unwrap_err();
    assert!(e.message.contains("MAX_RETRIES"), "{e}");
    assert!(entries::validate(
        "service-splitter",
        "web",
        r#"{"splits":[{"weight":50},{"weight":50}]}"#
    )
    .is_ok());
}

#[test]
fn a_change_is_refused_only_for_what_it_breaks() {
    let before = stored(&[
        http("web"),
        (
            "service-splitter".into(),
            "web".into(),
            json!({"Splits": [{"Weight": 100, "ServiceSubset": "v1"}]}),
        ),
        (
            "service-resolver".into(),
            "web".into(),
            json!({"Subsets": {"v1": {}}}),
        ),
    ]);
    let services: BTreeSet<String> = ["web".to_string()].into();
    // Dropping the subset the splitter needs breaks web's chain.
    let e = check_change(
        &before,
        "service-resolver",
        "web",
        Some(r#"{"Subsets":{}}"#),
        &services,
        "dc1",
    )
    .unwrap_err();
    assert!(e.message.contains("no subset named \"v1\""), "{e}");
    // So does deleting the resolver, or making web tcp.
    assert!(check_change(&before, "service-resolver", "web", None, &services, "dc1").is_err());
    assert!(check_change(
        &before,
        "service-defaults",
        "web",
        Some(r#"{"Protocol":"tcp"}"#),
        &services,
        "dc1"
    )
    .is_err());
    // Adding a subset is fine.
    check_change(
        &before,
        "service-resolver",
        "web",
        Some(r#"{"Subsets":{"v1":{},"v2":{}}}"#),
        &services,
        "dc1",
    )
    .unwrap();
}
