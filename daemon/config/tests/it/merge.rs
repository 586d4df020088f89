//! Merge order: files in order, directories lexically, flags last.

use mesh_config::{load, Origin, RawConfig, RuntimeConfig, Source};

use crate::dir_with;

#[test]
fn directory_files_merge_in_lexical_order() {
    let dir = dir_with(&[
        (
            "20-b.json",
            r#"{"datacenter": "second", "retry_join": ["b"]}"#,
        ),
        (
            "10-a.hcl",
            "datacenter = \"first\"\nnode_name = \"n\"\ndata_dir = \"/d\"\nretry_join = [\"a\"]\n",
        ),
        ("30-notes.txt", "ignored"),
    ]);
    let raw = load(&[Source::Dir(dir.path().to_path_buf())]).unwrap();
    let names: Vec<_> = raw
        .config_files
        .iter()
        .map(|f| f.file_name().unwrap().to_owned())
        .collect();
    assert_eq!(names, ["10-a.hcl", "20-b.json"]);
    let c = RuntimeConfig::build(raw).unwrap();
    assert_eq!(c.datacenter, "second");
    assert_eq!(c.node_name, "n");
    assert_eq!(c.retry_join, ["a", "b"]);
}

#[test]
fn later_sources_win_and_flags_win_over_files() {
    let dir = dir_with(&[
        (
            "a.hcl",
            "datacenter = \"a\"\ndata_dir = \"/d\"\nports {\n  http = 1\n  dns = 2\n}\n",
        ),
        ("b.hcl", "datacenter = \"b\"\nports { http = 10 }\n"),
    ]);
    let sources = [
        Source::File(dir.path().join("b.hcl")),
        Source::File(dir.path().join("a.hcl")),
    ];
    let files = load(&sources).unwrap();
    assert_eq!(files.datacenter.as_deref(), Some("a"));

    let mut flags = RawConfig {
        datacenter: Some("flag".into()),
        ..RawConfig::default()
    };
    flags.mark_origin(|_| Origin::Flag("-datacenter".into()));
    let c = RuntimeConfig::build(files.merge(flags)).unwrap();
    assert_eq!(c.datacenter, "flag");
    assert_eq!((c.ports.http, c.ports.dns), (Some(1), Some(2)));
}

#[test]
fn a_single_bootstrap_block_and_repeated_ones() {
    let dir = dir_with(&[
        (
            "one.hcl",
            "config_entries {\n  bootstrap {\n    kind = \"proxy-defaults\"\n  }\n}\n",
        ),
        (
            "two.hcl",
            "config_entries {\n  bootstrap { kind = \"a\" }\n  bootstrap { kind = \"b\" }\n}\n",
        ),
        (
            "three.json",
            r#"{"config_entries": {"bootstrap": [{"kind": "c"}]}}"#,
        ),
    ]);
    let raw = load(&[Source::Dir(dir.path().to_path_buf())]).unwrap();
    let raw = RawConfig { dev: true, ..raw };
    let c = RuntimeConfig::build(raw).unwrap();
    let kinds: Vec<_> = c
        .config_entries_bootstrap
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    // Lexical order: one.hcl, three.json, two.hcl; lists append.
    assert_eq!(kinds, ["proxy-defaults", "c", "a", "b"]);
}
