//! Intentions: which service may talk to which, and how a decision is made.
//! Matching lives here (pure) so the API, the agent and the proxy agree.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::Owner;

/// Allow or deny.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
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

/// One header condition of an L7 permission.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
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
pub struct HttpMatch {
    pub path_exact: Option<String>,
    pub path_prefix: Option<String>,
    pub path_regex: Option<String>,
    pub methods: Vec<String>,
    pub headers: Vec<HeaderMatch>,
}

/// An L7 permission: the first one whose HTTP conditions match decides.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Permission {
    pub action: IntentionAction,
    pub http: Option<HttpMatch>,
}

/// An intention from `source` to `destination` ("*" is a wildcard on either side).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Intention {
    /// A stable UUID assigned on creation.
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

/// An L4 authorization decision with its explanation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub allowed: bool,
    /// The intention that decided, if any (else the default did).
    pub matched: Option<Intention>,
    /// A sentence a user can read: which intention or default, and why.
    pub reason: String,
}

/// Decide whether `source` may connect to `destination`. `candidates` may be
/// any superset of the relevant intentions; the highest-precedence match
/// governs the pair. An intention with L7 permissions allows the connection
/// (its permissions are checked per request by the proxy).
pub fn decide<'a>(
    candidates: impl IntoIterator<Item = &'a Intention>,
    source: &str,
    destination: &str,
    default_allow: bool,
) -> Decision {
    let mut best: Option<&Intention> = None;
    for i in candidates
        .into_iter()
        .filter(|i| i.matches(source, destination))
    {
        let better = match best {
            None => true,
            Some(b) => (i.precedence(), &b.destination, &b.source)
                .cmp(&(b.precedence(), &i.destination, &i.source))
                .is_gt(),
        };
        if better {
            best = Some(i);
        }
    }
    match best {
        Some(i) => {
            let allowed = i.action != Some(IntentionAction::Deny);
            let what = match i.action {
                Some(a) => a.as_str().to_string(),
                None => format!("{} L7 permissions", i.permissions.len()),
            };
            Decision {
                allowed,
                reason: format!(
                    "matched intention {} => {} ({what}, precedence {})",
                    i.source,
                    i.destination,
                    i.precedence()
                ),
                matched: Some(i.clone()),
            }
        }
        None => Decision {
            allowed: default_allow,
            matched: None,
            reason: format!(
                "no intention matches {source} => {destination}; default {}",
                if default_allow { "allow" } else { "deny" }
            ),
        },
    }
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
    fn precedence_and_matching() {
        use IntentionAction::*;
        let list = [
            ixn("*", "*", Deny),
            ixn("web", "*", Allow),
            ixn("*", "db", Deny),
            ixn("web", "db", Allow),
        ];
        assert!(decide(&list, "web", "db", false).allowed);
        assert_eq!(
            decide(&list, "web", "db", false)
                .matched
                .unwrap()
                .precedence(),
            9
        );
        // *→db (8) beats web→* (6).
        assert!(!decide(&list, "api", "db", true).allowed);
        assert!(decide(&list, "web", "cache", false).allowed);
        let d = decide(&list, "api", "cache", true);
        assert!(!d.allowed);
        assert!(d.reason.contains("* => *"), "{}", d.reason);
        let d = decide(&[], "a", "b", false);
        assert!(!d.allowed && d.reason.contains("default deny"));
    }

    #[test]
    fn l7_intention_allows_the_connection() {
        let i = Intention {
            source: "web".into(),
            destination: "api".into(),
            action: None,
            permissions: vec![Permission::default()],
            ..Default::default()
        };
        assert!(decide([&i], "web", "api", false).allowed);
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
