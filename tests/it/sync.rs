//! `mesh sync` against real agents with real terraform 1.11: the CTS module
//! contract, buffer periods, no-op detection, durable history through
//! kill -9, the API, retries, kv/schedule conditions, drift checks, and
//! Terraform state in mesh's KV with the lock serialising two daemons.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use base64::Engine;
use mesh_testkit::{eventually, TestCluster};
use serde_json::{json, Value};

use crate::http;
use crate::terraform::{provider_bin, terraform};

/// A CLI config that installs terraform-provider-mesh from a local mirror
/// (init must work offline: mesh sync always runs `terraform init`).
pub(crate) fn cli_config(root: &Path) -> PathBuf {
    let version_dir = root.join("mirror/registry.terraform.io/mesh/mesh/0.1.0/linux_amd64");
    std::fs::create_dir_all(&version_dir).unwrap();
    let target = version_dir.join("terraform-provider-mesh_v0.1.0");
    if !target.exists() {
        std::os::unix::fs::symlink(provider_bin(), &target).unwrap();
    }
    let path = root.join("cli.tfrc");
    std::fs::write(
        &path,
        format!(
            "provider_installation {{\n  filesystem_mirror {{\n    path    = \"{}\"\n    include = [\"registry.terraform.io/mesh/mesh\"]\n  }}\n  direct {{ exclude = [\"registry.terraform.io/mesh/mesh\"] }}\n}}\n",
            root.join("mirror").display()
        ),
    )
    .unwrap();
    path
}

pub(crate) fn pool_module() -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../modules/mesh-sync-kv-pool")
        .canonicalize()
        .unwrap()
        .display()
        .to_string()
}

/// The head of a sync config: the agent, a 1 s/3 s buffer, the provider.
pub(crate) fn header(work: &Path, http: &str) -> String {
    format!(
        r#"port = 0
working_dir = "{}"
consul {{
  address = "{http}"
}}
buffer_period {{
  min = "1s"
  max = "3s"
}}
driver "terraform" {{
  required_providers {{
    mesh = {{ source = "mesh/mesh" }}
  }}
}}
terraform_provider "mesh" {{
  address = "{http}"
}}
"#,
        work.display()
    )
}

/// A running `mesh sync`, killed when dropped.
pub(crate) struct Sync {
    child: Option<tokio::process::Child>,
    pub(crate) api: String,
    log: PathBuf,
}

impl Sync {
    pub(crate) async fn start(root: &Path, config: &Path, tag: &str) -> Sync {
        let log = root.join(format!("sync-{tag}.log"));
        let out = std::fs::File::create(&log).unwrap();
        let err = out.try_clone().unwrap();
        let flag = if config.is_dir() {
            "-config-dir"
        } else {
            "-config-file"
        };
        let child = tokio::process::Command::new(mesh_testkit::mesh_bin())
            .args(["sync", flag])
            .arg(config)
            .env("TF_CLI_CONFIG_FILE", cli_config(root))
            .env("PATH", path_with_terraform())
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let api = eventually("mesh sync API up", Duration::from_secs(30), || async {
            let text = std::fs::read_to_string(&log).ok()?;
            text.lines()
                .find_map(|l| l.strip_prefix("==> mesh sync API listening on "))
                .map(str::to_string)
        })
        .await;
        Sync {
            child: Some(child),
            api,
            log,
        }
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("{}{path}", self.api)
    }

    async fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill().await;
        }
    }

    pub(crate) async fn status(&self, task: &str) -> Value {
        let v: Value = http()
            .get(self.url(&format!("/v1/status/tasks/{task}?include=events")))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        v[task].clone()
    }

    /// A request to the sync API with a JSON body.
    pub(crate) async fn send(&self, method: &str, path: &str, body: &Value) -> reqwest::Response {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        http()
            .request(method, self.url(path))
            .json(body)
            .send()
            .await
            .unwrap()
    }

    pub(crate) fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// `mesh ARGS` with terraform reachable and the provider mirror of `root`:
/// exit code, stdout, stderr.
pub(crate) async fn mesh(root: &Path, args: &[&str]) -> (Option<i32>, String, String) {
    let out = tokio::process::Command::new(mesh_testkit::mesh_bin())
        .args(args)
        .env("TF_CLI_CONFIG_FILE", cli_config(root))
        .env("PATH", path_with_terraform())
        .output()
        .await
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A dev agent in a fresh directory, and its base URL (no trailing `/`).
pub(crate) async fn dev_setup() -> (tempfile::TempDir, mesh_testkit::TestAgent, String) {
    let dir = tempfile::tempdir().unwrap();
    let agent = crate::dev_agent("node1", &dir.path().join("agent")).await;
    let base = agent.url("").trim_end_matches('/').to_string();
    (dir, agent, base)
}

/// A Terraform module directory holding one `main.tf`.
pub(crate) fn write_module(dir: &Path, main_tf: impl AsRef<[u8]>) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("main.tf"), main_tf).unwrap();
}

/// PATH with terraform's directory first (mesh sync finds it there).
pub(crate) fn path_with_terraform() -> String {
    let tf = terraform();
    let dir = tf.parent().unwrap().display().to_string();
    format!("{dir}:{}", std::env::var("PATH").unwrap_or_default())
}

pub(crate) fn applies(status: &Value) -> Vec<Value> {
    status["events"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|e| e["kind"] == "apply")
        .collect()
}

pub(crate) async fn kv_text(base: &str, key: &str) -> Option<String> {
    let r = http()
        .get(format!("{base}/v1/kv/{key}"))
        .send()
        .await
        .ok()?;
    if r.status() != 200 {
        return None;
    }
    let v: Value = r.json().await.ok()?;
    let b = v[0]["Value"].as_str().unwrap_or_default();
    String::from_utf8(base64::engine::general_purpose::STANDARD.decode(b).ok()?).ok()
}

pub(crate) async fn register(
    base: &str,
    node: &str,
    id: &str,
    service: &str,
    addr: &str,
    port: u16,
) {
    let r = http()
        .put(format!("{base}/v1/catalog/register"))
        .json(&json!({
            "Node": node, "Address": "127.0.0.1",
            "Service": {"ID": id, "Service": service, "Address": addr, "Port": port}
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
}

pub(crate) async fn deregister(base: &str, node: &str, id: &str) {
    let r = http()
        .put(format!("{base}/v1/catalog/deregister"))
        .json(&json!({"Node": node, "ServiceID": id}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn sync_keeps_a_module_in_step_with_the_catalog_on_a_cluster() {
    let cluster = TestCluster::start(3).await.unwrap();
    let base = cluster.agents[0].url("");
    let base = base.trim_end_matches('/').to_string();
    let root = tempfile::tempdir().unwrap();
    let work = root.path().join("work");
    let config = root.path().join("sync.hcl");
    std::fs::write(
        &config,
        format!(
            "{}task {{\n  name = \"pool\"\n  module = \"{}\"\n  providers = [\"mesh\"]\n  condition \"services\" {{\n    names = [\"web\", \"api\"]\n  }}\n}}\n",
            header(&work, &cluster.agents[0].http.to_string()),
            pool_module()
        ),
    )
    .unwrap();
    register(&base, "n1", "web-1", "web", "10.0.0.1", 80).await;
    let sync = Sync::start(root.path(), &config, "a").await;

    // The start run applies what is there.
    eventually("first pool", Duration::from_secs(60), || async {
        (kv_text(&base, "sync/pools/web").await? == "10.0.0.1:80").then_some(())
    })
    .await;
    let first = applies(&sync.status("pool").await).len();
    assert_eq!(first, 1);

    // A burst inside one buffer window: exactly one more apply.
    register(&base, "n1", "web-2", "web", "10.0.0.2", 80).await;
    register(&base, "n2", "web-3", "web", "10.0.0.3", 8080).await;
    register(&base, "n2", "api-1", "api", "10.0.1.1", 81).await;
    eventually("pools follow", Duration::from_secs(60), || async {
        let web = kv_text(&base, "sync/pools/web").await?;
        let api = kv_text(&base, "sync/pools/api").await?;
        (web == "10.0.0.1:80,10.0.0.2:80,10.0.0.3:8080" && api == "10.0.1.1:81").then_some(())
    })
    .await;
    let status = sync.status("pool").await;
    assert_eq!(
        applies(&status).len(),
        2,
        "one apply per buffer window: {status:#}"
    );
    assert_eq!(status["status"], "successful");

    // Re-registering an identical instance changes nothing; a new check
    // output moves the index but no input: the task wakes, compares the
    // hash of its rendered inputs, and runs nothing.
    let skips = status["unchanged_skips"].as_u64().unwrap();
    register(&base, "n2", "api-1", "api", "10.0.1.1", 81).await;
    let check = |output: &str| {
        json!({
            "Node": "n2", "Address": "127.0.0.1",
            "Service": {"ID": "api-1", "Service": "api", "Address": "10.0.1.1", "Port": 81},
            "Check": {"CheckID": "api-alive", "Name": "alive", "Status": "passing",
                      "ServiceID": "api-1", "Output": output}
        })
    };
    for output in ["ok 1", "ok 2"] {
        let r = http()
            .put(format!("{base}/v1/catalog/register"))
            .json(&check(output))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    eventually("the no-op is seen", Duration::from_secs(30), || async {
        let s = sync.status("pool").await;
        (s["unchanged_skips"].as_u64()? > skips).then_some(())
    })
    .await;
    assert_eq!(applies(&sync.status("pool").await).len(), 2);

    // Deregistering shrinks the pool; a service with no instances left drops out.
    deregister(&base, "n2", "api-1").await;
    deregister(&base, "n1", "web-2").await;
    eventually("pool shrinks", Duration::from_secs(60), || async {
        let web = kv_text(&base, "sync/pools/web").await?;
        let api_gone = kv_text(&base, "sync/pools/api").await.is_none();
        (web == "10.0.0.1:80,10.0.0.3:8080" && api_gone).then_some(())
    })
    .await;

    // Terraform's state is in mesh's KV, where CTS keeps it.
    let state = kv_text(&base, "consul-terraform-sync/terraform-env:pool")
        .await
        .expect("state in KV");
    let state: Value = serde_json::from_str(&state).unwrap();
    assert!(
        state["resources"].as_array().is_some_and(|r| !r.is_empty()),
        "{state}"
    );

    // The generated root module follows CTS's layout.
    for f in [
        "main.tf",
        "variables.tf",
        "terraform.tfvars",
        "providers.auto.tfvars",
    ] {
        assert!(work.join("pool").join(f).exists(), "{f} missing");
    }
    drop(sync);
}

#[tokio::test]
async fn sync_loses_nothing_through_kill_9_mid_burst() {
    let (dir, agent, base) = dev_setup().await;
    let base = base.as_str();
    let root = dir.path();
    let work = root.join("work");
    let config = root.join("sync.hcl");
    std::fs::write(
        &config,
        format!(
            "{}task {{\n  name = \"pool\"\n  module = \"{}\"\n  providers = [\"mesh\"]\n  buffer_period {{\n    enabled = false\n  }}\n  condition \"services\" {{\n    names = [\"web\"]\n  }}\n}}\n",
            header(&work, &agent.http.to_string()),
            pool_module()
        ),
    )
    .unwrap();
    register(base, "n1", "web-0", "web", "10.0.0.100", 80).await;
    let mut sync = Sync::start(root, &config, "a").await;
    // The start run done and recorded (the module's KV write lands before
    // terraform exits, so the KV alone is not enough).
    eventually("first apply", Duration::from_secs(60), || async {
        let s = sync.status("pool").await;
        (s["status"] == "successful").then_some(())
    })
    .await;
    assert_eq!(
        kv_text(base, "sync/pools/web").await.as_deref(),
        Some("10.0.0.100:80")
    );

    // A burst; kill -9 as soon as an apply is seen under way.
    let mut registered = 0u16;
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        registered += 1;
        let i = registered;
        register(
            base,
            "n1",
            &format!("web-{i}"),
            "web",
            &format!("10.0.0.{i}"),
            80,
        )
        .await;
        let s = sync.status("pool").await;
        if applies(&s).iter().any(|e| e["end_time"].is_null()) {
            break;
        }
        assert!(
            registered < 200 && std::time::Instant::now() < deadline,
            "never saw an apply in flight"
        );
    }
    sync.kill9().await;
    // Changes while it is down.
    for i in registered + 1..=registered + 3 {
        register(
            base,
            "n1",
            &format!("web-{i}"),
            "web",
            &format!("10.0.0.{i}"),
            80,
        )
        .await;
    }
    deregister(base, "n1", "web-0").await;
    let last = registered + 3;

    let sync = Sync::start(root, &config, "b").await;
    let want: Vec<String> = {
        let mut v: Vec<String> = (1..=last).map(|i| format!("10.0.0.{i}:80")).collect();
        v.sort();
        v
    };
    eventually(
        "the pool matches the catalog",
        Duration::from_secs(90),
        || async { (kv_text(base, "sync/pools/web").await? == want.join(",")).then_some(()) },
    )
    .await;
    // The module's KV write lands before terraform exits: wait for the run
    // itself to be recorded as finished.
    let status = eventually("the run recorded", Duration::from_secs(60), || async {
        let s = sync.status("pool").await;
        let newest = applies(&s).first().cloned()?;
        (!newest["end_time"].is_null()).then_some(s)
    })
    .await;
    let events = applies(&status);
    assert!(
        events.iter().any(|e| e["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("stopped during this run"))),
        "the interrupted run is in the history: {status:#}"
    );
    assert!(
        events.iter().filter(|e| e["success"] == true).count() >= 2,
        "runs from before the kill are still listed: {status:#}"
    );
    assert_eq!(events[0]["success"], true, "newest first, and it succeeded");
}

#[tokio::test]
async fn sync_tasks_through_the_api_and_once_mode() {
    let (dir, agent, base) = dev_setup().await;
    let root = dir.path();
    let work = root.join("work");
    let config = root.join("sync.hcl");
    std::fs::write(&config, header(&work, &agent.http.to_string())).unwrap();
    register(&base, "n1", "db-1", "db", "10.0.9.1", 5432).await;
    let sync = Sync::start(root, &config, "a").await;
    let c = http();

    let task = json!({
        "name": "dbpool", "module": pool_module(), "providers": ["mesh"],
        "buffer_period": {"enabled": false},
        "condition": {"services": {"names": ["db"]}}
    });
    // Inspect a task before creating it: a plan, nothing applied.
    let r = sync
        .send("POST", "/v1/tasks?run=inspect", &json!({"task": task}))
        .await;
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["run"]["changes_present"], true, "{v:#}");
    assert!(kv_text(&base, "sync/pools/db").await.is_none());

    // A body in other key cases is refused whole, naming the key; nothing is created.
    for bad in [
        json!({"Task": task}),
        json!({"task": {"Name": "x", "module": "m", "condition": {"services": {"names": ["db"]}}}}),
        json!({"task": {"name": "x", "Module": "m", "condition": {"services": {"names": ["db"]}}}}),
    ] {
        let r = sync.send("POST", "/v1/tasks", &bad).await;
        assert_eq!(r.status(), 400);
        let v: Value = r.json().await.unwrap();
        assert!(
            v["error"]["message"]
                .as_str()
                .unwrap()
                .contains("unknown field"),
            "{v}"
        );
    }
    let list: Value = c
        .get(sync.url("/v1/tasks"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list["tasks"].as_array().unwrap().len(), 0);

    // Create and run now.
    let r = sync
        .send("POST", "/v1/tasks?run=now", &json!({"task": task}))
        .await;
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    assert_eq!(
        kv_text(&base, "sync/pools/db").await.as_deref(),
        Some("10.0.9.1:5432")
    );
    let r = sync.send("POST", "/v1/tasks", &json!({"task": task})).await;
    assert_eq!(r.status(), 409);

    // Disable: changes are not applied. `Enabled` is not `enabled`.
    let r = sync
        .send("PATCH", "/v1/tasks/dbpool", &json!({"Enabled": false}))
        .await;
    assert_eq!(r.status(), 400);
    let r = sync
        .send("PATCH", "/v1/tasks/dbpool", &json!({"enabled": false}))
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(sync.status("dbpool").await["enabled"], false);
    register(&base, "n1", "db-2", "db", "10.0.9.2", 5432).await;
    // Inspect shows the pending change (once the watch has seen it)
    // without applying it.
    eventually(
        "inspect shows the change",
        Duration::from_secs(30),
        || async {
            let r = c
                .patch(sync.url("/v1/tasks/dbpool?run=inspect"))
                .json(&json!({"enabled": true}))
                .send()
                .await
                .ok()?;
            let v: Value = r.json().await.ok()?;
            (v["inspect"]["changes_present"] == true).then_some(())
        },
    )
    .await;
    assert_eq!(
        kv_text(&base, "sync/pools/db").await.as_deref(),
        Some("10.0.9.1:5432")
    );
    // Enabling (here through the CLI) applies what changed meanwhile.
    let addr = sync.api.trim_start_matches("http://").to_string();
    let (code, _, err) = mesh(
        root,
        &["sync", "task", "enable", "-http-addr", &addr, "dbpool"],
    )
    .await;
    assert_eq!(code, Some(0), "{err}");
    let (code, _, err) = mesh(
        root,
        &["sync", "task", "enable", "-http-addr", &addr, "nosuch"],
    )
    .await;
    assert_eq!(code, Some(1));
    assert!(err.contains("does not exist"), "{err}");
    eventually(
        "enabled task catches up",
        Duration::from_secs(60),
        || async {
            kv_text(&base, "sync/pools/db")
                .await
                .filter(|v| v == "10.0.9.1:5432,10.0.9.2:5432")
        },
    )
    .await;
    let summary: Value = c
        .get(sync.url("/v1/status"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        summary["task_summary"]["status"]["successful"], 1,
        "{summary}"
    );

    // Delete.
    let r = c.delete(sync.url("/v1/tasks/dbpool")).send().await.unwrap();
    assert_eq!(r.status(), 202);
    let r = c.get(sync.url("/v1/tasks/dbpool")).send().await.unwrap();
    assert_eq!(r.status(), 404);

    // The CLI creates a task from a file with one task block.
    let task_file = root.join("task.hcl");
    std::fs::write(
        &task_file,
        format!(
            "task {{\n  name      = \"clipool\"\n  module    = \"{}\"\n  providers = [\"mesh\"]\n  condition \"services\" {{\n    names = [\"db\"]\n  }}\n  module_input \"consul-kv\" {{\n    path = \"x\"\n  }}\n}}\n",
            pool_module()
        ),
    )
    .unwrap();
    let file = task_file.display().to_string();
    let (code, _, err) = mesh(
        root,
        &[
            "sync",
            "task",
            "create",
            "-http-addr",
            &addr,
            "-task-file",
            &file,
        ],
    )
    .await;
    assert_eq!(code, Some(0), "{err}");
    let r = c.get(sync.url("/v1/tasks/clipool")).send().await.unwrap();
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["task"]["module_input"]["consul-kv"]["path"], "x", "{v}");
    drop(sync);

    // -once: one pass over the config's tasks, exit 0.
    let once_cfg = root.join("once.hcl");
    std::fs::write(
        &once_cfg,
        format!(
            "{}task {{\n  name = \"oncepool\"\n  module = \"{}\"\n  providers = [\"mesh\"]\n  condition \"services\" {{\n    names = [\"db\"]\n  }}\n}}\n",
            header(&root.join("work-once"), &agent.http.to_string()),
            pool_module()
        ),
    )
    .unwrap();
    // -inspect: the plan, nothing applied.
    let cfg = once_cfg.display().to_string();
    let (code, out, err) = mesh(root, &["sync", "-inspect", "-config-file", &cfg]).await;
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(
        out.contains("task oncepool: changes present: true"),
        "{out}"
    );
    let (code, out, err) = mesh(root, &["sync", "-once", "-config-file", &cfg]).await;
    let text = out + &err;
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("task oncepool: Apply complete!"), "{text}");
}

#[tokio::test]
async fn a_failing_task_retries_while_others_run_and_bad_config_runs_nothing() {
    let (dir, agent, base) = dev_setup().await;
    let root = dir.path();
    let failing = root.join("failing-module");
    write_module(&failing,
        "variable \"services\" {\n  type = any\n}\n\nresource \"terraform_data\" \"boom\" {\n  input = var.services\n  provisioner \"local-exec\" {\n    command = \"echo the load balancer said no; exit 3\"\n  }\n}\n",
    );
    let work = root.join("work");
    let config = root.join("sync.hcl");
    std::fs::write(
        &config,
        format!(
            "{}task {{\n  name = \"broken\"\n  module = \"{}\"\n  condition \"services\" {{\n    names = [\"web\"]\n  }}\n}}\ntask {{\n  name = \"pool\"\n  module = \"{}\"\n  providers = [\"mesh\"]\n  condition \"services\" {{\n    names = [\"web\"]\n  }}\n}}\n",
            header(&work, &agent.http.to_string()),
            failing.display(),
            pool_module()
        ),
    )
    .unwrap();
    register(&base, "n1", "web-1", "web", "10.0.0.1", 80).await;
    let sync = Sync::start(root, &config, "a").await;
    let broken = eventually("retries", Duration::from_secs(60), || async {
        let s = sync.status("broken").await;
        let failed = applies(&s).iter().filter(|e| e["success"] == false).count();
        (failed >= 3).then_some(s)
    })
    .await;
    assert_eq!(broken["status"], "critical");
    let msg = applies(&broken)
        .iter()
        .find_map(|e| e["error"]["message"].as_str().map(str::to_string))
        .unwrap();
    assert!(msg.contains("the load balancer said no"), "{msg}");
    let triggers: Vec<String> = applies(&broken)
        .iter()
        .filter_map(|e| e["trigger"].as_str().map(str::to_string))
        .collect();
    assert!(triggers.iter().any(|t| t == "retry"), "{triggers:?}");

    // The other task is not held up.
    register(&base, "n1", "web-2", "web", "10.0.0.2", 80).await;
    eventually("the healthy task runs", Duration::from_secs(60), || async {
        kv_text(&base, "sync/pools/web")
            .await
            .filter(|v| v == "10.0.0.1:80,10.0.0.2:80")
    })
    .await;
    drop(sync);

    // A bad config: file:line:col, exit 1, no terraform run.
    let bad = root.join("bad.hcl");
    std::fs::write(
        &bad,
        format!(
            "{}task {{\n  name = \"x\"\n  module = \"{}\"\n  condition \"services\" {{\n    nmes = [\"web\"]\n  }}\n}}\n",
            header(&root.join("work-bad"), &agent.http.to_string()),
            pool_module()
        ),
    )
    .unwrap();
    let out = tokio::process::Command::new(mesh_testkit::mesh_bin())
        .args(["sync", "-config-file"])
        .arg(&bad)
        .output()
        .await
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    let line = header(&root.join("work-bad"), "x").lines().count() + 5;
    assert!(
        err.contains(&format!("bad.hcl:{line}:5: unknown key `nmes`")),
        "{err}"
    );
    assert!(err.contains("did you mean `names`"), "{err}");
    assert!(!root.join("work-bad").exists(), "nothing ran");
}
