//! Token clone and the agent's per-service health endpoints, on real
//! agents under ACL default deny.

use reqwest::Method;
use serde_json::{json, Value};

use mesh_testkit::TestAgent;

use crate::acl::{call, token_with_policy, MANAGEMENT};
use crate::api_surface::{default_deny_agent, ok};
use crate::http;

#[tokio::test]
async fn an_acl_token_is_cloned_with_its_policies_in_any_key_case() {
    let dir = tempfile::tempdir().unwrap();
    let agent = default_deny_agent("clone", dir.path()).await;
    let reader = token_with_policy(
        &agent,
        "app-read",
        r#"key_prefix "app/" { policy = "read" }"#,
    )
    .await;
    let (st, text) = call(
        Method::PUT,
        &agent,
        "/v1/kv/app/x",
        Some(MANAGEMENT),
        Some(json!("1")),
    )
    .await;
    assert_eq!(st, 200, "{text}");
    let original = ok(
        &agent,
        Method::GET,
        "/v1/acl/token/self",
        Some(&reader),
        None,
    )
    .await;
    let accessor = original["AccessorID"].as_str().unwrap().to_string();
    let clone_path = format!("/v1/acl/token/{accessor}/clone");
    let count = || async {
        ok(
            &agent,
            Method::GET,
            "/v1/acl/tokens",
            Some(MANAGEMENT),
            None,
        )
        .await
        .as_array()
        .unwrap()
        .len()
    };
    let before = count().await;

    // Refused without acl:write; a bad body or an unknown token changes nothing.
    for (token, body, status) in [
        (None, json!({}), 403),
        (Some(reader.as_str()), json!({}), 403),
        (
            Some(MANAGEMENT),
            json!({"Description": "x", "Policies": []}),
            400,
        ),
        (Some(MANAGEMENT), json!(["not", "an", "object"]), 400),
    ] {
        let (st, text) = call(Method::PUT, &agent, &clone_path, token, Some(body.clone())).await;
        assert_eq!(st.as_u16(), status, "{body}: {text}");
    }
    let (st, _) = call(
        Method::PUT,
        &agent,
        "/v1/acl/token/6f0e4c5e-0000-4000-8000-000000000000/clone",
        Some(MANAGEMENT),
        Some(json!({})),
    )
    .await;
    assert_eq!(st, 404);
    assert_eq!(count().await, before);

    for (body, want) in [
        (json!({"description": "copy one"}), "copy one"),
        (json!({"DESCRIPTION": "copy two"}), "copy two"),
        (json!({}), original["Description"].as_str().unwrap()),
    ] {
        let clone = ok(
            &agent,
            Method::PUT,
            &clone_path,
            Some(MANAGEMENT),
            Some(body),
        )
        .await;
        assert_ne!(clone["AccessorID"], original["AccessorID"]);
        assert_ne!(clone["SecretID"], original["SecretID"]);
        assert_eq!(clone["Description"], want);
        assert_eq!(clone["Policies"], original["Policies"]);
        // The clone's secret reads what the original reads, and no more.
        let secret = clone["SecretID"].as_str().unwrap();
        let (st, _) = call(Method::GET, &agent, "/v1/kv/app/x", Some(secret), None).await;
        assert_eq!(st, 200);
        let (st, _) = call(
            Method::PUT,
            &agent,
            "/v1/kv/app/x",
            Some(secret),
            Some(json!("2")),
        )
        .await;
        assert_eq!(st, 403);
    }
    assert_eq!(count().await, before + 3);

    // The CLI does the same.
    let (code, out) = tokio::process::Command::new(mesh_testkit::mesh_bin())
        .args([
            "acl",
            "token",
            "clone",
            "-id",
            &accessor,
            "-description",
            "from the cli",
            "-format",
            "json",
        ])
        .env("MESH_HTTP_ADDR", agent.http.to_string())
        .env("MESH_HTTP_TOKEN", MANAGEMENT)
        .output()
        .await
        .map(|o| {
            (
                o.status.code(),
                String::from_utf8_lossy(&o.stdout).into_owned(),
            )
        })
        .unwrap();
    assert_eq!(code, Some(0), "{out}");
    let cloned: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(cloned["Description"], "from the cli");
    assert_eq!(cloned["Policies"], original["Policies"]);
}

/// GET `path` as text: the status and the body.
async fn get_text(agent: &TestAgent, path: &str, token: Option<&str>) -> (u16, String) {
    let mut req = http().get(agent.url(path));
    if let Some(t) = token {
        req = req.header("X-Consul-Token", t);
    }
    let r = req.send().await.unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

#[tokio::test]
async fn agent_service_health_answers_with_the_status_code_of_the_worst_check() {
    let dir = tempfile::tempdir().unwrap();
    let agent = default_deny_agent("lh", dir.path()).await;
    let m = Some(MANAGEMENT);
    for id in ["web1", "web2"] {
        let reg = json!({"Name": "web", "ID": id, "Port": 80, "Check": {"CheckID": format!("{id}-ttl"), "TTL": "60s"}});
        ok(
            &agent,
            Method::PUT,
            "/v1/agent/service/register",
            m,
            Some(reg),
        )
        .await;
    }
    // A TTL check starts critical.
    let (st, body) = get_text(&agent, "/v1/agent/health/service/id/web1", m).await;
    assert_eq!(st, 503, "{body}");
    let body: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["AggregatedStatus"], "critical");
    assert_eq!(body["Service"]["ID"], "web1");
    assert!(body["Checks"]
        .as_array()
        .unwrap()
        .iter()
        .any(|c| c["CheckID"] == "web1-ttl"));

    for (verb, code, text) in [("pass", 200, "passing"), ("warn", 429, "warning")] {
        ok(
            &agent,
            Method::PUT,
            &format!("/v1/agent/check/{verb}/web1-ttl"),
            m,
            None,
        )
        .await;
        let (st, body) = get_text(&agent, "/v1/agent/health/service/id/web1?format=text", m).await;
        assert_eq!((st, body.as_str()), (code, text));
    }
    // By name: every instance, the worst one's status code.
    let (st, body) = get_text(&agent, "/v1/agent/health/service/name/web", m).await;
    assert_eq!(st, 503, "web2 is still critical: {body}");
    assert_eq!(
        serde_json::from_str::<Value>(&body)
            .unwrap()
            .as_array()
            .unwrap()
            .len(),
        2
    );
    ok(
        &agent,
        Method::PUT,
        "/v1/agent/check/pass/web2-ttl",
        m,
        None,
    )
    .await;
    let (st, _) = get_text(&agent, "/v1/agent/health/service/name/web", m).await;
    assert_eq!(st, 429, "web1 warns");
    // Maintenance mode is a node check: it makes every service critical.
    ok(
        &agent,
        Method::PUT,
        "/v1/agent/maintenance?enable=true&reason=upgrade",
        m,
        None,
    )
    .await;
    let (st, body) = get_text(&agent, "/v1/agent/health/service/id/web2?format=text", m).await;
    assert_eq!((st, body.as_str()), (503, "critical"));

    // Unknown, a bad format, and ACLs.
    let (st, _) = get_text(&agent, "/v1/agent/health/service/id/nope", m).await;
    assert_eq!(st, 404);
    let (st, _) = get_text(&agent, "/v1/agent/health/service/name/nope", m).await;
    assert_eq!(st, 404);
    let (st, _) = get_text(&agent, "/v1/agent/health/service/id/web1?format=xml", m).await;
    assert_eq!(st, 400);
    let (st, _) = get_text(&agent, "/v1/agent/health/service/id/web1", None).await;
    assert_eq!(st, 403);
    let reader =
        token_with_policy(&agent, "web-read", r#"service "web" { policy = "read" }"#).await;
    let (st, _) = get_text(&agent, "/v1/agent/health/service/name/web", Some(&reader)).await;
    assert_eq!(st, 503);
}
