use super::*;
use mesh_types::{IntentionAction as Action, Permission as P};

mod agreement;

struct Req {
    path: &'static str,
    method: &'static str,
    headers: Vec<(&'static str, &'static str)>,
}

impl RequestView for Req {
    fn path(&self) -> &str {
        self.path
    }
    fn method(&self) -> &str {
        self.method
    }
    fn header_values(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| *n == name)
            .map(|(_, v)| *v)
            .collect()
    }
}

fn get(path: &'static str) -> Req {
    Req {
        path,
        method: "GET",
        headers: vec![],
    }
}

/// An L4 intention `source => destination`.
fn rule(source: &str, destination: &str, action: Action) -> Intention {
    Intention {
        source: source.into(),
        destination: destination.into(),
        action: Some(action),
        ..Default::default()
    }
}

#[test]
fn highest_precedence_first_match_decides_and_default_applies() {
    let set = IntentionSet {
        default_allow: false,
        // Deliberately unsorted.
        rules: vec![
            rule("*", "db", Action::Deny),
            rule("api", "db", Action::Allow),
        ],
    };
    let p = Policy::compile(&set);
    let v = p.connection("api", Layer::L4);
    assert!(v.allow);
    assert_eq!(v.matched.as_deref(), Some("api => db"));
    assert_eq!(v.reason, "intention api => db (allow, precedence 9)");
    let v = p.connection("web", Layer::L4);
    assert!(!v.allow);
    assert_eq!(v.matched.as_deref(), Some("* => db"));

    let p = Policy::compile(&IntentionSet {
        default_allow: false,
        rules: vec![],
    });
    let v = p.connection("x", Layer::L4);
    assert_eq!((v.reason.as_str(), v.matched), ("default deny", None));
    assert!(
        Policy::compile(&IntentionSet::default())
            .connection("x", Layer::L4)
            .allow
    );
}

#[test]
fn a_wildcard_destination_ranks_below_an_exact_one() {
    // web => * (6) loses to * => db (8) for web → db.
    let set = IntentionSet::for_destination(
        &[
            rule("web", "*", Action::Allow),
            rule("*", "db", Action::Deny),
            rule("*", "other", Action::Allow),
        ],
        "db",
        true,
    );
    assert_eq!(set.rules.len(), 2, "only db's and *'s intentions");
    let v = Policy::compile(&set).connection("web", Layer::L4);
    assert!(!v.allow);
    assert_eq!(v.matched.as_deref(), Some("* => db"));
}

fn l7(perms: Vec<P>) -> Policy {
    Policy::compile(&IntentionSet {
        default_allow: false,
        rules: vec![Intention {
            source: "api".into(),
            destination: "web".into(),
            action: None,
            permissions: perms,
            ..Default::default()
        }],
    })
}

fn perm(action: Action, http: HttpMatch) -> P {
    P {
        action,
        http: Some(http),
    }
}

#[test]
fn l7_paths_and_methods() {
    let p = l7(vec![
        perm(
            Action::Deny,
            HttpMatch {
                path_prefix: Some("/admin".into()),
                ..Default::default()
            },
        ),
        perm(
            Action::Allow,
            HttpMatch {
                path_exact: Some("/health".into()),
                ..Default::default()
            },
        ),
        perm(
            Action::Allow,
            HttpMatch {
                path_regex: Some("/v[0-9]+/.*".into()),
                methods: vec!["get".into(), "HEAD".into()],
                ..Default::default()
            },
        ),
    ]);
    assert!(p.connection("api", Layer::L7).allow);
    assert!(!p.connection("api", Layer::L4).allow);
    assert!(!p.request("api", &get("/admin/x")).allow);
    assert!(p.request("api", &get("/health")).allow);
    assert!(!p.request("api", &get("/health/x")).allow);
    assert!(p.request("api", &get("/v1/users")).allow);
    assert!(!p.request("api", &get("/xv1/users")).allow);
    let post = Req {
        path: "/v1/users",
        method: "POST",
        headers: vec![],
    };
    let v = p.request("api", &post);
    assert!(!v.allow);
    assert!(v.reason.contains("default deny"), "{}", v.reason);
    // Another source falls to the default.
    assert!(!p.request("web", &get("/health")).allow);
}

#[test]
fn l7_headers() {
    let hm = |h: HeaderMatch| {
        l7(vec![perm(
            Action::Allow,
            HttpMatch {
                headers: vec![h],
                ..Default::default()
            },
        )])
    };
    let with = |v: &'static str| Req {
        path: "/",
        method: "GET",
        headers: vec![("x-team", v)],
    };
    let present = hm(HeaderMatch {
        name: "X-Team".into(),
        present: true,
        ..Default::default()
    });
    assert!(present.request("api", &with("a")).allow);
    assert!(!present.request("api", &get("/")).allow);

    let exact = hm(HeaderMatch {
        name: "x-team".into(),
        exact: Some("blue".into()),
        ..Default::default()
    });
    assert!(exact.request("api", &with("blue")).allow);
    assert!(!exact.request("api", &with("red")).allow);

    let affix = hm(HeaderMatch {
        name: "x-team".into(),
        prefix: Some("bl".into()),
        suffix: Some("ue".into()),
        ..Default::default()
    });
    assert!(affix.request("api", &with("blue")).allow);
    assert!(!affix.request("api", &with("black")).allow);

    let re_inverted = hm(HeaderMatch {
        name: "x-team".into(),
        regex: Some("r.d".into()),
        invert: true,
        ..Default::default()
    });
    assert!(!re_inverted.request("api", &with("red")).allow);
    assert!(re_inverted.request("api", &with("blue")).allow);

    let broken = hm(HeaderMatch {
        name: "x-team".into(),
        regex: Some("(".into()),
        ..Default::default()
    });
    let v = broken.request("api", &with("blue"));
    assert!(!v.allow);
    assert!(v.reason.contains("invalid regex"));
}
