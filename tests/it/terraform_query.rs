//! `mesh_prepared_query` and `mesh_key_prefix` with real terraform against
//! a real agent: apply, a clean plan, the result seen over HTTP, drift
//! repaired, import, destroy.

use serde_json::Value;

use crate::terraform::{terraform, Tf};
use crate::{fetch_json, http};

fn config(tags: &str) -> String {
    format!(
        r#"resource "mesh_prepared_query" "web" {{
  name         = "web-primary"
  service      = "web"
  only_passing = true
  tags         = [{tags}]
  dns_ttl      = "10s"
}}

resource "mesh_prepared_query" "geo" {{
  name            = "geo-"
  service         = "$${{match(1)}}"
  template_type   = "name_prefix_match"
  template_regexp = "^geo-(.+)$"
}}
"#
    )
}

/// The ID of the query named `name`.
async fn query_id(c: &reqwest::Client, agent: &mesh_testkit::TestAgent, name: &str) -> String {
    let all = fetch_json(c, agent.url("/v1/query")).await;
    let found = all.as_array().unwrap().iter().find(|q| q["Name"] == name);
    found.expect("the query exists")["ID"]
        .as_str()
        .unwrap()
        .to_string()
}

#[tokio::test]
async fn prepared_queries_apply_plan_clean_repair_drift_import_and_destroy() {
    terraform();
    let root = tempfile::tempdir().unwrap();
    let agent = crate::dev_agent("tfq", &root.path().join("data")).await;
    let addr = agent.http.to_string();
    let c = http();
    for (id, tag) in [("web1", "primary"), ("web2", "replica")] {
        let r = c
            .put(agent.url("/v1/agent/service/register"))
            .json(&serde_json::json!({"Name": "web", "ID": id, "Port": 80, "Tags": [tag]}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    let tf = Tf::new(root.path(), "queries");
    tf.write(&addr, &config(r#""primary""#));
    let r = tf.apply().await;
    assert_eq!(r.code, 0, "{}", r.out);
    let r = tf.plan().await;
    assert_eq!(r.code, 0, "a fresh apply plans no changes:\n{}", r.out);

    let ran = fetch_json(&c, agent.url("/v1/query/web-primary/execute")).await;
    let ids: Vec<&str> = ran["Nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["Service"]["ID"].as_str().unwrap())
        .collect();
    assert_eq!(ids, vec!["web1"], "{ran}");
    let geo = fetch_json(&c, agent.url("/v1/query/geo-web/execute")).await;
    assert_eq!(geo["Nodes"].as_array().unwrap().len(), 2, "{geo}");

    // A change in the config updates the same query in place.
    let id_before = fetch_json(&c, agent.url("/v1/query")).await;
    tf.write(&addr, &config(r#""replica""#));
    let r = tf.apply().await;
    assert_eq!(r.code, 0, "{}", r.out);
    assert!(r.out.contains("1 changed"), "{}", r.out);
    let ran = fetch_json(&c, agent.url("/v1/query/web-primary/execute")).await;
    assert_eq!(ran["Nodes"][0]["Service"]["ID"], "web2");
    let ids = |v: &Value| {
        let mut ids: Vec<String> = v
            .as_array()
            .unwrap()
            .iter()
            .map(|q| q["ID"].as_str().unwrap().to_string())
            .collect();
        ids.sort();
        ids
    };
    assert_eq!(
        ids(&fetch_json(&c, agent.url("/v1/query")).await),
        ids(&id_before)
    );

    // Drift: someone deletes a query; plan sees it, apply puts it back.
    let web_id = query_id(&c, &agent, "web-primary").await;
    let r = c
        .delete(agent.url(&format!("/v1/query/{web_id}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = tf.plan().await;
    assert_eq!(r.code, 2, "the deleted query is planned back:\n{}", r.out);
    let r = tf.apply().await;
    assert_eq!(r.code, 0, "{}", r.out);
    let ran = fetch_json(&c, agent.url("/v1/query/web-primary/execute")).await;
    assert_eq!(ran["Nodes"][0]["Service"]["ID"], "web2");

    // Import into a fresh state, then a clean plan.
    let new_id = query_id(&c, &agent, "web-primary").await;
    let other = Tf::new(root.path(), "imported");
    let full = config(r#""replica""#);
    let web_only = full
        .split("resource \"mesh_prepared_query\" \"geo\"")
        .next()
        .unwrap();
    other.write(&addr, web_only);
    other
        .must(&["import", "mesh_prepared_query.web", &new_id])
        .await;
    let r = other.plan().await;
    assert_eq!(r.code, 0, "an imported query plans no changes:\n{}", r.out);

    let r = tf.run(&["destroy", "-auto-approve", "-input=false"]).await;
    assert_eq!(r.code, 0, "{}", r.out);
    assert_eq!(
        fetch_json(&c, agent.url("/v1/query")).await,
        serde_json::json!([])
    );
}

fn prefix_config(subkeys: &str) -> String {
    format!(
        r#"resource "mesh_key_prefix" "app" {{
  path_prefix = "app/config/"
  subkeys = {{
{subkeys}
  }}
}}
"#
    )
}

async fn keys_under(c: &reqwest::Client, agent: &mesh_testkit::TestAgent) -> Vec<(String, String)> {
    use base64::Engine;
    let r = c
        .get(agent.url("/v1/kv/app/config/?recurse"))
        .send()
        .await
        .unwrap();
    if r.status() == 404 {
        return Vec::new();
    }
    let list: Value = r.json().await.unwrap();
    list.as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let v = base64::engine::general_purpose::STANDARD
                .decode(e["Value"].as_str().unwrap_or_default())
                .unwrap();
            (
                e["Key"].as_str().unwrap().to_string(),
                String::from_utf8(v).unwrap(),
            )
        })
        .collect()
}

#[tokio::test]
async fn a_key_prefix_owns_its_keys_and_removes_undeclared_ones() {
    terraform();
    let root = tempfile::tempdir().unwrap();
    let agent = crate::dev_agent("tfkp", &root.path().join("data")).await;
    let addr = agent.http.to_string();
    let c = http();
    let pair = |k: &str, v: &str| (k.to_string(), v.to_string());
    let tf = Tf::new(root.path(), "prefix");
    tf.write(
        &addr,
        &prefix_config(
            r#"    "limit" = "100"
    "feature/new" = "on""#,
        ),
    );
    let r = tf.apply().await;
    assert_eq!(r.code, 0, "{}", r.out);
    assert_eq!(
        keys_under(&c, &agent).await,
        vec![
            pair("app/config/feature/new", "on"),
            pair("app/config/limit", "100")
        ]
    );
    let r = tf.plan().await;
    assert_eq!(r.code, 0, "a fresh apply plans no changes:\n{}", r.out);

    // A key added by hand under the prefix is drift: the next apply removes it.
    let r = c
        .put(agent.url("/v1/kv/app/config/stray"))
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = tf.plan().await;
    assert_eq!(r.code, 2, "the stray key is planned away:\n{}", r.out);
    tf.write(&addr, &prefix_config(r#"    "limit" = "200""#));
    let r = tf.apply().await;
    assert_eq!(r.code, 0, "{}", r.out);
    assert_eq!(
        keys_under(&c, &agent).await,
        vec![pair("app/config/limit", "200")]
    );

    // Too many subkeys for one transaction: refused at plan, nothing written.
    let many: String = (0..128)
        .map(|i| format!("    \"k{i}\" = \"v\"\n"))
        .collect();
    tf.write(&addr, &prefix_config(&many));
    let r = tf.plan().await;
    assert_eq!(r.code, 1, "{}", r.out);
    assert!(r.out.contains("Too many subkeys"), "{}", r.out);
    assert_eq!(
        keys_under(&c, &agent).await,
        vec![pair("app/config/limit", "200")]
    );

    // Import, then destroy removes the whole tree.
    let other = Tf::new(root.path(), "prefix-imported");
    other.write(&addr, &prefix_config(r#"    "limit" = "200""#));
    other
        .must(&["import", "mesh_key_prefix.app", "app/config/"])
        .await;
    let r = other.plan().await;
    assert_eq!(r.code, 0, "an imported prefix plans no changes:\n{}", r.out);
    let r = other
        .run(&["destroy", "-auto-approve", "-input=false"])
        .await;
    assert_eq!(r.code, 0, "{}", r.out);
    assert!(keys_under(&c, &agent).await.is_empty());
}

fn keys_config(blocks: &[(&str, &str, bool)]) -> String {
    let body: String = blocks
        .iter()
        .map(|(path, value, delete)| {
            format!("  key {{\n    path   = \"{path}\"\n    value  = \"{value}\"\n    delete = {delete}\n  }}\n")
        })
        .collect();
    format!("resource \"mesh_keys\" \"app\" {{\n{body}}}\n")
}

#[tokio::test]
async fn mesh_keys_write_together_repair_drift_and_delete_only_what_is_marked() {
    terraform();
    let root = tempfile::tempdir().unwrap();
    let agent = crate::dev_agent("tfkeys", &root.path().join("data")).await;
    let addr = agent.http.to_string();
    let c = http();
    let pair = |k: &str, v: &str| (k.to_string(), v.to_string());
    let tf = Tf::new(root.path(), "keys");
    tf.write(
        &addr,
        &keys_config(&[
            ("app/config/limit", "100", false),
            ("app/config/mode", "fast", true),
        ]),
    );
    let r = tf.apply().await;
    assert_eq!(r.code, 0, "{}", r.out);
    assert_eq!(
        keys_under(&c, &agent).await,
        vec![
            pair("app/config/limit", "100"),
            pair("app/config/mode", "fast")
        ]
    );
    let r = tf.plan().await;
    assert_eq!(r.code, 0, "a fresh apply plans no changes:\n{}", r.out);

    // A value changed by hand, and a key deleted by hand: drift, repaired.
    let put = c
        .put(agent.url("/v1/kv/app/config/limit"))
        .body("7")
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), 200);
    let del = c
        .delete(agent.url("/v1/kv/app/config/mode"))
        .send()
        .await
        .unwrap();
    assert_eq!(del.status(), 200);
    // A key nobody declared is not this resource's.
    let put = c
        .put(agent.url("/v1/kv/app/config/other"))
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), 200);
    let r = tf.plan().await;
    assert_eq!(r.code, 2, "drift is planned back:\n{}", r.out);
    let r = tf.apply().await;
    assert_eq!(r.code, 0, "{}", r.out);
    assert_eq!(
        keys_under(&c, &agent).await,
        vec![
            pair("app/config/limit", "100"),
            pair("app/config/mode", "fast"),
            pair("app/config/other", "x")
        ]
    );

    // Dropping keys: the one marked `delete` goes, the other stays.
    tf.write(&addr, &keys_config(&[("app/config/new", "1", true)]));
    let r = tf.apply().await;
    assert_eq!(r.code, 0, "{}", r.out);
    assert_eq!(
        keys_under(&c, &agent).await,
        vec![
            pair("app/config/limit", "100"),
            pair("app/config/new", "1"),
            pair("app/config/other", "x")
        ]
    );

    // A key declared twice is refused at plan.
    tf.write(
        &addr,
        &keys_config(&[("app/config/new", "1", true), ("app/config/new", "2", true)]),
    );
    let r = tf.plan().await;
    assert_eq!(r.code, 1, "{}", r.out);
    assert!(r.out.contains("Duplicate key"), "{}", r.out);

    // Import by paths; destroy deletes only keys marked `delete`.
    let other = Tf::new(root.path(), "keys-imported");
    other.write(&addr, &keys_config(&[("app/config/limit", "100", false)]));
    other
        .must(&["import", "mesh_keys.app", "app/config/limit"])
        .await;
    let r = other.plan().await;
    assert_eq!(r.code, 0, "an imported key plans no changes:\n{}", r.out);
    tf.write(&addr, &keys_config(&[("app/config/new", "1", true)]));
    let r = tf.run(&["destroy", "-auto-approve", "-input=false"]).await;
    assert_eq!(r.code, 0, "{}", r.out);
    assert_eq!(
        keys_under(&c, &agent).await,
        vec![
            pair("app/config/limit", "100"),
            pair("app/config/other", "x")
        ]
    );
}
