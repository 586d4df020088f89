//! `mesh sync`, continued: kv, catalog-services and schedule conditions
//! with drift checks, two daemons serialised by Terraform's state lock, and
//! docs/sync.md's examples (helpers in sync.rs).

use std::path::Path;
use std::time::Duration;

use mesh_testkit::eventually;
use serde_json::json;

use crate::http;
use crate::sync::{applies, dev_setup, header, kv_text, pool_module, register, write_module, Sync};
use crate::terraform::terraform;

#[tokio::test]
async fn kv_and_schedule_conditions_and_drift_checks() {
    let (dir, agent, base) = dev_setup().await;
    let root = dir.path();
    // A module on the consul_kv input: mirrors each key under mirror/.
    let mirror = root.join("mirror-module");
    write_module(&mirror,
        "terraform {\n  required_providers {\n    mesh = { source = \"mesh/mesh\" }\n  }\n}\n\nvariable \"consul_kv\" {\n  type = map(string)\n}\n\nresource \"mesh_kv\" \"copy\" {\n  for_each = var.consul_kv\n  path     = \"mirror/${each.key}\"\n  value    = each.value\n}\n",
    );
    // A module on the catalog_services input: one key per matching service.
    let names = root.join("names-module");
    write_module(&names,
        "terraform {\n  required_providers {\n    mesh = { source = \"mesh/mesh\" }\n  }\n}\n\nvariable \"catalog_services\" {\n  type = map(list(string))\n}\n\nresource \"mesh_kv\" \"name\" {\n  for_each = var.catalog_services\n  path     = \"catalog/${each.key}\"\n  value    = join(\",\", each.value)\n}\n",
    );
    let vars = root.join("sched.tfvars");
    std::fs::write(&vars, "kv_prefix = \"sched\"\n").unwrap();
    let work = root.join("work");
    // A config directory: settings in one file (terraform named by path,
    // its output persisted), tasks in another.
    let config = root.join("sync.d");
    std::fs::create_dir_all(&config).unwrap();
    let tf_dir = terraform().parent().unwrap().display().to_string();
    std::fs::write(
        config.join("00-main.hcl"),
        header(&work, &agent.http.to_string()).replace(
            "driver \"terraform\" {\n",
            &format!("driver \"terraform\" {{\n  path = \"{tf_dir}\"\n  persist_log = true\n"),
        ),
    )
    .unwrap();
    std::fs::write(
        config.join("10-tasks.hcl"),
        format!(
            r#"task {{
  name = "mirror"
  module = "{}"
  providers = ["mesh"]
  buffer_period {{
    enabled = false
  }}
  condition "consul-kv" {{
    path    = "cfg"
    recurse = true
  }}
}}
task {{
  name = "catalog"
  module = "{}"
  providers = ["mesh"]
  buffer_period {{
    enabled = false
  }}
  condition "catalog-services" {{
    regexp = "^web"
  }}
}}
task {{
  name = "sched"
  module = "{}"
  providers = ["mesh"]
  variable_files = ["{}"]
  condition "schedule" {{
    cron = "*/2 * * * * *"
  }}
  module_input "services" {{
    names = ["web"]
  }}
}}
task {{
  name = "pool"
  module = "{}"
  providers = ["mesh"]
  condition "services" {{
    names = ["web"]
  }}
  drift_check {{
    interval = "1s"
  }}
}}
"#,
            mirror.display(),
            names.display(),
            pool_module(),
            vars.display(),
            pool_module()
        ),
    )
    .unwrap();
    register(&base, "n1", "web-1", "web", "10.0.0.1", 80).await;
    let c = http();
    c.put(format!("{base}/v1/kv/cfg/a"))
        .body("1")
        .send()
        .await
        .unwrap();
    let sync = Sync::start(root, &config, "a").await;

    // consul-kv: a key written is mirrored.
    eventually("kv mirrored", Duration::from_secs(60), || async {
        kv_text(&base, "mirror/cfg/a").await.filter(|v| v == "1")
    })
    .await;
    c.put(format!("{base}/v1/kv/cfg/b"))
        .body("two")
        .send()
        .await
        .unwrap();
    eventually("new key mirrored", Duration::from_secs(60), || async {
        kv_text(&base, "mirror/cfg/b").await.filter(|v| v == "two")
    })
    .await;

    // catalog-services: services matching the regexp, with their tags.
    eventually("catalog names", Duration::from_secs(60), || async {
        kv_text(&base, "catalog/web").await.filter(|v| v.is_empty())
    })
    .await;
    let r = c
        .put(format!("{base}/v1/catalog/register"))
        .json(&json!({"Node": "n3", "Address": "127.0.0.1",
            "Service": {"ID": "webapp-1", "Service": "webapp", "Port": 1, "Tags": ["blue"]}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    register(&base, "n3", "db-1", "db", "10.0.3.1", 5432).await;
    eventually("new service listed", Duration::from_secs(60), || async {
        kv_text(&base, "catalog/webapp")
            .await
            .filter(|v| v == "blue")
    })
    .await;
    assert!(
        kv_text(&base, "catalog/db").await.is_none(),
        "db does not match ^web"
    );

    // schedule: the next tick applies the module input's change.
    eventually("scheduled pool", Duration::from_secs(60), || async {
        kv_text(&base, "sched/web")
            .await
            .filter(|v| v == "10.0.0.1:80")
    })
    .await;
    register(&base, "n1", "web-2", "web", "10.0.0.2", 80).await;
    eventually("next tick", Duration::from_secs(60), || async {
        kv_text(&base, "sched/web")
            .await
            .filter(|v| v == "10.0.0.1:80,10.0.0.2:80")
    })
    .await;
    let s = sync.status("sched").await;
    assert!(
        applies(&s).iter().any(|e| e["trigger"] == "schedule"),
        "{s:#}"
    );

    // drift: a hand edit of what the module manages is reported, not undone.
    eventually("pool applied", Duration::from_secs(60), || async {
        kv_text(&base, "sync/pools/web")
            .await
            .filter(|v| v == "10.0.0.1:80,10.0.0.2:80")
    })
    .await;
    eventually("no drift yet", Duration::from_secs(30), || async {
        let s = sync.status("pool").await;
        (s["drift"]["detected"] == false).then_some(())
    })
    .await;
    c.put(format!("{base}/v1/kv/sync/pools/web"))
        .body("by-hand")
        .send()
        .await
        .unwrap();
    let s = eventually("drift reported", Duration::from_secs(30), || async {
        let s = sync.status("pool").await;
        (s["drift"]["detected"] == true).then_some(s)
    })
    .await;
    assert!(
        s["drift"]["summary"]
            .as_str()
            .unwrap()
            .contains("1 to change"),
        "{s:#}"
    );
    assert_eq!(
        kv_text(&base, "sync/pools/web").await.as_deref(),
        Some("by-hand")
    );
    assert!(sync.log_text().contains("drift detected"));
    let tf_log = std::fs::read_to_string(work.join("pool/terraform.log")).unwrap();
    assert!(tf_log.contains("$ terraform apply"), "{tf_log}");
}

#[tokio::test]
async fn two_sync_daemons_on_one_task_are_serialised_by_the_state_lock() {
    let (dir, agent, base) = dev_setup().await;
    let root = dir.path();
    let trace = root.join("trace.log");
    let module = root.join("slow-module");
    write_module(&module,
        format!(
            "variable \"services\" {{\n  type = any\n}}\n\nvariable \"who\" {{\n  type = string\n}}\n\nresource \"terraform_data\" \"slow\" {{\n  triggers_replace = var.who\n  provisioner \"local-exec\" {{\n    command = \"echo start ${{var.who}} >> {t}; sleep 2; echo end ${{var.who}} >> {t}\"\n  }}\n}}\n",
            t = trace.display()
        ),
    );
    register(&base, "n1", "web-1", "web", "10.0.0.1", 80).await;
    let mut daemons = Vec::new();
    for who in ["a", "b"] {
        let vars = root.join(format!("{who}.tfvars"));
        std::fs::write(&vars, format!("who = \"{who}\"\n")).unwrap();
        let config = root.join(format!("{who}.hcl"));
        std::fs::write(
            &config,
            format!(
                "{}task {{\n  name = \"shared\"\n  module = \"{}\"\n  variable_files = [\"{}\"]\n  condition \"services\" {{\n    names = [\"web\"]\n  }}\n}}\n",
                header(&root.join(format!("work-{who}")), &agent.http.to_string()),
                module.display(),
                vars.display()
            ),
        )
        .unwrap();
        daemons.push(Sync::start(root, &config, who).await);
    }
    for d in &daemons {
        eventually("both applied", Duration::from_secs(90), || async {
            let s = d.status("shared").await;
            applies(&s)
                .iter()
                .any(|e| e["success"] == true)
                .then_some(())
        })
        .await;
    }
    let lines: Vec<String> = std::fs::read_to_string(&trace)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    assert_eq!(lines.len(), 4, "{lines:?}");
    for pair in lines.chunks(2) {
        let who = pair[0].strip_prefix("start ").expect("a run starts");
        assert_eq!(pair[1], format!("end {who}"), "runs interleaved: {lines:?}");
    }
    assert_ne!(lines[0], lines[2], "both daemons ran: {lines:?}");
}

/// docs/sync.md stays true: its config blocks validate, and the error it
/// shows is the one mesh sync prints.
#[tokio::test]
async fn the_sync_docs_examples_are_valid() {
    let docs =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/sync.md"))
            .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut checked = 0;
    for (i, block) in docs.split("```hcl\n").skip(1).enumerate() {
        let body = block.split("```").next().unwrap();
        let file = dir.path().join(format!("doc{i}.hcl"));
        std::fs::write(&file, body).unwrap();
        let out = tokio::process::Command::new(mesh_testkit::mesh_bin())
            .args(["sync", "-validate", "-config-file"])
            .arg(&file)
            .output()
            .await
            .unwrap();
        assert_eq!(
            out.status.code(),
            Some(0),
            "block {i}:\n{body}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        checked += 1;
    }
    assert!(checked >= 1, "docs/sync.md lost its config example");

    let documented = docs
        .lines()
        .find(|l| l.starts_with("sync.hcl:") && l.contains("unknown key"))
        .expect("the documented error");
    let (_, message) = documented.split_once(": ").unwrap();
    let bad = dir.path().join("sync.hcl");
    std::fs::write(
        &bad,
        "task {\n  name   = \"web-pool\"\n  module = \"./m\"\n  condition \"services\" {\n    nmes = [\"web\"]\n  }\n}\n",
    )
    .unwrap();
    let out = tokio::process::Command::new(mesh_testkit::mesh_bin())
        .args(["sync", "-validate", "-config-file"])
        .arg(&bad)
        .output()
        .await
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        err.contains(message),
        "documented {message:?}, printed {err}"
    );
}
