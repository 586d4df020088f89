//! Sessions and KV locks as Consul's clients use them: create, info, list,
//! renew, destroy; `?acquire=` / `?release=` with lock delay and both
//! behaviors; sessions ended by their node's health and by their TTL; and
//! the create body checked as decoded, in any key case, under default deny.

use std::time::Duration;

use mesh_testkit::{eventually, AgentSpec, TestAgent};
use reqwest::Method;
use serde_json::{json, Value};

use crate::acl::{acl_config, call, token_with_policy, MANAGEMENT};

async fn create(a: &TestAgent, body: Value) -> String {
    let (st, text) = call(
        Method::PUT,
        a,
        "/v1/session/create",
        Some(MANAGEMENT),
        Some(body),
    )
    .await;
    assert_eq!(st, 200, "{text}");
    let v: Value = serde_json::from_str(&text).unwrap();
    v["ID"].as_str().unwrap().to_string()
}

/// `PUT /v1/kv/KEY?acquire=` or `?release=`: Consul's true/false.
async fn lock(a: &TestAgent, key: &str, verb: &str, session: &str) -> bool {
    let (st, text) = call(
        Method::PUT,
        a,
        &format!("/v1/kv/{key}?{verb}={session}"),
        Some(MANAGEMENT),
        Some(json!("value")),
    )
    .await;
    assert_eq!(st, 200, "{verb} {key}: {text}");
    serde_json::from_str(&text).unwrap()
}

/// The key's `(Session, LockIndex)`, or `None` when it does not exist.
async fn holder(a: &TestAgent, key: &str) -> Option<(Option<String>, u64)> {
    let (st, text) = call(
        Method::GET,
        a,
        &format!("/v1/kv/{key}"),
        Some(MANAGEMENT),
        None,
    )
    .await;
    if st == 404 {
        return None;
    }
    let v: Value = serde_json::from_str(&text).unwrap();
    Some((
        v[0]["Session"].as_str().map(str::to_string),
        v[0]["LockIndex"].as_u64().unwrap(),
    ))
}

async fn sessions(a: &TestAgent) -> Vec<Value> {
    let (st, text) = call(Method::GET, a, "/v1/session/list", Some(MANAGEMENT), None).await;
    assert_eq!(st, 200, "{text}");
    serde_json::from_str(&text).unwrap()
}

async fn agent(dir: &std::path::Path, name: &str) -> TestAgent {
    let mut spec = AgentSpec::server(name, 1);
    spec.extra = vec![
        "-dev".into(),
        format!("-config-file={}", acl_config(dir).display()),
    ];
    TestAgent::start(spec, &dir.join("data")).await.unwrap()
}

/// The agent's own node is registered (with its serfHealth check) soon
/// after start; sessions need it.
async fn node_ready(a: &TestAgent, node: &str) {
    let path = format!("/v1/health/node/{node}");
    eventually(
        "the agent's serfHealth",
        Duration::from_secs(20),
        || async {
            let (st, text) = call(Method::GET, a, &path, Some(MANAGEMENT), None).await;
            (st == 200 && text.contains("serfHealth")).then_some(())
        },
    )
    .await;
}

#[tokio::test]
async fn sessions_and_locks_follow_consuls_rules() {
    let dir = tempfile::tempdir().unwrap();
    let a = agent(dir.path(), "sessions").await;
    node_ready(&a, "sessions").await;

    // Bad input: a 4xx naming the problem, nothing stored.
    for (body, want) in [
        (json!({"TTL": "5s"}), "Invalid Session TTL '5s'"),
        (json!({"Behavior": "explode"}), "Invalid Behavior setting"),
        (json!({"LockDelay": "2m"}), "LockDelay is over 60s"),
        (
            json!({"NodeChecks": ["nope"]}),
            "Missing check \"nope\" registration",
        ),
        (json!({"Node": "nowhere"}), "Missing node registration"),
    ] {
        let (st, text) = call(
            Method::PUT,
            &a,
            "/v1/session/create",
            Some(MANAGEMENT),
            Some(body),
        )
        .await;
        assert_eq!(st, 400, "{text}");
        assert!(text.contains(want), "{text:?} should say {want:?}");
    }
    assert!(sessions(&a).await.is_empty(), "nothing stored");
    let (st, text) = call(
        Method::PUT,
        &a,
        "/v1/session/renew/00000000-0000-0000-0000-000000000000",
        Some(MANAGEMENT),
        None,
    )
    .await;
    assert_eq!(st, 404, "{text}");
    let (st, text) = call(
        Method::PUT,
        &a,
        "/v1/kv/locks/a?acquire=00000000-0000-0000-0000-000000000000",
        Some(MANAGEMENT),
        Some(json!("x")),
    )
    .await;
    assert_eq!(st, 400, "{text}");
    assert!(text.contains("invalid session"), "{text}");
    assert_eq!(holder(&a, "locks/a").await, None, "nothing stored");

    let s1 = create(&a, json!({"Name": "one", "LockDelay": "0s"})).await;
    let s2 = create(&a, json!({"name": "two", "lock_delay": "2s"})).await;
    let (st, text) = call(
        Method::GET,
        &a,
        &format!("/v1/session/info/{s1}"),
        Some(MANAGEMENT),
        None,
    )
    .await;
    assert_eq!(st, 200);
    let info: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(info[0]["Name"], "one");
    assert_eq!(info[0]["Node"], "sessions");
    assert_eq!(info[0]["Behavior"], "release");
    assert_eq!(info[0]["NodeChecks"], json!(["serfHealth"]));
    let (_, text) = call(
        Method::GET,
        &a,
        "/v1/session/node/sessions",
        Some(MANAGEMENT),
        None,
    )
    .await;
    assert_eq!(
        serde_json::from_str::<Value>(&text)
            .unwrap()
            .as_array()
            .unwrap()
            .len(),
        2
    );

    // One holder at a time; LockIndex counts acquisitions.
    assert!(lock(&a, "locks/a", "acquire", &s1).await);
    assert_eq!(holder(&a, "locks/a").await, Some((Some(s1.clone()), 1)));
    assert!(
        lock(&a, "locks/a", "acquire", &s1).await,
        "the holder again"
    );
    assert!(!lock(&a, "locks/a", "acquire", &s2).await);
    assert!(!lock(&a, "locks/a", "release", &s2).await);
    assert!(lock(&a, "locks/a", "release", &s1).await);
    assert_eq!(holder(&a, "locks/a").await, Some((None, 1)));
    assert!(lock(&a, "locks/a", "acquire", &s2).await);
    assert_eq!(holder(&a, "locks/a").await, Some((Some(s2.clone()), 2)));

    // Destroying the holder releases the lock; its 2 s lock delay keeps
    // the key from the next session for a while, then lets it in.
    let (st, _) = call(
        Method::PUT,
        &a,
        &format!("/v1/session/destroy/{s2}"),
        Some(MANAGEMENT),
        None,
    )
    .await;
    assert_eq!(st, 200);
    assert_eq!(holder(&a, "locks/a").await, Some((None, 2)));
    assert!(
        !lock(&a, "locks/a", "acquire", &s1).await,
        "within the lock delay"
    );
    eventually("the lock delay ends", Duration::from_secs(10), || async {
        lock(&a, "locks/a", "acquire", &s1).await.then_some(())
    })
    .await;

    // Behavior delete: the held key goes with the session.
    let s3 = create(&a, json!({"Behavior": "delete", "LockDelay": 0})).await;
    assert!(lock(&a, "locks/d", "acquire", &s3).await);
    call(
        Method::PUT,
        &a,
        &format!("/v1/session/destroy/{s3}"),
        Some(MANAGEMENT),
        None,
    )
    .await;
    assert_eq!(holder(&a, "locks/d").await, None);

    // A session bound to a node's check ends when the check turns critical.
    let register = |status: &str| {
        json!({"Node": "ext", "Address": "10.0.0.9",
               "Check": {"CheckID": "ext-alive", "Name": "alive", "Status": status}})
    };
    let (st, text) = call(
        Method::PUT,
        &a,
        "/v1/catalog/register",
        Some(MANAGEMENT),
        Some(register("passing")),
    )
    .await;
    assert_eq!(st, 200, "{text}");
    let s4 = create(
        &a,
        json!({"Node": "ext", "NodeChecks": ["ext-alive"], "LockDelay": "0s"}),
    )
    .await;
    assert!(lock(&a, "locks/e", "acquire", &s4).await);
    call(
        Method::PUT,
        &a,
        "/v1/catalog/register",
        Some(MANAGEMENT),
        Some(register("critical")),
    )
    .await;
    assert_eq!(
        holder(&a, "locks/e").await,
        Some((None, 1)),
        "released with the session"
    );
    let (_, text) = call(
        Method::GET,
        &a,
        &format!("/v1/session/info/{s4}"),
        Some(MANAGEMENT),
        None,
    )
    .await;
    assert_eq!(text.trim(), "[]");
    let (st, text) = call(
        Method::PUT,
        &a,
        "/v1/session/create",
        Some(MANAGEMENT),
        Some(json!({"Node": "ext", "NodeChecks": ["ext-alive"]})),
    )
    .await;
    assert_eq!(st, 400);
    assert!(text.contains("critical"), "{text}");
    // The node leaving ends its sessions too.
    call(
        Method::PUT,
        &a,
        "/v1/catalog/register",
        Some(MANAGEMENT),
        Some(register("passing")),
    )
    .await;
    let s5 = create(&a, json!({"Node": "ext", "NodeChecks": []})).await;
    call(
        Method::PUT,
        &a,
        "/v1/catalog/deregister",
        Some(MANAGEMENT),
        Some(json!({"Node": "ext"})),
    )
    .await;
    let (_, text) = call(
        Method::GET,
        &a,
        &format!("/v1/session/info/{s5}"),
        Some(MANAGEMENT),
        None,
    )
    .await;
    assert_eq!(text.trim(), "[]");
}

#[tokio::test]
async fn a_session_ends_when_its_ttl_runs_out_unless_renewed() {
    let dir = tempfile::tempdir().unwrap();
    let a = agent(dir.path(), "ttl").await;
    node_ready(&a, "ttl").await;
    let kept = create(&a, json!({"TTL": "10s", "LockDelay": "0s"})).await;
    let lapsed = create(&a, json!({"TTL": "10s", "LockDelay": "0s"})).await;
    assert!(lock(&a, "ttl/lapsed", "acquire", &lapsed).await);
    let started = std::time::Instant::now();
    // Renew one every 3 s; the other lapses after twice its TTL.
    let renewing = {
        let url = a.url(&format!("/v1/session/renew/{kept}"));
        tokio::spawn(async move {
            loop {
                let r = crate::http()
                    .put(&url)
                    .header("X-Consul-Token", MANAGEMENT)
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), 200);
                let v: Value = r.json().await.unwrap();
                assert_eq!(v[0]["TTL"], "10s");
                tokio::time::sleep(Duration::from_secs(3)).await;
            }
        })
    };
    eventually(
        "the unrenewed session ends",
        Duration::from_secs(40),
        || async {
            let ids: Vec<String> = sessions(&a)
                .await
                .iter()
                .map(|s| s["ID"].as_str().unwrap().to_string())
                .collect();
            (!ids.contains(&lapsed)).then_some(ids)
        },
    )
    .await;
    assert!(
        started.elapsed() >= Duration::from_secs(19),
        "ended after {:?}, before twice its TTL",
        started.elapsed()
    );
    assert_eq!(
        holder(&a, "ttl/lapsed").await,
        Some((None, 1)),
        "its lock released"
    );
    let ids: Vec<Value> = sessions(&a).await;
    assert!(
        ids.iter().any(|s| s["ID"] == kept.as_str()),
        "the renewed one lives"
    );
    renewing.abort();
}

/// `{key: node, checks: []}`: a create body with the node under `key`.
fn body(key: &str, node: &str, checks: &str) -> Value {
    let mut map = serde_json::Map::new();
    map.insert(key.into(), json!(node));
    map.insert(checks.into(), json!([]));
    Value::Object(map)
}

#[tokio::test]
async fn a_session_create_is_checked_on_the_body_it_executes_in_any_key_case() {
    let dir = tempfile::tempdir().unwrap();
    let a = agent(dir.path(), "session-acl").await;
    node_ready(&a, "session-acl").await;
    for node in ["mine", "theirs"] {
        let (st, text) = call(
            Method::PUT,
            &a,
            "/v1/catalog/register",
            Some(MANAGEMENT),
            Some(json!({"Node": node, "Address": "10.0.0.1"})),
        )
        .await;
        assert_eq!(st, 200, "{text}");
    }
    let token = token_with_policy(
        &a,
        "sessions-on-mine",
        "session \"mine\" { policy = \"write\" }",
    )
    .await;
    for key in ["Node", "node", "NODE", "n_o_d_e"] {
        let create = |b: Value| call(Method::PUT, &a, "/v1/session/create", Some(&token), Some(b));
        let (st, text) = create(body(key, "theirs", "nodechecks")).await;
        assert_eq!(st, 403, "{key}: {text}");
        let (st, text) = create(body(key, "mine", "NodeChecks")).await;
        assert_eq!(st, 200, "{key}: {text}");
    }
    // Two spellings of one field are refused, not read two ways.
    let twice = r#"{"Node": "mine", "node": "theirs", "NodeChecks": []}"#;
    let (st, text) = call(
        Method::PUT,
        &a,
        "/v1/session/create",
        Some(&token),
        Some(serde_json::from_str(twice).unwrap()),
    )
    .await;
    assert!(st.is_client_error(), "{st}: {text}");
    let all = sessions(&a).await;
    assert_eq!(all.len(), 4, "{all:?}");
    assert!(all.iter().all(|s| s["Node"] == "mine"), "{all:?}");
    // Anonymous: nothing listed, nothing destroyed.
    let (st, text) = call(Method::GET, &a, "/v1/session/list", None, None).await;
    assert_eq!((st.as_u16(), text.trim()), (200, "[]"));
    let id = all[0]["ID"].as_str().unwrap();
    let (st, _) = call(
        Method::PUT,
        &a,
        &format!("/v1/session/destroy/{id}"),
        None,
        None,
    )
    .await;
    assert_eq!(st, 403);
}

/// `mesh lock PREFIX CMD` processes, each appending `start N` and `end N`
/// around a pause to `log`.
fn contender(
    a: &TestAgent,
    args: &[&str],
    log: &std::path::Path,
    n: usize,
) -> tokio::process::Child {
    tokio::process::Command::new(mesh_testkit::mesh_bin())
        .arg("lock")
        .args(args)
        .arg(format!(
            "echo start {n} >> {log}; sleep 1; echo end {n} >> {log}",
            log = log.display()
        ))
        .env("MESH_HTTP_ADDR", a.http.to_string())
        .env("MESH_HTTP_TOKEN", MANAGEMENT)
        .kill_on_drop(true)
        .spawn()
        .unwrap()
}

/// The most commands the log shows running at once, and how many ran.
fn most_at_once(log: &std::path::Path) -> (usize, usize) {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let (mut now, mut most, mut ran) = (0usize, 0usize, 0usize);
    for line in text.lines() {
        if line.starts_with("start") {
            now += 1;
            ran += 1;
            most = most.max(now);
        } else {
            now -= 1;
        }
    }
    (most, ran)
}

#[tokio::test]
async fn mesh_lock_runs_one_holder_at_a_time_and_a_semaphore_n() {
    let dir = tempfile::tempdir().unwrap();
    let a = agent(dir.path(), "locker").await;
    node_ready(&a, "locker").await;
    for (args, limit) in [(vec!["jobs/one"], 1), (vec!["-n", "2", "jobs/two"], 2)] {
        let log = dir.path().join(format!("log-{limit}"));
        let mut children: Vec<_> = (0..4).map(|n| contender(&a, &args, &log, n)).collect();
        for c in &mut children {
            let status = tokio::time::timeout(Duration::from_secs(60), c.wait())
                .await
                .expect("every contender gets its turn")
                .unwrap();
            assert!(status.success(), "{status}");
        }
        let (most, ran) = most_at_once(&log);
        assert_eq!(ran, 4, "every command ran");
        assert_eq!(most, limit, "{}", std::fs::read_to_string(&log).unwrap());
        // Released: no session left, the lock key free.
        assert!(sessions(&a).await.is_empty());
    }

    // A holder whose session is destroyed loses the lock: its command is killed.
    let mut holder = tokio::process::Command::new(mesh_testkit::mesh_bin())
        .args(["lock", "jobs/lost", "sleep 60"])
        .env("MESH_HTTP_ADDR", a.http.to_string())
        .env("MESH_HTTP_TOKEN", MANAGEMENT)
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let session = eventually("the lock held", Duration::from_secs(20), || async {
        let (_, text) = call(
            Method::GET,
            &a,
            "/v1/kv/jobs/lost/.lock",
            Some(MANAGEMENT),
            None,
        )
        .await;
        let v: Value = serde_json::from_str(&text).ok()?;
        v[0]["Session"].as_str().map(str::to_string)
    })
    .await;
    call(
        Method::PUT,
        &a,
        &format!("/v1/session/destroy/{session}"),
        Some(MANAGEMENT),
        None,
    )
    .await;
    let status = tokio::time::timeout(Duration::from_secs(20), holder.wait())
        .await
        .expect("mesh lock ends when the lock is lost")
        .unwrap();
    assert_eq!(status.code(), Some(1));
}
