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
