//! Ownership seen from Terraform: an object taken over through the API is
//! an error at `plan` on that resource (not a diff that fails at apply),
//! destroy stops the same way, `takeover = true` takes it back on apply,
//! and a `removed` block hands it over without destroying it.

use serde_json::Value;

use crate::terraform::{terraform, Tf};
use crate::{fetch_json, http};

fn config(takeover: bool) -> String {
    let takeover = if takeover { "\n  takeover = true" } else { "" };
    format!(
        r#"
resource "mesh_service" "web" {{
  node    = "tf-node"
  address = "10.0.0.9"
  name    = "web"
  port    = 8080{takeover}
}}

resource "mesh_intention" "web_db" {{
  source      = "web"
  destination = "db"
  action      = "allow"{takeover}
}}

resource "mesh_config_entry" "db" {{
  kind        = "service-defaults"
  name        = "db"
  config_json = jsonencode({{ Protocol = "http" }}){takeover}
}}
"#
    )
}

async fn owners(c: &reqwest::Client, agent: &mesh_testkit::TestAgent) -> [String; 3] {
    let node = fetch_json(c, agent.url("/v1/catalog/node/tf-node")).await;
    let intention = fetch_json(
        c,
        agent.url("/v1/connect/intentions/exact?source=web&destination=db"),
    )
    .await;
    let entry = fetch_json(c, agent.url("/v1/config/service-defaults/db")).await;
    let owner = |v: &Value| v["Owner"].as_str().unwrap_or_default().to_string();
    [
        owner(&node["Services"]["web"]),
        owner(&intention),
        owner(&entry),
    ]
}

#[tokio::test]
async fn plan_reports_objects_another_owner_took_over_and_takeover_takes_them_back() {
    terraform();
    let root = tempfile::tempdir().unwrap();
    let agent = crate::dev_agent("owner1", &root.path().join("data")).await;
    let addr = agent.http.to_string();
    let tf = Tf::new(root.path(), "owned");
    tf.write(&addr, &config(false));
    let r = tf.apply().await;
    assert_eq!(r.code, 0, "{}", r.out);
    let c = http();
    assert_eq!(
        owners(&c, &agent).await,
        ["terraform", "terraform", "terraform"]
    );
    let r = tf.plan().await;
    assert_eq!(r.code, 0, "a fresh apply plans no changes:\n{}", r.out);

    // Someone takes all three over through the API.
    for (method, path, body) in [
        (
            "PUT",
            "/v1/catalog/register?takeover=true",
            r#"{"Node":"tf-node","Address":"10.0.0.9","Service":{"ID":"web","Service":"web","Port":9090}}"#,
        ),
        (
            "PUT",
            "/v1/connect/intentions/exact?source=web&destination=db&takeover=true",
            r#"{"Action":"deny"}"#,
        ),
        (
            "PUT",
            "/v1/config?takeover=true",
            r#"{"Kind":"service-defaults","Name":"db","Protocol":"grpc"}"#,
        ),
    ] {
        let r = c
            .request(method.parse().unwrap(), agent.url(path))
            .body(body)
            .send()
            .await
            .unwrap();
        assert!(
            r.status().is_success(),
            "{path}: {}",
            r.text().await.unwrap()
        );
    }
    assert_eq!(owners(&c, &agent).await, ["api", "api", "api"]);

    // Plan names each resource and the owner, and says how to proceed.
    let r = tf.plan().await;
    assert_eq!(r.code, 1, "plan must fail, not show a diff:\n{}", r.out);
    for what in [
        r#"service "web" on node "tf-node" is managed by api"#,
        "intention web => db is managed by api",
        "config entry service-defaults/db is managed by api",
    ] {
        assert!(r.out.contains(what), "{what}:\n{}", r.out);
    }
    // Terraform wraps diagnostics: compare with whitespace folded.
    let folded = r.out.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(
        folded.contains("Set `takeover = true` on this resource"),
        "{}",
        r.out
    );
    assert!(r.out.contains("with mesh_service.web"), "{}", r.out);
    let r = tf.run(&["plan", "-destroy", "-input=false"]).await;
    assert_eq!(r.code, 1, "{}", r.out);
    assert!(r.out.contains("is managed by api"), "{}", r.out);
    // Nothing was changed by either plan.
    assert_eq!(owners(&c, &agent).await, ["api", "api", "api"]);

    // takeover = true: plan shows the changes, apply takes them back.
    tf.write(&addr, &config(true));
    let r = tf.plan().await;
    assert_eq!(r.code, 2, "{}", r.out);
    let r = tf.apply().await;
    assert_eq!(r.code, 0, "{}", r.out);
    assert_eq!(
        owners(&c, &agent).await,
        ["terraform", "terraform", "terraform"]
    );
    let node = fetch_json(&c, agent.url("/v1/catalog/node/tf-node")).await;
    assert_eq!(node["Services"]["web"]["Port"], 8080);
    let r = tf.plan().await;
    assert_eq!(r.code, 0, "no drift after the takeover:\n{}", r.out);

    // Handing back: `removed` without destroy leaves the objects in place.
    tf.write(
        &addr,
        r#"
removed {
  from = mesh_service.web
  lifecycle {
    destroy = false
  }
}
removed {
  from = mesh_intention.web_db
  lifecycle {
    destroy = false
  }
}
removed {
  from = mesh_config_entry.db
  lifecycle {
    destroy = false
  }
}
"#,
    );
    let r = tf.apply().await;
    assert_eq!(r.code, 0, "{}", r.out);
    assert_eq!(
        owners(&c, &agent).await,
        ["terraform", "terraform", "terraform"]
    );
    let r = c
        .put(agent.url("/v1/config?takeover=true"))
        .body(r#"{"Kind":"service-defaults","Name":"db","Protocol":"tcp"}"#)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
}
