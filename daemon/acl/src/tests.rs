use crate::{parse_rules, Access, Authorizer, Global, Resource};

const APP: &str = r#"
key_prefix "" { policy = "read" }
key_prefix "app/" { policy = "write" }
key "app/secret" { policy = "deny" }
service_prefix "" { policy = "read" }
service "web" {
  policy     = "write"
  intentions = "write"
}
node_prefix "" { policy = "read" }
operator = "read"
"#;

#[test]
fn exact_beats_prefix_and_longest_prefix_wins() {
    let rules = parse_rules(APP).unwrap();
    let a = Authorizer::from_rules([&rules], false);
    assert!(a.allows(Resource::Key, "other", Access::Read));
    assert!(!a.allows(Resource::Key, "other", Access::Write));
    assert!(a.allows(Resource::Key, "app/x", Access::Write));
    assert!(!a.allows(Resource::Key, "app/secret", Access::Read));
    assert!(!a.allows_key_write_prefix("app/"));
    assert!(a.allows_key_write_prefix("app/x/"));
    assert!(a.allows(Resource::Service, "web", Access::Write));
    assert!(!a.allows(Resource::Service, "db", Access::Write));
    assert!(a.allows(Resource::Intention, "web", Access::Write));
    // Service read gives intention read, never write.
    assert!(a.allows(Resource::Intention, "db", Access::Read));
    assert!(!a.allows(Resource::Intention, "db", Access::Write));
    assert!(a.allows_global(Global::Operator, Access::Read));
    assert!(!a.allows_global(Global::Operator, Access::Write));
    // Nothing said about ACLs: the default (deny) applies.
    assert!(!a.allows_global(Global::Acl, Access::Read));
    // mesh falls back to operator.
    assert!(a.allows_global(Global::Mesh, Access::Read));
}

#[test]
fn default_allow_permits_what_no_rule_names_but_deny_rules_hold() {
    let rules = parse_rules("service \"db\" { policy = \"deny\" }").unwrap();
    let a = Authorizer::from_rules([&rules], true);
    assert!(a.allows(Resource::Key, "anything", Access::Write));
    assert!(!a.allows(Resource::Service, "db", Access::Read));
    assert!(!a.allows(Resource::Intention, "db", Access::Read));
    assert!(a.allows_global(Global::Acl, Access::Write));
}

#[test]
fn deny_wins_when_policies_are_merged_otherwise_the_stronger_grant() {
    let read = parse_rules("key_prefix \"a/\" { policy = \"read\" }").unwrap();
    let write = parse_rules("key_prefix \"a/\" { policy = \"write\" }").unwrap();
    let deny = parse_rules("key_prefix \"a/\" { policy = \"deny\" }").unwrap();
    let rw = Authorizer::from_rules([&read, &write], false);
    assert!(rw.allows(Resource::Key, "a/b", Access::Write));
    let rwd = Authorizer::from_rules([&read, &write, &deny], false);
    assert!(!rwd.allows(Resource::Key, "a/b", Access::Read));
}

#[test]
fn management_allows_everything() {
    let a = Authorizer::management();
    assert!(a.is_management());
    assert!(a.allows_global(Global::Acl, Access::Write));
    assert!(a.allows_key_write_prefix(""));
}

#[test]
fn bad_rules_say_what_and_where() {
    let cases = [
        (
            "servce \"web\" { policy = \"read\" }",
            1,
            1,
            "did you mean `service`",
        ),
        (
            "service \"web\" { policy = \"raed\" }",
            1,
            26,
            "not an access level",
        ),
        (
            "\n\nkey_prefix \"a\" { polcy = \"read\" }",
            3,
            18,
            "no field `polcy`",
        ),
        ("service { policy = \"read\" }", 1, 1, "exactly one name"),
        ("service \"x\" { }", 1, 1, "needs policy"),
        ("operator = read", 1, 12, "quoted string"),
        ("key \"a\" { policy = ", 1, 11, "syntax error"),
        (
            "node \"n\" {\n  policy = \"read\"\n  intentions = \"write\"\n}",
            3,
            3,
            "no field `intentions`",
        ),
    ];
    for (text, line, column, want) in cases {
        let e = parse_rules(text).unwrap_err();
        assert!(e.message.contains(want), "{text:?}: {e}");
        assert_eq!((e.line, e.column), (line, column), "{text:?}: {e}");
    }
}

#[test]
fn an_error_inside_a_multibyte_character_has_a_position_not_a_panic() {
    // Found by the acl_rules fuzz target: the parser's error offset fell
    // inside the last character.
    let err = parse_rules("A=A(bA\u{5dd}").unwrap_err();
    assert_eq!(err.line, 1);
    assert!(err.column <= 8, "{err}");
}

/// A stable stand-in for the fuzzer: mutations of a real policy, with
/// multi-byte characters among the bytes inserted.
#[test]
fn mutated_rules_are_errors_not_panics() {
    let mut seed = 0x853c_49e6_748f_ea9bu64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let pieces = [
        "{", "}", "\"", "=", "(", "\n", "é", "ם", "_prefix", " ", "#", "${",
    ];
    for _ in 0..3000 {
        let mut text: Vec<char> = APP.chars().collect();
        for _ in 0..(next() % 5 + 1) {
            let i = (next() as usize) % text.len();
            match next() % 3 {
                0 => {
                    text.remove(i);
                }
                _ => {
                    let piece = pieces[(next() as usize) % pieces.len()];
                    for (k, c) in piece.chars().enumerate() {
                        text.insert(i + k, c);
                    }
                }
            }
        }
        let text: String = text.into_iter().collect();
        let _ = parse_rules(&text);
    }
}

#[test]
fn json_rules_mean_what_the_same_hcl_rules_mean() {
    let json = r#"{"key_prefix": {"app/": {"policy": "write"}}, "operator": "read",
        "service": [{"web": {"policy": "write", "intentions": "read"}}]}"#;
    let hcl = "key_prefix \"app/\" { policy = \"write\" }\noperator = \"read\"\nservice \"web\" {\n  policy = \"write\"\n  intentions = \"read\"\n}\n";
    let a = Authorizer::from_rules([&parse_rules(json).unwrap()], false);
    let b = Authorizer::from_rules([&parse_rules(hcl).unwrap()], false);
    for (r, name, need) in [
        (Resource::Key, "app/x", Access::Write),
        (Resource::Key, "other", Access::Read),
        (Resource::Service, "web", Access::Write),
        (Resource::Intention, "web", Access::Read),
        (Resource::Intention, "web", Access::Write),
    ] {
        assert_eq!(
            a.allows(r, name, need),
            b.allows(r, name, need),
            "{r:?} {name} {need:?}"
        );
    }
    assert!(a.allows_global(Global::Operator, Access::Read));
    let err = parse_rules(r#"{"key_prefix": {"a": {"policy": "write"}},"#).unwrap_err();
    assert!(err.to_string().contains("JSON rules"), "{err}");
    let err = parse_rules(r#"{"key_prefix\" {}\nacl = \"write": "x"}"#).unwrap_err();
    assert!(err.to_string().contains("not a rule name"), "{err}");
}
