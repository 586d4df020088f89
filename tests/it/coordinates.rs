//! Network coordinates: learned from real gossip probes between agent
//! processes, reported to the catalog, served by `/v1/coordinate/*`, used
//! by `?near=` sorting and `mesh rtt`; bad updates refused under default deny.

use std::time::Duration;

use mesh_testkit::{eventually, TestCluster};
use reqwest::Method;
use serde_json::{json, Value};

use crate::acl::{call, token_with_policy, MANAGEMENT};
use crate::api_surface::default_deny_agent;
use crate::{fetch_json, http, mesh_cli};

const WAIT: Duration = Duration::from_secs(30);

/// A coordinate `ms` milliseconds from the origin along the first axis.
fn at_ms(ms: f64) -> Value {
    let mut vec = vec![0.0; 8];
    vec[0] = ms / 1e3;
    json!({"Vec": vec, "Error": 0.2, "Adjustment": 0.0, "Height": 1.0e-5})
}

#[tokio::test]
async fn agents_learn_coordinates_by_gossip_and_near_sorts_by_them() {
    let cluster = TestCluster::start(3).await.unwrap();
    let a = &cluster.agents[0];

    // Every server reports a coordinate that real probes have refined: its
    // error drops below the starting 1.5 only after round-trip samples.
    eventually("three refined coordinates", WAIT, || async {
        let list: Value = crate::try_json(&http(), &a.url("/v1/coordinate/nodes")).await?;
        let list = list.as_array()?;
        let refined = list
            .iter()
            .filter(|e| e["Coord"]["Error"].as_f64().is_some_and(|err| err < 1.4))
            .count();
        (list.len() == 3 && refined == 3).then_some(())
    })
    .await;
    let me = fetch_json(&http(), a.url("/v1/agent/self")).await;
    assert_eq!(me["Coord"]["Vec"].as_array().unwrap().len(), 8, "{me}");
    let dcs = fetch_json(&http(), a.url("/v1/coordinate/datacenters")).await;
    assert_eq!(dcs[0]["Datacenter"], "dc1", "{dcs}");
    assert_eq!(dcs[0]["Coordinates"].as_array().unwrap().len(), 3, "{dcs}");
    assert!(dcs[0]["Coordinates"][0]["Node"]
        .as_str()
        .unwrap()
        .ends_with(".dc1"));

    // Three catalog nodes at known distances from the origin (where the
    // loopback agents sit, within a millisecond).
    for (node, ms) in [("far", 100.0), ("mid", 50.0), ("close", 10.0)] {
        let reg = json!({"Node": node, "Address": "127.0.0.9",
            "Service": {"Service": "web", "ID": format!("web-{node}")}});
        let resp = http()
            .put(a.url("/v1/catalog/register"))
            .json(&reg)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        let upd = json!({"Node": node, "Coord": at_ms(ms)});
        let resp = http()
            .put(a.url("/v1/coordinate/update"))
            .json(&upd)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "{}", resp.text().await.unwrap());
    }
    let one = fetch_json(&http(), a.url("/v1/coordinate/node/mid")).await;
    assert_eq!(one[0]["Coord"]["Vec"][0], 0.05, "{one}");
    let order = |v: &Value, pick: fn(&Value) -> &str| -> Vec<String> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|e| pick(e).to_string())
            .collect()
    };
    let catalog = fetch_json(&http(), a.url("/v1/catalog/service/web?near=_agent")).await;
    assert_eq!(
        order(&catalog, |e| e["Node"].as_str().unwrap()),
        ["close", "mid", "far"]
    );
    let health = fetch_json(&http(), a.url("/v1/health/service/web?near=far")).await;
    assert_eq!(
        order(&health, |e| e["Node"]["Node"].as_str().unwrap()),
        ["far", "mid", "close"]
    );
    let nodes = fetch_json(&http(), a.url("/v1/catalog/nodes?near=mid")).await;
    assert_eq!(nodes[0]["Node"], "mid", "{nodes}");
    // A prepared query sorts the same way.
    let q = json!({"Name": "web-near", "Service": {"Service": "web"}});
    let created = http()
        .post(a.url("/v1/query"))
        .json(&q)
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 200);
    let ran = fetch_json(&http(), a.url("/v1/query/web-near/execute?near=close")).await;
    assert_eq!(
        order(&ran["Nodes"], |e| e["Node"]["Node"].as_str().unwrap()),
        ["close", "mid", "far"]
    );

    // `mesh rtt`: 90 ms apart, plus both heights (10 µs each).
    let (code, text) = mesh_cli(a, &["rtt", "far", "close"]).await;
    assert_eq!(code, 0, "{text}");
    assert!(
        text.contains("Estimated far <-> close rtt: 90.020 ms (using LAN coordinates)"),
        "{text}"
    );
    // To this agent's own node: close to `close`'s 10 ms.
    let (code, text) = mesh_cli(a, &["rtt", "close"]).await;
    assert_eq!(code, 0, "{text}");
    let ms: f64 = text
        .split("rtt: ")
        .nth(1)
        .unwrap()
        .split(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!((8.0..12.0).contains(&ms), "{text}");
    let (code, text) = mesh_cli(a, &["rtt", "nowhere", "far"]).await;
    assert_ne!(code, 0);
    assert!(
        text.contains("Could not find a coordinate for node \"nowhere\""),
        "{text}"
    );

    // A node that leaves the catalog takes its coordinate with it.
    let resp = http()
        .put(a.url("/v1/catalog/deregister"))
        .json(&json!({"Node": "far"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let gone = http()
        .get(a.url("/v1/coordinate/node/far"))
        .send()
        .await
        .unwrap();
    assert_eq!(gone.status(), 404);
}

#[tokio::test]
async fn coordinate_updates_are_checked_and_follow_acls_under_default_deny() {
    let dir = tempfile::tempdir().unwrap();
    let a = default_deny_agent("coord1", dir.path()).await;
    let reg = json!({"Node": "edge", "Address": "127.0.0.9"});
    let (st, text) = call(
        Method::PUT,
        &a,
        "/v1/catalog/register",
        Some(MANAGEMENT),
        Some(reg),
    )
    .await;
    assert_eq!(st, 200, "{text}");
    let edge = token_with_policy(&a, "edge-writer", r#"node "edge" { policy = "write" }"#).await;
    let reader =
        token_with_policy(&a, "coord1-reader", r#"node "coord1" { policy = "read" }"#).await;

    // Other key cases decode to the same update.
    for body in [
        json!({"node": "edge", "coord": {"vec": [0.001,0,0,0,0,0,0,0], "error": 0.5, "adjustment": 0, "height": 0.0001}}),
        json!({"NODE": "edge", "COORD": {"VEC": [0.002,0,0,0,0,0,0,0], "ERROR": 0.5, "ADJUSTMENT": 0, "HEIGHT": 0.0001}}),
    ] {
        let (st, text) = call(
            Method::PUT,
            &a,
            "/v1/coordinate/update",
            None,
            Some(body.clone()),
        )
        .await;
        assert_eq!(st, 403, "anonymous: {text}");
        let (st, text) = call(
            Method::PUT,
            &a,
            "/v1/coordinate/update",
            Some(&edge),
            Some(body),
        )
        .await;
        assert_eq!(st, 200, "{text}");
    }
    let (st, text) = call(
        Method::GET,
        &a,
        "/v1/coordinate/node/edge",
        Some(MANAGEMENT),
        None,
    )
    .await;
    assert_eq!(st, 200, "{text}");
    assert!(
        text.contains("0.002"),
        "the upper-case body was stored: {text}"
    );

    // Writing another node's coordinate needs write on that node.
    let theirs = json!({"Node": "coord1", "Coord": at_ms(1.0)});
    let (st, _) = call(
        Method::PUT,
        &a,
        "/v1/coordinate/update",
        Some(&edge),
        Some(theirs),
    )
    .await;
    assert_eq!(st, 403);

    // Bad updates: each a 4xx naming the problem, nothing stored.
    let mut short = at_ms(1.0);
    short["Vec"] = json!([0.0, 0.0]);
    let mut huge = at_ms(1.0);
    huge["Height"] = json!(1.0e9);
    let cases = [
        (
            json!({"Node": "edge", "Coord": short}),
            400,
            "Coord.Vec has 2 dimensions; it must have 8",
        ),
        (
            json!({"Node": "edge", "Coord": huge}),
            400,
            "Coord.Height is not a finite number",
        ),
        (
            json!({"Node": "ghost", "Coord": at_ms(1.0)}),
            404,
            "not in the catalog",
        ),
        (
            json!({"Node": "edge", "Segment": "alpha", "Coord": at_ms(1.0)}),
            400,
            "Segment",
        ),
        (
            json!({"Node": "edge", "Coord": at_ms(1.0), "Extra": 1}),
            400,
            "extra",
        ),
    ];
    for (body, want, says) in cases {
        let (st, text) = call(
            Method::PUT,
            &a,
            "/v1/coordinate/update",
            Some(MANAGEMENT),
            Some(body.clone()),
        )
        .await;
        assert_eq!(st.as_u16(), want, "{body}: {text}");
        assert!(text.contains(says), "{body}: {text}");
    }
    let (_, text) = call(
        Method::GET,
        &a,
        "/v1/coordinate/node/edge",
        Some(MANAGEMENT),
        None,
    )
    .await;
    assert!(
        text.contains("0.002"),
        "still the last good coordinate: {text}"
    );

    // Reads are cut down to the nodes the caller may read.
    let listed = |token: String| {
        let a = &a;
        async move {
            let (st, text) = call(Method::GET, a, "/v1/coordinate/nodes", Some(&token), None).await;
            assert_eq!(st, 200, "{text}");
            let v: Value = serde_json::from_str(&text).unwrap();
            let mut names: Vec<String> = v
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e["Node"].as_str().unwrap().to_string())
                .collect();
            names.sort();
            names
        }
    };
    eventually("the agent's own coordinate", WAIT, || async {
        listed(MANAGEMENT.to_string())
            .await
            .contains(&"coord1".to_string())
            .then_some(())
    })
    .await;
    assert_eq!(listed(reader.clone()).await, ["coord1"]);
    assert_eq!(
        listed(edge.clone()).await,
        ["edge"],
        "node write implies read"
    );
    let (st, _) = call(
        Method::GET,
        &a,
        "/v1/coordinate/node/edge",
        Some(&reader),
        None,
    )
    .await;
    assert_eq!(st, 403);
}
