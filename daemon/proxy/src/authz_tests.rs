use super::*;
use crate::snapshot::{IntentionRule, Permission as P};

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

fn rule(id: &str, source: &str, action: Action, precedence: i32) -> IntentionRule {
    IntentionRule {
        id: id.into(),
        source: source.into(),
        action,
        permissions: vec![],
        precedence,
    }
}

#[test]
fn highest_precedence_first_match_decides_and_default_applies() {
    let intentions = Intentions {
        default_allow: false,
        // Deliberately unsorted.
        rules: vec![
            rule("star", "*", Action::Deny, 8),
            rule("api", "api", Action::Allow, 9),
        ],
    };
    let p = Policy::compile(&intentions);
    let v = p.connection("api", Protocol::Tcp);
    assert!(v.allow);
    assert_eq!(v.reason, "intention api");
    let v = p.connection("web", Protocol::Tcp);
    assert!(!v.allow);
    assert_eq!(v.reason, "intention star");

    let p = Policy::compile(&Intentions {
        default_allow: false,
        rules: vec![],
    });
    assert_eq!(p.connection("x", Protocol::Tcp).reason, "default deny");
    assert!(
        Policy::compile(&Intentions::default())
            .connection("x", Protocol::Tcp)
            .allow
    );
}

#[test]
fn exact_source_beats_wildcard_on_equal_precedence() {
    let p = Policy::compile(&Intentions {
        default_allow: true,
        rules: vec![
            rule("w", "*", Action::Allow, 5),
            rule("e", "api", Action::Deny, 5),
        ],
    });
    assert!(!p.connection("api", Protocol::Tcp).allow);
}

fn l7(perms: Vec<P>) -> Policy {
    Policy::compile(&Intentions {
        default_allow: false,
        rules: vec![IntentionRule {
            id: "l7".into(),
            source: "api".into(),
            action: Action::Allow,
            permissions: perms,
            precedence: 9,
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
    assert!(p.connection("api", Protocol::Http).allow);
    assert!(!p.connection("api", Protocol::Tcp).allow);
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
                header: vec![h],
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
