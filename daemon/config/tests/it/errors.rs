//! Errors a user sees name file:line:col and the reason.

use mesh_config::{load, load_file, Error, RuntimeConfig, Source};

use crate::dir_with;

fn parse_error(name: &str, text: &str) -> String {
    let dir = dir_with(&[(name, text)]);
    let err = load_file(&dir.path().join(name)).unwrap_err();
    let Error::Parse(err) = err else {
        panic!("not a parse error: {err}")
    };
    // Strip the temp dir so the expectation reads like what a user sees.
    err.to_string()
        .replace(&format!("{}/", dir.path().display()), "")
}

#[test]
fn hcl_errors() {
    assert_eq!(
        parse_error("a.hcl", "server = true\n\nnode_nam = \"x\"\n"),
        "a.hcl:3:1: unknown key `node_nam`, did you mean `node_name`?"
    );
    assert_eq!(
        parse_error("a.hcl", "performance {\n  raft_multipler = 2\n}\n"),
        "a.hcl:2:3: unknown key `raft_multipler` in `performance`, did you mean `raft_multiplier`?"
    );
    assert_eq!(
        parse_error("a.hcl", "server = \"yes\"\n"),
        "a.hcl:1:10: `server`: expected a boolean, found string \"yes\""
    );
    assert_eq!(
        parse_error("a.hcl", "retry_join = \"10.0.0.1\"\n"),
        "a.hcl:1:14: `retry_join`: expected a list, found string \"10.0.0.1\""
    );
    let syntax = parse_error("a.hcl", "ports {\n  http = 8500\n");
    assert!(syntax.starts_with("a.hcl:2:14: syntax error"), "{syntax}");
    assert_eq!(
        parse_error("a.hcl", "node_name = var.name\n"),
        "a.hcl:1:13: expressions (variables, functions, operators) are not supported in agent config; write a literal value"
    );
}

#[test]
fn json_errors() {
    assert_eq!(
        parse_error("a.json", "{\n  \"ports\": {\n    \"dsn\": 53\n  }\n}\n"),
        "a.json:3:5: unknown key `dsn` in `ports`, did you mean `dns`?"
    );
    assert_eq!(
        parse_error("a.json", "{\n  \"bootstrap_expect\": \"3\"\n}\n"),
        "a.json:2:23: `bootstrap_expect`: expected a non-negative integer, found string \"3\""
    );
    assert_eq!(
        parse_error("a.json", "{\n  \"server\": true,\n}\n"),
        "a.json:3:1: syntax error: trailing comma"
    );
}

#[test]
fn validation_errors_point_at_the_file() {
    let dir = dir_with(&[("a.hcl", "data_dir = \"/x\"\n\ndatacenter = \"East_1\"\n")]);
    let raw = load(&[Source::Dir(dir.path().to_path_buf())]).unwrap();
    let err = RuntimeConfig::build(raw).unwrap_err();
    let text = err
        .to_string()
        .replace(&format!("{}/", dir.path().display()), "");
    assert_eq!(
        text,
        "a.hcl:3:1: datacenter: \"East_1\" is not a valid datacenter name: use lowercase letters, digits and `-`"
    );
}

#[test]
fn missing_files_and_wrong_extensions() {
    let dir = dir_with(&[("a.yaml", "x: 1")]);
    let err = load_file(&dir.path().join("missing.hcl")).unwrap_err();
    assert!(matches!(err, Error::Io { .. }), "{err}");
    assert!(err.to_string().contains("missing.hcl"), "{err}");
    let err = load_file(&dir.path().join("a.yaml")).unwrap_err();
    assert!(
        err.to_string()
            .ends_with("a.yaml:1:1: config files must end in .hcl or .json"),
        "{err}"
    );
}
