//! The web UI in a real headless Chromium (Debian's chromium and
//! chromium-driver, through WebDriver from tests/ui/ui_test.py) against a
//! real 3-server cluster with ACLs on default deny: login, live updates,
//! creating KV entries and intentions, an object owned by a mesh.d file
//! shown read-only, and denied views naming the missing permission.

use std::time::Duration;

use mesh_testkit::{eventually, TestCluster};

use crate::acl::{acl_config, token_with_policy, MANAGEMENT};
use crate::http;

#[tokio::test]
async fn the_ui_in_a_real_browser_against_a_cluster() {
    mesh_testkit::require_tool(
        "chromium",
        "install Debian's chromium and chromium-driver (scripts/setup.sh does)",
    );
    mesh_testkit::require_tool("chromedriver", "install Debian's chromium-driver");
    let dir = tempfile::tempdir().unwrap();
    let acl = acl_config(dir.path());
    let meshd = dir.path().join("mesh.d");
    std::fs::create_dir_all(&meshd).unwrap();
    let owned = meshd.join("shop.hcl");
    std::fs::write(
        &owned,
        "service {\n  name = \"shop\"\n  id   = \"shop-1\"\n  port = 8080\n}\n",
    )
    .unwrap();
    let cluster = TestCluster::start_with(3, |i, spec| {
        spec.extra.push(format!("-config-file={}", acl.display()));
        spec.extra.push("-ui".into());
        if i == 0 {
            spec.extra.push(format!("-config-dir={}", meshd.display()));
        }
    })
    .await
    .unwrap();
    let s0 = &cluster.agents[0];
    let c = http();
    eventually("the mesh.d service", Duration::from_secs(30), || async {
        let r = c
            .get(s0.url("/v1/catalog/service/shop"))
            .header("X-Consul-Token", MANAGEMENT)
            .send()
            .await
            .ok()?;
        let v: serde_json::Value = r.json().await.ok()?;
        (v.as_array()?.len() == 1).then_some(())
    })
    .await;
    let limited =
        token_with_policy(s0, "ui-read", "service_prefix \"\" { policy = \"read\" }").await;
    let shots = dir.path().join("screenshots");
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("ui/ui_test.py");
    // The UI is served by another server than the one owning the file.
    let out = tokio::process::Command::new("python3")
        .arg(&script)
        .args(["--http", &cluster.agents[1].http.to_string()])
        .args(["--token", MANAGEMENT, "--limited-token", &limited])
        .args(["--owned-service", "shop"])
        .arg("--owned-file")
        .arg(&owned)
        .arg("--screenshots")
        .arg(&shots)
        .args(["--deadline", "240"])
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .output()
        .await
        .expect("python3 runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(text.contains("PASS: mesh UI"), "{text}");
    let pngs = std::fs::read_dir(&shots).unwrap().count();
    assert!(pngs >= 5, "{pngs} screenshots in {}", shots.display());
}
