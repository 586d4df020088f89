//! `/v1/acl/role*` and `/v1/acl/templated-polic*`: roles (policies and
//! identities under one name) and the built-in policy templates.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::Json;
use mesh_state::State as Catalog;
use mesh_types::{templated_policy_rules, AclRole, Command, TEMPLATED_POLICY_NAMES};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::acl_links::{
    add_identities_json, identities, policies_json, policy_ids, shown, written_then_shown,
    LinkBody, NodeIdentityBody, ServiceIdentityBody, TemplatedPolicyBody,
};
use crate::error::json_body;
use crate::{Api, ApiError};

fn not_found(what: impl std::fmt::Display) -> ApiError {
    ApiError::new(
        axum::http::StatusCode::NOT_FOUND,
        format!("{what} not found"),
    )
}

pub(crate) fn role_json(s: &Catalog, r: &AclRole) -> Value {
    let mut v = json!({
        "ID": r.id,
        "Name": r.name,
        "Description": r.description,
        "CreateIndex": r.create_index,
        "ModifyIndex": r.modify_index,
    });
    if !r.policies.is_empty() {
        v["Policies"] = policies_json(s, &r.policies).into();
    }
    add_identities_json(
        &mut v,
        &r.service_identities,
        &r.node_identities,
        &r.templated_policies,
    );
    v
}

/// A role body, keys in any case; what a read shows back is accepted.
#[derive(Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
struct RoleBody {
    id: String,
    name: String,
    description: String,
    policies: Vec<LinkBody>,
    serviceidentities: Vec<ServiceIdentityBody>,
    nodeidentities: Vec<NodeIdentityBody>,
    templatedpolicies: Vec<TemplatedPolicyBody>,
    hash: Value,
    createindex: u64,
    modifyindex: u64,
    namespace: String,
    partition: String,
}

fn role_from(api: &Api, body: &[u8], id: String) -> Result<AclRole, ApiError> {
    let value = json_body(body, "role")?;
    if !value.is_object() {
        return Err(ApiError::bad_request(
            "Request decode failed: role: a JSON object",
        ));
    }
    let b: RoleBody = crate::wire::parse_value(value, "role")?;
    if !b.id.is_empty() && b.id != id {
        return Err(ApiError::bad_request(format!(
            "ID {:?} in the body is not the role {id:?} being written",
            b.id
        )));
    }
    let valid = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_';
    if b.name.is_empty() || b.name.len() > 256 || !b.name.chars().all(valid) {
        return Err(ApiError::bad_request(format!(
            "ACL role Name {:?} is invalid: 1 to 256 letters, digits, '-' and '_'",
            b.name
        )));
    }
    let ids = identities(b.serviceidentities, b.nodeidentities, b.templatedpolicies)?;
    Ok(AclRole {
        id,
        name: b.name,
        description: b.description,
        policies: api.state.read(|s| policy_ids(s, &b.policies))?,
        service_identities: ids.services,
        node_identities: ids.nodes,
        templated_policies: ids.templated,
        ..Default::default()
    })
}

async fn write_role(api: &Api, role: AclRole) -> Result<Response, ApiError> {
    let id = role.id.clone();
    let show = |s: &Catalog| s.acl_role(&id).map(|r| role_json(s, r));
    written_then_shown(api, Command::AclRoleSet { role }, show, || {
        format!("ACL role {id}")
    })
    .await
}

/// `PUT /v1/acl/role`.
pub(crate) async fn create(State(api): State<Api>, body: Bytes) -> Result<Response, ApiError> {
    crate::acl::enabled(&api)?;
    let role = role_from(&api, &body, uuid::Uuid::new_v4().to_string())?;
    write_role(&api, role).await
}

/// `PUT /v1/acl/role/:id`.
pub(crate) async fn update(
    State(api): State<Api>,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    crate::acl::enabled(&api)?;
    if api.state.read(|s| s.acl_role(&id).is_none()) {
        return Err(not_found(format!("ACL role {id}")));
    }
    let role = role_from(&api, &body, id)?;
    write_role(&api, role).await
}

pub(crate) async fn get(
    State(api): State<Api>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    crate::acl::enabled(&api)?;
    shown(
        &api,
        |s| s.acl_role(&id).map(|r| role_json(s, r)),
        || format!("ACL role {id}"),
    )
}

pub(crate) async fn by_name(
    State(api): State<Api>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    crate::acl::enabled(&api)?;
    let show = |s: &Catalog| s.acl_role_by_name(&name).map(|r| role_json(s, r));
    shown(&api, show, || format!("ACL role named {name:?}"))
}

pub(crate) async fn delete(
    State(api): State<Api>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    crate::acl::enabled(&api)?;
    api.apply(Command::AclRoleDelete { id }).await?;
    Ok(Json(true).into_response())
}

/// `GET /v1/acl/roles[?policy=<id>]`.
pub(crate) async fn list(
    State(api): State<Api>,
    params: crate::Params,
) -> Result<Response, ApiError> {
    crate::acl::enabled(&api)?;
    let policy = params.map().get("policy").cloned().unwrap_or_default();
    let list: Vec<Value> = api.state.read(|s| {
        s.acl_roles()
            .filter(|r| policy.is_empty() || r.policies.contains(&policy))
            .map(|r| role_json(s, r))
            .collect()
    });
    Ok(Json(list).into_response())
}

// === templated policies ===

fn template_description(name: &str) -> &'static str {
    match name {
        "builtin/service" => "Gives the token or role permissions to register a service and discover services in the mesh.",
        "builtin/node" => "Gives the token or role permissions for a node's own registration and for reading services.",
        _ => "Gives the token or role permissions for DNS lookups: read on every node, service and prepared query.",
    }
}

fn template_json(name: &str) -> Value {
    let needs_name = mesh_types::templated_policy_needs_name(name);
    let schema = if needs_name {
        json!({"type": "object", "properties": {"name": {"type": "string", "$ref": "#/definitions/name"}}, "required": ["name"]})
            .to_string()
    } else {
        String::new()
    };
    json!({
        "TemplateName": name,
        "Schema": schema,
        "Template": templated_policy_rules(name, "{{.Name}}").unwrap_or_default(),
        "Description": template_description(name),
    })
}

/// `GET /v1/acl/templated-policies`: every template, by name.
pub(crate) async fn templates(State(api): State<Api>) -> Result<Response, ApiError> {
    crate::acl::enabled(&api)?;
    let map: serde_json::Map<String, Value> = TEMPLATED_POLICY_NAMES
        .iter()
        .map(|n| (n.to_string(), template_json(n)))
        .collect();
    Ok(Json(Value::Object(map)).into_response())
}

fn known_template(name: &str) -> Result<(), ApiError> {
    if TEMPLATED_POLICY_NAMES.contains(&name) {
        Ok(())
    } else {
        Err(not_found(format!("ACL templated policy {name:?}")))
    }
}

/// `GET /v1/acl/templated-policy/name/<name>` (the name holds a `/`).
pub(crate) async fn template(
    State(api): State<Api>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    crate::acl::enabled(&api)?;
    known_template(&name)?;
    Ok(Json(template_json(&name)).into_response())
}

#[derive(Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
struct PreviewBody {
    name: String,
}

/// `POST /v1/acl/templated-policy/preview/<name>` with `{"Name": …}`: the
/// policy the template renders.
pub(crate) async fn preview(
    State(api): State<Api>,
    Path(name): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    crate::acl::enabled(&api)?;
    known_template(&name)?;
    let b: PreviewBody = crate::wire::parse_value(
        json_body(&body, "template variables")?,
        "template variables",
    )?;
    if mesh_types::templated_policy_needs_name(&name) && b.name.is_empty() {
        return Err(ApiError::bad_request(format!(
            "templated policy {name}: the variable Name is required"
        )));
    }
    let rules = templated_policy_rules(&name, &b.name).unwrap_or_default();
    Ok(Json(json!({
        "Name": format!("synthetic-policy-{}", name.replace('/', "-")),
        "Description": format!("synthetic policy generated from templated policy: {name}"),
        "Rules": rules,
    }))
    .into_response())
}
