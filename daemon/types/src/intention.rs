//! Intentions: which service may talk to which, and how a decision is made.
//! Matching lives here (pure) so the API, the agent and the proxy agree.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::Owner;

/// Allow or deny.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum IntentionAction {
    #[default]
    Allow,
    Deny,
}

impl IntentionAction {
    /// Consul's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            IntentionAction::Allow => "allow",
            IntentionAction::Deny => "deny",
        }
    }

    /// Parse "allow" / "deny" (any case).
    pub fn parse(text: &str) -> Option<IntentionAction> {
        match text.to_ascii_lowercase().as_str() {
            "allow" => Some(IntentionAction::Allow),
            "deny" => Some(IntentionAction::Deny),
            _ => None,
        }
    }
}

// Field names below are Consul's, so proxy snapshots carry these types as
// JSON unchanged (postcard, the Raft encoding, ignores names).

/// One header condition of an L7 permission.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub struct HeaderMatch {
    pub name: String,
    pub present: bool,
    pub exact: Option<String>,
    pub prefix: Option<String>,
    pub suffix: Option<String>,
    pub regex: Option<String>,
    pub invert: bool,
}

/// The HTTP conditions of an L7 permission; every set field must match.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub struct HttpMatch {
    pub path_exact: Option<String>,
    pub path_prefix: Option<String>,
    pub path_regex: Option<String>,
    pub methods: Vec<String>,
    #[serde(rename = "Header")]
    pub headers: Vec<HeaderMatch>,
}

/// An L7 permission: the first one whose HTTP conditions match decides.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub struct Permission {
    pub action: IntentionAction,
    #[serde(rename = "HTTP")]
    pub http: Option<HttpMatch>,
}

/// An intention from `source` to `destination` ("*" is a wildcard on either side).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub struct Intention {
    /// A stable UUID assigned on creation.
    #[serde(rename = "ID")]
    pub id: String,
    pub source: String,
    pub destination: String,
    /// L4 action; `None` when the intention carries L7 permissions instead.
    pub action: Option<IntentionAction>,
    pub permissions: Vec<Permission>,
    pub description: String,
    pub meta: BTreeMap<String, String>,
    pub owner: Owner,
    pub create_index: u64,
    pub modify_index: u64,
}

impl Intention {
    /// Consul's precedence without namespaces: exact→exact 9, *→exact 8,
    /// exact→* 6, *→* 5.
    pub fn precedence(&self) -> u32 {
        match (self.source == "*", self.destination == "*") {
            (false, false) => 9,
            (true, false) => 8,
            (false, true) => 6,
            (true, true) => 5,
        }
    }

    /// Whether this intention governs traffic from `source` to `destination`.
    pub fn matches(&self, source: &str, destination: &str) -> bool {
        (self.source == "*" || self.source == source)
            && (self.destination == "*" || self.destination == destination)
    }
}

/// Sort intentions the way they are evaluated: highest precedence first,
/// ties broken by destination then source name.
pub fn sort_by_precedence(list: &mut [Intention]) {
    list.sort_by(|a, b| {
        b.precedence()
            .cmp(&a.precedence())
            .then_with(|| a.destination.cmp(&b.destination))
            .then_with(|| a.source.cmp(&b.source))
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ixn(src: &str, dst: &str, action: IntentionAction) -> Intention {
        Intention {
            source: src.into(),
            destination: dst.into(),
            action: Some(action),
            ..Default::default()
        }
    }

    #[test]
    fn sort_order() {
        use IntentionAction::*;
        let mut list = vec![
            ixn("*", "*", Deny),
            ixn("b", "x", Allow),
            ixn("a", "x", Allow),
        ];
        sort_by_precedence(&mut list);
        let names: Vec<_> = list.iter().map(|i| i.source.as_str()).collect();
        assert_eq!(names, ["a", "b", "*"]);
    }
}
