//! The catalog CLI against a real agent: `mesh services register FILE`,
//! `mesh catalog services|nodes|datacenters`, `mesh services deregister -id`,
//! `mesh snapshot save|restore`, `mesh reload`; `-http-addr`, `MESH_HTTP_ADDR`
//! and `CONSUL_HTTP_ADDR` all pick the agent.

use mesh_testkit::mesh_bin;
use serde_json::Value;

async fn run(args: &[&str], env: &[(&str, String)]) -> (i32, String) {
    let mut cmd = tokio::process::Command::new(mesh_bin());
    cmd.args(args)
        .env_remove("MESH_HTTP_ADDR")
        .env_remove("CONSUL_HTTP_ADDR")
        .kill_on_drop(true);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().await.unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

#[tokio::test]
async fn catalog_services_and_snapshot_commands() {
    let dir = tempfile::tempdir().unwrap();
    let a = crate::dev_agent("node1", &dir.path().join("data")).await;
    let addr = a.http.to_string();
    let flag = format!("-http-addr={addr}");
    let file = dir.path().join("web.hcl");
    std::fs::write(
        &file,
        "service {\n  name = \"web\"\n  id = \"web-1\"\n  port = 8080\n  tags = [\"v2\"]\n}\n",
    )
    .unwrap();

    let (code, out) = run(
        &["services", "register", &flag, file.to_str().unwrap()],
        &[],
    )
    .await;
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("Registered service: web"), "{out}");

    // Consul's variable works as well as ours.
    let (code, out) = run(
        &["catalog", "services", "-tags"],
        &[("CONSUL_HTTP_ADDR", addr.clone())],
    )
    .await;
    assert_eq!(code, 0, "{out}");
    assert!(
        out.lines()
            .any(|l| l.starts_with("web") && l.contains("v2")),
        "{out}"
    );
    let (_, out) = run(
        &["catalog", "services", "-format=json"],
        &[("MESH_HTTP_ADDR", addr.clone())],
    )
    .await;
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["web"], serde_json::json!(["v2"]));
    let (_, out) = run(&["catalog", "nodes", "-service=web", &flag], &[]).await;
    assert!(out.contains("node1"), "{out}");
    let (_, out) = run(&["catalog", "datacenters", &flag], &[]).await;
    assert_eq!(out.trim(), "dc1");

    // Snapshot, change, restore: the change is undone.
    let snap = dir.path().join("backup.snap");
    let (code, out) = run(&["snapshot", "save", &flag, snap.to_str().unwrap()], &[]).await;
    assert_eq!(code, 0, "{out}");
    let (code, _) = run(&["kv", "put", &flag, "after", "x"], &[]).await;
    assert_eq!(code, 0);
    let (code, out) = run(&["snapshot", "restore", &flag, snap.to_str().unwrap()], &[]).await;
    assert_eq!(code, 0, "{out}");
    let (code, _) = run(&["kv", "get", &flag, "after"], &[]).await;
    assert_ne!(code, 0, "the key written after the snapshot is gone");

    let (code, out) = run(&["services", "deregister", "-id=web-1", &flag], &[]).await;
    assert_eq!(code, 0, "{out}");
    let (_, out) = run(&["catalog", "services", &flag], &[]).await;
    assert!(!out.contains("web"), "{out}");

    let (code, out) = run(&["reload", &flag], &[]).await;
    assert_eq!(code, 0, "{out}");

    // No agent there: a clear error, non-zero exit.
    let (code, out) = run(&["catalog", "services", "-http-addr=127.0.0.1:1"], &[]).await;
    assert_ne!(code, 0);
    assert!(out.contains("cannot reach the agent"), "{out}");
}

/// A typo is an error (1), never an answer: `intention check` exits 2 for
/// "denied" and `config plan` for "changes", so scripts could misread it.
#[test]
fn a_mistyped_flag_exits_1_and_help_exits_0() {
    for args in [
        &["intention", "check", "-bogus", "web", "db"][..],
        &["config", "plan", "--no-such-flag", "."],
        &["kv", "get"],
        &["no-such-command"],
    ] {
        let out = std::process::Command::new(mesh_bin())
            .args(args)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(
            stderr.to_lowercase().contains("error"),
            "{args:?}: {stderr}"
        );
    }
    for args in [
        &["--help"][..],
        &["intention", "check", "-h"],
        &["--version"],
    ] {
        let out = std::process::Command::new(mesh_bin())
            .args(args)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0), "{args:?}");
        assert!(!out.stdout.is_empty(), "{args:?}");
    }
}

/// The config a Consul user keeps in their notes: `bootstrap` and the
/// pre-1.4 ACL keys are read, each legacy key with a warning naming its
/// replacement, and the agent runs with ACLs on.
#[tokio::test]
async fn a_consul_config_with_bootstrap_and_legacy_acl_keys_runs() {
    let dir = tempfile::tempdir().unwrap();
    let token = "5f0c2e8a-7d41-4b9e-a3c6-1e2d3f4a5b6c";
    let config = dir.path().join("consul.json");
    std::fs::write(
        &config,
        serde_json::json!({
            "bootstrap": true,
            "server": true,
            "data_dir": dir.path().join("data"),
            "acl_datacenter": "dc1",
            "acl_default_policy": "deny",
            "acl_master_token": token,
            // Consul settings mesh does not implement: a warning each.
            "leave_on_terminate": true,
            "enable_local_script_checks": true,
            "ports": {"serf_wan": 8302},
        })
        .to_string(),
    )
    .unwrap();
    let out = std::process::Command::new(mesh_bin())
        .arg("validate")
        .arg(&config)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    for (old, new) in [
        ("acl_datacenter", "primary_datacenter"),
        ("acl_default_policy", "acl.default_policy"),
        ("acl_master_token", "acl.tokens.initial_management"),
    ] {
        assert!(
            stderr.contains(&format!("{old} is deprecated: use {new}")),
            "{stderr}"
        );
    }

    for key in [
        "leave_on_terminate",
        "enable_local_script_checks",
        "ports.serf_wan",
    ] {
        assert!(
            stderr.contains(&format!(
                "config key {key} is a Consul setting mesh does not implement; it is ignored"
            )),
            "{stderr}"
        );
    }

    let mut spec = mesh_testkit::AgentSpec::server("legacy", 0);
    spec.extra = vec![format!("-config-file={}", config.display())];
    let agent = mesh_testkit::TestAgent::start(spec, &dir.path().join("data"))
        .await
        .unwrap();
    // One server bootstrapped itself; default deny holds and the legacy
    // management token works.
    let c = crate::http();
    mesh_testkit::eventually("a leader", std::time::Duration::from_secs(20), || async {
        let l = crate::fetch_text(&c, agent.url("/v1/status/leader")).await;
        (l.trim() != "\"\"").then_some(())
    })
    .await;
    let denied = c.get(agent.url("/v1/acl/tokens")).send().await.unwrap();
    assert_eq!(denied.status(), 403);
    let allowed = mesh_testkit::eventually(
        "the management token",
        std::time::Duration::from_secs(20),
        || async {
            let r = c
                .get(agent.url("/v1/acl/tokens"))
                .header("X-Consul-Token", token)
                .send()
                .await
                .ok()?;
            (r.status() == 200).then_some(r.status())
        },
    )
    .await;
    assert_eq!(allowed, 200);

    // Two datacenters are not supported yet: a different primary is refused.
    std::fs::write(
        &config,
        r#"{"primary_datacenter": "dc2", "data_dir": "/tmp"}"#,
    )
    .unwrap();
    let out = std::process::Command::new(mesh_bin())
        .arg("validate")
        .arg(&config)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("primary_datacenter"), "{stderr}");
}
