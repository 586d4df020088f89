//! `mesh_acl_policy` and `mesh_acl_token`. A token's secret stays out of
//! state unless `store_secret = true`: set it yourself through the
//! write-only `secret_id_wo`, or read it once with a management token.

use std::sync::Arc;

use serde_json::{json, Value as Json};
use tfplug::{AttrPath, Attribute, Block, Diagnostics, Schema, Type, Value};

use crate::provider::Shared;
use crate::util::{list_from_json, report, s, str_from_json, strings};

/// `mesh_acl_policy`.
pub struct AclPolicyResource(pub Arc<Shared>);

/// `mesh_acl_token`.
pub struct AclTokenResource(pub Arc<Shared>);

fn is_uuid(v: &str) -> bool {
    uuid::Uuid::try_parse(v).is_ok()
}

/// State after a read: the object's, null when it is gone, the prior state
/// (with an error) when the agent could not answer.
pub(crate) fn refreshed(
    prior: &Value,
    read: mesh_client::Result<Option<Json>>,
    to_state: fn(&Value, &Json) -> Value,
    what: &str,
    diags: &mut Diagnostics,
) -> Value {
    match read {
        Ok(None) => Value::Null,
        Ok(Some(j)) => to_state(prior, &j),
        Err(e) => {
            report(diags, e, &format!("read {what}"), None);
            prior.clone()
        }
    }
}

/// A delete that found nothing is done too.
pub(crate) fn deleted(done: mesh_client::Result<()>, what: &str, diags: &mut Diagnostics) {
    match done {
        Ok(()) | Err(mesh_client::Error::Status { status: 404, .. }) => {}
        Err(e) => report(diags, e, &format!("delete {what}"), None),
    }
}

fn policy_state(prior: &Value, j: &Json) -> Value {
    let description =
        crate::util::keep_unset(prior.get("description"), str_from_json(&j["Description"]));
    let datacenters =
        crate::util::keep_unset(prior.get("datacenters"), list_from_json(&j["Datacenters"]));
    Value::object([
        ("id", str_from_json(&j["ID"])),
        ("name", str_from_json(&j["Name"])),
        ("description", description),
        ("rules", str_from_json(&j["Rules"])),
        ("datacenters", datacenters),
    ])
}

#[tonic::async_trait]
impl tfplug::Resource for AclPolicyResource {
    fn type_name(&self) -> &str {
        "mesh_acl_policy"
    }

    fn schema(&self) -> Schema {
        Schema::new(
            Block::new("An ACL policy: rules in mesh's (Consul's) HCL policy language. Rules are checked at plan time. Import with the policy ID or `name:<name>`.")
                .attr(Attribute::string("id").computed().use_state_for_unknown().describe("The policy ID."))
                .attr(Attribute::string("name").required().describe("Unique name (letters, digits, `-`, `_`)."))
                .attr(Attribute::string("description").describe("Free text."))
                .attr(Attribute::string("rules").required().describe("Rules, e.g. `key_prefix \"app/\" { policy = \"write\" }`."))
                .attr(Attribute::new("datacenters", Type::list(Type::String)).describe("Datacenters the policy applies in (empty: all).")),
        )
    }

    async fn validate(&self, config: &Value, diags: &mut Diagnostics) {
        if let Some(rules) = config.get("rules").as_str() {
            if let Err(e) = mesh_acl::parse_rules(rules) {
                diags.attr_error(AttrPath::attr("rules"), "Invalid ACL rules", e.to_string());
            }
        }
    }

    async fn create(&self, planned: &Value, _: &Value, diags: &mut Diagnostics) -> Value {
        self.write(None, planned, diags).await
    }

    async fn update(
        &self,
        prior: &Value,
        planned: &Value,
        _: &Value,
        diags: &mut Diagnostics,
    ) -> Value {
        let id = s(prior, "id");
        self.write(Some(&id), planned, diags).await
    }

    async fn read(&self, state: &Value, diags: &mut Diagnostics) -> Value {
        let Some(c) = self.0.client(diags) else {
            return state.clone();
        };
        let id = s(state, "id");
        let read = c.acl_policy_read(&id).await;
        refreshed(
            state,
            read,
            policy_state,
            &format!("ACL policy {id}"),
            diags,
        )
    }

    async fn delete(&self, prior: &Value, diags: &mut Diagnostics) {
        let Some(c) = self.0.client(diags) else {
            return;
        };
        let id = s(prior, "id");
        let done = c.acl_policy_delete(&id).await;
        deleted(done, &format!("ACL policy {id}"), diags);
    }

    async fn import(&self, id: &str, diags: &mut Diagnostics) -> Value {
        if let Some(name) = id.strip_prefix("name:") {
            let Some(c) = self.0.client(diags) else {
                return Value::Null;
            };
            return match c.acl_policy_read_by_name(name).await {
                Ok(Some(j)) => Value::object([("id", str_from_json(&j["ID"]))]),
                Ok(None) => {
                    diags.error(
                        "Cannot import ACL policy",
                        format!("no policy is named {name:?}"),
                    );
                    Value::Null
                }
                Err(e) => {
                    report(diags, e, &format!("read ACL policy {name:?}"), None);
                    Value::Null
                }
            };
        }
        if !is_uuid(id) {
            diags.error(
                "Invalid import ID",
                format!("expected a policy ID (UUID) or `name:<name>`, got {id:?}"),
            );
            return Value::Null;
        }
        Value::object([("id", Value::from(id))])
    }
}

impl AclPolicyResource {
    async fn write(&self, id: Option<&str>, planned: &Value, diags: &mut Diagnostics) -> Value {
        let Some(c) = self.0.client(diags) else {
            return Value::Null;
        };
        let body = json!({
            "Name": s(planned, "name"),
            "Description": s(planned, "description"),
            "Rules": s(planned, "rules"),
            "Datacenters": strings(planned.get("datacenters")),
        });
        match c.acl_policy_write(id, &body).await {
            Ok(j) => {
                let mut v = planned.clone();
                v.set("id", str_from_json(&j["ID"]));
                v
            }
            Err(e) => {
                report(
                    diags,
                    e,
                    &format!("ACL policy {:?}", s(planned, "name")),
                    Some(AttrPath::attr("name")),
                );
                Value::Null
            }
        }
    }
}

/// The state of a token from the agent's JSON; the secret only if asked.
fn token_state(prior: &Value, j: &Json) -> Value {
    let store = prior.get("store_secret").as_bool().unwrap_or(false);
    let names: Vec<Value> = j["Policies"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| str_from_json(&p["Name"]))
        .collect();
    let policies = crate::util::keep_unset(prior.get("policies"), Value::List(names));
    let description =
        crate::util::keep_unset(prior.get("description"), str_from_json(&j["Description"]));
    let secret = match j["SecretID"].as_str() {
        Some(secret) if store && secret != "<hidden>" => Value::from(secret),
        // Keep what state had if this read could not see it.
        _ if store => prior.get("secret_id").clone(),
        _ => Value::Null,
    };
    let roles: Vec<Value> = j["Roles"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|r| str_from_json(&r["Name"]))
        .collect();
    let mut out = Value::object([
        ("id", str_from_json(&j["AccessorID"])),
        ("accessor_id", str_from_json(&j["AccessorID"])),
        ("description", description),
        ("policies", policies),
        (
            "roles",
            crate::util::keep_unset(prior.get("roles"), Value::List(roles)),
        ),
        ("local", Value::Bool(j["Local"].as_bool().unwrap_or(false))),
        ("store_secret", Value::Bool(store)),
        ("secret_id", secret),
        ("secret_id_wo", Value::Null),
    ]);
    crate::acl_roles::identities_state(prior, j, &mut out);
    out
}

#[tonic::async_trait]
impl tfplug::Resource for AclTokenResource {
    fn type_name(&self) -> &str {
        "mesh_acl_token"
    }

    fn schema(&self) -> Schema {
        Schema::new(crate::acl_roles::identity_blocks(
            Block::new("An ACL token with the policies, roles and identities it carries. Its secret is never written to state unless `store_secret = true`. Import with the accessor ID.")
                .attr(Attribute::string("id").computed().use_state_for_unknown().describe("The accessor ID."))
                .attr(Attribute::string("accessor_id").optional_computed().use_state_for_unknown().requires_replace().describe("Public ID of the token (UUID); generated when not set."))
                .attr(Attribute::string("description").describe("Free text."))
                .attr(Attribute::new("policies", Type::list(Type::String)).describe("Names of the policies the token carries."))
                .attr(Attribute::new("roles", Type::list(Type::String)).describe("Names of the roles the token links."))
                .attr(Attribute::bool("local").default(false).describe("Valid only in this datacenter."))
                .attr(Attribute::string("secret_id_wo").sensitive().write_only().describe("The secret to create the token with (UUID), never stored in state (Terraform ≥ 1.11 write-only). Generated by the agent when not set."))
                .attr(Attribute::bool("store_secret").default(false).describe("Keep the secret in state as `secret_id`. Off by default: state files are often shared."))
                .attr(Attribute::string("secret_id").computed().sensitive().describe("The secret, only when `store_secret = true`; otherwise null.")),
        ))
    }

    async fn validate(&self, config: &Value, diags: &mut Diagnostics) {
        for attr in ["accessor_id", "secret_id_wo"] {
            if let Some(v) = config.get(attr).as_str() {
                if !is_uuid(v) {
                    diags.attr_error(
                        AttrPath::attr(attr),
                        "Not a UUID",
                        format!("{attr} must be a UUID such as `uuidgen` prints"),
                    );
                }
            }
        }
    }

    async fn create(&self, planned: &Value, config: &Value, diags: &mut Diagnostics) -> Value {
        let Some(c) = self.0.client(diags) else {
            return Value::Null;
        };
        let mut body = token_body(planned);
        if let Some(a) = planned.get("accessor_id").as_str() {
            body["AccessorID"] = a.into();
        }
        if let Some(secret) = config.get("secret_id_wo").as_str() {
            body["SecretID"] = secret.into();
        }
        match c.acl_token_write(None, &body).await {
            Ok(j) => token_state(planned, &j),
            Err(e) => {
                report(
                    diags,
                    e,
                    "create ACL token",
                    Some(AttrPath::attr("policies")),
                );
                Value::Null
            }
        }
    }

    async fn update(
        &self,
        prior: &Value,
        planned: &Value,
        _: &Value,
        diags: &mut Diagnostics,
    ) -> Value {
        let Some(c) = self.0.client(diags) else {
            return prior.clone();
        };
        let accessor = s(prior, "accessor_id");
        match c
            .acl_token_write(Some(&accessor), &token_body(planned))
            .await
        {
            Ok(j) => token_state(planned, &j),
            Err(e) => {
                report(
                    diags,
                    e,
                    &format!("update ACL token {accessor}"),
                    Some(AttrPath::attr("policies")),
                );
                prior.clone()
            }
        }
    }

    async fn read(&self, state: &Value, diags: &mut Diagnostics) -> Value {
        let Some(c) = self.0.client(diags) else {
            return state.clone();
        };
        let accessor = s(state, "id");
        let read = c.acl_token_read(&accessor).await;
        refreshed(
            state,
            read,
            token_state,
            &format!("ACL token {accessor}"),
            diags,
        )
    }

    async fn delete(&self, prior: &Value, diags: &mut Diagnostics) {
        let Some(c) = self.0.client(diags) else {
            return;
        };
        let accessor = s(prior, "id");
        let done = c.acl_token_delete(&accessor).await;
        deleted(done, &format!("ACL token {accessor}"), diags);
    }

    async fn import(&self, id: &str, diags: &mut Diagnostics) -> Value {
        if !is_uuid(id) {
            diags.error(
                "Invalid import ID",
                format!("expected a token accessor ID (UUID), got {id:?}"),
            );
            return Value::Null;
        }
        Value::object([
            ("id", Value::from(id)),
            ("store_secret", Value::Bool(false)),
        ])
    }
}

fn token_body(planned: &Value) -> Json {
    let policies: Vec<Json> = strings(planned.get("policies"))
        .into_iter()
        .map(|name| json!({"Name": name}))
        .collect();
    let roles: Vec<Json> = strings(planned.get("roles"))
        .into_iter()
        .map(|name| json!({"Name": name}))
        .collect();
    let mut body = json!({
        "Description": s(planned, "description"),
        "Policies": policies,
        "Roles": roles,
        "Local": planned.get("local").as_bool().unwrap_or(false),
    });
    crate::acl_roles::identities_json(planned, &mut body);
    body
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_secret_is_kept_only_when_asked() {
        let j = json!({"AccessorID": "a", "SecretID": "s", "Description": "", "Policies": [{"ID": "p", "Name": "app"}], "Local": false});
        let prior = Value::object([
            ("store_secret", Value::Bool(false)),
            ("policies", Value::List(vec!["app".into()])),
        ]);
        let v = token_state(&prior, &j);
        assert!(v.get("secret_id").is_null());
        assert!(
            v.get("description").is_null(),
            "server's empty default never diffs"
        );
        assert_eq!(v.get("policies"), &Value::List(vec!["app".into()]));
        let prior = Value::object([("store_secret", Value::Bool(true))]);
        assert_eq!(token_state(&prior, &j).get("secret_id"), &Value::from("s"));
        let hidden = json!({"AccessorID": "a", "SecretID": "<hidden>"});
        let prior = Value::object([
            ("store_secret", Value::Bool(true)),
            ("secret_id", "s".into()),
        ]);
        assert_eq!(
            token_state(&prior, &hidden).get("secret_id"),
            &Value::from("s")
        );
    }
}
