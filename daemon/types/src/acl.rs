//! ACL records as the state machine stores them.

use serde::{Deserialize, Serialize};

/// The built-in policy that grants everything.
pub const GLOBAL_MANAGEMENT_POLICY_ID: &str = "00000000-0000-0000-0000-000000000001";
/// Its name, as Consul spells it.
pub const GLOBAL_MANAGEMENT_POLICY_NAME: &str = "global-management";
/// The token used for requests that carry none.
pub const ANONYMOUS_TOKEN_ID: &str = "00000000-0000-0000-0000-000000000002";

/// A named set of rules (HCL text, checked by mesh-acl before it is stored).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AclPolicy {
    pub id: String,
    pub name: String,
    pub description: String,
    pub rules: String,
    pub datacenters: Vec<String>,
    pub create_index: u64,
    pub modify_index: u64,
}

impl AclPolicy {
    /// The built-in `global-management` policy (never stored, always present).
    pub fn global_management() -> AclPolicy {
        AclPolicy {
            id: GLOBAL_MANAGEMENT_POLICY_ID.into(),
            name: GLOBAL_MANAGEMENT_POLICY_NAME.into(),
            description: "Builtin Policy that grants unlimited access".into(),
            rules: String::new(),
            ..AclPolicy::default()
        }
    }
}

/// A token: a public accessor ID, a secret, and the policies it carries.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AclToken {
    pub accessor_id: String,
    pub secret_id: String,
    pub description: String,
    /// Policy IDs.
    pub policies: Vec<String>,
    pub local: bool,
    /// RFC 3339, set by the server that accepted the request.
    pub create_time: String,
    pub create_index: u64,
    pub modify_index: u64,
}

impl AclToken {
    /// Whether the token carries the built-in management policy.
    pub fn is_management(&self) -> bool {
        self.policies
            .iter()
            .any(|p| p == GLOBAL_MANAGEMENT_POLICY_ID)
    }
}

/// A service identity: the rules a service and its sidecar need, made up
/// when the token is resolved (Consul's `ServiceIdentities`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AclServiceIdentity {
    pub service_name: String,
    /// Where it applies; empty: every datacenter.
    pub datacenters: Vec<String>,
}

/// A node identity: write on one node, read on services.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AclNodeIdentity {
    pub node_name: String,
    pub datacenter: String,
}

/// A built-in policy template with its variables filled in
/// (`builtin/service`, `builtin/node`, `builtin/dns`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AclTemplatedPolicy {
    pub template_name: String,
    /// The `Name` variable (services and nodes); empty for templates without one.
    pub name: String,
    pub datacenters: Vec<String>,
}

/// Policies and identities under one name, attached to tokens by ID.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AclRole {
    pub id: String,
    pub name: String,
    pub description: String,
    /// Policy IDs.
    pub policies: Vec<String>,
    pub service_identities: Vec<AclServiceIdentity>,
    pub node_identities: Vec<AclNodeIdentity>,
    pub templated_policies: Vec<AclTemplatedPolicy>,
    pub create_index: u64,
    pub modify_index: u64,
}

/// What a token carries besides its policies. Stored beside the token,
/// not in it: [`AclToken`]'s layout is fixed by log entries already written.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AclTokenLinks {
    /// Role IDs.
    pub roles: Vec<String>,
    pub service_identities: Vec<AclServiceIdentity>,
    pub node_identities: Vec<AclNodeIdentity>,
    pub templated_policies: Vec<AclTemplatedPolicy>,
    /// Unix milliseconds after which the token no longer resolves and is
    /// deleted; 0: never.
    pub expiration_unix_ms: u64,
    /// The auth method whose login made the token; empty otherwise.
    pub auth_method: String,
}

impl AclTokenLinks {
    /// Whether the token links nothing (a plain token of policies).
    pub fn is_empty(&self) -> bool {
        *self == AclTokenLinks::default()
    }
}

/// A way to trade an external credential for a token (`/v1/acl/login`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AclAuthMethod {
    pub name: String,
    /// `jwt`.
    pub kind: String,
    pub display_name: String,
    pub description: String,
    /// The longest life of a token made by login, in milliseconds.
    pub max_token_ttl_ms: u64,
    /// `local` or `global`; empty: the method's default (local).
    pub token_locality: String,
    /// The method's `Config`, as JSON (checked by the API when written).
    pub config_json: String,
    pub create_index: u64,
    pub modify_index: u64,
}

/// What a login through an auth method is granted, when its claims match.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AclBindingRule {
    pub id: String,
    pub description: String,
    pub auth_method: String,
    /// A filter expression over the mapped claims; empty matches all.
    pub selector: String,
    /// `service`, `node`, `role`, `policy` or `templated-policy`.
    pub bind_type: String,
    /// The name bound, with `${value.<claim>}` filled in at login.
    pub bind_name: String,
    /// For `templated-policy`: the template's `Name` variable (also filled in).
    pub bind_vars_name: String,
    pub create_index: u64,
    pub modify_index: u64,
}

/// The templates mesh knows, and the rules each renders for `name`.
pub const TEMPLATED_POLICY_NAMES: [&str; 3] = ["builtin/service", "builtin/node", "builtin/dns"];

/// The rules a service identity grants (Consul's synthesized policy).
pub fn service_identity_rules(service: &str) -> String {
    format!(
        "service \"{service}\" {{ policy = \"write\" }}\n\
         service \"{service}-sidecar-proxy\" {{ policy = \"write\" }}\n\
         service_prefix \"\" {{ policy = \"read\" }}\n\
         node_prefix \"\" {{ policy = \"read\" }}\n"
    )
}

/// The rules a node identity grants.
pub fn node_identity_rules(node: &str) -> String {
    format!(
        "node \"{node}\" {{ policy = \"write\" }}\n\
         service_prefix \"\" {{ policy = \"read\" }}\n"
    )
}

/// The rules a built-in template renders; `None` for an unknown template.
pub fn templated_policy_rules(template: &str, name: &str) -> Option<String> {
    match template {
        "builtin/service" => Some(service_identity_rules(name)),
        "builtin/node" => Some(node_identity_rules(name)),
        "builtin/dns" => Some(
            "node_prefix \"\" { policy = \"read\" }\n\
             service_prefix \"\" { policy = \"read\" }\n\
             query_prefix \"\" { policy = \"read\" }\n"
                .to_string(),
        ),
        _ => None,
    }
}

/// Whether a template needs the `Name` variable.
pub fn templated_policy_needs_name(template: &str) -> bool {
    matches!(template, "builtin/service" | "builtin/node")
}
