//! Real Consul clients against a mesh agent: python-consul (py-consul from
//! PyPI). Debian's prometheus 2.42 is built without consul_sd_configs, so
//! the Prometheus client cannot be exercised on these machines.

use std::path::PathBuf;
use std::time::Duration;

fn compat_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("compat")
}

/// Install py-consul into a venv (idempotent); returns the venv.
async fn setup() -> PathBuf {
    let out = tokio::process::Command::new("bash")
        .arg(compat_dir().join("setup.sh"))
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "compat setup failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    PathBuf::from(
        String::from_utf8(out.stdout)
            .unwrap()
            .trim()
            .lines()
            .last()
            .unwrap(),
    )
}

#[tokio::test]
async fn python_consul_drives_the_api_unchanged() {
    let venv = setup().await;
    let dir = tempfile::tempdir().unwrap();
    let agent = crate::dev_agent("compat", &dir.path().join("a")).await;
    let out = tokio::time::timeout(
        Duration::from_secs(60),
        tokio::process::Command::new(venv.join("bin/python"))
            .arg(compat_dir().join("python_consul.py"))
            .arg(agent.http.to_string())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("python-consul script finishes")
    .unwrap();
    assert!(
        out.status.success(),
        "python-consul failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn python_consul_drives_roles_identities_and_auth_methods_under_default_deny() {
    let venv = setup().await;
    let dir = tempfile::tempdir().unwrap();
    let agent = crate::api_surface::default_deny_agent("compat-acl", dir.path()).await;
    let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let pem = dir.path().join("jwt.pem");
    std::fs::write(&pem, pair.public_key_pem()).unwrap();
    let out = tokio::time::timeout(
        Duration::from_secs(60),
        tokio::process::Command::new(venv.join("bin/python"))
            .arg(compat_dir().join("python_consul_acl.py"))
            .arg(agent.http.to_string())
            .arg(crate::acl::MANAGEMENT)
            .arg(&pem)
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("python-consul ACL script finishes")
    .unwrap();
    assert!(
        out.status.success(),
        "python-consul ACL failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
