//! `/v1/txn` over nodes, services, checks and sessions on a real agent:
//! all or nothing with KV, Consul's result shapes, cas verbs, and the
//! per-operation ACL checks under default deny (bodies in other key cases).

use mesh_testkit::TestAgent;
use reqwest::Method;
use serde_json::{json, Value};

use crate::acl::{call, token_with_policy, MANAGEMENT};
use crate::api_surface::default_deny_agent;

async fn txn(agent: &TestAgent, token: Option<&str>, ops: Value) -> (u16, Value) {
    let (st, text) = call(Method::PUT, agent, "/v1/txn", token, Some(ops)).await;
    (
        st.as_u16(),
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

async fn get(agent: &TestAgent, path: &str) -> (u16, Value) {
    let (st, text) = call(Method::GET, agent, path, Some(MANAGEMENT), None).await;
    (
        st.as_u16(),
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

#[tokio::test]
async fn catalog_and_session_operations_commit_together_or_not_at_all() {
    let dir = tempfile::tempdir().unwrap();
    let agent = crate::dev_agent("txn", dir.path()).await;

    let (st, out) = txn(&agent, None, json!([
        {"Node": {"Verb": "set", "Node": {"Node": "ext1", "Address": "10.1.0.1", "Meta": {"rack": "r1"}}}},
        {"Service": {"Verb": "set", "Node": "ext1", "Service": {"ID": "api1", "Service": "api", "Port": 9090, "Tags": ["v1"]}}},
        {"Check": {"Verb": "set", "Check": {"Node": "ext1", "CheckID": "api1-alive", "Name": "alive", "Status": "passing", "ServiceID": "api1"}}},
        {"KV": {"Verb": "set", "Key": "api/version", "Value": "djE="}},
        {"Service": {"Verb": "get", "Node": "ext1", "Service": {"ID": "api1"}}},
    ])).await;
    assert_eq!(st, 200, "{out}");
    let results = out["Results"].as_array().unwrap();
    assert_eq!(results.len(), 5, "{out}");
    assert_eq!(results[0]["Node"]["Node"], "ext1");
    assert_eq!(results[0]["Node"]["Meta"]["rack"], "r1");
    assert_eq!(results[1]["Service"]["ID"], "api1");
    assert_eq!(results[2]["Check"]["CheckID"], "api1-alive");
    assert_eq!(results[2]["Check"]["Status"], "passing");
    assert_eq!(results[3]["KV"]["Key"], "api/version");
    assert_eq!(results[4]["Service"]["Port"], 9090);
    assert!(out["Errors"].is_null());
    let (_, healthy) = get(&agent, "/v1/health/service/api?passing").await;
    assert_eq!(healthy.as_array().unwrap().len(), 1, "{healthy}");
    let modify = results[1]["Service"]["ModifyIndex"].as_u64().unwrap();

    // A stale cas on the service refuses the whole transaction: the KV
    // write and the node change before it are not applied.
    let (st, out) = txn(&agent, None, json!([
        {"KV": {"Verb": "set", "Key": "api/version", "Value": "djI="}},
        {"Node": {"Verb": "set", "Node": {"Node": "ext1", "Address": "10.1.0.2"}}},
        {"Service": {"Verb": "cas", "Node": "ext1", "Service": {"ID": "api1", "Service": "api", "Port": 9191, "ModifyIndex": modify - 1}}},
    ])).await;
    assert_eq!(st, 409, "{out}");
    assert_eq!(out["Errors"][0]["OpIndex"], 2, "{out}");
    assert!(
        out["Errors"][0]["What"]
            .as_str()
            .unwrap()
            .contains("modify index"),
        "{out}"
    );
    let (_, kv) = get(&agent, "/v1/kv/api/version").await;
    assert_eq!(kv[0]["Value"], "djE=", "the KV write was rolled back");
    let (_, node) = get(&agent, "/v1/catalog/node/ext1").await;
    assert_eq!(
        node["Node"]["Address"], "10.1.0.1",
        "the node change was rolled back"
    );
    assert_eq!(node["Services"]["api1"]["Port"], 9090);

    // The right index applies; a session delete releases its lock.
    let (st, session) = call(
        Method::PUT,
        &agent,
        "/v1/session/create",
        None,
        Some(json!({"Name": "holder"})),
    )
    .await;
    assert_eq!(st, 200, "{session}");
    let sid = serde_json::from_str::<Value>(&session).unwrap()["ID"]
        .as_str()
        .unwrap()
        .to_string();
    let (st, text) = call(
        Method::PUT,
        &agent,
        &format!("/v1/kv/api/lock?acquire={sid}"),
        None,
        Some(json!("x")),
    )
    .await;
    assert_eq!((st.as_u16(), text.trim()), (200, "true"));
    let (st, out) = txn(&agent, None, json!([
        {"Service": {"Verb": "cas", "Node": "ext1", "Service": {"ID": "api1", "Service": "api", "Port": 9191, "ModifyIndex": modify}}},
        {"Check": {"Verb": "delete", "Check": {"Node": "ext1", "CheckID": "api1-alive"}}},
        {"Session": {"Verb": "delete", "Session": {"ID": sid}}},
    ])).await;
    assert_eq!(st, 200, "{out}");
    let (_, node) = get(&agent, "/v1/catalog/node/ext1").await;
    assert_eq!(node["Services"]["api1"]["Port"], 9191);
    let (_, checks) = get(&agent, "/v1/health/node/ext1").await;
    assert!(
        checks
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["CheckID"] != "api1-alive"),
        "{checks}"
    );
    let (_, lock) = get(&agent, "/v1/kv/api/lock").await;
    assert!(
        lock[0].get("Session").is_none_or(Value::is_null),
        "the lock was released: {lock}"
    );

    // Deleting the node takes its services with it.
    let (st, out) = txn(
        &agent,
        None,
        json!([{"Node": {"Verb": "delete", "Node": {"Node": "ext1"}}}]),
    )
    .await;
    assert_eq!(st, 200, "{out}");
    let (st, _) = get(&agent, "/v1/catalog/node/ext1").await;
    assert_eq!(st, 404);

    // Bad operations: a 400 naming the operation, nothing applied.
    for (ops, says) in [
        (
            json!([{"Node": {"Verb": "set", "Node": {"Node": "x"}}}]),
            "operation 0: Node.Address",
        ),
        (
            json!([{"KV": {"Verb": "set", "Key": "k"}}, {"Service": {"Verb": "set", "Service": {"Service": "s"}}}]),
            "operation 1: Service.Node",
        ),
        (
            json!([{"Check": {"Verb": "nope", "Check": {"Node": "n", "CheckID": "c"}}}]),
            "unknown verb",
        ),
        (
            json!([{"Session": {"Verb": "renew", "Session": {"ID": "x"}}}]),
            "only delete",
        ),
        (
            json!([{"KV": {"Verb": "get", "Key": "k"}, "Node": {"Verb": "get", "Node": {"Node": "n"}}}]),
            "exactly one",
        ),
        (json!([{"Nodes": {}}]), "unknown field"),
    ] {
        let (st, out) = txn(&agent, None, ops.clone()).await;
        assert_eq!(st, 400, "{ops}: {out}");
        assert!(out.to_string().contains(says), "{ops}: {out}");
    }
    let (st, _) = get(&agent, "/v1/kv/k").await;
    assert_eq!(st, 404);
}

#[tokio::test]
async fn each_catalog_operation_is_checked_under_default_deny() {
    let dir = tempfile::tempdir().unwrap();
    let agent = default_deny_agent("txnacl", dir.path()).await;
    let token = token_with_policy(
        &agent,
        "web-only",
        r#"node "ext1" { policy = "write" }
service "web" { policy = "write" }
key_prefix "web/" { policy = "write" }"#,
    )
    .await;
    // Lowercase keys, as python-consul sends them.
    let allowed = json!([
        {"node": {"verb": "set", "node": {"node": "ext1", "address": "10.2.0.1"}}},
        {"service": {"verb": "set", "node": "ext1", "service": {"id": "web1", "service": "web", "port": 80}}},
        {"kv": {"verb": "set", "key": "web/x", "value": "eA=="}},
    ]);
    let (st, out) = txn(&agent, None, allowed.clone()).await;
    assert_eq!(st, 403, "{out}");
    let (st, out) = txn(&agent, Some(&token), allowed).await;
    assert_eq!(st, 200, "{out}");

    // One operation beyond the token refuses them all, whatever its key case.
    for denied in [
        json!({"SERVICE": {"VERB": "set", "NODE": "ext1", "SERVICE": {"ID": "db1", "SERVICE": "db", "PORT": 5432}}}),
        json!({"Node": {"Verb": "set", "Node": {"Node": "ext2", "Address": "10.2.0.2"}}}),
        json!({"Check": {"Verb": "set", "Check": {"Node": "ext2", "CheckID": "c"}}}),
        json!({"Session": {"Verb": "delete", "Session": {"ID": "00000000-0000-0000-0000-000000000000"}}}),
    ] {
        let ops = json!([{"KV": {"Verb": "set", "Key": "web/y", "Value": "eQ=="}}, denied.clone()]);
        let (st, out) = txn(&agent, Some(&token), ops).await;
        assert_eq!(st, 403, "{denied}: {out}");
    }
    let (st, _) = get(&agent, "/v1/kv/web/y").await;
    assert_eq!(st, 404, "the refused transactions wrote nothing");
    let (_, node) = get(&agent, "/v1/catalog/node/ext1").await;
    assert!(node["Services"].get("db1").is_none(), "{node}");
    // Deleting web1 needs service:write on web, which it has.
    let (st, out) = txn(
        &agent,
        Some(&token),
        json!([
            {"Service": {"Verb": "delete", "Node": "ext1", "Service": {"ID": "web1"}}}
        ]),
    )
    .await;
    assert_eq!(st, 200, "{out}");
}
