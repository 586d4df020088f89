//! Intentions over HTTP and the CLI: exact CRUD, precedence, check/match,
//! the service-intentions config entry view, owners, and bad input.

use serde_json::{json, Value};

use crate::http;

#[tokio::test]
async fn intentions_crud_precedence_and_config_entry_view() {
    let dir = tempfile::tempdir().unwrap();
    let a = crate::dev_agent("node1", dir.path()).await;
    let c = http();
    let exact = |s: &str, d: &str| {
        a.url(&format!(
            "/v1/connect/intentions/exact?source={s}&destination={d}"
        ))
    };

    // Lowercase keys as python-consul sends them.
    let r = c
        .put(exact("web", "db"))
        .json(&json!({"action": "allow", "description": "web reads"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    let r = c
        .put(exact("*", "db"))
        .json(&json!({"Action": "deny"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    let got: Value = c
        .get(exact("web", "db"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(got["Action"], "allow");
    assert_eq!(got["Precedence"], 9);
    assert_eq!(got["Description"], "web reads");
    let id = got["ID"].as_str().unwrap().to_string();
    assert_eq!(id.len(), 36);

    // Precedence: web=>db exact allow beats *=>db deny; api falls to *=>db.
    let check = |s: &str| {
        a.url(&format!(
            "/v1/connect/intentions/check?source={s}&destination=db"
        ))
    };
    let v: Value = c
        .get(check("web"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["Allowed"], true);
    let v: Value = c
        .get(check("api"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["Allowed"], false);
    assert!(v["Reason"].as_str().unwrap().contains("* => db"), "{v}");

    let m: Value = c
        .get(a.url("/v1/connect/intentions/match?by=destination&name=db"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let order: Vec<&str> = m["db"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["SourceName"].as_str().unwrap())
        .collect();
    assert_eq!(order, ["web", "*"]);

    // The same data as a service-intentions config entry, and back.
    let entry: Value = c
        .get(a.url("/v1/config/service-intentions/db"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(entry["Sources"].as_array().unwrap().len(), 2);
    let r = c
        .put(a.url("/v1/config"))
        .json(&json!({"Kind": "service-intentions", "Name": "db", "Sources": [
            {"Name": "web", "Action": "allow"},
            {"Name": "admin", "Permissions": [{"Action": "allow", "HTTP": {"PathPrefix": "/admin", "Methods": ["GET"]}}]}
        ]}))
        .send().await.unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    let list: Value = c
        .get(a.url("/v1/connect/intentions"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let names: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["SourceName"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["admin", "web"], "the entry replaced the set for db");
    // An intention with HTTP permissions denies an L4 check, as Consul's
    // `intention check` does (the proxy decides the same way on a tcp
    // listener); the L4 allow beside it still allows.
    let l7 = crate::fetch_json(&c, check("admin")).await;
    assert_eq!(l7["Allowed"], false, "{l7}");
    assert!(
        l7["Reason"].as_str().unwrap().contains("HTTP permissions"),
        "{l7}"
    );
    let l4 = crate::fetch_json(&c, check("web")).await;
    assert_eq!(l4["Allowed"], true, "{l4}");
    let web: Value = c
        .get(exact("web", "db"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(web["ID"], id.as_str(), "an update keeps the intention's ID");
    let admin: Value = c
        .get(exact("admin", "db"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(admin["Permissions"][0]["HTTP"]["PathPrefix"], "/admin");

    // Owners: a terraform-owned intention refuses an api write, names its owner.
    let r = c
        .put(exact("batch", "db"))
        .header("X-Mesh-Owner", "terraform")
        .json(&json!({"Action": "deny"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = c
        .put(exact("batch", "db"))
        .json(&json!({"Action": "allow"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 409);
    assert!(r.text().await.unwrap().contains("terraform"));
    let r = c
        .delete(a.url("/v1/config/service-intentions/db"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        409,
        "deleting the entry would delete terraform's intention"
    );
    assert_eq!(
        c.get(a.url("/v1/connect/intentions"))
            .send()
            .await
            .unwrap()
            .json::<Value>()
            .await
            .unwrap()
            .as_array()
            .unwrap()
            .len(),
        3
    );

    // Bad input: 400 naming what, and nothing stored.
    for body in [
        json!({"Action": "permit"}),
        json!({}),
        json!({"Action": "allow", "Permissions": [{"Action": "allow"}]}),
        json!({"Permissions": [{"Action": "allow", "HTTP": {"PathExact": "no-slash"}}]}),
    ] {
        let r = c.put(exact("bad", "db")).json(&body).send().await.unwrap();
        assert_eq!(r.status(), 400, "{body}");
    }
    let r = c
        .put(a.url("/v1/connect/intentions/exact?source=bad"))
        .json(&json!({"Action": "allow"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("destination"));
    assert_eq!(
        c.get(exact("bad", "db")).send().await.unwrap().status(),
        404
    );

    // Agent authorize by SPIFFE ID.
    let auth = |uri: &str| json!({"Target": "db", "ClientCertURI": uri});
    let v: Value = c
        .post(a.url("/v1/agent/connect/authorize"))
        .json(&auth("spiffe://x.consul/ns/default/dc/dc1/svc/web"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["Authorized"], true, "{v}");
    let v: Value = c
        .post(a.url("/v1/agent/connect/authorize"))
        .json(&auth("spiffe://x.consul/ns/default/dc/dc1/svc/batch"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["Authorized"], false);
    let r = c
        .post(a.url("/v1/agent/connect/authorize"))
        .json(&auth("not-a-uri"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);

    // Delete by pair; legacy by ID.
    assert_eq!(
        c.delete(exact("admin", "db"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        c.get(exact("admin", "db")).send().await.unwrap().status(),
        404
    );
    assert_eq!(
        c.delete(a.url(&format!("/v1/connect/intentions/{id}")))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        c.get(exact("web", "db")).send().await.unwrap().status(),
        404
    );
}

#[tokio::test]
async fn intention_cli() {
    let dir = tempfile::tempdir().unwrap();
    let a = crate::dev_agent("node1", dir.path()).await;

    let (code, out) = crate::mesh_cli(&a, &["intention", "create", "-deny", "web", "db"]).await;
    assert_eq!(code, 0, "{out}");
    let (code, out) = crate::mesh_cli(&a, &["intention", "create", "web", "db"]).await;
    assert_ne!(code, 0);
    assert!(out.contains("already exists"), "{out}");
    let (code, out) = crate::mesh_cli(&a, &["intention", "check", "web", "db"]).await;
    assert_eq!(code, 2, "denied exits 2: {out}");
    assert!(out.contains("Denied"), "{out}");
    let (code, _) = crate::mesh_cli(
        &a,
        &[
            "intention",
            "create",
            "-allow",
            "-replace",
            "-meta",
            "team=core",
            "web",
            "db",
        ],
    )
    .await;
    assert_eq!(code, 0);
    let (code, out) = crate::mesh_cli(&a, &["intention", "check", "web", "db"]).await;
    assert_eq!(code, 0, "{out}");
    let (_, out) = crate::mesh_cli(&a, &["intention", "get", "web", "db"]).await;
    assert!(
        out.contains("allow") && out.contains("Meta[team]:") && out.contains("core"),
        "{out}"
    );
    crate::mesh_cli(&a, &["intention", "create", "-deny", "*", "db"]).await;
    let (_, out) = crate::mesh_cli(&a, &["intention", "list"]).await;
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines[0].starts_with("Source"), "{out}");
    assert!(
        lines[1].starts_with("web") && lines[2].starts_with('*'),
        "precedence order: {out}"
    );
    let (_, out) = crate::mesh_cli(&a, &["intention", "match", "db", "-format=json"]).await;
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v.as_array().unwrap().len(), 2);
    let (code, _) = crate::mesh_cli(&a, &["intention", "delete", "web", "db"]).await;
    assert_eq!(code, 0);
    let (code, _) = crate::mesh_cli(&a, &["intention", "check", "web", "db"]).await;
    assert_eq!(code, 2, "*=>db deny applies after the exact one is gone");
}
