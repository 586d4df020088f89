//! ACL roles, service and node identities, templated policies, token
//! expiry, JWT auth methods with binding rules, login and logout, under
//! default deny against a real agent; bodies in other key cases.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use mesh_testkit::{eventually, TestAgent};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::acl::{call, token_with_policy, MANAGEMENT};
use crate::api_surface::default_deny_agent;
use crate::mesh_cli;

async fn ok(a: &TestAgent, method: Method, path: &str, body: Value) -> Value {
    let (st, text) = call(method, a, path, Some(MANAGEMENT), Some(body)).await;
    assert_eq!(st, StatusCode::OK, "{path}: {text}");
    serde_json::from_str(&text).unwrap()
}

async fn status(
    a: &TestAgent,
    method: Method,
    path: &str,
    token: &str,
    body: Option<Value>,
) -> (StatusCode, String) {
    call(method, a, path, Some(token), body).await
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

#[tokio::test]
async fn roles_identities_templates_and_expiry_decide_what_a_token_may_do() {
    let dir = tempfile::tempdir().unwrap();
    let a = default_deny_agent("roles1", dir.path()).await;
    ok(
        &a,
        Method::PUT,
        "/v1/acl/policy",
        json!({"Name": "app-kv", "Rules": "key_prefix \"app/\" { policy = \"write\" }"}),
    )
    .await;
    // A role in lower-case keys, linking the policy by name and a service identity.
    let role = ok(
        &a,
        Method::PUT,
        "/v1/acl/role",
        json!({
            "name": "app", "policies": [{"name": "app-kv"}],
            "serviceidentities": [{"servicename": "web"}]
        }),
    )
    .await;
    assert_eq!(role["Policies"][0]["Name"], "app-kv", "{role}");
    assert_eq!(role["ServiceIdentities"][0]["ServiceName"], "web", "{role}");
    let by_name = ok(&a, Method::GET, "/v1/acl/role/name/app", Value::Null).await;
    assert_eq!(by_name["ID"], role["ID"]);
    let (st, text) = status(
        &a,
        Method::PUT,
        "/v1/acl/role",
        MANAGEMENT,
        Some(json!({"Name": "app"})),
    )
    .await;
    assert_eq!(st, 400, "a second role named app: {text}");
    let (st, text) = status(
        &a,
        Method::PUT,
        "/v1/acl/role",
        MANAGEMENT,
        Some(json!({"Name": "x", "Policies": [{"Name": "nope"}]})),
    )
    .await;
    assert!(st == 400 && text.contains("nope"), "{st} {text}");

    // A token in upper-case keys: the role, a node identity, a template.
    let token = ok(&a, Method::PUT, "/v1/acl/token", json!({
        "ROLES": [{"NAME": "app"}],
        "NODEIDENTITIES": [{"NODENAME": "edge", "DATACENTER": "dc1"}],
        "TEMPLATEDPOLICIES": [{"TEMPLATENAME": "builtin/service", "TEMPLATEVARIABLES": {"NAME": "api"}}],
        "EXPIRATIONTTL": "1h"
    })).await;
    let secret = token["SecretID"].as_str().unwrap().to_string();
    assert_eq!(token["Roles"][0]["Name"], "app", "{token}");
    assert_eq!(token["NodeIdentities"][0]["NodeName"], "edge", "{token}");
    assert_eq!(
        token["TemplatedPolicies"][0]["TemplateVariables"]["Name"], "api",
        "{token}"
    );
    assert!(
        token["ExpirationTime"]
            .as_str()
            .is_some_and(|t| t.starts_with("20")),
        "{token}"
    );

    // What it may do comes from every link.
    let kv = |key: &str| format!("/v1/kv/{key}");
    assert_eq!(
        status(&a, Method::PUT, &kv("app/x"), &secret, None).await.0,
        200,
        "role policy"
    );
    assert_eq!(
        status(&a, Method::PUT, &kv("other"), &secret, None).await.0,
        403
    );
    let reg = |node: &str, svc: &str| json!({"Node": node, "Address": "127.0.0.9", "Service": {"Service": svc}});
    assert_eq!(
        status(
            &a,
            Method::PUT,
            "/v1/catalog/register",
            &secret,
            Some(reg("edge", "web"))
        )
        .await
        .0,
        200,
        "node and service identities"
    );
    assert_eq!(
        status(
            &a,
            Method::PUT,
            "/v1/catalog/register",
            &secret,
            Some(reg("edge", "api-sidecar-proxy"))
        )
        .await
        .0,
        200,
        "templated policy"
    );
    assert_eq!(
        status(
            &a,
            Method::PUT,
            "/v1/catalog/register",
            &secret,
            Some(reg("edge", "db"))
        )
        .await
        .0,
        403
    );
    assert_eq!(
        status(
            &a,
            Method::PUT,
            "/v1/catalog/register",
            &secret,
            Some(reg("other", "web"))
        )
        .await
        .0,
        403
    );
    // Deleting the role takes its grants away at once.
    ok(
        &a,
        Method::DELETE,
        &format!("/v1/acl/role/{}", role["ID"].as_str().unwrap()),
        Value::Null,
    )
    .await;
    assert_eq!(
        status(&a, Method::PUT, &kv("app/y"), &secret, None).await.0,
        403
    );

    // Expiry: out-of-range TTLs refused; a change of expiry refused.
    for bad in ["10s", "48h", "soon"] {
        let (st, text) = status(
            &a,
            Method::PUT,
            "/v1/acl/token",
            MANAGEMENT,
            Some(json!({"ExpirationTTL": bad})),
        )
        .await;
        assert!(
            st == 400 && text.contains("ExpirationTTL"),
            "{bad}: {st} {text}"
        );
    }
    let accessor = token["AccessorID"].as_str().unwrap();
    let (st, text) = status(
        &a,
        Method::PUT,
        &format!("/v1/acl/token/{accessor}"),
        MANAGEMENT,
        Some(json!({"ExpirationTTL": "2h"})),
    )
    .await;
    assert!(
        st == 400 && text.contains("expiration cannot be changed"),
        "{st} {text}"
    );
    // A token that expires in two seconds stops working, then is deleted.
    let at = time::OffsetDateTime::from_unix_timestamp((now_secs() + 2) as i64)
        .unwrap()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    let short = ok(
        &a,
        Method::PUT,
        "/v1/acl/token",
        json!({"Policies": [{"Name": "app-kv"}], "ExpirationTime": at}),
    )
    .await;
    let short_secret = short["SecretID"].as_str().unwrap().to_string();
    assert_eq!(
        status(&a, Method::PUT, &kv("app/z"), &short_secret, None)
            .await
            .0,
        200
    );
    eventually("the token to expire", Duration::from_secs(10), || async {
        let (st, text) = status(&a, Method::PUT, &kv("app/z"), &short_secret, None).await;
        (st == 403 && text.contains("ACL not found")).then_some(())
    })
    .await;
    let short_accessor = short["AccessorID"].as_str().unwrap().to_string();
    eventually(
        "the leader to delete the expired token",
        Duration::from_secs(20),
        || async {
            let (st, _) = status(
                &a,
                Method::GET,
                &format!("/v1/acl/token/{short_accessor}"),
                MANAGEMENT,
                None,
            )
            .await;
            (st == 404).then_some(())
        },
    )
    .await;

    // Templates are listed, read and previewed.
    let all = ok(&a, Method::GET, "/v1/acl/templated-policies", Value::Null).await;
    assert!(all.get("builtin/dns").is_some(), "{all}");
    let preview = ok(
        &a,
        Method::POST,
        "/v1/acl/templated-policy/preview/builtin/node",
        json!({"name": "n9"}),
    )
    .await;
    assert!(
        preview["Rules"].as_str().unwrap().contains("node \"n9\""),
        "{preview}"
    );
    let (st, _) = status(
        &a,
        Method::POST,
        "/v1/acl/templated-policy/preview/builtin/node",
        MANAGEMENT,
        Some(json!({})),
    )
    .await;
    assert_eq!(st, 400, "the Name variable is required");

    // Writing roles needs acl:write.
    let reader = token_with_policy(&a, "acl-reader", "acl = \"read\"").await;
    assert_eq!(
        status(&a, Method::GET, "/v1/acl/roles", &reader, None)
            .await
            .0,
        200
    );
    assert_eq!(
        status(
            &a,
            Method::PUT,
            "/v1/acl/role",
            &reader,
            Some(json!({"Name": "r2"}))
        )
        .await
        .0,
        403
    );

    // The CLI: a role and a token with identities and a TTL.
    let (code, text) = mesh_cli_token(
        &a,
        &[
            "acl",
            "role",
            "create",
            "-name",
            "ops",
            "-service-identity",
            "ops:dc1",
            "-node-identity",
            "n1:dc1",
        ],
    )
    .await;
    assert_eq!(code, 0, "{text}");
    let (code, text) = mesh_cli_token(
        &a,
        &[
            "acl",
            "token",
            "create",
            "-role-name",
            "ops",
            "-templated-policy",
            "builtin/service",
            "-var",
            "name:api",
            "-expires-ttl",
            "30m",
        ],
    )
    .await;
    assert_eq!(code, 0, "{text}");
    assert!(
        text.contains("Roles: ops")
            && text.contains("Templated Policies: builtin/service")
            && text.contains("Expiration:"),
        "{text}"
    );
}

async fn login(a: &TestAgent, bearer: String) -> (StatusCode, String) {
    let body = json!({"AuthMethod": "idp", "BearerToken": bearer, "Meta": {"pod": "p1"}});
    call(Method::POST, a, "/v1/acl/login", None, Some(body)).await
}

async fn mesh_cli_token(a: &TestAgent, args: &[&str]) -> (i32, String) {
    let mut all: Vec<&str> = args.to_vec();
    all.extend(["-token", MANAGEMENT]);
    mesh_cli(a, &all).await
}

/// An ES256 key pair: (public key PEM, encoding key).
fn signing_key() -> (String, jsonwebtoken::EncodingKey) {
    let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let enc = jsonwebtoken::EncodingKey::from_ec_pem(pair.serialize_pem().as_bytes()).unwrap();
    (pair.public_key_pem(), enc)
}

fn jwt(key: &jsonwebtoken::EncodingKey, claims: Value) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256),
        &claims,
        key,
    )
    .unwrap()
}

#[tokio::test]
async fn a_jwt_logs_in_through_binding_rules_and_logs_out() {
    let dir = tempfile::tempdir().unwrap();
    let a = default_deny_agent("login1", dir.path()).await;
    let (public, key) = signing_key();
    let (_, other_key) = signing_key();
    ok(
        &a,
        Method::PUT,
        "/v1/acl/policy",
        json!({"Name": "team-kv", "Rules": "key_prefix \"team/\" { policy = \"write\" }"}),
    )
    .await;
    ok(
        &a,
        Method::PUT,
        "/v1/acl/role",
        json!({"Name": "team", "Policies": [{"Name": "team-kv"}]}),
    )
    .await;

    // Bad methods are refused, each naming the problem.
    let config = json!({
        "JWTValidationPubKeys": [public], "JWTSupportedAlgs": ["ES256"],
        "BoundIssuer": "https://idp.test", "BoundAudiences": ["mesh"],
        "ClaimMappings": {"service": "svc"}, "ListClaimMappings": {"groups": "groups"}
    });
    let method = |config: Value| json!({"Name": "idp", "Type": "jwt", "MaxTokenTTL": "10m", "Config": config});
    let bad_cases = [
        (
            json!({"Name": "idp", "Type": "kubernetes", "Config": config.clone()}),
            "kubernetes",
        ),
        (
            method(json!({"JWKSURL": "https://idp.test/keys"})),
            "JWKSURL",
        ),
        (
            method(json!({"JWTValidationPubKeys": ["not a key"]})),
            "JWTValidationPubKeys[0]",
        ),
        (
            method(json!({"JWTValidationPubKeys": [public], "JWTSupportedAlgs": ["HS256"]})),
            "HS256",
        ),
    ];
    for (body, says) in bad_cases {
        let (st, text) = status(
            &a,
            Method::PUT,
            "/v1/acl/auth-method",
            MANAGEMENT,
            Some(body),
        )
        .await;
        assert!(st == 400 && text.contains(says), "{says}: {st} {text}");
    }
    // In lower-case keys (Config's own keys as Consul spells them).
    let m = ok(
        &a,
        Method::PUT,
        "/v1/acl/auth-method",
        json!({"name": "idp", "type": "jwt", "maxtokenttl": "10m", "config": config}),
    )
    .await;
    assert_eq!(m["MaxTokenTTL"], "10m0s", "{m}");

    let rule = |body: Value| async {
        status(
            &a,
            Method::PUT,
            "/v1/acl/binding-rule",
            MANAGEMENT,
            Some(body),
        )
        .await
    };
    let (st, text) =
        rule(json!({"AuthMethod": "idp", "BindType": "service", "BindName": "${value.nope}"}))
            .await;
    assert!(st == 400 && text.contains("value.nope"), "{st} {text}");
    let (st, text) = rule(json!({"AuthMethod": "idp", "BindType": "service", "BindName": "x", "Selector": "value.svc =="})).await;
    assert!(st == 400 && text.contains("Selector"), "{st} {text}");
    let (st, _) = rule(json!({"AuthMethod": "idp", "BindType": "service", "BindName": "${value.svc}", "Selector": "\"admins\" in list.groups"})).await;
    assert_eq!(st, 200);
    let (st, _) = rule(json!({"authmethod": "idp", "bindtype": "role", "bindname": "team", "selector": "value.svc == \"web\""})).await;
    assert_eq!(st, 200);
    let rules = ok(
        &a,
        Method::GET,
        "/v1/acl/binding-rules?authmethod=idp",
        Value::Null,
    )
    .await;
    assert_eq!(rules.as_array().unwrap().len(), 2, "{rules}");

    let claims = |svc: &str, groups: Value, iss: &str, exp: u64| json!({"iss": iss, "aud": "mesh", "sub": "someone", "exp": exp, "service": svc, "groups": groups});
    let later = now_secs() + 600;

    // Refused: wrong issuer, expired, another key, no rule matching.
    for (bearer, says) in [
        (
            jwt(
                &key,
                claims("web", json!(["admins"]), "https://evil.test", later),
            ),
            "refused",
        ),
        (
            jwt(
                &key,
                claims(
                    "web",
                    json!(["admins"]),
                    "https://idp.test",
                    now_secs() - 600,
                ),
            ),
            "refused",
        ),
        (
            jwt(
                &other_key,
                claims("web", json!(["admins"]), "https://idp.test", later),
            ),
            "refused",
        ),
        (
            jwt(
                &key,
                claims("db", json!(["devs"]), "https://idp.test", later),
            ),
            "no binding rule",
        ),
        ("not.a.jwt".to_string(), "refused"),
    ] {
        let (st, text) = login(&a, bearer).await;
        assert!(st == 403 && text.contains(says), "{says}: {st} {text}");
    }
    // Accepted: both rules match.
    let (st, text) = login(
        &a,
        jwt(
            &key,
            claims("web", json!(["admins", "devs"]), "https://idp.test", later),
        ),
    )
    .await;
    assert_eq!(st, 200, "{text}");
    let token: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(token["AuthMethod"], "idp", "{token}");
    assert_eq!(
        token["ServiceIdentities"][0]["ServiceName"], "web",
        "{token}"
    );
    assert_eq!(token["Roles"][0]["Name"], "team", "{token}");
    assert!(
        token["Description"].as_str().unwrap().contains("p1"),
        "{token}"
    );
    assert!(
        token["ExpirationTime"].is_string(),
        "MaxTokenTTL sets its expiry: {token}"
    );
    let secret = token["SecretID"].as_str().unwrap().to_string();
    assert_eq!(
        status(&a, Method::PUT, "/v1/kv/team/a", &secret, None)
            .await
            .0,
        200
    );
    assert_eq!(
        status(&a, Method::PUT, "/v1/kv/other", &secret, None)
            .await
            .0,
        403
    );
    let listed = ok(
        &a,
        Method::GET,
        "/v1/acl/tokens?authmethod=idp",
        Value::Null,
    )
    .await;
    assert_eq!(listed.as_array().unwrap().len(), 1, "{listed}");
    let tokens_for = |service: &'static str| {
        let a = &a;
        async move {
            let path = format!("/v1/acl/tokens?servicename={service}");
            ok(a, Method::GET, &path, Value::Null)
                .await
                .as_array()
                .unwrap()
                .len()
        }
    };
    assert_eq!(tokens_for("web").await, 1, "the login's service identity");
    assert_eq!(tokens_for("db").await, 0);

    // Logout ends only login tokens.
    let (st, _) = status(&a, Method::POST, "/v1/acl/logout", MANAGEMENT, None).await;
    assert_eq!(st, 403);
    let (st, text) = status(&a, Method::POST, "/v1/acl/logout", &secret, None).await;
    assert_eq!(st, 200, "{text}");
    assert_eq!(
        status(&a, Method::PUT, "/v1/kv/team/b", &secret, None)
            .await
            .0,
        403
    );

    // The CLI logs in and out the same way.
    let bearer = dir.path().join("jwt");
    let sink = dir.path().join("token");
    std::fs::write(
        &bearer,
        jwt(
            &key,
            claims("web", json!(["admins"]), "https://idp.test", later),
        ),
    )
    .unwrap();
    let (code, text) = mesh_cli(
        &a,
        &[
            "login",
            "-method",
            "idp",
            "-bearer-token-file",
            bearer.to_str().unwrap(),
            "-token-sink-file",
            sink.to_str().unwrap(),
        ],
    )
    .await;
    assert_eq!(code, 0, "{text}");
    let cli_secret = std::fs::read_to_string(&sink).unwrap();
    assert_eq!(
        status(&a, Method::PUT, "/v1/kv/team/c", &cli_secret, None)
            .await
            .0,
        200
    );
    let (code, text) = mesh_cli(&a, &["logout", "-token", &cli_secret]).await;
    assert_eq!(code, 0, "{text}");
    assert_eq!(
        status(&a, Method::PUT, "/v1/kv/team/d", &cli_secret, None)
            .await
            .0,
        403
    );

    // Deleting the method deletes its rules and the tokens its logins made.
    let (st, text) = login(
        &a,
        jwt(
            &key,
            claims("web", json!(["admins"]), "https://idp.test", later),
        ),
    )
    .await;
    assert_eq!(st, 200, "{text}");
    ok(&a, Method::DELETE, "/v1/acl/auth-method/idp", Value::Null).await;
    let listed = ok(
        &a,
        Method::GET,
        "/v1/acl/tokens?authmethod=idp",
        Value::Null,
    )
    .await;
    assert_eq!(listed.as_array().unwrap().len(), 0, "{listed}");
    let rules = ok(&a, Method::GET, "/v1/acl/binding-rules", Value::Null).await;
    assert_eq!(rules.as_array().unwrap().len(), 0, "{rules}");
}
