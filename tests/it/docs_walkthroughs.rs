//! The walkthroughs in docs/ (install, getting started, the 3-node
//! cluster, operations, hardening) are run as a reader would type them:
//! tests/docs/run_docs.py executes their shell blocks, in order, against
//! the built `mesh` and provider, so the docs cannot rot.

use std::path::Path;

use crate::terraform::{provider_bin, terraform};

#[test]
fn the_documented_walkthroughs_run() {
    let terraform = terraform();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let path = format!(
        "{}:{}",
        terraform.parent().unwrap().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = std::process::Command::new("python3")
        .arg(root.join("tests/docs/run_docs.py"))
        .current_dir(&root)
        .env("MESH_BIN", mesh_testkit::mesh_bin())
        .env("MESH_PROVIDER_BIN", provider_bin())
        .env("PATH", path)
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "the docs' shell blocks failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
