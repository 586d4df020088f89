//! ACL rules (Consul's HCL policy language) and the authorizer that answers
//! "may this token do that". Pure: no I/O, no state.

#![forbid(unsafe_code)]

mod rules;

pub use rules::{parse_rules, Rules, RulesError};

/// A level of access. Ordered: a grant allows every level up to its own,
/// and `Deny` allows nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Access {
    Deny,
    Read,
    List,
    Write,
}

impl Access {
    /// The rule-language spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Access::Deny => "deny",
            Access::Read => "read",
            Access::List => "list",
            Access::Write => "write",
        }
    }

    /// Two grants for the same thing from different policies: deny wins,
    /// otherwise the stronger grant (Consul's merge order).
    fn merge(self, other: Access) -> Access {
        if self == Access::Deny || other == Access::Deny {
            Access::Deny
        } else {
            self.max(other)
        }
    }
}

/// Named things a rule can grant access to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Resource {
    Key,
    Service,
    /// Intentions, by destination service (the `intentions` field of service rules).
    Intention,
    Node,
    Agent,
    Session,
    Query,
    Event,
}

impl Resource {
    /// Name used in denial messages (`service:write`).
    pub fn as_str(self) -> &'static str {
        match self {
            Resource::Key => "key",
            Resource::Service => "service",
            Resource::Intention => "intentions",
            Resource::Node => "node",
            Resource::Agent => "agent",
            Resource::Session => "session",
            Resource::Query => "query",
            Resource::Event => "event",
        }
    }
}

/// Cluster-wide permissions without a name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Global {
    Operator,
    Acl,
    Keyring,
    Mesh,
}

impl Global {
    /// Name used in denial messages.
    pub fn as_str(self) -> &'static str {
        match self {
            Global::Operator => "operator",
            Global::Acl => "acl",
            Global::Keyring => "keyring",
            Global::Mesh => "mesh",
        }
    }
}

/// What a token may do: its policies' rules merged, over a default.
#[derive(Debug, Clone)]
pub struct Authorizer {
    management: bool,
    default: Access,
    rules: Rules,
}

impl Authorizer {
    /// Everything allowed (management tokens, or ACLs disabled).
    pub fn management() -> Authorizer {
        Authorizer {
            management: true,
            default: Access::Write,
            rules: Rules::default(),
        }
    }

    /// The merged rules of several policies; `default_allow` is the ACL
    /// default policy for anything no rule names.
    pub fn from_rules<'a>(
        rules: impl IntoIterator<Item = &'a Rules>,
        default_allow: bool,
    ) -> Authorizer {
        let mut merged = Rules::default();
        for r in rules {
            merged.merge(r);
        }
        Authorizer {
            management: false,
            default: if default_allow {
                Access::Write
            } else {
                Access::Deny
            },
            rules: merged,
        }
    }

    /// From rule texts as stored (checked when written): a text that no
    /// longer parses grants nothing rather than failing every request.
    pub fn from_rule_texts<S: AsRef<str>>(
        management: bool,
        texts: &[S],
        default_allow: bool,
    ) -> Authorizer {
        if management {
            return Authorizer::management();
        }
        let parsed: Vec<Rules> = texts
            .iter()
            .filter_map(|t| parse_rules(t.as_ref()).ok())
            .collect();
        Authorizer::from_rules(parsed.iter(), default_allow)
    }

    /// Whether this is a management token.
    pub fn is_management(&self) -> bool {
        self.management
    }

    /// The access granted on one named thing: an exact rule, else the
    /// longest matching prefix rule, else the default.
    pub fn access(&self, resource: Resource, name: &str) -> Access {
        if self.management {
            return Access::Write;
        }
        self.rules.lookup(resource, name).unwrap_or(match resource {
            // Without an intentions rule, service access decides reads.
            Resource::Intention => self.rules.intention_fallback(name, self.default),
            _ => self.default,
        })
    }

    /// Whether `need` is granted on one named thing.
    pub fn allows(&self, resource: Resource, name: &str, need: Access) -> bool {
        granted(self.access(resource, name), need)
    }

    /// Whether `need` is granted on a cluster-wide permission.
    pub fn allows_global(&self, global: Global, need: Access) -> bool {
        if self.management {
            return true;
        }
        let have = match self.rules.global(global) {
            Some(a) => a,
            // `mesh` falls back to `operator`, as in Consul.
            None if global == Global::Mesh => {
                self.rules.global(Global::Operator).unwrap_or(self.default)
            }
            None => self.default,
        };
        granted(have, need)
    }

    /// Write on every key under `prefix`: the prefix itself is writable and
    /// no rule beneath it takes write away (recursive deletes).
    pub fn allows_key_write_prefix(&self, prefix: &str) -> bool {
        self.allows(Resource::Key, prefix, Access::Write)
            && self
                .rules
                .beneath(Resource::Key, prefix)
                .all(|a| granted(a, Access::Write))
    }
}

fn granted(have: Access, need: Access) -> bool {
    have != Access::Deny && have >= need
}

#[cfg(test)]
mod tests;
