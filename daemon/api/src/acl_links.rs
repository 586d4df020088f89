//! What tokens and roles link besides policies, in Consul's JSON: roles,
//! service and node identities, templated policies; read from bodies with
//! keys in any case, and shown back.

use axum::http::StatusCode;
use mesh_state::State as Catalog;
use mesh_types::{
    AclNodeIdentity, AclServiceIdentity, AclTemplatedPolicy, AclTokenLinks, TEMPLATED_POLICY_NAMES,
};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::ApiError;

/// Links in one body, at most (policies, roles, identities each).
pub const MAX_ACL_LINKS: usize = 64;

/// `{ "ID": … }` or `{ "Name": … }`.
#[derive(Deserialize, Default, Clone)]
#[serde(default)]
pub(crate) struct LinkBody {
    pub id: String,
    pub name: String,
}

#[derive(Deserialize, Default, Clone)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct ServiceIdentityBody {
    pub servicename: String,
    pub datacenters: Vec<String>,
}

#[derive(Deserialize, Default, Clone)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct NodeIdentityBody {
    pub nodename: String,
    pub datacenter: String,
}

#[derive(Deserialize, Default, Clone)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct TemplatedPolicyBody {
    pub templatename: String,
    pub templatevariables: Option<TemplateVariablesBody>,
    pub datacenters: Vec<String>,
}

#[derive(Deserialize, Default, Clone)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct TemplateVariablesBody {
    pub name: String,
}

/// The identity parts of a token or role body.
#[derive(Default, Clone)]
pub(crate) struct Identities {
    pub services: Vec<AclServiceIdentity>,
    pub nodes: Vec<AclNodeIdentity>,
    pub templated: Vec<AclTemplatedPolicy>,
}

fn too_many(what: &str, n: usize) -> Result<(), ApiError> {
    if n > MAX_ACL_LINKS {
        return Err(ApiError::bad_request(format!(
            "{what}: {n} given; at most {MAX_ACL_LINKS} (MAX_ACL_LINKS)"
        )));
    }
    Ok(())
}

/// Identities from a body, checked as the state machine will check them
/// (so the caller gets a 400 naming the field before anything is proposed).
pub(crate) fn identities(
    services: Vec<ServiceIdentityBody>,
    nodes: Vec<NodeIdentityBody>,
    templated: Vec<TemplatedPolicyBody>,
) -> Result<Identities, ApiError> {
    too_many("ServiceIdentities", services.len())?;
    too_many("NodeIdentities", nodes.len())?;
    too_many("TemplatedPolicies", templated.len())?;
    let out = Identities {
        services: services
            .into_iter()
            .map(|s| AclServiceIdentity {
                service_name: s.servicename,
                datacenters: s.datacenters,
            })
            .collect(),
        nodes: nodes
            .into_iter()
            .map(|n| AclNodeIdentity {
                node_name: n.nodename,
                datacenter: n.datacenter,
            })
            .collect(),
        templated: templated
            .into_iter()
            .map(|t| AclTemplatedPolicy {
                template_name: t.templatename,
                name: t.templatevariables.map(|v| v.name).unwrap_or_default(),
                datacenters: t.datacenters,
            })
            .collect(),
    };
    for t in &out.templated {
        if !TEMPLATED_POLICY_NAMES.contains(&t.template_name.as_str()) {
            return Err(ApiError::bad_request(format!(
                "TemplatedPolicies: no template named {:?} (known: {})",
                t.template_name,
                TEMPLATED_POLICY_NAMES.join(", ")
            )));
        }
    }
    Ok(out)
}

/// Policy IDs for `[{ID}|{Name}]`, each checked to exist.
pub(crate) fn policy_ids(s: &Catalog, links: &[LinkBody]) -> Result<Vec<String>, ApiError> {
    too_many("Policies", links.len())?;
    let mut ids = Vec::new();
    for link in links {
        let found = match (link.id.as_str(), link.name.as_str()) {
            ("", "") => None,
            ("", name) => s.acl_policy_by_name(name),
            (id, _) => s.acl_policy(id),
        };
        match found {
            Some(p) if !ids.contains(&p.id) => ids.push(p.id),
            Some(_) => {}
            None => return Err(missing("policy", link)),
        }
    }
    Ok(ids)
}

/// Role IDs for `[{ID}|{Name}]`, each checked to exist.
pub(crate) fn role_ids(s: &Catalog, links: &[LinkBody]) -> Result<Vec<String>, ApiError> {
    too_many("Roles", links.len())?;
    let mut ids = Vec::new();
    for link in links {
        let found = match (link.id.as_str(), link.name.as_str()) {
            ("", "") => None,
            ("", name) => s.acl_role_by_name(name),
            (id, _) => s.acl_role(id),
        };
        match found {
            Some(r) if !ids.contains(&r.id) => ids.push(r.id.clone()),
            Some(_) => {}
            None => return Err(missing("role", link)),
        }
    }
    Ok(ids)
}

fn missing(what: &str, link: &LinkBody) -> ApiError {
    let named = if link.id.is_empty() {
        format!("named {:?}", link.name)
    } else {
        format!("{:?}", link.id)
    };
    ApiError::new(
        StatusCode::BAD_REQUEST,
        format!("ACL {what} {named} does not exist"),
    )
}

/// `[{ID, Name}]` for policy IDs.
pub(crate) fn policies_json(s: &Catalog, ids: &[String]) -> Vec<Value> {
    ids.iter()
        .map(|id| {
            let name = s.acl_policy(id).map(|p| p.name).unwrap_or_default();
            json!({"ID": id, "Name": name})
        })
        .collect()
}

/// Identities in Consul's shape, each list only if non-empty.
pub(crate) fn add_identities_json(
    out: &mut Value,
    services: &[AclServiceIdentity],
    nodes: &[AclNodeIdentity],
    templated: &[AclTemplatedPolicy],
) {
    if !services.is_empty() {
        out["ServiceIdentities"] = services
            .iter()
            .map(|s| {
                let mut v = json!({"ServiceName": s.service_name});
                if !s.datacenters.is_empty() {
                    v["Datacenters"] = json!(s.datacenters);
                }
                v
            })
            .collect();
    }
    if !nodes.is_empty() {
        out["NodeIdentities"] = nodes
            .iter()
            .map(|n| json!({"NodeName": n.node_name, "Datacenter": n.datacenter}))
            .collect();
    }
    if !templated.is_empty() {
        out["TemplatedPolicies"] = templated
            .iter()
            .map(|t| {
                let mut v = json!({"TemplateName": t.template_name});
                if !t.name.is_empty() {
                    v["TemplateVariables"] = json!({"Name": t.name});
                }
                if !t.datacenters.is_empty() {
                    v["Datacenters"] = json!(t.datacenters);
                }
                v
            })
            .collect();
    }
}

/// A token's links in its JSON: roles, identities, expiry, auth method.
pub(crate) fn add_links_json(s: &Catalog, out: &mut Value, links: &AclTokenLinks) {
    if !links.roles.is_empty() {
        out["Roles"] = links
            .roles
            .iter()
            .map(|id| {
                let name = s.acl_role(id).map(|r| r.name.clone()).unwrap_or_default();
                json!({"ID": id, "Name": name})
            })
            .collect();
    }
    add_identities_json(
        out,
        &links.service_identities,
        &links.node_identities,
        &links.templated_policies,
    );
    if links.expiration_unix_ms > 0 {
        out["ExpirationTime"] = rfc3339_ms(links.expiration_unix_ms).into();
    }
    if !links.auth_method.is_empty() {
        out["AuthMethod"] = links.auth_method.clone().into();
    }
}

/// Answers with what `show` reads from the state, or a 404 naming `what`.
pub(crate) fn shown(
    api: &crate::Api,
    show: impl Fn(&Catalog) -> Option<Value>,
    what: impl FnOnce() -> String,
) -> Result<axum::response::Response, ApiError> {
    use axum::response::IntoResponse;
    api.state
        .read(show)
        .map(|v| axum::Json(v).into_response())
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, format!("{} not found", what())))
}

/// Proposes `cmd`, waits until this server has applied it, and answers
/// with what `show` reads back.
pub(crate) async fn written_then_shown(
    api: &crate::Api,
    cmd: mesh_types::Command,
    show: impl Fn(&Catalog) -> Option<Value>,
    what: impl FnOnce() -> String,
) -> Result<axum::response::Response, ApiError> {
    api.apply(cmd).await?;
    if let Some(raft) = &api.raft {
        raft.read_barrier(mesh_raft::ReadMode::Default).await?;
    }
    shown(api, show, what)
}

/// Unix milliseconds as RFC 3339.
pub(crate) fn rfc3339_ms(ms: u64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}
