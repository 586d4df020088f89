//! The `mesh` binary as users run it. Being an integration test of this
//! package also makes `cargo test --workspace` build the binary that the
//! cross-crate tests start.

use std::process::Command;

fn mesh() -> Command {
    Command::new(env!("CARGO_BIN_EXE_mesh"))
}

#[test]
fn keygen_prints_a_32_byte_base64_key() {
    let out = mesh().arg("keygen").output().unwrap();
    assert!(out.status.success());
    let key = String::from_utf8(out.stdout).unwrap();
    let key = key.trim();
    assert_eq!(key.len(), 44, "base64 of 32 bytes: {key}");
    assert!(key.ends_with('='));
}

#[test]
fn validate_accepts_the_examples_and_rejects_a_bad_file_with_its_position() {
    let examples = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../examples/agent/server.hcl"
    );
    let out = mesh().args(["validate", examples]).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.hcl");
    std::fs::write(&bad, "datacenter = \"dc1\"\ndatacentre = \"dc2\"\n").unwrap();
    let out = mesh().arg("validate").arg(&bad).output().unwrap();
    assert!(!out.status.success());
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("bad.hcl:2:1"),
        "error names file:line:col: {text}"
    );
    assert!(
        text.contains("datacenter"),
        "suggests the known key: {text}"
    );
}

#[test]
fn single_dash_flags_work_like_consul() {
    let out = mesh()
        .args(["agent", "-bootstrap-expect=notanumber"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(text.contains("bootstrap-expect"), "{text}");
}
