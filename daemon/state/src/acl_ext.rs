//! ACL records added after the first ACL tables: roles, what tokens link
//! besides policies (roles, identities, templated policies, expiry, auth
//! method), auth methods and binding rules. Stored apart from `AclTables`
//! so snapshots and log entries from before them still decode.

use std::collections::BTreeMap;

use mesh_types::{
    node_identity_rules, service_identity_rules, templated_policy_needs_name,
    templated_policy_rules, AclAuthMethod, AclBindingRule, AclNodeIdentity, AclRole,
    AclServiceIdentity, AclTemplatedPolicy, AclToken, AclTokenLinks, Outcome,
};
use serde::{Deserialize, Serialize};

use crate::apply::{rejected, Applied};
use crate::{State, Table};

/// Binding rule kinds (`BindType`).
pub const BIND_TYPES: [&str; 5] = ["service", "node", "role", "policy", "templated-policy"];

/// Must stay the last field of [`State`] (snapshot format 7 compatibility).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct AclExtTables {
    /// By token accessor ID; tokens with no links have no row.
    pub links: BTreeMap<String, AclTokenLinks>,
    /// By role ID.
    pub roles: BTreeMap<String, AclRole>,
    /// By name.
    pub auth_methods: BTreeMap<String, AclAuthMethod>,
    /// By rule ID.
    pub binding_rules: BTreeMap<String, AclBindingRule>,
}

// === reads ===

impl State {
    /// What a token links besides its policies (empty for a plain token).
    pub fn acl_token_links(&self, accessor: &str) -> AclTokenLinks {
        self.acl_ext
            .links
            .get(accessor)
            .cloned()
            .unwrap_or_default()
    }

    pub fn acl_role(&self, id: &str) -> Option<&AclRole> {
        self.acl_ext.roles.get(id)
    }

    pub fn acl_role_by_name(&self, name: &str) -> Option<&AclRole> {
        self.acl_ext.roles.values().find(|r| r.name == name)
    }

    pub fn acl_roles(&self) -> impl Iterator<Item = &AclRole> {
        self.acl_ext.roles.values()
    }

    pub fn acl_auth_method(&self, name: &str) -> Option<&AclAuthMethod> {
        self.acl_ext.auth_methods.get(name)
    }

    pub fn acl_auth_methods(&self) -> impl Iterator<Item = &AclAuthMethod> {
        self.acl_ext.auth_methods.values()
    }

    pub fn acl_binding_rule(&self, id: &str) -> Option<&AclBindingRule> {
        self.acl_ext.binding_rules.get(id)
    }

    pub fn acl_binding_rules(&self) -> impl Iterator<Item = &AclBindingRule> {
        self.acl_ext.binding_rules.values()
    }

    /// Tokens whose expiry has passed by `now_unix_ms` (for the reaper).
    pub fn acl_expired_tokens(&self, now_unix_ms: u64) -> Vec<String> {
        self.acl_ext
            .links
            .iter()
            .filter(|(_, l)| expired(l, now_unix_ms))
            .map(|(a, _)| a.clone())
            .collect()
    }

    /// Whether the token `accessor` has expired by `now_unix_ms`.
    pub fn acl_token_expired(&self, accessor: &str, now_unix_ms: u64) -> bool {
        self.acl_ext
            .links
            .get(accessor)
            .is_some_and(|l| expired(l, now_unix_ms))
    }

    /// The rule texts a token's links grant in datacenter `dc`: its roles'
    /// policies and identities, its own identities and templated policies.
    pub(crate) fn acl_link_rules(&self, token: &AclToken, dc: &str) -> Vec<String> {
        let Some(links) = self.acl_ext.links.get(&token.accessor_id) else {
            return Vec::new();
        };
        let mut rules = Vec::new();
        for role in links.roles.iter().filter_map(|id| self.acl_role(id)) {
            rules.extend(
                role.policies
                    .iter()
                    .filter_map(|id| self.acl_policy(id).map(|p| p.rules)),
            );
            identity_rules(
                &role.service_identities,
                &role.node_identities,
                &role.templated_policies,
                dc,
                &mut rules,
            );
        }
        identity_rules(
            &links.service_identities,
            &links.node_identities,
            &links.templated_policies,
            dc,
            &mut rules,
        );
        rules
    }

    /// Whether any role linked by the token carries the management policy.
    pub(crate) fn acl_links_management(&self, token: &AclToken) -> bool {
        self.acl_ext.links.get(&token.accessor_id).is_some_and(|l| {
            l.roles.iter().filter_map(|id| self.acl_role(id)).any(|r| {
                r.policies
                    .iter()
                    .any(|p| p == mesh_types::GLOBAL_MANAGEMENT_POLICY_ID)
            })
        })
    }
}

fn expired(links: &AclTokenLinks, now_unix_ms: u64) -> bool {
    links.expiration_unix_ms > 0 && links.expiration_unix_ms <= now_unix_ms
}

fn applies_in(dcs: &[String], dc: &str) -> bool {
    dcs.is_empty() || dc.is_empty() || dcs.iter().any(|d| d == dc)
}

fn identity_rules(
    services: &[AclServiceIdentity],
    nodes: &[AclNodeIdentity],
    templated: &[AclTemplatedPolicy],
    dc: &str,
    out: &mut Vec<String>,
) {
    for s in services.iter().filter(|s| applies_in(&s.datacenters, dc)) {
        out.push(service_identity_rules(&s.service_name));
    }
    for n in nodes
        .iter()
        .filter(|n| dc.is_empty() || n.datacenter.is_empty() || n.datacenter == dc)
    {
        out.push(node_identity_rules(&n.node_name));
    }
    for t in templated.iter().filter(|t| applies_in(&t.datacenters, dc)) {
        out.extend(templated_policy_rules(&t.template_name, &t.name));
    }
}

// === checks shared by tokens and roles ===

/// Names inside rule text are quoted: a name with a quote, backslash or
/// newline could write rules of its own.
fn check_name(what: &str, name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err(format!("{what} is required"));
    }
    if name.len() > 256
        || name
            .chars()
            .any(|c| matches!(c, '"' | '\\') || c.is_control())
    {
        return Err(format!(
            "{what} {name:?} is not a valid name (at most 256 characters, no quotes, backslashes or control characters)"
        ));
    }
    Ok(())
}

fn check_identities(
    services: &[AclServiceIdentity],
    nodes: &[AclNodeIdentity],
    templated: &[AclTemplatedPolicy],
) -> Result<(), String> {
    for s in services {
        check_name("ServiceIdentities.ServiceName", &s.service_name)?;
    }
    for n in nodes {
        check_name("NodeIdentities.NodeName", &n.node_name)?;
        if n.datacenter.is_empty() {
            return Err(format!(
                "NodeIdentities: node {:?} needs a Datacenter",
                n.node_name
            ));
        }
    }
    for t in templated {
        if templated_policy_rules(&t.template_name, "x").is_none() {
            return Err(format!(
                "TemplatedPolicies: no template named {:?} (known: {})",
                t.template_name,
                mesh_types::TEMPLATED_POLICY_NAMES.join(", ")
            ));
        }
        if templated_policy_needs_name(&t.template_name) {
            check_name(
                &format!("TemplatedPolicies: {} variable Name", t.template_name),
                &t.name,
            )?;
        }
    }
    Ok(())
}

// === writes ===

impl State {
    pub(crate) fn acl_token_set_linked(
        &mut self,
        index: u64,
        token: AclToken,
        links: AclTokenLinks,
    ) -> Applied {
        if let Some(missing) = links.roles.iter().find(|r| self.acl_role(r).is_none()) {
            return rejected(format!("ACL role {missing:?} does not exist"));
        }
        if let Err(why) = check_identities(
            &links.service_identities,
            &links.node_identities,
            &links.templated_policies,
        ) {
            return rejected(why);
        }
        if !links.auth_method.is_empty() && self.acl_auth_method(&links.auth_method).is_none() {
            return rejected(format!(
                "ACL auth method {:?} does not exist",
                links.auth_method
            ));
        }
        let accessor = token.accessor_id.clone();
        let applied = self.acl_token_set(index, token);
        if applied.0 != Outcome::Done {
            return applied;
        }
        if !links.is_empty() {
            self.acl_ext.links.insert(accessor, links);
        }
        applied
    }

    /// A token replaced without links, or deleted, loses its row here.
    pub(crate) fn acl_forget_links(&mut self, accessor: &str) {
        self.acl_ext.links.remove(accessor);
    }

    /// A deleted policy leaves no dangling reference in roles.
    pub(crate) fn acl_roles_drop_policy(&mut self, id: &str) {
        for role in self.acl_ext.roles.values_mut() {
            role.policies.retain(|p| p != id);
        }
    }

    pub(crate) fn acl_role_set(&mut self, index: u64, mut role: AclRole) -> Applied {
        if role.id.is_empty() || role.name.is_empty() {
            return rejected("ACL role ID and Name are required");
        }
        if let Some(other) = self.acl_role_by_name(&role.name) {
            if other.id != role.id {
                return rejected(format!(
                    "an ACL role named {:?} already exists (ID {})",
                    role.name, other.id
                ));
            }
        }
        if let Some(missing) = role.policies.iter().find(|p| self.acl_policy(p).is_none()) {
            return rejected(format!("ACL policy {missing:?} does not exist"));
        }
        if let Err(why) = check_identities(
            &role.service_identities,
            &role.node_identities,
            &role.templated_policies,
        ) {
            return rejected(why);
        }
        role.create_index = self
            .acl_ext
            .roles
            .get(&role.id)
            .map_or(index, |r| r.create_index);
        role.modify_index = index;
        self.acl_ext.roles.insert(role.id.clone(), role);
        self.acl.index = index;
        (Outcome::Done, vec![Table::Acl])
    }

    pub(crate) fn acl_role_delete(&mut self, index: u64, id: &str) -> Applied {
        if self.acl_ext.roles.remove(id).is_none() {
            return (Outcome::Done, Vec::new());
        }
        for links in self.acl_ext.links.values_mut() {
            links.roles.retain(|r| r != id);
        }
        self.acl_ext.links.retain(|_, l| !l.is_empty());
        self.acl.index = index;
        (Outcome::Done, vec![Table::Acl])
    }

    pub(crate) fn acl_auth_method_set(&mut self, index: u64, mut method: AclAuthMethod) -> Applied {
        if method.name.is_empty() {
            return rejected("ACL auth method Name is required");
        }
        if method.kind != "jwt" {
            return rejected(format!(
                "ACL auth method type {:?} is not supported (mesh supports \"jwt\")",
                method.kind
            ));
        }
        method.create_index = self
            .acl_ext
            .auth_methods
            .get(&method.name)
            .map_or(index, |m| m.create_index);
        method.modify_index = index;
        self.acl_ext
            .auth_methods
            .insert(method.name.clone(), method);
        self.acl.index = index;
        (Outcome::Done, vec![Table::Acl])
    }

    /// Deleting a method deletes its binding rules and the tokens its
    /// logins made (Consul's rule).
    pub(crate) fn acl_auth_method_delete(&mut self, index: u64, name: &str) -> Applied {
        if self.acl_ext.auth_methods.remove(name).is_none() {
            return (Outcome::Done, Vec::new());
        }
        self.acl_ext
            .binding_rules
            .retain(|_, r| r.auth_method != name);
        let made: Vec<String> = self
            .acl_ext
            .links
            .iter()
            .filter(|(_, l)| l.auth_method == name)
            .map(|(a, _)| a.clone())
            .collect();
        for accessor in made {
            self.acl_token_delete(index, &accessor);
        }
        self.acl.index = index;
        (Outcome::Done, vec![Table::Acl])
    }

    pub(crate) fn acl_binding_rule_set(&mut self, index: u64, mut rule: AclBindingRule) -> Applied {
        if rule.id.is_empty() {
            return rejected("ACL binding rule ID is required");
        }
        if self.acl_auth_method(&rule.auth_method).is_none() {
            return rejected(format!(
                "ACL auth method {:?} does not exist",
                rule.auth_method
            ));
        }
        if !BIND_TYPES.contains(&rule.bind_type.as_str()) {
            return rejected(format!(
                "BindType {:?} is not one of {}",
                rule.bind_type,
                BIND_TYPES.join(", ")
            ));
        }
        if rule.bind_name.is_empty() {
            return rejected("BindName is required");
        }
        rule.create_index = self
            .acl_ext
            .binding_rules
            .get(&rule.id)
            .map_or(index, |r| r.create_index);
        rule.modify_index = index;
        self.acl_ext.binding_rules.insert(rule.id.clone(), rule);
        self.acl.index = index;
        (Outcome::Done, vec![Table::Acl])
    }

    pub(crate) fn acl_binding_rule_delete(&mut self, index: u64, id: &str) -> Applied {
        if self.acl_ext.binding_rules.remove(id).is_none() {
            return (Outcome::Done, Vec::new());
        }
        self.acl.index = index;
        (Outcome::Done, vec![Table::Acl])
    }

    pub(crate) fn acl_tokens_expire(
        &mut self,
        index: u64,
        accessors: &[String],
        now_unix_ms: u64,
    ) -> Applied {
        let mut changed = false;
        for a in accessors {
            if self.acl_token_expired(a, now_unix_ms) {
                self.acl_token_delete(index, a);
                changed = true;
            }
        }
        match changed {
            true => (Outcome::Done, vec![Table::Acl]),
            false => (Outcome::Done, Vec::new()),
        }
    }
}
