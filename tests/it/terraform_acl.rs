//! Acceptance: terraform manages ACL policies and tokens on a 3-server
//! cluster with ACLs on (default deny): the provider's `token` is used,
//! secrets stay out of state unless asked, rules are checked at plan time,
//! drift shows, everything imports, and destroy removes it all.

use mesh_testkit::TestCluster;
use reqwest::Method;
use serde_json::{json, Value};

use crate::acl::{acl_config, call, MANAGEMENT};
use crate::terraform::Tf;

const SECRET: &str = "2f0d1c7e-8a44-4b1e-9f7c-5d6a3b2e1f00";

fn declare(rules: &str) -> String {
    format!(
        r#"
resource "mesh_acl_policy" "app" {{
  name  = "app"
  rules = <<-RULES
{rules}
  RULES
}}

resource "mesh_acl_token" "app" {{
  description  = "app"
  policies     = [mesh_acl_policy.app.name]
  secret_id_wo = "{SECRET}"
}}

resource "mesh_acl_token" "ci" {{
  description  = "ci"
  policies     = [mesh_acl_policy.app.name]
  store_secret = true
}}
"#
    )
}

fn state(tf: &Tf) -> String {
    std::fs::read_to_string(tf.dir.join("terraform.tfstate")).unwrap_or_default()
}

fn resource_attr(state: &str, name: &str, attr: &str) -> Value {
    let v: Value = serde_json::from_str(state).unwrap();
    v["resources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == name && r["type"] == "mesh_acl_token")
        .map(|r| r["instances"][0]["attributes"][attr].clone())
        .unwrap_or(Value::Null)
}

#[tokio::test]
async fn terraform_manages_acl_policies_and_tokens_without_storing_secrets() {
    crate::terraform::terraform();
    let root = tempfile::tempdir().unwrap();
    let conf = acl_config(root.path());
    let flag = format!("-config-file={}", conf.display());
    let cluster = TestCluster::start_with(3, |_, spec| spec.extra.push(flag.clone()))
        .await
        .unwrap();
    let (s0, s2) = (&cluster.agents[0], &cluster.agents[2]);
    let addr = s2.http.to_string();
    let m = Some(MANAGEMENT);
    let tf = Tf::new(root.path(), "acl");

    // Without a token the provider is refused, with the agent's reason.
    tf.write(&addr, &declare(r#"key_prefix "app/" { policy = "write" }"#));
    let r = tf.apply().await;
    assert_ne!(r.code, 0);
    assert!(r.out.contains("lacks permission 'acl:write'"), "{}", r.out);

    tf.write_with_token(
        &addr,
        m,
        &declare(r#"key_prefix "app/" { policy = "write" }"#),
    );
    let r = tf.apply().await;
    assert_eq!(r.code, 0, "{}", r.out);

    // The write-only secret works and never reached state; the stored one did.
    let (st, text) = call(
        Method::PUT,
        s0,
        "/v1/kv/app/x",
        Some(SECRET),
        Some(json!("v")),
    )
    .await;
    assert_eq!(st, 200, "{text}");
    let (st, _) = call(
        Method::PUT,
        s0,
        "/v1/kv/other",
        Some(SECRET),
        Some(json!("v")),
    )
    .await;
    assert_eq!(st, 403);
    let saved = state(&tf);
    assert!(!saved.contains(SECRET), "secret_id_wo leaked into state");
    assert_eq!(resource_attr(&saved, "app", "secret_id"), Value::Null);
    let ci_secret = resource_attr(&saved, "ci", "secret_id");
    let ci_secret = ci_secret
        .as_str()
        .expect("store_secret keeps it")
        .to_string();
    let (st, _) = call(
        Method::PUT,
        s0,
        "/v1/kv/app/ci",
        Some(&ci_secret),
        Some(json!("v")),
    )
    .await;
    assert_eq!(st, 200);
    let r = tf.plan().await;
    assert_eq!(r.code, 0, "no changes expected:\n{}", r.out);

    // Drift made through the API shows in plan, and apply puts it back.
    let accessor = resource_attr(&saved, "app", "accessor_id");
    let accessor = accessor.as_str().unwrap().to_string();
    let (st, _) = call(
        Method::PUT,
        s0,
        &format!("/v1/acl/token/{accessor}"),
        m,
        Some(json!({"Description": "changed by hand", "Policies": []})),
    )
    .await;
    assert_eq!(st, 200);
    let r = tf.plan().await;
    assert_eq!(r.code, 2, "{}", r.out);
    assert!(
        r.out.contains("changed by hand") && r.out.contains("update in-place"),
        "{}",
        r.out
    );
    assert_eq!(tf.apply().await.code, 0);
    let (st, _) = call(
        Method::PUT,
        s0,
        "/v1/kv/app/x",
        Some(SECRET),
        Some(json!("v")),
    )
    .await;
    assert_eq!(st, 200, "the policy is back on the token");

    // A rules change is an in-place update that takes effect at once.
    tf.write_with_token(&addr, m, &declare(r#"key_prefix "" { policy = "write" }"#));
    let r = tf.plan().await;
    assert!(
        r.code == 2 && r.out.contains("1 to change, 0 to destroy"),
        "{}",
        r.out
    );
    assert_eq!(tf.apply().await.code, 0);
    let (st, _) = call(
        Method::PUT,
        s0,
        "/v1/kv/other",
        Some(SECRET),
        Some(json!("v")),
    )
    .await;
    assert_eq!(st, 200);

    // Bad rules are an error on `rules` at plan time; nothing changes.
    let before = call(Method::GET, s0, "/v1/acl/policy/name/app", m, None)
        .await
        .1;
    tf.write_with_token(&addr, m, &declare(r#"key_prefx "" { policy = "write" }"#));
    let r = tf.plan().await;
    assert_eq!(r.code, 1, "{}", r.out);
    assert!(
        r.out.contains("Invalid ACL rules") && r.out.contains("did you mean `key_prefix`"),
        "{}",
        r.out
    );
    assert!(r.out.contains("mesh_acl_policy.app"), "{}", r.out);
    assert_eq!(
        call(Method::GET, s0, "/v1/acl/policy/name/app", m, None)
            .await
            .1,
        before
    );
    tf.write_with_token(&addr, m, &declare(r#"key_prefix "" { policy = "write" }"#));

    // Import: a token and a policy made through the API, by accessor and by name.
    let (_, text) = call(
        Method::PUT,
        s0,
        "/v1/acl/policy",
        m,
        Some(json!({"Name": "ops", "Rules": "operator = \"read\""})),
    )
    .await;
    let ops: Value = serde_json::from_str(&text).unwrap();
    let (_, text) = call(
        Method::PUT,
        s0,
        "/v1/acl/token",
        m,
        Some(json!({"Description": "ops", "Policies": [{"Name": "ops"}]})),
    )
    .await;
    let ops_token: Value = serde_json::from_str(&text).unwrap();
    let imported = Tf::new(root.path(), "imported");
    imported.write_with_token(
        &addr,
        m,
        r#"
resource "mesh_acl_policy" "ops" {
  name  = "ops"
  rules = "operator = \"read\""
}

resource "mesh_acl_token" "ops" {
  description = "ops"
  policies    = ["ops"]
}
"#,
    );
    imported
        .must(&["import", "-input=false", "mesh_acl_policy.ops", "name:ops"])
        .await;
    let accessor_ops = ops_token["AccessorID"].as_str().unwrap();
    imported
        .must(&["import", "-input=false", "mesh_acl_token.ops", accessor_ops])
        .await;
    let r = imported.plan().await;
    assert_eq!(r.code, 0, "imported state should match:\n{}", r.out);
    assert!(!state(&imported).contains(ops_token["SecretID"].as_str().unwrap()));
    assert!(state(&imported).contains(ops["ID"].as_str().unwrap()));

    // Destroy removes the tokens and the policy.
    tf.must(&["destroy", "-auto-approve", "-input=false"]).await;
    let (st, text) = call(Method::GET, s0, "/v1/kv/app/x", Some(SECRET), None).await;
    assert_eq!((st.as_u16(), text.trim()), (403, "ACL not found"));
    let (st, _) = call(Method::GET, s0, "/v1/acl/policy/name/app", m, None).await;
    assert_eq!(st, 404);
    imported
        .must(&["destroy", "-auto-approve", "-input=false"])
        .await;
}

fn login_config(public_pem: &str, bind_name: &str) -> String {
    format!(
        r#"
resource "mesh_acl_policy" "team" {{
  name  = "team-kv"
  rules = "key_prefix \"team/\" {{ policy = \"write\" }}"
}}

resource "mesh_acl_role" "team" {{
  name     = "team"
  policies = [mesh_acl_policy.team.name]
  service_identity {{
    service_name = "web"
  }}
  templated_policy {{
    template_name = "builtin/node"
    name          = "n1"
  }}
}}

resource "mesh_acl_token" "ops" {{
  description = "ops"
  roles       = [mesh_acl_role.team.name]
  node_identity {{
    node_name  = "edge"
    datacenter = "dc1"
  }}
}}

resource "mesh_acl_auth_method" "idp" {{
  name          = "idp"
  type          = "jwt"
  max_token_ttl = "10m"
  config_json = jsonencode({{
    JWTValidationPubKeys = [{public_pem:?}]
    JWTSupportedAlgs     = ["ES256"]
    ClaimMappings        = {{ team = "team" }}
  }})
}}

resource "mesh_acl_binding_rule" "team" {{
  auth_method = mesh_acl_auth_method.idp.name
  bind_type   = "role"
  bind_name   = "{bind_name}"
  selector    = "value.team == \"blue\""
}}
"#
    )
}

#[tokio::test]
async fn terraform_manages_roles_auth_methods_and_binding_rules_that_logins_use() {
    crate::terraform::terraform();
    let root = tempfile::tempdir().unwrap();
    let a = crate::api_surface::default_deny_agent("tfroles", root.path()).await;
    let addr = a.http.to_string();
    let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let key = jsonwebtoken::EncodingKey::from_ec_pem(pair.serialize_pem().as_bytes()).unwrap();
    let tf = Tf::new(root.path(), "roles");
    tf.write_with_token(
        &addr,
        Some(MANAGEMENT),
        &login_config(&pair.public_key_pem(), "team"),
    );
    let r = tf.apply().await;
    assert_eq!(r.code, 0, "{}", r.out);
    let r = tf.plan().await;
    assert_eq!(r.code, 0, "a fresh apply plans no changes:\n{}", r.out);

    // A login through the method gets the role, and with it the policy.
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 600;
    let jwt = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256),
        &json!({"team": "blue", "exp": exp}),
        &key,
    )
    .unwrap();
    let body = json!({"AuthMethod": "idp", "BearerToken": jwt});
    let (st, text) = call(Method::POST, &a, "/v1/acl/login", None, Some(body.clone())).await;
    assert_eq!(st, 200, "{text}");
    let token: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(token["Roles"][0]["Name"], "team", "{token}");
    let secret = token["SecretID"].as_str().unwrap();
    let (st, _) = call(
        Method::PUT,
        &a,
        "/v1/kv/team/a",
        Some(secret),
        Some(json!("v")),
    )
    .await;
    assert_eq!(st, 200);

    // Drift: the role deleted by hand is planned back.
    let (st, text) = call(
        Method::GET,
        &a,
        "/v1/acl/role/name/team",
        Some(MANAGEMENT),
        None,
    )
    .await;
    assert_eq!(st, 200, "{text}");
    let role: Value = serde_json::from_str(&text).unwrap();
    let role_id = role["ID"].as_str().unwrap().to_string();
    let (st, _) = call(
        Method::DELETE,
        &a,
        &format!("/v1/acl/role/{role_id}"),
        Some(MANAGEMENT),
        None,
    )
    .await;
    assert_eq!(st, 200);
    let r = tf.plan().await;
    assert_eq!(r.code, 2, "the deleted role is planned back:\n{}", r.out);
    let r = tf.apply().await;
    assert_eq!(r.code, 0, "{}", r.out);
    let r = tf.plan().await;
    assert_eq!(r.code, 0, "{}", r.out);

    // A binding rule pointing at a claim that is not mapped: refused, with the reason.
    tf.write_with_token(
        &addr,
        Some(MANAGEMENT),
        &login_config(&pair.public_key_pem(), "${value.nope}"),
    );
    let r = tf.apply().await;
    assert_ne!(r.code, 0);
    assert!(r.out.contains("value.nope"), "{}", r.out);

    // Import, then destroy removes everything (and the login's token with its method).
    tf.write_with_token(
        &addr,
        Some(MANAGEMENT),
        &login_config(&pair.public_key_pem(), "team"),
    );
    let other = Tf::new(root.path(), "roles-imported");
    other.write_with_token(
        &addr,
        Some(MANAGEMENT),
        "resource \"mesh_acl_auth_method\" \"idp\" {\n  name = \"idp\"\n  type = \"jwt\"\n  max_token_ttl = \"10m\"\n  config_json = \"{}\"\n}\n",
    );
    other
        .must(&["import", "mesh_acl_auth_method.idp", "idp"])
        .await;
    let r = other.plan().await;
    assert_eq!(
        r.code, 2,
        "a differing config_json shows as a change:\n{}",
        r.out
    );
    let r = tf.run(&["destroy", "-auto-approve", "-input=false"]).await;
    assert_eq!(r.code, 0, "{}", r.out);
    for path in [
        "/v1/acl/roles",
        "/v1/acl/auth-methods",
        "/v1/acl/binding-rules",
    ] {
        let (_, text) = call(Method::GET, &a, path, Some(MANAGEMENT), None).await;
        assert_eq!(text.trim(), "[]", "{path}: {text}");
    }
    let (st, _) = call(
        Method::PUT,
        &a,
        "/v1/kv/team/b",
        Some(secret),
        Some(json!("v")),
    )
    .await;
    assert_eq!(st, 403, "the login's token went with its method");
}
