//! Every example agent config in the repository parses and validates.

use mesh_config::{load_file, RawConfig, RuntimeConfig, Source};

use crate::examples_dir;

#[test]
fn every_example_parses_and_builds() {
    let files = mesh_config::dir_files(&examples_dir()).unwrap();
    assert!(
        files.len() >= 4,
        "expected the example files, found {files:?}"
    );
    for file in files {
        let raw = load_file(&file).unwrap_or_else(|e| panic!("{e}"));
        // dev.hcl is meant for `mesh agent -dev`; the others stand alone.
        let dev = file.file_name().unwrap() == "dev.hcl";
        let raw = if dev {
            RawConfig::dev().merge(raw)
        } else {
            raw
        };
        RuntimeConfig::build(raw).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    }
}

#[test]
fn server_hcl_and_json_say_the_same_thing() {
    let hcl = load_file(&examples_dir().join("server.hcl")).unwrap();
    let hcl = RuntimeConfig::build(hcl).unwrap();
    let json = load_file(&examples_dir().join("server.json")).unwrap();
    let json = RuntimeConfig::build(json).unwrap();
    for c in [&hcl, &json] {
        assert!(c.server);
        assert_eq!(c.bootstrap_expect, 3);
        assert_eq!(c.datacenter, "dc1");
        assert_eq!(c.retry_join.len(), 3);
        assert_eq!(c.retry_interval.as_secs(), 15);
        assert!(c.encrypt.is_some());
    }
    assert_eq!(hcl.config_entries_bootstrap.len(), 2);
    assert_eq!(
        hcl.config_entries_bootstrap[0]["config"]["protocol"],
        "http"
    );
    assert_eq!(json.config_entries_bootstrap.len(), 1);
    assert_eq!(json.dns.service_ttl["web"].as_secs(), 30);
    assert_eq!(hcl.http_addr().unwrap().to_string(), "0.0.0.0:8500");
    assert_eq!(hcl.dns.recursors[1].to_string(), "9.9.9.9:53");
}

#[test]
fn dev_example_with_the_dev_flag() {
    let raw = mesh_config::load(&[Source::File(examples_dir().join("dev.hcl"))]).unwrap();
    let c = RuntimeConfig::build(RawConfig::dev().merge(raw)).unwrap();
    assert!(c.dev && c.server && c.ui);
    assert_eq!(c.node_name, "dev");
    assert_eq!(c.ports.https, None);
    assert_eq!(c.dns.service_ttl["*"].as_secs(), 5);
}
