//! Terraform's own `consul` state backend (Terraform 1.11's code, through
//! Consul's Go client) against a 3-server mesh cluster: state stored in
//! mesh's KV, the state lock a KV lock under a session, a second run
//! refused while the first holds it, and the lock kept through a kill -9
//! of the Raft leader.

use std::path::Path;
use std::time::Duration;

use mesh_testkit::{eventually, TestAgent, TestCluster};
use serde_json::Value;

use crate::terraform::{terraform, Run};

/// A working directory using the consul backend at `agent`, with one
/// built-in resource whose creation takes `sleep` seconds.
fn workdir(root: &Path, name: &str, agent: &TestAgent, sleep: u32) -> std::path::PathBuf {
    let dir = root.join(name);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("main.tf"),
        format!(
            r#"terraform {{
  backend "consul" {{
    address = "{}"
    scheme  = "http"
    path    = "tf/app"
    lock    = true
  }}
}}

resource "terraform_data" "app" {{
  input = "{name}"
  provisioner "local-exec" {{
    command = "sleep {sleep}"
  }}
}}
"#,
            agent.http
        ),
    )
    .unwrap();
    dir
}

async fn tf(dir: &Path, args: &[&str]) -> Run {
    let out = tokio::process::Command::new(terraform())
        .args(args)
        .arg("-no-color")
        .current_dir(dir)
        .env("CHECKPOINT_DISABLE", "1")
        .env("TF_IN_AUTOMATION", "1")
        .env_remove("TF_LOG")
        .kill_on_drop(true)
        .output()
        .await
        .expect("terraform runs");
    Run {
        code: out.status.code().unwrap_or(-1),
        out: format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    }
}

/// The session holding the state lock, if any.
async fn lock_holder(agent: &TestAgent) -> Option<String> {
    let r = crate::http()
        .get(agent.url("/v1/kv/tf/app/.lock"))
        .send()
        .await
        .ok()?;
    let v: Value = r.json().await.ok()?;
    v[0]["Session"].as_str().map(str::to_string)
}

async fn session_exists(agent: &TestAgent, id: &str) -> bool {
    let text =
        crate::fetch_text(&crate::http(), agent.url(&format!("/v1/session/info/{id}"))).await;
    text.contains(id)
}

#[tokio::test]
async fn terraforms_consul_backend_keeps_state_and_its_lock_in_mesh() {
    let mut cluster = TestCluster::start(3).await.unwrap();
    let leader = cluster.wait_for_leader(Duration::from_secs(30)).await;
    let follower = (0..3).find(|&i| i != leader).unwrap();
    let root = cluster.dir.path().to_path_buf();
    let a = workdir(&root, "first", &cluster.agents[follower], 12);
    let b = workdir(&root, "second", &cluster.agents[follower], 0);
    for dir in [&a, &b] {
        let r = tf(dir, &["init", "-input=false"]).await;
        assert_eq!(r.code, 0, "init:\n{}", r.out);
    }

    // The first apply holds the lock while its resource is created.
    let first = {
        let a = a.clone();
        tokio::spawn(async move { tf(&a, &["apply", "-auto-approve", "-input=false"]).await })
    };
    let agent = &cluster.agents[follower];
    let session = eventually("the state lock taken", Duration::from_secs(30), || {
        lock_holder(agent)
    })
    .await;
    assert!(session_exists(agent, &session).await);
    // A second run fails on the lock, as against Consul.
    let second = tf(&b, &["plan", "-input=false", "-lock-timeout=0s"]).await;
    assert_ne!(second.code, 0, "{}", second.out);
    assert!(
        second.out.contains("Error acquiring the state lock"),
        "{}",
        second.out
    );

    // kill -9 of the Raft leader: the session is in Raft and its TTL
    // starts afresh on the new leader, so the lock survives.
    cluster.agents[leader].kill().await;
    cluster
        .wait_for_new_leader(leader, Duration::from_secs(30))
        .await;
    let agent = &cluster.agents[follower];
    assert_eq!(lock_holder(agent).await.as_deref(), Some(session.as_str()));
    assert!(session_exists(agent, &session).await);
    let first = first.await.unwrap();
    assert_eq!(
        first.code, 0,
        "apply through the leader's death:\n{}",
        first.out
    );

    // The lock is released, the state is in mesh's KV, and the next run
    // sees it.
    assert_eq!(lock_holder(agent).await, None);
    let state = crate::fetch_text(&crate::http(), agent.url("/v1/kv/tf/app?raw")).await;
    let state: Value = serde_json::from_str(&state).expect("the state is JSON");
    assert_eq!(state["resources"][0]["type"], "terraform_data", "{state}");
    let plan = tf(
        &b,
        &[
            "plan",
            "-input=false",
            "-detailed-exitcode",
            "-lock-timeout=10s",
        ],
    )
    .await;
    // The second directory declares another input: a change, planned under the lock.
    assert_eq!(plan.code, 2, "{}", plan.out);
}
