//! ACL tokens and policies. Rule text is checked by the API before it gets
//! here; the state machine keeps names, secrets and references consistent.

use std::collections::BTreeMap;

use mesh_types::{AclPolicy, AclToken, Outcome, ANONYMOUS_TOKEN_ID, GLOBAL_MANAGEMENT_POLICY_ID};
use serde::{Deserialize, Serialize};

use crate::apply::{rejected, Applied};
use crate::{State, Table};

/// The ACL tables. Kept as the last field of `State` so a snapshot written
/// before they existed decodes with them empty (see snapshot.rs).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AclTables {
    /// By accessor ID.
    pub(crate) tokens: BTreeMap<String, AclToken>,
    /// Secret ID → accessor ID.
    pub(crate) by_secret: BTreeMap<String, String>,
    /// By policy ID.
    pub(crate) policies: BTreeMap<String, AclPolicy>,
    /// The index of the bootstrap, once done (0: never).
    pub(crate) bootstrap_index: u64,
    /// Highest index that changed a token or policy.
    pub(crate) index: u64,
}

/// A token as the authorizer needs it: who, and its policies' rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedToken {
    pub accessor: String,
    pub management: bool,
    pub rules: Vec<String>,
    /// Unix milliseconds when it stops resolving; 0: never.
    pub expires_unix_ms: u64,
}

/// Now, in Unix milliseconds (token expiry is wall-clock time).
pub fn now_unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl State {
    /// The token for `secret` (none: the anonymous token, or nothing
    /// granted when it does not exist yet) with the rules it has in
    /// datacenter `dc` (empty: any); `None` for an unknown or expired secret.
    pub fn acl_resolve(&self, secret: Option<&str>, dc: &str) -> Option<ResolvedToken> {
        self.acl_resolve_at(secret, dc, now_unix_ms())
    }

    /// [`State::acl_resolve`] at a given time.
    pub fn acl_resolve_at(
        &self,
        secret: Option<&str>,
        dc: &str,
        now_unix_ms: u64,
    ) -> Option<ResolvedToken> {
        let token = match secret {
            Some(secret) => self.acl_token_by_secret(secret)?,
            None => match self.acl_token(ANONYMOUS_TOKEN_ID) {
                Some(t) => t,
                None => {
                    return Some(ResolvedToken {
                        accessor: ANONYMOUS_TOKEN_ID.into(),
                        management: false,
                        rules: Vec::new(),
                        expires_unix_ms: 0,
                    })
                }
            },
        };
        if self.acl_token_expired(&token.accessor_id, now_unix_ms) {
            return None;
        }
        let mut rules: Vec<String> = token
            .policies
            .iter()
            .filter(|id| id.as_str() != GLOBAL_MANAGEMENT_POLICY_ID)
            .filter_map(|id| self.acl_policy(id).map(|p| p.rules))
            .collect();
        rules.extend(self.acl_link_rules(token, dc));
        Some(ResolvedToken {
            accessor: token.accessor_id.clone(),
            management: token.is_management() || self.acl_links_management(token),
            rules,
            expires_unix_ms: self.acl_token_links(&token.accessor_id).expiration_unix_ms,
        })
    }

    /// The highest index that changed ACL data: resolved tokens cached
    /// under an older index are stale.
    pub fn acl_index(&self) -> u64 {
        self.acl.index
    }

    /// The index of the ACL bootstrap, if it happened.
    pub fn acl_bootstrap_index(&self) -> Option<u64> {
        Some(self.acl.bootstrap_index).filter(|i| *i > 0)
    }

    /// A token by its secret.
    pub fn acl_token_by_secret(&self, secret: &str) -> Option<&AclToken> {
        self.acl
            .by_secret
            .get(secret)
            .and_then(|a| self.acl.tokens.get(a))
    }

    /// A token by its accessor ID.
    pub fn acl_token(&self, accessor: &str) -> Option<&AclToken> {
        self.acl.tokens.get(accessor)
    }

    /// Every stored token, by accessor ID.
    pub fn acl_tokens(&self) -> impl Iterator<Item = &AclToken> {
        self.acl.tokens.values()
    }

    /// A policy by ID; the built-in management policy is always there.
    pub fn acl_policy(&self, id: &str) -> Option<AclPolicy> {
        if id == GLOBAL_MANAGEMENT_POLICY_ID {
            return Some(AclPolicy::global_management());
        }
        self.acl.policies.get(id).cloned()
    }

    /// A policy by name.
    pub fn acl_policy_by_name(&self, name: &str) -> Option<AclPolicy> {
        self.acl_policies().find(|p| p.name == name)
    }

    /// Every policy, the built-in one first.
    pub fn acl_policies(&self) -> impl Iterator<Item = AclPolicy> + '_ {
        std::iter::once(AclPolicy::global_management()).chain(self.acl.policies.values().cloned())
    }

    pub(crate) fn acl_policy_set(&mut self, index: u64, mut policy: AclPolicy) -> Applied {
        if policy.id.is_empty() || policy.name.is_empty() {
            return rejected("ACL policy ID and Name are required");
        }
        if policy.id == GLOBAL_MANAGEMENT_POLICY_ID {
            return rejected("the built-in global-management policy cannot be changed");
        }
        if let Some(other) = self.acl_policy_by_name(&policy.name) {
            if other.id != policy.id {
                return rejected(format!(
                    "an ACL policy named {:?} already exists (ID {})",
                    policy.name, other.id
                ));
            }
        }
        policy.create_index = self
            .acl
            .policies
            .get(&policy.id)
            .map_or(index, |p| p.create_index);
        policy.modify_index = index;
        self.acl.policies.insert(policy.id.clone(), policy);
        self.acl.index = index;
        (Outcome::Done, vec![Table::Acl])
    }

    pub(crate) fn acl_policy_delete(&mut self, index: u64, id: &str) -> Applied {
        if id == GLOBAL_MANAGEMENT_POLICY_ID {
            return rejected("the built-in global-management policy cannot be deleted");
        }
        if self.acl.policies.remove(id).is_some() {
            // Tokens keep no dangling references.
            for token in self.acl.tokens.values_mut() {
                token.policies.retain(|p| p != id);
            }
            self.acl_roles_drop_policy(id);
            self.acl.index = index;
            return (Outcome::Done, vec![Table::Acl]);
        }
        (Outcome::Done, Vec::new())
    }

    pub(crate) fn acl_token_set(&mut self, index: u64, mut token: AclToken) -> Applied {
        if token.accessor_id.is_empty() || token.secret_id.is_empty() {
            return rejected("ACL token AccessorID and SecretID are required");
        }
        if let Some(owner) = self.acl.by_secret.get(&token.secret_id) {
            if *owner != token.accessor_id {
                return rejected("that SecretID is already used by another token");
            }
        }
        if let Some(missing) = token.policies.iter().find(|p| self.acl_policy(p).is_none()) {
            return rejected(format!("ACL policy {missing:?} does not exist"));
        }
        let old = self.acl.tokens.get(&token.accessor_id);
        if let Some(old) = old {
            if old.secret_id != token.secret_id {
                return rejected("a token's SecretID cannot be changed");
            }
            token.create_time = old.create_time.clone();
        }
        token.create_index = old.map_or(index, |t| t.create_index);
        token.modify_index = index;
        // Stored whole: links, if any, are set again by the caller.
        self.acl_forget_links(&token.accessor_id);
        self.acl
            .by_secret
            .insert(token.secret_id.clone(), token.accessor_id.clone());
        self.acl.tokens.insert(token.accessor_id.clone(), token);
        self.acl.index = index;
        (Outcome::Done, vec![Table::Acl])
    }

    pub(crate) fn acl_token_delete(&mut self, index: u64, accessor: &str) -> Applied {
        if accessor == ANONYMOUS_TOKEN_ID {
            return rejected("the anonymous token cannot be deleted");
        }
        if let Some(token) = self.acl.tokens.remove(accessor) {
            self.acl.by_secret.remove(&token.secret_id);
            self.acl_forget_links(accessor);
            self.acl.index = index;
            return (Outcome::Done, vec![Table::Acl]);
        }
        (Outcome::Done, Vec::new())
    }

    pub(crate) fn acl_bootstrap(&mut self, index: u64, token: AclToken) -> Applied {
        if self.acl.bootstrap_index > 0 {
            if self.acl.by_secret.contains_key(&token.secret_id) {
                return (Outcome::Bool(false), Vec::new());
            }
            return rejected(format!(
                "ACL bootstrap no longer allowed (done at index {})",
                self.acl.bootstrap_index
            ));
        }
        let token = AclToken {
            policies: vec![GLOBAL_MANAGEMENT_POLICY_ID.into()],
            ..token
        };
        let applied = self.acl_token_set(index, token);
        if applied.0 != Outcome::Done {
            return applied;
        }
        self.acl.bootstrap_index = index;
        // The anonymous token exists from here on, so its policies can be
        // set (what requests without a token may do). Its secret is
        // Consul's fixed "anonymous".
        if !self.acl.tokens.contains_key(ANONYMOUS_TOKEN_ID) {
            let anonymous = AclToken {
                accessor_id: ANONYMOUS_TOKEN_ID.into(),
                secret_id: "anonymous".into(),
                description: "Anonymous Token".into(),
                ..Default::default()
            };
            self.acl_token_set(index, anonymous);
        }
        (Outcome::Bool(true), vec![Table::Acl])
    }
}
