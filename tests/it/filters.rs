//! `?filter=` on the catalog, health and agent endpoints, with Consul's
//! expression language; a bad expression is a 400 saying where.

use mesh_testkit::eventually;
use reqwest::Method;
use serde_json::{json, Value};
use std::time::Duration;

use crate::acl::call;

/// `text` percent-encoded for a query string.
fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b if b.is_ascii_alphanumeric() => (b as char).to_string(),
            b => format!("%{b:02X}"),
        })
        .collect()
}

async fn filtered(a: &mesh_testkit::TestAgent, path: &str, expression: &str) -> Value {
    let url = format!("{path}?filter={}", encode(expression));
    let (st, text) = call(Method::GET, a, &url, None, None).await;
    assert_eq!(st, 200, "{url}: {text}");
    serde_json::from_str(&text).unwrap()
}

#[tokio::test]
async fn filters_select_catalog_health_and_agent_answers() {
    let dir = tempfile::tempdir().unwrap();
    let a = crate::dev_agent("filters", &dir.path().join("data")).await;
    for (node, rack, env, tag, status) in [
        ("n1", "r1", "prod", "v1", "passing"),
        ("n2", "r1", "prod", "v2", "critical"),
        ("n3", "r2", "dev", "v2", "passing"),
    ] {
        let body = json!({"Node": node, "Address": "10.0.0.1", "NodeMeta": {"rack": rack},
            "Service": {"Service": "web", "ID": format!("web-{node}"), "Port": 80,
                        "Tags": [tag], "Meta": {"env": env}},
            "Check": {"CheckID": format!("web-{node}"), "Name": "web", "ServiceID": format!("web-{node}"),
                      "Status": status}});
        let (st, text) = call(Method::PUT, &a, "/v1/catalog/register", None, Some(body)).await;
        assert_eq!(st, 200, "{text}");
    }
    let (st, text) = call(
        Method::PUT,
        &a,
        "/v1/agent/service/register",
        None,
        Some(json!({"Name": "local", "ID": "local-1", "Port": 1, "Tags": ["x"]})),
    )
    .await;
    assert_eq!(st, 200, "{text}");

    let ids = |v: &Value, f: &dyn Fn(&Value) -> String| -> Vec<String> {
        let mut ids: Vec<String> = v.as_array().unwrap().iter().map(f).collect();
        ids.sort();
        ids
    };
    let health_id = |e: &Value| e["Service"]["ID"].as_str().unwrap().to_string();
    let v = filtered(&a, "/v1/health/service/web", "Service.Meta.env == prod").await;
    assert_eq!(ids(&v, &health_id), ["web-n1", "web-n2"]);
    let v = filtered(&a, "/v1/health/service/web", "Checks.Status == critical").await;
    assert_eq!(ids(&v, &health_id), ["web-n2"]);
    let v = filtered(
        &a,
        "/v1/health/service/web",
        "Node.Meta.rack == r1 and not (Service.Tags contains v1)",
    )
    .await;
    assert_eq!(ids(&v, &health_id), ["web-n2"]);
    let v = filtered(&a, "/v1/catalog/service/web", "v2 in ServiceTags").await;
    assert_eq!(
        ids(&v, &|e| e["ServiceID"].as_str().unwrap().to_string()),
        ["web-n2", "web-n3"]
    );
    let v = filtered(&a, "/v1/catalog/nodes", "Meta.rack == r2").await;
    assert_eq!(
        ids(&v, &|e| e["Node"].as_str().unwrap().to_string()),
        ["n3"]
    );
    let v = filtered(&a, "/v1/health/state/any", "Status == critical").await;
    assert_eq!(
        ids(&v, &|e| e["CheckID"].as_str().unwrap().to_string()),
        ["web-n2"]
    );
    let v = eventually("the local service", Duration::from_secs(10), || async {
        let v = filtered(&a, "/v1/agent/services", "Service matches \"^loc\"").await;
        (!v.as_object()?.is_empty()).then_some(v)
    })
    .await;
    assert_eq!(
        v.as_object().unwrap().keys().collect::<Vec<_>>(),
        ["local-1"]
    );

    // A syntax error: 400, and where.
    let url = format!(
        "/v1/health/service/web?filter={}",
        encode("Service.Meta.env === prod")
    );
    let (st, text) = call(Method::GET, &a, &url, None, None).await;
    assert_eq!(st, 400, "{text}");
    assert!(text.contains("at offset"), "{text}");
}

/// A filtered answer is cached like any read of the same state (the filter
/// is part of the key): a repeat answers the same, and a change to the
/// catalog is seen by the next read, filtered again.
#[tokio::test]
async fn a_filtered_read_follows_catalog_changes() {
    let dir = tempfile::tempdir().unwrap();
    let a = crate::dev_agent("filt2", &dir.path().join("data")).await;
    let c = crate::http();
    let register = |id: &'static str, env: &'static str| {
        let c = c.clone();
        let url = a.url("/v1/catalog/register");
        async move {
            let body = json!({"Node": id, "Address": "10.0.0.1",
                "Service": {"Service": "web", "ID": id, "Meta": {"env": env}}});
            let r = c.put(url).json(&body).send().await.unwrap();
            assert!(r.status().is_success());
        }
    };
    register("a", "prod").await;
    register("b", "dev").await;
    let names = |v: &Value| -> Vec<String> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|e| e["ServiceID"].as_str().unwrap().to_string())
            .collect()
    };
    let expr = "ServiceMeta.env == prod";
    let first = filtered(&a, "/v1/catalog/service/web", expr).await;
    assert_eq!(names(&first), ["a"]);
    assert_eq!(filtered(&a, "/v1/catalog/service/web", expr).await, first);
    // The unfiltered read of the same path is its own answer.
    let all = filtered(&a, "/v1/catalog/service/web", "").await;
    assert_eq!(names(&all), ["a", "b"]);
    register("c", "prod").await;
    let after = filtered(&a, "/v1/catalog/service/web", expr).await;
    assert_eq!(names(&after), ["a", "c"]);
}
