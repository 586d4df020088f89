//! `mesh_acl_role`, `mesh_acl_auth_method` and `mesh_acl_binding_rule`:
//! roles of policies and identities, and JWT logins with their rules.

use std::sync::Arc;

use serde_json::{json, Value as Json};
use tfplug::{AttrPath, Attribute, Block, Diagnostics, NestedBlock, Schema, Type, Value};

use crate::acl::{deleted, refreshed};
use crate::provider::Shared;
use crate::util::{keep_unset, list_from_json, report, s, str_from_json, string_map, strings};

/// `mesh_acl_role`.
pub struct AclRoleResource(pub Arc<Shared>);
/// `mesh_acl_auth_method`.
pub struct AclAuthMethodResource(pub Arc<Shared>);
/// `mesh_acl_binding_rule`.
pub struct AclBindingRuleResource(pub Arc<Shared>);

/// A PUT to `path` whose answer is the stored object, mapped to state.
async fn put(
    shared: &Shared,
    path: &str,
    body: &Json,
    prior: &Value,
    to_state: fn(&Value, &Json) -> Value,
    what: &str,
    diags: &mut Diagnostics,
) -> Value {
    let Some(c) = shared.client(diags) else {
        return Value::Null;
    };
    match c
        .write_json(mesh_client::Method::PUT, path, &[], Some(body))
        .await
    {
        Ok(j) => to_state(prior, &j),
        Err(e) => {
            report(diags, e, &format!("write {what}"), None);
            Value::Null
        }
    }
}

async fn read(
    shared: &Shared,
    path: &str,
    state: &Value,
    to_state: fn(&Value, &Json) -> Value,
    what: &str,
    diags: &mut Diagnostics,
) -> Value {
    let Some(c) = shared.client(diags) else {
        return state.clone();
    };
    let got = c.get_json(path, &[]).await;
    refreshed(state, got, to_state, what, diags)
}

async fn delete(shared: &Shared, path: &str, what: &str, diags: &mut Diagnostics) {
    let Some(c) = shared.client(diags) else {
        return;
    };
    let done = c
        .write_json(mesh_client::Method::DELETE, path, &[], None)
        .await
        .map(|_| ());
    deleted(done, what, diags);
}

// === roles ===

/// The identity blocks roles and tokens share.
pub fn identity_blocks(block: Block) -> Block {
    block
        .block(NestedBlock::list(
            "service_identity",
            Block::new(
                "A service identity: write on the service and its sidecar, read on the catalog.",
            )
            .attr(
                Attribute::string("service_name")
                    .required()
                    .describe("The service."),
            )
            .attr(
                Attribute::new("datacenters", Type::list(Type::String))
                    .describe("Where it applies (empty: everywhere)."),
            ),
        ))
        .block(NestedBlock::list(
            "node_identity",
            Block::new("A node identity: write on the node, read on services.")
                .attr(
                    Attribute::string("node_name")
                        .required()
                        .describe("The node."),
                )
                .attr(
                    Attribute::string("datacenter")
                        .required()
                        .describe("The node's datacenter."),
                ),
        ))
        .block(NestedBlock::list(
            "templated_policy",
            Block::new("A built-in templated policy.")
                .attr(
                    Attribute::string("template_name")
                        .required()
                        .describe("`builtin/service`, `builtin/node` or `builtin/dns`."),
                )
                .attr(
                    Attribute::string("name")
                        .describe("The template's `Name` variable (services and nodes)."),
                )
                .attr(
                    Attribute::new("datacenters", Type::list(Type::String))
                        .describe("Where it applies (empty: everywhere)."),
                ),
        ))
}

/// The identity blocks as the API's JSON fields.
pub fn identities_json(planned: &Value, body: &mut Json) {
    let blocks = |name: &str| planned.get(name).items().to_vec();
    body["ServiceIdentities"] = blocks("service_identity")
        .iter()
        .map(|b| json!({"ServiceName": s(b, "service_name"), "Datacenters": strings(b.get("datacenters"))}))
        .collect();
    body["NodeIdentities"] = blocks("node_identity")
        .iter()
        .map(|b| json!({"NodeName": s(b, "node_name"), "Datacenter": s(b, "datacenter")}))
        .collect();
    body["TemplatedPolicies"] = blocks("templated_policy")
        .iter()
        .map(|b| {
            let mut t = json!({"TemplateName": s(b, "template_name"), "Datacenters": strings(b.get("datacenters"))});
            if let Some(name) = b.get("name").as_str().filter(|n| !n.is_empty()) {
                t["TemplateVariables"] = json!({"Name": name});
            }
            t
        })
        .collect();
}

/// The identity blocks from the API's JSON, `prior` deciding null vs empty.
pub fn identities_state(prior: &Value, j: &Json, out: &mut Value) {
    let list = |key: &str| j[key].as_array().cloned().unwrap_or_default();
    let keep = |prior_list: &Value, read: Value| keep_unset(prior_list, read);
    let dcs = |e: &Json, prior_item: Option<&Value>| match prior_item {
        Some(p) => keep_unset(p.get("datacenters"), list_from_json(&e["Datacenters"])),
        None => list_from_json(&e["Datacenters"]),
    };
    let prior_items = |name: &str| prior.get(name).items().to_vec();
    let services: Vec<Value> = list("ServiceIdentities")
        .iter()
        .enumerate()
        .map(|(i, e)| {
            Value::object([
                ("service_name", str_from_json(&e["ServiceName"])),
                (
                    "datacenters",
                    dcs(e, prior_items("service_identity").get(i)),
                ),
            ])
        })
        .collect();
    let nodes: Vec<Value> = list("NodeIdentities")
        .iter()
        .map(|e| {
            Value::object([
                ("node_name", str_from_json(&e["NodeName"])),
                ("datacenter", str_from_json(&e["Datacenter"])),
            ])
        })
        .collect();
    let templated: Vec<Value> = list("TemplatedPolicies")
        .iter()
        .enumerate()
        .map(|(i, e)| {
            let prior_item = prior_items("templated_policy").get(i).cloned();
            let name = str_from_json(&e["TemplateVariables"]["Name"]);
            Value::object([
                ("template_name", str_from_json(&e["TemplateName"])),
                (
                    "name",
                    keep_unset(
                        prior_item.as_ref().map_or(&Value::Null, |p| p.get("name")),
                        name,
                    ),
                ),
                ("datacenters", dcs(e, prior_item.as_ref())),
            ])
        })
        .collect();
    out.set(
        "service_identity",
        keep(prior.get("service_identity"), Value::List(services)),
    );
    out.set(
        "node_identity",
        keep(prior.get("node_identity"), Value::List(nodes)),
    );
    out.set(
        "templated_policy",
        keep(prior.get("templated_policy"), Value::List(templated)),
    );
}

fn role_state(prior: &Value, j: &Json) -> Value {
    let names: Vec<Value> = j["Policies"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| str_from_json(&p["Name"]))
        .collect();
    let mut out = Value::object([
        ("id", str_from_json(&j["ID"])),
        ("name", str_from_json(&j["Name"])),
        (
            "description",
            keep_unset(prior.get("description"), str_from_json(&j["Description"])),
        ),
        (
            "policies",
            keep_unset(prior.get("policies"), Value::List(names)),
        ),
    ]);
    identities_state(prior, j, &mut out);
    out
}

fn role_body(planned: &Value) -> Json {
    let mut body = json!({
        "Name": s(planned, "name"),
        "Description": s(planned, "description"),
        "Policies": strings(planned.get("policies")).into_iter().map(|n| json!({"Name": n})).collect::<Vec<_>>(),
    });
    identities_json(planned, &mut body);
    body
}

#[tonic::async_trait]
impl tfplug::Resource for AclRoleResource {
    fn type_name(&self) -> &str {
        "mesh_acl_role"
    }

    fn schema(&self) -> Schema {
        Schema::new(identity_blocks(
            Block::new("An ACL role: policies and identities under one name, linked by tokens; a change applies to every such token at once. Import with the role ID.")
                .attr(Attribute::string("id").computed().use_state_for_unknown().describe("The role ID."))
                .attr(Attribute::string("name").required().describe("Unique name (letters, digits, `-`, `_`)."))
                .attr(Attribute::string("description").describe("Free text."))
                .attr(Attribute::new("policies", Type::list(Type::String)).describe("Names of the policies the role carries.")),
        ))
    }

    async fn create(&self, planned: &Value, _: &Value, diags: &mut Diagnostics) -> Value {
        put(
            &self.0,
            "acl/role",
            &role_body(planned),
            planned,
            role_state,
            "ACL role",
            diags,
        )
        .await
    }

    async fn update(
        &self,
        prior: &Value,
        planned: &Value,
        _: &Value,
        diags: &mut Diagnostics,
    ) -> Value {
        let id = s(prior, "id");
        put(
            &self.0,
            &format!("acl/role/{id}"),
            &role_body(planned),
            planned,
            role_state,
            "ACL role",
            diags,
        )
        .await
    }

    async fn read(&self, state: &Value, diags: &mut Diagnostics) -> Value {
        let id = s(state, "id");
        read(
            &self.0,
            &format!("acl/role/{id}"),
            state,
            role_state,
            &format!("ACL role {id}"),
            diags,
        )
        .await
    }

    async fn delete(&self, prior: &Value, diags: &mut Diagnostics) {
        let id = s(prior, "id");
        delete(
            &self.0,
            &format!("acl/role/{id}"),
            &format!("ACL role {id}"),
            diags,
        )
        .await
    }

    async fn import(&self, id: &str, _: &mut Diagnostics) -> Value {
        Value::object([("id", Value::from(id))])
    }
}

// === auth methods ===

/// Two JSON texts that mean the same object.
fn same_json(a: &str, b: &str) -> bool {
    match (
        serde_json::from_str::<Json>(a),
        serde_json::from_str::<Json>(b),
    ) {
        (Ok(x), Ok(y)) => x == y,
        _ => false,
    }
}

/// Two Go durations that are the same length ("10m", "10m0s").
fn same_duration(a: &str, b: &str) -> bool {
    match (
        mesh_types::parse_go_duration(a),
        mesh_types::parse_go_duration(b),
    ) {
        (Ok(x), Ok(y)) => x == y,
        _ => a == b,
    }
}

fn method_state(prior: &Value, j: &Json) -> Value {
    let config = j["Config"].to_string();
    // The prior text is kept while it means the same: no diff for formatting.
    let config = match prior.get("config_json").as_str() {
        Some(p) if same_json(p, &config) => Value::from(p),
        _ => Value::from(config),
    };
    let ttl = j["MaxTokenTTL"].as_str().unwrap_or_default();
    let ttl = match prior.get("max_token_ttl").as_str() {
        Some(p) if same_duration(p, ttl) => Value::from(p),
        _ => keep_unset(prior.get("max_token_ttl"), Value::from(ttl)),
    };
    Value::object([
        ("id", str_from_json(&j["Name"])),
        ("name", str_from_json(&j["Name"])),
        ("type", str_from_json(&j["Type"])),
        (
            "display_name",
            keep_unset(prior.get("display_name"), str_from_json(&j["DisplayName"])),
        ),
        (
            "description",
            keep_unset(prior.get("description"), str_from_json(&j["Description"])),
        ),
        ("max_token_ttl", ttl),
        (
            "token_locality",
            keep_unset(
                prior.get("token_locality"),
                str_from_json(&j["TokenLocality"]),
            ),
        ),
        ("config_json", config),
    ])
}

fn method_body(planned: &Value) -> Result<Json, String> {
    let config: Json = serde_json::from_str(&s(planned, "config_json"))
        .map_err(|e| format!("config_json is not JSON: {e}"))?;
    Ok(json!({
        "Name": s(planned, "name"),
        "Type": s(planned, "type"),
        "DisplayName": s(planned, "display_name"),
        "Description": s(planned, "description"),
        "MaxTokenTTL": s(planned, "max_token_ttl"),
        "TokenLocality": s(planned, "token_locality"),
        "Config": config,
    }))
}

#[tonic::async_trait]
impl tfplug::Resource for AclAuthMethodResource {
    fn type_name(&self) -> &str {
        "mesh_acl_auth_method"
    }

    fn schema(&self) -> Schema {
        Schema::new(
            Block::new("An auth method: how `/v1/acl/login` checks a JWT. Deleting it deletes its binding rules and the tokens its logins made. Import with the name.")
                .attr(Attribute::string("id").computed().use_state_for_unknown().describe("The name."))
                .attr(Attribute::string("name").required().requires_replace().describe("Unique name."))
                .attr(Attribute::string("type").required().requires_replace().describe("`jwt`."))
                .attr(Attribute::string("display_name").describe("Shown in UIs."))
                .attr(Attribute::string("description").describe("Free text."))
                .attr(Attribute::string("max_token_ttl").describe("Longest life of a login's token, e.g. `1h` (at most 24h)."))
                .attr(Attribute::string("token_locality").describe("`local` (default) or `global`."))
                .attr(Attribute::string("config_json").required().describe("The method's `Config` as JSON: `JWTValidationPubKeys`, `JWTSupportedAlgs`, `BoundIssuer`, `BoundAudiences`, `ClaimMappings`, `ListClaimMappings`; checked by the agent.")),
        )
    }

    async fn validate(&self, config: &Value, diags: &mut Diagnostics) {
        if let Some(text) = config.get("config_json").as_str() {
            if let Err(e) = serde_json::from_str::<Json>(text) {
                diags.attr_error(
                    AttrPath::attr("config_json"),
                    "Invalid config_json",
                    e.to_string(),
                );
            }
        }
    }

    async fn create(&self, planned: &Value, _: &Value, diags: &mut Diagnostics) -> Value {
        let body = match method_body(planned) {
            Ok(b) => b,
            Err(e) => {
                diags.attr_error(AttrPath::attr("config_json"), "Invalid config_json", e);
                return Value::Null;
            }
        };
        put(
            &self.0,
            "acl/auth-method",
            &body,
            planned,
            method_state,
            "ACL auth method",
            diags,
        )
        .await
    }

    async fn update(
        &self,
        _: &Value,
        planned: &Value,
        _: &Value,
        diags: &mut Diagnostics,
    ) -> Value {
        let body = match method_body(planned) {
            Ok(b) => b,
            Err(e) => {
                diags.attr_error(AttrPath::attr("config_json"), "Invalid config_json", e);
                return Value::Null;
            }
        };
        let name = s(planned, "name");
        put(
            &self.0,
            &format!("acl/auth-method/{name}"),
            &body,
            planned,
            method_state,
            "ACL auth method",
            diags,
        )
        .await
    }

    async fn read(&self, state: &Value, diags: &mut Diagnostics) -> Value {
        let name = s(state, "name");
        read(
            &self.0,
            &format!("acl/auth-method/{name}"),
            state,
            method_state,
            &format!("ACL auth method {name:?}"),
            diags,
        )
        .await
    }

    async fn delete(&self, prior: &Value, diags: &mut Diagnostics) {
        let name = s(prior, "name");
        delete(
            &self.0,
            &format!("acl/auth-method/{name}"),
            &format!("ACL auth method {name:?}"),
            diags,
        )
        .await
    }

    async fn import(&self, id: &str, _: &mut Diagnostics) -> Value {
        Value::object([("id", Value::from(id)), ("name", Value::from(id))])
    }
}

// === binding rules ===

fn rule_state(prior: &Value, j: &Json) -> Value {
    let vars = match j["BindVars"]["Name"].as_str() {
        Some(n) => Value::Map([("name".to_string(), Value::from(n))].into_iter().collect()),
        None => Value::Map(Default::default()),
    };
    Value::object([
        ("id", str_from_json(&j["ID"])),
        ("auth_method", str_from_json(&j["AuthMethod"])),
        (
            "description",
            keep_unset(prior.get("description"), str_from_json(&j["Description"])),
        ),
        (
            "selector",
            keep_unset(prior.get("selector"), str_from_json(&j["Selector"])),
        ),
        ("bind_type", str_from_json(&j["BindType"])),
        ("bind_name", str_from_json(&j["BindName"])),
        ("bind_vars", keep_unset(prior.get("bind_vars"), vars)),
    ])
}

fn rule_body(planned: &Value) -> Json {
    let mut body = json!({
        "AuthMethod": s(planned, "auth_method"),
        "Description": s(planned, "description"),
        "Selector": s(planned, "selector"),
        "BindType": s(planned, "bind_type"),
        "BindName": s(planned, "bind_name"),
    });
    if let Some(name) = string_map(planned.get("bind_vars")).get("name") {
        body["BindVars"] = json!({"Name": name});
    }
    body
}

#[tonic::async_trait]
impl tfplug::Resource for AclBindingRuleResource {
    fn type_name(&self) -> &str {
        "mesh_acl_binding_rule"
    }

    fn schema(&self) -> Schema {
        Schema::new(
            Block::new("A binding rule: what a login through its auth method gets when the JWT's claims match `selector`. Import with the rule ID.")
                .attr(Attribute::string("id").computed().use_state_for_unknown().describe("The rule ID."))
                .attr(Attribute::string("auth_method").required().requires_replace().describe("The auth method's name."))
                .attr(Attribute::string("description").describe("Free text."))
                .attr(Attribute::string("selector").describe("A filter over `value.<claim>` and `list.<claim>`; empty matches every login."))
                .attr(Attribute::string("bind_type").required().describe("`service`, `node`, `role`, `policy` or `templated-policy`."))
                .attr(Attribute::string("bind_name").required().describe("What is bound; `${value.<claim>}` is filled in at login."))
                .attr(Attribute::new("bind_vars", Type::map(Type::String)).describe("For `templated-policy`: `{ name = \"…\" }`.")),
        )
    }

    async fn create(&self, planned: &Value, _: &Value, diags: &mut Diagnostics) -> Value {
        put(
            &self.0,
            "acl/binding-rule",
            &rule_body(planned),
            planned,
            rule_state,
            "ACL binding rule",
            diags,
        )
        .await
    }

    async fn update(
        &self,
        prior: &Value,
        planned: &Value,
        _: &Value,
        diags: &mut Diagnostics,
    ) -> Value {
        let id = s(prior, "id");
        put(
            &self.0,
            &format!("acl/binding-rule/{id}"),
            &rule_body(planned),
            planned,
            rule_state,
            "ACL binding rule",
            diags,
        )
        .await
    }

    async fn read(&self, state: &Value, diags: &mut Diagnostics) -> Value {
        let id = s(state, "id");
        read(
            &self.0,
            &format!("acl/binding-rule/{id}"),
            state,
            rule_state,
            &format!("ACL binding rule {id}"),
            diags,
        )
        .await
    }

    async fn delete(&self, prior: &Value, diags: &mut Diagnostics) {
        let id = s(prior, "id");
        delete(
            &self.0,
            &format!("acl/binding-rule/{id}"),
            &format!("ACL binding rule {id}"),
            diags,
        )
        .await
    }

    async fn import(&self, id: &str, _: &mut Diagnostics) -> Value {
        Value::object([("id", Value::from(id))])
    }
}
