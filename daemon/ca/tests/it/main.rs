//! mesh-ca integration tests: leaves and rotations verified the way peers
//! verify them, with rustls-webpki and with `openssl verify`.

mod leaves;
mod rotation;

use std::process::Command;

use mesh_ca::{verify_leaf, VerifyPurpose};

/// Trust domain used throughout.
pub const TD: &str = "11111111-2222-3333-4444-555555555555.consul";

/// Splits a PEM text into its certificate blocks (each with a trailing newline).
pub fn split_pems(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    for line in text.lines() {
        cur.push_str(line);
        cur.push('\n');
        if line.starts_with("-----END") {
            out.push(std::mem::take(&mut cur));
        }
    }
    out
}

/// Verifies with rustls-webpki for both server and client auth at `now`.
pub fn webpki_ok(chain_pem: &str, bundle: &[String], now: i64) -> bool {
    verify_leaf(chain_pem, bundle, now, VerifyPurpose::Both).is_ok()
}

/// `openssl verify -CAfile bundle.pem -untrusted intermediates.pem leaf.pem` for both TLS
/// purposes. openssl is required: without it these tests fail, naming it.
pub fn openssl_ok(chain_pem: &str, bundle: &[String]) -> Option<bool> {
    let openssl =
        mesh_testkit::require_tool("openssl", "./scripts/setup.sh installs Debian's openssl");
    let dir = tempfile::tempdir().unwrap();
    let certs = split_pems(chain_pem);
    let write = |name: &str, body: String| {
        let p = dir.path().join(name);
        std::fs::write(&p, body).unwrap();
        p
    };
    let leaf = write("leaf.pem", certs[0].clone());
    let bundle_file = write("bundle.pem", bundle.concat());
    let untrusted = (certs.len() > 1).then(|| write("intermediates.pem", certs[1..].concat()));
    for purpose in ["sslserver", "sslclient"] {
        let mut cmd = Command::new(&openssl);
        cmd.args(["verify", "-purpose", purpose, "-CAfile"])
            .arg(&bundle_file);
        if let Some(u) = &untrusted {
            cmd.arg("-untrusted").arg(u);
        }
        let out = cmd.arg(&leaf).output().unwrap();
        if !out.status.success() {
            eprintln!(
                "openssl verify ({purpose}) failed: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            return Some(false);
        }
    }
    Some(true)
}

/// Asserts webpki and (when available) openssl agree that the chain verifies or not.
#[track_caller]
pub fn assert_verifies(chain_pem: &str, bundle: &[String], now: i64, expected: bool, what: &str) {
    assert_eq!(
        webpki_ok(chain_pem, bundle, now),
        expected,
        "webpki: {what}"
    );
    if let Some(ok) = openssl_ok(chain_pem, bundle) {
        assert_eq!(ok, expected, "openssl: {what}");
    }
}

/// The openssl cross-check cannot be dropped silently: without openssl on
/// PATH, a test that verifies leaves fails, naming it.
#[test]
fn without_openssl_the_cross_checks_fail_naming_it() {
    let test = "leaves::generated_roots_of_every_type";
    let (passed, out) = mesh_testkit::run_test_without_tools(test);
    assert!(!passed, "{test} passed without openssl on PATH:\n{out}");
    assert!(
        out.contains("openssl is not on PATH, and this test needs it"),
        "{test} failed without naming openssl:\n{out}"
    );
    assert!(out.contains("running 1 test"), "{out}");
}
